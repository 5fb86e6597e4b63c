/**
 * Errors of the notifiers. Kept here until they join the catalogue in
 * `src/errors.ts`; the codes are stable either way:
 *
 * - `UPLINKD_ERR_NOTIFY`: a channel refused or failed a delivery (SMTP
 *   reply, HTTP status, network error, hook exit status).
 * - `UPLINKD_ERR_NOTIFY_TIMEOUT`: an attempt did not finish within the
 *   channel's `timeout`.
 *
 * Neither is ever thrown out of `Notifier.notify`; they are logged, and
 * returned in `NotifyResult`s by `Notifier.test`.
 */
import { UplinkdError } from "../errors.js";

/** The kinds of notification channel. */
export type ChannelKind = "email" | "webhook" | "hook";

/**
 * A delivery on one channel failed. `target` names the channel as logs show
 * it (`smtp.example.net:587`, a webhook's name or origin, a hook's path) and
 * never holds a secret. `retryable` tells whether another attempt may succeed
 * (network errors, timeouts, SMTP 4xx, HTTP 408/429/5xx).
 * Code `UPLINKD_ERR_NOTIFY`.
 */
export class NotifyError extends UplinkdError {
  readonly channel: ChannelKind;
  readonly target: string;
  readonly retryable: boolean;
  constructor(
    channel: ChannelKind,
    target: string,
    message: string,
    options: { retryable: boolean; cause?: unknown; code?: string },
  ) {
    super(options.code ?? "UPLINKD_ERR_NOTIFY", `${channel} ${target}: ${message}`, {
      cause: options.cause,
    });
    this.channel = channel;
    this.target = target;
    this.retryable = options.retryable;
  }
}

/**
 * An attempt on one channel did not finish within its `timeout` (ms); always
 * retryable. `what` names the step, e.g. `POST`, `SMTP delivery`, `the script`.
 * Code `UPLINKD_ERR_NOTIFY_TIMEOUT`.
 */
export class NotifyTimeoutError extends NotifyError {
  readonly timeoutMs: number;
  constructor(channel: ChannelKind, target: string, timeoutMs: number, what: string) {
    super(channel, target, `${what} did not finish within ${timeoutMs}ms`, {
      retryable: true,
      code: "UPLINKD_ERR_NOTIFY_TIMEOUT",
    });
    this.timeoutMs = timeoutMs;
  }
}

/**
 * Webhooks: the notification as a JSON POST, with a timeout per attempt and
 * retries with exponential backoff.
 */
import type { Logger } from "pino";
import type { Clock } from "../clock.js";
import { NotifyError, NotifyTimeoutError } from "./errors.js";
import type { WebhookPayload } from "./message.js";
import { withRetries } from "./retry.js";
import type { WebhookConfig } from "../config/notify.js";

/** At most this many bytes of a failed answer's body go into the error message. */
const ERROR_BODY_BYTES = 512;

/**
 * How a webhook is named in logs and results: its `name`, else the URL's
 * origin (`https://hooks.example.net`). The path and query, which often
 * hold a secret token, never appear.
 */
export function webhookTarget(webhook: WebhookConfig): string {
  if (webhook.name !== undefined) return webhook.name;
  try {
    return new URL(webhook.url).origin;
  } catch {
    return "(invalid URL)";
  }
}

/** Whether another attempt may get a different answer: 408, 429 and 5xx. */
export function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/**
 * POSTs `payload` as JSON (`content-type: application/json`, UTF-8) to
 * `webhook.url` with the configured headers. An attempt succeeds on a 2xx
 * answer; redirects are not followed (a 3xx is a failure). Each attempt is
 * aborted after `webhook.timeout` ms of `clock` time (the whole exchange,
 * body included); network errors, timeouts, 408, 429 and 5xx are retried
 * `webhook.retries` times, waiting `webhook.backoff` ms, then twice that...
 *
 * @returns the number of attempts made (>= 1).
 * @throws {RetriesExhausted} (from `./retry.js`) carrying the last
 *   `NotifyError` (`UPLINKD_ERR_NOTIFY`: HTTP status or network error;
 *   `UPLINKD_ERR_NOTIFY_TIMEOUT`) and the attempts made.
 */
export async function postWebhook(
  webhook: WebhookConfig,
  payload: WebhookPayload,
  deps: { clock: Clock; log: Logger },
): Promise<number> {
  const target = webhookTarget(webhook);
  const body = JSON.stringify(payload);
  const headers: Record<string, string> = {
    "content-type": "application/json; charset=utf-8",
    "user-agent": "uplinkd",
    ...webhook.headers,
  };
  return withRetries(
    () => postOnce(webhook, target, headers, body, deps.clock),
    { retries: webhook.retries, backoffMs: webhook.backoff },
    deps.clock,
    (error) => networkError(target, error),
    ({ attempt, error, delayMs }) => {
      deps.log.warn(
        { channel: "webhook", target, attempt, code: error.code, retryInMs: delayMs },
        `${error.message}; retrying in ${delayMs}ms`,
      );
    },
  );
}

async function postOnce(
  webhook: WebhookConfig,
  target: string,
  headers: Record<string, string>,
  body: string,
  clock: Clock,
): Promise<void> {
  const controller = new AbortController();
  const timer = clock.setTimeout(() => {
    controller.abort();
  }, webhook.timeout);
  try {
    const response = await fetch(webhook.url, {
      method: "POST",
      headers,
      body,
      redirect: "manual",
      signal: controller.signal,
    });
    const text = await readStart(response, ERROR_BODY_BYTES);
    if (response.status >= 200 && response.status < 300) return;
    const said = text.trim().replace(/\s+/g, " ");
    throw new NotifyError("webhook", target, `HTTP ${response.status}${said ? `: ${said}` : ""}`, {
      retryable: retryableStatus(response.status),
    });
  } catch (error) {
    if (error instanceof NotifyError) throw error;
    if (controller.signal.aborted) {
      throw new NotifyTimeoutError("webhook", target, webhook.timeout, "POST");
    }
    throw networkError(target, error);
  } finally {
    clock.clearTimeout(timer);
  }
}

/** Reads at most `limit` bytes of the answer's body as text and discards the rest. */
async function readStart(response: Response, limit: number): Promise<string> {
  if (response.body === null) return "";
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).subarray(0, limit).toString("utf8");
}

/** A network-level failure (refused, reset, DNS): retryable; names the cause. */
function networkError(target: string, error: unknown): NotifyError {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const message = cause instanceof Error ? cause.message : String(cause);
  return new NotifyError("webhook", target, `POST failed: ${message}`, {
    retryable: true,
    cause: error,
  });
}

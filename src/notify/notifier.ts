/**
 * The notifier: takes uplink transitions from the daemon, coalesces bursts
 * into one message, and hands it to every configured channel (email,
 * webhooks, hook scripts) in the background. Nothing here may delay
 * failover: `notify()` only records the transition and returns; deliveries
 * run detached, one channel never waits for another, and every failure is
 * logged, never thrown.
 *
 * Hook scripts with `run: transition` run once per transition, at once (not
 * after the coalescing window), one after the other in the order the
 * transitions happened. Email, webhooks and hooks with `run: burst` get one
 * message per burst: the first transition opens a window of `coalesce` ms,
 * every transition until it closes joins the message.
 */
import type { HaRoleChange } from "../ha/part.js";
import { hostname as osHostname } from "node:os";
import type { Logger } from "pino";
import type { Transition } from "../uplink-health.js";
import { systemClock, type Clock, type TimerHandle } from "../clock.js";
import { emailTarget, sendEmail } from "./email.js";
import { NotifyError, type ChannelKind } from "./errors.js";
import { hookTarget, runHook } from "./hook.js";
import {
  emailSubject,
  hookEnvironment,
  summary,
  textBody,
  webhookPayload,
  type HookEvent,
  type Notification,
  type NotifiedTransition,
  type NotifyUplinkStatus,
} from "./message.js";
import { SerialQueue } from "../queue.js";
import { RetriesExhausted } from "./retry.js";
import type { NotifyConfig } from "../config/notify.js";
import { postWebhook, webhookTarget } from "./webhook.js";

/** Transitions listed in one message; a longer burst lists these and counts the rest. */
export const MAX_BURST = 100;

/** Messages that may wait per channel behind one being delivered; more are dropped (and logged). */
export const MAX_WAITING = 20;

/** What the notifier needs from its surroundings. */
export interface NotifierOptions {
  /** The interface of an uplink (e.g. `wan1` for `isp1`); undefined when unknown. */
  interfaceOf: (uplink: string) => string | undefined;
  /** Time for the coalescing window, timeouts and backoff; default: the real clock. */
  clock?: Clock;
  /**
   * Every uplink's state now, for the "Uplinks now" part of a message; called
   * when a burst is sent. A throw is logged and the part left out.
   */
  statusProvider?: () => readonly NotifyUplinkStatus[];
  /** The router's name in messages and in EHLO; default `os.hostname()`. */
  hostname?: string;
}

/** The outcome of one delivery on one channel. */
export interface NotifyResult {
  channel: ChannelKind;
  /** The channel as logs name it: `host:port`, a webhook's name or origin, a hook's name or path. */
  target: string;
  ok: boolean;
  /** Attempts made (>= 1; more than 1 only after retries). */
  attempts: number;
  /** ms from the first attempt to the outcome, retries and backoff included. */
  durationMs: number;
  /** The error's stable code (`UPLINKD_ERR_NOTIFY`, `UPLINKD_ERR_NOTIFY_TIMEOUT`); absent when ok. */
  code?: string;
  /** What went wrong, for humans; absent when ok. */
  error?: string;
}

/** One configured channel. */
interface Channel {
  kind: ChannelKind;
  target: string;
  /** Gets coalesced bursts. */
  burst: boolean;
  /** Gets each transition at once (hooks with `run: transition`). */
  perTransition: boolean;
  queue: SerialQueue;
  /** Sends one message; resolves with the attempts made. */
  send: (notification: Notification, event: HookEvent) => Promise<number>;
}

/**
 * Sends notifications about uplink transitions. The constructor only reads
 * the config: it opens no connection and starts no timer.
 *
 * For a new config (SIGHUP), make a new Notifier and `flush()` the old one.
 */
export class Notifier {
  readonly #config: NotifyConfig;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #interfaceOf: (uplink: string) => string | undefined;
  readonly #statusProvider: (() => readonly NotifyUplinkStatus[]) | undefined;
  readonly #hostname: string;
  readonly #states: ReadonlySet<string>;
  readonly #channels: readonly Channel[];
  #pending: NotifiedTransition[] = [];
  #omitted = 0;
  #window: TimerHandle | undefined;

  /**
   * @param config the `notify` section, as `notifySchema` outputs it (durations in ms).
   * @param log where deliveries, failures and hook output are logged.
   */
  constructor(config: NotifyConfig, log: Logger, options: NotifierOptions) {
    this.#config = config;
    this.#log = log.child({ component: "notify" });
    this.#clock = options.clock ?? systemClock;
    this.#interfaceOf = options.interfaceOf;
    this.#statusProvider = options.statusProvider;
    this.#hostname = options.hostname ?? osHostname();
    this.#states = new Set(config.states);
    this.#channels = this.#makeChannels();
  }

  /** How many channels are configured (email counts 1, each webhook and hook 1). */
  get channelCount(): number {
    return this.#channels.length;
  }

  /**
   * Reports one transition. Returns at once and never throws: a transition
   * into a state not in `states` is ignored; hooks with `run: transition`
   * are queued now; the rest joins the open burst (or opens one, which is
   * sent `coalesce` ms later). A burst lists at most {@link MAX_BURST}
   * transitions and counts the others.
   */
  notify(transition: Transition): void {
    try {
      if (!this.#states.has(transition.to) || this.#channels.length === 0) return;
      const notified: NotifiedTransition = {
        ...transition,
        interface: this.#safeInterfaceOf(transition.uplink),
      };
      for (const channel of this.#channels) {
        if (channel.perTransition) {
          this.#enqueue(channel, this.#compose("transitions", [notified], 0, false), "transition");
        }
      }
      if (!this.#channels.some((c) => c.burst)) return;
      if (this.#pending.length < MAX_BURST) this.#pending.push(notified);
      else this.#omitted++;
      this.#window ??= this.#clock.setTimeout(() => {
        this.#sendBurst();
      }, this.#config.coalesce);
    } catch (error) {
      this.#logError(error, "notify failed");
    }
  }

  /**
   * Reports a VRRP role change of this router (config `ha`) at once on every
   * channel (hooks with `EVENT=role`), whatever `states` says. Returns at
   * once and never throws.
   */
  notifyRole(change: HaRoleChange): void {
    try {
      const notification = { ...this.#compose("role", [], 0, true), role: change };
      for (const channel of this.#channels) this.#enqueue(channel, notification, "role");
    } catch (error) {
      this.#logError(error, "notify failed");
    }
  }

  /**
   * Sends the open burst now (without waiting for its window to close) and
   * resolves once every queued delivery has ended: sent, or failed after its
   * retries. For shutdown and tests. Never rejects. Bounded by the channels'
   * timeouts and retries; transitions notified after the call are not waited for.
   */
  async flush(): Promise<void> {
    if (this.#window !== undefined) {
      this.#clock.clearTimeout(this.#window);
      this.#sendBurst();
    }
    await Promise.all(this.#channels.map((c) => c.queue.idle()));
  }

  /**
   * Sends a test notification through every configured channel at once (not
   * queued, not coalesced): email and webhooks get a message saying it is a
   * test, hook scripts run with `EVENT=test` and empty transition variables.
   * Retries as configured.
   *
   * @returns one result per channel: email first, then the webhooks, then
   *   the hooks, in config order; empty when nothing is configured. Never rejects.
   */
  async test(): Promise<NotifyResult[]> {
    const notification = this.#compose("test", [], 0, true);
    return Promise.all(this.#channels.map((c) => this.#deliver(c, notification, "test")));
  }

  #makeChannels(): Channel[] {
    const deps = { clock: this.#clock, log: this.#log };
    const channels: Channel[] = [];
    const add = (channel: Omit<Channel, "queue">): void => {
      const queue = new SerialQueue(MAX_WAITING, (error: unknown) => {
        this.#log.error(
          { err: error, channel: channel.kind, target: channel.target },
          "delivery failed",
        );
      });
      channels.push({ ...channel, queue });
    };
    const email = this.#config.email;
    if (email !== undefined) {
      add({
        kind: "email",
        target: emailTarget(email),
        burst: true,
        perTransition: false,
        send: (n) =>
          sendEmail(
            email,
            { subject: emailSubject(n, email.subject_prefix), text: textBody(n) },
            { ...deps, hostname: this.#hostname },
          ),
      });
    }
    for (const webhook of this.#config.webhooks) {
      add({
        kind: "webhook",
        target: webhookTarget(webhook),
        burst: true,
        perTransition: false,
        send: (n) => postWebhook(webhook, webhookPayload(n), deps),
      });
    }
    for (const hook of this.#config.hooks) {
      add({
        kind: "hook",
        target: hookTarget(hook),
        burst: hook.run === "burst",
        perTransition: hook.run === "transition",
        send: async (n, event) => {
          await runHook(hook, hookEnvironment(event, n.transitions, n.omitted, n.role), deps);
          return 1;
        },
      });
    }
    return channels;
  }

  /** Sends the open burst to every burst channel. Never throws (it runs in a timer). */
  #sendBurst(): void {
    try {
      this.#window = undefined;
      const transitions = this.#pending;
      const omitted = this.#omitted;
      this.#pending = [];
      this.#omitted = 0;
      if (transitions.length === 0) return;
      const notification = this.#compose("transitions", transitions, omitted, true);
      for (const channel of this.#channels) {
        if (channel.burst) this.#enqueue(channel, notification, "burst");
      }
    } catch (error) {
      this.#logError(error, "sending a burst of notifications failed");
    }
  }

  /** Logs an unexpected error; a logger that throws is ignored. */
  #logError(error: unknown, message: string): void {
    try {
      this.#log.error({ err: error }, message);
    } catch {
      // Nothing left to tell.
    }
  }

  #enqueue(channel: Channel, notification: Notification, event: HookEvent): void {
    const queued = channel.queue.push(async () => {
      await this.#deliver(channel, notification, event);
    });
    if (!queued) {
      this.#log.error(
        { channel: channel.kind, target: channel.target, summary: summary(notification) },
        `${channel.kind} ${channel.target}: ${MAX_WAITING} messages already wait; dropped this one`,
      );
    }
  }

  /** Sends on one channel; logs and returns the outcome. Never rejects. */
  async #deliver(
    channel: Channel,
    notification: Notification,
    event: HookEvent,
  ): Promise<NotifyResult> {
    const started = this.#clock.now();
    const base = { channel: channel.kind, target: channel.target };
    const about = summary(notification);
    try {
      const attempts = await channel.send(notification, event);
      const durationMs = Math.round(this.#clock.now() - started);
      this.#log.info(
        { ...base, attempts, durationMs, summary: about },
        `${channel.kind} ${channel.target}: sent "${about}"`,
      );
      return { ...base, ok: true, attempts, durationMs };
    } catch (caught) {
      const durationMs = Math.round(this.#clock.now() - started);
      const attempts = caught instanceof RetriesExhausted ? caught.attempts : 1;
      const error =
        caught instanceof RetriesExhausted
          ? caught.error
          : caught instanceof NotifyError
            ? caught
            : new NotifyError(channel.kind, channel.target, String(caught), {
                retryable: false,
                cause: caught,
              });
      this.#log.error(
        { ...base, attempts, durationMs, summary: about, code: error.code, err: error },
        `${error.message} (after ${attempts} attempt${attempts === 1 ? "" : "s"}); "${about}" not sent`,
      );
      return { ...base, ok: false, attempts, durationMs, code: error.code, error: error.message };
    }
  }

  #compose(
    kind: Notification["kind"],
    transitions: readonly NotifiedTransition[],
    omitted: number,
    withStatus: boolean,
  ): Notification {
    return {
      kind,
      host: this.#hostname,
      time: new Date(this.#clock.wall()).toISOString(),
      transitions,
      omitted,
      uplinks: withStatus ? this.#status() : null,
    };
  }

  #status(): readonly NotifyUplinkStatus[] | null {
    if (this.#statusProvider === undefined) return null;
    try {
      return this.#statusProvider();
    } catch (error) {
      this.#log.warn({ err: error }, "uplink status for the notification failed; left out");
      return null;
    }
  }

  #safeInterfaceOf(uplink: string): string | null {
    try {
      return this.#interfaceOf(uplink) ?? null;
    } catch (error) {
      this.#log.warn({ err: error, uplink }, "interface of the uplink unknown");
      return null;
    }
  }
}

/**
 * `uplinkd notify-test`: sends a test notification through every channel of
 * `config` (see {@link Notifier.test}).
 *
 * @param config the `notify` section (durations in ms).
 * @param options as for the Notifier; `interfaceOf` is not needed for a test.
 * @returns one result per channel (email, webhooks, hooks in config order);
 *   empty when nothing is configured. Never rejects.
 */
export function notifyTest(
  config: NotifyConfig,
  log: Logger,
  options: Partial<NotifierOptions> = {},
): Promise<NotifyResult[]> {
  return new Notifier(config, log, { interfaceOf: () => undefined, ...options }).test();
}

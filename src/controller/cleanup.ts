/**
 * Which connections to clear, derived from the change in desired state,
 * and the lane that clears them (`conntrack -D -m MARK/MASK`), apart from
 * the kernel changes so that a slow or hung deletion never holds back a
 * failover.
 */
import type { Logger } from "pino";
import type { Family, Kernel } from "../kernel/types.js";
import { SerialQueue } from "../queue.js";

/** What clean-up needs to know of one uplink in one applied desired state. */
export interface UplinkSummary {
  name: string;
  /** fwmark/connmark of the uplink (inside `mask`). */
  mark: number;
  mask: number;
  /** Its link or its health checks say it cannot carry traffic (maintenance ignored). */
  failed: boolean;
  /** Some policy gives it new connections in this state. */
  active: boolean;
  /**
   * Its IPv6 cannot carry traffic (IPv6 health or link bad, or no IPv6
   * address), maintenance ignored; absent when not judged apart from
   * IPv4 (then `failed` clears both families).
   */
  failed6?: boolean;
  /** Some policy gives it new IPv6 connections in this state. */
  active6?: boolean;
  /**
   * Another uplink that is not failed takes new connections of a policy
   * this uplink is a member of: its connections have somewhere better to
   * go. Absent: assumed true.
   */
  alternative?: boolean;
  /** The same for IPv6 (judged with `failed6`). */
  alternative6?: boolean;
}

/** One clean-up: delete the conntrack entries carrying `mark` under `mask`. */
export interface StaleUplink {
  name: string;
  mark: number;
  mask: number;
  /** Why, for the log: `failed`, `left every policy while failed`, `removed`, `mark changed`, `IPv6 failed`. */
  why: string;
  /** The family whose entries go (`conntrack -D -f ipv4|ipv6`); absent: both. */
  family?: Family;
}

/**
 * The uplinks whose connections are stale after the kernel moved from the
 * state `before` to `after` (each the summary of an applied desired state):
 * - an uplink that failed (its health or link went bad): its connections
 *   would hang on a dead path;
 * - a failed uplink that left every policy (a last resort had put new
 *   connections on it, and another uplink came back): a client reusing
 *   such a 5-tuple would otherwise stay on the dead uplink;
 * - an uplink that a reload removed, or whose mark changed: entries with
 *   the old mark no longer lead anywhere.
 * A failed uplink whose policies have no usable alternative (every other
 * member failed too: a probe-target outage, or a single uplink) keeps its
 * connections: clearing them would only re-balance them onto another
 * failed uplink, with another source address. They are cleared when an
 * alternative appears while the uplink is still failed.
 * Maintenance alone (`disable` without drain) clears nothing. When the
 * summaries judge IPv6 apart (`failed6`), a failed IPv4 clears the IPv4
 * entries only, and a failed IPv6 (or one that left every policy while
 * failed) the IPv6 entries only; a removed uplink or a changed mark
 * clears both.
 *
 * @param before the last applied state's summary; undefined before the first apply (nothing is stale).
 * @returns one entry per mark to clear, by the mark the entries carry now.
 */
export function staleUplinks(
  before: readonly UplinkSummary[] | undefined,
  after: readonly UplinkSummary[],
): StaleUplink[] {
  if (before === undefined) return [];
  const next = new Map(after.map((u) => [u.name, u]));
  const stale: StaleUplink[] = [];
  for (const old of before) {
    const now = next.get(old.name);
    let why: string | undefined;
    if (now === undefined) why = "removed";
    else if (now.mark !== old.mark || now.mask !== old.mask) why = "mark changed";
    else if (now.failed && !old.failed && now.alternative !== false) why = "failed";
    else if (now.failed && now.alternative !== false && old.alternative === false) {
      why = "failed; an alternative is usable now";
    } else if (now.failed && old.active && !now.active) why = "left every policy while failed";
    const apart = now?.failed6 !== undefined && old.failed6 !== undefined;
    if (why !== undefined) {
      const v4only = apart && why !== "removed" && why !== "mark changed";
      stale.push({
        name: old.name,
        mark: old.mark,
        mask: old.mask,
        why,
        ...(v4only ? { family: 4 as const } : {}),
      });
    }
    if (now === undefined || !apart || why === "removed" || why === "mark changed") continue;
    let why6: string | undefined;
    if (now.failed6 === true && old.failed6 !== true && now.alternative6 !== false) {
      why6 = "IPv6 failed";
    } else if (now.failed6 === true && now.alternative6 !== false && old.alternative6 === false) {
      why6 = "IPv6 failed; an alternative is usable now";
    } else if (now.failed6 === true && old.active6 === true && now.active6 !== true) {
      why6 = "left every IPv6 policy while IPv6 failed";
    }
    if (why6 !== undefined) {
      stale.push({ name: old.name, mark: old.mark, mask: old.mask, why: why6, family: 6 });
    }
  }
  return stale;
}

/** Options of a {@link ConntrackCleaner}. */
export interface ConntrackCleanerOptions {
  kernel: Pick<Kernel, "conntrackDelete">;
  log: Logger;
  /** Delay before retry `attempt` (1, 2, ...) of a failed deletion, ms. */
  retryDelayMs: (attempt: number) => number;
  /** Attempts per clean-up before it is given up (logged), default 5. */
  attempts?: number;
  /** Waits `ms`; injected so tests need not sleep. */
  sleep: (ms: number) => Promise<void>;
}

/**
 * Deletes conntrack entries one clean-up at a time, in order, on its own
 * lane. A clean-up already waiting for the same mark is not queued twice.
 * A failed deletion (the command failed or timed out) is logged and retried
 * after a backoff, up to `attempts` times.
 */
export class ConntrackCleaner {
  readonly #options: ConntrackCleanerOptions;
  readonly #queue: SerialQueue;
  /** Marks (`mark/mask`) waiting in the queue -> the promise of their deletion. */
  readonly #waiting = new Map<string, Promise<number>>();
  #stopped = false;

  constructor(options: ConntrackCleanerOptions) {
    this.#options = options;
    this.#queue = new SerialQueue(1000, (error: unknown) => {
      options.log.error({ err: error }, `conntrack clean-up: ${String(error)}`);
    });
  }

  /**
   * Queue the deletion of every entry of `stale.mark/stale.mask`.
   * @returns the number of entries deleted (over all attempts); rejects with
   *   the last error when every attempt failed, or when stopped first.
   */
  clear(stale: StaleUplink): Promise<number> {
    const key = `${stale.mark}/${stale.mask}/${stale.family ?? "all"}`;
    const waiting = this.#waiting.get(key);
    if (waiting !== undefined) return waiting;
    const done = new Promise<number>((resolve, reject) => {
      this.#queue.push(async () => {
        this.#waiting.delete(key);
        try {
          resolve(await this.#delete(stale));
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
    });
    this.#waiting.set(key, done);
    return done;
  }

  async #delete(stale: StaleUplink): Promise<number> {
    const { kernel, log } = this.#options;
    const attempts = this.#options.attempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      if (this.#stopped) throw new Error(`clean-up of ${stale.name} not done: stopping`);
      try {
        const deleted =
          stale.family === undefined
            ? await kernel.conntrackDelete(stale.mark, stale.mask)
            : await kernel.conntrackDelete(stale.mark, stale.mask, stale.family);
        log.info(
          { uplink: stale.name, deleted, why: stale.why, family: stale.family },
          `cleared ${deleted} conntrack entries of ${stale.name} (${stale.why})`,
        );
        return deleted;
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (attempt >= attempts) {
          log.error(
            { uplink: stale.name, err: error, attempt },
            `clearing conntrack entries of ${stale.name} failed ${attempt} times; giving up: ${message}`,
          );
          throw error;
        }
        const delay = this.#options.retryDelayMs(attempt);
        log.warn(
          { uplink: stale.name, err: error, attempt, retryInMs: delay },
          `clearing conntrack entries of ${stale.name} failed (attempt ${attempt}); retrying in ${delay} ms: ${message}`,
        );
        await this.#options.sleep(delay);
      }
    }
  }

  /** Resolves when every queued clean-up has ended. */
  idle(): Promise<void> {
    return this.#queue.idle();
  }

  /** No more retries; queued deletions end with an error. */
  stop(): void {
    this.#stopped = true;
  }
}

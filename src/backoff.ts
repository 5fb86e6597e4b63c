/**
 * Exponential backoff, the one used everywhere a failed thing is tried
 * again: restarting a child process (`ip monitor`, ping) and retrying a
 * notification. The delay after the n-th failure in a row is
 * `base * factor^(n-1)`, at most `max`; a success, or a run that lasted long
 * enough, starts the count again. No timers here: callers schedule the
 * delay on their clock.
 */

/** How delays grow. All times in ms. */
export interface BackoffPolicy {
  /** Delay after the first failure, ms (>= 0). */
  baseMs: number;
  /** Growth per further failure in a row (>= 1; 2 doubles). */
  factor: number;
  /** Upper bound of the delay, ms. */
  maxMs: number;
  /**
   * A run at least this long (ms) before the failure counts as a success:
   * the count starts again (see {@link Backoff.next}). Absent: never.
   */
  resetAfterMs?: number;
}

/**
 * The delay after failure number `failures` in a row (1-based; below 1
 * counts as 1): `min(maxMs, baseMs * factor^(failures-1))`, in ms. Pure.
 */
export function backoffDelay(policy: BackoffPolicy, failures: number): number {
  const exponent = Math.max(0, Math.floor(failures) - 1);
  return Math.min(policy.maxMs, policy.baseMs * policy.factor ** exponent);
}

/**
 * The failure count of one thing that is tried again, and the delay each
 * failure earns. A small counter around {@link backoffDelay}.
 *
 *     const backoff = new Backoff({ baseMs: 500, factor: 2, maxMs: 5000, resetAfterMs: 10_000 });
 *     child.onExit(() => clock.setTimeout(restart, backoff.next(clock.now() - startedAt)));
 */
export class Backoff {
  readonly policy: Readonly<BackoffPolicy>;
  #failures = 0;

  constructor(policy: BackoffPolicy) {
    this.policy = { ...policy };
  }

  /** Failures in a row so far. */
  get failures(): number {
    return this.#failures;
  }

  /**
   * Counts one more failure and returns the delay before the next try, ms.
   *
   * @param ranMs how long the failed run lasted, ms; when at least
   *   `policy.resetAfterMs`, the count starts again first (the delay is `baseMs`).
   */
  next(ranMs?: number): number {
    const resetAfter = this.policy.resetAfterMs;
    if (resetAfter !== undefined && ranMs !== undefined && ranMs >= resetAfter) this.#failures = 0;
    this.#failures++;
    return backoffDelay(this.policy, this.#failures);
  }

  /** A success: the next failure waits `baseMs` again. */
  reset(): void {
    this.#failures = 0;
  }
}

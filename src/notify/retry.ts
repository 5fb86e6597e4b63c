/**
 * Retries with exponential backoff (the program's one, ../backoff.ts), on an
 * injected clock.
 */
import { backoffDelay, type BackoffPolicy } from "../backoff.js";
import { sleep, type Clock } from "../clock.js";
import { NotifyError } from "./errors.js";

/** Longest wait between two attempts, in ms, whatever the doubling gives. */
export const MAX_BACKOFF_MS = 300_000;

/** How often and how patiently to retry. */
export interface RetryPolicy {
  /** Further attempts after the first one (0: try once). */
  retries: number;
  /** Wait before the first retry, ms; doubled before each further one, capped at MAX_BACKOFF_MS. */
  backoffMs: number;
}

/**
 * The program's backoff ({@link BackoffPolicy}) a retry policy stands for:
 * the wait before retry number n (1-based) is `backoffMs * 2^(n-1)`, at most
 * {@link MAX_BACKOFF_MS}.
 */
export function retryBackoff(policy: RetryPolicy): BackoffPolicy {
  return { baseMs: policy.backoffMs, factor: 2, maxMs: MAX_BACKOFF_MS };
}

/** A failed attempt, as `onRetry` sees it before waiting. */
export interface FailedAttempt {
  /** The attempt that failed, 1-based. */
  attempt: number;
  error: NotifyError;
  /** ms until the next attempt. */
  delayMs: number;
}

/**
 * Runs `attempt` until it resolves, it throws an error that is not
 * retryable, or `policy.retries` retries are used up.
 *
 * @param attempt gets the attempt number (1-based).
 * @param onRetry called after each failed attempt that will be retried.
 * @param toNotifyError turns anything else `attempt` throws into a NotifyError.
 * @returns the number of attempts made (>= 1).
 * @throws {RetriesExhausted} carrying the last attempt's NotifyError and the
 *   number of attempts made.
 */
export async function withRetries(
  attempt: (n: number) => Promise<void>,
  policy: RetryPolicy,
  clock: Clock,
  toNotifyError: (error: unknown) => NotifyError,
  onRetry?: (failed: FailedAttempt) => void,
): Promise<number> {
  const attempts = Math.max(1, Math.floor(policy.retries) + 1);
  const backoff = retryBackoff(policy);
  for (let n = 1; ; n++) {
    try {
      await attempt(n);
      return n;
    } catch (caught) {
      const error = caught instanceof NotifyError ? caught : toNotifyError(caught);
      if (!error.retryable || n >= attempts) throw new RetriesExhausted(error, n);
      const delayMs = backoffDelay(backoff, n);
      onRetry?.({ attempt: n, error, delayMs });
      await sleep(clock, delayMs);
    }
  }
}

/**
 * Thrown by {@link withRetries} when it gives up: carries the last error
 * and the number of attempts made. Not an `UplinkdError`: it is unwrapped
 * by the notifier before anything is reported.
 */
export class RetriesExhausted extends Error {
  readonly error: NotifyError;
  readonly attempts: number;
  constructor(error: NotifyError, attempts: number) {
    super(error.message, { cause: error });
    this.name = "RetriesExhausted";
    this.error = error;
    this.attempts = attempts;
  }
}

/**
 * Time, injected everywhere it matters: a monotonic clock (ms) for every
 * decision and duration, a wall clock (ms since the epoch) only for stamping
 * events and messages, and timers. One shape for the whole program: the
 * health checks, the link monitor, the notifiers and the restart and retry
 * backoffs all take a {@link Clock}. The daemon uses {@link systemClock};
 * unit tests use a manual clock (test/fakes/clock.ts) and never sleep.
 */
import { performance } from "node:perf_hooks";

/** An opaque handle for a scheduled callback; pass it to `Clock.clearTimeout`. */
export interface TimerHandle {
  readonly id: number;
}

/** What uplinkd needs from time. */
export interface Clock {
  /** Monotonic time in ms (never jumps back; origin unspecified). */
  now(): number;
  /** Wall-clock time in ms since 1970-01-01 UTC (may jump); only for stamping events. */
  wall(): number;
  /** Runs `fn` once after `delayMs` ms (clamped to >= 0). */
  setTimeout(fn: () => void, delayMs: number): TimerHandle;
  /** Cancels a timer; cancelling a fired or unknown timer does nothing. */
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock: `performance.now()`, `Date.now()` and Node's timers. */
export class SystemClock implements Clock {
  readonly #timers = new Map<number, NodeJS.Timeout>();
  #nextId = 1;

  now(): number {
    return performance.now();
  }

  wall(): number {
    return Date.now();
  }

  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    const id = this.#nextId++;
    const timer = setTimeout(
      () => {
        this.#timers.delete(id);
        fn();
      },
      Math.max(0, delayMs),
    );
    this.#timers.set(id, timer);
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    const timer = this.#timers.get(handle.id);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.#timers.delete(handle.id);
    }
  }
}

/** The process-wide real clock. */
export const systemClock: Clock = new SystemClock();

/**
 * Resolves after `delayMs` ms of `clock` time. Never rejects.
 *
 * @param delayMs ms, clamped to >= 0.
 */
export function sleep(clock: Clock, delayMs: number): Promise<void> {
  return new Promise((resolve) => {
    clock.setTimeout(resolve, delayMs);
  });
}

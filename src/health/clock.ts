/**
 * Time for the health checks, injected: a monotonic clock (ms) for every
 * decision, a wall clock (ms since the epoch) only for stamping transitions,
 * and timers. The daemon uses {@link systemClock}; unit tests use
 * {@link ManualClock} and never sleep.
 */
import { performance } from "node:perf_hooks";

/** An opaque handle for a scheduled callback; pass it to `Clock.clearTimeout`. */
export interface TimerHandle {
  readonly id: number;
}

/** What the health code needs from time. */
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

interface ManualTimer {
  id: number;
  at: number;
  fn: () => void;
}

/**
 * A clock that moves only when told to. `advance(ms)` runs every timer that
 * falls due, in time order (timers due at the same ms in the order they were
 * set), with `now()` equal to each timer's due time while it runs; timers set
 * by a running timer fire in the same `advance` when they fall due.
 */
export class ManualClock implements Clock {
  #now: number;
  readonly #wallOrigin: number;
  #timers: ManualTimer[] = [];
  #nextId = 1;

  /**
   * @param start monotonic start time in ms (default 0).
   * @param wallOrigin wall-clock ms since the epoch at `start` (default 2023-11-14T22:13:20Z).
   */
  constructor(start = 0, wallOrigin = 1_700_000_000_000) {
    this.#now = start;
    this.#wallOrigin = wallOrigin - start;
  }

  now(): number {
    return this.#now;
  }

  wall(): number {
    return this.#wallOrigin + this.#now;
  }

  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    const timer: ManualTimer = { id: this.#nextId++, at: this.#now + Math.max(0, delayMs), fn };
    // Keep the list sorted by due time, stable for equal times.
    let i = this.#timers.length;
    while (i > 0 && (this.#timers[i - 1] as ManualTimer).at > timer.at) i--;
    this.#timers.splice(i, 0, timer);
    return { id: timer.id };
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers = this.#timers.filter((t) => t.id !== handle.id);
  }

  /** Number of timers not yet fired. */
  get pending(): number {
    return this.#timers.length;
  }

  /**
   * Moves time forward by `ms`, firing due timers in order.
   *
   * @throws {RangeError} when `ms` is negative, or when more than
   *   `maxTimers` timers fire in one call (a runaway zero-delay loop).
   */
  advance(ms: number, maxTimers = 10_000_000): void {
    if (ms < 0) throw new RangeError(`cannot move a clock back (advance(${ms}))`);
    this.advanceTo(this.#now + ms, maxTimers);
  }

  /**
   * Moves time forward to `time` (ms), firing due timers in order.
   *
   * @throws {RangeError} as {@link ManualClock.advance}.
   */
  advanceTo(time: number, maxTimers = 10_000_000): void {
    if (time < this.#now) throw new RangeError(`cannot move a clock back to ${time}`);
    let fired = 0;
    for (;;) {
      const next = this.#timers[0];
      if (next === undefined || next.at > time) break;
      if (++fired > maxTimers) {
        throw new RangeError(`more than ${maxTimers} timers fired in one advance`);
      }
      this.#timers.shift();
      this.#now = next.at;
      next.fn();
    }
    this.#now = time;
  }
}

/**
 * A clock for unit tests that moves only when told to: the {@link Clock} of
 * src/clock.ts without real time, so state machines, backoffs and timeouts
 * are tested without sleeping.
 */
import type { Clock, TimerHandle } from "../../src/clock.js";

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

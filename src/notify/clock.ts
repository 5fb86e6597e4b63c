/**
 * Time for the notifiers, injected so tests can control it: a monotonic
 * clock for durations, a wall clock for stamping messages, and timers for
 * the coalescing window, retry backoff and timeouts. The shape is the same
 * as the health checks' clock, so the daemon can pass one clock to both.
 */
import { performance } from "node:perf_hooks";

/** An opaque handle of a scheduled callback; pass it to `NotifyClock.clearTimeout`. */
export interface NotifyTimerHandle {
  readonly id: number;
}

/** What the notifiers need from time. */
export interface NotifyClock {
  /** Monotonic time in ms (origin unspecified); used for durations only. */
  now(): number;
  /** Wall-clock time in ms since 1970-01-01 UTC; used to stamp messages. */
  wall(): number;
  /** Runs `fn` once after `delayMs` ms (clamped to >= 0). */
  setTimeout(fn: () => void, delayMs: number): NotifyTimerHandle;
  /** Cancels a timer; cancelling a fired or unknown timer does nothing. */
  clearTimeout(handle: NotifyTimerHandle): void;
}

/** The real clock: `performance.now()`, `Date.now()` and Node's timers. */
export const systemNotifyClock: NotifyClock = (() => {
  const timers = new Map<number, NodeJS.Timeout>();
  let nextId = 1;
  return {
    now: () => performance.now(),
    wall: () => Date.now(),
    setTimeout(fn: () => void, delayMs: number): NotifyTimerHandle {
      const id = nextId++;
      const timer = setTimeout(
        () => {
          timers.delete(id);
          fn();
        },
        Math.max(0, delayMs),
      );
      timers.set(id, timer);
      return { id };
    },
    clearTimeout(handle: NotifyTimerHandle): void {
      const timer = timers.get(handle.id);
      if (timer !== undefined) {
        clearTimeout(timer);
        timers.delete(handle.id);
      }
    },
  };
})();

/**
 * Resolves after `delayMs` ms of `clock` time. Never rejects.
 *
 * @param delayMs ms, clamped to >= 0.
 */
export function sleep(clock: NotifyClock, delayMs: number): Promise<void> {
  return new Promise((resolve) => {
    clock.setTimeout(resolve, delayMs);
  });
}

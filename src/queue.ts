/**
 * A serial queue: tasks one at a time and in order. Notifications use one per
 * channel (so that "isp1 down" never arrives after the "isp1 up" that
 * followed it), the controller one for conntrack clean-up; `maxWaiting`
 * bounds how many may wait behind a stalled task.
 */

/**
 * Runs tasks one after the other. A task's rejection is passed to
 * `onError` and does not stop the queue.
 */
export class SerialQueue {
  readonly #maxWaiting: number;
  readonly #onError: (error: unknown) => void;
  #tail: Promise<void> = Promise.resolve();
  #waiting = 0;
  #running = 0;

  /**
   * @param maxWaiting tasks that may wait behind the running one; more are refused.
   * @param onError gets whatever a task throws or rejects with.
   */
  constructor(maxWaiting: number, onError: (error: unknown) => void) {
    this.#maxWaiting = maxWaiting;
    this.#onError = onError;
  }

  /** Tasks waiting or running. */
  get size(): number {
    return this.#waiting + this.#running;
  }

  /**
   * Queues `task` behind every task queued before it. Never throws.
   *
   * @returns false (and drops the task) when `maxWaiting` tasks already wait.
   */
  push(task: () => Promise<void>): boolean {
    if (this.#waiting >= this.#maxWaiting) return false;
    this.#waiting++;
    this.#tail = this.#tail.then(async () => {
      this.#waiting--;
      this.#running++;
      try {
        await task();
      } catch (error) {
        try {
          this.#onError(error);
        } catch {
          // An error handler that throws must not break the chain.
        }
      } finally {
        this.#running--;
      }
    });
    return true;
  }

  /** Resolves once every task queued so far has ended. Never rejects. */
  idle(): Promise<void> {
    return this.#tail;
  }
}

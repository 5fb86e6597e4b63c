/**
 * A bounded list of the most recent items, oldest first: the daemon's
 * transitions and role changes for the control API.
 */
export class Ring<T> {
  readonly #items: T[] = [];
  readonly #limit: number;

  /**
   * @param limit most items kept (at least 1); the oldest go first.
   * @throws {RangeError} when `limit` is not a positive integer.
   */
  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`ring limit must be a positive integer, not ${limit}`);
    }
    this.#limit = limit;
  }

  /** Add `item` as the newest; drops the oldest beyond the limit. */
  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length > this.#limit) this.#items.splice(0, this.#items.length - this.#limit);
  }

  /** The items kept, oldest first (a view: do not change it). */
  get items(): readonly T[] {
    return this.#items;
  }
}

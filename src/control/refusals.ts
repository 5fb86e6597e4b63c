/**
 * Refused control requests, logged at most once per source per interval:
 * the first refusal from an address is logged at once; further ones within
 * the interval are only counted, and the count goes with the next line
 * logged for that address. 20,000 refused requests in 8 s make a handful
 * of lines, not 20,000.
 */
import type { Clock } from "../clock.js";

/** What one line reports. */
export interface RefusalLine {
  /** The client's address (`192.0.2.7`), or `unix` for the control socket. */
  source: string;
  method: string;
  path: string;
  status: number;
  message: string;
  /** Refusals from this source left unlogged since its previous line. */
  suppressed: number;
}

/** Counts refusals per source and lets one line per interval through. */
export class RefusalLog {
  readonly #intervalMs: () => number;
  readonly #clock: Pick<Clock, "now">;
  readonly #write: (line: RefusalLine) => void;
  readonly #sources = new Map<string, { lastMs: number; suppressed: number }>();

  /**
   * @param intervalMs shortest time between two lines for one source, ms (> 0),
   *   read at each refusal (a reload may change it).
   * @param write called with each line to log.
   * @param maxSources sources remembered at once (oldest forgotten first), so a
   *   scan from many addresses cannot grow the map without bound.
   */
  constructor(
    intervalMs: () => number,
    clock: Pick<Clock, "now">,
    write: (line: RefusalLine) => void,
    readonly maxSources = 4096,
  ) {
    this.#intervalMs = intervalMs;
    this.#clock = clock;
    this.#write = write;
  }

  /** Note one refused request; logs it unless its source had a line within the interval. */
  note(refusal: Omit<RefusalLine, "suppressed">): void {
    const now = this.#clock.now();
    const seen = this.#sources.get(refusal.source);
    if (seen !== undefined && now - seen.lastMs < this.#intervalMs()) {
      seen.suppressed += 1;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.#sources.delete(refusal.source);
    this.#sources.set(refusal.source, { lastMs: now, suppressed: 0 });
    if (this.#sources.size > this.maxSources) {
      const oldest = this.#sources.keys().next().value;
      if (oldest !== undefined) this.#sources.delete(oldest);
    }
    this.#write({ ...refusal, suppressed });
  }
}

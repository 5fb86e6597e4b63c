/**
 * RTT-aware probe timeouts (`health.timeout: auto`): each target's timeout
 * follows its measured RTT the way TCP's retransmission timer does
 * (RFC 6298, section 2):
 *
 * - first RTT sample R: SRTT = R, RTTVAR = R / 2;
 * - each later sample R': RTTVAR = (1 - β)·RTTVAR + β·|SRTT - R'|, then
 *   SRTT = (1 - α)·SRTT + α·R', with α = 1/8, β = 1/4;
 * - RTO = SRTT + max(G, 4·RTTVAR), clamped to [floor, ceiling]; before the
 *   first sample RTO is the ceiling (RFC 6298 starts at 1 s).
 *
 * Differences from TCP, since a probe is never retransmitted: every answer
 * is an unambiguous sample (Karn's rule has nothing to exclude), an answer
 * that came later than its probe's timeout is still a sample (it counts as
 * lost, but its RTT is real, so the timeout grows after an RTT step), and a
 * lost probe does not double the timeout (RFC 6298's back-off would slow
 * down the detection of a dead uplink).
 */

/** Floor and ceiling of an RTT-aware timeout, ms. */
export interface AdaptiveTimeout {
  /** Lowest timeout, ms > 0: covers scheduling delays on a line with ~0 ms RTT. */
  minMs: number;
  /** Highest timeout, ms >= minMs; also the timeout before the first answer. */
  maxMs: number;
}

/** Smoothing gain of SRTT (RFC 6298 α). */
export const RTO_ALPHA = 1 / 8;
/** Smoothing gain of RTTVAR (RFC 6298 β). */
export const RTO_BETA = 1 / 4;
/** Weight of RTTVAR in the RTO (RFC 6298 K). */
export const RTO_K = 4;
/** Clock granularity G, ms: the least variation term. */
export const RTO_GRANULARITY_MS = 1;

/** One target's RTO estimator. Pure: no clock, no timers. */
export class RtoEstimator {
  readonly minMs: number;
  readonly maxMs: number;
  #srtt: number | undefined;
  #rttvar = 0;
  #samples = 0;

  /** @throws {RangeError} when the floor is not > 0 or the ceiling is below it. */
  constructor(limits: AdaptiveTimeout) {
    if (!(limits.minMs > 0))
      throw new RangeError(`timeout floor must be > 0 ms, got ${limits.minMs}`);
    if (!(limits.maxMs >= limits.minMs)) {
      throw new RangeError(
        `timeout ceiling (${limits.maxMs} ms) must be >= its floor (${limits.minMs} ms)`,
      );
    }
    this.minMs = limits.minMs;
    this.maxMs = limits.maxMs;
  }

  /** Smoothed RTT in ms, or null before the first sample. */
  get srttMs(): number | null {
    return this.#srtt ?? null;
  }

  /** RTT variation in ms (0 before the first sample). */
  get rttvarMs(): number {
    return this.#rttvar;
  }

  /** RTT samples taken. */
  get samples(): number {
    return this.#samples;
  }

  /** Takes one RTT sample (ms, >= 0; anything else is ignored). */
  sample(rttMs: number): void {
    if (!(rttMs >= 0) || !Number.isFinite(rttMs)) return;
    this.#samples++;
    if (this.#srtt === undefined) {
      this.#srtt = rttMs;
      this.#rttvar = rttMs / 2;
      return;
    }
    this.#rttvar = (1 - RTO_BETA) * this.#rttvar + RTO_BETA * Math.abs(this.#srtt - rttMs);
    this.#srtt = (1 - RTO_ALPHA) * this.#srtt + RTO_ALPHA * rttMs;
  }

  /** The timeout for a probe sent now, ms, in [minMs, maxMs]. */
  timeoutMs(): number {
    if (this.#srtt === undefined) return this.maxMs;
    const rto = this.#srtt + Math.max(RTO_GRANULARITY_MS, RTO_K * this.#rttvar);
    return Math.min(this.maxMs, Math.max(this.minMs, rto));
  }
}

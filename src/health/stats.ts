/**
 * Uplink-level statistics from per-target window statistics, and the
 * probability that random loss alone fails a round.
 */
import type { WindowStats } from "./window.js";

/** One target's window statistics, named. */
export interface TargetStats extends WindowStats {
  /** Display name of the target (`198.51.100.1`, `tcp:198.51.100.1:443`). */
  target: string;
}

/**
 * The uplink's loss, RTT and jitter: with `reliability` r, each is the r-th
 * best value among the targets that have at least `minSamples` resolved
 * probes, i.e. the level that r targets reach, as a round needs r targets.
 * With r = 1 and two targets, a dead target host does not make a good
 * uplink look bad. Null when fewer than r targets have enough samples.
 */
export interface UplinkStats {
  /** Loss in % (0..100), or null. */
  lossPct: number | null;
  /** Mean RTT in ms, or null. */
  rttMs: number | null;
  /** Jitter (RTT standard deviation) in ms, or null. */
  jitterMs: number | null;
  /** Per-target statistics, in target order. */
  targets: TargetStats[];
}

/** The `rank`-th smallest (1-based) of `values`, or null when there are fewer. */
function rankSmallest(values: readonly number[], rank: number): number | null {
  if (values.length < rank) return null;
  return [...values].sort((a, b) => a - b)[rank - 1] ?? null;
}

/**
 * Aggregates target statistics into uplink statistics.
 *
 * @param targets per-target statistics.
 * @param reliability r, >= 1: targets that must answer in a round.
 * @param minSamples resolved probes (received + lost) a target needs to count.
 */
export function uplinkStats(
  targets: readonly TargetStats[],
  reliability: number,
  minSamples = 1,
): UplinkStats {
  const usable = targets.filter((t) => t.received + t.lost >= minSamples);
  const losses = usable.flatMap((t) => (t.lossPct === null ? [] : [t.lossPct]));
  const rtts = usable.flatMap((t) => (t.rttMs === null ? [] : [t.rttMs]));
  const jitters = usable.flatMap((t) => (t.jitterMs === null ? [] : [t.jitterMs]));
  return {
    lossPct: rankSmallest(losses, reliability),
    rttMs: rankSmallest(rtts, reliability),
    jitterMs: rankSmallest(jitters, reliability),
    targets: [...targets],
  };
}

/**
 * Probability that a round fails by random loss alone: fewer than
 * `reliability` of the targets answer, each target independently losing a
 * probe with probability `lossPct[i] / 100` (Poisson-binomial).
 *
 * @param lossPct per-target loss in % (0..100).
 * @returns a probability in [0, 1].
 */
export function roundFailProbability(lossPct: readonly number[], reliability: number): number {
  // answers[k] = P(exactly k targets answered so far)
  let answers = [1];
  for (const loss of lossPct) {
    const p = Math.min(1, Math.max(0, loss / 100));
    const next = new Array<number>(answers.length + 1).fill(0);
    answers.forEach((q, k) => {
      next[k] = (next[k] ?? 0) + q * p;
      next[k + 1] = (next[k + 1] ?? 0) + q * (1 - p);
    });
    answers = next;
  }
  let fail = 0;
  for (let k = 0; k < Math.min(reliability, answers.length); k++) fail += answers[k] ?? 0;
  return Math.min(1, Math.max(0, fail));
}

/**
 * Failed rounds in a row needed for `down`: the smallest n >= `down` with
 * `pFail ^ n <= falseAlarm`, at most `down * stretchMax` (rounded down).
 * With `falseAlarm` 0 or `pFail` 0 it is `down`.
 *
 * @param pFail probability that random loss fails one round (0..1).
 */
export function requiredFailedRounds(
  down: number,
  pFail: number,
  falseAlarm: number,
  stretchMax: number,
): number {
  const cap = Math.max(down, Math.floor(down * stretchMax));
  if (falseAlarm <= 0 || pFail <= 0) return down;
  if (pFail >= 1) return cap;
  const n = Math.ceil(Math.log(falseAlarm) / Math.log(pFail) - 1e-9);
  return Math.min(cap, Math.max(down, n));
}

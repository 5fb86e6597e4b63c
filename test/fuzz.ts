/**
 * Shared settings of the property-based tests: a fixed seed, so a run in CI
 * is repeatable, and a bounded number of runs, so each property takes well
 * under a second or two.
 *
 * To search further, set `UPLINKD_FUZZ_SEED` (any integer) and
 * `UPLINKD_FUZZ_RUNS` (runs per property); a failure prints the seed and
 * the path that reproduce it.
 */
import type { Parameters } from "fast-check";

const DEFAULT_SEED = 20261202;

/**
 * fast-check parameters for one property.
 *
 * @param runs runs per property when `UPLINKD_FUZZ_RUNS` is not set.
 */
export function fuzzParameters<T>(runs: number): Parameters<T> {
  const seed = Number(process.env["UPLINKD_FUZZ_SEED"] ?? DEFAULT_SEED);
  const numRuns = Number(process.env["UPLINKD_FUZZ_RUNS"] ?? runs);
  return { seed, numRuns };
}

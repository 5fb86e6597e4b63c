/**
 * Summaries the results are made of: medians with spread, rounding.
 */
import { measure } from "./built.js";

/** Median, p90 (nearest rank), max and count of a list of numbers; nulls when empty. */
export interface Spread {
  median: number | null;
  p90: number | null;
  max: number | null;
  n: number;
}

/** Spread of the numbers in `values` (nulls, e.g. trials that never settled, are left out). */
export function spreadOf(values: readonly (number | null | undefined)[], digits = 1): Spread {
  const s = measure.spread(values.filter((v): v is number => typeof v === "number"));
  return {
    median: round(s.median, digits),
    p90: round(s.p90, digits),
    max: round(s.max, digits),
    n: s.n,
  };
}

/** `value` rounded to `digits` decimals; null stays null. */
export function round(value: number | null, digits = 1): number | null {
  if (value === null || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** a / b, or null when either is missing or b is 0. */
export function ratio(a: number | null, b: number | null, digits = 3): number | null {
  if (a === null || b === null || b === 0) return null;
  return round(a / b, digits);
}

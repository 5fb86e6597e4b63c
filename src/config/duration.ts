import { z } from "zod";

/**
 * Durations in the config: `"200ms"`, `"1.5s"`, `"2m"`, `"1h"`, or a bare
 * number of milliseconds.
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parse a duration into milliseconds.
 *
 * @param text e.g. `"200ms"`, `"5s"`, `"1.5s"`, `"10m"`, `"1h"`.
 * @returns the duration in ms (may be fractional only for sub-ms inputs).
 * @throws {Error} when the text is not a number followed by ms, s, m or h.
 */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/.exec(text);
  if (!match) {
    throw new Error(`"${text}" is not a duration; write e.g. 200ms, 5s, 10m, 1h`);
  }
  const [, amount, unit] = match as unknown as [string, string, string];
  return Number(amount) * (UNIT_MS[unit] ?? 1);
}

/**
 * Format a duration in ms the way the config writes it: the largest unit
 * that gives a whole number.
 *
 * @param ms milliseconds, >= 0.
 */
export function formatDuration(ms: number): string {
  for (const unit of ["h", "m", "s"] as const) {
    const size = UNIT_MS[unit] ?? 1;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** The text form of a duration, as `parseDuration` accepts it. */
const DURATION_TEXT = /^\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h)\s*$/;

/** A duration (`200ms`, `5s`, `1m`) or a number of ms; parsed to ms. */
export const duration = z
  .union(
    [
      z.number().nonnegative(),
      z.string().regex(DURATION_TEXT, "must be a duration such as 200ms, 5s, 1m or 1h"),
    ],
    { error: "must be a duration such as 200ms, 5s, 1m or 1h, or a number of ms" },
  )
  .transform((value, ctx) => {
    if (typeof value === "number") return value;
    try {
      return parseDuration(value);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
      return z.NEVER;
    }
  })
  .meta({ description: "duration: 200ms, 5s, 1m, or a number of ms" });

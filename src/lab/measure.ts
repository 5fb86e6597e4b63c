/**
 * Measuring failover from the client's side: pure functions over the
 * attempts of the traffic tool's `probe` mode.
 */
import type { ProbeAttempt } from "./traffic.js";

/**
 * Failover time: from `faultAt` to the start of the first new connection
 * after which every new connection succeeded.
 *
 * @param attempts probe attempts in any order (epoch ms).
 * @param faultAt when the fault was injected, epoch ms.
 * @param until attempts started after this are ignored (epoch ms; default all).
 * @returns ms after the fault (0 when no attempt after the fault failed), or
 *   null when the last attempt failed (no failover within the window).
 */
export function failoverMs(
  attempts: readonly ProbeAttempt[],
  faultAt: number,
  until = Number.POSITIVE_INFINITY,
): number | null {
  const after = attempts
    .filter((a) => a.at >= faultAt && a.at <= until)
    .sort((a, b) => a.at - b.at);
  let lastFailure = -1;
  after.forEach((a, i) => {
    if (!a.ok) lastFailure = i;
  });
  if (lastFailure === -1) return 0;
  const next = after[lastFailure + 1];
  return next === undefined ? null : next.at - faultAt;
}

/** Median, 90th percentile and maximum of a list of numbers (nearest rank); nulls when empty. */
export function spread(values: readonly number[]): {
  median: number | null;
  p90: number | null;
  max: number | null;
  n: number;
} {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  if (sorted.length === 0) return { median: null, p90: null, max: null, n: 0 };
  const mid = Math.floor(sorted.length / 2);
  const median =
    sorted.length % 2 === 1
      ? (sorted[mid] ?? 0)
      : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return { median, p90: rank(0.9) ?? null, max: sorted.at(-1) ?? null, n: sorted.length };
}

/**
 * Part 6: balance accuracy. 10,000 new TCP connections from the LAN client
 * through a router with four uplinks weighted 1:2:3:4; each uplink's share
 * of them (by the source address the echo host saw) against its weight's
 * share. With random per-connection choice, a share over n connections has
 * a standard deviation of sqrt(p (1 - p) / n): ~0.4 to 0.5 points at n =
 * 10,000; the chi-square p-value says whether the deviations are more than
 * chance.
 */
import type { Lab } from "../src/lab/lab.js";
import type { TrafficReport } from "../src/lab/traffic.js";
import { labDaemons } from "./built.js";
import type { BenchContext } from "./context.js";
import { round } from "./stats.js";

/** One uplink's share. */
export interface Share {
  uplink: string;
  weight: number;
  /** Weight / sum of weights, %. */
  expectedPct: number;
  /** Successful connections through it / all successful, %. */
  measuredPct: number;
  /** measured - expected, percentage points. */
  diffPoints: number;
  /** Binomial standard deviation of the share, points. */
  sdPoints: number;
}

/** Results of part 6. */
export interface BalanceResults {
  connections: number;
  ok: number;
  failed: number;
  /** Connections whose two answers came from different uplinks (should be 0). */
  inconsistent: number;
  shares: Share[];
  /** Largest |measured - expected|, points. */
  maxDiffPoints: number;
  chiSquare: number;
  /** Chance of a chi-square this large from weighted random choice alone. */
  pValue: number;
  durationMs: number;
}

/** 1 - P(X <= x) for X ~ chi-square with `df` degrees of freedom (df >= 1). */
export function chiSquareSurvival(x: number, df: number): number {
  if (x <= 0) return 1;
  const half = x / 2;
  if (df % 2 === 0) {
    // e^-x/2 * sum_{k < df/2} (x/2)^k / k!
    let term = 1;
    let sum = 1;
    for (let k = 1; k < df / 2; k++) {
      term *= half / k;
      sum += term;
    }
    return Math.exp(-half) * sum;
  }
  // Odd df: 2 (1 - Phi(sqrt x)) + sqrt(2x/pi) e^-x/2 * sum_{k=1}^{(df-1)/2} x^(k-1) / (3 * 5 * ... (2k-1))
  const s = Math.sqrt(x);
  let sum = 0;
  let term = 1;
  for (let k = 1; k <= (df - 1) / 2; k++) {
    if (k > 1) term *= x / (2 * k - 1);
    sum += term;
  }
  return erfc(s / Math.SQRT2) + Math.sqrt((2 * x) / Math.PI) * Math.exp(-half) * sum;
}

/** Complementary error function (Numerical Recipes' erfcc, |error| < 1.2e-7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 +
                            t *
                              (-1.13520398 +
                                t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/**
 * Balance figures of one traffic run: each uplink's measured share
 * (`shares`: uplink number -> 0..1 of the successful connections) against
 * its weight's share, in percent and points, with a chi-square test.
 * @param count connections asked for.
 */
export function balanceResults(
  lab: Lab,
  weights: readonly number[],
  count: number,
  report: TrafficReport,
  shares: Map<number, number>,
): BalanceResults {
  const total = weights.reduce((a, b) => a + b, 0);
  let chi = 0;
  const rows: Share[] = lab.uplinks.map((u, i) => {
    const weight = weights[i] ?? 1;
    const p = weight / total;
    const measured = shares.get(u.number) ?? 0;
    const expectedCount = p * report.ok;
    const observed = measured * report.ok;
    chi += (observed - expectedCount) ** 2 / expectedCount;
    return {
      uplink: u.name,
      weight,
      expectedPct: round(p * 100, 2) ?? 0,
      measuredPct: round(measured * 100, 2) ?? 0,
      diffPoints: round((measured - p) * 100, 2) ?? 0,
      sdPoints: round(Math.sqrt((p * (1 - p)) / Math.max(1, report.ok)) * 100, 2) ?? 0,
    };
  });
  return {
    connections: count,
    ok: report.ok,
    failed: report.failed,
    inconsistent: report.inconsistent,
    shares: rows,
    maxDiffPoints: Math.max(...rows.map((r) => Math.abs(r.diffPoints))),
    chiSquare: round(chi, 2) ?? 0,
    pValue: round(chiSquareSurvival(chi, weights.length - 1), 3) ?? 0,
    durationMs: report.durationMs,
  };
}

/** Part 6. */
export async function balancePart(ctx: BenchContext): Promise<BalanceResults> {
  const weights = [1, 2, 3, 4];
  const count = ctx.quick ? 2000 : 10_000;
  return ctx.withLab("bal", { uplinks: weights.length, weights }, async (lab) => {
    const daemon = labDaemons.startLabDaemon(lab);
    try {
      await daemon.waitForStates(["up"], 30_000);
      const report = await labDaemons.lanTraffic(lab, count, { rounds: 2, concurrency: 50 });
      const result = balanceResults(
        lab,
        weights,
        count,
        report,
        labDaemons.sharesByUplink(report, lab),
      );
      const rows = result.shares;
      ctx.log(
        "balance",
        `${report.ok}/${count} ok; shares ${rows.map((r) => `${r.uplink} ${r.measuredPct}% (want ${r.expectedPct}%)`).join(", ")}`,
      );
      return result;
    } finally {
      await daemon.stop();
    }
  });
}

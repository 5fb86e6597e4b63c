/**
 * Part "load": balancing modes on a mixed workload. Two uplinks limited to
 * 10 and 40 Mbit/s (tbf at the ISPs; the config's bandwidths the same); the
 * LAN client runs the lab's bulk workload (HTTP downloads of 200 kB, 2 MB
 * and 20 MB in the ratio 70:25:5, Poisson arrivals at 3.8/s, ~50 Mbit/s
 * offered, the same seed for every mode) for 60 s (with --quick: 6 s of
 * 200 kB and 2 MB transfers at 2/s),
 * once per mode: `weight` 1:1, `weight` 1:4, `least-used`, `spillover`
 * (threshold 80 %). Reported: aggregate goodput (bytes received over the
 * span from the first start to the last end) and transfer completion time
 * (median, p90).
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import type { BulkReport } from "../src/lab/bulk.js";
import { labDaemons, scripts } from "./built.js";
import type { BenchContext } from "./context.js";
import { round, spreadOf, type Spread } from "./stats.js";

/** One mode's run. */
export interface LoadModeResult {
  mode: string;
  transfers: number;
  failed: number;
  /** Aggregate goodput, Mbit/s. */
  goodputMbit: number | null;
  /** Goodput / the 50 Mbit/s of both lines, %. */
  ofCapacityPct: number | null;
  /** Transfer completion time, ms. */
  completion: Spread;
  /** Share of transfers per uplink, %. */
  sharePct: Record<string, number>;
}

/** Results of the load part. */
export interface LoadResults {
  durationS: number;
  seed: number;
  rate: number;
  modes: LoadModeResult[];
}

const MODES: { name: string; weights: [number, number]; policy?: Record<string, unknown> }[] = [
  { name: "weight 1:1", weights: [1, 1] },
  { name: "weight 1:4", weights: [1, 4] },
  { name: "least-used", weights: [1, 1], policy: { balance: "least-used" } },
  { name: "spillover", weights: [1, 1], policy: { balance: "spillover", threshold: 80 } },
];

/** The load part. */
export async function loadPart(ctx: BenchContext): Promise<LoadResults> {
  // --quick: a short, light stream (no 20 MB transfers) that shows each mode works.
  const durationS = ctx.quick ? 6 : 60;
  const seed = 7;
  const rate = ctx.quick ? 2 : 3.8;
  const sizes = ctx.quick ? "200000:70,2000000:30" : "200000:70,2000000:25,20000000:5";
  return ctx.withLab("load", { uplinks: 2 }, async (lab) => {
    await lab.fault("isp1", "rate=10mbit");
    await lab.fault("isp2", "rate=40mbit");
    const base = parse(await readFile(lab.configPath, "utf8")) as Record<string, unknown>;
    const results: LoadModeResult[] = [];
    for (const mode of MODES) {
      ctx.check();
      const config = structuredClone(base);
      const uplinks = config.uplinks as Record<string, unknown>[];
      uplinks.forEach((u, i) => {
        u.weight = mode.weights[i] ?? 1;
        u.bandwidth = i === 0 ? { down: "10mbit", up: "10mbit" } : { down: "40mbit", up: "40mbit" };
      });
      if (mode.policy !== undefined) config.policies = { default: mode.policy };
      const path = join(lab.stateDir, `uplinkd-load-${results.length}.yaml`);
      await writeFile(path, stringify(config));
      const daemon = labDaemons.startLabDaemon(lab, path);
      try {
        await daemon.waitForStates(["up"], 30_000);
        const run = await lab.exec(
          "lan",
          [
            ...scripts.labScriptArgv("bulk"),
            "--host",
            "192.0.2.10",
            "--seed",
            String(seed),
            "--duration",
            String(durationS * 1000),
            "--rate",
            String(rate),
            "--sizes",
            sizes,
          ],
          { timeoutMs: (durationS + 240) * 1000 },
        );
        if (run.code !== 0) throw new Error(`bulk workload failed: ${run.stderr}`);
        const report = JSON.parse(run.stdout) as BulkReport;
        const ok = report.transfers.filter((t) => t.completionMs !== null);
        const bySource = new Map<string, number>();
        for (const t of ok) {
          const uplink =
            lab.uplinks.find((u) => t.source?.startsWith(u.subnet.replace(/0\/24$/, "")))?.name ??
            "other";
          bySource.set(uplink, (bySource.get(uplink) ?? 0) + 1);
        }
        const goodput = report.spanMs > 0 ? (report.bytes * 8) / (report.spanMs * 1000) : null;
        const result: LoadModeResult = {
          mode: mode.name,
          transfers: report.transfers.length,
          failed: report.transfers.length - ok.length,
          goodputMbit: round(goodput, 1),
          ofCapacityPct: round(goodput === null ? null : goodput * 2, 0),
          completion: spreadOf(ok.map((t) => t.completionMs)),
          sharePct: Object.fromEntries(
            [...bySource].map(([u, n]) => [u, round((100 * n) / Math.max(1, ok.length), 0) ?? 0]),
          ),
        };
        ctx.log(
          "load",
          `${mode.name}: ${result.goodputMbit ?? "-"} Mbit/s, completion median ${result.completion.median ?? "-"} ms, p90 ${result.completion.p90 ?? "-"} ms, ${result.failed} failed`,
        );
        results.push(result);
      } finally {
        await daemon.stop();
      }
    }
    return { durationS, seed, rate, modes: results };
  });
}

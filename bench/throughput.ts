/**
 * Part 7: dataplane overhead. TCP throughput through the lab router
 * (iperf3 client in the LAN, server on the echo host 192.0.2.10, 8 parallel
 * streams) with uplinkd running (its nft table, rules and routes), against
 * the same lab with a plain static multipath default route and masquerade
 * only (static-routing.ts; the ISPs drop un-NATed LAN sources, so some NAT
 * is needed either way). Runs alternate (baseline, uplinkd, uplinkd,
 * baseline, ...) so drift on a shared machine hits both alike; the figure
 * is the ratio of the medians. All links are veth pairs without rate
 * limits: the router's CPU is the bottleneck, which is what an overhead
 * measurement wants.
 */
import type { Lab } from "../src/lab/lab.js";
import { labDaemons, topology } from "./built.js";
import type { BenchContext } from "./context.js";
import { ratio, round, spreadOf, type Spread } from "./stats.js";
import { installStaticRouting, removeStaticRouting } from "./static-routing.js";

/** One iperf3 run. */
export interface IperfRun {
  setup: "baseline" | "uplinkd";
  /** Received, bits per second. */
  bps: number;
  retransmits: number | null;
}

/** Results of part 7. */
export interface ThroughputResults {
  seconds: number;
  streams: number;
  /** Gbit/s. */
  baseline: Spread;
  uplinkd: Spread;
  /** uplinkd median / baseline median. */
  ratio: number | null;
  runs: IperfRun[];
}

export async function iperf(
  lab: Lab,
  setup: IperfRun["setup"],
  seconds: number,
  streams: number,
  host: string = topology.LAB_HOSTS.echo,
): Promise<IperfRun> {
  const r = await lab.exec(
    "lan",
    [
      "iperf3",
      "-c",
      host,
      "-P",
      String(streams),
      "-t",
      String(seconds),
      "-J",
      "--connect-timeout",
      "3000",
    ],
    { timeoutMs: (seconds + 30) * 1000 },
  );
  let parsed: {
    error?: string;
    end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } };
  };
  try {
    parsed = JSON.parse(r.stdout) as typeof parsed;
  } catch {
    throw new Error(
      `iperf3 (${setup}) printed no JSON: ${r.stderr.trim() || r.stdout.slice(0, 200)}`,
    );
  }
  if (parsed.error !== undefined) throw new Error(`iperf3 (${setup}): ${parsed.error}`);
  return {
    setup,
    bps: parsed.end?.sum_received?.bits_per_second ?? 0,
    retransmits: parsed.end?.sum_sent?.retransmits ?? null,
  };
}

/** Part 7. */
export async function throughputPart(ctx: BenchContext): Promise<ThroughputResults> {
  const seconds = ctx.quick ? 3 : 10;
  const pairs = ctx.quick ? 1 : 3;
  const streams = 8;
  const runs: IperfRun[] = [];
  await ctx.withLab("tp", { uplinks: 2, iperf3Servers: 1 }, async (lab) => {
    const baseline = async (): Promise<void> => {
      await installStaticRouting(lab);
      try {
        runs.push(await iperf(lab, "baseline", seconds, streams));
      } finally {
        await removeStaticRouting(lab);
      }
    };
    const withUplinkd = async (): Promise<void> => {
      const daemon = labDaemons.startLabDaemon(lab);
      try {
        await daemon.waitForStates(["up"], 30_000);
        runs.push(await iperf(lab, "uplinkd", seconds, streams));
      } finally {
        await daemon.stop();
      }
    };
    for (let i = 0; i < pairs; i++) {
      ctx.check();
      const order = i % 2 === 0 ? [baseline, withUplinkd] : [withUplinkd, baseline];
      for (const run of order) await run();
      const last = runs.slice(-2).map((r) => `${r.setup} ${round(r.bps / 1e9, 2)} Gbit/s`);
      ctx.log("throughput", `pair ${i + 1}/${pairs}: ${last.join(", ")}`);
    }
  });
  const gbps = (setup: IperfRun["setup"]): number[] =>
    runs.filter((r) => r.setup === setup).map((r) => r.bps / 1e9);
  const base = spreadOf(gbps("baseline"), 2);
  const upl = spreadOf(gbps("uplinkd"), 2);
  return {
    seconds,
    streams,
    baseline: base,
    uplinkd: upl,
    ratio: ratio(upl.median, base.median),
    runs,
  };
}

/**
 * Part "ipv6": the IPv4 failover, balance and throughput figures again for
 * IPv6, from the LAN client's IPv6 connections to the echo host
 * [2001:db8:ffff::10] (whose answer names the source it saw, mapped to the
 * uplink whose address space it is in).
 *
 * - failover: an IPv6-only blackhole beyond the gateway (`blackhole6`, the
 *   ISP drops IPv6 and passes IPv4) with the fast profile, the faulted
 *   uplink alternating as in parts 1 and 2; detection is the daemon's
 *   IPv6 down transition.
 * - balance: new IPv6 connections over four uplinks of weights 1:2:3:4.
 * - throughput: iperf3 over IPv6 with uplinkd's ruleset, as a ratio to a
 *   plain route (the router's RA default routes and masquerade, no uplinkd).
 */
import { labDaemons, topology } from "./built.js";
import { balanceResults, type BalanceResults } from "./balance.js";
import { FAST, describeProfile, writeConfig, type BenchContext } from "./context.js";
import { trialSet, uplinkdTrials, type TrialSet } from "./failover.js";
import { installStaticRouting, removeStaticRouting } from "./static-routing.js";
import { ratio, round, spreadOf } from "./stats.js";
import { iperf, type IperfRun, type ThroughputResults } from "./throughput.js";

/** Results of the IPv6 part. */
export interface Ipv6Results {
  /** Fast profile, `blackhole6`; probe settings as in parts 1 and 2. */
  failover: TrialSet;
  balance: BalanceResults;
  throughput: ThroughputResults;
}

/** Wait until every uplink's IPv6 is up and takes new connections. */
async function ipv6Ready(daemon: InstanceType<typeof labDaemons.LabDaemon>): Promise<void> {
  await daemon.waitForStates(["up"], 30_000);
  await daemon.waitFor(
    (s) => s.uplinks.every((u) => u.ipv6?.state === "up" && u.ipv6.active),
    30_000,
    "every uplink's IPv6 up and active",
  );
}

/**
 * The IPv6 part: `trials` failover trials, one balance run (2,000
 * connections quick, 10,000 full) and iperf3 pairs (1 x 3 s quick, 3 x
 * 10 s full).
 */
export async function ipv6Part(ctx: BenchContext, trials: number): Promise<Ipv6Results> {
  const failover = await ctx.withLab("v6", { uplinks: 2, iperf3Servers: 1 }, async (lab) => {
    const configPath = await writeConfig(lab, FAST);
    const done = await uplinkdTrials(
      ctx,
      lab,
      configPath,
      trials,
      "blackhole6",
      "ipv6",
      "uplinkd fast blackhole6",
      { family: 6 },
    );
    return trialSet("uplinkd", FAST.name, describeProfile(FAST), "blackhole6", done);
  });

  const seconds = ctx.quick ? 3 : 10;
  const pairs = ctx.quick ? 1 : 3;
  const streams = 8;
  const runs: IperfRun[] = [];
  await ctx.withLab("t6", { uplinks: 2, iperf3Servers: 1 }, async (lab) => {
    const host = topology.LAB_HOSTS6.echo;
    const baseline = async (): Promise<void> => {
      await installStaticRouting(lab);
      try {
        runs.push(await iperf(lab, "baseline", seconds, streams, host));
      } finally {
        await removeStaticRouting(lab);
      }
    };
    const withUplinkd = async (): Promise<void> => {
      const daemon = labDaemons.startLabDaemon(lab);
      try {
        await ipv6Ready(daemon);
        runs.push(await iperf(lab, "uplinkd", seconds, streams, host));
      } finally {
        await daemon.stop();
      }
    };
    for (let i = 0; i < pairs; i++) {
      ctx.check();
      const order = i % 2 === 0 ? [baseline, withUplinkd] : [withUplinkd, baseline];
      for (const run of order) await run();
      const last = runs.slice(-2).map((r) => `${r.setup} ${round(r.bps / 1e9, 2)} Gbit/s`);
      ctx.log("ipv6", `iperf3 over IPv6, pair ${i + 1}/${pairs}: ${last.join(", ")}`);
    }
  });
  const gbps = (setup: IperfRun["setup"]): number[] =>
    runs.filter((r) => r.setup === setup).map((r) => r.bps / 1e9);
  const base = spreadOf(gbps("baseline"), 2);
  const upl = spreadOf(gbps("uplinkd"), 2);
  const throughput: ThroughputResults = {
    seconds,
    streams,
    baseline: base,
    uplinkd: upl,
    ratio: ratio(upl.median, base.median),
    runs,
  };

  const weights = [1, 2, 3, 4];
  const count = ctx.quick ? 2000 : 10_000;
  const balance = await ctx.withLab(
    "b6",
    { uplinks: weights.length, weights },
    async (lab): Promise<BalanceResults> => {
      const daemon = labDaemons.startLabDaemon(lab);
      try {
        await ipv6Ready(daemon);
        const report = await labDaemons.lanTraffic(lab, count, {
          rounds: 2,
          concurrency: 50,
          host: topology.LAB_HOSTS6.echo,
        });
        const result = balanceResults(
          lab,
          weights,
          count,
          report,
          labDaemons.sharesByUplink6(report, lab),
        );
        ctx.log(
          "ipv6",
          `balance: ${report.ok}/${count} ok; shares ${result.shares.map((r) => `${r.uplink} ${r.measuredPct}% (want ${r.expectedPct}%)`).join(", ")}`,
        );
        return result;
      } finally {
        await daemon.stop();
      }
    },
  );
  return { failover, balance, throughput };
}

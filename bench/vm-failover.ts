/**
 * Run inside a machine of scripts/vm.sh by the benchmark's `vm` part: the
 * blackhole failover of the fast profile (interval 200 ms, timeout 500 ms,
 * down 3) on Debian's stock kernel, measured as on the host (part
 * failover): a lab with two uplinks, a new LAN connection every 20 ms, a
 * blackhole beyond the gateway of isp1 or isp2 in turn; failover is the
 * time from the fault to the first connection after which all succeed,
 * detection the time to the daemon's down transition, recovery the time
 * from the heal to the first connection through the healed uplink. Prints
 * one JSON line `{"trials":[Trial,...]}` (bench/failover.ts).
 *
 *     bash scripts/vm.sh -- node --import tsx bench/vm-failover.ts 5
 */
import { BenchContext, FAST, writeConfig } from "./context.js";
import { uplinkdTrials, type Trial } from "./failover.js";

const trials = Number(process.argv[2] ?? "5");
const ctx = new BenchContext(false);
let done: Trial[] = [];
try {
  await ctx.withLab("vmfo", { uplinks: 2 }, async (lab) => {
    const configPath = await writeConfig(lab, FAST);
    done = await uplinkdTrials(
      ctx,
      lab,
      configPath,
      trials,
      "blackhole",
      "vm",
      "uplinkd fast blackhole",
    );
  });
} finally {
  await ctx.teardown();
}
process.stdout.write(`${JSON.stringify({ trials: done })}\n`);

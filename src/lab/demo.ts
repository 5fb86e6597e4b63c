/**
 * `uplinkd demo`: a narrated run in a lab — three uplinks, the daemon, real
 * traffic from a LAN client, a blackhole beyond a gateway, a failover, a
 * recovery, a carrier loss — with the times measured from the client's side.
 */
import type { Command } from "commander";
import { formatStatus } from "../control/format.js";
import { labUp, type Lab } from "./lab.js";
import {
  lanTraffic,
  sharesByUplink,
  startLabDaemon,
  TrafficProcess,
  type LabDaemon,
} from "./daemon.js";
import { failoverMs } from "./measure.js";
import type { ProbeAttempt } from "./traffic.js";

const say = (text = ""): void => {
  process.stdout.write(`${text}\n`);
};
const step = (text: string): void => {
  say();
  say(`== ${text}`);
};

/** New connections from the LAN every `intervalMs`, each given `timeoutMs`. */
function clientProbe(
  lab: Lab,
  intervalMs: number,
  timeoutMs: number,
): TrafficProcess<ProbeAttempt> {
  return new TrafficProcess<ProbeAttempt>(lab, "lan", [
    "probe",
    "--host",
    "192.0.2.10",
    "--interval",
    String(intervalMs),
    "--timeout",
    String(timeoutMs),
    "--duration",
    "600000",
  ]);
}

async function showShares(lab: Lab, count: number): Promise<void> {
  const report = await lanTraffic(lab, count);
  const shares = sharesByUplink(report, lab);
  say(`   ${count} new TCP connections from the LAN client (${report.failed} failed):`);
  for (const u of lab.uplinks) {
    const share = shares.get(u.number) ?? 0;
    const bar = "#".repeat(Math.round(share * 40));
    say(`   ${u.name} (weight ${u.weight})  ${(share * 100).toFixed(1).padStart(5)} %  ${bar}`);
  }
}

/** Wait until `uplink` is up and takes new connections again (its maps are updated a moment after the state). */
async function waitUntilActive(daemon: LabDaemon, uplink: string): Promise<void> {
  await daemon.waitFor(
    (s) => s.uplinks.some((u) => u.name === uplink && u.state === "up" && u.active),
    30_000,
    `${uplink} up and active`,
    20,
  );
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/**
 * Inject `fault` on `uplink`, then report when the daemon saw it and when
 * new client connections all succeeded again.
 */
async function faultAndMeasure(
  lab: Lab,
  daemon: LabDaemon,
  probe: TrafficProcess<ProbeAttempt>,
  uplink: string,
  fault: string,
): Promise<void> {
  const faultAt = Date.now();
  await lab.fault(uplink, fault);
  const status = await daemon.waitForState(uplink, "down", 20_000);
  const detected = Date.now() - faultAt;
  const reason = status.uplinks.find((u) => u.name === uplink)?.reason ?? "";
  say(`   uplinkd declared ${uplink} down after ${(detected / 1000).toFixed(2)} s: ${reason}`);
  await sleep(1500);
  const failover = failoverMs(probe.lines, faultAt);
  say(
    failover === null
      ? "   new connections were still failing at the end of the window"
      : `   failover seen by the LAN client: every new connection succeeds ${(failover / 1000).toFixed(2)} s after the fault`,
  );
}

/**
 * Run the demo.
 * @param prefix lab prefix (default `demo`).
 */
export async function runDemo(prefix = "demo"): Promise<void> {
  step("A lab: a LAN client, a router, three ISPs and an 'internet' (network namespaces)");
  const lab = await labUp({ prefix, uplinks: 3, weights: [2, 1, 1] });
  let daemon: LabDaemon | undefined;
  let probe: TrafficProcess<ProbeAttempt> | undefined;
  try {
    say(`   built in ${lab.upMs} ms; config ${lab.configPath}`);
    say(
      "   probes: ICMP to 198.51.100.1 and 203.0.113.1 every 200 ms, timeout 500 ms, down after 3 failed rounds",
    );

    step("uplinkd run, inside the router namespace");
    daemon = startLabDaemon(lab);
    const started = Date.now();
    const status = await daemon.waitForStates(["up"]);
    say(`   every uplink up after ${((Date.now() - started) / 1000).toFixed(2)} s`);
    say(formatStatus(status).replace(/^/gm, "   ").trimEnd());

    step("Traffic: new connections are spread by weight 2:1:1, each stays on its uplink");
    await showShares(lab, 1000);

    probe = clientProbe(lab, 50, 400);
    await sleep(500);
    step(
      "Fault: blackhole beyond isp1's gateway (the gateway still answers; nothing behind it does)",
    );
    await faultAndMeasure(lab, daemon, probe, "isp1", "blackhole");
    await showShares(lab, 600);

    step("Recovery: the blackhole is healed");
    const healAt = Date.now();
    await lab.heal("isp1");
    await waitUntilActive(daemon, "isp1");
    say(
      `   isp1 up again after ${((Date.now() - healAt) / 1000).toFixed(2)} s (5 good rounds in a row)`,
    );
    await showShares(lab, 1000);

    step("Fault: carrier loss on isp2 (the cable is pulled)");
    await faultAndMeasure(lab, daemon, probe, "isp2", "carrier");
    await lab.heal("isp2");
    await waitUntilActive(daemon, "isp2");
    say("   carrier back: isp2 up again");

    step("Status after it all");
    const final = await daemon.status();
    if (final !== undefined) say(formatStatus(final).replace(/^/gm, "   ").trimEnd());
  } finally {
    await probe?.stop();
    step("Stop: SIGTERM removes every rule, route and nft table uplinkd made; then the lab goes");
    if (daemon !== undefined) await daemon.stop();
    await lab.down();
    say("   done");
  }
}

/** Adds `uplinkd demo [--prefix P]`. */
export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("a narrated lab run: traffic, a fault, a failover and a recovery (root)")
    .option("--prefix <prefix>", "lab prefix", "demo")
    .action(async (opts: { prefix: string }) => {
      await runDemo(opts.prefix);
    });
}

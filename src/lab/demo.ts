/**
 * `uplinkd demo`: a narrated run in a lab — three uplinks, the daemon, real
 * traffic from a LAN client, a blackhole beyond a gateway, a failover, a
 * recovery, a carrier loss, then an IPv6-only blackhole that moves IPv6 off
 * an uplink while IPv4 stays on it — with the times measured from the
 * client's side.
 */
import type { Command } from "commander";
import { formatStatus } from "../control/format.js";
import { labUp, type Lab } from "./lab.js";
import { LAB_HEALTH_TARGETS6, labHealthProfile } from "./config.js";
import { LAB_HOSTS, LAB_HOSTS6 } from "./topology.js";
import {
  lanTraffic,
  sharesByUplink,
  sharesByUplink6,
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

/**
 * New connections from the LAN to the echo host `host` (default its IPv4
 * address) every `intervalMs`, each given `timeoutMs`.
 */
function clientProbe(
  lab: Lab,
  intervalMs: number,
  timeoutMs: number,
  host: string = LAB_HOSTS.echo,
): TrafficProcess<ProbeAttempt> {
  return new TrafficProcess<ProbeAttempt>(lab, "lan", [
    "probe",
    "--host",
    host,
    "--interval",
    String(intervalMs),
    "--timeout",
    String(timeoutMs),
    "--duration",
    "600000",
  ]);
}

/**
 * Open `count` new TCP connections from the LAN client to the echo host
 * over IPv4 (`family` 4) or IPv6 (6) and print the share each uplink
 * carried, by the source address the echo host saw.
 */
async function showShares(lab: Lab, count: number, family: 4 | 6 = 4): Promise<void> {
  const report = await lanTraffic(
    lab,
    count,
    family === 6 ? { host: LAB_HOSTS6.echo } : { host: LAB_HOSTS.echo },
  );
  const shares = family === 6 ? sharesByUplink6(report, lab) : sharesByUplink(report, lab);
  say(
    `   ${count} new IPv${family} TCP connections from the LAN client (${report.failed} failed):`,
  );
  const other = shares.get(0) ?? 0;
  for (const u of lab.uplinks) {
    const share = shares.get(u.number) ?? 0;
    const bar = "#".repeat(Math.round(share * 40));
    say(`   ${u.name} (weight ${u.weight})  ${(share * 100).toFixed(1).padStart(5)} %  ${bar}`);
  }
  if (other > 0) say(`   (${(other * 100).toFixed(1)} % came from an address of no uplink)`);
}

/** Wait until every uplink with IPv6 has its IPv6 up and taking new connections. */
async function waitUntilIpv6Active(daemon: LabDaemon): Promise<void> {
  await daemon.waitFor(
    (s) => s.uplinks.every((u) => u.ipv6 === null || (u.ipv6.state === "up" && u.ipv6.active)),
    30_000,
    "every uplink's IPv6 up and active",
    20,
  );
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
      `   probes: ICMP to ${LAB_HOSTS.pingTargets.join(" and ")} (IPv4) and ICMPv6 to ${LAB_HEALTH_TARGETS6.join(" and ")} (IPv6),`,
    );
    const profile = labHealthProfile();
    say(
      `   every ${profile.interval}, timeout ${profile.timeout}, down after 3 failed rounds; each family judged on its own`,
    );

    step("uplinkd run, inside the router namespace");
    daemon = startLabDaemon(lab);
    const started = Date.now();
    // A minute for the daemon's start (more on a slow or emulated machine).
    await daemon.waitForStates(["up"], 60_000);
    await waitUntilIpv6Active(daemon);
    say(`   every uplink up (IPv4 and IPv6) after ${((Date.now() - started) / 1000).toFixed(2)} s`);
    const status = await daemon.status();
    if (status !== undefined) say(formatStatus(status).replace(/^/gm, "   ").trimEnd());

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

    step(
      "IPv6: new IPv6 connections are spread by weight too (sources are the uplinks' addresses)",
    );
    await waitUntilIpv6Active(daemon);
    await showShares(lab, 600, 6);

    const probe6 = clientProbe(lab, 50, 400, LAB_HOSTS6.echo);
    try {
      await sleep(500);
      step("Fault: IPv6-only blackhole beyond isp1's gateway (its IPv4 still works)");
      const faultAt = Date.now();
      await lab.fault("isp1", "blackhole6");
      const down = await daemon.waitForState6("isp1", "down", 20_000);
      const isp1 = down.uplinks.find((u) => u.name === "isp1");
      say(
        `   uplinkd declared isp1's IPv6 down after ${((Date.now() - faultAt) / 1000).toFixed(2)} s: ${isp1?.ipv6?.reason ?? ""}`,
      );
      await sleep(1500);
      const later = (await daemon.status())?.uplinks.find((u) => u.name === "isp1");
      say(
        `   isp1's IPv4 meanwhile: ${later?.state ?? "?"}, ${later?.active === true ? "taking" : "not taking"} new IPv4 connections`,
      );
      const failover6 = failoverMs(probe6.lines, faultAt);
      say(
        failover6 === null
          ? "   new IPv6 connections were still failing at the end of the window"
          : `   IPv6 failover seen by the LAN client: every new IPv6 connection succeeds ${(failover6 / 1000).toFixed(2)} s after the fault`,
      );
    } finally {
      await probe6.stop();
    }
    await showShares(lab, 600, 6);
    await showShares(lab, 600, 4);

    step("Recovery: the IPv6 blackhole is healed");
    const heal6At = Date.now();
    await lab.heal("isp1");
    await daemon.waitForState6("isp1", "up", 30_000, true);
    say(`   isp1's IPv6 up again after ${((Date.now() - heal6At) / 1000).toFixed(2)} s`);
    await showShares(lab, 600, 6);

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
    .description(
      "a narrated lab run: traffic, faults, IPv4 and IPv6 failovers and recoveries (root)",
    )
    .option("--prefix <prefix>", "lab prefix", "demo")
    .action(async (opts: { prefix: string }) => {
      await runDemo(opts.prefix);
    });
}

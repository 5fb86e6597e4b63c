/**
 * Helpers for tests on the real kernel in a lab: unique prefixes, a lab
 * that is removed after its test even when the test fails, routes that
 * send the router's own traffic through one uplink, and parsers for ping,
 * iperf3 and the traffic tool.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import type { TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { runCommand } from "../../src/process/run.js";
import { uplinkOfAddress6 as uplinkInPlan6 } from "../../src/lab/ipv6.js";
import { labUp, type Lab, type LabUpOptions } from "../../src/lab/lab.js";
import { labTimeScale } from "../../src/lab/netns.js";
import { labScriptArgv } from "../../src/lab/scripts.js";
import { LAB_HOSTS, LAB_HOSTS6, LAB_PORTS } from "../../src/lab/topology.js";
import type { TrafficReport } from "../../src/lab/traffic.js";
import { controlRequest } from "../../src/control/client.js";
import type { Transition } from "../../src/uplink-health.js";

let labCount = 0;

/** A prefix no other test (or concurrent test run) uses: `lt<pid><n>`. */
export function uniquePrefix(): string {
  labCount++;
  return `lt${process.pid}x${labCount}`;
}

/** Build a lab with a unique prefix, removed when the test ends (pass or fail). */
export async function testLab(t: TestContext, options: LabUpOptions = {}): Promise<Lab> {
  const lab = await labUp({ prefix: uniquePrefix(), ...options });
  t.after(async () => {
    await lab.down();
  });
  return lab;
}

/**
 * Route the router's own traffic from uplink i's address through uplink i
 * (`ip rule from 100.64.I.2 lookup 200+I`, default via the ISP gateway in
 * that table), for static uplinks: what the daemon would do, set up by hand.
 */
export async function routeBySource(lab: Lab): Promise<void> {
  const lines: string[] = [];
  for (const u of lab.uplinks) {
    if (u.dhcp) continue;
    lines.push(`rule add from ${u.routerAddress} lookup ${200 + u.number}`);
    lines.push(
      `route add default via ${u.gateway} dev ${u.routerInterface} table ${200 + u.number}`,
    );
  }
  await runCommand("ip", ["-n", lab.namespace("rtr"), "-batch", "-"], {
    input: lines.map((l) => `${l}\n`).join(""),
  });
}

/**
 * The IPv6 counterpart of {@link routeBySource}, for the router's own
 * IPv6 traffic: `ip -6 rule from 2001:db8:I::/48 lookup 200+I` and `from`
 * the delegation pool, default via the ISP's RA router in that table.
 * `gateways` overrides the router per uplink number (after `ra-change`).
 */
export async function routeBySource6(
  lab: Lab,
  gateways: Record<number, string> = {},
): Promise<void> {
  const lines: string[] = [];
  for (const u of lab.uplinks) {
    if (u.ipv6 === undefined) continue;
    const table = 200 + u.number;
    lines.push(`rule add from ${u.ipv6.customerSpace} lookup ${table}`);
    lines.push(`rule add from ${u.ipv6.delegationPool} lookup ${table}`);
    lines.push(
      `route replace default via ${gateways[u.number] ?? u.ipv6.gateway} dev ${u.routerInterface} table ${table}`,
    );
  }
  await runCommand("ip", ["-6", "-n", lab.namespace("rtr"), "-batch", "-"], {
    input: lines.map((l) => `${l}\n`).join(""),
  });
}

/**
 * Open `count` IPv6 TCP connections (whoami, `concurrency` at a time) from
 * a lab node (default the LAN client) to the IPv6 echo host
 * (2001:db8:ffff::10); the report's `bySource` counts connections by the
 * client address the echo host saw. `bind` picks the local address.
 */
export async function traffic6(
  lab: Lab,
  options: {
    node?: string;
    count?: number;
    concurrency?: number;
    bind?: string;
    timeoutMs?: number;
  } = {},
): Promise<TrafficReport> {
  return traffic(lab, options.node ?? "lan", [
    "--host",
    LAB_HOSTS6.echo,
    "--port",
    String(LAB_PORTS.whoami),
    "--count",
    String(options.count ?? 100),
    "--concurrency",
    String(options.concurrency ?? 50),
    "--timeout",
    String(options.timeoutMs ?? 5000),
    ...(options.bind === undefined ? [] : ["--bind", options.bind]),
  ]);
}

/**
 * The uplink (number) an IPv6 address the echo host saw belongs to: by the
 * ISP's uplink network space (2001:db8:I::/48) or its delegation pool
 * (2001:db8:(1000+I)::/48); 0 for any other address.
 */
export function uplinkOfAddress6(lab: Lab, address: string): number {
  return uplinkInPlan6(lab.uplinks, address) ?? 0;
}

/** Connections per uplink number (0: an address of no uplink) in a traffic report of IPv6 connections. */
export function connectionsByUplink6(lab: Lab, report: TrafficReport): Map<number, number> {
  const out = new Map<number, number>();
  for (const [address, n] of Object.entries(report.bySource)) {
    const u = uplinkOfAddress6(lab, address);
    out.set(u, (out.get(u) ?? 0) + n);
  }
  return out;
}

/** Sent and received counts from a ping summary line. */
export interface PingResult {
  sent: number;
  received: number;
  /** Percent of sent that got no answer. */
  lossPercent: number;
}

/**
 * Ping from a lab node. `args` go before the target (`["-I", "100.64.1.2"]`).
 * Count `count`, interval `intervalS` seconds, wait at most 1 s per reply.
 */
export async function ping(
  lab: Lab,
  node: string,
  target: string,
  options: { count?: number; intervalS?: number; args?: string[] } = {},
): Promise<PingResult> {
  const count = options.count ?? 3;
  const argv = [
    "ping",
    "-n",
    "-q",
    "-c",
    String(count),
    "-i",
    String(options.intervalS ?? 0.05),
    "-W",
    "1",
    ...(options.args ?? []),
    target,
  ];
  const r = await lab.exec(node, argv, { timeoutMs: 30_000 });
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  assert.ok(
    m?.[1] !== undefined && m[2] !== undefined,
    `ping printed no summary: ${r.stdout}${r.stderr}`,
  );
  const sent = Number(m[1]);
  const received = Number(m[2]);
  return { sent, received, lossPercent: sent === 0 ? 100 : ((sent - received) / sent) * 100 };
}

/** Run the traffic tool in a lab node and parse its report. */
export async function traffic(lab: Lab, node: string, args: string[]): Promise<TrafficReport> {
  const r = await lab.exec(node, [...labScriptArgv("traffic"), ...args], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `traffic tool failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as TrafficReport;
}

/** iperf3 for `seconds` from a lab node to the echo host, bound to `bind`; bits per second received. */
export async function iperf(lab: Lab, node: string, bind: string, seconds = 1): Promise<number> {
  const r = await lab.exec(
    node,
    [
      "iperf3",
      "-c",
      "192.0.2.10",
      "-B",
      bind,
      "-t",
      String(seconds),
      "-J",
      "--connect-timeout",
      "2000",
    ],
    { timeoutMs: 30_000 },
  );
  const parsed = JSON.parse(r.stdout) as {
    error?: string;
    end?: { sum_received?: { bits_per_second?: number } };
  };
  assert.equal(parsed.error, undefined, `iperf3: ${parsed.error ?? ""}`);
  return parsed.end?.sum_received?.bits_per_second ?? 0;
}

/** Flags of a link in a lab node (`["NO-CARRIER", "BROADCAST", ...]`). */
export async function linkFlags(lab: Lab, node: string, dev: string): Promise<string[]> {
  const { stdout } = await runCommand("ip", [
    "-n",
    lab.namespace(node),
    "-j",
    "link",
    "show",
    "dev",
    dev,
  ]);
  return (JSON.parse(stdout) as { flags?: string[] }[])[0]?.flags ?? [];
}

/** Poll `check` every 50 ms until it returns true, at most `timeoutMs`; false if it never did. */
export async function eventually(
  check: () => Promise<boolean>,
  timeoutMs = 3000,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}

/**
 * The host's own network state, read only: links, routes of every table,
 * rules, nft tables. Compared before and after the lab tests.
 */
export async function hostNetworkSnapshot(): Promise<Record<string, string>> {
  const read = async (file: string, args: string[]): Promise<string> =>
    (await runCommand(file, args)).stdout;
  return {
    links: await read("ip", ["-j", "link", "show"]),
    routes: await read("ip", ["-j", "route", "show", "table", "all"]),
    rules: await read("ip", ["-j", "rule", "show"]),
    nft: await read("nft", ["list", "tables"]),
  };
}

/** A UDP flow of {@link startUdpFlow}: the answers of the lab's UDP echo host as they came. */
export interface UdpFlow {
  /** The process sending the flow (kill it when done). */
  child: ChildProcess;
  /** Each answer: when it came (ms since the epoch) and the source address the host saw. */
  answers: { t: number; source: string }[];
}

/**
 * A UDP flow from namespace `node` (`lan` or `rtr`) with a fixed source
 * port: one datagram every `intervalMs` to 192.0.2.10:`port`, whose echo
 * host answers with the source address it saw. It ends by itself after
 * 120 s.
 */
export function startUdpFlow(
  lab: Lab,
  node: "lan" | "rtr",
  sourcePort: number,
  port: number,
  intervalMs: number,
): UdpFlow {
  const child = lab.spawn(
    node,
    [
      process.execPath,
      "-e",
      `const s = require("node:dgram").createSocket("udp4");
       s.on("message", (m) => console.log(JSON.stringify({ t: Date.now(), source: m.toString() })));
       s.bind(${sourcePort}, () => setInterval(() => s.send("x", ${port}, "192.0.2.10"), ${intervalMs}));
       setTimeout(() => process.exit(0), 120000);`,
    ],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  const flow: UdpFlow = { child, answers: [] };
  let buffer = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    buffer += chunk.toString("utf8");
    const lines = buffer.split("\n");
    buffer = lines.pop() ?? "";
    for (const line of lines) {
      if (line.trim() !== "") flow.answers.push(JSON.parse(line) as { t: number; source: string });
    }
  });
  return flow;
}

/** The uplink (`ispN`) whose subnet holds IPv4 `address`, or `unknown ADDRESS`. */
export function uplinkOfAddress4(lab: Lab, address: string): string {
  const u = lab.uplinks.find((x) => address.startsWith(x.subnet.replace(/0\/24$/, "")));
  return u === undefined ? `unknown ${address}` : `isp${u.number}`;
}

/**
 * Start the lab's echo host on `address` in namespace `node` (extra
 * arguments after it) and wait until it prints `ready`.
 * @throws Error when it has not within 10 s (times the lab's time scale).
 */
export async function startEchoHost(
  lab: Lab,
  node: string,
  address: string,
  extra: readonly string[] = [],
): Promise<ChildProcess> {
  const child = lab.spawn(node, [...labScriptArgv("host"), "--address", address, ...extra], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`echo host on ${address} did not start`));
    }, 10_000 * labTimeScale());
    child.stdout?.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return child;
}

/**
 * The router address (uplink) the echo host saw for one HTTP GET of
 * `http://NAME/` from the LAN client (curl, IPv4, at most `maxTimeS` s).
 */
export async function viaHttp(lab: Lab, name: string, maxTimeS = 3): Promise<string> {
  const result = await lab.exec(
    "lan",
    ["curl", "-4", "-s", "--max-time", String(maxTimeS), `http://${name}/`],
    { timeoutMs: (maxTimeS + 7) * 1000 },
  );
  assert.equal(result.code, 0, `curl http://${name}/: ${result.stderr}`);
  return result.stdout.trim();
}

/** Elements of set `set` of uplinkd's table in the router (`nft list set`), or null when it does not exist. */
export async function setElements(lab: Lab, set: string): Promise<string | null> {
  const result = await lab.exec("rtr", ["nft", "list", "set", "inet", "uplinkd", set]);
  return result.code === 0 ? result.stdout : null;
}

/** The daemon's recent transitions (`GET /events`), oldest first. */
export async function events(lab: Lab): Promise<Transition[]> {
  const doc = (await controlRequest(lab.controlSocket, "GET", "/events?limit=1000")) as {
    events?: Transition[];
  } | null;
  return doc?.events ?? [];
}

/**
 * The first transition of `uplink`'s `family` (IPv4 unless given) to `to`
 * at or after `since` (epoch ms), polling every 50 ms up to `timeoutMs`;
 * undefined when none came.
 */
export async function transitionAfter(
  lab: Lab,
  uplink: string,
  to: string,
  since: number,
  timeoutMs: number,
  family: 4 | 6 = 4,
): Promise<Transition | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const found = (await events(lab)).find(
      (e) =>
        e.uplink === uplink && e.family === family && e.to === to && Date.parse(e.time) >= since,
    );
    if (found !== undefined) return found;
    await sleep(50);
  }
  return undefined;
}

/**
 * New TCP connections from the LAN client to `host` (the echo host's IPv4
 * address unless given), one every 20 ms for `durationMs` (the traffic
 * tool's probe mode, each given 1 s). Kill the process to stop early.
 */
export function lanConnections(
  lab: Lab,
  durationMs: number,
  host: string = LAB_HOSTS.echo,
): ChildProcess {
  return lab.spawn(
    "lan",
    [
      ...labScriptArgv("traffic"),
      "probe",
      "--host",
      host,
      "--interval",
      "20",
      "--timeout",
      "1000",
      "--duration",
      String(durationMs),
    ],
    { stdio: "ignore" },
  );
}

/** The daemon's log lines about the passive signal. */
export function passiveLines(daemon: { output: readonly string[] }): string[] {
  return daemon.output
    .join("")
    .split("\n")
    .filter((l) => l.includes("passive signal"));
}

/**
 * Assert that `down`, uplink `suspect`'s transition to down, came from a
 * probe burst that the passive signal started: its reason names the
 * burst, the daemon logged a passive signal for `suspect` and none for
 * `answering`.
 */
export function assertPassiveBurst(
  daemon: { output: readonly string[] },
  down: Transition,
  suspect: string,
  answering: string,
): void {
  const lines = passiveLines(daemon);
  assert.match(down.reason, /burst: no answer/);
  assert.ok(
    lines.some((l) => l.includes(`"uplink":"${suspect}"`)),
    `no passive signal for ${suspect}`,
  );
  assert.ok(
    !lines.some((l) => l.includes(`"uplink":"${answering}"`)),
    "the answering uplink was suspect",
  );
}

/**
 * Watching and steering a running daemon on the real kernel: the CLI
 * (status, events, disable/enable, reload), the metrics endpoint and the
 * dashboard in headless Chromium. One lab with two uplinks and one daemon
 * whose TCP listener sits on the router's LAN address (100.64.100.1:9101,
 * tokens required); the browser and curl run in the LAN client's namespace.
 */
import assert from "node:assert/strict";
import { copyFile, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { EventsDocument } from "../../src/control/api.js";
import type { StatusDocument } from "../../src/control/api.js";
import { runCommand } from "../../src/process/run.js";
import type { Lab } from "../../src/lab/lab.js";
import type { HoldLine } from "../../src/lab/traffic.js";
import {
  lanTraffic,
  labWithConfig,
  sharesByUplink,
  startDaemon,
  testPrefix,
  uplinkdArgv,
  type LabDaemon,
  holdConnection,
} from "./harness.js";

const READ = "dashboard-read-0123456789abcdef";
const WRITE = "operator-write-0123456789abcdef";
const LISTEN = "100.64.100.1:9101";
const MARK_MASK = 0xff00;
/** Every run saves the dashboard here; UPLINKD_UPDATE_DOCS=1 also refreshes docs/dashboard.png (docs/operations.md shows it). */
const SCREENSHOT = fileURLToPath(new URL("../../test-output/dashboard.png", import.meta.url));
const DOCS_SCREENSHOT = fileURLToPath(new URL("../../docs/dashboard.png", import.meta.url));

let lab: Lab;
let daemon: LabDaemon;
let config = "";
/** Where the notify hook writes one line per transition. */
let hookLog = "";

/** Run the uplinkd CLI in the router namespace. */
async function cli(...args: string[]) {
  return lab.exec("rtr", uplinkdArgv(...args), { timeoutMs: 30_000 });
}

/** An HTTP request from the LAN client to the daemon's TCP listener. */
async function http(
  path: string,
  options: { token?: string; method?: string } = {},
): Promise<{ status: number; body: string }> {
  const argv = ["curl", "-sS", "--noproxy", "*", "-m", "5", "-o", "-", "-w", "\n%{http_code}"];
  if (options.method !== undefined) argv.push("-X", options.method);
  if (options.token !== undefined) argv.push("-H", `Authorization: Bearer ${options.token}`);
  const result = await lab.exec("lan", [...argv, `http://${LISTEN}${path}`]);
  assert.equal(result.code, 0, result.stderr);
  const at = result.stdout.lastIndexOf("\n");
  return { status: Number(result.stdout.slice(at + 1)), body: result.stdout.slice(0, at) };
}

function uplinkNumberOf(source: string): number {
  const u = lab.uplinks.find((x) => source.startsWith(x.subnet.replace(/0\/24$/, "")));
  assert.ok(u !== undefined, `no uplink for source ${source}`);
  return u.number;
}

/**
 * Conntrack entries in the router carrying `mark` (under the default mask);
 * with `lanOnly`, only the LAN client's connections (not the daemon's own
 * probes, which carry their uplink's mark too).
 */
async function conntrackCount(mark: number, lanOnly = false): Promise<number> {
  const result = await lab.exec("rtr", [
    "conntrack",
    "-L",
    "-f",
    "ipv4",
    "-m",
    `${mark}/${MARK_MASK}`,
    ...(lanOnly ? ["-s", "100.64.100.2"] : []),
  ]);
  return result.stdout.split("\n").filter((l) => l.trim() !== "").length;
}

async function until<T>(what: string, get: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = get();
    if (value !== undefined) return value;
    await sleep(50);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

async function status(): Promise<StatusDocument> {
  const s = await daemon.status();
  assert.ok(s !== undefined, daemon.log());
  return s;
}

/** The host's own network namespace (read only): link names and flags, routes, rules, nft tables. */
async function hostNetworkState(): Promise<string> {
  const [links, routes, rules, tables] = await Promise.all([
    runCommand("ip", ["-j", "link", "show"]),
    runCommand("ip", ["-j", "route", "show", "table", "all"]),
    runCommand("ip", ["-j", "rule", "show"]),
    runCommand("nft", ["list", "tables"]),
  ]);
  const names = (JSON.parse(links.stdout) as { ifname: string; flags: string[] }[])
    .map((l) => `${l.ifname}:${l.flags.join(",")}`)
    .sort();
  return JSON.stringify([names, routes.stdout, rules.stdout, tables.stdout]);
}

let hostBefore = "";

before(async () => {
  hostBefore = await hostNetworkState();
  const prefix = testPrefix("obs");
  hookLog = `/run/uplinkd-lab/${prefix}/transitions.log`;
  lab = await labWithConfig({ prefix, uplinks: 2 }, (c) => {
    c.notify = {
      hooks: [
        {
          command: ["/bin/sh", "-c", `echo "$UPLINK $FAMILY $PREVIOUS_STATE $STATE" >> ${hookLog}`],
          run: "transition",
        },
      ],
    };
    c.control = {
      ...(c.control as object),
      listen: LISTEN,
      tokens: [
        { name: "dashboard", token: READ, access: "read" },
        { name: "operator", token: WRITE, access: "write" },
      ],
    };
  });
  assert.ok(hookLog.startsWith(`${lab.stateDir}/`), `${hookLog} is not in ${lab.stateDir}`);
  config = await readFile(lab.configPath, "utf8");
  daemon = startDaemon(lab);
  await daemon.waitForStates(["up"]);
  // The lab config is dual-stack: each uplink's IPv6 is probed by its own targets.
  for (const u of lab.uplinks) await daemon.waitForState6(u.name, "up", 30_000, true);
  // Connections for the share and conntrack columns (they stay in TIME_WAIT for 2 min).
  await lanTraffic(lab, 200);
});

after(async () => {
  // before() may have failed half-way.
  await (daemon as LabDaemon | undefined)?.stop();
  await (lab as Lab | undefined)?.down();
  assert.equal(await hostNetworkState(), hostBefore, "the host's own namespace changed");
});

describe("uplinkd status", () => {
  it("prints a table per uplink with state, loss, RTT, jitter, weight, tier, connections, bytes and throughput, then each policy's shares", async () => {
    const result = await cli("status", "-c", lab.configPath);
    assert.equal(result.code, 0, result.stderr);
    // The IPv4 table, then (the lab is dual-stack) the IPv6 section after a blank line.
    const [main = "", ipv6 = ""] = result.stdout.trimEnd().split("\n\n");
    const [header, ...lines] = main.split("\n");
    assert.match(
      header ?? "",
      /^UPLINK +IFACE +STATE +SINCE +FOR +LOSS +RTT +JITTER +W +TIER +ACTIVE +CONNS +RX +TX +DOWN\/UP +ADDRESS +GATEWAY$/,
    );
    const rows = lines;
    assert.deepEqual(
      ipv6.split("\n").filter((l) => l.startsWith("policy ")),
      ["policy default: isp1 50%, isp2 50%"],
    );
    // The lab config has IPv6 health targets: each uplink's IPv6 is up, with its figures.
    assert.match(ipv6, /^UPLINK +IPv6 +FOR +LOSS +RTT +JITTER +ACTIVE$/m);
    for (const i of [1, 2]) {
      assert.match(
        ipv6,
        new RegExp(
          `^isp${i} +up +\\S+ +\\d+\\.\\d% +[\\d.]+ms +[\\d.]+ms +yes\\n {2}2001:db8:${i}:\\S* +via fe80::`,
          "m",
        ),
      );
    }
    assert.equal(rows.length, 2);
    for (const [i, row] of rows.entries()) {
      assert.match(
        row,
        new RegExp(
          `^isp${i + 1} +wan${i + 1} +up +\\S+ \\S+ +\\S+ +\\d+\\.\\d% +[\\d.]+ms +[\\d.]+ms +1 +1 +yes +\\d+ +[\\d.]+\\w?i?B +[\\d.]+\\w?i?B +[\\d.]+[kmg]?bit\\/[\\d.]+[kmg]?bit +100\\.64\\.${i + 1}\\.2 +100\\.64\\.${i + 1}\\.1$`,
        ),
        row,
      );
    }
  });

  it("--json has every field, with connections counted from conntrack marks", async () => {
    const result = await cli("status", "--json", "--socket", lab.controlSocket);
    assert.equal(result.code, 0, result.stderr);
    const doc = JSON.parse(result.stdout) as StatusDocument;
    let connections = 0;
    for (const u of doc.uplinks) {
      for (const key of ["name", "state", "since", "loss", "rtt", "jitter", "weight", "tier"]) {
        assert.ok(key in u, `${u.name} has no ${key}`);
      }
      assert.equal(u.state, "up");
      assert.ok(typeof u.rtt === "number" && u.rtt > 0);
      assert.ok(typeof u.rxBytes === "number" && u.rxBytes > 0, `${u.name} rxBytes`);
      assert.ok(typeof u.txBytes === "number" && u.txBytes > 0, `${u.name} txBytes`);
      assert.ok(typeof u.connections === "number");
      connections += u.connections;
      const counted = await conntrackCount(Number(u.mark));
      assert.ok(
        Math.abs(counted - u.connections) <= 10,
        `${u.name}: ${counted} vs ${u.connections}`,
      );
    }
    assert.ok(connections >= 150, `only ${connections} connections after 200`);
  });
});

describe("the metrics endpoint and tokens", () => {
  it("serves Prometheus text with a read token; 401 without or with a wrong one", async () => {
    assert.equal((await http("/metrics")).status, 401);
    assert.equal((await http("/metrics", { token: "not-a-token-0123456789" })).status, 401);
    const { status: code, body } = await http("/metrics", { token: READ });
    assert.equal(code, 200);
    for (const series of [
      'uplinkd_uplink_state{uplink="isp1",state="up"} 1',
      'uplinkd_uplink_state{uplink="isp2",state="down"} 0',
      'uplinkd_uplink_rtt_seconds{uplink="isp1"}',
      'uplinkd_uplink_loss_ratio{uplink="isp2"}',
      'uplinkd_uplink_connections{uplink="isp1"}',
      'uplinkd_interface_receive_bytes_total{uplink="isp1",interface="wan1"}',
      'uplinkd_probes_sent_total{uplink="isp1",target="198.51.100.1"}',
      "process_resident_memory_bytes",
    ]) {
      assert.ok(body.includes(series), `missing ${series}`);
    }
  });

  it("a read token cannot disable an uplink (403) and nothing changes", async () => {
    const denied = await http("/uplinks/isp1/disable", { token: READ, method: "POST" });
    assert.equal(denied.status, 403);
    const anonymous = await http("/uplinks/isp1/disable", { method: "POST" });
    assert.equal(anonymous.status, 401);
    assert.equal((await status()).uplinks[0]?.state, "up");
  });
});

describe("the dashboard in Chromium, and events", () => {
  it("shows a fault within 2 s of the daemon seeing it; saves a screenshot", async (t) => {
    await mkdir(dirname(SCREENSHOT), { recursive: true });
    const probe = lab.spawn(
      "lan",
      [
        process.execPath,
        "--import",
        import.meta.resolve("tsx"),
        fileURLToPath(new URL("./dashboard-probe.ts", import.meta.url)),
        `http://${LISTEN}/`,
        READ,
        SCREENSHOT,
        "2",
      ],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    const lines: Record<string, unknown>[] = [];
    const stderr: string[] = [];
    probe.stderr?.on("data", (c: Buffer) => stderr.push(c.toString("utf8")));
    if (probe.stdout !== null) {
      createInterface({ input: probe.stdout }).on("line", (line) => {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      });
    }
    const exited = new Promise<number | null>((resolve) => probe.on("exit", resolve));
    try {
      await until("dashboard ready", () => lines.find((l) => l.event === "ready"), 30_000).catch(
        (error: unknown) => {
          throw new Error(`${String(error)}\n${stderr.join("")}\n${JSON.stringify(lines)}`);
        },
      );
      probe.stdin?.write(JSON.stringify({ uplink: "isp2", state: "down" }) + "\n");
      await lab.fault(2, "blackhole");
      await daemon.waitForState("isp2", "down");
      const seen = await until("page shows isp2 down", () => lines.find((l) => l.event === "seen"));
      const events = await cli("events", "--json", "-c", lab.configPath);
      const doc = JSON.parse(events.stdout) as EventsDocument;
      const down = doc.events.findLast(
        (e) => e.uplink === "isp2" && e.family === 4 && e.to === "down",
      );
      assert.ok(down !== undefined, events.stdout);
      const lagMs = Number(seen.t) - Date.parse(down.time);
      t.diagnostic(`the page showed isp2 down ${lagMs} ms after the daemon's transition`);
      assert.ok(lagMs <= 2000, `the page showed the fault ${lagMs} ms after the daemon saw it`);
      await sleep(1500); // a few chart points with the loss
      probe.stdin?.write(JSON.stringify({ screenshot: true }) + "\n");
      const code = await Promise.race([exited, sleep(20_000, "still running")]);
      assert.equal(code, 0, stderr.join(""));
      const errors = lines.filter((l) => l.event === "page-error");
      assert.deepEqual(errors, [], "the page reported errors");
      assert.ok((await stat(SCREENSHOT)).size > 10_000);
      if (process.env.UPLINKD_UPDATE_DOCS === "1") await copyFile(SCREENSHOT, DOCS_SCREENSHOT);
    } finally {
      probe.kill();
      await lab.heal(2);
    }
  });

  it("uplinkd events lists the transition with its reason", async () => {
    const result = await cli("events", "-c", lab.configPath);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^TIME +UPLINK +FAMILY +TRANSITION +LOSS +RTT +REASON$/m);
    // The blackhole took both of isp2's families down, each judged by its own targets.
    assert.match(result.stdout, /\d\dZ +isp2 +IPv4 +up -> down +\S+ +\S+ +\S.*198\.51\.100\.1.*$/m);
    assert.match(result.stdout, /\d\dZ +isp2 +IPv6 +up -> down +\S+ +\S+ +\S.*2001:db8:ffff::.*$/m);
    const hooked = await readFile(hookLog, "utf8");
    assert.match(
      hooked,
      /^isp2 4 up down$/m,
      "the notify hook did not run for the IPv4 transition",
    );
    assert.match(
      hooked,
      /^isp2 6 up down$/m,
      "the notify hook did not run for the IPv6 transition",
    );
    await daemon.waitForStates(["up"], 20_000);
  });
});

describe("maintenance with real LAN traffic", () => {
  it("a disabled uplink gets no new connections, keeps its old ones, and --drain ends them", async () => {
    const held = holdConnection(lab, { durationMs: 15_000 });
    let name: string | undefined;
    try {
      const first = await until("hold answered", () =>
        held.lines.find((l): l is Extract<HoldLine, { event: "answer" }> => l.event === "answer"),
      );
      const n = uplinkNumberOf(first.source);
      name = `isp${n}`;
      const other = 3 - n;

      const disabled = await cli("disable", name, "-c", lab.configPath);
      assert.equal(disabled.code, 0, disabled.stderr);
      assert.equal(disabled.stdout, `${name}: disabled\n`);
      const s = await status();
      const uplink = s.uplinks.find((u) => u.name === name);
      assert.ok(uplink !== undefined);
      assert.equal(uplink.state, "disabled");
      assert.equal(uplink.active, false);

      const report = await lanTraffic(lab, 200);
      assert.equal(report.failed, 0, JSON.stringify(report.errors));
      assert.deepEqual([...sharesByUplink(report, lab).keys()], [other]);
      const answered = held.lines.filter((l) => l.event === "answer").length;
      await sleep(500);
      assert.ok(
        held.lines.filter((l) => l.event === "answer").length >= answered + 3,
        "the held connection stopped while its uplink was disabled",
      );
      assert.ok(!held.lines.some((l) => l.event === "no-answer" || l.event === "closed"));

      const mark = Number(uplink.mark);
      assert.ok((await conntrackCount(mark, true)) > 0);
      const drained = await cli("disable", name, "--drain", "--socket", lab.controlSocket);
      assert.equal(drained.code, 0, drained.stderr);
      assert.match(
        drained.stdout,
        new RegExp(`^${name} was already disabled; \\d+ connections drained\\n$`),
      );
      assert.equal(await conntrackCount(mark, true), 0);
      await until(
        "the held connection to notice the drain",
        () => held.lines.find((l) => l.event === "no-answer" || l.event === "closed"),
        5000,
      );

      const enabled = await cli("enable", name, "-c", lab.configPath);
      assert.equal(enabled.code, 0, enabled.stderr);
      assert.equal(enabled.stdout, `${name}: up\n`);
      const back = await lanTraffic(lab, 200);
      assert.deepEqual([...sharesByUplink(back, lab).keys()].sort(), [1, 2]);

      const unknown = await cli("disable", "isp9", "-c", lab.configPath);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /no uplink named "isp9"/);
    } finally {
      await held.stop();
      if (name !== undefined) await cli("enable", name, "-c", lab.configPath);
    }
  });
});

describe("uplinkd reload", () => {
  it("refuses a broken config with FILE:LINE:COL and keeps running; applies a good change", async () => {
    try {
      await writeFile(lab.configPath, config.replace(/weight: 1/g, "weight: heavy"));
      const refused = await cli("reload", "-c", lab.configPath);
      assert.equal(refused.code, 2, refused.stdout);
      const at = lab.configPath.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      assert.match(refused.stderr, new RegExp(`^${at}:\\d+:\\d+: uplinks\\.0\\.weight: `, "m"));
      assert.match(refused.stderr, /reload refused; the daemon keeps its running config/);
      const still = await status();
      assert.deepEqual(
        still.uplinks.map((u) => [u.state, u.weight]),
        [
          ["up", 1],
          ["up", 1],
        ],
      );

      const changed = config.replace(
        /(name: isp2\n(?:\s+\S.*\n)*?\s+weight:) 1/,
        (_, head: string) => `${head} 3`,
      );
      assert.notEqual(changed, config);
      await writeFile(lab.configPath, changed);
      const applied = await cli("reload", "-c", lab.configPath);
      assert.equal(applied.code, 0, applied.stderr);
      assert.match(applied.stdout, /reloaded, 1 change:\n {2}uplinks\.isp2\.weight: 1 -> 3\n$/);
      assert.equal((await status()).uplinks[1]?.weight, 3);
      const report = await lanTraffic(lab, 400);
      const share2 = sharesByUplink(report, lab).get(2) ?? 0;
      assert.ok(Math.abs(share2 - 0.75) <= 0.1, `isp2 got ${(share2 * 100).toFixed(1)} %`);

      await writeFile(lab.configPath, config);
      daemon.child.kill("SIGHUP");
      await daemon.waitFor((s) => s.uplinks[1]?.weight === 1, 5000, "weight 1 after SIGHUP");
      await until("the SIGHUP reload in the log", () =>
        /config reloaded: uplinks\.isp2\.weight: 3 -> 1/.test(daemon.log()) ? true : undefined,
      );
    } finally {
      await writeFile(lab.configPath, config);
    }
  });
});

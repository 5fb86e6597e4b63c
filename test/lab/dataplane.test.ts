/**
 * The dataplane on the real kernel: a lab with three uplinks, the daemon in
 * the router namespace, real TCP connections from the LAN client whose path
 * the echo host reports.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { runCommand } from "../../src/process/run.js";
import type { Lab } from "../../src/lab/lab.js";
import { labScriptArgv } from "../../src/lab/scripts.js";
import type { TrafficReport } from "../../src/lab/traffic.js";
import {
  holdConnection,
  lanTraffic,
  labWithConfig,
  sharesByUplink,
  startDaemon,
  testPrefix,
  uplinkdArgv,
  type LabDaemon,
} from "./harness.js";

/** What the host's own network namespace holds; read-only commands. */
async function hostNetworkState(): Promise<string> {
  const reads = await Promise.all([
    runCommand("ip", ["-j", "link", "show"]),
    runCommand("ip", ["-j", "route", "show", "table", "all"]),
    runCommand("ip", ["-j", "rule", "show"]),
    runCommand("nft", ["list", "tables"]),
  ]);
  // Interface statistics and the order of links change on their own; keep names and flags.
  const links = (JSON.parse(reads[0].stdout) as { ifname: string; flags: string[] }[])
    .map((l) => `${l.ifname}:${l.flags.join(",")}`)
    .sort();
  return JSON.stringify([links, reads[1].stdout, reads[2].stdout, reads[3].stdout]);
}

async function ownedKernelState(
  lab: Lab,
): Promise<{ tables: string; rules: string; routes: string }> {
  const [tables, rules, routes] = await Promise.all([
    lab.exec("rtr", ["nft", "list", "tables"]),
    lab.exec("rtr", ["ip", "-4", "rule", "show"]),
    lab.exec("rtr", ["ip", "-4", "route", "show", "table", "all"]),
  ]);
  return {
    tables: tables.stdout,
    rules: rules.stdout
      .split("\n")
      .filter((l) => l.includes("proto 73"))
      .join("\n"),
    routes: routes.stdout
      .split("\n")
      .filter((l) => l.includes("proto 73"))
      .join("\n"),
  };
}

function assertAllOk(report: TrafficReport): void {
  assert.equal(report.failed, 0, `failed connections: ${JSON.stringify(report.errors)}`);
  assert.equal(report.inconsistent, 0, "a connection's answers came from more than one uplink");
}

let hostBefore = "";

before(async () => {
  hostBefore = await hostNetworkState();
});

after(async () => {
  assert.equal(await hostNetworkState(), hostBefore, "the host's own namespace changed");
});

describe("balancing over three uplinks weighted 3:2:1", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("bal"), uplinks: 3, weights: [3, 2, 1] });
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("spreads 3,000 new LAN connections within 3 points of each weight's share, each on one uplink", async () => {
    const report = await lanTraffic(lab, 3000, { rounds: 3 });
    assertAllOk(report);
    assert.equal(report.ok, 3000);
    const shares = sharesByUplink(report, lab);
    for (const [uplink, weight] of [
      [1, 3],
      [2, 2],
      [3, 1],
    ] as const) {
      const share = shares.get(uplink) ?? 0;
      assert.ok(
        Math.abs(share - weight / 6) <= 0.03,
        `uplink ${uplink}: ${(share * 100).toFixed(1)} % of connections, want ${((weight / 6) * 100).toFixed(1)} % ± 3`,
      );
    }
    for (const u of lab.uplinks) {
      const counters = await lab.ispCounters(u.number);
      assert.equal(counters.spoofed.packets, 0, `${u.name} saw packets with a foreign source`);
    }
  });

  it("balances the router's own connections too", async () => {
    const report = await lanTraffic(lab, 600, { node: "rtr" });
    assertAllOk(report);
    const shares = sharesByUplink(report, lab);
    assert.deepEqual([...shares.keys()].sort(), [1, 2, 3], JSON.stringify(report.bySource));
    assert.ok(Math.abs((shares.get(1) ?? 0) - 0.5) <= 0.08, JSON.stringify(report.bySource));
  });

  it("answers an inbound connection on uplink 2 via uplink 2", async () => {
    const server = lab.spawn("rtr", [
      process.execPath,
      "-e",
      "require('net').createServer((s) => s.on('data', () => s.write(s.remoteAddress + '\\n'))).listen(8080, '0.0.0.0')",
    ]);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const before2 = await lab.ispCounters(2);
      const result = await lab.exec(
        "net",
        [
          ...labScriptArgv("traffic"),
          "whoami",
          "--host",
          "100.64.2.2",
          "--port",
          "8080",
          "--count",
          "100",
        ],
        { timeoutMs: 30_000 },
      );
      const report = JSON.parse(result.stdout) as TrafficReport;
      assertAllOk(report);
      assert.equal(report.ok, 100);
      const after2 = await lab.ispCounters(2);
      assert.ok(after2.up.packets - before2.up.packets >= 300, "the replies went up through ISP 2");
      for (const u of lab.uplinks) {
        assert.equal(
          (await lab.ispCounters(u.number)).spoofed.packets,
          0,
          `${u.name} dropped spoofed replies`,
        );
      }
    } finally {
      server.kill();
    }
  });

  it("reports a failing kernel command with the kernel's message and keeps the last working state", async () => {
    const good = await readFile(lab.configPath, "utf8");
    // A global IPv6 gateway off the uplink's IPv6 prefix: the kernel refuses the route. (An
    // off-link IPv4 gateway fails that uplink alone instead: test/lab/bad-uplink.test.ts.)
    const bad = good.replace(
      /(name: isp1\n(?: {4}.*\n)*?) {4}gateway6: auto/,
      "$1    gateway6: 2001:db8:99::9",
    );
    assert.match(bad, /gateway6: 2001:db8:99::9/);
    await writeFile(lab.configPath, bad);
    try {
      daemon.child.kill("SIGHUP");
      const deadline = Date.now() + 10_000;
      while (!/route replace default via 2001:db8:99::9 dev wan1 table 101/.test(daemon.log(200))) {
        assert.ok(Date.now() < deadline, `no error logged:\n${daemon.log()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(
        daemon.log(200),
        /Nexthop has invalid gateway|invalid gateway|Network is unreachable|No route to host/i,
      );
      const routes = await lab.exec("rtr", ["ip", "-6", "route", "show", "table", "101"]);
      assert.match(routes.stdout, /default via fe80::1 dev wan1/, "the working route stays");
      const report = await lanTraffic(lab, 300);
      assertAllOk(report);
      assert.ok((sharesByUplink(report, lab).get(1) ?? 0) > 0.3, "isp1 still carries traffic");
    } finally {
      await writeFile(lab.configPath, good);
      daemon.child.kill("SIGHUP");
    }
    await daemon.waitFor((s) => s.uplinks[0]?.gateway === "100.64.1.1", 10_000, "config restored");
  });

  it("plans no change right after the daemon applied", async () => {
    const result = await lab.exec("rtr", uplinkdArgv("plan", "-c", lab.configPath));
    const lines = result.stdout.trim().split("\n");
    assert.match(lines[0] ?? "", /^health and load: from the daemon at /);
    assert.deepEqual(lines.slice(1), ["no changes: the kernel holds the desired state"]);
  });
});

describe("tiers", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labWithConfig({
      prefix: testPrefix("tier"),
      uplinks: 3,
      weights: [3, 2, 5],
      tiers: [1, 1, 2],
    });
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("gives tier 2 nothing while tier 1 is usable, whatever its weight", async () => {
    const report = await lanTraffic(lab, 600);
    assertAllOk(report);
    const shares = sharesByUplink(report, lab);
    assert.equal(shares.get(3) ?? 0, 0, JSON.stringify(report.bySource));
    assert.ok(
      (shares.get(1) ?? 0) > 0.45 && (shares.get(2) ?? 0) > 0.3,
      JSON.stringify(report.bySource),
    );
  });
});

describe("stopping and restarting", () => {
  let lab: Lab;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("stop"), uplinks: 2 });
  });

  after(async () => {
    await lab.down();
  });

  it("leaves no rule, route or nft table behind on SIGTERM", async () => {
    const daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
    const running = await ownedKernelState(lab);
    assert.match(running.tables, /table inet uplinkd/);
    assert.notEqual(running.rules, "");
    assert.equal(await daemon.stop("SIGTERM"), 0, daemon.log());
    const left = await ownedKernelState(lab);
    assert.doesNotMatch(left.tables, /uplinkd/);
    assert.equal(left.rules, "");
    assert.equal(left.routes, "");
  });

  it("keeps a long-lived connection alive through SIGKILL and a restart", async () => {
    const first = startDaemon(lab);
    await first.waitForStates(["up"]);
    const holder = holdConnection(lab, { durationMs: 6000 });
    await new Promise((r) => setTimeout(r, 1000));
    await first.stop("SIGKILL");
    const second = startDaemon(lab);
    try {
      await second.waitForStates(["up"]);
      const code = await holder.exited;
      const events = holder.lines;
      const text = JSON.stringify(events);
      const summary = events.find((e) => e.event === "summary");
      assert.ok(summary !== undefined, text);
      assert.equal(code, 0, text);
      assert.equal(summary.missed, 0, "questions went unanswered across the restart");
      assert.ok(summary.answered >= 40);
      assert.equal(Object.keys(summary.sources).length, 1, "the connection changed uplink");
      assert.ok(!events.some((e) => e.event === "closed"), "the connection was closed");
    } finally {
      await second.stop();
    }
  });

  it("waits for an uplink whose interface is missing at start, then uses it", async () => {
    await lab.exec("rtr", ["ip", "link", "set", "wan2", "down"]);
    await lab.exec("rtr", ["ip", "link", "set", "wan2", "name", "wan2x"]);
    const daemon = startDaemon(lab);
    try {
      await daemon.waitFor(
        (s) => s.uplinks.find((u) => u.name === "isp1")?.state === "up",
        15_000,
        "isp1 up",
      );
      assert.match(daemon.log(), /interface wan2 of uplink isp2 is missing; waiting for it/);
      const before2 = await lanTraffic(lab, 100);
      assertAllOk(before2);
      assert.deepEqual([...sharesByUplink(before2, lab).keys()], [1]);
      await lab.exec("rtr", ["ip", "link", "set", "wan2x", "name", "wan2"]);
      await lab.exec("rtr", ["ip", "link", "set", "wan2", "up"]);
      await lab.exec("rtr", ["ip", "addr", "replace", "100.64.2.2/24", "dev", "wan2"]);
      await daemon.waitForStates(["up"]);
      const after2 = await lanTraffic(lab, 300);
      assertAllOk(after2);
      assert.deepEqual([...sharesByUplink(after2, lab).keys()].sort(), [1, 2]);
    } finally {
      await daemon.stop();
    }
  });
});

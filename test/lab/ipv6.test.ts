/**
 * The IPv6 dataplane on the real kernel: the dual-stack lab with three
 * uplinks (router advertisements from each ISP, a ULA LAN), the daemon in
 * the router namespace, real IPv6 TCP connections whose path the echo host
 * reports by the source address it saw.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import type { Lab } from "../../src/lab/lab.js";
import { labScriptArgv } from "../../src/lab/scripts.js";
import { LAN6 } from "../../src/lab/topology.js";
import type { TrafficReport } from "../../src/lab/traffic.js";
import { labWithConfig, startDaemon, testPrefix, uplinkdArgv, type LabDaemon } from "./harness.js";
import { connectionsByUplink6, traffic6, uplinkOfAddress6 } from "./helpers.js";

function assertAllOk(report: TrafficReport): void {
  assert.equal(report.failed, 0, `failed connections: ${JSON.stringify(report.errors)}`);
  assert.equal(report.inconsistent, 0, "a connection's answers came from more than one uplink");
}

/** Shares (0..1) of the connections per uplink number (0: an address of no uplink). */
function shares6(lab: Lab, report: TrafficReport): Map<number, number> {
  const out = new Map<number, number>();
  for (const [u, n] of connectionsByUplink6(lab, report)) out.set(u, n / Math.max(1, report.ok));
  return out;
}

/** uplinkd's IPv6 routes and rules in the router (lines with its protocol 73). */
async function owned6(lab: Lab): Promise<{ routes: string[]; rules: string[] }> {
  const [routes, rules] = await Promise.all([
    lab.exec("rtr", ["ip", "-6", "route", "show", "table", "all"]),
    lab.exec("rtr", ["ip", "-6", "rule", "show"]),
  ]);
  const ours = (text: string) => text.split("\n").filter((l) => /\bproto 73\b/.test(l));
  return { routes: ours(routes.stdout), rules: ours(rules.stdout) };
}

/** Waits (bounded) until every uplink's IPv6 table has its default route via the RA router. */
async function waitForIpv6Routes(lab: Lab, daemon: LabDaemon, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { routes } = await owned6(lab);
    const missing = lab.uplinks.filter(
      (u) =>
        !routes.some((r) =>
          new RegExp(
            `^default via fe80::\\S+ dev ${u.routerInterface} table ${100 + u.number} `,
          ).test(r),
        ),
    );
    if (missing.length === 0) return;
    assert.ok(
      Date.now() < deadline,
      `no IPv6 default in the tables of ${missing.map((u) => u.name).join(", ")}:\n${routes.join("\n")}\n${daemon.log(50)}`,
    );
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe("IPv6 over three uplinks weighted 3:2:1", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("v6"), uplinks: 3, weights: [3, 2, 1] });
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
    await waitForIpv6Routes(lab, daemon);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("spreads 3,000 new IPv6 connections from the LAN within 3 points of each weight's share", async (t) => {
    const reports: TrafficReport[] = [];
    for (let round = 0; round < 3; round++) reports.push(await traffic6(lab, { count: 1000 }));
    for (const r of reports) assertAllOk(r);
    const byUplink = new Map<number, number>();
    for (const r of reports) {
      for (const [u, n] of connectionsByUplink6(lab, r))
        byUplink.set(u, (byUplink.get(u) ?? 0) + n);
    }
    const total = reports.reduce((n, r) => n + r.ok, 0);
    t.diagnostic(`connections per uplink: ${JSON.stringify([...byUplink].sort())}`);
    assert.equal(total, 3000);
    assert.equal(byUplink.get(0) ?? 0, 0, "a connection left with an address of no uplink");
    for (const [uplink, weight] of [
      [1, 3],
      [2, 2],
      [3, 1],
    ] as const) {
      const share = (byUplink.get(uplink) ?? 0) / total;
      assert.ok(
        Math.abs(share - weight / 6) <= 0.03,
        `uplink ${uplink}: ${(share * 100).toFixed(1)} % of IPv6 connections, want ${((weight / 6) * 100).toFixed(1)} % ± 3`,
      );
    }
    for (const u of lab.uplinks) {
      const counters = await lab.ispCounters(u.number);
      assert.equal(counters.spoofed.packets, 0, `${u.name} saw packets with a foreign source`);
    }
  });

  it("balances the router's own IPv6 connections too", async (t) => {
    const report = await traffic6(lab, { node: "rtr", count: 600 });
    assertAllOk(report);
    const shares = shares6(lab, report);
    t.diagnostic(`sources: ${JSON.stringify(report.bySource)}`);
    assert.deepEqual([...shares.keys()].sort(), [1, 2, 3], JSON.stringify(report.bySource));
    assert.ok(Math.abs((shares.get(1) ?? 0) - 0.5) <= 0.08, JSON.stringify(report.bySource));
  });

  it("answers an inbound IPv6 connection on uplink 2 via uplink 2", async () => {
    const server = lab.spawn("rtr", [
      process.execPath,
      "-e",
      "require('net').createServer((s) => s.on('data', () => s.write(s.remoteAddress + '\\n'))).listen(8080, '::')",
    ]);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const isp2 = lab.uplinks[1]?.ipv6?.routerAddress ?? "";
      const before2 = await lab.ispCounters(2);
      const result = await lab.exec(
        "net",
        [...labScriptArgv("traffic"), "whoami", "--host", isp2, "--port", "8080", "--count", "100"],
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

  it("with a static prefix6, gives each LAN host one stable address per uplink (NPTv6)", async (t) => {
    const good = await readFile(lab.configPath, "utf8");
    const config = parse(good) as { uplinks: Record<string, unknown>[] };
    config.uplinks.forEach((u, i) => {
      u.prefix6 = lab.uplinks[i]?.ipv6?.delegatedPrefix;
    });
    const second = "fd00:1::200";
    await lab.exec("lan", ["ip", "-6", "addr", "add", `${second}/64`, "dev", "eth0", "nodad"]);
    await writeFile(lab.configPath, stringify(config));
    daemon.child.kill("SIGHUP");
    try {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const { rules } = await owned6(lab);
        if (rules.filter((r) => /from 2001:db8:100\d::\/56/.test(r)).length === 3) break;
        assert.ok(Date.now() < deadline, `prefix rules missing:\n${rules.join("\n")}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      for (const [host, iid] of [
        [LAN6.clientAddress, "::100"],
        [second, "::200"],
      ] as const) {
        const report = await traffic6(lab, { count: 300, bind: host });
        assertAllOk(report);
        const expected = lab.uplinks.map(
          (u) => `${(u.ipv6?.delegatedPrefix ?? "").replace(/::\/56$/, "")}${iid}`,
        );
        const seen = Object.keys(report.bySource).sort();
        t.diagnostic(`${host}: ${JSON.stringify(report.bySource)}`);
        assert.deepEqual(
          seen,
          expected.sort(),
          `${host} left as ${JSON.stringify(report.bySource)}`,
        );
        for (const address of seen) assert.notEqual(uplinkOfAddress6(lab, address), 0);
      }
    } finally {
      await writeFile(lab.configPath, good);
      daemon.child.kill("SIGHUP");
    }
  });
});

describe("stopping with IPv6", () => {
  let lab: Lab;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("v6s"), uplinks: 2 }, (config) => {
      const uplinks = config.uplinks as Record<string, unknown>[];
      uplinks.forEach((u, i) => {
        u.prefix6 = `2001:db8:${1001 + i}::/56`;
      });
    });
  });

  after(async () => {
    await lab.down();
  });

  it("plan shows the IPv6 routes and rules it would add, as ip -6 lines", async () => {
    const result = await lab.exec("rtr", uplinkdArgv("plan", "-c", lab.configPath));
    const lines = result.stdout.split("\n");
    for (const line of [
      "ip -6 route replace default via fe80::1 dev wan1 table 101 proto 73 metric 1024",
      "ip -6 route replace unreachable default table 102 proto 73 metric 4294967295",
      "ip -6 rule add priority 1302 from 2001:db8:2::2 lookup 102 protocol 73",
      "ip -6 rule add priority 1401 from 2001:db8:1001::/56 lookup 101 protocol 73",
    ]) {
      assert.ok(lines.includes(line), `plan lacks "${line}":\n${result.stdout}`);
    }
    assert.match(result.stdout, /snat ip6 prefix to 2001:db8:1002::\/56/);
    assert.deepEqual(await owned6(lab), { routes: [], rules: [] }, "plan changed the kernel");
  });

  it("check warns, in the router's namespace, about an uplink whose accept_ra ignores router advertisements", async () => {
    const clean = await lab.exec("rtr", uplinkdArgv("check", "-c", lab.configPath));
    assert.doesNotMatch(clean.stderr, /accept_ra/);
    await lab.exec("rtr", ["sysctl", "-qw", "net.ipv6.conf.wan2.accept_ra=1"]);
    try {
      const result = await lab.exec("rtr", uplinkdArgv("check", "-c", lab.configPath));
      assert.match(
        result.stderr,
        /warning: net\.ipv6\.conf\.wan2\.accept_ra is 1 while forwarding is on/,
      );
      assert.doesNotMatch(result.stderr, /wan1\.accept_ra/);
    } finally {
      await lab.exec("rtr", ["sysctl", "-qw", "net.ipv6.conf.wan2.accept_ra=2"]);
    }
  });

  it("SIGTERM removes every IPv6 rule, route and map element, and the RA routes stay", async () => {
    const daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
    await waitForIpv6Routes(lab, daemon);
    const running = await owned6(lab);
    assert.ok(running.rules.length >= 7, running.rules.join("\n"));
    assert.ok(running.routes.some((r) => /^default via fe80::\S+ dev wan1 .*metric 512/.test(r)));
    const set = await lab.exec("rtr", [
      "nft",
      "list",
      "map",
      "inet",
      "uplinkd",
      "balance6_default",
    ]);
    assert.match(set.stdout, /goto uplink_1/);
    assert.equal(await daemon.stop("SIGTERM"), 0, daemon.log());
    const left = await owned6(lab);
    assert.deepEqual(left, { routes: [], rules: [] });
    const tables = await lab.exec("rtr", ["nft", "list", "tables"]);
    assert.doesNotMatch(tables.stdout, /uplinkd/);
    const ra = await lab.exec("rtr", ["ip", "-6", "route", "show", "default", "proto", "ra"]);
    assert.equal(ra.stdout.trim().split("\n").length, 2, "the kernel's RA routes were touched");
  });
});

describe("following the ISP: delegated prefix, renumbering, a new RA router", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("v6f"), uplinks: 2, pd: true });
    const config = parse(await readFile(lab.configPath, "utf8")) as {
      uplinks: Record<string, unknown>[];
    };
    // With `pd`, the generated lab config already follows the delegated prefixes.
    assert.deepEqual(
      config.uplinks.map((u) => [u.gateway6, u.prefix6, u.prefix6_file]),
      lab.uplinks.map((u) => ["auto", "auto", lab.delegatedPrefixFile(u.number)]),
    );
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
    await waitForIpv6Routes(lab, daemon);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  /** Waits (bounded) until uplinkd's IPv6 rules and routes match every regular expression. */
  async function waitForOwned(patterns: RegExp[], what: string): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { routes, rules } = await owned6(lab);
      const all = [...routes, ...rules];
      if (patterns.every((p) => all.some((l) => p.test(l)))) return;
      assert.ok(Date.now() < deadline, `${what}:\n${all.join("\n")}\n${daemon.log(40)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** The sources the echo host saw for 200 IPv6 connections from the LAN client. */
  async function sources(): Promise<string[]> {
    const report = await traffic6(lab, { count: 200 });
    assertAllOk(report);
    return Object.keys(report.bySource).sort();
  }

  it("translates LAN sources into each uplink's delegated prefix (prefix6: auto, from the PD client's file)", async (t) => {
    const p1 = await lab.delegatedPrefix(1);
    const p2 = await lab.delegatedPrefix(2);
    assert.ok(p1 !== undefined && p2 !== undefined, "the lab delegated no prefix");
    await waitForOwned(
      [
        new RegExp(`from ${p1.replace(/\//, "\\/")} lookup 101`),
        new RegExp(`from ${p2.replace(/\//, "\\/")} lookup 102`),
      ],
      "no rule from the delegated prefixes",
    );
    const seen = await sources();
    t.diagnostic(`sources: ${JSON.stringify(seen)}`);
    assert.deepEqual(seen, [p1, p2].map((p) => p.replace(/::\/56$/, "::100")).sort());
  });

  it("follows a renumbering of isp2: new SLAAC address and delegated prefix, old ones gone", async (t) => {
    const oldPrefix = (await lab.delegatedPrefix(2)) ?? "";
    await lab.fault(2, "renumber");
    const newPrefix = (await lab.delegatedPrefix(2)) ?? "";
    const network = await lab.uplinkNetwork6(2);
    assert.notEqual(newPrefix, oldPrefix);
    const address = network.replace(/::\/64$/, "::2");
    await waitForOwned(
      [
        new RegExp(`from ${newPrefix.replace(/\//, "\\/")} lookup 102`),
        new RegExp(`from ${address} lookup 102`),
      ],
      "the rules did not follow the renumbering",
    );
    const { rules } = await owned6(lab);
    assert.ok(!rules.some((r) => r.includes(`from ${oldPrefix}`)), rules.join("\n"));
    const seen = await sources();
    t.diagnostic(`after renumber: ${JSON.stringify(seen)}`);
    assert.ok(seen.includes(newPrefix.replace(/::\/56$/, "::100")), JSON.stringify(seen));
    assert.ok(!seen.includes(oldPrefix.replace(/::\/56$/, "::100")), JSON.stringify(seen));
  });

  it("follows a new default router on isp1 (router advertisement from another address)", async () => {
    await lab.fault(1, "ra-change");
    const [router] = await lab.raGateways(1);
    assert.ok(router !== undefined && router !== "fe80::1", `RA router now ${String(router)}`);
    await waitForOwned(
      [new RegExp(`^default via ${router} dev wan1 table 101 `)],
      "table 101 kept the old router",
    );
    const seen = await sources();
    assert.equal(seen.length, 2, JSON.stringify(seen));
  });
});

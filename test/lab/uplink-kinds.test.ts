/**
 * Uplinks as they come in the field, on the real kernel: a point-to-point
 * uplink without a gateway (a TUN pair: POINTOPOINT, NOARP, raw IP, as LTE
 * modems and tunnels are), an uplink behind a CGNAT (a private address, a
 * second NAT at the ISP, a private upstream network), and an uplink whose
 * interface holds two addresses with `address:` picking the second. Each
 * describe builds its own lab and runs the daemon with the lab's config
 * (probes every 200 ms, down after 3 failed rounds, up after 5 passed);
 * TCP connections from the LAN client ask the echo host which address it
 * saw. PPPoE is not here: this kernel has no CONFIG_PPP; the
 * point-to-point uplink's session drop (its interface disappears) and
 * reconnect with a new address stand in for a PPP session's.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { after, before, describe, it, type TestContext } from "node:test";
import type { StatusDocument, UplinkStatus } from "../../src/control/api.js";
import type { Lab } from "../../src/lab/lab.js";
import type { TrafficReport } from "../../src/lab/traffic.js";
import { ping } from "./helpers.js";
import {
  labWithConfig,
  lanTraffic,
  sharesByUplink,
  startDaemon,
  testPrefix,
  type LabDaemon,
} from "./harness.js";

function uplinkOf(status: StatusDocument, name: string): UplinkStatus {
  const uplink = status.uplinks.find((u) => u.name === name);
  assert.ok(uplink !== undefined, `status has no uplink ${name}`);
  return uplink;
}

function assertAllOk(report: TrafficReport, count: number): void {
  assert.equal(report.failed, 0, `failed connections: ${JSON.stringify(report.errors)}`);
  assert.equal(report.ok, count);
  assert.equal(report.inconsistent, 0, "a connection's answers came from more than one uplink");
}

/** Assert that uplinks 1 and 2 each carried half of `report` within `slack` (0..1); report the shares. */
function assertEvenShares(t: TestContext, report: TrafficReport, lab: Lab, slack: number): void {
  const shares = sharesByUplink(report, lab);
  t.diagnostic(
    `shares of ${report.ok} connections: ${[...shares]
      .map(([n, share]) => `isp${n} ${(share * 100).toFixed(1)} %`)
      .join(", ")}`,
  );
  assert.equal(shares.get(0), undefined, `unknown sources: ${JSON.stringify(report.bySource)}`);
  for (const n of [1, 2]) {
    const share = shares.get(n) ?? 0;
    assert.ok(
      Math.abs(share - 0.5) <= slack,
      `uplink ${n}: ${(share * 100).toFixed(1)} % of connections, want 50 % ± ${slack * 100} (${JSON.stringify(report.bySource)})`,
    );
  }
}

function waitUplink(
  daemon: LabDaemon,
  name: string,
  want: (u: UplinkStatus) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<StatusDocument> {
  return daemon.waitFor(
    (s) => {
      const u = s.uplinks.find((x) => x.name === name);
      return u !== undefined && want(u);
    },
    timeoutMs,
    `${name} ${what}`,
    20,
  );
}

describe("a point-to-point uplink without a gateway (TUN pair, gateway: none)", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("p2p"), uplinks: 2, p2p: [2] });
    daemon = startDaemon(lab);
    await daemon.waitFor(
      (s) => s.uplinks.every((u) => u.state === "up" && u.active),
      20_000,
      "both uplinks up and active",
    );
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("is a POINTOPOINT, NOARP link routed `default dev wan2` in its table, with no gateway", async () => {
    const link = await lab.exec("rtr", ["ip", "-j", "link", "show", "dev", "wan2"]);
    const flags = (JSON.parse(link.stdout) as { flags: string[] }[])[0]?.flags ?? [];
    assert.ok(flags.includes("POINTOPOINT") && flags.includes("NOARP"), flags.join(","));
    const status = await daemon.waitFor(() => true, 1000);
    const isp2 = uplinkOf(status, "isp2");
    assert.deepEqual([isp2.address, isp2.gateway], ["100.64.2.2", null]);
    const routes = await lab.exec("rtr", [
      "ip",
      "-4",
      "route",
      "show",
      "table",
      String(isp2.table),
    ]);
    assert.match(routes.stdout, /^default dev wan2 proto 73 scope link/m);
    assert.ok(!routes.stdout.includes("via"), routes.stdout);
  });

  it("probes through it: a ping with its fwmark leaves by the TUN device and crosses its ISP", async () => {
    const status = await daemon.waitFor(() => true, 1000);
    const before = await lab.ispCounters(2);
    const r = await ping(lab, "rtr", "198.51.100.1", {
      count: 5,
      args: ["-m", String(Number(uplinkOf(status, "isp2").mark))],
    });
    assert.equal(r.received, 5);
    const afterCounters = await lab.ispCounters(2);
    assert.ok(afterCounters.up.packets - before.up.packets >= 5, "isp2 forwarded the pings");
  });

  it("takes its share of 600 new TCP connections", async (t) => {
    const report = await lanTraffic(lab, 600, { rounds: 2 });
    assertAllOk(report, 600);
    assertEvenShares(t, report, lab, 0.08);
  });

  it("fails over when blackholed beyond it, and takes connections again when it recovers", async (t) => {
    await lab.fault("isp2", "blackhole");
    try {
      await waitUplink(daemon, "isp2", (u) => u.state === "down" && !u.active, "down, inactive");
      const during = await lanTraffic(lab, 200, { rounds: 1, timeoutMs: 3000 });
      assertAllOk(during, 200);
      assert.deepEqual(Object.keys(during.bySource), ["100.64.1.2"]);
    } finally {
      await lab.heal("isp2");
    }
    await waitUplink(daemon, "isp2", (u) => u.state === "up" && u.active, "up, active", 20_000);
    const afterwards = await lanTraffic(lab, 400, { rounds: 1 });
    assertAllOk(afterwards, 400);
    assertEvenShares(t, afterwards, lab, 0.1);
  });
  it("is down while its session is down, and follows a reconnect with a new address without a restart", async (t) => {
    await lab.session("isp2", "down");
    const down = await waitUplink(
      daemon,
      "isp2",
      (u) => u.state === "down" && !u.active,
      "down, inactive",
      5000,
    );
    assert.equal(uplinkOf(down, "isp2").address, null);
    const during = await lanTraffic(lab, 100, { rounds: 1, timeoutMs: 3000 });
    assertAllOk(during, 100);
    assert.deepEqual(Object.keys(during.bySource), ["100.64.1.2"]);

    const address = await lab.session("isp2", "up");
    assert.equal(address, "100.64.2.3");
    await waitUplink(
      daemon,
      "isp2",
      (u) => u.state === "up" && u.active && u.address === address,
      `up and active from ${address}`,
      20_000,
    );
    const rules = await lab.exec("rtr", ["ip", "-4", "rule", "show"]);
    assert.match(rules.stdout, /from 100\.64\.2\.3 lookup 102/);
    assert.ok(!rules.stdout.includes("100.64.2.2"), rules.stdout);
    const afterwards = await lanTraffic(lab, 400, { rounds: 1 });
    assertAllOk(afterwards, 400);
    assert.deepEqual(Object.keys(afterwards.bySource).sort(), ["100.64.1.2", "100.64.2.3"]);
    assertEvenShares(t, afterwards, lab, 0.1);
  });
  it("gateway: auto finds no gateway on it and routes it the same (after a reload)", async (t) => {
    const text = await readFile(lab.configPath, "utf8");
    await writeFile(lab.configPath, text.replace("gateway: none", "gateway: auto"));
    daemon.child.kill("SIGHUP");
    await daemon.waitFor(
      () => /config reloaded: uplinks\.isp2\.gateway: .*none.* -> .*auto/.test(daemon.log(400)),
      10_000,
      "the reload",
    );
    const status = await waitUplink(daemon, "isp2", (u) => u.state === "up" && u.active, "up");
    assert.equal(uplinkOf(status, "isp2").gateway, null);
    const routes = await lab.exec("rtr", ["ip", "-4", "route", "show", "table", "102"]);
    assert.match(routes.stdout, /^default dev wan2 proto 73 scope link/m);
    const report = await lanTraffic(lab, 400, { rounds: 1 });
    assertAllOk(report, 400);
    assertEvenShares(t, report, lab, 0.1);
  });
});

describe("an uplink behind a CGNAT (10.2.1.2, a second NAT at its ISP)", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("cgn"), uplinks: 2, cgnat: [2] });
    daemon = startDaemon(lab);
    await daemon.waitFor(
      (s) => s.uplinks.every((u) => u.state === "up" && u.active),
      20_000,
      "both uplinks up and active",
    );
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("is balanced like any other; the echo host sees its ISP's outer address", async (t) => {
    const status = await daemon.waitFor(() => true, 1000);
    assert.equal(uplinkOf(status, "isp2").address, "10.2.1.2");
    const report = await lanTraffic(lab, 600, { rounds: 2 });
    assertAllOk(report, 600);
    assert.deepEqual(Object.keys(report.bySource).sort(), ["100.100.2.1", "100.64.1.2"]);
    assertEvenShares(t, report, lab, 0.08);
  });

  it("reaches its ISP's private upstream host (pinned 10.2.0.0/16) through it only", async () => {
    // Through isp1 the host does not exist (the internet has no route to 10/8): a balanced
    // connection would fail about half the time.
    const report = await lanTraffic(lab, 100, { rounds: 1, timeoutMs: 3000, host: "10.2.0.53" });
    assertAllOk(report, 100);
    assert.deepEqual(report.bySource, { "10.2.1.2": 100 });
  });

  it("reaches its connected private subnet (the ISP's gateway 10.2.1.1) through it", async () => {
    const r = await ping(lab, "lan", "10.2.1.1", { count: 5 });
    assert.equal(r.received, 5);
  });
});

describe("several addresses on one interface (address: picks the second)", () => {
  let lab: Lab;
  let daemon: LabDaemon;
  const second = "100.64.2.9";

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("adr"), uplinks: 2 }, (config) => {
      const uplinks = config.uplinks as Record<string, unknown>[];
      const isp2 = uplinks[1];
      if (isp2 !== undefined) isp2.address = second;
    });
    daemon = startDaemon(lab);
    await waitUplink(daemon, "isp1", (u) => u.state === "up" && u.active, "up, active", 20_000);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("waits for a configured address the interface does not hold: no traffic, status and log say so", async () => {
    const status = await waitUplink(
      daemon,
      "isp2",
      (u) => u.waitingForAddress === second,
      `waiting for ${second}`,
    );
    const isp2 = uplinkOf(status, "isp2");
    assert.deepEqual([isp2.address, isp2.active], [null, false]);
    assert.match(
      daemon.log(200),
      /address 100\.64\.2\.9 of uplink isp2 is not on wan2; waiting for it/,
    );
    const report = await lanTraffic(lab, 100, { rounds: 1 });
    assertAllOk(report, 100);
    assert.deepEqual(Object.keys(report.bySource), ["100.64.1.2"]);
  });

  it("uses it once it is there: the echo host and the ISP see it, never the primary address", async (t) => {
    const added = await lab.exec("rtr", ["ip", "addr", "add", `${second}/24`, "dev", "wan2"]);
    assert.equal(added.code, 0, added.stderr);
    const status = await waitUplink(
      daemon,
      "isp2",
      (u) => u.state === "up" && u.active && u.address === second,
      `up and active from ${second}`,
      20_000,
    );
    const isp2 = uplinkOf(status, "isp2");
    assert.deepEqual([isp2.addressSource, isp2.waitingForAddress], ["configured", null]);
    const report = await lanTraffic(lab, 600, { rounds: 2 });
    assertAllOk(report, 600);
    assert.deepEqual(Object.keys(report.bySource).sort(), ["100.64.1.2", second]);
    assertEvenShares(t, report, lab, 0.08);
    // The ICMP probes of isp2 leave from it too (the route's preferred source).
    const probes = async (source: string): Promise<number> => {
      const r = await lab.exec("rtr", ["conntrack", "-L", "-p", "icmp", "-s", source]);
      return r.stdout.split("\n").filter((l) => l.startsWith("icmp")).length;
    };
    assert.ok((await probes(second)) > 0, "no probe from the configured address");
    assert.equal(await probes("100.64.2.2"), 0, "a probe left from the primary address");
  });
});

/**
 * PPPoE end to end (needs a kernel with PPP: run in the VM, `npm run
 * test:vm`): uplink isp2 is a PPPoE session (pppoe-server in its ISP, pppd
 * with the kernel-mode plugin on the router, interface ppp2, `gateway:
 * auto`), isp1 a static Ethernet uplink. The daemon starts before the
 * session is up (ppp2 does not exist yet), balances real TCP connections
 * from the LAN client over both, holds isp2 down while its session is down,
 * and follows each reconnect (new address, new peer) without a restart.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Lab } from "../../src/lab/lab.js";
import { pppUnavailable } from "../../src/lab/pppoe.js";
import { labWithConfig, lanTraffic, testPrefix, type LabDaemon } from "../lab/harness.js";
import {
  assertAllOk,
  assertEvenShares,
  defaultHealth,
  ownedKernelState,
  startBuiltDaemon,
  uplinkOf,
  VM_STATE_TIMEOUT_MS,
  VM_TRAFFIC,
  waitUplink,
} from "./vm-helpers.js";

const blocked = await pppUnavailable();

describe("a PPPoE uplink (ppp2, gateway: auto) beside an Ethernet one", { skip: blocked }, () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("ppp"), uplinks: 2, pppoe: [2] }, defaultHealth);
    // The daemon starts while there is no session: ppp2 does not exist.
    await lab.session("isp2", "down");
    daemon = startBuiltDaemon(lab);
    await waitUplink(daemon, "isp1", (u) => u.state === "up" && u.active, "up, active");
    const waiting = await daemon.waitFor(() => true, 5000);
    assert.notEqual(uplinkOf(waiting, "isp2").state, "up");
    await lab.session("isp2", "up");
    await daemon.waitFor(
      (s) => s.uplinks.every((u) => u.state === "up" && u.active),
      VM_STATE_TIMEOUT_MS,
      "both uplinks up and active",
    );
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("routes default dev ppp2 in its table and takes its share of 300 new TCP connections", async (t) => {
    const status = await daemon.waitFor(() => true, 5000);
    const isp2 = uplinkOf(status, "isp2");
    assert.equal(isp2.address, "100.64.2.3");
    const link = await lab.exec("rtr", ["ip", "-j", "link", "show", "dev", "ppp2"]);
    const flags = (JSON.parse(link.stdout) as { flags: string[] }[])[0]?.flags ?? [];
    assert.ok(flags.includes("POINTOPOINT") && flags.includes("NOARP"), flags.join(","));
    const routes = await lab.exec("rtr", [
      "ip",
      "-4",
      "route",
      "show",
      "table",
      String(isp2.table),
    ]);
    assert.match(routes.stdout, /^default (via 100\.64\.2\.254 )?dev ppp2 /m);
    const report = await lanTraffic(lab, 300, { rounds: 2, ...VM_TRAFFIC });
    assertAllOk(report, 300);
    assertEvenShares(t, report, lab, [1, 2], 0.1);
  });

  it("is down while its session is down, and follows a reconnect with a new address and peer without a restart", async (t) => {
    const pid = daemon.child.pid;
    await lab.session("isp2", "down");
    const down = await waitUplink(
      daemon,
      "isp2",
      (u) => u.state === "down" && !u.active,
      "down, inactive",
    );
    assert.equal(uplinkOf(down, "isp2").address, null);
    const during = await lanTraffic(lab, 100, { rounds: 1, ...VM_TRAFFIC });
    assertAllOk(during, 100);
    assert.deepEqual(Object.keys(during.bySource), ["100.64.1.2"]);

    const address = await lab.session("isp2", "up");
    assert.equal(address, "100.64.2.4");
    await waitUplink(
      daemon,
      "isp2",
      (u) => u.state === "up" && u.active && u.address === address,
      `up and active from ${address}`,
    );
    const peer = await lab.exec("rtr", ["ip", "-j", "-4", "addr", "show", "dev", "ppp2"]);
    assert.match(peer.stdout, /"address":"100\.64\.2\.253"/);
    const rules = await lab.exec("rtr", ["ip", "-4", "rule", "show"]);
    assert.match(rules.stdout, /from 100\.64\.2\.4 lookup/);
    assert.ok(!rules.stdout.includes("100.64.2.3 "), rules.stdout);
    const afterwards = await lanTraffic(lab, 300, { rounds: 1, ...VM_TRAFFIC });
    assertAllOk(afterwards, 300);
    assert.deepEqual(Object.keys(afterwards.bySource).sort(), ["100.64.1.2", "100.64.2.4"]);
    assertEvenShares(t, afterwards, lab, [1, 2], 0.1);
    assert.equal(daemon.child.pid, pid);
    assert.equal(daemon.child.exitCode, null, "the daemon kept running");
  });

  it("lab fault pppoe-drop: the ISP ends the session, pppd redials, uplinkd moves rules, probes and NAT", async (t) => {
    const started = performance.now();
    await lab.fault("isp2", "pppoe-drop");
    await waitUplink(
      daemon,
      "isp2",
      (u) => u.state === "up" && u.active && u.address === "100.64.2.5",
      "up and active from 100.64.2.5",
    );
    t.diagnostic(`session drop to uplink up: ${Math.round(performance.now() - started)} ms`);
    const nat = await lab.exec("rtr", ["nft", "list", "table", "inet", "uplinkd"]);
    assert.ok(!/100\.64\.2\.[34]\b/.test(nat.stdout), "no rule names an old session's address");
    const report = await lanTraffic(lab, 200, { rounds: 1, ...VM_TRAFFIC });
    assertAllOk(report, 200);
    assert.deepEqual(Object.keys(report.bySource).sort(), ["100.64.1.2", "100.64.2.5"]);
  });

  it("stops cleanly: no rule, route or nft table left", async () => {
    assert.equal(await daemon.stop("SIGTERM"), 0, daemon.log());
    const left = await ownedKernelState(lab);
    assert.doesNotMatch(left.tables, /uplinkd/);
    assert.equal(left.rules, "");
    assert.equal(left.routes, "");
  });
});

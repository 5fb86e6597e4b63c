/**
 * The lab tests of the core on the stock kernel (run in the VM, `npm run
 * test:vm`; they also pass on the host): one lab with three static
 * uplinks and the default health intervals; balance over IPv4 and IPv6, a
 * blackhole beyond a gateway, an IPv6-only blackhole and a carrier loss
 * (down, traffic elsewhere, recovery), a 40 ms ± 10 ms delay from the
 * kernel's netem on one uplink beside the same delay from the lab's
 * user-space delay line on another (no false down; both RTTs seen), and a
 * clean stop.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Lab } from "../../src/lab/lab.js";
import { labWithConfig, lanTraffic, testPrefix, type LabDaemon } from "../lab/harness.js";
import { connectionsByUplink6, traffic6 } from "../lab/helpers.js";
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

/** How long the delayed uplinks are watched for a false down, ms. */
const DELAY_WATCH_MS = 20_000;

describe("the core on this kernel: three uplinks, default health intervals", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("vmc"), uplinks: 3 }, defaultHealth);
    daemon = startBuiltDaemon(lab);
    await daemon.waitFor(
      (s) => s.uplinks.every((u) => u.state === "up" && u.active && u.ipv6?.state === "up"),
      VM_STATE_TIMEOUT_MS,
      "every uplink up and active on both families",
    );
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("balances 300 new IPv4 connections over the three uplinks", async (t) => {
    const report = await lanTraffic(lab, 300, { rounds: 2, ...VM_TRAFFIC });
    assertAllOk(report, 300);
    assertEvenShares(t, report, lab, [1, 2, 3], 0.1);
  });

  it("balances 300 new IPv6 connections (NPTv6 of the ULA LAN) over the three uplinks", async (t) => {
    const report = await traffic6(lab, { count: 300, ...VM_TRAFFIC });
    assert.equal(report.failed, 0, JSON.stringify(report.errors));
    const by = connectionsByUplink6(lab, report);
    t.diagnostic(`IPv6 connections by uplink: ${JSON.stringify([...by])}`);
    assert.equal(by.get(0), undefined, JSON.stringify(report.bySource));
    for (const n of [1, 2, 3]) {
      const share = (by.get(n) ?? 0) / report.ok;
      assert.ok(Math.abs(share - 1 / 3) <= 0.12, `isp${n}: ${(share * 100).toFixed(1)} %`);
    }
  });

  it("fails over from a blackholed uplink and takes it back when it recovers", async (t) => {
    await lab.fault("isp1", "blackhole");
    try {
      await waitUplink(daemon, "isp1", (u) => u.state === "down" && !u.active, "down, inactive");
      const during = await lanTraffic(lab, 200, { rounds: 1, ...VM_TRAFFIC });
      assertAllOk(during, 200);
      assert.deepEqual(Object.keys(during.bySource).sort(), ["100.64.2.2", "100.64.3.2"]);
    } finally {
      await lab.heal("isp1");
    }
    await waitUplink(daemon, "isp1", (u) => u.state === "up" && u.active, "up, active");
    const afterwards = await lanTraffic(lab, 300, { rounds: 1, ...VM_TRAFFIC });
    assertAllOk(afterwards, 300);
    assertEvenShares(t, afterwards, lab, [1, 2, 3], 0.1);
  });

  it("moves new IPv6 connections off an uplink blackholed for IPv6 only, keeps its IPv4, and takes it back", async (t) => {
    await lab.fault("isp3", "blackhole6");
    try {
      await waitUplink(
        daemon,
        "isp3",
        (u) => u.state === "up" && u.active && u.ipv6?.state === "down",
        "IPv4 up and active, IPv6 down",
      );
      const v6 = await traffic6(lab, { count: 200, ...VM_TRAFFIC });
      assert.equal(v6.failed, 0, JSON.stringify(v6.errors));
      const by = connectionsByUplink6(lab, v6);
      t.diagnostic(`IPv6 connections by uplink during the fault: ${JSON.stringify([...by])}`);
      assert.deepEqual([...by.keys()].sort(), [1, 2], "new IPv6 connections avoid isp3");
      const v4 = await lanTraffic(lab, 200, { rounds: 1, ...VM_TRAFFIC });
      assertAllOk(v4, 200);
      assert.deepEqual(
        Object.keys(v4.bySource).sort(),
        ["100.64.1.2", "100.64.2.2", "100.64.3.2"],
        "IPv4 still uses isp3",
      );
    } finally {
      await lab.heal("isp3");
    }
    await waitUplink(
      daemon,
      "isp3",
      (u) => u.ipv6?.state === "up" && u.ipv6.active,
      "IPv6 up and active",
    );
    const v6 = await traffic6(lab, { count: 200, ...VM_TRAFFIC });
    assert.equal(v6.failed, 0, JSON.stringify(v6.errors));
    assert.deepEqual(
      [...connectionsByUplink6(lab, v6).keys()].sort(),
      [1, 2, 3],
      "IPv6 uses isp3 again",
    );
  });

  it("takes an uplink out at once when its carrier goes, and back when it returns", async () => {
    await lab.fault("isp2", "carrier");
    try {
      await waitUplink(daemon, "isp2", (u) => !u.active, "inactive", 20_000);
      const during = await lanTraffic(lab, 200, { rounds: 1, ...VM_TRAFFIC });
      assertAllOk(during, 200);
      assert.deepEqual(Object.keys(during.bySource).sort(), ["100.64.1.2", "100.64.3.2"]);
    } finally {
      await lab.heal("isp2");
    }
    await waitUplink(daemon, "isp2", (u) => u.state === "up" && u.active, "up, active");
  });

  it("keeps uplinks delayed 40 ms ± 10 ms (netem on isp1, the lab's delay line on isp2) up", async (t) => {
    const netem = await lab
      .exec("isp1", [
        "tc",
        "qdisc",
        "replace",
        "dev",
        "cust",
        "root",
        "netem",
        "delay",
        "40ms",
        "10ms",
      ])
      .then(
        () => undefined,
        (error: unknown) => String(error),
      );
    if (netem !== undefined) {
      t.skip(`no netem in this kernel: ${netem}`);
      return;
    }
    await lab.fault("isp2", "delay=40,jitter=10");
    const states: string[] = [];
    const rtts: Record<string, number[]> = { isp1: [], isp2: [], isp3: [] };
    try {
      const deadline = Date.now() + DELAY_WATCH_MS;
      while (Date.now() < deadline) {
        const s = await daemon.waitFor(() => true, 5000);
        for (const name of ["isp1", "isp2", "isp3"]) {
          const u = uplinkOf(s, name);
          if (u.state !== "up") states.push(`${name} ${u.state}`);
          if (u.rtt !== null) rtts[name]?.push(u.rtt);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      await lab.exec("isp1", ["tc", "qdisc", "del", "dev", "cust", "root"]);
      await lab.heal("isp2");
    }
    const median = (xs: number[]): number =>
      [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
    const m = Object.fromEntries(Object.entries(rtts).map(([k, v]) => [k, median(v.slice(-10))]));
    t.diagnostic(
      `median RTT over the last readings: netem isp1 ${m.isp1?.toFixed(1)} ms, delay line isp2 ${m.isp2?.toFixed(1)} ms, undelayed isp3 ${m.isp3?.toFixed(1)} ms`,
    );
    assert.deepEqual(states, [], "no uplink left up while delayed");
    // Status RTT is the mean over the health window, which still holds
    // rounds from before the delay: 20 s in, it shows about half of it.
    for (const name of ["isp1", "isp2"]) {
      assert.ok(
        (m[name] ?? 0) - (m.isp3 ?? 0) >= 12,
        `${name} RTT ${m[name]} ms shows the 40 ms delay`,
      );
    }
    assert.ok(
      Math.abs((m.isp1 ?? 0) - (m.isp2 ?? 0)) <= 15,
      `netem (${m.isp1} ms) and the delay line (${m.isp2} ms) delay alike`,
    );
  });

  it("stops cleanly: no rule, route or nft table left", async () => {
    assert.equal(await daemon.stop("SIGTERM"), 0, daemon.log());
    const left = await ownedKernelState(lab);
    assert.doesNotMatch(left.tables, /uplinkd/);
    assert.equal(left.rules, "");
    assert.equal(left.routes, "");
  });
});

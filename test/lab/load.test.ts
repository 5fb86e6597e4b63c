/**
 * Balancing by spare capacity on the real kernel: ISPs limited to 10 and
 * 40 Mbit/s (tbf), the configured bandwidths the same, equal static
 * weights. A download by the router itself, bound to isp1's address, fills
 * isp1; new LAN connections must then avoid it (`least-used`) or spill to
 * isp2 (`spillover`), and a connection opened before never changes uplink.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type { StatusDocument } from "../../src/control/api.js";
import type { Lab } from "../../src/lab/lab.js";
import {
  holdConnection,
  lanTraffic,
  labWithConfig,
  sharesByUplink,
  startDaemon,
  testPrefix,
  type LabDaemon,
} from "./harness.js";

/** isp2's share of new connections in the default policy's effective weights, %. */
function isp2Share(status: StatusDocument): number {
  const choice = status.policies.default;
  if (choice?.kind !== "balance") return Number.NaN;
  const total = choice.members.reduce((sum, m) => sum + m.weight, 0);
  const isp2 = choice.members.find((m) => m.uplink === "isp2")?.weight ?? 0;
  return (100 * isp2) / total;
}

/** The router downloads from the echo host through isp1 (bound to its address) for `seconds`. */
function fillIsp1(lab: Lab, seconds: number): ChildProcess {
  const isp1 = lab.uplink("isp1");
  return lab.spawn(
    "rtr",
    ["iperf3", "-c", "192.0.2.10", "-B", isp1.routerAddress, "-R", "-t", String(seconds)],
    { stdio: "ignore" },
  );
}

async function labFor(tag: string, policy: Record<string, unknown>): Promise<Lab> {
  const lab = await labWithConfig({ prefix: testPrefix(tag), uplinks: 2 }, (config) => {
    const uplinks = config.uplinks as Record<string, unknown>[];
    const [isp1, isp2] = uplinks;
    assert.ok(isp1 !== undefined && isp2 !== undefined);
    isp1.bandwidth = { down: "10mbit", up: "10mbit" };
    isp2.bandwidth = { down: "40mbit", up: "40mbit" };
    config.policies = { default: policy };
  });
  await lab.fault("isp1", "rate=10mbit");
  await lab.fault("isp2", "rate=40mbit");
  return lab;
}

describe("least-used", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labFor("lu", { balance: "least-used" });
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("new connections follow spare capacity: 20/80 idle, nearly all on isp2 while isp1 is full; an established one stays", async (t) => {
    const idle = await daemon.waitFor(
      (s) => Math.abs(isp2Share(s) - 80) < 5,
      10_000,
      "idle weights",
    );
    t.diagnostic(`idle: isp2 ${isp2Share(idle).toFixed(1)} % of new connections`);
    const quiet = await lanTraffic(lab, 300);
    assert.equal(quiet.failed, 0, JSON.stringify(quiet.errors));
    const quietIsp2 = sharesByUplink(quiet, lab).get(2) ?? 0;
    assert.ok(quietIsp2 > 0.68 && quietIsp2 < 0.92, `isp2 carried ${quietIsp2} of 300 when idle`);

    const hold = holdConnection(lab, { durationMs: 40_000, timeoutMs: 3000 });
    const load = fillIsp1(lab, 25);
    try {
      // isp1 at ~90 % of 10 Mbit/s: its spare ~1 Mbit/s against isp2's ~40.
      const full = await daemon.waitFor((s) => isp2Share(s) > 92, 15_000, "isp1 full");
      const isp1 = full.uplinks.find((u) => u.name === "isp1");
      t.diagnostic(
        `isp1 full: ${((isp1?.throughput?.down ?? 0) / 1e6).toFixed(1)} Mbit/s down; isp2 ${isp2Share(full).toFixed(1)} %`,
      );
      const busy = await lanTraffic(lab, 300);
      assert.equal(busy.failed, 0, JSON.stringify(busy.errors));
      const busyIsp2 = sharesByUplink(busy, lab).get(2) ?? 0;
      assert.ok(busyIsp2 > 0.88, `isp2 carried ${busyIsp2} of 300 while isp1 was full`);
    } finally {
      load.kill();
    }
    const back = await daemon.waitFor(
      (s) => Math.abs(isp2Share(s) - 80) < 6,
      20_000,
      "weights back to idle",
    );
    t.diagnostic(`after the load: isp2 ${isp2Share(back).toFixed(1)} %`);
    const lines = await hold.stop();
    const sources = new Set(lines.flatMap((l) => (l.event === "answer" ? [l.source] : [])));
    assert.equal(sources.size, 1, `the held connection changed uplink: ${[...sources].join(", ")}`);
    assert.equal(
      lines.filter((l) => l.event === "no-answer" || l.event === "closed").length,
      0,
      "the held connection missed answers or broke",
    );
  });
});

describe("spillover", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labFor("sp", { balance: "spillover", threshold: 80 });
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("isp1 alone until it is full, then new connections spill to isp2, and come back", async () => {
    const quiet = await lanTraffic(lab, 100);
    assert.equal(quiet.failed, 0, JSON.stringify(quiet.errors));
    assert.equal(
      sharesByUplink(quiet, lab).get(1) ?? 0,
      1,
      "isp1 takes everything below its threshold",
    );
    const load = fillIsp1(lab, 25);
    try {
      await daemon.waitFor((s) => isp2Share(s) === 100, 15_000, "isp1 full, spilling to isp2");
      const busy = await lanTraffic(lab, 100);
      assert.equal(busy.failed, 0, JSON.stringify(busy.errors));
      assert.equal(sharesByUplink(busy, lab).get(2) ?? 0, 1, "everything spills to isp2");
    } finally {
      load.kill();
    }
    await daemon.waitFor((s) => isp2Share(s) === 0, 20_000, "back on isp1");
  });
});

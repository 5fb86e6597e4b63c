/**
 * IPv6 without IPv6 targets on the real kernel: the dual-stack lab with two
 * uplinks, a config whose health targets are IPv4 only (as a first config
 * often is). Each uplink's IPv6 is then unmonitored and follows its IPv4
 * health and link: an outage of both families beyond isp1's gateway moves
 * new IPv6 connections off isp1 too, not only IPv4 ones.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type { StatusDocument } from "../../src/control/api.js";
import type { Lab } from "../../src/lab/lab.js";
import type { TrafficReport } from "../../src/lab/traffic.js";
import {
  labWithConfig,
  lanTraffic,
  sharesByUplink,
  startDaemon,
  testPrefix,
  uplinkdArgv,
  type LabDaemon,
} from "./harness.js";
import { connectionsByUplink6, traffic6 } from "./helpers.js";

function assertAllOk(report: TrafficReport, count: number, what: string): void {
  assert.equal(report.failed, 0, `${what}: failed connections: ${JSON.stringify(report.errors)}`);
  assert.equal(report.ok, count);
  assert.equal(report.inconsistent, 0, "a connection's answers came from more than one uplink");
}

/** What the status says of both families, for messages. */
function families(status: StatusDocument): string {
  return status.uplinks
    .map(
      (u) =>
        `${u.name}: IPv4 ${u.state}${u.active ? "(active)" : ""}, IPv6 ${
          u.ipv6 === null
            ? "none"
            : `${u.ipv6.state}${u.ipv6.active ? "(active)" : ""} [${u.ipv6.reason}]`
        }`,
    )
    .join("; ");
}

describe("IPv6 of an uplink without IPv6 targets follows its IPv4 health", () => {
  let lab: Lab | undefined;
  let daemon: LabDaemon | undefined;
  let targets: string[] = [];

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("u6"), uplinks: 2 }, (config) => {
      const health = config.health as { targets: string[] };
      targets = health.targets.filter((a) => !a.includes(":"));
      assert.ok(targets.length > 0 && targets.length < health.targets.length);
      health.targets = targets;
    });
  });

  after(async () => {
    await daemon?.stop();
    if (lab !== undefined) {
      for (const u of lab.uplinks) await lab.heal(u.number);
      await lab.down();
    }
  });

  it("check warns at health.targets", () => {
    assert.ok(lab !== undefined);
    const [node = "", ...rest] = uplinkdArgv("check", "-c", lab.configPath);
    const r = spawnSync(node, rest, { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stderr.trimEnd().split("\n");
    const warning = lines.find((l) => l.includes("no IPv6 target"));
    assert.ok(warning !== undefined, r.stderr);
    assert.match(
      warning,
      /:\d+:\d+: health\.targets: warning: no IPv6 target: the IPv6 of uplinks isp1, isp2 is not monitored and follows IPv4/,
    );
  });

  it("a blackhole of both families beyond isp1's gateway moves new IPv4 and IPv6 connections off isp1", async (t) => {
    assert.ok(lab !== undefined);
    const l = lab;
    daemon = startDaemon(l);
    const ready = await daemon.waitFor(
      (s) =>
        s.uplinks.every(
          (u) => u.state === "up" && u.active && u.ipv6?.state === "unmonitored" && u.ipv6.active,
        ),
      40_000,
      "both uplinks up, IPv6 unmonitored and active",
    );
    t.diagnostic(families(ready));
    assert.match(ready.uplinks[0]?.ipv6?.reason ?? "", /follows IPv4, which is up/);

    const before6 = await traffic6(l, { count: 40 });
    assertAllOk(before6, 40, "IPv6 before the fault");
    assert.deepEqual(
      [...connectionsByUplink6(l, before6).keys()].sort(),
      [1, 2],
      "IPv6 balances over both uplinks",
    );

    await l.fault(1, "blackhole");
    const down = await daemon.waitFor(
      (s) => {
        const [isp1, isp2] = s.uplinks;
        return (
          isp1?.state === "down" &&
          !isp1.active &&
          isp1.ipv6?.state === "unmonitored" &&
          !isp1.ipv6.active &&
          isp2?.active === true &&
          isp2.ipv6?.active === true
        );
      },
      20_000,
      "isp1 down in IPv4 and inactive in IPv6",
      20,
    );
    t.diagnostic(families(down));
    assert.match(down.uplinks[0]?.ipv6?.reason ?? "", /follows IPv4, which is down/);

    const report6 = await traffic6(l, { count: 20 });
    assertAllOk(report6, 20, "new IPv6 connections during the outage");
    assert.deepEqual([...connectionsByUplink6(l, report6).keys()], [2]);
    const report4 = await lanTraffic(l, 20);
    assertAllOk(report4, 20, "new IPv4 connections during the outage");
    assert.deepEqual([...sharesByUplink(report4, l).keys()], [2]);

    await l.heal(1);
    await daemon.waitFor(
      (s) => s.uplinks.every((u) => u.state === "up" && u.active && u.ipv6?.active === true),
      40_000,
      "isp1 back in both families",
    );
    const back6 = await traffic6(l, { count: 40 });
    assertAllOk(back6, 40, "IPv6 after recovery");
    assert.deepEqual([...connectionsByUplink6(l, back6).keys()].sort(), [1, 2]);
  });
});

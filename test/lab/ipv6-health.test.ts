/**
 * Health per address family on the real kernel: the dual-stack lab with two
 * uplinks (weights 1:1), the daemon judging each uplink's IPv4 by the IPv4
 * targets and its IPv6 by the IPv6 targets (ICMPv6 from the uplink's
 * global address with its fwmark), faults injected beyond isp1's gateway
 * for one family at a time, and real TCP connections from the LAN client
 * whose uplink the echo host reports by the source address it saw.
 *
 * Each test starts its own daemon (fresh health history) and heals every
 * fault after. Time bounds are generous: failover time is the benchmark's.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import type { StatusDocument, UplinkStatus } from "../../src/control/api.js";
import { LAB_HEALTH_TARGETS6 } from "../../src/lab/config.js";
import type { Lab } from "../../src/lab/lab.js";
import type { TrafficReport } from "../../src/lab/traffic.js";
import {
  labWithConfig,
  lanTraffic,
  sharesByUplink,
  startDaemon,
  testPrefix,
  type LabDaemon,
} from "./harness.js";
import { connectionsByUplink6, events, eventually, traffic6 } from "./helpers.js";
import { runCommand } from "../../src/process/run.js";

function uplinkOf(status: StatusDocument, name: string): UplinkStatus {
  const uplink = status.uplinks.find((u) => u.name === name);
  assert.ok(uplink !== undefined, `status has no uplink ${name}`);
  return uplink;
}

type State = UplinkStatus["state"];

/** What the status says of both families, for messages. */
function describeFamilies(status: StatusDocument): string {
  return status.uplinks
    .map(
      (u) =>
        `${u.name}: IPv4 ${u.state}${u.active ? "(active)" : ""} [${u.reason}], IPv6 ${
          u.ipv6 === null
            ? "none"
            : `${u.ipv6.state}${u.ipv6.active ? "(active)" : ""} ${u.ipv6.address ?? "-"} [${u.ipv6.reason}]`
        }`,
    )
    .join("; ");
}

/**
 * Wait until uplink `name` has IPv4 state `v4` and IPv6 state `v6`, each
 * active exactly when up, and every other uplink is active in both
 * families. Activity follows the policy choices the daemon applied (none
 * while an apply is under way), so once this holds new connections follow
 * the new choice.
 */
function waitFamilies(
  daemon: LabDaemon,
  name: string,
  v4: State,
  v6: State,
  timeoutMs = 20_000,
): Promise<StatusDocument> {
  const usable = (s: State) => s === "up";
  return daemon.waitFor(
    (status) => {
      const u = status.uplinks.find((x) => x.name === name);
      const others = status.uplinks.filter((x) => x.name !== name);
      return (
        others.every((x) => x.active && x.ipv6?.active === true) &&
        u !== undefined &&
        u.state === v4 &&
        u.active === usable(v4) &&
        u.ipv6 !== null &&
        u.ipv6.state === v6 &&
        u.ipv6.active === usable(v6)
      );
    },
    timeoutMs,
    `${name} IPv4 ${v4}, IPv6 ${v6}`,
    20,
  );
}

function assertAllOk(report: TrafficReport, count: number): void {
  assert.equal(report.failed, 0, `failed connections: ${JSON.stringify(report.errors)}`);
  assert.equal(report.ok, count);
  assert.equal(report.inconsistent, 0, "a connection's answers came from more than one uplink");
}

/** Uplink numbers that carried IPv4 connections (by the source the echo host saw). */
async function uplinks4(lab: Lab, count = 100): Promise<number[]> {
  const report = await lanTraffic(lab, count);
  assertAllOk(report, count);
  return [...sharesByUplink(report, lab).keys()].sort((a, b) => a - b);
}

/** Uplink numbers that carried IPv6 connections (by the source the echo host saw). */
async function uplinks6(lab: Lab, count = 100): Promise<number[]> {
  const report = await traffic6(lab, { count });
  assertAllOk(report, count);
  return [...connectionsByUplink6(lab, report).keys()].sort((a, b) => a - b);
}

/**
 * The `-I` source of every `ping -6` running in the router namespace with
 * fwmark `mark` (the daemon's ICMPv6 probes of one uplink), read from
 * /proc/PID/cmdline of the namespace's processes (`ip netns pids`).
 */
async function icmp6Sources(lab: Lab, mark: number): Promise<string[]> {
  const { stdout } = await runCommand("ip", ["netns", "pids", lab.namespace("rtr")]);
  const sources: string[] = [];
  for (const pid of stdout.split(/\s+/).filter((p) => p !== "")) {
    let argv: string[];
    try {
      argv = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    } catch {
      continue; // gone meanwhile
    }
    if (!/(^|\/)ping$/.test(argv[0] ?? "") || !argv.includes("-6")) continue;
    if (argv[argv.indexOf("-m") + 1] !== String(mark)) continue;
    sources.push(argv[argv.indexOf("-I") + 1] ?? "(none)");
  }
  return sources.sort();
}

describe("health per address family: IPv4 and IPv6 fail over apart", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    // The generated lab config is dual-stack: it already probes the IPv6 targets.
    lab = await labWithConfig({ prefix: testPrefix("h6"), uplinks: 2 }, (config) => {
      const health = config.health as { targets: string[] };
      assert.deepEqual(
        health.targets.filter((a) => a.includes(":")),
        [...LAB_HEALTH_TARGETS6],
      );
    });
  });

  after(async () => {
    await lab.down();
  });

  beforeEach(async () => {
    daemon = startDaemon(lab);
    await waitFamilies(daemon, "isp1", "up", "up", 40_000);
    await waitFamilies(daemon, "isp2", "up", "up", 40_000);
    // Both families balance over both uplinks before any fault.
    assert.deepEqual(await uplinks4(lab), [1, 2]);
    assert.deepEqual(await uplinks6(lab), [1, 2]);
  });

  afterEach(async () => {
    await daemon.stop();
    for (const u of lab.uplinks) await lab.heal(u.number);
  });

  it("an IPv6-only blackhole beyond isp1's gateway moves new IPv6 connections off isp1; IPv4 keeps using it; recovery", async (t) => {
    const start = (await events(lab)).length;
    await lab.fault(1, "blackhole6");
    const down = await waitFamilies(daemon, "isp1", "up", "down");
    t.diagnostic(describeFamilies(down));
    assert.match(uplinkOf(down, "isp1").ipv6?.reason ?? "", /2001:db8:ffff::/);
    assert.deepEqual(await uplinks6(lab), [2], "new IPv6 connections avoid isp1");
    assert.deepEqual(await uplinks4(lab), [1, 2], "IPv4 still uses isp1");
    const changes = (await events(lab)).slice(start).filter((e) => e.uplink === "isp1");
    assert.deepEqual(
      changes.map((e) => [e.family, e.to]),
      [[6, "down"]],
      JSON.stringify(changes),
    );

    await lab.heal(1);
    const back = await waitFamilies(daemon, "isp1", "up", "up");
    t.diagnostic(describeFamilies(back));
    assert.deepEqual(await uplinks6(lab), [1, 2], "IPv6 uses isp1 again");
    assert.deepEqual(await uplinks4(lab), [1, 2]);
  });

  it("an IPv4-only blackhole moves new IPv4 connections off isp1; IPv6 keeps using it; recovery", async (t) => {
    const start = (await events(lab)).length;
    await lab.fault(1, "blackhole4");
    const down = await waitFamilies(daemon, "isp1", "down", "up");
    t.diagnostic(describeFamilies(down));
    assert.deepEqual(await uplinks4(lab), [2], "new IPv4 connections avoid isp1");
    assert.deepEqual(await uplinks6(lab), [1, 2], "IPv6 still uses isp1");
    const changes = (await events(lab)).slice(start).filter((e) => e.uplink === "isp1");
    assert.deepEqual(
      changes.map((e) => [e.family, e.to]),
      [[4, "down"]],
      JSON.stringify(changes),
    );

    await lab.heal(1);
    await waitFamilies(daemon, "isp1", "up", "up");
    assert.deepEqual(await uplinks4(lab), [1, 2], "IPv4 uses isp1 again");
    assert.deepEqual(await uplinks6(lab), [1, 2]);
  });

  it("carrier loss takes both families of isp1 down; both come back with the carrier", async (t) => {
    const start = (await events(lab)).length;
    await lab.fault(1, "carrier");
    const down = await waitFamilies(daemon, "isp1", "down", "down");
    t.diagnostic(describeFamilies(down));
    assert.deepEqual(await uplinks4(lab), [2]);
    assert.deepEqual(await uplinks6(lab), [2]);
    const changes = (await events(lab)).slice(start).filter((e) => e.uplink === "isp1");
    assert.deepEqual(
      changes.map((e) => [e.family, e.to, e.reason]).sort(),
      [
        [4, "down", "carrier lost"],
        [6, "down", "carrier lost"],
      ],
      JSON.stringify(changes),
    );

    await lab.heal(1);
    const back = await waitFamilies(daemon, "isp1", "up", "up", 40_000);
    t.diagnostic(describeFamilies(back));
    assert.deepEqual(await uplinks4(lab), [1, 2]);
    assert.deepEqual(await uplinks6(lab), [1, 2]);
  });
  // Last: the renumbering stays (heal does not undo it).
  it("ICMPv6 probes follow a renumbering (SLAAC) to the new address without a restart", async (t) => {
    const status = await daemon.status();
    assert.ok(status !== undefined);
    const mark = Number(uplinkOf(status, "isp1").mark);
    const before = uplinkOf(status, "isp1").ipv6?.address;
    assert.ok(before !== undefined && before !== null);
    assert.deepEqual(await icmp6Sources(lab, mark), [before, before], "two IPv6 targets");
    await lab.fault(1, "renumber");
    const network = (await lab.uplinkNetwork6(1)).replace(/::\/64$/, ":");
    const moved = await daemon.waitFor(
      (s) => {
        const v6 = uplinkOf(s, "isp1").ipv6;
        return v6 !== null && v6.state === "up" && (v6.address ?? "").startsWith(network);
      },
      30_000,
      `isp1 IPv6 up with an address in ${network}:/64`,
    );
    const after = uplinkOf(moved, "isp1").ipv6?.address ?? "";
    t.diagnostic(`isp1 IPv6 ${before} -> ${after}: ${describeFamilies(moved)}`);
    assert.ok(
      await eventually(async () => {
        const sources = await icmp6Sources(lab, mark);
        return sources.length === 2 && sources.every((a) => a === after);
      }, 10_000),
      `ping -6 -I sources: ${JSON.stringify(await icmp6Sources(lab, mark))}, want ${after}`,
    );
    // The probes from the new address pass: IPv6 stays up over the next rounds.
    await new Promise((r) => setTimeout(r, 2000));
    const later = await daemon.status();
    assert.equal(later === undefined ? undefined : uplinkOf(later, "isp1").ipv6?.state, "up");
    assert.ok(daemon.child.exitCode === null, "the daemon was not restarted");
    const six = await uplinks6(lab);
    assert.deepEqual(six, [1, 2], "new IPv6 connections use isp1 from its new address");
  });
});

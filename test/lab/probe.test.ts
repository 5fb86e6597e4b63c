/**
 * Health probes on the real kernel: iputils ping with a fwmark inside two
 * network namespaces of this test's own (`hp-<pid>-r`, the router, and
 * `hp-<pid>-i`, the ISP with the targets on its loopback), joined by a veth
 * pair. The router has no default route in its main table: only probes
 * carrying the fwmark reach the targets. Faults: an nft input drop in the
 * ISP (blackhole). The host's own namespace is never touched.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runCommand } from "../../src/process/run.js";
import { systemClock } from "../../src/clock.js";
import type { StateChange, UplinkState } from "../../src/health/machine.js";
import { UplinkMonitor } from "../../src/health/monitor.js";
import { resolveHealthSettings } from "../../src/health/options.js";
import { nodeSpawner, type ProcessSpawner } from "../../src/process/spawn.js";

const ROUTER = `hp-${process.pid}-r`;
const ISP = `hp-${process.pid}-i`;
const A = "198.51.100.1";
const B = "203.0.113.1";
const MARK = 0x100;

function ip(...args: string[]) {
  return runCommand("ip", args);
}

function inNs(ns: string, file: string, args: readonly string[]) {
  return runCommand("ip", ["netns", "exec", ns, file, ...args]);
}

async function deleteNamespaces(): Promise<void> {
  for (const ns of [ROUTER, ISP]) {
    await runCommand("ip", ["netns", "del", ns]).catch(() => undefined);
  }
}

async function createLab(): Promise<void> {
  await ip("netns", "add", ROUTER);
  await ip("netns", "add", ISP);
  await ip("-n", ROUTER, "link", "set", "lo", "up");
  await ip("-n", ISP, "link", "set", "lo", "up");
  await ip("-n", ROUTER, "link", "add", "wan", "type", "veth", "peer", "name", "isp", "netns", ISP);
  await ip("-n", ROUTER, "addr", "add", "100.64.250.1/30", "dev", "wan");
  await ip("-n", ISP, "addr", "add", "100.64.250.2/30", "dev", "isp");
  await ip("-n", ROUTER, "link", "set", "wan", "up");
  await ip("-n", ISP, "link", "set", "isp", "up");
  await ip("-n", ISP, "addr", "add", `${A}/32`, "dev", "lo");
  await ip("-n", ISP, "addr", "add", `${B}/32`, "dev", "lo");
  // Only marked traffic finds the ISP: rule fwmark -> table 100 -> default via the ISP.
  await ip("-n", ROUTER, "route", "add", "default", "via", "100.64.250.2", "table", "100");
  await ip("-n", ROUTER, "rule", "add", "fwmark", String(MARK), "lookup", "100", "pref", "100");
}

async function blackhole(on: boolean): Promise<void> {
  if (on) {
    await inNs(ISP, "nft", ["add", "table", "inet", "hp"]);
    await inNs(ISP, "nft", [
      "add chain inet hp in { type filter hook input priority 0; policy drop; }",
    ]);
  } else {
    await inNs(ISP, "nft", ["delete", "table", "inet", "hp"]);
  }
}

/** Polls `condition` every 10 ms for at most `limitMs`; returns the ms it took, or throws. */
async function waitFor(what: string, condition: () => boolean, limitMs: number): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < Math.ceil(limitMs / 10); i++) {
    if (condition()) return performance.now() - start;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`${what}: not within ${limitMs} ms`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("ICMP health probes through a fwmark, in network namespaces", () => {
  const pids: number[] = [];
  const transitions: StateChange[] = [];
  let monitor: UplinkMonitor;
  // Runs ping inside the router namespace (`ip netns exec` execs ping: same pid).
  const spawner: ProcessSpawner = (file, args) => {
    const child = nodeSpawner("ip", ["netns", "exec", ROUTER, file, ...args]);
    if (child.pid !== undefined) pids.push(child.pid);
    return child;
  };

  before(async () => {
    await deleteNamespaces();
    try {
      await createLab();
    } catch (error) {
      await deleteNamespaces();
      throw error;
    }
    monitor = new UplinkMonitor({
      uplink: "isp1",
      settings: resolveHealthSettings({
        targets: [A, B],
        interval: 200,
        timeout: 500,
        down: 3,
        up: 5,
        reliability: 1,
      }),
      source: { mark: MARK, address: "100.64.250.1" },
      clock: systemClock,
      spawner,
      onTransition: (t) => transitions.push(t),
    });
  });

  after(async () => {
    await monitor.stop();
    await deleteNamespaces();
  });

  const state = (): UplinkState => monitor.state;

  it("the uplink comes up from real ping replies", async () => {
    monitor.start();
    await waitFor("up", () => state() === "up", 3000);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const snap = monitor.snapshot();
    assert.equal(pids.length, 2, "one ping per target");
    assert.equal(snap.targets.length, 2, "a window per target");
    for (const t of snap.targets) {
      assert.ok(t.received >= 4, `${t.target} received ${t.received}`);
      assert.equal(t.lost, 0);
      assert.ok((t.rttMs ?? 99) < 5, `${t.target} rtt ${t.rttMs}`);
    }
  });

  it("a blackhole beyond the router takes it down in about a second", async () => {
    await blackhole(true);
    const took = await waitFor("down", () => state() === "down", 3000);
    assert.ok(took < 1500, `down after ${Math.round(took)} ms`);
    assert.equal(transitions.at(-1)?.reason, `3 rounds failed: ${A} lost 3/3, ${B} lost 3/3`);
  });

  it("it is up again about a second after the blackhole is lifted", async () => {
    await blackhole(false);
    const took = await waitFor("up", () => state() === "up", 4000);
    assert.ok(took < 2000, `up after ${Math.round(took)} ms`);
  });

  it("stop leaves no ping process behind", async () => {
    assert.ok(pids.length > 0, "no ping process was started, so none could be left");
    await monitor.stop();
    for (const pid of pids) assert.equal(alive(pid), false, `ping ${pid} still runs`);
  });
});

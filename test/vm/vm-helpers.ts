/**
 * Helpers of the VM suite (test/vm): lab tests that run inside a machine
 * booted from Debian's stock kernel by scripts/vm.sh (`npm run test:vm`),
 * under emulation, so they use the default health intervals (probes every
 * 500 ms, timeout 1 s) and generous waits, and assert behaviour (which
 * uplink, up or down, kept connections, clean stop), not speed.
 */
import assert from "node:assert/strict";
import type { TestContext } from "node:test";
import type { StatusDocument, UplinkStatus } from "../../src/control/api.js";
import type { Lab } from "../../src/lab/lab.js";
import type { TrafficReport } from "../../src/lab/traffic.js";
import { fileURLToPath } from "node:url";
import { LabDaemon, sharesByUplink } from "../lab/harness.js";

// Lab scripts (echo hosts, traffic) run from the build: compiling them with
// tsx at each start takes tens of seconds under emulation.
process.env.UPLINKD_LAB_SCRIPTS ??= "dist";

/**
 * Longest wait for an uplink to change state, ms: 30 s (down takes 3 rounds
 * of 500 ms plus the timeout; up 5), which LabDaemon.waitFor multiplies by
 * the lab's time scale (10 under emulation: the daemon's first start alone
 * takes tens of seconds there).
 */
export const VM_STATE_TIMEOUT_MS = 30_000;

/**
 * Traffic options of the VM suite: 10 connections at a time, each given
 * 30 s (under emulation a connection through a user-space PPPoE server or
 * a busy machine takes seconds, and 50 at a time timed out).
 */
export const VM_TRAFFIC = { concurrency: 10, timeoutMs: 30_000 } as const;

/** The built CLI (`npm run build` first): under emulation, compiling the sources with tsx at each start would take most of a minute. */
const BUILT_CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));

/** Start the built daemon with the lab's config in the router namespace. */
export function startBuiltDaemon(lab: Lab): LabDaemon {
  const child = lab.spawn("rtr", [process.execPath, BUILT_CLI, "run", "-c", lab.configPath], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new LabDaemon(lab, child);
}

/** Config edit: the lab's fast health profile replaced by the defaults. */
export function defaultHealth(config: Record<string, unknown>): void {
  const health = config.health as Record<string, unknown>;
  delete health.interval;
  delete health.timeout;
}

/** The uplink `name` of a status document. */
export function uplinkOf(status: StatusDocument, name: string): UplinkStatus {
  const uplink = status.uplinks.find((u) => u.name === name);
  assert.ok(uplink !== undefined, `status has no uplink ${name}`);
  return uplink;
}

/** Wait until uplink `name` satisfies `want` (polling every 100 ms). */
export function waitUplink(
  daemon: LabDaemon,
  name: string,
  want: (u: UplinkStatus) => boolean,
  what: string,
  timeoutMs = VM_STATE_TIMEOUT_MS,
): Promise<StatusDocument> {
  return daemon.waitFor(
    (s) => {
      const u = s.uplinks.find((x) => x.name === name);
      return u !== undefined && want(u);
    },
    timeoutMs,
    `${name} ${what}`,
    100,
  );
}

/** Every one of `count` connections succeeded, each on one uplink. */
export function assertAllOk(report: TrafficReport, count: number): void {
  assert.equal(report.failed, 0, `failed connections: ${JSON.stringify(report.errors)}`);
  assert.equal(report.ok, count);
  assert.equal(report.inconsistent, 0, "a connection's answers came from more than one uplink");
}

/** Assert that each of `uplinks` carried 1/N of `report` within `slack` (0..1); report the shares. */
export function assertEvenShares(
  t: TestContext,
  report: TrafficReport,
  lab: Lab,
  uplinks: readonly number[],
  slack: number,
): void {
  const shares = sharesByUplink(report, lab);
  t.diagnostic(
    `shares of ${report.ok} connections: ${[...shares]
      .map(([n, share]) => `isp${n} ${(share * 100).toFixed(1)} %`)
      .join(", ")}`,
  );
  assert.equal(shares.get(0), undefined, `unknown sources: ${JSON.stringify(report.bySource)}`);
  for (const n of uplinks) {
    const share = shares.get(n) ?? 0;
    assert.ok(
      Math.abs(share - 1 / uplinks.length) <= slack,
      `uplink ${n}: ${(share * 100).toFixed(1)} % of connections, want ${(100 / uplinks.length).toFixed(1)} % ± ${slack * 100} (${JSON.stringify(report.bySource)})`,
    );
  }
}

/** The router's uplinkd-owned kernel state: nft tables, and rules and routes of protocol 73. */
export async function ownedKernelState(
  lab: Lab,
): Promise<{ tables: string; rules: string; routes: string }> {
  const [tables, rules, rules6, routes, routes6] = await Promise.all([
    lab.exec("rtr", ["nft", "list", "tables"]),
    lab.exec("rtr", ["ip", "-4", "rule", "show"]),
    lab.exec("rtr", ["ip", "-6", "rule", "show"]),
    lab.exec("rtr", ["ip", "-4", "route", "show", "table", "all"]),
    lab.exec("rtr", ["ip", "-6", "route", "show", "table", "all"]),
  ]);
  const ours = (text: string): string =>
    text
      .split("\n")
      .filter((l) => l.includes("proto 73"))
      .join("\n");
  return {
    tables: tables.stdout,
    rules: ours(rules.stdout + rules6.stdout),
    routes: ours(routes.stdout + routes6.stdout),
  };
}

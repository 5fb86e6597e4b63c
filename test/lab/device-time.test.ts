/**
 * Rules for devices and time on the real kernel: a `src_mac` rule keeps a
 * LAN device on its policy while its IPv4 and IPv6 addresses change, and
 * `schedule` rules switch new connections between policies as their
 * windows say (windows computed around now, in a time zone other than the
 * lab's), while an established connection stays on its uplink. Paths are
 * checked by the source address the echo host saw.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import type { ReloadResult, StatusDocument } from "../../src/control/api.js";
import { controlRequest } from "../../src/control/client.js";
import type { Lab } from "../../src/lab/lab.js";
import type { TrafficReport } from "../../src/lab/traffic.js";
import { zoneOffsetMinutes } from "../../src/policy/schedule.js";
import {
  holdConnection,
  labWithConfig,
  lanTraffic,
  sharesByUplink,
  startDaemon,
  testPrefix,
  type LabDaemon,
} from "./harness.js";
import { connectionsByUplink6, traffic6 } from "./helpers.js";

/** The schedules' time zone: not the lab's UTC, so the daemon's conversion counts. */
const ZONE = "Asia/Kolkata";

/** Uplink numbers that carried a report's IPv4 connections. */
function uplinks4(lab: Lab, report: TrafficReport): number[] {
  return [...sharesByUplink(report, lab).keys()].sort();
}

/** Uplink numbers that carried a report's IPv6 connections. */
function uplinks6(lab: Lab, report: TrafficReport): number[] {
  return [...connectionsByUplink6(lab, report).keys()].sort();
}

/** `"HH:MM"` in ZONE, `minutes` from now. */
function zoneTime(minutes: number): string {
  const at = Date.now() + minutes * 60_000;
  const local = new Date(at + zoneOffsetMinutes(ZONE, at) * 60_000);
  return `${String(local.getUTCHours()).padStart(2, "0")}:${String(local.getUTCMinutes()).padStart(2, "0")}`;
}

/** A window that holds now (from 5 minutes ago to 30 from now), and one that does not (2 to 3 hours from now). */
const now = () => [{ from: zoneTime(-5), to: zoneTime(30) }];
const later = () => [{ from: zoneTime(120), to: zoneTime(180) }];

async function reload(lab: Lab, rules: unknown[]): Promise<ReloadResult> {
  const config = parse(await readFile(lab.configPath, "utf8")) as Record<string, unknown>;
  config.rules = rules;
  await writeFile(lab.configPath, stringify(config));
  return (await controlRequest(
    lab.controlSocket,
    "POST",
    "/reload",
    undefined,
    30_000,
  )) as ReloadResult;
}

describe("rules for devices (src_mac) and times (schedule)", () => {
  let lab: Lab;
  let daemon: LabDaemon;
  let mac = "";

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("devtm"), uplinks: 2 }, (config) => {
      Object.assign(config, {
        time_zone: ZONE,
        policies: {
          only1: { members: [{ uplink: "isp1" }] },
          only2: { members: [{ uplink: "isp2" }] },
        },
      });
    });
    const link = await lab.exec("lan", ["ip", "-j", "link", "show", "eth0"]);
    mac = (JSON.parse(link.stdout) as { address: string }[])[0]?.address ?? "";
    assert.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    // The device's rule, written in upper case: MACs match in any case.
    const config = parse(await readFile(lab.configPath, "utf8")) as Record<string, unknown>;
    config.rules = [{ name: "device", src_mac: mac.toUpperCase(), policy: "only2" }];
    await writeFile(lab.configPath, stringify(config));
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("keeps a device on its policy by MAC while its IPv4 and IPv6 addresses change", async () => {
    const before4 = await lanTraffic(lab, 40, { rounds: 1 });
    assert.equal(before4.failed, 0, JSON.stringify(before4.errors));
    assert.deepEqual(uplinks4(lab, before4), [2], JSON.stringify(before4.bySource));
    const before6 = await traffic6(lab, { count: 40 });
    assert.equal(before6.failed, 0, JSON.stringify(before6.errors));
    assert.deepEqual(uplinks6(lab, before6), [2], JSON.stringify(before6.bySource));
    // New addresses, as after a new DHCP lease and a new privacy address; the old ones go.
    for (const command of [
      ["sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"],
      ["ip", "addr", "add", "100.64.100.77/24", "dev", "eth0"],
      ["ip", "addr", "del", "100.64.100.2/24", "dev", "eth0"],
      ["ip", "route", "replace", "default", "via", "100.64.100.1"],
      ["ip", "-6", "addr", "add", "fd00:1::7777/64", "dev", "eth0", "nodad"],
      ["ip", "-6", "addr", "del", "fd00:1::100/64", "dev", "eth0"],
      ["ip", "-6", "route", "replace", "default", "via", "fd00:1::1"],
    ]) {
      const result = await lab.exec("lan", command);
      assert.equal(result.code, 0, `${command.join(" ")}: ${result.stderr}`);
    }
    const after4 = await lanTraffic(lab, 40, { rounds: 1 });
    assert.equal(after4.failed, 0, JSON.stringify(after4.errors));
    assert.deepEqual(uplinks4(lab, after4), [2], JSON.stringify(after4.bySource));
    const after6 = await traffic6(lab, { count: 40 });
    assert.equal(after6.failed, 0, JSON.stringify(after6.errors));
    assert.deepEqual(uplinks6(lab, after6), [2], JSON.stringify(after6.bySource));
    const neigh = await lab.exec("rtr", ["ip", "neigh", "show", "dev", "lan0"]);
    assert.match(neigh.stdout, /100\.64\.100\.77 lladdr/, "the router saw the new address");
  });

  it("switches new connections at a schedule change and keeps an established one", async () => {
    await reload(lab, [
      { name: "now", src_mac: mac, schedule: now(), policy: "only1" },
      { name: "later", src_mac: mac, schedule: later(), policy: "only2" },
    ]);
    const status = (await daemon.status()) as StatusDocument;
    assert.deepEqual(
      status.schedules?.map((s) => [s.name, s.inForce]),
      [
        ["now", true],
        ["later", false],
      ],
    );
    const first = await lanTraffic(lab, 40, { rounds: 1 });
    assert.deepEqual(uplinks4(lab, first), [1], JSON.stringify(first.bySource));
    // One connection opened while "now" is in force, kept across the change.
    const held = holdConnection(lab, { durationMs: 6_000, intervalMs: 100 });
    try {
      const deadline = Date.now() + 5_000;
      while (!held.lines.some((l) => l.event === "answer") && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      // The windows move: "now" is over, "later" holds now.
      await reload(lab, [
        { name: "now", src_mac: mac, schedule: later(), policy: "only1" },
        { name: "later", src_mac: mac, schedule: now(), policy: "only2" },
      ]);
      const shifted = (await daemon.status()) as StatusDocument;
      assert.deepEqual(
        shifted.schedules?.map((s) => [s.name, s.inForce]),
        [
          ["now", false],
          ["later", true],
        ],
      );
      const second = await lanTraffic(lab, 40, { rounds: 1 });
      assert.equal(second.failed, 0, JSON.stringify(second.errors));
      assert.deepEqual(uplinks4(lab, second), [2], JSON.stringify(second.bySource));
      const second6 = await traffic6(lab, { count: 40 });
      assert.deepEqual(uplinks6(lab, second6), [2], JSON.stringify(second6.bySource));
      await held.exited;
    } finally {
      held.child.kill();
    }
    const answers = held.lines.flatMap((l) => (l.event === "answer" ? [l] : []));
    const sources = new Set(answers.map((l) => l.source));
    assert.ok(answers.length >= 30, `the held connection answered ${answers.length} times`);
    assert.deepEqual(
      [...sources],
      [lab.uplinks[0]?.routerAddress],
      "the held connection stayed on isp1",
    );
    assert.equal(held.lines.filter((l) => l.event === "closed").length, 0);
    // The kernel holds the windows as UTC numbers, moved by the zone's offset.
    const table = await lab.exec("rtr", ["nft", "list", "ruleset"]);
    assert.match(
      table.stdout,
      /ether saddr .* meta hour "\d\d:\d\d"-"\d\d:\d\d:59" goto policy_only2/,
    );
  });
  it("on_change: clear cuts the rule's established connections when it comes into force", async () => {
    const backup = (schedule: unknown) => ({
      name: "backup",
      src_mac: mac,
      proto: "tcp",
      dst_port: 7,
      schedule,
      on_change: "clear",
      policy: "blackhole",
    });
    await reload(lab, [backup(later()), { name: "rest", src_mac: mac, policy: "only1" }]);
    const held = holdConnection(lab, { durationMs: 6_000, intervalMs: 100, timeoutMs: 300 });
    const answered = () => held.lines.filter((l) => l.event === "answer").length;
    try {
      const deadline = Date.now() + 5_000;
      while (answered() === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(answered() > 0, "the backup connection runs");
      // The backup's window now holds: the running connection is cut, new ones are dropped.
      await reload(lab, [backup(now()), { name: "rest", src_mac: mac, policy: "only1" }]);
      await new Promise((r) => setTimeout(r, 1_000));
      const afterCut = answered();
      // Its summary comes at the end of its 6 s; the process itself may
      // linger on a connection that can no longer close (killed below).
      const end = Date.now() + 8_000;
      while (!held.lines.some((l) => l.event === "summary") && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(answered(), afterCut, "the held connection answered after it was cleared");
      assert.ok(
        held.lines.some((l) => l.event === "no-answer"),
        "its questions went unanswered",
      );
    } finally {
      held.child.kill();
    }
    const blocked = await lanTraffic(lab, 10, { rounds: 1, timeoutMs: 1_000 });
    assert.equal(blocked.ok, 0, "new connections of the rule are dropped");
    const log = daemon.log(200);
    assert.match(
      log,
      /rule \\?"backup\\?" came into force: cleared [1-9]\d* of its established connections/,
    );
  });
});

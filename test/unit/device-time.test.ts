import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { ConfigError } from "../../src/errors.js";
import { parseConfig } from "../../src/config/load.js";
import { configSchema, type Config } from "../../src/config/schema.js";
import { renderDesired } from "../../src/dataplane/render.js";
import { buildViews } from "../../src/dataplane/views.js";
import type { UplinkLink } from "../../src/links/observe.js";
import { upLink } from "../fakes/links.js";
import {
  inWindows,
  kernelWindows,
  nextEdge,
  nextOffsetChange,
  zoneOffsetMinutes,
} from "../../src/policy/schedule.js";
import { ScheduleWatcher, clearFilters, scheduleStatus } from "../../src/controller/schedule.js";
import { scheduleSurroundings } from "../../src/controller/desired.js";
import { formatSchedules } from "../../src/control/format.js";
import { conntrackFilterArgs, parseNeighbours } from "../../src/kernel/linux.js";
import { ManualClock } from "../fakes/clock.js";
import { FakeKernel } from "../fakes/kernel.js";

const base = {
  lan: ["lan0"],
  uplinks: [
    { name: "fibre", interface: "wan1", gateway: "100.64.1.1" },
    { name: "lte", interface: "wan2", gateway: "100.64.2.1" },
  ],
  policies: { fast: { members: [{ uplink: "fibre" }] } },
};

function config(extra: Record<string, unknown>): Config {
  return configSchema.parse({ ...base, ...extra });
}

const links = new Map<string, UplinkLink>([
  ["fibre", upLink("100.64.1.2", "100.64.1.1")],
  ["lte", upLink("100.64.2.2", "100.64.2.1")],
]);

function steer(c: Config, offset = 0): string[] {
  const views = buildViews(c, links, () => "up");
  const script = renderDesired(c, views, { scheduleOffset: offset }).nftScript;
  const chain = /chain steer \{\n([\s\S]*?)\n\t\}/.exec(script)?.[1] ?? "";
  return chain.split("\n").map((l) => l.trim());
}

/** Epoch ms of a UTC time. */
const utc = (iso: string) => Date.parse(iso);

function issuesOf(yaml: string): string[] {
  try {
    parseConfig(yaml, "/etc/uplinkd/uplinkd.yaml");
  } catch (error) {
    if (error instanceof ConfigError)
      return error.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`);
    throw error;
  }
  return [];
}

const yamlHead = `lan: [lan0]
uplinks:
  - { name: fibre, interface: wan1, gateway: 100.64.1.1 }
  - { name: lte, interface: wan2, gateway: 100.64.2.1 }
rules:
`;

describe("src_mac in rules", () => {
  it("matches the Ethernet source address, read in lower case, whatever the IP address", () => {
    const c = config({
      rules: [{ src_mac: ["AA:BB:CC:DD:EE:01", "aa-bb-cc-dd-ee-02"], policy: "fast" }],
    });
    assert.deepEqual(c.rules[0]?.src_mac, ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"]);
    assert.equal(
      steer(c)[0],
      "ether saddr { aa:bb:cc:dd:ee:01, aa:bb:cc:dd:ee:02 } goto policy_fast",
    );
  });

  it("refuses a malformed address at its line and column", () => {
    const issues = issuesOf(`${yamlHead}  - { src_mac: "aa:bb:cc:dd:ee", policy: main }\n`);
    assert.equal(issues.length, 1);
    assert.match(issues[0] ?? "", /^6:16 rules\.0\.src_mac\.0: must be a MAC address/);
  });
});

describe("schedule windows", () => {
  const office = [{ days: ["mon", "tue", "wed", "thu", "fri"], from: "08:00", to: "17:00" }];
  const c = config({
    rules: [{ name: "backup", dst: "192.0.2.0/24", schedule: office, policy: "blackhole" }],
  });
  const windows = c.rules[0]?.schedule ?? [];

  it("are in force inside their windows only (UTC)", () => {
    assert.equal(inWindows(windows, utc("2026-12-07T08:00:00Z"), 0), true); // Monday
    assert.equal(inWindows(windows, utc("2026-12-07T16:59:59Z"), 0), true);
    assert.equal(inWindows(windows, utc("2026-12-07T17:00:00Z"), 0), false);
    assert.equal(inWindows(windows, utc("2026-12-06T12:00:00Z"), 0), false); // Sunday
  });

  it("follow the time zone's offset, daylight saving time included", () => {
    assert.equal(zoneOffsetMinutes("Europe/Berlin", utc("2026-12-07T12:00:00Z")), 60);
    assert.equal(zoneOffsetMinutes("Europe/Berlin", utc("2026-07-07T12:00:00Z")), 120);
    assert.equal(zoneOffsetMinutes("America/New_York", utc("2026-07-07T12:00:00Z")), -240);
    assert.equal(zoneOffsetMinutes("Asia/Kolkata", utc("2026-07-07T12:00:00Z")), 330);
    // 07:30 UTC is 08:30 in Berlin in winter.
    assert.equal(inWindows(windows, utc("2026-12-07T07:30:00Z"), 60), true);
    assert.equal(inWindows(windows, utc("2026-12-07T16:30:00Z"), 60), false);
  });

  it("find the next daylight saving time change to the second", () => {
    // Europe/Berlin moves to summer time on 2027-03-28 at 01:00 UTC.
    const change = nextOffsetChange("Europe/Berlin", utc("2027-03-27T12:00:00Z"), 86_400_000);
    assert.equal(change, utc("2027-03-28T01:00:00Z"));
    assert.equal(nextOffsetChange("UTC", utc("2027-03-27T12:00:00Z"), 86_400_000), undefined);
  });

  it("cross midnight into the next day", () => {
    const night =
      config({
        rules: [
          {
            dst: "192.0.2.0/24",
            schedule: [{ days: ["fri"], from: "22:00", to: "06:00" }],
            policy: "main",
          },
        ],
      }).rules[0]?.schedule ?? [];
    assert.equal(inWindows(night, utc("2026-12-11T23:00:00Z"), 0), true); // Friday
    assert.equal(inWindows(night, utc("2026-12-12T05:59:00Z"), 0), true); // Saturday morning
    assert.equal(inWindows(night, utc("2026-12-12T06:00:00Z"), 0), false);
    assert.equal(inWindows(night, utc("2026-12-12T23:00:00Z"), 0), false); // Saturday night
    // Saturday night into Sunday wraps the week.
    const weekend =
      config({
        rules: [
          {
            dst: "192.0.2.0/24",
            schedule: [{ days: ["sat"], from: "23:00", to: "01:00" }],
            policy: "main",
          },
        ],
      }).rules[0]?.schedule ?? [];
    assert.equal(inWindows(weekend, utc("2026-12-13T00:30:00Z"), 0), true);
    assert.deepEqual(kernelWindows(weekend, 0), [
      { days: [0], from: 0, to: 3599 },
      { days: [6], from: 82_800, to: 86_399 },
    ]);
  });

  it("give the next edge on an injected clock", () => {
    assert.equal(nextEdge(windows, utc("2026-12-07T12:00:00Z"), 0), utc("2026-12-07T17:00:00Z"));
    assert.equal(nextEdge(windows, utc("2026-12-07T17:00:00Z"), 0), utc("2026-12-08T08:00:00Z"));
    assert.equal(nextEdge(windows, utc("2026-12-11T18:00:00Z"), 0), utc("2026-12-14T08:00:00Z"));
  });

  it("render as UTC meta day and meta hour numbers, moved by the offset", () => {
    assert.deepEqual(
      steer(c, 0)[0],
      'ip daddr 192.0.2.0/24 meta day { 1, 2, 3, 4, 5 } meta hour 28800-61199 drop comment "backup"',
    );
    // Berlin in winter: 08:00-17:00 local is 07:00-16:00 UTC.
    assert.deepEqual(
      steer(c, 60)[0],
      'ip daddr 192.0.2.0/24 meta day { 1, 2, 3, 4, 5 } meta hour 25200-57599 drop comment "backup"',
    );
    // Kolkata (+05:30): 08:00 local is 02:30 UTC the same day.
    assert.equal(steer(c, 330)[0]?.includes("meta hour 9000-41399"), true);
    // Tokyo (+09:00): 08:00-17:00 local is 23:00 the day before to 08:00 UTC.
    assert.deepEqual(kernelWindows(windows, 540), [
      { days: [1, 2, 3, 4, 5], from: 0, to: 28_799 },
      { days: [0, 1, 2, 3, 4], from: 82_800, to: 86_399 },
    ]);
  });

  it("leave out meta hour for whole days and meta day for every day", () => {
    const whole = config({
      rules: [
        {
          src_mac: "aa:bb:cc:dd:ee:01",
          schedule: [{ days: ["sat", "sun"], from: "00:00", to: "24:00" }],
          policy: "fast",
        },
        {
          src_mac: "aa:bb:cc:dd:ee:02",
          schedule: [{ from: "22:00", to: "06:00" }],
          policy: "lte_only",
        },
      ],
      policies: {
        fast: { members: [{ uplink: "fibre" }] },
        lte_only: { members: [{ uplink: "lte" }] },
      },
    });
    const lines = steer(whole);
    assert.equal(lines[0], "ether saddr aa:bb:cc:dd:ee:01 meta day { 0, 6 } goto policy_fast");
    assert.equal(lines[1], "ether saddr aa:bb:cc:dd:ee:02 meta hour 0-21599 goto policy_lte_only");
    assert.equal(
      lines[2],
      "ether saddr aa:bb:cc:dd:ee:02 meta hour 79200-86399 goto policy_lte_only",
    );
  });

  it("are refused when malformed, with the key at its line", () => {
    const bad = issuesOf(
      `${yamlHead}  - dst: 192.0.2.0/24\n    policy: main\n    schedule:\n      - { days: [mon, funday], from: "8:00", to: "08:00" }\n`,
    );
    assert.equal(bad.length, 2);
    assert.match(bad[0] ?? "", /^9:\d+ rules\.0\.schedule\.0\.days\.1: "funday" is not a day/);
    assert.match(bad[1] ?? "", /^9:\d+ rules\.0\.schedule\.0\.from: "8:00" is not a time of day/);
    const same = issuesOf(
      `${yamlHead}  - dst: 192.0.2.0/24\n    policy: main\n    schedule:\n      - { from: "08:00", to: "08:00" }\n`,
    );
    assert.match(same[0] ?? "", /^9:\d+ rules\.0\.schedule\.0\.to: to must differ from from/);
    const zone = issuesOf(
      `${yamlHead}  - { dst: 192.0.2.0/24, policy: main }\ntime_zone: Mars/Olympus\n`,
    );
    assert.match(zone[0] ?? "", /^7:\d+ time_zone: must be an IANA time zone name/);
    const clear = issuesOf(
      `${yamlHead}  - { iif: lan0, policy: main, on_change: clear, schedule: [{ from: "08:00", to: "09:00" }] }\n`,
    );
    assert.match(
      clear[0] ?? "",
      /rules\.0\.on_change: on_change: clear selects connections with conntrack, which cannot select by iif/,
    );
    const unscheduled = issuesOf(
      `${yamlHead}  - { dst: 192.0.2.0/24, policy: main, on_change: clear }\n`,
    );
    assert.match(unscheduled[0] ?? "", /rules\.0\.on_change: on_change acts at the edges/);
  });
});

describe("status and plan of schedule rules", () => {
  it("say which rules are in force now and until when", () => {
    const c = config({
      time_zone: "Europe/Berlin",
      rules: [
        {
          name: "backup",
          dst: "192.0.2.0/24",
          policy: "blackhole",
          schedule: [{ days: ["mon"], from: "08:00", to: "17:00" }],
        },
        { dst: "198.51.100.0/24", policy: "fast" },
      ],
    });
    const at = utc("2026-12-07T10:00:00Z"); // Monday 11:00 in Berlin
    const status = scheduleStatus(c, at);
    assert.deepEqual(status, [
      {
        index: 0,
        name: "backup",
        policy: "blackhole",
        inForce: true,
        until: "2026-12-07T16:00:00.000Z",
        onChange: "keep",
      },
    ]);
    assert.deepEqual(formatSchedules(status), [
      'schedule rule "backup": in force (policy blackhole) until 2026-12-07 16:00:00Z',
    ]);
    assert.equal(scheduleSurroundings(c, {}, at).scheduleOffset, 60);
    assert.equal(scheduleSurroundings(config({}), {}, at).scheduleOffset, undefined);
  });
});

describe("on_change: clear", () => {
  const c = config({
    rules: [
      {
        name: "console",
        src_mac: "aa:bb:cc:dd:ee:01",
        proto: "tcp",
        dst_port: 443,
        policy: "fast",
        on_change: "clear",
        schedule: [{ days: ["mon"], from: "10:00", to: "11:00" }],
      },
    ],
  });
  const neighbours = parseNeighbours(
    JSON.stringify([
      { dst: "192.168.1.20", dev: "lan0", lladdr: "AA:BB:CC:DD:EE:01", state: ["REACHABLE"] },
      { dst: "fd00::20", dev: "lan0", lladdr: "aa:bb:cc:dd:ee:01", state: ["STALE"] },
      { dst: "192.168.1.21", dev: "lan0", lladdr: "aa:bb:cc:dd:ee:02", state: ["REACHABLE"] },
      { dst: "100.64.1.1", dev: "wan1", lladdr: "aa:bb:cc:dd:ee:01", state: ["REACHABLE"] },
      { dst: "192.168.1.99", dev: "lan0", state: ["FAILED"] },
    ]),
  );

  it("selects the device's addresses now, per uplink mark", () => {
    const rule = c.rules[0] ?? assert.fail("no rule");
    const filters = clearFilters(c, rule, neighbours);
    assert.deepEqual(
      filters.map((f) => conntrackFilterArgs(f).join(" ")),
      [
        "-D -f ipv4 -s 192.168.1.20 -p tcp --dport 443 -m 256/65280",
        "-D -f ipv6 -s fd00::20 -p tcp --dport 443 -m 256/65280",
        "-D -f ipv4 -s 192.168.1.20 -p tcp --dport 443 -m 512/65280",
        "-D -f ipv6 -s fd00::20 -p tcp --dport 443 -m 512/65280",
      ],
    );
  });

  it("clears at each window edge and only then, on an injected clock", async () => {
    const kernel = new FakeKernel();
    kernel.neighbours = neighbours;
    // Monday 2026-12-07 09:59:00 UTC.
    const clock = new ManualClock(0, utc("2026-12-07T09:59:00Z"));
    let offsetChanges = 0;
    const watcher = new ScheduleWatcher({
      clock,
      log: pino({ level: "silent" }),
      config: () => c,
      kernel,
      onOffsetChange: () => offsetChanges++,
    });
    watcher.start();
    await watcher.idle();
    assert.equal(kernel.conntrackFilters.length, 0, "nothing at start");
    clock.advance(59_000);
    await watcher.idle();
    assert.equal(kernel.conntrackFilters.length, 0, "not before the edge");
    clock.advance(1_100);
    await watcher.idle();
    assert.equal(kernel.conntrackFilters.length, 4, "at 10:00");
    clock.advance(30 * 60_000);
    await watcher.idle();
    assert.equal(kernel.conntrackFilters.length, 4, "nothing inside the window");
    clock.advance(30 * 60_000);
    await watcher.idle();
    assert.equal(kernel.conntrackFilters.length, 8, "at 11:00");
    assert.equal(offsetChanges, 0);
    watcher.stop();
  });

  it("clears when a reload moves the rule's windows past now, and not on an unchanged reload", async () => {
    const kernel = new FakeKernel();
    kernel.neighbours = neighbours;
    const clock = new ManualClock(0, utc("2026-12-07T09:30:00Z")); // Monday, outside 10:00-11:00
    let current = c;
    const watcher = new ScheduleWatcher({
      clock,
      log: pino({ level: "silent" }),
      config: () => current,
      kernel,
      onOffsetChange: () => undefined,
    });
    watcher.start();
    watcher.start(); // a reload without changes
    await watcher.idle();
    assert.equal(kernel.conntrackFilters.length, 0);
    current = config({
      rules: [{ ...c.rules[0], schedule: [{ days: ["mon"], from: "09:00", to: "11:00" }] }],
    });
    watcher.start();
    await watcher.idle();
    assert.equal(kernel.conntrackFilters.length, 4, "the rule came into force with the reload");
    watcher.stop();
  });

  it("asks for the table again when the time zone's offset changes", () => {
    const berlin = config({
      time_zone: "Europe/Berlin",
      rules: [{ dst: "192.0.2.0/24", policy: "main", schedule: [{ from: "08:00", to: "09:00" }] }],
    });
    const clock = new ManualClock(0, utc("2027-03-28T00:59:00Z"));
    let offsetChanges = 0;
    const watcher = new ScheduleWatcher({
      clock,
      log: pino({ level: "silent" }),
      config: () => berlin,
      kernel: new FakeKernel(),
      onOffsetChange: () => offsetChanges++,
    });
    watcher.start();
    assert.equal(watcher.offset, 60);
    clock.advance(60_100);
    assert.equal(offsetChanges, 1);
    assert.equal(watcher.offset, 120);
    watcher.stop();
  });
});

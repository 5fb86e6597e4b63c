import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";
import { formatCapacity, formatSpeedtest } from "../../src/control/format.js";
import { ConfigError } from "../../src/errors.js";
import { loadWeights, type BalanceMode } from "../../src/policy/load.js";
import {
  AckedBytes,
  medianMs,
  parsePingRtts,
  parseSsBytesAcked,
  rateBitsPerSecond,
  warmupMs,
} from "../../src/speedtest/measure.js";
import { SpeedtestPart } from "../../src/speedtest/part.js";
import { busyShare, scheduleDecision, type ScheduleInput } from "../../src/speedtest/schedule.js";
import {
  UNMEASURED_BPS,
  bandwidthStatus,
  parseSpeedtestState,
  withMeasuredBandwidth,
  type SpeedtestResult,
} from "../../src/speedtest/state.js";
import { ManualClock } from "../fakes/clock.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function config(uplinks: string, extra = ""): Config {
  return parseConfig(
    `lan: [lan0]\nuplinks:\n${uplinks}health:\n  targets: [198.51.100.1]\n${extra}`,
    "test.yaml",
  );
}

const SPEEDTEST = `speedtest:\n  download_url: http://192.0.2.10/bytes?n=1000000000\n  upload_url: http://192.0.2.10/upload\n  duration: 2s\n`;

function result(uplink: string, down: number | null, up: number | null, at = 0): SpeedtestResult {
  return {
    uplink,
    measured_at: new Date(1_700_000_000_000 + at).toISOString(),
    down,
    up,
    rtt_idle_ms: 10,
    rtt_down_ms: 80,
    rtt_up_ms: 90,
    bytes_down: 2_500_000,
    bytes_up: 600_000,
    duration_ms: 2000,
    streams: 4,
  };
}

function configError(text: string): string {
  try {
    parseConfig(text, "test.yaml");
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.message;
  }
  assert.fail("the config was accepted");
}

describe("speed test rate arithmetic", () => {
  it("counts the rate after the ramp-up: a quarter of the test, at most 2 s", () => {
    assert.equal(warmupMs(10_000), 2000);
    assert.equal(warmupMs(2000), 500);
    // 1 MB in the first 500 ms (slow start, a burst), then 1.25 MB/s = 10 Mbit/s.
    const samples = [
      { atMs: 0, bytes: 0 },
      { atMs: 500, bytes: 1_000_000 },
      { atMs: 1000, bytes: 1_625_000 },
      { atMs: 2000, bytes: 2_875_000 },
    ];
    assert.equal(rateBitsPerSecond(samples, warmupMs(2000)), 10e6);
    assert.equal(rateBitsPerSecond(samples, 0), 11.5e6);
  });

  it("measures nothing from fewer than two samples after the ramp-up", () => {
    assert.equal(rateBitsPerSecond([{ atMs: 0, bytes: 0 }], 0), null);
    assert.equal(rateBitsPerSecond([{ atMs: 100, bytes: 10 }], 500), null);
  });

  it("takes RTTs from ping's output and their median", () => {
    const out = [
      "PING 198.51.100.1 (198.51.100.1) from 100.64.1.2 : 56(84) bytes of data.",
      "64 bytes from 198.51.100.1: icmp_seq=1 ttl=63 time=12.3 ms",
      "64 bytes from 198.51.100.1: icmp_seq=2 ttl=63 time=98 ms",
      "64 bytes from 198.51.100.1: icmp_seq=3 ttl=63 time=101 ms",
      "64 bytes from 198.51.100.1: icmp_seq=4 ttl=63 time<1 ms",
    ].join("\n");
    assert.deepEqual(parsePingRtts(out), [12.3, 98, 101, 1]);
    assert.equal(medianMs([12.3, 98, 101]), 98);
    assert.equal(medianMs([10, 20, 30, 40]), 25);
    assert.equal(medianMs([]), null);
  });

  it("adds up acknowledged bytes of the test's connections, keeping those that closed", () => {
    const ss = (a: number, b: number): string =>
      [
        `0      0      100.64.1.2:40000 192.0.2.10:80`,
        `\t cubic wscale:7,7 rto:204 bytes_sent:${a + 10} bytes_acked:${a} segs_out:10`,
        `ESTAB  0      4096   100.64.1.2:40002 192.0.2.10:80`,
        `\t cubic bytes_acked:${b} bytes_received:120`,
      ].join("\n");
    assert.deepEqual(
      parseSsBytesAcked(ss(5, 7)),
      new Map([
        ["100.64.1.2:40000 192.0.2.10:80", 5],
        ["100.64.1.2:40002 192.0.2.10:80", 7],
      ]),
    );
    const acked = new AckedBytes();
    // Connections seen at the first sample count from there.
    assert.equal(acked.add(parseSsBytesAcked(ss(100, 200))), 0);
    assert.equal(acked.add(parseSsBytesAcked(ss(1100, 1200))), 2000);
    // One closed: its bytes stay; a new one counts from 0.
    const later = parseSsBytesAcked(ss(1600, 0));
    later.delete("100.64.1.2:40002 192.0.2.10:80");
    later.set("100.64.1.2:40004 192.0.2.10:80", 300);
    assert.equal(acked.add(later), 1500 + 1000 + 300);
  });
});

describe("speed test schedule", () => {
  const base: ScheduleInput = {
    now: 10 * DAY,
    lastMeasuredAt: undefined,
    last: undefined,
    lastAttemptAt: undefined,
    throughput: undefined,
    refusal: undefined,
    everyMs: DAY,
    retryMs: 10 * 60_000,
    busyPercent: 20,
  };

  it("runs at once without a result, and again `every` after the last", () => {
    assert.deepEqual(scheduleDecision(base), { kind: "run" });
    const last = { down: 10e6, up: 2e6 };
    assert.deepEqual(scheduleDecision({ ...base, lastMeasuredAt: 10 * DAY - 2 * HOUR, last }), {
      kind: "wait",
      inMs: 22 * HOUR,
    });
    assert.deepEqual(scheduleDecision({ ...base, lastMeasuredAt: 9 * DAY, last }), {
      kind: "run",
    });
  });

  it("waits for a quiet moment: skipped while the uplink carries more than `busy` % of its last speed", () => {
    const last = { down: 10e6, up: 2e6 };
    const busy = scheduleDecision({
      ...base,
      lastMeasuredAt: 8 * DAY,
      last,
      throughput: { down: 1e6, up: 0.5e6 },
    });
    assert.deepEqual(busy, {
      kind: "skip",
      reason: "busy: it carries 25 % of its last measured speed (more than 20 %)",
      inMs: 10 * 60_000,
    });
    assert.equal(busyShare({ down: 1e6, up: 0.2e6 }, last), 10);
    assert.deepEqual(
      scheduleDecision({
        ...base,
        lastMeasuredAt: 8 * DAY,
        last,
        throughput: { down: 1e6, up: 0 },
      }),
      { kind: "run" },
    );
  });

  it("after a skip or a failure waits `retry`; never tests a refused uplink", () => {
    assert.deepEqual(scheduleDecision({ ...base, lastAttemptAt: 10 * DAY - 60_000 }), {
      kind: "wait",
      inMs: 9 * 60_000,
    });
    assert.deepEqual(scheduleDecision({ ...base, refusal: "it is down (3 rounds failed)" }), {
      kind: "skip",
      reason: "it is down (3 rounds failed)",
      inMs: 10 * 60_000,
    });
  });
});

describe("bandwidth: auto", () => {
  const uplinks = `  - { name: dsl, interface: wan1, gateway: 100.64.1.1, bandwidth: auto }\n  - { name: cable, interface: wan2, gateway: 100.64.2.1, bandwidth: { down: 40mbit, up: auto } }\n`;

  it("parses auto for both directions or one", () => {
    const c = config(uplinks, SPEEDTEST);
    assert.deepEqual(c.uplinks[0]?.bandwidth, { auto: ["down", "up"] });
    assert.deepEqual(c.uplinks[1]?.bandwidth, { down: 40e6, auto: ["up"] });
    const { duration, every, streams, busy, retry } = c.speedtest ?? {};
    assert.deepEqual([duration, every, streams, busy, retry], [2000, DAY, 4, 20, 600_000]);
  });

  it("needs the speedtest URL of each auto direction, named at FILE:LINE:COL", () => {
    const message = configError(
      `lan: [lan0]\nuplinks:\n${uplinks}speedtest:\n  download_url: http://192.0.2.10/bytes\n`,
    );
    assert.match(
      message,
      /test\.yaml:4:\d+: uplinks\.1\.bandwidth: bandwidth up: auto needs speedtest\.upload_url/,
    );
    assert.match(
      configError(`lan: [lan0]\nuplinks:\n${uplinks}speedtest:\n  download_url: ftp://x/\n`),
      /test\.yaml:6:\d+: speedtest\.download_url: must be an http:\/\/ or https:\/\/ URL/,
    );
    assert.match(
      configError(`lan: [lan0]\nuplinks:\n  - { name: a, interface: wan1, bandwidth: fast }\n`),
      /test\.yaml:3:\d+: uplinks\.0\.bandwidth/,
    );
  });

  it("balances with the measured figures: 10 and 40 Mbit/s share 20/80 as configured ones do", () => {
    const c = config(uplinks, SPEEDTEST);
    const results = new Map([
      ["dsl", result("dsl", 10e6, 2e6)],
      ["cable", result("cable", 38e6, 10e6)],
    ]);
    const filled = withMeasuredBandwidth(c, (name) => results.get(name));
    assert.deepEqual(filled.uplinks[0]?.bandwidth, { down: 10e6, up: 2e6, auto: ["down", "up"] });
    // cable's down stays as configured; its up is measured.
    assert.deepEqual(filled.uplinks[1]?.bandwidth, { down: 40e6, up: 10e6, auto: ["up"] });
    const bandwidth = (name: string) => filled.uplinks.find((u) => u.name === name)?.bandwidth;
    const weights = (mode: BalanceMode) =>
      loadWeights(
        mode,
        [
          { uplink: "dsl", weight: 1, tier: 1 },
          { uplink: "cable", weight: 1, tier: 1 },
        ],
        bandwidth,
        () => undefined,
        new Set(),
      ).map((m) => m.weight);
    assert.deepEqual(weights("least-used"), [10_000, 40_000]);
  });

  it("counts an unmeasured auto direction as the mean of the known ones (equal shares when none is known)", () => {
    const c = config(uplinks, SPEEDTEST);
    const none = withMeasuredBandwidth(c, () => undefined);
    assert.deepEqual(
      none.uplinks.map((u) => [u.bandwidth?.down, u.bandwidth?.up]),
      [
        [40e6, UNMEASURED_BPS],
        [40e6, UNMEASURED_BPS],
      ],
    );
    const plain = config(`  - { name: a, interface: wan1, bandwidth: { down: 10mbit } }\n`);
    assert.equal(
      withMeasuredBandwidth(plain, () => undefined),
      plain,
    );
  });

  it("shows the capacity with its source in status", () => {
    const c = config(uplinks, SPEEDTEST);
    const [dsl, cable] = c.uplinks;
    assert.ok(dsl !== undefined && cable !== undefined);
    assert.deepEqual(bandwidthStatus(dsl, undefined), {
      down: null,
      up: null,
      measured_at: null,
      source: "config",
    });
    const r = result("dsl", 9.6e6, 1.9e6);
    assert.deepEqual(bandwidthStatus(dsl, r), {
      down: 9.6e6,
      up: 1.9e6,
      measured_at: r.measured_at,
      source: "speedtest",
    });
    assert.equal(formatCapacity(bandwidthStatus(dsl, r)), "9.6mbit/1.9mbit (test)");
    assert.equal(formatCapacity(bandwidthStatus(cable, undefined)), "40mbit/-");
  });
});

describe("speed test state file", () => {
  it("reads the last result of each uplink", () => {
    const text = JSON.stringify({ version: 1, uplinks: { dsl: result("dsl", 10e6, 2e6) } });
    assert.equal(parseSpeedtestState(text).uplinks.dsl?.down, 10e6);
  });

  it("refuses what is not a version-1 state", () => {
    assert.throws(() => parseSpeedtestState("{"), SyntaxError);
    assert.throws(() => parseSpeedtestState(JSON.stringify({ version: 2, uplinks: {} })));
    assert.throws(() =>
      parseSpeedtestState(JSON.stringify({ version: 1, uplinks: { dsl: { down: -1 } } })),
    );
  });

  it("prints a result for people", () => {
    assert.equal(
      formatSpeedtest(result("dsl", 9.64e6, 1.92e6)),
      [
        "dsl: down 9.6 Mbit/s, up 1.9 Mbit/s (4 streams, 2 s each way)",
        "RTT: idle 10.0 ms, during download 80.0 ms, during upload 90.0 ms",
        "used 3MiB (2.4MiB down, 585.9KiB up)",
        "",
      ].join("\n"),
    );
  });
});

describe("speed test part", () => {
  const silent = pino({ level: "silent" });

  function part(c: Config, options: { saved?: string; refusal?: string; results?: number[] } = {}) {
    const clock = new ManualClock();
    const measured: string[] = [];
    const written: string[] = [];
    let refusal = options.refusal;
    const p = new SpeedtestPart({
      clock,
      log: silent,
      config: () => c,
      refusal: () => refusal,
      measure: (uplink) => {
        measured.push(uplink);
        return Promise.resolve({
          ...result(uplink, 10e6, 2e6),
          measured_at: new Date(clock.wall()).toISOString(),
        });
      },
      throughput: () => undefined,
      onResult: () => undefined,
      read: () => Promise.resolve(options.saved),
      write: (_path, text) => {
        written.push(text);
        return Promise.resolve();
      },
    });
    return {
      p,
      clock,
      measured,
      written,
      allow: () => {
        refusal = undefined;
      },
    };
  }

  const settle = () => new Promise((r) => setImmediate(r));

  it("measures auto uplinks at start and every `every`, and saves the results", async () => {
    const c = config(
      `  - { name: dsl, interface: wan1, gateway: 100.64.1.1, bandwidth: auto }\n  - { name: fixed, interface: wan2, gateway: 100.64.2.1, bandwidth: { down: 40mbit } }\n`,
      `${SPEEDTEST}  every: 1h\n`,
    );
    const t = part(c);
    await t.p.start();
    t.clock.advance(0);
    for (let i = 0; i < 5; i++) await settle();
    assert.deepEqual(t.measured, ["dsl"]);
    assert.equal(t.written.length, 1);
    assert.equal(parseSpeedtestState(t.written[0] ?? "").uplinks.dsl?.down, 10e6);
    assert.equal(t.p.effective(c).uplinks[0]?.bandwidth?.down, 10e6);
    assert.equal(t.p.effective(c), t.p.effective(c), "the same object until a new result");
    for (let i = 0; i < 60; i++) {
      t.clock.advance(60_000);
      await settle();
    }
    for (let i = 0; i < 5; i++) await settle();
    assert.deepEqual(t.measured, ["dsl", "dsl"]);
    t.p.stop();
  });

  it("keeps a fresh saved result across a restart; waits for an uplink that is not up", async () => {
    const c = config(
      `  - { name: dsl, interface: wan1, gateway: 100.64.1.1, bandwidth: auto }\n`,
      SPEEDTEST,
    );
    const fresh = JSON.stringify({
      version: 1,
      uplinks: {
        dsl: {
          ...result("dsl", 8e6, 1e6),
          measured_at: new Date(1_700_000_000_000 - HOUR).toISOString(),
        },
      },
    });
    const t = part(c, { saved: fresh, refusal: "its health is not known yet" });
    await t.p.start();
    t.clock.advance(0);
    await settle();
    assert.deepEqual(t.measured, []);
    assert.equal(t.p.status("dsl")?.down, 8e6);
    const stale = part(c, { refusal: "its health is not known yet" });
    await stale.p.start();
    stale.clock.advance(0);
    await settle();
    assert.deepEqual(stale.measured, []);
    await assert.rejects(stale.p.run("dsl"), /dsl is not tested: its health is not known yet/);
    stale.allow();
    stale.p.wake();
    stale.clock.advance(0);
    for (let i = 0; i < 5; i++) await settle();
    assert.deepEqual(stale.measured, ["dsl"]);
    t.p.stop();
    stale.p.stop();
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../fakes/clock.js";
import { FakePing, seededRandom } from "../fakes/health.js";
import type { StateChange } from "../../src/health/machine.js";
import { UplinkMonitor } from "../../src/health/monitor.js";
import { resolveHealthSettings, resolveTimeout } from "../../src/health/options.js";
import { RtoEstimator } from "../../src/health/rto.js";
import { ProbeWindow } from "../../src/health/window.js";

const A = "198.51.100.1";
const B = "203.0.113.1";

describe("RTO estimator (RFC 6298)", () => {
  it("starts at the ceiling, then SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR", () => {
    const rto = new RtoEstimator({ minMs: 10, maxMs: 1000 });
    assert.equal(rto.timeoutMs(), 1000);
    assert.equal(rto.srttMs, null);
    rto.sample(40);
    assert.equal(rto.srttMs, 40);
    assert.equal(rto.rttvarMs, 20);
    assert.equal(rto.timeoutMs(), 120);
  });

  it("later samples: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|, then SRTT = 7/8 SRTT + 1/8 R", () => {
    const rto = new RtoEstimator({ minMs: 10, maxMs: 1000 });
    rto.sample(40);
    rto.sample(80);
    assert.equal(rto.rttvarMs, 0.75 * 20 + 0.25 * 40);
    assert.equal(rto.srttMs, (7 / 8) * 40 + (1 / 8) * 80);
    assert.equal(rto.timeoutMs(), 45 + 4 * 25);
  });

  it("is clamped to the floor on a steady 1 ms line and to the ceiling on a slow one", () => {
    const fast = new RtoEstimator({ minMs: 50, maxMs: 1000 });
    for (let i = 0; i < 100; i++) fast.sample(1);
    assert.ok(fast.rttvarMs < 0.01);
    assert.equal(fast.timeoutMs(), 50);
    const slow = new RtoEstimator({ minMs: 50, maxMs: 300 });
    slow.sample(400);
    assert.equal(slow.timeoutMs(), 300);
  });

  it("ignores negative and non-finite samples", () => {
    const rto = new RtoEstimator({ minMs: 10, maxMs: 1000 });
    rto.sample(-1);
    rto.sample(Number.NaN);
    rto.sample(Infinity);
    assert.equal(rto.samples, 0);
    assert.equal(rto.timeoutMs(), 1000);
  });

  it("refuses a floor <= 0 or a ceiling below the floor", () => {
    assert.throws(() => new RtoEstimator({ minMs: 0, maxMs: 10 }), RangeError);
    assert.throws(() => new RtoEstimator({ minMs: 20, maxMs: 10 }), RangeError);
  });
});

describe("timeout: auto in the config", () => {
  it("fixed timeouts stay fixed; auto defaults to 50 ms .. 1 s; timeout_min/max set floor and ceiling", () => {
    assert.deepEqual(resolveTimeout({ timeout: 500 }), { timeoutMs: 500 });
    assert.deepEqual(resolveTimeout({ timeout: "auto" }), {
      timeoutMs: 1000,
      adaptive: { minMs: 50, maxMs: 1000 },
    });
    assert.deepEqual(resolveTimeout({ timeout: "auto", timeout_min: 20, timeout_max: 400 }), {
      timeoutMs: 400,
      adaptive: { minMs: 20, maxMs: 400 },
    });
    assert.deepEqual(resolveTimeout({ timeout: "auto", timeout_max: 30 }), {
      timeoutMs: 30,
      adaptive: { minMs: 30, maxMs: 30 },
    });
    assert.throws(() => resolveTimeout({ timeout: "auto", timeout_min: 500, timeout_max: 400 }));
  });

  it("the RTT thresholds' defaults follow the ceiling", () => {
    const s = resolveHealthSettings({
      targets: [A],
      interval: 100,
      timeout: "auto",
      timeout_max: 400,
      down: 3,
      up: 5,
      reliability: 1,
    });
    assert.equal(s.timeoutMs, 400);
    assert.deepEqual(s.adaptiveTimeout, { minMs: 50, maxMs: 400 });
    assert.equal(s.tuning.quality.rttFailMs, 200);
  });
});

/** The window's current timeout, read anew (not narrowed by earlier assertions). */
function rtoOf(window: ProbeWindow): number {
  return window.currentTimeoutMs;
}

describe("probe window with RTT-aware timeouts", () => {
  it("each probe keeps the RTO of its send time; a late answer is lost but still raises the RTO", () => {
    const w = new ProbeWindow({ size: 100, timeoutMs: 1000, adaptive: { minMs: 20, maxMs: 1000 } });
    assert.equal(w.currentTimeoutMs, 1000);
    for (let i = 0; i < 50; i++) {
      w.sent(i, i * 100);
      w.answered(i, i * 100 + 2, 2);
    }
    assert.equal(w.currentTimeoutMs, 20);
    // The RTT steps to 80 ms: probe 50 has a 20 ms timeout and is lost at 5020.
    const first = w.sent(50, 5000);
    assert.ok(first);
    assert.equal(w.timeoutOf(first), 20);
    assert.equal(w.status(first, 5019), "in-flight");
    assert.equal(w.status(first, 5020), "lost");
    w.answered(50, 5080, 80);
    assert.equal(w.status(first, 5080), "lost");
    // The late answer was a sample: the next probe waits long enough for 80 ms.
    const rto = rtoOf(w);
    assert.ok(rto > 80, `RTO after the step: ${rto} ms`);
    const second = w.sent(51, 5100);
    assert.ok(second);
    w.answered(51, 5180, 80);
    assert.equal(w.status(second, 5180), "received");
    // The first probe's timeout did not change afterwards.
    assert.equal(w.timeoutOf(first), 20);
  });

  it("a fixed window gives every probe the fixed timeout", () => {
    const w = new ProbeWindow({ size: 10, timeoutMs: 500 });
    const r = w.sent(1, 0);
    assert.ok(r);
    w.answered(1, 1, 1);
    assert.equal(w.currentTimeoutMs, 500);
    assert.equal(r.timeoutMs, undefined);
    assert.equal(w.timeoutOf(r), 500);
  });

  it("refuses an RTO ceiling above the window's timeout", () => {
    assert.throws(
      () => new ProbeWindow({ size: 10, timeoutMs: 500, adaptive: { minMs: 10, maxMs: 600 } }),
      RangeError,
    );
  });
});

interface Run {
  interval: number;
  timeout: number | "auto";
  rttMs: number | (() => number);
  lossPct?: number;
  seed?: number;
  down?: number;
}

function monitorRun(run: Run) {
  const clock = new ManualClock(0, 1_700_000_000_000);
  const random = seededRandom(run.seed ?? 7);
  const ping = new FakePing(clock, { random });
  const path = { rttMs: run.rttMs, lossPct: run.lossPct ?? 0 };
  ping.path(A, path);
  ping.path(B, path);
  const transitions: StateChange[] = [];
  const monitor = new UplinkMonitor({
    uplink: "isp1",
    settings: resolveHealthSettings({
      targets: [A, B],
      interval: run.interval,
      timeout: run.timeout,
      down: run.down ?? 3,
      up: 5,
      reliability: 1,
    }),
    source: { mark: 0x100 },
    clock,
    spawner: ping.spawner,
    onTransition: (t) => transitions.push(t),
  });
  return { clock, ping, monitor, transitions, random };
}

/** ms from a blackhole to `down`, on a line of `rttMs`. */
function blackholeDetection(interval: number, timeout: number | "auto", rttMs: number): number {
  const s = monitorRun({ interval, timeout, rttMs });
  s.monitor.start();
  s.clock.advance(20_000);
  assert.equal(s.monitor.state, "up");
  const at = s.clock.now();
  s.ping.path(A, { blackhole: true });
  s.ping.path(B, { blackhole: true });
  s.clock.advance(5000);
  const down = s.transitions.find((t) => t.to === "down");
  assert.ok(down, "never went down");
  return down.time - 1_700_000_000_000 - at;
}

describe("uplink monitor with timeout: auto", () => {
  it("on a 1 ms line a blackhole is seen sooner than with a fixed 500 ms timeout (the floor, 50 ms, applies)", () => {
    const auto = blackholeDetection(50, "auto", 1);
    const fixed = blackholeDetection(50, 500, 1);
    // down 3 at 50 ms: about 2 intervals + the timeout after the first lost probe.
    assert.ok(auto <= 300, `auto: ${auto} ms`);
    assert.ok(fixed >= 550, `fixed: ${fixed} ms`);
  });

  it("on a 60 ± 20 ms line with 5 % loss: no down in 10 minutes at 50 ms rounds, and the RTO sits above the RTTs", () => {
    const jitter = seededRandom(99);
    const s = monitorRun({
      interval: 50,
      timeout: "auto",
      rttMs: () => 40 + 40 * jitter(),
      lossPct: 5,
      seed: 3,
    });
    s.monitor.start();
    s.clock.advance(10 * 60_000);
    assert.deepEqual(
      s.transitions.map((t) => t.to),
      ["up"],
      s.transitions.map((t) => `${t.to}: ${t.reason}`).join("\n"),
    );
    const snapshot = s.monitor.snapshot();
    for (const t of snapshot.targets) {
      assert.ok(t.timeoutMs > 80 && t.timeoutMs < 160, `${t.target}: RTO ${t.timeoutMs} ms`);
      // Loss as measured: the 5 % random loss, plus few answers later than the RTO.
      assert.ok(t.lossPct !== null && t.lossPct < 8, `${t.target}: loss ${t.lossPct ?? "?"} %`);
    }
  });

  it("an RTT step from 2 ms to 80 ms costs a probe or two, not the uplink", () => {
    const s = monitorRun({ interval: 50, timeout: "auto", rttMs: 2 });
    s.monitor.start();
    s.clock.advance(20_000);
    s.ping.path(A, { rttMs: 80 });
    s.ping.path(B, { rttMs: 80 });
    s.clock.advance(20_000);
    assert.deepEqual(
      s.transitions.map((t) => t.to),
      ["up"],
    );
    const snapshot = s.monitor.snapshot();
    for (const t of snapshot.targets) {
      assert.ok(t.lost <= 2, `${t.target}: ${t.lost} probes lost over the step`);
      assert.ok(t.timeoutMs > 80, `${t.target}: RTO ${t.timeoutMs} ms`);
    }
  });

  it("ping runs with the ceiling as -W; our statistics apply the RTO", () => {
    const s = monitorRun({ interval: 100, timeout: "auto", rttMs: 5 });
    s.monitor.start();
    s.clock.advance(1000);
    const args = s.ping.processes[0]?.args ?? [];
    assert.equal(args[args.indexOf("-W") + 1], "1");
  });
});

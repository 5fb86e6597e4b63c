import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RoundTracker, type RoundResult } from "../../src/health/rounds.js";
import { ProbeWindow } from "../../src/health/window.js";
import type { ProbeSchedule } from "../../src/health/prober.js";

const A = "198.51.100.1";
const B = "203.0.113.1";

function setup(
  schedule: ProbeSchedule,
  options: {
    reliability?: number;
    intervalMs?: number;
    timeoutMs?: number;
    targets?: string[];
  } = {},
) {
  const intervalMs = options.intervalMs ?? 200;
  const timeoutMs = options.timeoutMs ?? 500;
  const names = options.targets ?? [A, B];
  const windows = new Map(names.map((n) => [n, new ProbeWindow({ size: 50, timeoutMs })]));
  const tracker = new RoundTracker({
    targets: names.map((target) => ({
      target,
      window: windows.get(target) as ProbeWindow,
      schedule,
    })),
    intervalMs,
    timeoutMs,
    reliability: options.reliability ?? 1,
  });
  const w = (name: string): ProbeWindow => windows.get(name) as ProbeWindow;
  return { tracker, w };
}

function only(results: RoundResult[]): RoundResult {
  assert.equal(results.length, 1, `expected one decided round, got ${results.length}`);
  return results[0] as RoundResult;
}

describe("rounds of on-demand probes (TCP, HTTP, DNS)", () => {
  it("a round passes as soon as `reliability` targets answered", () => {
    const { tracker, w } = setup("on-demand");
    tracker.open(0, 0);
    w(A).sent(0, 0);
    w(B).sent(0, 0);
    assert.deepEqual(tracker.evaluate(0), []);
    w(B).answered(0, 30);
    const round = only(tracker.evaluate(30));
    assert.equal(round.outcome, "passed");
    assert.equal(round.decidedAt, 30);
    assert.deepEqual(
      round.targets.map((t) => t.status),
      ["pending", "answered"],
    );
  });

  it("a round without answers fails exactly `timeout` ms after it was sent, not before", () => {
    const { tracker, w } = setup("on-demand");
    tracker.open(0, 0);
    w(A).sent(0, 0);
    w(B).sent(0, 0);
    assert.deepEqual(tracker.evaluate(499), [], "probes in flight are not lost");
    assert.equal(tracker.wakeAt, 500);
    const round = only(tracker.evaluate(500));
    assert.equal(round.outcome, "failed");
    assert.deepEqual(
      round.targets.map((t) => t.error),
      ["no answer within 500 ms", "no answer within 500 ms"],
    );
  });

  it("with reliability 2 one answer is not enough", () => {
    const { tracker, w } = setup("on-demand", { reliability: 2 });
    tracker.open(0, 0);
    w(A).sent(0, 0);
    w(B).sent(0, 0);
    w(A).answered(0, 10);
    assert.deepEqual(tracker.evaluate(10), []);
    const round = only(tracker.evaluate(500));
    assert.equal(round.outcome, "failed");
    assert.equal(round.answered, 1);
    assert.equal(round.needed, 2);
  });

  it("a round fails early once too few targets can still answer", () => {
    const { tracker, w } = setup("on-demand", { reliability: 2 });
    tracker.open(0, 0);
    w(A).sent(0, 0);
    w(B).sent(0, 0);
    w(A).failed(0, 5, "connect ECONNREFUSED 198.51.100.1:443");
    const round = only(tracker.evaluate(5));
    assert.equal(round.outcome, "failed");
    assert.equal(round.targets[0]?.error, "connect ECONNREFUSED 198.51.100.1:443");
  });

  it("an answer later than the timeout fails the target", () => {
    const { tracker, w } = setup("on-demand", { targets: [A] });
    tracker.open(0, 0);
    w(A).sent(0, 0);
    w(A).answered(0, 600);
    const round = only(tracker.evaluate(600));
    assert.equal(round.outcome, "failed");
    assert.equal(round.targets[0]?.error, "answered late (600 ms)");
  });

  it("a target that sent nothing fails at the deadline", () => {
    const { tracker } = setup("on-demand", { targets: [A] });
    tracker.open(0, 0);
    assert.deepEqual(tracker.evaluate(499), []);
    assert.equal(only(tracker.evaluate(500)).targets[0]?.error, "no probe sent");
  });

  it("rounds are decided in order: a later pass waits for the earlier round", () => {
    const { tracker, w } = setup("on-demand", { targets: [A] });
    tracker.open(0, 0);
    w(A).sent(0, 0);
    tracker.open(1, 200);
    w(A).sent(1, 200);
    w(A).answered(1, 210);
    assert.deepEqual(tracker.evaluate(210), [], "round 1 passed but round 0 is open");
    const rounds = tracker.evaluate(500);
    assert.deepEqual(
      rounds.map((r) => [r.round, r.outcome]),
      [
        [0, "failed"],
        [1, "passed"],
      ],
    );
  });
});

describe("rounds of free-running probes (ping)", () => {
  it("round k takes the probes sent in (t_k - interval, t_k]", () => {
    const { tracker, w } = setup("free-running", { targets: [A] });
    tracker.open(5, 1000);
    w(A).sent(11, 790); // belongs to round 4
    w(A).answered(11, 800);
    assert.deepEqual(tracker.evaluate(800), []);
    w(A).sent(12, 990);
    w(A).answered(12, 1010);
    const round = only(tracker.evaluate(1010));
    assert.equal(round.outcome, "passed");
    assert.equal(round.targets[0]?.rttMs, 20);
  });

  it("a lost probe fails its round once older than the timeout", () => {
    const { tracker, w } = setup("free-running", { targets: [A] });
    tracker.open(5, 1000);
    w(A).sent(12, 950, { estimated: true });
    assert.deepEqual(tracker.evaluate(1449), []);
    assert.equal(only(tracker.evaluate(1450)).outcome, "failed");
  });

  it("an empty slot between consecutive probes (ping's period drift) makes the round void", () => {
    const { tracker, w } = setup("free-running", { targets: [A] });
    tracker.open(5, 1000);
    w(A).sent(12, 799);
    w(A).answered(12, 820);
    w(A).sent(13, 1003);
    w(A).answered(13, 1020);
    const round = only(tracker.evaluate(1020));
    assert.equal(round.outcome, "void");
    assert.equal(round.targets[0]?.status, "gap");
  });

  it("a drift gap does not void a round the other targets decide", () => {
    const { tracker, w } = setup("free-running");
    tracker.open(5, 1000);
    w(A).sent(12, 799);
    w(A).answered(12, 820);
    w(A).sent(13, 1003);
    w(A).answered(13, 1020);
    w(B).sent(40, 950);
    w(B).answered(40, 960);
    assert.equal(only(tracker.evaluate(1020)).outcome, "passed");
  });

  it("an empty slot that is not a drift gap fails at t_k + timeout (ping not running)", () => {
    const { tracker } = setup("free-running", { targets: [A] });
    tracker.open(5, 1000);
    assert.deepEqual(tracker.evaluate(1499), []);
    const round = only(tracker.evaluate(1500));
    assert.equal(round.outcome, "failed");
    assert.equal(round.targets[0]?.error, "no probe sent (is the prober running?)");
  });

  it("an empty slot after a probe ping reported fails as unanswered, not as a stopped prober", () => {
    const { tracker, w } = setup("free-running", { targets: [A] });
    tracker.open(5, 1000);
    w(A).sent(11, 790);
    w(A).answered(11, 795);
    assert.deepEqual(tracker.evaluate(1499), []);
    const round = only(tracker.evaluate(1500));
    assert.equal(round.outcome, "failed");
    assert.equal(round.targets[0]?.error, "no answer within 500 ms");
  });

  it("with a timeout shorter than the interval, the probe due in the slot fails the round at due + timeout", () => {
    const { tracker, w } = setup("free-running", {
      targets: [A],
      intervalMs: 1000,
      timeoutMs: 500,
    });
    w(A).sent(3, 2100);
    w(A).answered(3, 2120);
    tracker.open(3, 4000); // slot (3000, 4000]; the next probe is due by 2100 + 1050 = 3150
    assert.deepEqual(tracker.evaluate(3649), []);
    assert.equal(only(tracker.evaluate(3650)).outcome, "failed");
  });
});

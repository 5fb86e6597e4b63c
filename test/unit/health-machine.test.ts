import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../fakes/clock.js";
import {
  UplinkStateMachine,
  type StateMachineOptions,
  type StateChange,
  type UplinkState,
} from "../../src/health/machine.js";
import type { RoundResult, TargetRoundResult } from "../../src/health/rounds.js";
import type { UplinkStats } from "../../src/health/stats.js";

const A = "198.51.100.1";
const B = "203.0.113.1";
const INTERVAL = 200;

/** Uplink stats where both targets show `lossPct` % loss over `samples` probes and `rttMs` mean RTT. */
function stats(lossPct: number | null, rttMs: number | null = 20, samples = 100): UplinkStats {
  const lost = lossPct === null ? 0 : Math.round((samples * lossPct) / 100);
  const target = (name: string) => ({
    target: name,
    sent: samples,
    received: samples - lost,
    lost,
    inFlight: 0,
    lossPct,
    rttMs,
    jitterMs: 1,
    lastRttMs: rttMs,
    lastError: null,
    lastTimings: null,
  });
  return { lossPct, rttMs, jitterMs: 1, targets: [target(A), target(B)] };
}

const CLEAN = stats(0);

function setup(overrides: Partial<StateMachineOptions> = {}) {
  const clock = new ManualClock(0, 1_700_000_000_000);
  const machine = new UplinkStateMachine({
    uplink: "isp1",
    down: 3,
    up: 5,
    reliability: 1,
    intervalMs: INTERVAL,
    quality: { lossFailPct: 20, lossRecoverPct: 10, rttFailMs: 500, rttRecoverMs: 250 },
    flap: { count: 3, periodMs: 300_000, holdMs: 60_000 },
    downFalseAlarm: 1e-7,
    downStretchMax: 3,
    clock,
    ...overrides,
  });
  let round = 0;
  const transitions: StateChange[] = [];
  /** Feeds one round INTERVAL ms after the previous one. */
  const feed = (
    outcome: "passed" | "failed" | "void",
    uplinkStats: UplinkStats = CLEAN,
    targets?: TargetRoundResult[],
  ): StateChange[] => {
    clock.advance(INTERVAL);
    const passed = outcome === "passed";
    const result: RoundResult = {
      round: round++,
      at: clock.now(),
      decidedAt: clock.now(),
      outcome,
      passed,
      answered: passed ? 2 : 0,
      needed: 1,
      targets: targets ?? [
        target(A, passed ? "answered" : "failed"),
        target(B, passed ? "answered" : "failed"),
      ],
    };
    const made = machine.round(result, uplinkStats);
    transitions.push(...made);
    return made;
  };
  /** Feeds `n` rounds; returns the states after each. */
  const feedMany = (
    n: number,
    outcome: "passed" | "failed",
    uplinkStats: UplinkStats = CLEAN,
  ): UplinkState[] => {
    const states: UplinkState[] = [];
    for (let i = 0; i < n; i++) {
      feed(outcome, uplinkStats);
      states.push(machine.state);
    }
    return states;
  };
  return { clock, machine, feed, feedMany, transitions };
}

/** The one transition of a call that must make exactly one. */
function one(transitions: StateChange[]): StateChange {
  assert.equal(transitions.length, 1, `expected one transition, got ${transitions.length}`);
  return transitions[0] as StateChange;
}

function target(
  name: string,
  status: TargetRoundResult["status"],
  error: string | null = status === "failed" ? "no answer within 500 ms" : null,
): TargetRoundResult {
  return {
    target: name,
    answered: status === "answered",
    status,
    rttMs: status === "answered" ? 12 : null,
    error,
  };
}

describe("uplink state machine: start", () => {
  it("uplink starts in init", () => {
    assert.equal(setup().machine.state, "init");
  });

  it("init goes up on the first passed round (the uplink is presumed usable)", () => {
    const { machine, feed } = setup();
    const t = one(feed("passed"));
    assert.equal(machine.state, "up");
    assert.equal(t.from, "init");
    assert.match(t.reason, /^first round passed: 198\.51\.100\.1 answered \(rtt 12 ms\)/);
  });

  it("init goes down after exactly 3 failed rounds, not 2", () => {
    const { feedMany } = setup();
    assert.deepEqual(feedMany(3, "failed"), ["init", "init", "down"]);
  });
});

describe("uplink state machine: hysteresis", () => {
  it("uplink goes down after 3 failed rounds in a row", () => {
    const { feed, feedMany, transitions } = setup();
    feed("passed");
    assert.deepEqual(feedMany(3, "failed"), ["up", "up", "down"]);
    assert.equal(transitions.at(-1)?.reason, `3 rounds failed: ${A} lost 3/3, ${B} lost 3/3`);
  });

  it("a passed round between failures starts the count again", () => {
    const { feed, feedMany, machine } = setup();
    feed("passed");
    feedMany(2, "failed");
    feed("passed");
    feedMany(2, "failed");
    assert.equal(machine.state, "up");
    feed("failed");
    assert.equal(machine.state, "down");
  });

  it("down uplink comes up after exactly 5 passed rounds in a row", () => {
    const { feed, feedMany, transitions } = setup();
    feed("passed");
    feedMany(3, "failed");
    assert.deepEqual(feedMany(5, "passed"), ["down", "down", "down", "down", "up"]);
    assert.equal(
      transitions.at(-1)?.reason,
      `5 rounds passed: ${A} answered 5/5 (rtt 12 ms), ${B} answered 5/5 (rtt 12 ms)`,
    );
  });

  it("a failed round while recovering starts the count again", () => {
    const { feed, feedMany, machine } = setup();
    feed("passed");
    feedMany(3, "failed");
    feedMany(4, "passed");
    feed("failed");
    feedMany(4, "passed");
    assert.equal(machine.state, "down");
    feed("passed");
    assert.equal(machine.state, "up");
  });

  it("the failure reason names which targets failed and why", () => {
    const { feed, transitions } = setup();
    feed("passed");
    const targets = [
      target(A, "failed", "Destination Host Unreachable from 100.64.1.1"),
      target(B, "failed"),
    ];
    for (let i = 0; i < 3; i++) feed("failed", CLEAN, targets);
    assert.equal(
      transitions.at(-1)?.reason,
      `3 rounds failed: ${A} lost 3/3 (Destination Host Unreachable from 100.64.1.1), ${B} lost 3/3`,
    );
  });

  it("void rounds (drift gaps) neither count nor break a streak", () => {
    const { feed, machine } = setup();
    feed("passed");
    feed("failed");
    feed("failed");
    feed("void");
    assert.equal(machine.state, "up");
    feed("failed");
    assert.equal(machine.state, "down");
  });

  it("a transition carries wall-clock time, uplink, states and stats", () => {
    const { feed } = setup();
    const t = one(feed("passed", stats(0, 15)));
    assert.equal(t.time, 1_700_000_000_000 + INTERVAL);
    assert.equal(t.uplink, "isp1");
    assert.equal(t.to, "up");
    assert.equal(t.stats.rttMs, 15);
  });
});

describe("uplink state machine: loss-aware down count", () => {
  it("a clean uplink needs exactly `down` failed rounds", () => {
    const { feed, machine } = setup();
    feed("passed", stats(0));
    feed("passed", stats(0));
    assert.equal(machine.failedRoundsForDown, 3);
  });

  it("an uplink with 30 % loss on both targets needs 7 failed rounds, so random loss does not take it down", () => {
    const { feed, feedMany, machine, transitions } = setup();
    feed("passed", stats(30));
    feed("passed", stats(30));
    assert.equal(machine.failedRoundsForDown, 7);
    // (30 % loss also makes it degraded on the third round with bad quality)
    assert.deepEqual(feedMany(7, "failed", stats(30)), [
      "degraded",
      "degraded",
      "degraded",
      "degraded",
      "degraded",
      "degraded",
      "down",
    ]);
    assert.match(
      transitions.at(-1)?.reason ?? "",
      /^7 rounds failed: .*\(7 needed on this lossy uplink/,
    );
  });

  it("the loss-aware count is capped at down x downStretchMax", () => {
    const { feed, machine } = setup();
    feed("passed", stats(70));
    feed("passed", stats(70));
    assert.equal(machine.failedRoundsForDown, 9);
  });
});

describe("uplink state machine: quality", () => {
  it("up goes degraded after 3 rounds with loss at or above 20 %", () => {
    const { feed, feedMany, transitions } = setup();
    feed("passed");
    assert.deepEqual(feedMany(3, "passed", stats(20)), ["up", "up", "degraded"]);
    assert.equal(
      transitions.at(-1)?.reason,
      `loss 20% >= 20%: ${A} loss 20% rtt 20 ms, ${B} loss 20% rtt 20 ms`,
    );
  });

  it("loss just under the failure threshold leaves the uplink up", () => {
    const { feed, feedMany } = setup();
    feed("passed");
    assert.deepEqual(feedMany(10, "passed", stats(19)).at(-1), "up");
  });

  it("degraded stays degraded between the thresholds, and goes up after 5 rounds under 10 %", () => {
    const { feed, feedMany, transitions } = setup();
    feed("passed");
    feedMany(3, "passed", stats(25));
    assert.deepEqual(feedMany(20, "passed", stats(15)).at(-1), "degraded");
    assert.deepEqual(feedMany(5, "passed", stats(9)), [
      "degraded",
      "degraded",
      "degraded",
      "degraded",
      "up",
    ]);
    assert.match(transitions.at(-1)?.reason ?? "", /^loss 9% < 10% and rtt 20 ms < 250 ms: /);
  });

  it("a mean RTT at or above 500 ms degrades, and under 250 ms recovers", () => {
    const { feed, feedMany, transitions } = setup();
    feed("passed");
    assert.equal(feedMany(3, "passed", stats(0, 500)).at(-1), "degraded");
    assert.match(transitions.at(-1)?.reason ?? "", /^rtt 500 ms >= 500 ms/);
    assert.equal(feedMany(10, "passed", stats(0, 300)).at(-1), "degraded");
    assert.equal(feedMany(5, "passed", stats(0, 249)).at(-1), "up");
  });

  it("without enough samples (null loss and RTT) quality changes nothing", () => {
    const { feed, feedMany } = setup();
    feed("passed");
    assert.equal(feedMany(10, "passed", stats(null, null)).at(-1), "up");
  });

  it("a degraded uplink still goes down on failed rounds", () => {
    const { feed, feedMany, machine } = setup();
    feed("passed");
    feedMany(3, "passed", stats(25));
    assert.equal(machine.state, "degraded");
    feedMany(machine.failedRoundsForDown, "failed", stats(25));
    assert.equal(machine.state, "down");
  });
});

describe("uplink state machine: flap damping", () => {
  it("an uplink that went down 3 times within 5 minutes stays down for 60 s although rounds pass", () => {
    const { clock, feed, feedMany, machine, transitions } = setup();
    feed("passed");
    for (let i = 0; i < 2; i++) {
      feedMany(3, "failed");
      feedMany(5, "passed");
      assert.equal(machine.state, "up");
    }
    feedMany(3, "failed");
    assert.equal(machine.state, "down");
    assert.match(
      transitions.at(-1)?.reason ?? "",
      /^3 rounds failed: .*; flapping: down 3 times within 5 min, held down for 1 min$/,
    );
    const downAt = clock.now();
    feedMany(5, "passed");
    assert.equal(machine.state, "down", "held");
    assert.ok(machine.snapshot().holdRemainingMs > 0);
    while (clock.now() + INTERVAL < downAt + 60_000) {
      feed("passed");
      assert.equal(machine.state, "down");
    }
    feed("passed");
    assert.equal(machine.state, "up");
    assert.match(
      transitions.at(-1)?.reason ?? "",
      /^\d+ rounds passed \(flap hold of 1 min over\): /,
    );
  });

  it("downs spread over more than 5 minutes do not start a hold", () => {
    const { clock, feed, feedMany, machine } = setup();
    feed("passed");
    for (let i = 0; i < 3; i++) {
      feedMany(3, "failed");
      feedMany(5, "passed");
      assert.equal(machine.state, "up");
      clock.advance(150_000);
    }
  });
});

describe("uplink state machine: carrier", () => {
  it("carrier lost takes an up uplink down at once", () => {
    const { feed, machine } = setup();
    feed("passed");
    const t = one(machine.carrierLost());
    assert.equal(machine.state, "down");
    assert.equal(t.reason, "carrier lost");
  });

  it("carrier lost takes init and degraded down too, and changes nothing when already down", () => {
    const a = setup();
    a.machine.carrierLost();
    assert.equal(a.machine.state, "down");
    assert.deepEqual(a.machine.carrierLost(), []);
    const b = setup();
    b.feed("passed");
    b.feedMany(3, "passed", stats(50));
    assert.equal(b.machine.state, "degraded");
    b.machine.carrierLost();
    assert.equal(b.machine.state, "down");
  });

  it("rounds change nothing while the carrier is lost; carrier back needs 5 passed rounds", () => {
    const { feed, feedMany, machine } = setup();
    feed("passed");
    machine.carrierLost();
    feedMany(10, "passed");
    assert.equal(machine.state, "down");
    assert.deepEqual(machine.carrierBack(), []);
    assert.deepEqual(feedMany(5, "passed"), ["down", "down", "down", "down", "up"]);
  });
});

describe("uplink state machine: disabled", () => {
  it("a disabled uplink makes no transitions from rounds or carrier until enabled", () => {
    const { feed, feedMany, machine } = setup();
    feed("passed");
    const t = one(machine.disable());
    assert.equal(t.to, "disabled");
    assert.equal(t.reason, "disabled by the operator");
    feedMany(5, "failed");
    assert.deepEqual(machine.carrierLost(), []);
    assert.deepEqual(machine.carrierBack(), []);
    feedMany(5, "passed");
    assert.equal(machine.state, "disabled");
  });

  it("enable goes to init, and the next passed round brings the uplink up", () => {
    const { feed, machine } = setup();
    feed("passed");
    machine.disable("maintenance");
    const t = one(machine.enable());
    assert.equal(t.from, "disabled");
    assert.equal(t.to, "init");
    feed("passed");
    assert.equal(machine.state, "up");
  });

  it("enable without carrier goes to down", () => {
    const { machine } = setup();
    machine.disable();
    machine.carrierLost();
    const t = one(machine.enable());
    assert.equal(t.to, "down");
    assert.equal(t.reason, "enabled by the operator; carrier lost");
  });
});

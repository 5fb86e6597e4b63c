import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../fakes/clock.js";
import { ProbeWindow } from "../../src/health/window.js";

describe("probe window", () => {
  it("counts a probe in flight as neither lost nor received", () => {
    const w = new ProbeWindow({ size: 10, timeoutMs: 500 });
    w.sent(1, 0);
    const stats = w.stats(499);
    assert.equal(stats.sent, 1);
    assert.equal(stats.inFlight, 1);
    assert.equal(stats.lost, 0);
    assert.equal(stats.received, 0);
    assert.equal(stats.lossPct, null);
  });

  it("counts an unanswered probe as lost once it is as old as the timeout", () => {
    const w = new ProbeWindow({ size: 10, timeoutMs: 500 });
    w.sent(1, 0);
    assert.equal(w.stats(500).lost, 1);
    assert.equal(w.stats(500).lossPct, 100);
  });

  it("computes loss %, mean RTT, jitter (RTT standard deviation) and last RTT", () => {
    const w = new ProbeWindow({ size: 10, timeoutMs: 500 });
    w.sent(1, 0);
    w.answered(1, 10);
    w.sent(2, 200);
    w.answered(2, 220);
    w.sent(3, 400);
    w.sent(4, 600);
    w.answered(4, 630);
    const stats = w.stats(1000);
    assert.equal(stats.sent, 4);
    assert.equal(stats.received, 3);
    assert.equal(stats.lost, 1);
    assert.equal(stats.lossPct, 25);
    assert.equal(stats.rttMs, 20);
    assert.ok(Math.abs((stats.jitterMs ?? 0) - Math.sqrt(200 / 3)) < 1e-9);
    assert.equal(stats.lastRttMs, 30);
  });

  it("takes the prober's own RTT when given and corrects an estimated send time", () => {
    const w = new ProbeWindow({ size: 10, timeoutMs: 500 });
    w.sent(7, 100, { estimated: true });
    w.answered(7, 260, 12.5);
    const record = w.get(7);
    assert.ok(record);
    assert.equal(record.rttMs, 12.5);
    assert.equal(record.sentAt, 247.5);
    assert.equal(record.estimated, false);
  });

  it("records an unknown probe from its answer when the RTT is known", () => {
    const w = new ProbeWindow({ size: 10, timeoutMs: 500 });
    w.answered(3, 1000, 40);
    assert.equal(w.get(3)?.sentAt, 960);
    assert.equal(w.stats(1000).received, 1);
  });

  it("counts an answer later than the timeout as lost", () => {
    const w = new ProbeWindow({ size: 10, timeoutMs: 500 });
    w.sent(1, 0);
    w.answered(1, 700);
    const stats = w.stats(800);
    assert.equal(stats.lost, 1);
    assert.equal(stats.received, 0);
  });

  it("counts a sure failure as lost at once, with its reason", () => {
    const w = new ProbeWindow({ size: 10, timeoutMs: 500 });
    w.sent(1, 0);
    w.failed(1, 3, "Destination Host Unreachable from 100.64.0.1");
    const stats = w.stats(3);
    assert.equal(stats.lost, 1);
    assert.equal(stats.lastError, "Destination Host Unreachable from 100.64.0.1");
  });

  it("ignores duplicate answers and answers after a failure", () => {
    const w = new ProbeWindow({ size: 10, timeoutMs: 500 });
    w.sent(1, 0);
    w.answered(1, 10);
    w.answered(1, 50);
    w.sent(2, 200);
    w.failed(2, 201, "x");
    w.answered(2, 210);
    assert.equal(w.get(1)?.rttMs, 10);
    assert.equal(w.stats(300).received, 1);
    assert.equal(w.stats(300).lost, 1);
  });

  it("keeps only the most recent `size` sequence numbers", () => {
    const w = new ProbeWindow({ size: 4, timeoutMs: 500 });
    for (let seq = 1; seq <= 10; seq++) w.sent(seq, seq * 100);
    assert.deepEqual(
      w.records().map((r) => r.seq),
      [7, 8, 9, 10],
    );
    assert.equal(w.sent(5, 0), undefined, "a probe older than the window is ignored");
    assert.equal(w.get(6), undefined);
  });

  it("restricts statistics to probes sent since a given time", () => {
    const w = new ProbeWindow({ size: 10, timeoutMs: 500 });
    w.sent(1, 0);
    w.sent(2, 1000);
    w.answered(2, 1010);
    assert.equal(w.stats(2000).lossPct, 50);
    assert.equal(w.stats(2000, { since: 1000 }).lossPct, 0);
  });

  it("rejects a window size below 1 and a timeout of 0", () => {
    assert.throws(() => new ProbeWindow({ size: 0, timeoutMs: 500 }), RangeError);
    assert.throws(() => new ProbeWindow({ size: 10, timeoutMs: 0 }), RangeError);
  });
});

describe("manual clock", () => {
  it("fires due timers in time order, each at its own time, and no others", () => {
    const clock = new ManualClock();
    const fired: string[] = [];
    clock.setTimeout(() => {
      fired.push(`b@${clock.now()}`);
    }, 20);
    clock.setTimeout(() => {
      fired.push(`a@${clock.now()}`);
      clock.setTimeout(() => {
        fired.push(`c@${clock.now()}`);
      }, 5);
    }, 10);
    clock.setTimeout(() => {
      fired.push(`d@${clock.now()}`);
    }, 100);
    clock.advance(50);
    assert.deepEqual(fired, ["a@10", "c@15", "b@20"]);
    assert.equal(clock.now(), 50);
    assert.equal(clock.pending, 1);
  });

  it("does not fire a cleared timer and derives wall time from its origin", () => {
    const clock = new ManualClock(0, 1_700_000_000_000);
    let fired = false;
    const handle = clock.setTimeout(() => {
      fired = true;
    }, 10);
    clock.clearTimeout(handle);
    clock.advance(10);
    assert.equal(fired, false);
    assert.equal(clock.wall(), 1_700_000_000_010);
  });

  it("refuses to go back in time", () => {
    const clock = new ManualClock(100);
    assert.throws(() => {
      clock.advance(-1);
    }, RangeError);
    assert.throws(() => {
      clock.advanceTo(50);
    }, RangeError);
  });
});

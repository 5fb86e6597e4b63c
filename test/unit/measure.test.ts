import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { failoverMs, spread } from "../../src/lab/measure.js";
import type { ProbeAttempt } from "../../src/lab/traffic.js";

const attempt = (at: number, ok: boolean): ProbeAttempt => ({ at, ok, ms: 1 });

describe("failover time from client attempts", () => {
  it("is the start of the first attempt after the last failure, from the fault", () => {
    const attempts = [
      attempt(900, true),
      attempt(1000, true),
      attempt(1050, false),
      attempt(1100, true),
      attempt(1150, false),
      attempt(1200, true),
      attempt(1250, true),
    ];
    assert.equal(failoverMs(attempts, 1000), 200);
  });

  it("is 0 when nothing failed after the fault, and null when the last attempt failed", () => {
    assert.equal(failoverMs([attempt(1000, true), attempt(1050, true)], 1000), 0);
    assert.equal(failoverMs([attempt(1000, true), attempt(1050, false)], 1000), null);
  });

  it("ignores failures before the fault and attempts after the window", () => {
    const attempts = [attempt(500, false), attempt(1000, true), attempt(1300, false)];
    assert.equal(failoverMs(attempts, 1000, 1200), 0);
  });
});

describe("spread", () => {
  it("gives median, p90 and max by nearest rank", () => {
    assert.deepEqual(spread([5, 1, 3, 2, 4, 6, 7, 8, 9, 10]), {
      median: 5.5,
      p90: 9,
      max: 10,
      n: 10,
    });
    assert.deepEqual(spread([]), { median: null, p90: null, max: null, n: 0 });
  });
});

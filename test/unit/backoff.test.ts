import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Backoff, backoffDelay } from "../../src/backoff.js";
import { MONITOR_BACKOFF } from "../../src/links/monitor.js";
import { PING_BACKOFF } from "../../src/health/ping.js";
import { MAX_BACKOFF_MS, retryBackoff } from "../../src/notify/retry.js";

describe("backoff", () => {
  it("waits base, then base x factor per further failure, up to the cap", () => {
    const policy = { baseMs: 100, factor: 3, maxMs: 2000 };
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => backoffDelay(policy, n)),
      [100, 300, 900, 2000, 2000],
    );
  });

  it("treats a failure count below 1 as the first failure", () => {
    const policy = { baseMs: 100, factor: 2, maxMs: 1000 };
    assert.equal(backoffDelay(policy, 0), 100);
    assert.equal(backoffDelay(policy, -5), 100);
  });

  it("stays at the cap for any number of failures, without overflow", () => {
    const policy = { baseMs: 500, factor: 2, maxMs: 5000 };
    assert.equal(backoffDelay(policy, 10_000), 5000);
  });

  it("a factor of 1 keeps the delay constant", () => {
    const policy = { baseMs: 250, factor: 1, maxMs: 1000 };
    assert.deepEqual(
      [1, 2, 10].map((n) => backoffDelay(policy, n)),
      [250, 250, 250],
    );
  });

  it("counts failures in a row, and reset starts again", () => {
    const backoff = new Backoff({ baseMs: 50, factor: 2, maxMs: 1000 });
    assert.deepEqual([backoff.next(), backoff.next(), backoff.next()], [50, 100, 200]);
    assert.equal(backoff.failures, 3);
    backoff.reset();
    assert.equal(backoff.failures, 0);
    assert.equal(backoff.next(), 50);
  });

  it("a run at least resetAfterMs long counts as a success", () => {
    const backoff = new Backoff({ baseMs: 500, factor: 2, maxMs: 5000, resetAfterMs: 10_000 });
    assert.equal(backoff.next(100), 500);
    assert.equal(backoff.next(9_999), 1000);
    assert.equal(backoff.next(10_000), 500);
  });

  it("without resetAfterMs a long run does not reset", () => {
    const backoff = new Backoff({ baseMs: 500, factor: 2, maxMs: 5000 });
    backoff.next(0);
    assert.equal(backoff.next(1_000_000), 1000);
  });

  it("keeps the program's policies: ping 500 ms..5 s, ip monitor 50 ms..1 s, notify doubling to 5 min", () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(PING_BACKOFF, n)),
      [500, 1000, 2000, 4000, 5000, 5000],
    );
    assert.equal(PING_BACKOFF.resetAfterMs, 10_000);
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(MONITOR_BACKOFF, n)),
      [50, 100, 200, 400, 800, 1000, 1000],
    );
    const notify = retryBackoff({ retries: 20, backoffMs: 1000 });
    assert.deepEqual(
      [1, 2, 3].map((n) => backoffDelay(notify, n)),
      [1000, 2000, 4000],
    );
    assert.equal(backoffDelay(notify, 20), MAX_BACKOFF_MS);
  });
});

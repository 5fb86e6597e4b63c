import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../fakes/clock.js";
import { FakePing } from "../fakes/health.js";
import type { StateChange } from "../../src/health/machine.js";
import { UplinkMonitor } from "../../src/health/monitor.js";
import { resolveHealthSettings } from "../../src/health/options.js";
import {
  PassiveDetector,
  PassiveWatcher,
  type PassiveCounts,
  type PassiveSuspect,
} from "../../src/health/passive.js";

const A = "198.51.100.1";
const B = "203.0.113.1";

/**
 * Simulated counters: `rate` new connections per second per uplink; an
 * uplink in `dead` (from `deadFrom` ms) answers none, the others answer
 * each one `rttMs` later.
 */
function traffic(options: {
  uplinks: string[];
  rate: number;
  rttMs?: number;
  dead?: string[];
  deadFrom?: number;
}) {
  const rtt = options.rttMs ?? 20;
  return (t: number): Map<string, PassiveCounts> => {
    const out = new Map<string, PassiveCounts>();
    for (const u of options.uplinks) {
      const syn = Math.floor((t * options.rate) / 1000);
      const deadAt = options.dead?.includes(u) ? (options.deadFrom ?? 0) : Infinity;
      const answeredUntil = Math.min(t - rtt, deadAt);
      const synAck = Math.max(0, Math.floor((answeredUntil * options.rate) / 1000));
      out.set(u, { syn, synAck });
    }
    return out;
  };
}

/** Feeds the detector every `period` ms from `from` to `to`; the suspects with their times. */
function run(
  detector: PassiveDetector,
  counts: (t: number) => Map<string, PassiveCounts>,
  from: number,
  to: number,
  period = 200,
): { at: number; suspect: PassiveSuspect }[] {
  const out: { at: number; suspect: PassiveSuspect }[] = [];
  for (let t = from; t <= to; t += period) {
    for (const suspect of detector.sample(t, counts(t))) out.push({ at: t, suspect });
  }
  return out;
}

describe("passive signal: unanswered new connections per uplink", () => {
  it("a blackholed uplink is suspect within about a second while the other answers", () => {
    const d = new PassiveDetector();
    const counts = traffic({
      uplinks: ["isp1", "isp2"],
      rate: 25,
      dead: ["isp1"],
      deadFrom: 10_000,
    });
    const before = run(d, counts, 0, 9_800);
    assert.deepEqual(before, []);
    const after = run(d, counts, 10_000, 12_000);
    assert.ok(after.length >= 1, "never suspect");
    const first = after[0];
    assert.ok(first);
    assert.equal(first.suspect.uplink, "isp1");
    assert.ok(first.at - 10_000 <= 800, `suspect ${first.at - 10_000} ms after the blackhole`);
    assert.match(first.suspect.reason, /new connections unanswered .* while isp2 answers/);
    assert.ok(after.every((a) => a.suspect.uplink === "isp1"));
  });

  it("at most one suspicion per cooldown (2 s) while the uplink stays dead", () => {
    const d = new PassiveDetector();
    const counts = traffic({ uplinks: ["isp1", "isp2"], rate: 25, dead: ["isp1"], deadFrom: 5000 });
    const hits = run(d, counts, 0, 15_000);
    const times = hits.map((h) => h.at);
    for (let i = 1; i < times.length; i++) {
      assert.ok((times[i] ?? 0) - (times[i - 1] ?? 0) >= 2000, times.join(","));
    }
    assert.ok(times.length >= 4 && times.length <= 6, times.join(","));
  });

  it("no traffic, or too little, is never suspect", () => {
    const quiet = new PassiveDetector();
    assert.deepEqual(
      run(quiet, traffic({ uplinks: ["isp1", "isp2"], rate: 0, dead: ["isp1"] }), 0, 10_000),
      [],
    );
    const trickle = new PassiveDetector();
    assert.deepEqual(
      run(trickle, traffic({ uplinks: ["isp1", "isp2"], rate: 2, dead: ["isp1"] }), 0, 10_000),
      [],
    );
  });

  it("when every uplink is silent (the LAN side, or the internet, is down) nothing is suspect", () => {
    const d = new PassiveDetector();
    const counts = traffic({
      uplinks: ["isp1", "isp2"],
      rate: 25,
      dead: ["isp1", "isp2"],
      deadFrom: 3000,
    });
    assert.deepEqual(run(d, counts, 0, 10_000), []);
  });

  it("a slow but answering uplink (RTT below the grace time) is not suspect", () => {
    const d = new PassiveDetector();
    assert.deepEqual(
      run(d, traffic({ uplinks: ["isp1", "isp2"], rate: 40, rttMs: 150 }), 0, 20_000),
      [],
    );
  });

  it("connections refused by a RST or an ICMP unreachable are answered: only unanswered SYNs make an uplink suspect", () => {
    // isp1 carries connections to a closed port from 5 s on: every SYN is refused, none gets a SYN-ACK.
    const answered = traffic({ uplinks: ["isp1", "isp2"], rate: 25 });
    const refusedFrom = 5000;
    const refusing = (t: number): Map<string, PassiveCounts> => {
      const out = answered(t);
      const isp1 = out.get("isp1");
      if (isp1 !== undefined && t > refusedFrom) {
        const frozen = answered(refusedFrom).get("isp1")?.synAck ?? 0;
        // The SYN-ACK counter stands still; the refusals follow the SYNs 20 ms later.
        const refused = Math.max(0, Math.floor(((t - 20 - refusedFrom) * 25) / 1000));
        out.set("isp1", { syn: isp1.syn, synAck: frozen, refused });
      }
      return out;
    };
    const d = new PassiveDetector();
    assert.deepEqual(run(d, refusing, 0, 15_000), []);
    const share = d.shares(15_000).get("isp1");
    assert.ok(share !== undefined && share.connections >= 3, JSON.stringify(share));
    assert.equal(share.unansweredPct, 0);
    // The same SYNs without their refusals (the counter not read) are unanswered: suspect.
    const unread = (t: number) =>
      new Map([...refusing(t)].map(([u, c]) => [u, { syn: c.syn, synAck: c.synAck }]));
    const hits = run(new PassiveDetector(), unread, 0, 15_000);
    assert.ok(hits.length > 0 && hits.every((h) => h.suspect.uplink === "isp1"));
  });

  it("the watcher reads the refusal counters beside the SYN and SYN-ACK ones", async () => {
    const clock = new ManualClock();
    const values = new Map<string, number>();
    const watcher = new PassiveWatcher({
      clock,
      readCounters: () => Promise.resolve(new Map(values)),
      uplinks: () => [
        {
          name: "isp1",
          syn: "passive_syn_1",
          synAck: "passive_synack_1",
          refused: "passive_refused_1",
        },
      ],
      onSuspect: () => undefined,
    });
    // 5 new connections every 250 ms, each refused (RST) at once; no SYN-ACK.
    for (let i = 0; i <= 8; i++) {
      values.set("passive_syn_1", 5 * i);
      values.set("passive_synack_1", 0);
      values.set("passive_refused_1", 5 * i);
      await watcher.tick();
      clock.advance(250);
    }
    const share = watcher.detector.shares(clock.now() - 250).get("isp1");
    assert.ok(share !== undefined && share.connections > 0, JSON.stringify(share));
    assert.equal(share.unansweredPct, 0);
  });

  it("counters that go back to zero (a table reload) restart the history instead of looking like silence", () => {
    const d = new PassiveDetector();
    const counts = traffic({ uplinks: ["isp1", "isp2"], rate: 25 });
    assert.deepEqual(run(d, counts, 0, 5000), []);
    const reset = (t: number) => counts(t - 5000);
    assert.deepEqual(run(d, reset, 5200, 10_000), []);
  });
});

describe("passive watcher", () => {
  it("reads the named counters every 200 ms and reports a suspect uplink", async () => {
    const clock = new ManualClock(0, 1_700_000_000_000);
    const counts = traffic({ uplinks: ["isp1", "isp2"], rate: 25, dead: ["isp1"], deadFrom: 3000 });
    const suspects: PassiveSuspect[] = [];
    let reads = 0;
    const watcher = new PassiveWatcher({
      clock,
      readCounters: () => {
        reads++;
        const c = counts(clock.now());
        return Promise.resolve(
          new Map([
            ["passive_syn_1", c.get("isp1")?.syn ?? 0],
            ["passive_synack_1", c.get("isp1")?.synAck ?? 0],
            ["passive_syn_2", c.get("isp2")?.syn ?? 0],
            ["passive_synack_2", c.get("isp2")?.synAck ?? 0],
          ]),
        );
      },
      uplinks: () => [
        { name: "isp1", syn: "passive_syn_1", synAck: "passive_synack_1" },
        { name: "isp2", syn: "passive_syn_2", synAck: "passive_synack_2" },
      ],
      onSuspect: (s) => suspects.push(s),
    });
    for (let t = 0; t <= 4000; t += 200) {
      await watcher.tick();
      clock.advance(200);
    }
    assert.equal(reads, 21);
    assert.deepEqual(
      suspects.map((s) => s.uplink),
      ["isp1"],
    );
  });

  it("reads once a second while no LAN connection comes, every 200 ms once SYNs move", async () => {
    const clock = new ManualClock(0, 1_700_000_000_000);
    let syns = 0;
    const watcher = new PassiveWatcher({
      clock,
      readCounters: () =>
        Promise.resolve(
          new Map([
            ["passive_syn_1", syns],
            ["passive_synack_1", syns],
          ]),
        ),
      uplinks: () => [{ name: "isp1", syn: "passive_syn_1", synAck: "passive_synack_1" }],
      onSuspect: () => undefined,
    });
    await watcher.tick();
    assert.equal(watcher.periodNow, 1000);
    clock.advance(1000);
    syns = 3;
    await watcher.tick();
    assert.equal(watcher.periodNow, 200);
    // Window 500 + grace 250 + 2000 ms without new SYNs: back to once a second.
    clock.advance(2700);
    await watcher.tick();
    assert.equal(watcher.periodNow, 200);
    clock.advance(100);
    assert.equal(watcher.periodNow, 1000);
  });
});

function monitorWithPing() {
  const clock = new ManualClock(0, 1_700_000_000_000);
  const ping = new FakePing(clock);
  ping.path(A, { rttMs: 5 });
  ping.path(B, { rttMs: 5 });
  const transitions: StateChange[] = [];
  const monitor = new UplinkMonitor({
    uplink: "isp1",
    settings: resolveHealthSettings({
      targets: [A, B],
      interval: 1000,
      timeout: "auto",
      down: 3,
      up: 5,
      reliability: 1,
    }),
    source: { mark: 0x100 },
    clock,
    spawner: ping.spawner,
    onTransition: (t) => transitions.push(t),
  });
  return { clock, ping, monitor, transitions };
}

/** Runs the clock in 5 ms steps until `promise` settles (at most `maxMs`). */
async function settle(clock: ManualClock, promise: Promise<void>, maxMs = 5000): Promise<void> {
  const state = { done: false };
  void promise.then(() => {
    state.done = true;
  });
  for (let t = 0; t < maxMs && !state.done; t += 5) {
    clock.advance(5);
    await Promise.resolve();
  }
  await promise;
}

describe("probe burst", () => {
  it("on a blackholed uplink, a burst takes it down long before its 1 s rounds would", async () => {
    const { clock, ping, monitor, transitions } = monitorWithPing();
    monitor.start();
    clock.advance(20_000);
    assert.equal(monitor.state, "up");
    ping.path(A, { blackhole: true });
    ping.path(B, { blackhole: true });
    const at = clock.now();
    await settle(clock, monitor.burst("test"));
    const down = transitions.find((t) => t.to === "down");
    assert.ok(down, `not down: ${transitions.map((t) => t.reason).join("; ")}`);
    const tookMs = down.time - 1_700_000_000_000 - at;
    // 3 probes 20 ms apart, the last judged at its 50 ms RTO floor, plus ping's kill margin.
    assert.ok(tookMs <= 700, `down ${tookMs} ms after the burst began`);
    assert.match(down.reason, /burst: no answer within 50 ms/);
    // A burst probe is a separate ping with the uplink's mark and -c.
    const burst = ping.processes.find((p) => p.args.includes("-c"));
    assert.ok(burst);
    assert.equal(burst.mark, 0x100);
  });

  it("on a lossy uplink, a burst sends as many probes per target as failed rounds would take it down now", async () => {
    const { clock, ping, monitor, transitions } = monitorWithPing();
    ping.path(A, { rttMs: 5, lossPct: 20 });
    ping.path(B, { rttMs: 5, lossPct: 20 });
    monitor.start();
    clock.advance(120_000);
    assert.ok(monitor.state !== "down", transitions.map((t) => t.reason).join("; "));
    const needed = monitor.snapshot().failedRoundsForDown;
    assert.ok(needed > 3, `the loss-aware down count is ${needed}, want more than down (3)`);
    ping.path(A, { blackhole: true });
    ping.path(B, { blackhole: true });
    await settle(clock, monitor.burst("test"));
    const down = transitions.find((t) => t.to === "down");
    assert.ok(down, `not down: ${transitions.map((t) => t.reason).join("; ")}`);
    assert.match(down.reason, /burst: no answer/);
    assert.match(
      down.reason,
      new RegExp(`^${needed} rounds failed: .*\\(${needed} needed on this lossy uplink`),
    );
    const burst = ping.processes.find((p) => p.args.includes("-c"));
    assert.ok(burst);
    assert.equal(burst.args[burst.args.indexOf("-c") + 1], String(needed));
  });

  it("on a healthy uplink a burst changes nothing", async () => {
    const { clock, monitor, transitions } = monitorWithPing();
    monitor.start();
    clock.advance(20_000);
    await settle(clock, monitor.burst("test"));
    clock.advance(5000);
    assert.deepEqual(
      transitions.map((t) => t.to),
      ["up"],
    );
  });

  it("does nothing before the uplink is up, and one burst runs at a time", async () => {
    const { clock, ping, monitor } = monitorWithPing();
    monitor.start();
    await monitor.burst("too early");
    assert.equal(ping.processes.filter((p) => p.args.includes("-c")).length, 0);
    clock.advance(20_000);
    const first = monitor.burst("one");
    const second = monitor.burst("two");
    assert.equal(ping.processes.filter((p) => p.args.includes("-c")).length, 2);
    await settle(
      clock,
      Promise.all([first, second]).then(() => undefined),
    );
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../fakes/clock.js";
import { FakePing, seededRandom } from "../fakes/health.js";
import type { StateChange, UplinkState } from "../../src/health/machine.js";
import { UplinkMonitor, type UplinkMonitorOptions } from "../../src/health/monitor.js";
import { resolveHealthSettings, type HealthTuningInput } from "../../src/health/options.js";
import type { ProbeSink, ProbeSource, Prober } from "../../src/health/prober.js";
import type { RoundResult } from "../../src/health/rounds.js";

const A = "198.51.100.1";
const B = "203.0.113.1";

interface Setup {
  interval?: number;
  timeout?: number;
  targets?: string[];
  reliability?: number;
  seed?: number;
  tuning?: HealthTuningInput;
  extra?: Partial<UplinkMonitorOptions>;
}

function setup(options: Setup = {}) {
  const clock = new ManualClock(0, 1_700_000_000_000);
  const ping = new FakePing(clock, { random: seededRandom(options.seed ?? 1) });
  const targets = options.targets ?? [A, B];
  for (const t of targets) ping.path(t, { rttMs: 20 });
  const transitions: StateChange[] = [];
  const rounds: RoundResult[] = [];
  const monitor = new UplinkMonitor({
    uplink: "isp1",
    settings: resolveHealthSettings(
      {
        targets,
        interval: options.interval ?? 200,
        timeout: options.timeout ?? 500,
        down: 3,
        up: 5,
        reliability: options.reliability ?? 1,
      },
      options.tuning,
    ),
    source: { mark: 0x100, address: "100.64.1.2" },
    clock,
    spawner: ping.spawner,
    onTransition: (t) => transitions.push(t),
    onRound: (r) => rounds.push(r),
    ...options.extra,
  });
  const all = (path: Parameters<FakePing["path"]>[1]) => {
    for (const t of targets) ping.path(t, path);
  };
  const since = (from: number) => transitions.filter((t) => t.time - 1_700_000_000_000 >= from);
  return { clock, ping, monitor, transitions, rounds, all, since };
}

/** The state, read anew (not narrowed by earlier assertions). */
function stateOf(monitor: UplinkMonitor): UplinkState {
  return monitor.state;
}

/** Runs `minutes` of simulated time with `lossPct` random loss on every target. */
function simulate(lossPct: number, interval: number, timeout: number, seed: number, minutes = 10) {
  const s = setup({ interval, timeout, seed });
  s.all({ lossPct, rttMs: 20 });
  s.monitor.start();
  s.clock.advance(minutes * 60_000);
  return s;
}

describe("uplink monitor: detection", () => {
  it("a blackholed uplink is down `timeout + 2 intervals` after its first lost probe was sent (200 ms / 500 ms / down 3: ~1 s)", () => {
    const { clock, monitor, all, transitions, ping } = setup();
    monitor.start();
    clock.advance(10_000);
    assert.equal(monitor.state, "up");
    const sends = ping.processes.map((p) => p.sent);
    all({ blackhole: true });
    const outageAt = clock.now();
    while (stateOf(monitor) === "up" && clock.now() < outageAt + 5000) clock.advance(1);
    const detected = clock.now() - outageAt;
    // First lost probe: the next send after the outage (within one ping period,
    // 204 ms), then 500 ms timeout + 2 more periods.
    assert.ok(detected >= 908 && detected <= 1112, `detected after ${detected} ms`);
    assert.ok(ping.processes.every((p, i) => p.sent > (sends[i] ?? 0)));
    assert.equal(transitions.at(-1)?.reason, `3 rounds failed: ${A} lost 3/3, ${B} lost 3/3`);
  });

  it("a healed uplink is up again after 5 passed rounds (~1 s)", () => {
    const { clock, monitor, all } = setup();
    monitor.start();
    clock.advance(5000);
    all({ blackhole: true });
    clock.advance(5000);
    assert.equal(monitor.state, "down");
    all({ rttMs: 20 });
    const healedAt = clock.now();
    while (stateOf(monitor) === "down" && clock.now() < healedAt + 5000) clock.advance(1);
    const recovered = clock.now() - healedAt;
    // 5 rounds of ~204 ms (ping's period), one more when a drift gap voids one.
    assert.ok(recovered >= 800 && recovered <= 1300, `up after ${recovered} ms`);
  });

  it("one dead target does not take the uplink down with reliability 1", () => {
    const { clock, monitor, ping, transitions } = setup();
    monitor.start();
    ping.path(A, { blackhole: true });
    clock.advance(60_000);
    assert.equal(monitor.state, "up");
    assert.equal(transitions.length, 1);
  });

  it("ping failing to start (no route) takes the uplink down and it recovers once ping runs", () => {
    const { clock, monitor, all } = setup();
    all({ connectError: "Network is unreachable" });
    monitor.start();
    clock.advance(3000);
    assert.equal(monitor.state, "down");
    assert.match(monitor.snapshot().targets[0]?.target ?? "", /198\.51\.100\.1/);
    all({ rttMs: 20 });
    clock.advance(15_000);
    assert.equal(monitor.state, "up");
  });
});

describe("uplink monitor: no false alarms under random loss (seeded, 10 simulated minutes)", () => {
  for (const seed of [1, 2, 3]) {
    it(`5 % random loss at 200 ms gives no transition after start (seed ${seed})`, () => {
      const { transitions } = simulate(5, 200, 500, seed);
      assert.deepEqual(
        transitions.map((t) => `${t.from}->${t.to}`),
        ["init->up"],
      );
    });
    it(`10 % random loss at 200 ms gives no transition after start (seed ${seed})`, () => {
      const { transitions } = simulate(10, 200, 500, seed);
      assert.deepEqual(
        transitions.map((t) => `${t.from}->${t.to}`),
        ["init->up"],
      );
    });
    it(`30 % random loss at 500 ms ends up degraded, never down (seed ${seed})`, () => {
      const { transitions, monitor } = simulate(30, 500, 1000, seed);
      assert.deepEqual(
        transitions.map((t) => `${t.from}->${t.to}`),
        ["init->up", "up->degraded"],
      );
      assert.equal(monitor.state, "degraded");
      const degradedAfter = (transitions[1]?.time ?? 0) - 1_700_000_000_000;
      assert.ok(degradedAfter < 60_000, `degraded after ${degradedAfter} ms`);
    });
  }
});

describe("uplink monitor: inputs from the daemon", () => {
  it("carrier lost takes the uplink down at once; carrier back needs 5 passed rounds", () => {
    const { clock, monitor, transitions } = setup();
    monitor.start();
    clock.advance(2000);
    monitor.carrier(false);
    assert.equal(monitor.state, "down");
    assert.equal(transitions.at(-1)?.reason, "carrier lost");
    clock.advance(5000);
    assert.equal(monitor.state, "down", "passing rounds do not count without carrier");
    monitor.carrier(true);
    clock.advance(700);
    assert.equal(monitor.state, "down");
    clock.advance(500);
    assert.equal(monitor.state, "up");
  });

  it("carrier back restarts a ping that waits for its backoff", () => {
    const { clock, monitor, all, ping } = setup();
    all({ connectError: "Network is unreachable" });
    monitor.start();
    clock.advance(30_000);
    monitor.carrier(false);
    const before = ping.processes.length;
    all({ rttMs: 20 });
    monitor.carrier(true);
    clock.advance(1);
    assert.equal(ping.processes.length, before + 2, "one new ping per target at once");
  });

  it("a new address restarts a ping that waits for its backoff (DHCP lease back)", () => {
    const { clock, monitor, all, ping } = setup();
    all({ connectError: "Network is unreachable" });
    monitor.start();
    clock.advance(30_000);
    const before = ping.processes.length;
    all({ rttMs: 20 });
    monitor.setSource({ mark: 0x100, address: "100.64.1.77" });
    clock.advance(1);
    assert.equal(ping.processes.length, before + 2);
    clock.advance(2000);
    assert.equal(monitor.state, "up");
  });

  it("a new fwmark restarts ping with it without a transition", async () => {
    const { clock, monitor, ping, transitions } = setup();
    monitor.start();
    clock.advance(2000);
    monitor.setSource({ mark: 0x200, address: "100.64.1.9" });
    await new Promise(setImmediate);
    clock.advance(2000);
    assert.deepEqual(
      ping.alive.map((p) => p.mark),
      [0x200, 0x200],
    );
    assert.equal(transitions.length, 1);
    assert.deepEqual(monitor.snapshot().source, { mark: 0x200, address: "100.64.1.9" });
  });

  it("a disabled uplink ignores outages until enabled", () => {
    const { clock, monitor, all, transitions } = setup();
    monitor.start();
    clock.advance(1000);
    monitor.disable("maintenance");
    all({ blackhole: true });
    clock.advance(5000);
    assert.equal(monitor.state, "disabled");
    all({ rttMs: 20 });
    monitor.enable();
    assert.equal(monitor.state, "init");
    clock.advance(1000);
    assert.equal(monitor.state, "up");
    assert.deepEqual(
      transitions.map((t) => t.to),
      ["up", "disabled", "init", "up"],
    );
  });

  it("a throwing transition listener does not stop the health checks", () => {
    const errors: unknown[] = [];
    const { clock, monitor, all } = setup({
      extra: {
        onTransition: () => {
          throw new Error("notifier broke");
        },
        onError: (e) => errors.push(e),
      },
    });
    monitor.start();
    clock.advance(1000);
    all({ blackhole: true });
    clock.advance(3000);
    assert.equal(monitor.state, "down");
    assert.equal(errors.length, 2);
  });

  it("stop ends every ping and every timer", async () => {
    const { clock, monitor, ping } = setup();
    monitor.start();
    clock.advance(1000);
    await monitor.stop();
    assert.equal(ping.alive.length, 0);
    assert.equal(clock.pending, 0);
  });
});

describe("uplink monitor: snapshot", () => {
  it("shows state, reason, streaks and per-target loss, RTT and jitter", () => {
    const { clock, monitor, ping } = setup();
    monitor.start();
    ping.path(A, { rttMs: 10 });
    ping.path(B, { lossPct: 50, rttMs: 30 });
    clock.advance(30_000);
    const s = monitor.snapshot();
    assert.equal(s.uplink, "isp1");
    assert.equal(s.state, "up");
    assert.equal(s.carrier, true);
    assert.equal(s.failedRoundsForDown, 3);
    assert.equal(s.passedRoundsForUp, 5);
    const [a, b] = s.targets;
    assert.ok(a && b && s.targets.length === 2);
    assert.equal(a.target, A);
    assert.equal(a.type, "icmp");
    assert.equal(a.lossPct, 0);
    assert.ok((b.lossPct ?? 0) > 30);
    assert.equal(s.lossPct, 0, "with reliability 1 the best target counts");
    assert.equal(s.rttMs, 10);
    assert.ok(s.rounds > 140 && s.roundsPassed === s.rounds - s.roundsVoid);
  });

  it("recent loss shows a blackhole at once, where the window loss still averages it in", () => {
    const { clock, monitor, all } = setup();
    monitor.start();
    clock.advance(30_000);
    assert.equal(monitor.snapshot().recentLossPct, 0);
    all({ blackhole: true });
    // 2 s: the last 3 resolved rounds (sent 500 ms + 3 x 200 ms before now) are all lost.
    clock.advance(2000);
    const s = monitor.snapshot();
    assert.equal(s.recentLossPct, 100);
    assert.ok(s.lossPct !== null && s.lossPct > 0 && s.lossPct < 50, `window loss ${s.lossPct}`);
    all({ rttMs: 20 });
    clock.advance(2000);
    assert.equal(monitor.snapshot().recentLossPct, 0);
  });
});

/** An on-demand prober answering (or not) at once, controlled by the test. */
class FakeProber implements Prober {
  readonly schedule = "on-demand" as const;
  answering = true;
  probes: number[] = [];
  sources: ProbeSource[] = [];
  #sink: ProbeSink | undefined;
  constructor(
    readonly target: string,
    private readonly clock: ManualClock,
  ) {}
  start(sink: ProbeSink): void {
    this.#sink = sink;
  }
  probe(seq: number): void {
    this.probes.push(seq);
    const at = this.clock.now();
    this.#sink?.sent(seq, at);
    if (this.answering) {
      this.clock.setTimeout(() => this.#sink?.answered(seq, this.clock.now()), 15);
    }
  }
  setSource(source: ProbeSource): void {
    this.sources.push(source);
  }
  nudge(): void {}
  stop(): Promise<void> {
    return Promise.resolve();
  }
}

describe("uplink monitor: on-demand probes (TCP, HTTP, DNS)", () => {
  it("probes each target once per round with the round number, and detects an outage in timeout + 2 intervals", () => {
    const clock = new ManualClock();
    const probers: FakeProber[] = [];
    const monitor = new UplinkMonitor({
      uplink: "isp2",
      settings: resolveHealthSettings(
        { targets: [], interval: 200, timeout: 500, down: 3, up: 5, reliability: 1 },
        {},
        [
          { type: "tcp", host: A, port: 443 },
          { type: "http", url: `http://${B}/` },
        ],
      ),
      source: { address: "100.64.2.2" },
      clock,
      createProber: (spec) => {
        const p = new FakeProber(
          spec.type === "tcp" ? `tcp:${spec.host}:${spec.port}` : "http",
          clock,
        );
        probers.push(p);
        return p;
      },
    });
    monitor.start();
    clock.advance(1000);
    const [tcp] = probers;
    assert.ok(tcp);
    assert.deepEqual(tcp.probes, [0, 1, 2, 3, 4, 5]);
    assert.equal(monitor.state, "up");
    clock.advance(9000);
    for (const p of probers) p.answering = false;
    const firstLostSend = clock.now() + 200; // round 50 was probed at 10000 and will answer
    while (stateOf(monitor) === "up" && clock.now() < 20_000) clock.advance(1);
    assert.equal(clock.now() - firstLostSend, 500 + 2 * 200);
    monitor.setSource({ address: "100.64.2.9" });
    assert.deepEqual(tcp.sources, [{ address: "100.64.2.9" }]);
  });
});

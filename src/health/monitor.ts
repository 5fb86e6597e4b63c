/**
 * `UplinkMonitor`: the health checks of one uplink. It runs one prober per
 * target, keeps each target's window, ticks rounds every interval, decides
 * them, feeds the state machine, and reports transitions; the daemon feeds
 * it carrier changes, source changes (DHCP/PPP) and operator disable/enable.
 *
 *     const monitor = new UplinkMonitor({
 *       uplink: "isp1",
 *       settings: resolveHealthSettings(uplinkHealth(config, uplink)),
 *       source: { mark: 0x100, address: "100.64.1.2" },
 *       onTransition: (t) => policy.update(t.uplink, t.to),
 *     });
 *     monitor.start();
 *     monitor.setSource({ mark: 0x100, address: "100.64.1.7" }); // DHCP renew
 *     monitor.carrier(false);                                   // link watcher
 *     monitor.snapshot();                                       // status, metrics
 *     await monitor.stop();
 *
 * Internals are also published on `node:diagnostics_channel`:
 * `uplinkd:health:transition` (StateChange), `uplinkd:health:round`
 * ({ uplink, family, round: RoundResult }), `uplinkd:health:note`
 * ({ uplink, family, message }); `family` is 4 or 6.
 */
import { channel } from "node:diagnostics_channel";
import { systemClock, type Clock, type TimerHandle } from "../clock.js";
import { pingBurst } from "./burst.js";
import { DnsProber } from "./dns.js";
import { HealthError } from "./errors.js";
import { HttpProber } from "./http.js";
import { UplinkStateMachine, type StateChange, type UplinkState } from "./machine.js";
import type { Family } from "../kernel/types.js";
import type { HealthSettings } from "./options.js";
import { IcmpProber } from "./ping.js";
import { nodeSpawner, type ProcessSpawner } from "../process/spawn.js";
import type { ProbeSink, ProbeSource, ProbeSpec, Prober } from "./prober.js";
import { RoundTracker, type RoundResult, type TargetRoundResult } from "./rounds.js";
import { uplinkStats, type TargetStats, type UplinkStats } from "./stats.js";
import { TcpProber } from "./tcp.js";
import { ProbeWindow } from "./window.js";

const transitionChannel = channel("uplinkd:health:transition");
const roundChannel = channel("uplinkd:health:round");
const noteChannel = channel("uplinkd:health:note");

/** What a prober factory gets besides the probe definition. */
export interface ProberContext {
  uplink: string;
  intervalMs: number;
  timeoutMs: number;
  source: ProbeSource;
  clock: Clock;
  spawner: ProcessSpawner;
}

/**
 * The default prober factory: ICMP -> IcmpProber (iputils ping), TCP ->
 * TcpProber, HTTP -> HttpProber, DNS -> DnsProber.
 *
 * @throws {HealthError} for an invalid definition (e.g. a bad HTTP URL).
 */
export function createProber(spec: ProbeSpec, context: ProberContext): Prober {
  const common = { timeoutMs: context.timeoutMs, source: context.source, clock: context.clock };
  switch (spec.type) {
    case "icmp":
      return new IcmpProber({
        host: spec.host,
        intervalMs: context.intervalMs,
        timeoutMs: context.timeoutMs,
        source: context.source,
        clock: context.clock,
        spawner: context.spawner,
      });
    case "tcp":
      return new TcpProber({ ...common, host: spec.host, port: spec.port });
    case "http":
      return new HttpProber({
        ...common,
        url: spec.url,
        ...(spec.expectStatus ? { expectStatus: spec.expectStatus } : {}),
      });
    case "dns":
      return new DnsProber({
        ...common,
        server: spec.server,
        name: spec.name,
        ...(spec.expect ? { expect: spec.expect } : {}),
      });
  }
}

/** Options of an {@link UplinkMonitor}. */
export interface UplinkMonitorOptions {
  /** The uplink's name (config `uplinks[].name`). */
  uplink: string;
  /** The address family this monitor judges (default 4); published with rounds and notes. */
  family?: Family;
  /** Complete settings, from `resolveHealthSettings`. */
  settings: HealthSettings;
  /** fwmark and address the probes use; may be incomplete and change later (`setSource`). */
  source?: ProbeSource;
  /** Default: the system clock. */
  clock?: Clock;
  /** Default: child_process.spawn. */
  spawner?: ProcessSpawner;
  /** Default: {@link createProber}. */
  createProber?: (spec: ProbeSpec, context: ProberContext) => Prober;
  /** Called on every transition. A throwing listener is reported to `onError`, nothing else. */
  onTransition?: (transition: StateChange) => void;
  /** Called with every decided round (for metrics, debugging). */
  onRound?: (round: RoundResult) => void;
  /** Called with prober messages (ping exited, no fwmark yet...). */
  onNote?: (message: string) => void;
  /** Called when a listener throws. Default: ignore. */
  onError?: (error: unknown) => void;
}

/** One target in a snapshot. */
export type TargetSnapshot = TargetStats & {
  /** Probe kind. */
  type: ProbeSpec["type"];
  /** Timeout (ms) of a probe sent now: fixed, or the target's RTO with `timeout: auto`. */
  timeoutMs: number;
};

/** The uplink's health as the control API and metrics show it. Times: wall ms since the epoch. */
export interface UplinkSnapshot {
  uplink: string;
  state: UplinkState;
  /** Since when (wall ms) the uplink is in `state`. */
  since: number;
  /** Why it is in `state`. */
  reason: string;
  carrier: boolean;
  source: ProbeSource;
  /** Failed rounds in a row so far, and how many make it down now. */
  failStreak: number;
  failedRoundsForDown: number;
  /** Passed rounds in a row so far, and how many bring it up. */
  passStreak: number;
  passedRoundsForUp: number;
  /** ms left in a flap hold; 0 when none. */
  holdRemainingMs: number;
  /** Uplink loss (%), RTT and jitter (ms) over the window (r-th best target; see UplinkStats). */
  lossPct: number | null;
  /**
   * Uplink loss (%) over the last {@link RECENT_ROUNDS} rounds whose probes
   * have resolved (sent between `now - timeout - RECENT_ROUNDS * interval`
   * and now; r-th best target): what the link does now, where `lossPct`
   * still averages the window. Null before such a probe resolved.
   */
  recentLossPct: number | null;
  rttMs: number | null;
  jitterMs: number | null;
  targets: TargetSnapshot[];
  /** Rounds decided since start, how many passed, and how many were void (drift gaps). */
  rounds: number;
  roundsPassed: number;
  roundsVoid: number;
}

/** Rounds that {@link UplinkSnapshot.recentLossPct} covers. */
export const RECENT_ROUNDS = 3;

interface Target {
  spec: ProbeSpec;
  prober: Prober;
  window: ProbeWindow;
}

/**
 * The health checks of one uplink. The constructor only prepares; `start`
 * begins probing; `stop` ends it.
 */
export class UplinkMonitor {
  readonly uplink: string;
  readonly settings: HealthSettings;
  readonly #o: UplinkMonitorOptions;
  readonly #clock: Clock;
  readonly #targets: Target[];
  readonly #tracker: RoundTracker;
  readonly #machine: UplinkStateMachine;
  #source: ProbeSource;
  #started = false;
  #stopped = false;
  #t0 = 0;
  #nextRound = 0;
  #tickTimer: TimerHandle | undefined;
  #wakeTimer: TimerHandle | undefined;
  #wakeAt: number | undefined;
  #rounds = 0;
  #roundsPassed = 0;
  #roundsVoid = 0;
  #bursting = false;
  #bursts = 0;

  /** @throws {HealthError} when a probe definition is invalid. */
  constructor(options: UplinkMonitorOptions) {
    this.#o = options;
    this.uplink = options.uplink;
    this.settings = options.settings;
    this.#clock = options.clock ?? systemClock;
    this.#source = { ...(options.source ?? {}) };
    const s = options.settings;
    const windowSize = Math.max(s.tuning.windowSize, Math.ceil(s.timeoutMs / s.intervalMs) + 4);
    const context: ProberContext = {
      uplink: options.uplink,
      intervalMs: s.intervalMs,
      timeoutMs: s.timeoutMs,
      source: this.#source,
      clock: this.#clock,
      spawner: options.spawner ?? nodeSpawner,
    };
    const factory = options.createProber ?? createProber;
    this.#targets = s.probes.map((spec) => ({
      spec,
      prober: factory(spec, context),
      window: new ProbeWindow({
        size: windowSize,
        timeoutMs: s.timeoutMs,
        ...(s.adaptiveTimeout ? { adaptive: s.adaptiveTimeout } : {}),
      }),
    }));
    const names = new Set<string>();
    for (const t of this.#targets) {
      if (names.has(t.prober.target)) {
        throw new HealthError(`uplink ${options.uplink}: target ${t.prober.target} appears twice`);
      }
      names.add(t.prober.target);
    }
    this.#tracker = new RoundTracker({
      targets: this.#targets.map((t) => ({
        target: t.prober.target,
        window: t.window,
        schedule: t.prober.schedule,
      })),
      intervalMs: s.intervalMs,
      timeoutMs: s.timeoutMs,
      reliability: s.reliability,
    });
    this.#machine = new UplinkStateMachine({
      uplink: options.uplink,
      down: s.down,
      up: s.up,
      reliability: s.reliability,
      intervalMs: s.intervalMs,
      quality: s.tuning.quality,
      flap: s.tuning.flap,
      downFalseAlarm: s.tuning.downFalseAlarm,
      downStretchMax: s.tuning.downStretchMax,
      clock: this.#clock,
    });
  }

  /** The current state. */
  get state(): UplinkState {
    return this.#machine.state;
  }

  /**
   * Starts the probers and the round ticks (first round at once).
   *
   * @throws {HealthError} when started twice or after stop.
   */
  start(): void {
    if (this.#started) throw new HealthError(`monitor of ${this.uplink} already started`);
    this.#started = true;
    for (const target of this.#targets) target.prober.start(this.#sink(target));
    this.#t0 = this.#clock.now();
    this.#nextRound = 0;
    this.#tick();
  }

  /** Stops ticking and probing; resolves once every prober released its sockets/processes. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#tickTimer !== undefined) this.#clock.clearTimeout(this.#tickTimer);
    if (this.#wakeTimer !== undefined) this.#clock.clearTimeout(this.#wakeTimer);
    this.#tickTimer = undefined;
    this.#wakeTimer = undefined;
    this.#tracker.clear();
    await Promise.all(this.#targets.map((t) => t.prober.stop()));
  }

  /**
   * The uplink's fwmark or address changed (DHCP, PPP reconnect): probes
   * use the new one from now on, without a restart of the monitor. ICMP
   * probers restart ping when the mark changes, and a ping waiting to be
   * restarted (it exits at once while the uplink has no route) retries now.
   */
  setSource(source: ProbeSource): void {
    this.#source = { ...source };
    for (const target of this.#targets) {
      target.prober.setSource(this.#source);
      target.prober.nudge();
    }
  }

  /**
   * Carrier of the uplink's interface: `false` -> down at once ("carrier
   * lost", or `reason`); `true` -> recovery starts (`up` passed rounds) and
   * probers that wait for a restart retry at once.
   */
  carrier(up: boolean, reason?: string): void {
    if (up) {
      this.#emit(this.#machine.carrierBack());
      for (const target of this.#targets) target.prober.nudge();
    } else {
      this.#emit(this.#machine.carrierLost(this.#qualityStats(), reason));
    }
  }

  /** Operator disable: state `disabled`; probes go on but change nothing until `enable`. */
  disable(reason?: string): void {
    this.#emit(this.#machine.disable(reason, this.#qualityStats()));
  }

  /** Operator enable: back to `init` (or `down` without carrier). */
  enable(): void {
    this.#emit(this.#machine.enable(this.#qualityStats()));
  }

  /**
   * Probe the uplink at once (a suspicion, e.g. from the passive signal):
   * each ICMP target gets as many echo requests, 20 ms apart, as failed
   * rounds would take it down now (`down`, or more on a lossy uplink: the
   * state machine's loss-aware count), each judged by its target's timeout
   * (the RTO with `timeout: auto`). Burst probe k of every target makes
   * one round, fed to the state machine like the regular rounds: a burst
   * whose rounds all fail brings the uplink to its down count, one that
   * passes changes nothing. Only while the uplink is
   * `up` or `degraded`, one burst at a time, and only with ICMP targets.
   *
   * @returns a promise that resolves once the burst's rounds were fed
   *   (at once when no burst was started).
   */
  burst(reason: string): Promise<void> {
    const state = this.#machine.state;
    const mark = this.#source.mark;
    const icmp = this.#targets.filter((t) => t.spec.type === "icmp");
    if (
      !this.#started ||
      this.#stopped ||
      this.#bursting ||
      (state !== "up" && state !== "degraded") ||
      mark === undefined ||
      icmp.length === 0
    ) {
      return Promise.resolve();
    }
    this.#bursting = true;
    this.#bursts++;
    // At least `down`: the loss-aware count never goes below it.
    const count = this.#machine.failedRoundsForDown;
    const spawner = this.#o.spawner ?? nodeSpawner;
    const timeouts = icmp.map((t) => Math.min(this.settings.timeoutMs, t.window.currentTimeoutMs));
    this.#sink(icmp[0] as Target).note(`probe burst (${count} per target): ${reason}`);
    return Promise.all(
      icmp.map((t, i) =>
        pingBurst({
          host: t.prober.target,
          mark,
          count,
          timeoutMs: timeouts[i] ?? this.settings.timeoutMs,
          clock: this.#clock,
          spawner,
        }),
      ),
    )
      .then((results) => {
        if (this.#stopped) return;
        const needed = Math.min(this.settings.reliability, icmp.length);
        const now = this.#clock.now();
        for (let k = 0; k < count; k++) {
          const targets: TargetRoundResult[] = icmp.map((t, i) => {
            const rtt = results[i]?.[k] ?? null;
            return {
              target: t.prober.target,
              answered: rtt !== null,
              status: rtt === null ? "failed" : "answered",
              rttMs: rtt,
              error:
                rtt === null ? `burst: no answer within ${Math.round(timeouts[i] ?? 0)} ms` : null,
            };
          });
          const answered = targets.filter((t) => t.answered).length;
          const passed = answered >= needed;
          const round: RoundResult = {
            round: -this.#bursts,
            at: now,
            decidedAt: now,
            outcome: passed ? "passed" : "failed",
            passed,
            answered,
            needed,
            targets,
          };
          this.#call(() => this.#o.onRound?.(round));
          this.#emit(this.#machine.round(round, this.#qualityStats()));
        }
      })
      .finally(() => {
        this.#bursting = false;
      });
  }

  /** The uplink's health now. */
  snapshot(): UplinkSnapshot {
    const m = this.#machine.snapshot();
    const now = this.#clock.now();
    const targets = this.#targets.map((t) => ({
      ...t.window.stats(now),
      target: t.prober.target,
      type: t.spec.type,
      timeoutMs: Math.min(this.settings.timeoutMs, t.window.currentTimeoutMs),
    }));
    const overall = uplinkStats(targets, this.settings.reliability);
    const since = now - this.settings.timeoutMs - RECENT_ROUNDS * this.settings.intervalMs;
    const recent = uplinkStats(
      this.#targets.map((t) => ({ ...t.window.stats(now, { since }), target: t.prober.target })),
      this.settings.reliability,
    );
    return {
      uplink: this.uplink,
      state: m.state,
      since: m.since,
      reason: m.reason,
      carrier: m.carrier,
      source: { ...this.#source },
      failStreak: m.failStreak,
      failedRoundsForDown: m.failedRoundsForDown,
      passStreak: m.passStreak,
      passedRoundsForUp: this.settings.up,
      holdRemainingMs: m.holdRemainingMs,
      lossPct: overall.lossPct,
      recentLossPct: recent.lossPct,
      rttMs: overall.rttMs,
      jitterMs: overall.jitterMs,
      targets,
      rounds: this.#rounds,
      roundsPassed: this.#roundsPassed,
      roundsVoid: this.#roundsVoid,
    };
  }

  #sink(target: Target): ProbeSink {
    return {
      sent: (seq, at, options) => {
        target.window.sent(seq, at, options);
      },
      answered: (seq, at, rttMs, timings) => {
        target.window.answered(seq, at, rttMs, timings);
        this.#evaluate();
      },
      failed: (seq, at, reason) => {
        target.window.failed(seq, at, reason);
        this.#evaluate();
      },
      note: (message) => {
        this.#call(() => this.#o.onNote?.(message));
        if (noteChannel.hasSubscribers) {
          noteChannel.publish({ uplink: this.uplink, family: this.#o.family ?? 4, message });
        }
      },
    };
  }

  /** Opens the due round, probes on-demand targets, schedules the next tick. */
  #tick(): void {
    if (this.#stopped) return;
    const interval = this.settings.intervalMs;
    const now = this.#clock.now();
    // Ticks missed while the event loop was blocked are skipped, not replayed.
    const due = Math.max(this.#nextRound, Math.floor((now - this.#t0) / interval + 1e-9));
    const at = this.#t0 + due * interval;
    this.#tracker.open(due, at);
    for (const target of this.#targets) {
      if (target.prober.schedule === "on-demand") target.prober.probe(due);
    }
    this.#nextRound = due + 1;
    this.#tickTimer = this.#clock.setTimeout(
      () => {
        this.#tick();
      },
      this.#t0 + this.#nextRound * interval - now,
    );
    this.#evaluate();
  }

  #evaluate(): void {
    if (this.#stopped) return;
    const now = this.#clock.now();
    for (const round of this.#tracker.evaluate(now)) {
      this.#rounds++;
      if (round.passed) this.#roundsPassed++;
      if (round.outcome === "void") this.#roundsVoid++;
      this.#call(() => this.#o.onRound?.(round));
      if (roundChannel.hasSubscribers) {
        roundChannel.publish({ uplink: this.uplink, family: this.#o.family ?? 4, round });
      }
      this.#emit(this.#machine.round(round, this.#qualityStats()));
    }
    this.#armWake(this.#tracker.wakeAt);
  }

  #armWake(at: number | undefined): void {
    if (at === this.#wakeAt) return;
    if (this.#wakeTimer !== undefined) this.#clock.clearTimeout(this.#wakeTimer);
    this.#wakeTimer = undefined;
    this.#wakeAt = at;
    if (at === undefined) return;
    this.#wakeTimer = this.#clock.setTimeout(() => {
      this.#wakeTimer = undefined;
      this.#wakeAt = undefined;
      this.#evaluate();
    }, at - this.#clock.now());
  }

  /** Statistics over the probes sent since the machine's quality start. */
  #qualityStats(): UplinkStats {
    const now = this.#clock.now();
    const since = this.#machine.qualitySince;
    const targets = this.#targets.map((t) => ({
      ...t.window.stats(now, { since }),
      target: t.prober.target,
    }));
    return uplinkStats(targets, this.settings.reliability, this.settings.tuning.minQualitySamples);
  }

  #emit(transitions: readonly StateChange[]): void {
    for (const transition of transitions) {
      this.#call(() => this.#o.onTransition?.(transition));
      if (transitionChannel.hasSubscribers) transitionChannel.publish(transition);
    }
  }

  #call(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      try {
        this.#o.onError?.(error);
      } catch {
        // A failing error handler must not stop the health checks either.
      }
    }
  }
}

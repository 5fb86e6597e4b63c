/**
 * The per-uplink health state machine, pure: fed with decided rounds (and
 * the uplink's statistics at that time), carrier events and operator
 * disable/enable; reads only the injected clock; returns the transitions it
 * made. All hysteresis lives here.
 *
 *     init ──first round passed──▶ up ◀──quality recovered── degraded
 *       │                           │ ──quality failed──────▶   │
 *       │                           ▼                           ▼
 *       └──`down` failed rounds──▶ down ◀──`down`+ failed rounds─┘
 *                                   │ ──`up` passed rounds (no flap hold)──▶ up
 *     any ──disable──▶ disabled ──enable──▶ init (or down without carrier)
 *     any but disabled ──carrier lost──▶ down
 *
 * Rules:
 * - init -> up on the first passed round: an uplink is presumed usable when
 *   uplinkd starts, so a restart does not hold traffic back for `up` rounds.
 *   init -> down after `down` failed rounds in a row.
 * - up/degraded -> down after `down` failed rounds in a row, or more on a
 *   lossy uplink (loss-aware: see `HealthTuning.downFalseAlarm`), at most
 *   `down * downStretchMax`.
 * - down -> up after `up` passed rounds in a row, with carrier, and not
 *   within a flap hold (quality is judged from then on, on new probes only).
 * - up -> degraded when loss >= lossFail % or mean RTT >= rttFail ms after
 *   `down` rounds in a row; degraded -> up when loss < lossRecover % and
 *   mean RTT < rttRecover ms after `up` rounds in a row. Judged on probes
 *   sent since the uplink last came up, once the targets have
 *   `minQualitySamples` resolved probes (the monitor passes null loss/RTT
 *   before), so the losses of an outage do not make a recovered uplink look
 *   degraded.
 * - flap damping: the `flap.count`-th down (from up or degraded) within
 *   `flap.periodMs` holds the uplink down for `flap.holdMs`, even if rounds
 *   pass; passed rounds during the hold still count towards `up`.
 * - carrier lost -> down at once; carrier back starts recovery (`up` passed
 *   rounds); rounds are ignored while the carrier is lost, and so are rounds
 *   whose probes may have been sent before the carrier came back.
 * - disabled: rounds and carrier change nothing until enabled; enable goes to
 *   init (or down when the carrier is lost) and forgets streaks, flap
 *   history and hold; rounds whose probes may predate the enable are ignored.
 */
import type { Clock } from "../clock.js";
import type { UplinkState } from "../uplink-health.js";
import type { FlapDamping, QualityThresholds } from "./options.js";
import type { RoundResult } from "./rounds.js";
import { requiredFailedRounds, roundFailProbability, type UplinkStats } from "./stats.js";

export type { UplinkState };

/**
 * A change of state as the state machine sees it (monotonic stats attached);
 * ./adapter.ts turns it into the daemon's `Transition` (../uplink-health.ts).
 */
export interface StateChange {
  /** When, in ms since the epoch (wall clock). */
  time: number;
  uplink: string;
  from: UplinkState;
  to: UplinkState;
  /** Why, for humans: `3 rounds failed: 198.51.100.1 lost 3/3, 203.0.113.1 lost 3/3`. */
  reason: string;
  /** The uplink's statistics when it happened. */
  stats: UplinkStats;
}

/** Options of an {@link UplinkStateMachine}. */
export interface StateMachineOptions {
  uplink: string;
  /** Failed rounds in a row -> down (minimum). */
  down: number;
  /** Passed rounds in a row -> up (from down). */
  up: number;
  /** Targets that must answer in a round (for the loss-aware down count). */
  reliability: number;
  /** Round interval in ms (quality windows start one interval before a round's tick). */
  intervalMs: number;
  quality: QualityThresholds;
  flap: FlapDamping;
  /** See `HealthTuning.downFalseAlarm`. */
  downFalseAlarm: number;
  /** See `HealthTuning.downStretchMax`. */
  downStretchMax: number;
  clock: Pick<Clock, "now" | "wall">;
}

/** The machine's state for snapshots. Times in ms. */
export interface MachineSnapshot {
  state: UplinkState;
  /** Wall-clock ms since the epoch of the last transition (or of creation). */
  since: number;
  /** Reason of the last transition. */
  reason: string;
  failStreak: number;
  passStreak: number;
  /** Failed rounds in a row currently needed for down (>= `down`). */
  failedRoundsForDown: number;
  carrier: boolean;
  /** ms left in a flap hold, 0 when none. */
  holdRemainingMs: number;
}

const EMPTY_STATS: UplinkStats = { lossPct: null, rttMs: null, jitterMs: null, targets: [] };

interface TargetStreak {
  failed: number;
  answered: number;
  /** Rounds decided without this target's result (passed before it answered, drift gap). */
  undecided: number;
  rttSum: number;
  lastError: string | null;
}

/** One uplink's health state machine. */
export class UplinkStateMachine {
  readonly #o: StateMachineOptions;
  #state: UplinkState = "init";
  #sinceWall: number;
  #reason = "starting";
  #carrier = true;
  #failStreak = 0;
  #passStreak = 0;
  #streakTargets = new Map<string, TargetStreak>();
  #passStreakStart = 0;
  #badQualityStreak = 0;
  #goodQualityStreak = 0;
  #qualitySince: number;
  #holdUntil = -Infinity;
  #downTimes: number[] = [];
  #pFail = 0;
  /** Rounds with a slot starting before this (monotonic ms) are ignored. */
  #countFrom = -Infinity;
  #lastStats: UplinkStats = EMPTY_STATS;

  constructor(options: StateMachineOptions) {
    this.#o = options;
    this.#sinceWall = options.clock.wall();
    this.#qualitySince = options.clock.now() - options.intervalMs;
  }

  get state(): UplinkState {
    return this.#state;
  }

  /**
   * Monotonic ms from which probes count for quality (loss, RTT): one
   * interval before the first round of the streak that brought the uplink
   * up, or the machine's creation/enable.
   */
  get qualitySince(): number {
    return this.#qualitySince;
  }

  /** Failed rounds in a row now needed for down. */
  get failedRoundsForDown(): number {
    if (this.#state === "init") return this.#o.down;
    return requiredFailedRounds(
      this.#o.down,
      this.#pFail,
      this.#o.downFalseAlarm,
      this.#o.downStretchMax,
    );
  }

  /** The state for a snapshot. */
  snapshot(): MachineSnapshot {
    return {
      state: this.#state,
      since: this.#sinceWall,
      reason: this.#reason,
      failStreak: this.#failStreak,
      passStreak: this.#passStreak,
      failedRoundsForDown: this.failedRoundsForDown,
      carrier: this.#carrier,
      holdRemainingMs: Math.max(0, this.#holdUntil - this.#o.clock.now()),
    };
  }

  /**
   * Feeds one decided round, in round order, with the uplink's statistics
   * over the probes sent since {@link UplinkStateMachine.qualitySince} (loss
   * and RTT null until enough samples).
   *
   * @returns the transitions made (zero or one).
   */
  round(result: RoundResult, stats: UplinkStats): StateChange[] {
    this.#lastStats = stats;
    if (result.outcome === "void" || this.#state === "disabled" || !this.#carrier) return [];
    // Rounds whose probes may predate a carrier return or an enable say
    // nothing about the uplink since then.
    if (result.at - this.#o.intervalMs < this.#countFrom) return [];
    this.#count(result);
    const state = this.#state;
    if (!result.passed) {
      const needed = this.failedRoundsForDown;
      if (state !== "down" && this.#failStreak >= needed) {
        let reason = `${this.#failStreak} rounds failed: ${this.#describeFailures()}`;
        if (needed > this.#o.down) {
          reason += ` (${needed} needed on this lossy uplink, ${pct(this.#pFail * 100)} of rounds failing before)`;
        }
        return this.#goDown(reason, stats);
      }
      return this.#judgeQuality(stats);
    }
    if (state === "init") {
      const first = `first round passed: ${this.#describeRound(result)}`;
      this.#qualitySince = Math.min(this.#qualitySince, result.at - this.#o.intervalMs);
      const bad = this.#badQuality(stats);
      return bad ? this.#go("degraded", `${first}; ${bad}`, stats) : this.#go("up", first, stats);
    }
    if (state === "down") {
      if (this.#passStreak < this.#o.up) return [];
      const now = this.#o.clock.now();
      if (now < this.#holdUntil) return [];
      const held = this.#holdUntil > -Infinity;
      this.#holdUntil = -Infinity;
      const reason =
        `${this.#passStreak} rounds passed` +
        (held ? ` (flap hold of ${duration(this.#o.flap.holdMs)} over)` : "") +
        `: ${this.#describePasses()}`;
      this.#qualitySince = this.#passStreakStart - this.#o.intervalMs;
      return this.#go("up", reason, stats);
    }
    this.#pFail = this.#roundFailProbability(stats);
    return this.#judgeQuality(stats);
  }

  /**
   * The uplink's interface lost its carrier: down at once (from any state
   * but disabled), and rounds are ignored until {@link carrierBack}.
   * @param reason the transition's reason; default "carrier lost" (an IPv6
   *   monitor without a global address says "no global IPv6 address").
   */
  carrierLost(stats: UplinkStats = this.#lastStats, reason = "carrier lost"): StateChange[] {
    const was = this.#carrier;
    this.#carrier = false;
    this.#resetStreaks();
    if (!was || this.#state === "disabled" || this.#state === "down") return [];
    return this.#goDown(reason, stats);
  }

  /** The carrier is back: recovery starts (`up` passed rounds in a row bring it up). */
  carrierBack(): StateChange[] {
    if (this.#carrier) return [];
    this.#carrier = true;
    this.#resetStreaks();
    this.#countFrom = this.#o.clock.now();
    return [];
  }

  /** Operator disable: no transitions from probes or carrier until {@link enable}. */
  disable(reason = "disabled by the operator", stats = this.#lastStats): StateChange[] {
    if (this.#state === "disabled") return [];
    this.#resetStreaks();
    return this.#go("disabled", reason, stats);
  }

  /**
   * Operator enable: to init (recovering like a fresh start), or to down when
   * the carrier is lost. Forgets streaks, flap history and any hold.
   */
  enable(stats = this.#lastStats): StateChange[] {
    if (this.#state !== "disabled") return [];
    this.#resetStreaks();
    this.#downTimes = [];
    this.#holdUntil = -Infinity;
    this.#pFail = 0;
    this.#countFrom = this.#o.clock.now();
    this.#qualitySince = this.#countFrom;
    return this.#carrier
      ? this.#go("init", "enabled by the operator", stats)
      : this.#go("down", "enabled by the operator; carrier lost", stats);
  }

  #count(result: RoundResult): void {
    if (result.passed) {
      if (this.#passStreak === 0) {
        this.#streakTargets.clear();
        this.#passStreakStart = result.at;
      }
      this.#passStreak++;
      this.#failStreak = 0;
    } else {
      if (this.#failStreak === 0) this.#streakTargets.clear();
      this.#failStreak++;
      this.#passStreak = 0;
    }
    for (const t of result.targets) {
      let s = this.#streakTargets.get(t.target);
      if (!s) {
        s = { failed: 0, answered: 0, undecided: 0, rttSum: 0, lastError: null };
        this.#streakTargets.set(t.target, s);
      }
      if (t.status === "pending" || t.status === "gap") {
        s.undecided++;
      } else if (t.answered) {
        s.answered++;
        s.rttSum += t.rttMs ?? 0;
      } else {
        s.failed++;
        s.lastError = t.error;
      }
    }
  }

  #resetStreaks(): void {
    this.#failStreak = 0;
    this.#passStreak = 0;
    this.#streakTargets.clear();
  }

  #judgeQuality(stats: UplinkStats): StateChange[] {
    if (this.#state === "up") {
      const bad = this.#badQuality(stats);
      this.#badQualityStreak = bad ? this.#badQualityStreak + 1 : 0;
      if (bad && this.#badQualityStreak >= this.#o.down) return this.#go("degraded", bad, stats);
    } else if (this.#state === "degraded") {
      const good = this.#goodQuality(stats);
      this.#goodQualityStreak = good ? this.#goodQualityStreak + 1 : 0;
      if (good && this.#goodQualityStreak >= this.#o.up) return this.#go("up", good, stats);
    }
    return [];
  }

  /** A reason when loss or RTT is at/above its failure threshold, else null. */
  #badQuality(stats: UplinkStats): string | null {
    const q = this.#o.quality;
    const why: string[] = [];
    if (stats.lossPct !== null && stats.lossPct >= q.lossFailPct) {
      why.push(`loss ${pct(stats.lossPct)} >= ${pct(q.lossFailPct)}`);
    }
    if (stats.rttMs !== null && stats.rttMs >= q.rttFailMs) {
      why.push(`rtt ${ms(stats.rttMs)} >= ${ms(q.rttFailMs)}`);
    }
    return why.length > 0 ? `${why.join(" and ")}: ${describeStats(stats)}` : null;
  }

  /** A reason when loss and RTT are below their recovery thresholds, else null. */
  #goodQuality(stats: UplinkStats): string | null {
    const q = this.#o.quality;
    if (stats.lossPct === null || stats.lossPct >= q.lossRecoverPct) return null;
    const rtt = stats.rttMs ?? 0;
    if (rtt >= q.rttRecoverMs) return null;
    return (
      `loss ${pct(stats.lossPct)} < ${pct(q.lossRecoverPct)} and rtt ${ms(rtt)} < ` +
      `${ms(q.rttRecoverMs)}: ${describeStats(stats)}`
    );
  }

  /**
   * P(a round fails by random loss), from each target's loss estimated as
   * (lost + 0.5) / (resolved + 1): leaning to more loss on few samples, so
   * that a lossy uplink is not judged on a lucky start; a clean target gets
   * under 7 % (3 rounds suffice with two targets) after 7 probes.
   */
  #roundFailProbability(stats: UplinkStats): number {
    const losses = stats.targets.map((t) => ((t.lost + 0.5) / (t.received + t.lost + 1)) * 100);
    if (losses.length === 0) return 0;
    return roundFailProbability(losses, Math.min(this.#o.reliability, losses.length));
  }

  #goDown(reason: string, stats: UplinkStats): StateChange[] {
    const from = this.#state;
    const now = this.#o.clock.now();
    let why = reason;
    if (from === "up" || from === "degraded") {
      const { count, periodMs, holdMs } = this.#o.flap;
      this.#downTimes = this.#downTimes.filter((t) => now - t < periodMs);
      this.#downTimes.push(now);
      if (count > 0 && this.#downTimes.length >= count) {
        this.#holdUntil = now + holdMs;
        why +=
          `; flapping: down ${this.#downTimes.length} times within ${duration(periodMs)}, ` +
          `held down for ${duration(holdMs)}`;
      }
    }
    return this.#go("down", why, stats);
  }

  #go(to: UplinkState, reason: string, stats: UplinkStats): StateChange[] {
    const from = this.#state;
    this.#state = to;
    this.#badQualityStreak = 0;
    this.#goodQualityStreak = 0;
    this.#sinceWall = this.#o.clock.wall();
    this.#reason = reason;
    if (to === "down") this.#pFail = 0;
    return [{ time: this.#sinceWall, uplink: this.#o.uplink, from, to, reason, stats }];
  }

  #describeFailures(): string {
    const parts: string[] = [];
    for (const [target, s] of this.#streakTargets) {
      const total = s.failed + s.answered;
      let part = `${target} lost ${s.failed}/${total}`;
      if (s.lastError !== null && !s.lastError.startsWith("no answer within")) {
        part += ` (${s.lastError})`;
      }
      parts.push(part);
    }
    return parts.join(", ");
  }

  #describePasses(): string {
    const parts: string[] = [];
    for (const [target, s] of this.#streakTargets) {
      const total = s.failed + s.answered;
      let part = `${target} answered ${s.answered}/${total}`;
      const notes: string[] = [];
      if (s.answered > 0) notes.push(`rtt ${ms(s.rttSum / s.answered)}`);
      if (s.undecided > 0) notes.push(`${s.undecided} not awaited`);
      if (notes.length > 0) part += ` (${notes.join("; ")})`;
      parts.push(part);
    }
    return parts.join(", ");
  }

  #describeRound(result: RoundResult): string {
    return result.targets
      .map((t) =>
        t.status === "answered"
          ? `${t.target} answered (rtt ${ms(t.rttMs ?? 0)})`
          : t.status === "pending"
            ? `${t.target} not yet answered`
            : `${t.target} lost`,
      )
      .join(", ");
  }
}

/** `198.51.100.1 loss 24% rtt 12.3 ms, ...` */
function describeStats(stats: UplinkStats): string {
  return stats.targets
    .map((t) => {
      const loss = t.lossPct === null ? "loss ?" : `loss ${pct(t.lossPct)}`;
      const rtt = t.rttMs === null ? "" : ` rtt ${ms(t.rttMs)}`;
      return `${t.target} ${loss}${rtt}`;
    })
    .join(", ");
}

function pct(value: number): string {
  return `${Number(value.toFixed(value < 10 ? 2 : 1))}%`;
}

function ms(value: number): string {
  return `${Number(value.toFixed(1))} ms`;
}

function duration(valueMs: number): string {
  if (valueMs >= 60_000 && valueMs % 60_000 === 0) return `${valueMs / 60_000} min`;
  if (valueMs >= 1000 && valueMs % 1000 === 0) return `${valueMs / 1000} s`;
  return `${valueMs} ms`;
}

/**
 * Health settings beyond what `healthSchema` holds today (quality
 * thresholds, flap damping, window size, loss-aware down count, probe kinds),
 * with their defaults, and the resolution of one uplink's complete settings.
 */
import { isIP } from "node:net";
import {
  DEFAULT_TIMEOUT_MAX_MS,
  DEFAULT_TIMEOUT_MIN_MS,
  type HealthConfig,
} from "../config/schema.js";
import { HealthError } from "./errors.js";
import type { ProbeSpec } from "./prober.js";
import type { AdaptiveTimeout } from "./rto.js";

/** Loss and RTT thresholds, each with a failure and a (lower) recovery level. */
export interface QualityThresholds {
  /** Loss at or above this (%) makes an up uplink degraded. Default 20. */
  lossFailPct: number;
  /** Loss below this (%) (and RTT below `rttRecoverMs`) brings a degraded uplink back up. Default 10. */
  lossRecoverPct: number;
  /** Mean RTT at or above this (ms) makes an up uplink degraded. Default timeout / 2. */
  rttFailMs: number;
  /** Mean RTT below this (ms) (and loss below `lossRecoverPct`) brings it back up. Default timeout / 4. */
  rttRecoverMs: number;
}

/** Flap damping: an uplink that goes down `count` times within `periodMs` stays down `holdMs`. */
export interface FlapDamping {
  /** Downs within `periodMs` that start a hold; default 3. 0 disables damping. */
  count: number;
  /** ms; default 300000 (5 min). */
  periodMs: number;
  /** ms the uplink stays down after the `count`-th down, even if rounds pass; default 60000. */
  holdMs: number;
}

/** Tuning of the health checks; every field has a default (see {@link resolveHealthSettings}). */
export interface HealthTuning {
  quality: QualityThresholds;
  flap: FlapDamping;
  /** Probes kept per target for statistics; default max(100, ceil(30 s / interval)). */
  windowSize: number;
  /**
   * Resolved probes a target needs (since the uplink came up) before its
   * loss and RTT are judged; default ceil(windowSize / 2).
   */
  minQualitySamples: number;
  /**
   * Loss-aware down count: on a lossy uplink, the number of failed rounds in
   * a row needed for `down` grows until random loss alone (at the loss
   * measured before the failures) would fail that many rounds in a row with
   * a probability of at most this, per round. Default 1e-7 (at 200 ms:
   * one false alarm in ~23 days); 0 turns it off.
   */
  downFalseAlarm: number;
  /** The loss-aware down count is at most `down * downStretchMax`; default 3. */
  downStretchMax: number;
}

/** A partial tuning, as a caller or a future config section gives it. */
export interface HealthTuningInput {
  quality?: Partial<QualityThresholds>;
  flap?: Partial<FlapDamping>;
  windowSize?: number;
  minQualitySamples?: number;
  downFalseAlarm?: number;
  downStretchMax?: number;
}

/** One uplink's complete health settings, times in ms. */
export interface HealthSettings {
  /** What to probe; `reliability` of these must answer in a round. */
  probes: ProbeSpec[];
  /** Round interval, ms > 0. */
  intervalMs: number;
  /**
   * A probe unanswered after this is lost, ms > 0; with `adaptiveTimeout`
   * the ceiling (each probe's timeout is its target's RTO, at most this).
   */
  timeoutMs: number;
  /** `timeout: auto`: RTT-aware timeouts between a floor and a ceiling (= `timeoutMs`); absent: fixed. */
  adaptiveTimeout?: AdaptiveTimeout;
  /** Failed rounds in a row -> down (the minimum; see `downFalseAlarm`). */
  down: number;
  /** Good rounds in a row -> up (from down). */
  up: number;
  /** Targets that must answer for a round to pass, clamped to 1..probes.length. */
  reliability: number;
  tuning: HealthTuning;
}

/**
 * Default window size in probes for a round interval in ms: 30 s of probes,
 * at least 100: max(100, ceil(30000 / interval)). Loss estimates need that
 * many samples to tell 10 % from 20 % loss: over 100 probes a 10 %-loss
 * target shows >= 20 % with probability ~0.2 %, over 25 probes (5 s at
 * 200 ms) ~10 %.
 */
export function defaultWindowSize(intervalMs: number): number {
  return Math.max(100, Math.ceil(30_000 / intervalMs));
}

/**
 * Fills in every tuning default for the given interval and timeout (ms).
 *
 * @throws {HealthError} when a value is out of range or a recovery threshold
 *   is above its failure threshold.
 */
export function resolveTuning(
  intervalMs: number,
  timeoutMs: number,
  input: HealthTuningInput = {},
): HealthTuning {
  const windowSize = input.windowSize ?? defaultWindowSize(intervalMs);
  const rttFailMs = input.quality?.rttFailMs ?? timeoutMs / 2;
  const tuning: HealthTuning = {
    quality: {
      lossFailPct: input.quality?.lossFailPct ?? 20,
      lossRecoverPct: input.quality?.lossRecoverPct ?? 10,
      rttFailMs,
      rttRecoverMs: input.quality?.rttRecoverMs ?? Math.min(timeoutMs / 4, rttFailMs),
    },
    flap: {
      count: input.flap?.count ?? 3,
      periodMs: input.flap?.periodMs ?? 300_000,
      holdMs: input.flap?.holdMs ?? 60_000,
    },
    windowSize,
    minQualitySamples: input.minQualitySamples ?? Math.ceil(windowSize / 2),
    downFalseAlarm: input.downFalseAlarm ?? 1e-7,
    downStretchMax: input.downStretchMax ?? 3,
  };
  const { quality, flap } = tuning;
  const problems: string[] = [];
  if (!Number.isInteger(windowSize) || windowSize < 2) problems.push("window size must be >= 2");
  if (!(quality.lossFailPct > 0 && quality.lossFailPct <= 100)) {
    problems.push("loss failure threshold must be in (0, 100] %");
  }
  if (!(quality.lossRecoverPct >= 0 && quality.lossRecoverPct <= quality.lossFailPct)) {
    problems.push("loss recovery threshold must be in [0, loss failure threshold] %");
  }
  if (!(quality.rttFailMs > 0)) problems.push("RTT failure threshold must be > 0 ms");
  if (!(quality.rttRecoverMs >= 0 && quality.rttRecoverMs <= quality.rttFailMs)) {
    problems.push("RTT recovery threshold must be in [0, RTT failure threshold] ms");
  }
  if (!(Number.isInteger(flap.count) && flap.count >= 0)) {
    problems.push("flap count must be an integer >= 0");
  }
  if (!(flap.periodMs >= 0 && flap.holdMs >= 0)) {
    problems.push("flap period and hold must be >= 0 ms");
  }
  if (!(Number.isInteger(tuning.minQualitySamples) && tuning.minQualitySamples >= 1)) {
    problems.push("minimum quality samples must be an integer >= 1");
  } else if (tuning.minQualitySamples > windowSize) {
    problems.push(`minimum quality samples must be <= window size (${windowSize})`);
  }
  if (!(tuning.downFalseAlarm >= 0 && tuning.downFalseAlarm < 1)) {
    problems.push("down false-alarm probability must be in [0, 1)");
  }
  if (!(tuning.downStretchMax >= 1)) problems.push("down stretch factor must be >= 1");
  if (problems.length > 0) throw new HealthError(`invalid health tuning: ${problems.join("; ")}`);
  return tuning;
}

/**
 * The probe timeout of a `health` config: fixed (`timeout: 500ms`), or
 * RTT-aware (`timeout: auto`) between `timeout_min` (default 50 ms) and
 * `timeout_max` (default 1 s).
 *
 * @returns `timeoutMs`: the fixed timeout or the ceiling; `adaptive`: floor
 *   and ceiling with `auto`.
 * @throws {HealthError} when a value is not > 0 or the floor is above the ceiling.
 */
export function resolveTimeout(
  config: Pick<HealthConfig, "timeout"> &
    Partial<Pick<HealthConfig, "timeout_min" | "timeout_max">>,
): { timeoutMs: number; adaptive?: AdaptiveTimeout } {
  if (config.timeout !== "auto") {
    if (!(config.timeout > 0)) throw new HealthError(`timeout must be > 0 ms`);
    return { timeoutMs: config.timeout };
  }
  const maxMs = config.timeout_max ?? DEFAULT_TIMEOUT_MAX_MS;
  const minMs = config.timeout_min ?? Math.min(DEFAULT_TIMEOUT_MIN_MS, maxMs);
  if (!(minMs > 0 && maxMs > 0))
    throw new HealthError(`timeout_min and timeout_max must be > 0 ms`);
  if (minMs > maxMs) {
    throw new HealthError(`timeout_min (${minMs} ms) must not be above timeout_max (${maxMs} ms)`);
  }
  return { timeoutMs: maxMs, adaptive: { minMs, maxMs } };
}

/**
 * One uplink's settings from its (merged) `health` config: each string
 * target (IPv4 or IPv6; the monitor of one family gets that family's, see
 * `healthOf`) becomes an ICMP probe; `extraProbes` (TCP/HTTP/DNS, until the
 * schema carries them) are appended.
 *
 * @throws {HealthError} when interval or timeout is not > 0, a target is not
 *   an IP address, there is no target, or the tuning is invalid.
 */
export function resolveHealthSettings(
  config: Pick<HealthConfig, "targets" | "interval" | "timeout" | "down" | "up" | "reliability"> &
    Partial<Pick<HealthConfig, "timeout_min" | "timeout_max">>,
  tuning: HealthTuningInput = {},
  extraProbes: readonly ProbeSpec[] = [],
): HealthSettings {
  if (!(config.interval > 0)) throw new HealthError(`interval must be > 0 ms`);
  const { timeoutMs, adaptive } = resolveTimeout(config);
  const probes: ProbeSpec[] = config.targets.map((host) => {
    if (isIP(host) === 0) throw new HealthError(`ICMP target "${host}" is not an IP address`);
    return { type: "icmp", host };
  });
  probes.push(...extraProbes);
  if (probes.length === 0) throw new HealthError("an uplink needs at least one health target");
  return {
    probes,
    intervalMs: config.interval,
    timeoutMs,
    ...(adaptive ? { adaptiveTimeout: adaptive } : {}),
    down: config.down,
    up: config.up,
    reliability: Math.min(Math.max(1, config.reliability), probes.length),
    tuning: resolveTuning(config.interval, timeoutMs, tuning),
  };
}

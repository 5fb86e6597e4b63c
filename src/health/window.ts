/**
 * The sliding window of one target's probes, dpinger-style: a ring buffer
 * indexed by sequence number, each probe stamped with its send time on the
 * monotonic clock. A probe is
 *
 * - `received` once answered within the timeout;
 * - `lost` once it failed for sure (an ICMP error, a refused connection, a
 *   wrong HTTP status), once it was answered later than the timeout, or once
 *   it is older than the timeout without an answer;
 * - `in-flight` otherwise: neither loss nor success, so a young probe never
 *   counts as lost.
 *
 * Statistics are recomputed from the ring on demand (the window holds tens
 * of probes, so a scan is cheaper than keeping running sums exact when
 * probes resolve out of order).
 *
 * Timeouts: fixed (`timeoutMs`), or RTT-aware (`adaptive`, see rto.ts): then
 * each probe gets the target's RTO at the time it is recorded as sent, and
 * keeps it; every answer, a late one too, is an RTT sample.
 */
import { RtoEstimator, type AdaptiveTimeout } from "./rto.js";

/** One probe as the window knows it. Times in ms on the monitor's monotonic clock. */
export interface ProbeRecord {
  /** Sequence number, unique and increasing per target (never reused). */
  readonly seq: number;
  /** When the probe was sent (ms, monotonic). */
  sentAt: number;
  /** True when `sentAt` was inferred rather than measured (see IcmpProber). */
  estimated: boolean;
  /** When the answer arrived (ms, monotonic), if one did. */
  answeredAt?: number;
  /** Round-trip time in ms, if answered. */
  rttMs?: number;
  /** When the probe failed for sure (ms, monotonic), if it did. */
  failedAt?: number;
  /** Why it failed, e.g. `Destination Host Unreachable from 100.64.1.1`, `ECONNREFUSED`. */
  error?: string;
  /** Per-phase timings of the answer (HTTP probes), if measured. */
  timings?: ProbeTimings;
  /** This probe's timeout in ms when the window's timeout is RTT-aware (its RTO when sent). */
  timeoutMs?: number;
}

/** Per-phase timings of one probe in ms from its send (got-style); absent phases did not happen. */
export interface ProbeTimings {
  /** TCP connection established. */
  connectMs?: number;
  /** TLS handshake done (https). */
  tlsMs?: number;
  /** First byte of the response (status line and headers). */
  firstByteMs?: number;
}

/** Where a probe stands at a given time. */
export type ProbeStatus = "in-flight" | "received" | "lost";

/** Statistics over the probes in a window. */
export interface WindowStats {
  /** Probes known to have been sent (in the window). */
  sent: number;
  /** Probes answered within the timeout. */
  received: number;
  /** Probes lost: failed, answered late, or unanswered past the timeout. */
  lost: number;
  /** Probes younger than the timeout without an answer yet. */
  inFlight: number;
  /** `lost / (received + lost)` in % (0..100); null when nothing is resolved yet. */
  lossPct: number | null;
  /** Mean RTT of the received probes in ms; null when none. */
  rttMs: number | null;
  /** Jitter: standard deviation of the RTTs of the received probes in ms; null when none. */
  jitterMs: number | null;
  /** RTT of the most recent received probe in ms; null when none. */
  lastRttMs: number | null;
  /** The most recent failure reason in the window, if any. */
  lastError: string | null;
  /** Per-phase timings of the most recent received probe that has them (HTTP), if any. */
  lastTimings: ProbeTimings | null;
}

/** Options of a {@link ProbeWindow}. */
export interface ProbeWindowOptions {
  /** Number of probes kept (the most recent sequence numbers), >= 1. */
  size: number;
  /**
   * A probe without an answer after this many ms is lost; > 0. With
   * `adaptive`, the ceiling: the RTO's `maxMs` must not exceed it.
   */
  timeoutMs: number;
  /** RTT-aware timeouts (RFC 6298 RTO between a floor and a ceiling); default: fixed. */
  adaptive?: AdaptiveTimeout;
}

/** The ring buffer of one target's probes. */
export class ProbeWindow {
  readonly size: number;
  readonly timeoutMs: number;
  readonly #ring: (ProbeRecord | undefined)[];
  readonly #rto: RtoEstimator | undefined;
  #highest = -Infinity;

  /**
   * @throws {RangeError} when `size` < 1, `timeoutMs` <= 0, or `adaptive`
   *   has a floor <= 0 or a ceiling below the floor or above `timeoutMs`.
   */
  constructor(options: ProbeWindowOptions) {
    if (!Number.isInteger(options.size) || options.size < 1) {
      throw new RangeError(`window size must be an integer >= 1, got ${options.size}`);
    }
    if (!(options.timeoutMs > 0)) {
      throw new RangeError(`timeout must be > 0 ms, got ${options.timeoutMs}`);
    }
    this.size = options.size;
    this.timeoutMs = options.timeoutMs;
    this.#ring = new Array<ProbeRecord | undefined>(options.size);
    if (options.adaptive) {
      if (options.adaptive.maxMs > options.timeoutMs) {
        throw new RangeError(
          `timeout ceiling ${options.adaptive.maxMs} ms is above the window's ${options.timeoutMs} ms`,
        );
      }
      this.#rto = new RtoEstimator(options.adaptive);
    }
  }

  /** Whether probe timeouts follow the RTT. */
  get adaptive(): boolean {
    return this.#rto !== undefined;
  }

  /** The timeout (ms) a probe sent now gets: the RTO when adaptive, else `timeoutMs`. */
  get currentTimeoutMs(): number {
    return this.#rto?.timeoutMs() ?? this.timeoutMs;
  }

  /** Smoothed RTT (ms) of the RTO estimator; null when not adaptive or before the first answer. */
  get srttMs(): number | null {
    return this.#rto?.srttMs ?? null;
  }

  /** The timeout (ms) that applies to `record`. */
  timeoutOf(record: ProbeRecord): number {
    return record.timeoutMs ?? this.timeoutMs;
  }

  /** Highest sequence number seen, or -Infinity when empty. */
  get highestSeq(): number {
    return this.#highest;
  }

  /** The record of `seq`, if it is still in the window. */
  get(seq: number): ProbeRecord | undefined {
    const record = this.#ring[this.#index(seq)];
    return record?.seq === seq ? record : undefined;
  }

  /**
   * Records that probe `seq` was sent at `sentAt` (ms). A probe older than
   * the window is ignored. Recording a known probe again only replaces an
   * estimated send time by a measured one.
   *
   * @returns the record, or undefined when `seq` is too old for the window.
   */
  sent(
    seq: number,
    sentAt: number,
    options: { estimated?: boolean } = {},
  ): ProbeRecord | undefined {
    const estimated = options.estimated ?? false;
    const known = this.get(seq);
    if (known) {
      if (known.estimated && !estimated) {
        known.sentAt = sentAt;
        known.estimated = false;
      }
      return known;
    }
    if (seq <= this.#highest - this.size) return undefined;
    const record: ProbeRecord = { seq, sentAt, estimated };
    if (this.#rto) record.timeoutMs = this.#rto.timeoutMs();
    this.#ring[this.#index(seq)] = record;
    if (seq > this.#highest) this.#highest = seq;
    return record;
  }

  /**
   * Records the answer to probe `seq`, arriving at `at` (ms). The RTT is
   * `rttMs` when given (as measured by the prober), else `at - sentAt`. An
   * unknown probe is recorded with `sentAt = at - rttMs` when `rttMs` is
   * given, else ignored. A probe already answered or failed is left alone
   * (duplicates). `timings` are kept with the probe.
   */
  answered(seq: number, at: number, rttMs?: number, timings?: ProbeTimings): void {
    let record = this.get(seq);
    if (!record) {
      if (rttMs === undefined) return;
      record = this.sent(seq, at - rttMs);
      if (!record) return;
    }
    if (record.answeredAt !== undefined || record.failedAt !== undefined) return;
    record.answeredAt = at;
    record.rttMs = rttMs ?? Math.max(0, at - record.sentAt);
    this.#rto?.sample(record.rttMs);
    if (timings) record.timings = timings;
    if (rttMs !== undefined && record.estimated) {
      record.sentAt = at - rttMs;
      record.estimated = false;
    }
  }

  /**
   * Records that probe `seq` failed for sure at `at` (ms), with a reason.
   * An unknown probe is recorded as sent at `at` (estimated). A probe
   * already answered or failed is left alone.
   */
  failed(seq: number, at: number, reason: string): void {
    const record = this.get(seq) ?? this.sent(seq, at, { estimated: true });
    if (!record) return;
    if (record.answeredAt !== undefined || record.failedAt !== undefined) return;
    record.failedAt = at;
    record.error = reason;
  }

  /** Status of `record` at time `now` (ms). */
  status(record: ProbeRecord, now: number): ProbeStatus {
    const timeout = this.timeoutOf(record);
    if (record.failedAt !== undefined) return "lost";
    if (record.rttMs !== undefined) return record.rttMs <= timeout ? "received" : "lost";
    // The same sum as resolvedAt and the round tracker's wake-up time, so that a
    // wake-up at that time finds the probe lost (a difference could round below it).
    return now >= record.sentAt + timeout ? "lost" : "in-flight";
  }

  /**
   * When `record` is (or was) resolved: its answer or failure time, or its
   * send time + timeout (ms).
   */
  resolvedAt(record: ProbeRecord): number {
    const timeout = this.timeoutOf(record);
    if (record.failedAt !== undefined) return record.failedAt;
    if (record.answeredAt !== undefined && record.rttMs !== undefined) {
      return record.rttMs <= timeout ? record.answeredAt : record.sentAt + timeout;
    }
    return record.sentAt + timeout;
  }

  /** The probes in the window, oldest sequence number first. */
  records(): ProbeRecord[] {
    const out: ProbeRecord[] = [];
    this.#each((record) => out.push(record));
    return out;
  }

  /** Calls `fn` with each probe in the window, oldest sequence number first (no sort, no copy). */
  #each(fn: (record: ProbeRecord) => void): void {
    if (this.#highest === -Infinity) return;
    for (let seq = this.#highest - this.size + 1; seq <= this.#highest; seq++) {
      const record = this.#ring[this.#index(seq)];
      if (record !== undefined && record.seq === seq) fn(record);
    }
  }

  /**
   * Statistics at time `now` (ms) over the window, or over the probes sent
   * at or after `since` (ms) when given.
   */
  stats(now: number, options: { since?: number } = {}): WindowStats {
    const since = options.since ?? -Infinity;
    let sent = 0;
    let received = 0;
    let lost = 0;
    let sum = 0;
    let sumSquares = 0;
    let lastRttMs: number | null = null;
    let lastError: string | null = null;
    let lastTimings: ProbeTimings | null = null;
    this.#each((record) => {
      if (record.sentAt < since) return;
      sent++;
      const status = this.status(record, now);
      if (status === "received") {
        received++;
        const rtt = record.rttMs ?? 0;
        sum += rtt;
        sumSquares += rtt * rtt;
        lastRttMs = rtt;
        if (record.timings) lastTimings = record.timings;
      } else if (status === "lost") {
        lost++;
        if (record.error !== undefined) lastError = record.error;
      }
    });
    const resolved = received + lost;
    const mean = received > 0 ? sum / received : null;
    const jitter =
      mean === null ? null : Math.sqrt(Math.max(0, sumSquares / received - mean * mean));
    return {
      sent,
      received,
      lost,
      inFlight: sent - resolved,
      lossPct: resolved > 0 ? (lost / resolved) * 100 : null,
      rttMs: mean,
      jitterMs: jitter,
      lastRttMs,
      lastError,
      lastTimings,
    };
  }

  #index(seq: number): number {
    const i = seq % this.size;
    return i < 0 ? i + this.size : i;
  }
}

/**
 * Rounds: one probe to each target of an uplink per interval tick. A round
 * passes when at least `reliability` targets answered within the timeout.
 * Its result is known as soon as enough targets answered (pass), as soon as
 * too few can still answer (fail), and at the latest `timeout` ms after the
 * tick (fail): the state machine gets rounds in order, never out of order.
 *
 * Which probe of a target belongs to round k (tick at `t_k`):
 *
 * - on-demand probers (TCP, HTTP, DNS) are called at the tick with `seq = k`:
 *   the probe with sequence number k. Its own deadline is its send time +
 *   timeout.
 * - free-running probers (ICMP: a long-running `ping -i INTERVAL`) send on
 *   their own schedule: round k takes the probes sent in the slot
 *   `(t_k - interval, t_k]`; it is answered if any of them was answered in
 *   time, failed once all of them are resolved lost. iputils' ping runs a
 *   little slower than `-i` (measured here: about 2 %, 4 ms per 200 ms), so
 *   now and then a slot holds no probe although none was skipped: the probes
 *   just before and just after the slot have consecutive sequence numbers
 *   (a "drift gap"). Such a target abstains: if the round cannot be decided
 *   without it, the round is `void` (neither passed nor failed; the state
 *   machine does not see it). Borrowing a neighbouring probe instead would
 *   count one loss twice and make random loss look like an outage more
 *   often. An empty slot that is not a drift gap (ping not running, or a
 *   lost probe not reported yet) fails at `t_k + timeout`, or earlier when
 *   the probe due in the slot (previous send + 1.05 interval) is older than
 *   the timeout without a word from ping.
 */
import type { ProbeSchedule } from "./prober.js";
import type { ProbeRecord, ProbeWindow } from "./window.js";

/** One target as the round tracker sees it. */
export interface RoundTarget {
  /** Display name (`198.51.100.1`). */
  target: string;
  window: ProbeWindow;
  schedule: ProbeSchedule;
}

/** One target's part in a decided round. */
export interface TargetRoundResult {
  target: string;
  answered: boolean;
  /**
   * `answered`; `failed` (no answer in time, or a sure failure); `pending`
   * (no answer yet when the round was decided: only in rounds decided
   * early); `gap` (abstained: a drift gap of a free-running prober).
   */
  status: "answered" | "failed" | "pending" | "gap";
  /** RTT of the answer in ms; null when not answered. */
  rttMs: number | null;
  /** Why the target failed this round (`no answer within 500 ms`, an ICMP error...); null when answered. */
  error: string | null;
}

/** A decided round. Times in ms on the monotonic clock. */
export interface RoundResult {
  /** Round number (0, 1, 2, ... since the monitor started). */
  round: number;
  /** The round's tick. */
  at: number;
  /** When the result became known. */
  decidedAt: number;
  /** `void`: a target abstained (drift gap) and the others could not decide the round. */
  outcome: "passed" | "failed" | "void";
  /** `outcome === "passed"`. */
  passed: boolean;
  /** Targets that answered. */
  answered: number;
  /** Targets that had to answer (reliability). */
  needed: number;
  targets: TargetRoundResult[];
}

/** Options of a {@link RoundTracker}. */
export interface RoundTrackerOptions {
  targets: readonly RoundTarget[];
  /** Round interval in ms (> 0). */
  intervalMs: number;
  /**
   * Probe timeout in ms (> 0); with RTT-aware windows the ceiling: each
   * probe's own timeout (its RTO, see ProbeWindow) applies, at most this.
   */
  timeoutMs: number;
  /** Targets that must answer, 1..targets.length. */
  reliability: number;
}

type Verdict =
  | { kind: "answered"; rttMs: number }
  | { kind: "failed"; error: string }
  | { kind: "pending"; wakeAt: number }
  | { kind: "gap" };

interface OpenRound {
  round: number;
  at: number;
}

/** Decides rounds from the targets' windows. Pure apart from the windows it reads. */
export class RoundTracker {
  readonly #targets: readonly RoundTarget[];
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #reliability: number;
  #open: OpenRound[] = [];
  #wakeAt: number | undefined;

  /** @throws {RangeError} when there is no target or reliability is out of 1..targets. */
  constructor(options: RoundTrackerOptions) {
    if (options.targets.length === 0) throw new RangeError("a round needs at least one target");
    if (options.reliability < 1 || options.reliability > options.targets.length) {
      throw new RangeError(
        `reliability ${options.reliability} is outside 1..${options.targets.length} targets`,
      );
    }
    this.#targets = options.targets;
    this.#intervalMs = options.intervalMs;
    this.#timeoutMs = options.timeoutMs;
    this.#reliability = options.reliability;
  }

  /** Opens round `round` whose tick is at `at` (ms). Rounds must be opened in order. */
  open(round: number, at: number): void {
    this.#open.push({ round, at });
  }

  /** Drops every open round (e.g. when probing restarts). */
  clear(): void {
    this.#open = [];
    this.#wakeAt = undefined;
  }

  /** Number of rounds opened but not decided yet. */
  get openRounds(): number {
    return this.#open.length;
  }

  /**
   * The earliest time (ms) at which an open round may be decided by a
   * timeout, as of the last `evaluate`; undefined when none is open.
   */
  get wakeAt(): number | undefined {
    return this.#wakeAt;
  }

  /**
   * Decides what can be decided at `now` (ms).
   *
   * @returns the rounds decided by this call, oldest first; a round is only
   *   returned once every older round has been.
   */
  evaluate(now: number): RoundResult[] {
    const decided: RoundResult[] = [];
    let wakeAt: number | undefined;
    while (this.#open.length > 0) {
      const open = this.#open[0] as OpenRound;
      const verdicts = this.#targets.map((t) => this.#verdict(t, open, now));
      const answered = verdicts.filter((v) => v.kind === "answered").length;
      const gaps = verdicts.filter((v) => v.kind === "gap").length;
      const pending = verdicts.flatMap((v) => (v.kind === "pending" ? [v.wakeAt] : []));
      if (answered < this.#reliability && answered + pending.length >= this.#reliability) {
        wakeAt = Math.min(...pending);
        break;
      }
      let outcome: RoundResult["outcome"] = "failed";
      if (answered >= this.#reliability) outcome = "passed";
      else if (answered + pending.length + gaps >= this.#reliability) {
        if (pending.length > 0) {
          wakeAt = Math.min(...pending);
          break;
        }
        outcome = "void";
      }
      this.#open.shift();
      decided.push({
        round: open.round,
        at: open.at,
        decidedAt: now,
        outcome,
        passed: outcome === "passed",
        answered,
        needed: this.#reliability,
        targets: this.#targets.map((t, i) => {
          const v = verdicts[i] as Verdict;
          return {
            target: t.target,
            answered: v.kind === "answered",
            status: v.kind,
            rttMs: v.kind === "answered" ? v.rttMs : null,
            error: v.kind === "failed" ? v.error : null,
          };
        }),
      });
    }
    this.#wakeAt = wakeAt;
    return decided;
  }

  #verdict(target: RoundTarget, open: OpenRound, now: number): Verdict {
    return target.schedule === "on-demand"
      ? this.#onDemandVerdict(target.window, open, now)
      : this.#freeRunningVerdict(target.window, open, now);
  }

  #onDemandVerdict(window: ProbeWindow, open: OpenRound, now: number): Verdict {
    const record = window.get(open.round);
    if (!record) {
      const deadline = open.at + this.#timeoutNow(window);
      return now >= deadline
        ? { kind: "failed", error: "no probe sent" }
        : { kind: "pending", wakeAt: deadline };
    }
    return this.#slotVerdict(window, [record], now, Math.max(open.at, record.sentAt));
  }

  #freeRunningVerdict(window: ProbeWindow, open: OpenRound, now: number): Verdict {
    const from = open.at - this.#intervalMs;
    const records = window.records();
    const slot = records.filter((r) => r.sentAt > from && r.sentAt <= open.at);
    if (slot.length > 0) return this.#slotVerdict(window, slot, now, open.at);
    let before: ProbeRecord | undefined;
    let after: ProbeRecord | undefined;
    for (const r of records) {
      if (r.sentAt <= from && (!before || r.sentAt > before.sentAt)) before = r;
      if (r.sentAt > open.at && (!after || r.sentAt < after.sentAt)) after = r;
    }
    if (before && after && after.seq === before.seq + 1) return { kind: "gap" };
    // ping reports a lost probe only at its next send; when the timeout is
    // shorter than the interval that is after the round's deadline. The
    // probe due in this slot was sent by `before + 1.05 * interval` at the
    // latest (ping's period is ~2 % over -i): fail once that plus the timeout
    // passed without a report.
    // No word from ping about this slot: with an RTT-aware timeout far below
    // the interval, a ping delayed by the scheduler (a busy machine) would
    // fail the round at once. Give ping a quarter of the interval at least
    // (the ceiling at most).
    const timeout = window.adaptive
      ? Math.max(this.#timeoutNow(window), Math.min(this.#intervalMs / 4, this.#timeoutMs))
      : this.#timeoutNow(window);
    let deadline = open.at + timeout;
    // ping reported a probe of the slot before: it runs, and this slot's
    // probe (sent, not yet reported) is simply unanswered so far.
    const running = before !== undefined && before.sentAt > from - this.#intervalMs;
    if (before && running) {
      const due = before.sentAt + 1.05 * this.#intervalMs;
      if (due > from && due <= open.at) deadline = due + timeout;
    }
    if (now < deadline) return { kind: "pending", wakeAt: deadline };
    return {
      kind: "failed",
      error: running
        ? `no answer within ${String(Math.round(timeout))} ms`
        : "no probe sent (is the prober running?)",
    };
  }

  /**
   * Verdict over a non-empty slot: answered if any probe was answered in
   * time; failed once every probe is lost or `latestSend + timeout` passed.
   */
  #slotVerdict(
    window: ProbeWindow,
    slot: readonly ProbeRecord[],
    now: number,
    latestSend: number,
  ): Verdict {
    let wakeAt = Infinity;
    let error: string | undefined;
    let timeout = 0;
    for (const record of slot) {
      const status = window.status(record, now);
      const own = this.#timeoutOf(window, record);
      timeout = Math.max(timeout, own);
      if (status === "received") return { kind: "answered", rttMs: record.rttMs ?? 0 };
      if (status === "in-flight") {
        wakeAt = Math.min(wakeAt, record.sentAt + own);
      } else {
        error = record.error ?? lostReason(record, own);
      }
    }
    const deadline = latestSend + timeout;
    if (wakeAt === Infinity || now >= deadline) {
      return { kind: "failed", error: error ?? `no answer within ${Math.round(timeout)} ms` };
    }
    return { kind: "pending", wakeAt: Math.min(wakeAt, deadline) };
  }

  /** Timeout (ms) of a probe sent now to the window's target: its RTO (RTT-aware), at most the tracker's. */
  #timeoutNow(window: ProbeWindow): number {
    return Math.min(this.#timeoutMs, window.currentTimeoutMs);
  }

  /** Timeout (ms) of a recorded probe: its own (RTT-aware), at most the tracker's. */
  #timeoutOf(window: ProbeWindow, record: ProbeRecord): number {
    return Math.min(this.#timeoutMs, window.timeoutOf(record));
  }
}

function lostReason(record: ProbeRecord, timeoutMs: number): string {
  if (record.rttMs !== undefined) return `answered late (${Math.round(record.rttMs)} ms)`;
  return `no answer within ${Math.round(timeoutMs)} ms`;
}

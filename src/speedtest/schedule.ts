/**
 * When the daemon measures an uplink with `bandwidth: auto`: at start when
 * it has no result younger than `speedtest.every`, then every `every`, at
 * a quiet moment (not while the uplink carries more than `speedtest.busy` %
 * of its last measured speed), never while it is down or its quota is
 * used up. Pure: time and load are passed in.
 */

/** What the scheduler knows of one uplink at one moment. */
export interface ScheduleInput {
  /** Wall time now, epoch ms. */
  now: number;
  /** Epoch ms of the last result; undefined when it has none. */
  lastMeasuredAt: number | undefined;
  /** The last result's rates, bits per second (null: not measured). */
  last: { down: number | null; up: number | null } | undefined;
  /** Epoch ms a scheduled test was last skipped or failed; undefined when never since the last result. */
  lastAttemptAt: number | undefined;
  /** The uplink's throughput now, bits per second; undefined when unknown. */
  throughput: { down: number; up: number } | undefined;
  /** Why the uplink cannot be tested now (down, quota used up); undefined when it can. */
  refusal: string | undefined;
  /** Config `speedtest.every`, ms. */
  everyMs: number;
  /** Config `speedtest.retry`, ms. */
  retryMs: number;
  /** Config `speedtest.busy`, % of the last measured speed. */
  busyPercent: number;
}

/** What to do about one uplink now. */
export type ScheduleDecision =
  | { kind: "run" }
  /** Not due: look again in `inMs`. */
  | { kind: "wait"; inMs: number }
  /** Due but not now: `reason`; look again in `inMs`. */
  | { kind: "skip"; reason: string; inMs: number };

/**
 * The share of its last measured speed an uplink carries now, % (the fuller
 * direction); undefined when there is nothing to compare.
 */
export function busyShare(
  throughput: ScheduleInput["throughput"],
  last: ScheduleInput["last"],
): number | undefined {
  if (throughput === undefined || last === undefined) return undefined;
  const parts: number[] = [];
  if (last.down !== null && last.down > 0) parts.push((throughput.down / last.down) * 100);
  if (last.up !== null && last.up > 0) parts.push((throughput.up / last.up) * 100);
  return parts.length === 0 ? undefined : Math.max(...parts);
}

/**
 * Whether to test the uplink now.
 * - Due when it has no result, or its last is `every` old or older; not
 *   due: `wait` until then.
 * - Due, but the last attempt was skipped or failed less than `retry` ago:
 *   `wait` for the rest of `retry`.
 * - Due, but refused (down, quota) or busy (carrying more than `busy` % of
 *   the last measured speed): `skip`, look again after `retry`.
 * - Else `run`.
 */
export function scheduleDecision(input: ScheduleInput): ScheduleDecision {
  const dueAt =
    input.lastMeasuredAt === undefined ? input.now : input.lastMeasuredAt + input.everyMs;
  if (dueAt > input.now) return { kind: "wait", inMs: dueAt - input.now };
  if (input.lastAttemptAt !== undefined && input.now - input.lastAttemptAt < input.retryMs) {
    return { kind: "wait", inMs: input.lastAttemptAt + input.retryMs - input.now };
  }
  if (input.refusal !== undefined) {
    return { kind: "skip", reason: input.refusal, inMs: input.retryMs };
  }
  const share = busyShare(input.throughput, input.last);
  if (share !== undefined && share > input.busyPercent) {
    return {
      kind: "skip",
      reason: `busy: it carries ${Math.round(share)} % of its last measured speed (more than ${input.busyPercent} %)`,
      inMs: input.retryMs,
    };
  }
  return { kind: "run" };
}

/**
 * Data usage of metered uplinks (`uplinks[].quota`) from their interface
 * counters (`/proc/net/dev`: received and transmitted bytes of both
 * families), per billing period. Pure bookkeeping: the caller samples the
 * counters, gives the time, and saves {@link QuotaMeter.snapshot}.
 *
 * Counters survive what resets them: a sample lower than the last one (the
 * interface was re-created, or the machine rebooted between two daemon
 * runs) counts the new value from zero; an interface that disappeared
 * counts its new counters in full when it is back.
 */
import { z } from "zod";
import type { QuotaConfig } from "../config/schema.js";
import { periodAt, type Period } from "./period.js";

/** Received and transmitted bytes of an interface since it was created. */
export interface Counters {
  rx: number;
  tx: number;
}

/** What is kept of one uplink between samples and across restarts. */
export interface UsageRecord {
  /** Start of the period `used` belongs to, epoch ms. */
  periodStart: number;
  /** Bytes counted in that period (by the quota's direction). */
  used: number;
  /** Counters at the last sample; null when the interface was missing (its next counters count in full). */
  last: Counters | null;
  /** Warn steps (%) already notified in this period. */
  warned: number[];
  /** `exceeded` already notified in this period. */
  exceeded: boolean;
}

/** The state file's content: one record per uplink name. */
export const usageFileSchema = z.object({
  version: z.literal(1),
  uplinks: z.record(
    z.string(),
    z.object({
      periodStart: z.number(),
      used: z.number().nonnegative(),
      last: z.object({ rx: z.number().nonnegative(), tx: z.number().nonnegative() }).nullable(),
      warned: z.array(z.number()),
      exceeded: z.boolean(),
    }),
  ),
});

/** The state file's content. */
export type UsageFile = z.infer<typeof usageFileSchema>;

/** A notification a sample calls for: a warn step reached, or the limit. */
export interface QuotaAlert {
  uplink: string;
  /** The warn step (%), or `exceeded`. */
  step: number | "exceeded";
  usedBytes: number;
  limitBytes: number;
  /** Used, % of the limit (may pass 100). */
  percent: number;
  /** ISO time the period ends. */
  periodEnd: string;
}

/** An uplink's quota in `uplinkd status --json` (`uplinks[].quota`). */
export interface QuotaStatus {
  used_bytes: number;
  limit_bytes: number;
  /** ISO time. */
  period_start: string;
  /** ISO time. */
  period_end: string;
  exceeded: boolean;
}

function counted(quota: QuotaConfig, delta: Counters): number {
  if (quota.direction === "down") return delta.rx;
  if (quota.direction === "up") return delta.tx;
  return delta.rx + delta.tx;
}

/** Bytes since `last` in one counter: a counter lower than before restarted from zero. */
function since(now: number, last: number): number {
  return now >= last ? now - last : now;
}

/** Usage of every uplink with a quota. */
export class QuotaMeter {
  readonly #records = new Map<string, UsageRecord>();

  /**
   * @param saved the state file's records (missing or unreadable: none;
   *   each uplink then counts from its counters at the first sample).
   */
  constructor(saved?: UsageFile) {
    for (const [name, record] of Object.entries(saved?.uplinks ?? {})) {
      this.#records.set(name, { ...record, warned: [...record.warned] });
    }
  }

  #record(name: string, quota: QuotaConfig, at: number): UsageRecord {
    const period = periodAt(quota, at);
    let record = this.#records.get(name);
    if (record === undefined) {
      record = { periodStart: period.start, used: 0, last: null, warned: [], exceeded: false };
      this.#records.set(name, record);
    } else if (record.periodStart !== period.start) {
      // A new period (or the period's shape changed): usage starts again.
      record.periodStart = period.start;
      record.used = 0;
      record.warned = [];
      record.exceeded = false;
    }
    return record;
  }

  /**
   * Count one sample of an uplink's interface counters.
   * @param counters null when the interface is missing now.
   * @param at epoch ms of the sample.
   * @param first true for the first sample after a start without saved
   *   counters for the uplink: it only sets the baseline.
   * @returns the notifications this sample calls for (each warn step and
   *   `exceeded` once per period).
   */
  sample(name: string, quota: QuotaConfig, counters: Counters | null, at: number): QuotaAlert[] {
    const fresh = !this.#records.has(name);
    const record = this.#record(name, quota, at);
    if (counters === null) {
      record.last = null;
      return [];
    }
    if (fresh) {
      // No saved state: count from the counters as they are now.
      record.last = { ...counters };
      return [];
    }
    const last = record.last ?? { rx: 0, tx: 0 };
    record.used += counted(quota, {
      rx: since(counters.rx, last.rx),
      tx: since(counters.tx, last.tx),
    });
    record.last = { ...counters };
    return this.#alerts(name, quota, record, at);
  }

  #alerts(name: string, quota: QuotaConfig, record: UsageRecord, at: number): QuotaAlert[] {
    const alerts: QuotaAlert[] = [];
    const percent = (record.used / quota.limit) * 100;
    const end = new Date(periodAt(quota, at).end).toISOString();
    const alert = (step: number | "exceeded"): QuotaAlert => ({
      uplink: name,
      step,
      usedBytes: record.used,
      limitBytes: quota.limit,
      percent,
      periodEnd: end,
    });
    for (const step of [...quota.warn].sort((a, b) => a - b)) {
      if (percent >= step && !record.warned.includes(step) && step < 100) {
        record.warned.push(step);
        if (record.used < quota.limit) alerts.push(alert(step));
      }
    }
    if (record.used >= quota.limit && !record.exceeded) {
      record.exceeded = true;
      alerts.push(alert("exceeded"));
    }
    return alerts;
  }

  /**
   * Set the usage of the period holding `at` (`uplinkd quota UPLINK --set
   * BYTES`, or `--reset`: 0). Warn steps and `exceeded` below the new usage
   * count as notified; those above may be notified again.
   */
  set(name: string, quota: QuotaConfig, bytes: number, at: number): void {
    const record = this.#record(name, quota, at);
    record.used = bytes;
    const percent = (bytes / quota.limit) * 100;
    record.warned = quota.warn.filter((step) => percent >= step);
    record.exceeded = bytes >= quota.limit;
  }

  /** Whether the uplink has used its allowance in the period holding `at`. */
  exceeded(name: string, quota: QuotaConfig, at: number): boolean {
    const record = this.#records.get(name);
    if (record === undefined) return false;
    return record.periodStart === periodAt(quota, at).start && record.used >= quota.limit;
  }

  /** The uplink's quota for status, in the period holding `at`. */
  status(name: string, quota: QuotaConfig, at: number): QuotaStatus {
    const period: Period = periodAt(quota, at);
    const record = this.#records.get(name);
    const used = record?.periodStart === period.start ? record.used : 0;
    return {
      used_bytes: used,
      limit_bytes: quota.limit,
      period_start: new Date(period.start).toISOString(),
      period_end: new Date(period.end).toISOString(),
      exceeded: used >= quota.limit,
    };
  }

  /**
   * Forget uplinks that no longer have a quota (after a reload).
   * @param names the uplinks with a quota now.
   */
  keepOnly(names: ReadonlySet<string>): void {
    for (const name of this.#records.keys()) if (!names.has(name)) this.#records.delete(name);
  }

  /** What to save: every record. */
  snapshot(): UsageFile {
    const uplinks: UsageFile["uplinks"] = {};
    for (const [name, r] of this.#records) {
      uplinks[name] = { ...r, last: r.last === null ? null : { ...r.last }, warned: [...r.warned] };
    }
    return { version: 1, uplinks };
  }
}

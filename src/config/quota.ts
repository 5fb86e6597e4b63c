/**
 * Data quotas of metered uplinks (`uplinks[].quota`): byte amounts with
 * units, billing periods and their reset day.
 */
import { z } from "zod";

/** Bytes per unit: SI (kB, MB, GB, TB: powers of 1000) and IEC (KiB, MiB, GiB, TiB: powers of 1024). */
const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/**
 * Parse an amount of data.
 * @param text `500MB`, `20GiB`, `1.5 GB`, `1000` (bytes); units are case-insensitive.
 * @returns whole bytes (rounded down).
 * @throws {Error} when the text is not a number followed by an optional unit.
 */
export function parseBytes(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = BYTE_UNITS[(match?.[2] ?? "").toLowerCase() || "b"];
  if (match === null || unit === undefined) {
    throw new Error(`"${text}" is not an amount of data; write e.g. 500MB, 20GiB or 1000000`);
  }
  return Math.floor(Number(match[1]) * unit);
}

/**
 * Format bytes in the largest IEC unit that keeps at least 1 (`20GiB`,
 * `1.5GiB`, `512MiB`, `900B`), with at most one decimal.
 * @param bytes >= 0.
 */
export function formatBytes(bytes: number): string {
  const units = ["TiB", "GiB", "MiB", "KiB"] as const;
  for (const [i, unit] of units.entries()) {
    const size = 1024 ** (units.length - i);
    if (bytes >= size) {
      const value = Math.round((bytes / size) * 10) / 10;
      return `${Number.isInteger(value) ? value.toFixed(0) : value.toFixed(1)}${unit}`;
    }
  }
  return `${Math.round(bytes)}B`;
}

/** Weekday names, Sunday first (as `Date#getUTCDay` counts). */
export const WEEKDAYS = [
  "sunday",
  "monday",
  "tuesday",
  "wednesday",
  "thursday",
  "friday",
  "saturday",
] as const;

/** A weekday name. */
export type Weekday = (typeof WEEKDAYS)[number];

/** An amount of data: bytes as a number, or text with a unit (`500MB`, `20GiB`). */
export const bytes = z
  .union([
    z.number().int().nonnegative(),
    z.string().regex(/^\s*\d+(?:\.\d+)?\s*[a-zA-Z]*\s*$/, "must be bytes such as 500MB or 20GiB"),
  ])
  .transform((value, ctx) => {
    if (typeof value === "number") return value;
    try {
      return parseBytes(value);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
      return z.NEVER;
    }
  });

/** `uplinks[].quota`. */
export const quotaSchema = z
  .object({
    limit: bytes
      .pipe(z.number().min(1, "must be more than 0 bytes"))
      .describe(
        "data allowance per period: 500MB, 20GiB (SI units are powers of 1000, IEC of 1024)",
      ),
    period: z
      .enum(["daily", "weekly", "monthly"])
      .default("monthly")
      .describe("length of the billing period"),
    reset_day: z
      .union([
        z.number().int().min(1).max(31),
        z.enum(WEEKDAYS, { error: "must be a weekday name such as monday" }),
      ])
      .optional()
      .describe(
        "monthly: day of the month the period starts (1-31; past the month's last day, its last day); weekly: weekday name; default 1 and monday. Periods start at 00:00 local time",
      ),
    direction: z
      .enum(["both", "down", "up"])
      .default("both")
      .describe("which bytes count: received (down), sent (up) or both"),
    warn: z
      .array(z.number().min(1).max(100))
      .default([75, 95])
      .describe("usage steps (%) that each send one notification per period"),
    when_exceeded: z
      .enum(["standby", "off"])
      .default("standby")
      .describe(
        "standby: new connections only when no other uplink is usable; off: no new connections until the period ends",
      ),
  })
  .strict()
  .superRefine((quota, ctx) => {
    const day = quota.reset_day;
    if (day === undefined) return;
    if (quota.period === "monthly" && typeof day !== "number") {
      ctx.addIssue({
        code: "custom",
        path: ["reset_day"],
        message: "with period: monthly, reset_day is a day of the month (1-31)",
      });
    } else if (quota.period === "weekly" && typeof day === "number") {
      ctx.addIssue({
        code: "custom",
        path: ["reset_day"],
        message: "with period: weekly, reset_day is a weekday name such as monday",
      });
    } else if (quota.period === "daily") {
      ctx.addIssue({
        code: "custom",
        path: ["reset_day"],
        message: "period: daily starts every day at 00:00; leave reset_day out",
      });
    }
  })
  .describe("a data allowance (metered LTE): usage from the interface's counters");

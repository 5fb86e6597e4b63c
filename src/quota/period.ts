/**
 * Billing periods of a quota: where the period that holds a moment starts
 * and ends, in the router's local time (a provider's month starts at
 * midnight where the customer lives). Pure functions.
 */
import { WEEKDAYS, type Weekday } from "../config/quota.js";

/** What a period depends on (the `period` and `reset_day` of `uplinks[].quota`). */
export interface PeriodSpec {
  period: "daily" | "weekly" | "monthly";
  /** monthly: 1..31 (default 1); weekly: a weekday name (default monday); daily: none. */
  reset_day?: number | Weekday | undefined;
}

/** One billing period: [start, end), epoch ms. */
export interface Period {
  start: number;
  end: number;
}

function daysInMonth(year: number, month: number): number {
  return new Date(year, month + 1, 0).getDate();
}

/** Local midnight of the reset day in month `month` (0-based, may overflow) of `year`, clamped to the month's last day. */
function monthStart(year: number, month: number, day: number): number {
  const first = new Date(year, month, 1);
  const y = first.getFullYear();
  const m = first.getMonth();
  return new Date(y, m, Math.min(day, daysInMonth(y, m))).getTime();
}

/**
 * The period holding the moment `at`.
 * - daily: local midnight to the next;
 * - weekly: local midnight of the last `reset_day` weekday (default monday) on or before `at`, for 7 days;
 * - monthly: local midnight of day `reset_day` (default 1; past the month's
 *   last day, that last day: 31 gives 30 April and 28 or 29 February) to
 *   the same day of the next month.
 * @param at epoch ms.
 */
export function periodAt(spec: PeriodSpec, at: number): Period {
  const now = new Date(at);
  const y = now.getFullYear();
  const m = now.getMonth();
  const d = now.getDate();
  if (spec.period === "daily") {
    return { start: new Date(y, m, d).getTime(), end: new Date(y, m, d + 1).getTime() };
  }
  if (spec.period === "weekly") {
    const weekday = WEEKDAYS.indexOf(
      typeof spec.reset_day === "string" ? spec.reset_day : "monday",
    );
    const back = (now.getDay() - weekday + 7) % 7;
    return {
      start: new Date(y, m, d - back).getTime(),
      end: new Date(y, m, d - back + 7).getTime(),
    };
  }
  const day = typeof spec.reset_day === "number" ? spec.reset_day : 1;
  const thisMonth = monthStart(y, m, day);
  if (at >= thisMonth) return { start: thisMonth, end: monthStart(y, m + 1, day) };
  return { start: monthStart(y, m - 1, day), end: thisMonth };
}

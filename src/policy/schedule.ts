/**
 * Weekly windows of rules (`rules[].schedule`): whether a rule is in force
 * at a moment, when its next window edge comes, and the same windows as
 * the kernel compares them (UTC weekday and seconds since UTC midnight, for
 * nft `meta day` and `meta hour`). Pure: the moment and the time zone's
 * offset are passed in; {@link zoneOffsetMinutes} reads the offset from
 * the ICU data of Node.js (Intl), no clock.
 *
 * Kernel facts (net/netfilter/nft_meta.c; tried with nft 1.0.6 on Linux
 * 6.18): `meta hour` is the seconds since midnight UTC of the packet's
 * arrival (time64_to_tm with offset 0); `meta day` is the weekday (0 =
 * Sunday) of the real time less the kernel's time zone (`sys_tz`, set with
 * settimeofday: 0 unless the hardware clock keeps local time). nft turns a
 * quoted `"08:00"` into UTC with the offset of its own TZ at the moment it
 * loads the rule, but takes a bare number as UTC seconds: uplinkd writes
 * numbers, converted by itself, so nft's TZ plays no part.
 */
import { DAY_NAMES, type ScheduleWindow } from "../config/schedule.js";

/** Minutes in a day and in a week. */
const DAY = 1440;
const WEEK = 7 * DAY;
/** 1970-01-01 was a Thursday (4 with Sunday as 0). */
const EPOCH_WEEKDAY = 4;

/** One piece of a schedule as the kernel compares it: UTC weekdays and a range of UTC seconds of the day. */
export interface KernelWindow {
  /** Weekdays, 0 = Sunday (nft `meta day`), ascending. */
  days: number[];
  /** First second of the range, 0..86399 (nft `meta hour`). */
  from: number;
  /** Last second of the range, inclusive, from..86399. */
  to: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The router's local time zone as Node.js resolves it (TZ, else /etc/localtime). */
export function localTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/**
 * The UTC offset of `timeZone` at `atMs`, minutes east of UTC (Berlin in
 * winter: 60; New York in summer: -240), from the ICU data of Node.js.
 * @param timeZone an IANA name; undefined: the router's local time zone.
 * @param atMs epoch ms.
 * @throws {RangeError} for an unknown time zone (the config refuses those).
 */
export function zoneOffsetMinutes(timeZone: string | undefined, atMs: number): number {
  const zone = timeZone ?? localTimeZone();
  let format = formatters.get(zone);
  if (format === undefined) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(zone, format);
  }
  const parts: Record<string, number> = {};
  for (const part of format.formatToParts(new Date(atMs))) {
    if (part.type !== "literal") parts[part.type] = Number(part.value);
  }
  const asUtc = Date.UTC(
    parts.year ?? 1970,
    (parts.month ?? 1) - 1,
    parts.day ?? 1,
    parts.hour ?? 0,
    parts.minute ?? 0,
    parts.second ?? 0,
  );
  const wholeSeconds = Math.floor(atMs / 1000) * 1000;
  return Math.round((asUtc - wholeSeconds) / 60_000);
}

/** Minutes into the week (0 = Sunday 00:00) of `atMs` at UTC offset `offsetMinutes`, with fractions. */
export function weekMinute(atMs: number, offsetMinutes: number): number {
  const minutes = atMs / 60_000 + offsetMinutes + EPOCH_WEEKDAY * DAY;
  return ((minutes % WEEK) + WEEK) % WEEK;
}

/** The windows as [start, end) minutes into the local week; an end may pass the week's end (up to 2 weeks). */
function intervals(windows: readonly ScheduleWindow[]): [number, number][] {
  return windows.flatMap((w) =>
    w.days.map((day): [number, number] => {
      const start = DAY_NAMES.indexOf(day) * DAY + w.from;
      const length = w.to > w.from ? w.to - w.from : w.to + DAY - w.from;
      return [start, start + length];
    }),
  );
}

/**
 * Whether a moment is inside one of `windows`.
 * @param atMs epoch ms.
 * @param offsetMinutes the time zone's UTC offset at `atMs` ({@link zoneOffsetMinutes}).
 */
export function inWindows(
  windows: readonly ScheduleWindow[],
  atMs: number,
  offsetMinutes: number,
): boolean {
  const w = weekMinute(atMs, offsetMinutes);
  return intervals(windows).some(([s, e]) => (w >= s && w < e) || (w + WEEK >= s && w + WEEK < e));
}

/**
 * Epoch ms of the next window edge after `atMs` (a start or an end of one
 * of `windows`, whether or not it changes whether the rule is in force),
 * at the offset `offsetMinutes` (a change of offset moves the edges: the
 * caller looks again then). Always within a week.
 */
export function nextEdge(
  windows: readonly ScheduleWindow[],
  atMs: number,
  offsetMinutes: number,
): number {
  const w = weekMinute(atMs, offsetMinutes);
  let best = WEEK;
  for (const [s, e] of intervals(windows)) {
    for (const edge of [s % WEEK, e % WEEK]) {
      let delta = (((edge - w) % WEEK) + WEEK) % WEEK;
      if (delta < 1 / 60_000) delta += WEEK;
      best = Math.min(best, delta);
    }
  }
  return atMs + Math.round(best * 60_000);
}

/**
 * Epoch ms of the first change of `timeZone`'s UTC offset in (atMs, atMs +
 * withinMs], to the second; undefined when there is none (a daylight
 * saving time change is seen within the same hour of the ICU data).
 */
export function nextOffsetChange(
  timeZone: string | undefined,
  atMs: number,
  withinMs: number,
): number | undefined {
  const now = zoneOffsetMinutes(timeZone, atMs);
  if (zoneOffsetMinutes(timeZone, atMs + withinMs) === now) return undefined;
  let low = atMs;
  let high = atMs + withinMs;
  while (high - low > 1000) {
    const mid = Math.floor((low + high) / 2);
    if (zoneOffsetMinutes(timeZone, mid) === now) low = mid;
    else high = mid;
  }
  // Offsets change on a whole second: the first one after `low`.
  return Math.floor(low / 1000) * 1000 + 1000;
}

/**
 * The windows as the kernel compares them: each window moved to UTC with
 * `offsetMinutes`, cut at UTC midnights, merged per day, then pieces with
 * the same range of the day grouped. Exact while the offset holds: a
 * change of offset (daylight saving time) needs them rendered again.
 *
 * @param offsetMinutes the time zone's UTC offset, minutes east.
 * @returns pieces sorted by range, each with its days ascending.
 */
export function kernelWindows(
  windows: readonly ScheduleWindow[],
  offsetMinutes: number,
): KernelWindow[] {
  const perDay: [number, number][][] = Array.from({ length: 7 }, () => []);
  for (const [s, e] of intervals(windows)) {
    let start = s - offsetMinutes;
    let end = e - offsetMinutes;
    const shift = Math.floor(start / WEEK) * WEEK;
    start -= shift;
    end -= shift;
    while (start < end) {
      const dayStart = Math.floor(start / DAY) * DAY;
      const pieceEnd = Math.min(end, dayStart + DAY);
      const day = (dayStart / DAY) % 7;
      perDay[day]?.push([start - dayStart, pieceEnd - dayStart]);
      start = pieceEnd;
    }
  }
  const groups = new Map<string, KernelWindow>();
  perDay.forEach((pieces, day) => {
    pieces.sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const [s, e] of pieces) {
      const last = merged.at(-1);
      if (last !== undefined && s <= last[1]) last[1] = Math.max(last[1], e);
      else merged.push([s, e]);
    }
    for (const [s, e] of merged) {
      const key = `${s}-${e}`;
      const group = groups.get(key) ?? { days: [], from: s * 60, to: e * 60 - 1 };
      group.days.push(day);
      groups.set(key, group);
    }
  });
  return [...groups.values()].sort((a, b) => a.from - b.from || a.to - b.to);
}

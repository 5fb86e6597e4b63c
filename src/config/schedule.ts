/**
 * Config pieces for devices and time in rules: `src_mac` (a LAN device by
 * its Ethernet address) and `schedule` (weekly windows of local time), and
 * the top-level `time_zone` the windows are read in.
 */
import { z } from "zod";

/** Day names of a window, Sunday first (the numbering of nft's `meta day`: 0 = Sunday). */
export const DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;
/** A day name of a window. */
export type DayName = (typeof DAY_NAMES)[number];

/** Full day names, read as their short form (`monday` is `mon`). */
const FULL_DAY_NAMES: Readonly<Record<string, DayName>> = {
  sunday: "sun",
  monday: "mon",
  tuesday: "tue",
  wednesday: "wed",
  thursday: "thu",
  friday: "fri",
  saturday: "sat",
};

/**
 * An Ethernet (MAC) address `aa:bb:cc:dd:ee:ff`, six pairs of hex digits
 * separated by `:` (or `-`), any case; read in lower case with `:`.
 */
export const macAddress = z
  .string()
  .regex(
    /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/,
    "must be a MAC address such as aa:bb:cc:dd:ee:ff (six pairs of hex digits)",
  )
  .transform((mac) => mac.toLowerCase().replaceAll("-", ":"));

/** A day of a window: `mon`..`sun` or `monday`..`sunday`, any case; read as the short form. */
export const dayName = z.string().transform((text, ctx): DayName => {
  const lower = text.toLowerCase();
  const day = (DAY_NAMES as readonly string[]).includes(lower)
    ? (lower as DayName)
    : FULL_DAY_NAMES[lower];
  if (day === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `"${text}" is not a day: one of ${DAY_NAMES.join(", ")} (or monday, tuesday, ...)`,
    });
    return z.NEVER;
  }
  return day;
});

/**
 * A time of day `HH:MM` (24 hours, `00:00`..`23:59`; `24:00` only as a
 * window's end), read as minutes since midnight.
 */
export function timeOfDay(options: { end: boolean }) {
  return z.string().transform((text, ctx): number => {
    const match = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(text);
    if (match === null) {
      if (options.end && text === "24:00") return 1440;
      ctx.addIssue({
        code: "custom",
        message: `"${text}" is not a time of day: HH:MM, 00:00 to 23:59${options.end ? " (or 24:00)" : ""}, in quotes`,
      });
      return z.NEVER;
    }
    return Number(match[1]) * 60 + Number(match[2]);
  });
}

/**
 * One window of a schedule: from `from` to `to` on each of `days`, in the
 * schedule's time zone. A window whose `to` is not after its `from` runs
 * across midnight into the next day (`from: "22:00", to: "06:00"` on `fri`
 * ends on Saturday 06:00).
 */
export const windowSchema = z
  .object({
    days: z
      .array(dayName)
      .min(1)
      .default([...DAY_NAMES])
      .describe("days the window starts on: mon, tue, wed, thu, fri, sat, sun; default every day"),
    from: timeOfDay({ end: false }).describe("start, HH:MM local time"),
    to: timeOfDay({ end: true }).describe(
      "end, HH:MM local time (not included; 24:00 is midnight); not after from: the window ends on the next day",
    ),
  })
  .strict()
  .superRefine((window, ctx) => {
    if (window.from === window.to) {
      ctx.addIssue({
        code: "custom",
        path: ["to"],
        message:
          'to must differ from from (a whole day is from: "00:00", to: "24:00"; a rule that always applies needs no schedule)',
      });
    }
  });

/** A validated window: days by short name, `from` and `to` in minutes since midnight (`to` up to 1440). */
export type ScheduleWindow = z.output<typeof windowSchema>;

/**
 * Whether `name` is a time zone this Node.js knows (an IANA name such as
 * `Europe/Berlin`, or `UTC`), from its ICU data.
 */
export function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** An IANA time zone name (`Europe/Berlin`, `America/New_York`, `UTC`). */
export const timeZone = z
  .string()
  .refine(isTimeZone, "must be an IANA time zone name such as Europe/Berlin or UTC");

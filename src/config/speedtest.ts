/**
 * Speed tests of uplinks: the `speedtest` section (where to download from
 * and upload to, how long, how often) and `uplinks[].bandwidth` with
 * `auto` (the capacity a speed test measured instead of a typed figure).
 */
import { z } from "zod";
import { duration } from "./duration.js";
import { rate } from "./rate.js";

/** A direction of a line: `down` is what the uplink's interface receives, `up` what it sends. */
export type Direction = "down" | "up";

/** `http://` or `https://` URL. */
const httpUrl = z
  .string()
  .refine((text) => {
    try {
      const url = new URL(text);
      return url.protocol === "http:" || url.protocol === "https:";
    } catch {
      return false;
    }
  }, "must be an http:// or https:// URL")
  .meta({ description: "http:// or https:// URL" });

/** The `speedtest` section. */
export const speedtestSchema = z
  .object({
    download_url: httpUrl
      .optional()
      .describe(
        "URL whose body is downloaded, several times at once, for the download test (a large file; the test stops after `duration`)",
      ),
    upload_url: httpUrl
      .optional()
      .describe(
        "URL that accepts POST bodies (they are discarded) for the upload test; the test stops after `duration`",
      ),
    duration: duration
      .pipe(z.number().min(1000, "must be at least 1s").max(120_000, "must be at most 2m"))
      .default(10_000)
      .describe("how long each direction is measured"),
    streams: z
      .number()
      .int()
      .min(1)
      .max(32)
      .default(4)
      .describe("parallel connections per direction"),
    every: duration
      .pipe(z.number().min(60_000, "must be at least 1m"))
      .default(86_400_000)
      .describe("how often the daemon measures uplinks with `bandwidth: auto` (and once at start)"),
    busy: z
      .number()
      .min(0)
      .max(100)
      .default(20)
      .describe(
        "% of its last measured speed above which an uplink counts as busy: a scheduled test waits for a quiet moment",
      ),
    retry: duration
      .pipe(z.number().min(1000, "must be at least 1s"))
      .default(600_000)
      .describe(
        "how long a scheduled test waits after it was skipped (uplink busy or down) or failed",
      ),
  })
  .strict()
  .describe(
    "speed tests of uplinks (`uplinkd speedtest UPLINK`, `bandwidth: auto`); no URLs by default",
  );

/** The `speedtest` section with every default filled in (durations in ms). */
export type SpeedtestConfig = z.output<typeof speedtestSchema>;

/** A direction's capacity: a rate, or `auto` (measured by speed tests). */
const rateOrAuto = z.union([z.literal("auto"), rate]);

/** `uplinks[].bandwidth` as parsed: configured rates (bits/s) and the directions measured by speed tests. */
export interface BandwidthConfig {
  /** Download capacity, bits per second; undefined when not configured (or `auto`). */
  down?: number;
  /** Upload capacity, bits per second; undefined when not configured (or `auto`). */
  up?: number;
  /** Directions written as `auto`: their capacity comes from the last speed test. */
  auto: Direction[];
}

/**
 * `uplinks[].bandwidth`: `auto` (both directions measured), or
 * `{ down, up }` where each is a rate (`100mbit`) or `auto`.
 */
export const bandwidthSchema = z
  .union([
    z.literal("auto"),
    z
      .object({
        down: rateOrAuto.optional().describe("download capacity, e.g. 100mbit, or auto"),
        up: rateOrAuto.optional().describe("upload capacity, e.g. 20mbit, or auto"),
      })
      .strict()
      .refine((b) => b.down !== undefined || b.up !== undefined, "give down, up or both"),
  ])
  .transform((value): BandwidthConfig => {
    if (value === "auto") return { auto: ["down", "up"] };
    const out: BandwidthConfig = { auto: [] };
    for (const direction of ["down", "up"] as const) {
      const v = value[direction];
      if (v === "auto") out.auto.push(direction);
      else if (v !== undefined) out[direction] = v;
    }
    return out;
  })
  .describe(
    "the line's capacity (tc units: 100mbit, 20mbit), or auto (measured by speed tests); policies with balance least-used or spillover need it",
  );

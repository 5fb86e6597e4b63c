/**
 * Speed test results: their shape (the control API's answer and what
 * `state_dir/speedtest.json` keeps per uplink), the state file's parsing,
 * and the capacity the balancer uses for `bandwidth: auto`. Pure.
 */
import { join } from "node:path";
import { z } from "zod";
import type { Config, UplinkConfig } from "../config/schema.js";

/** One speed test of one uplink (`uplinkd speedtest UPLINK --json`, and the state file). */
export const speedtestResultSchema = z.object({
  uplink: z.string(),
  /** ISO time the test ended. */
  measured_at: z.string(),
  /** Download rate, bits per second; null when not measured (no download_url) or nothing arrived. */
  down: z.number().nonnegative().nullable(),
  /** Upload rate, bits per second; null when not measured. */
  up: z.number().nonnegative().nullable(),
  /** The uplink's RTT before the test (its health probes' mean), ms; null when unknown. */
  rtt_idle_ms: z.number().nonnegative().nullable(),
  /** Median RTT to the uplink's first health target during the download, ms (bufferbloat: compare with idle). */
  rtt_down_ms: z.number().nonnegative().nullable(),
  /** Median RTT to the health target during the upload, ms. */
  rtt_up_ms: z.number().nonnegative().nullable(),
  /** Bytes received by the download streams. */
  bytes_down: z.number().nonnegative(),
  /** Bytes sent by the upload streams. */
  bytes_up: z.number().nonnegative(),
  /** Time each direction ran, ms. */
  duration_ms: z.number().nonnegative(),
  /** Parallel connections per direction. */
  streams: z.number().int().positive(),
});

/** One speed test of one uplink. */
export type SpeedtestResult = z.infer<typeof speedtestResultSchema>;

/** `state_dir/speedtest.json`: the last result of each uplink. */
export const speedtestStateSchema = z.object({
  version: z.literal(1),
  uplinks: z.record(z.string(), speedtestResultSchema),
});

/** The state file's content. */
export type SpeedtestState = z.infer<typeof speedtestStateSchema>;

/** The state file in `state_dir`. */
export function speedtestFile(config: Pick<Config, "state_dir">): string {
  return join(config.state_dir, "speedtest.json");
}

/**
 * Parse the state file's text.
 * @throws {SyntaxError} when it is not JSON.
 * @throws {z.ZodError} when its shape is not a version-1 state.
 */
export function parseSpeedtestState(text: string): SpeedtestState {
  return speedtestStateSchema.parse(JSON.parse(text));
}

/** An uplink's capacity in `uplinkd status --json` (`uplinks[].bandwidth`). */
export interface BandwidthStatus {
  /** Download capacity used for balancing, bits per second; null when unknown. */
  down: number | null;
  /** Upload capacity, bits per second; null when unknown. */
  up: number | null;
  /** ISO time of the speed test the `auto` figures come from; null when none yet (or none is `auto`). */
  measured_at: string | null;
  /** `speedtest` when some direction is `auto` and measured, else `config`. */
  source: "config" | "speedtest";
}

/**
 * Capacity an `auto` direction counts with before any test measured it:
 * the mean of the other uplinks' known capacities in that direction, or
 * this figure (bits per second) when none is known, so that unmeasured
 * uplinks share equally.
 */
export const UNMEASURED_BPS = 100e6;

/** A direction's measured rate from a result, when positive. */
function measured(
  result: SpeedtestResult | undefined,
  direction: "down" | "up",
): number | undefined {
  const value = result?.[direction];
  return value === null || value === undefined || value <= 0 ? undefined : value;
}

/**
 * The capacity of each direction of `uplink` for balancing: the configured
 * rate, or for an `auto` direction the last test's; undefined when the
 * direction has neither.
 */
function known(
  uplink: UplinkConfig,
  result: SpeedtestResult | undefined,
): { down?: number; up?: number } {
  const bandwidth = uplink.bandwidth;
  if (bandwidth === undefined) return {};
  const out: { down?: number; up?: number } = {};
  for (const direction of ["down", "up"] as const) {
    const value = bandwidth.auto.includes(direction)
      ? measured(result, direction)
      : bandwidth[direction];
    if (value !== undefined) out[direction] = value;
  }
  return out;
}

/**
 * `config` with every `auto` bandwidth filled in: the last speed test's
 * rate, else (not measured yet) the mean of the other uplinks' known
 * capacities in that direction, else {@link UNMEASURED_BPS}. Returns
 * `config` itself when no uplink has `auto`.
 * @param results the last result of an uplink, by name.
 */
export function withMeasuredBandwidth(
  config: Config,
  results: (uplink: string) => SpeedtestResult | undefined,
): Config {
  if (!config.uplinks.some((u) => (u.bandwidth?.auto.length ?? 0) > 0)) return config;
  const all = config.uplinks.map((u) => known(u, results(u.name)));
  const fallback = (direction: "down" | "up"): number => {
    const values = all.flatMap((k) => (k[direction] === undefined ? [] : [k[direction]]));
    return values.length === 0 ? UNMEASURED_BPS : values.reduce((a, b) => a + b, 0) / values.length;
  };
  return {
    ...config,
    uplinks: config.uplinks.map((u, i) => {
      const bandwidth = u.bandwidth;
      if (bandwidth === undefined || bandwidth.auto.length === 0) return u;
      const filled = { ...bandwidth, ...all[i] };
      for (const direction of bandwidth.auto) filled[direction] ??= fallback(direction);
      return { ...u, bandwidth: filled };
    }),
  };
}

/**
 * An uplink's capacity for status: what balancing uses (configured, or
 * measured for `auto`; an unmeasured `auto` direction is null) and where it
 * comes from. Null when the uplink has no `bandwidth`.
 */
export function bandwidthStatus(
  uplink: UplinkConfig,
  result: SpeedtestResult | undefined,
): BandwidthStatus | null {
  const bandwidth = uplink.bandwidth;
  if (bandwidth === undefined) return null;
  const k = known(uplink, result);
  const fromTest = bandwidth.auto.some((d) => k[d] !== undefined);
  return {
    down: k.down ?? null,
    up: k.up ?? null,
    measured_at: bandwidth.auto.length > 0 ? (result?.measured_at ?? null) : null,
    source: fromTest ? "speedtest" : "config",
  };
}

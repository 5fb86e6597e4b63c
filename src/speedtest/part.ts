/**
 * The daemon's speed test part: runs tests (one at a time) on request
 * (`uplinkd speedtest UPLINK`) and on schedule for uplinks with `bandwidth:
 * auto` (see ./schedule.ts), keeps each uplink's last result in
 * `state_dir/speedtest.json` (replaced atomically after each test), and
 * gives the config with measured capacities filled in for balancing.
 *
 * A missing or unreadable state file is logged and the uplinks are
 * measured again; it never stops the daemon.
 */
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../clock.js";
import type { Config } from "../config/schema.js";
import { SpeedtestError } from "../errors.js";
import { readFileIfExists, writeFileAtomic } from "../files.js";
import { scheduleDecision } from "./schedule.js";
import {
  bandwidthStatus,
  parseSpeedtestState,
  speedtestFile,
  withMeasuredBandwidth,
  type BandwidthStatus,
  type SpeedtestResult,
} from "./state.js";

/** Options of a {@link SpeedtestPart}. */
export interface SpeedtestPartOptions {
  clock: Clock;
  log: Logger;
  /** The config now (as loaded: `auto` not filled in). */
  config: () => Config;
  /** Why the uplink cannot be tested now (down, disabled, no address, quota used up); undefined when it can. */
  refusal: (uplink: string) => string | undefined;
  /**
   * Measure the uplink (see runSpeedtest).
   * @throws {SpeedtestError} when the test failed.
   */
  measure: (uplink: string) => Promise<SpeedtestResult>;
  /** The uplink's throughput now, bits per second; undefined when unknown. */
  throughput: (uplink: string) => { down: number; up: number } | undefined;
  /** A test ended with a result (the capacities may have changed). Must not throw. */
  onResult: (result: SpeedtestResult) => void;
  /** Writes a file atomically (default {@link writeFileAtomic}). */
  write?: (path: string, text: string) => Promise<void>;
  /** Reads a file, undefined when missing (default {@link readFileIfExists}). */
  read?: (path: string) => Promise<string | undefined>;
}

/**
 * The results `state_dir/speedtest.json` holds (for `uplinkd plan` without
 * a daemon); none when it is missing or unreadable. Never throws.
 */
export async function readSavedSpeedtests(
  config: Pick<Config, "state_dir">,
  read: (path: string) => Promise<string | undefined> = readFileIfExists,
): Promise<Record<string, SpeedtestResult>> {
  try {
    const text = await read(speedtestFile(config));
    return text === undefined ? {} : parseSpeedtestState(text).uplinks;
  } catch {
    return {};
  }
}

/** Longest wait between two looks at the schedule, ms (a reload or a clock jump is seen within it). */
const MAX_WAIT_MS = 60_000;

/** The speed test part. The constructor starts nothing. */
export class SpeedtestPart {
  readonly #options: SpeedtestPartOptions;
  readonly #results = new Map<string, SpeedtestResult>();
  /** Uplink -> epoch ms a scheduled test was skipped as busy or failed. */
  readonly #attempts = new Map<string, number>();
  #running: string | undefined;
  #timer: TimerHandle | undefined;
  #stopped = true;
  #effective: { config: Config; version: number; result: Config } | undefined;
  #version = 0;

  constructor(options: SpeedtestPartOptions) {
    this.#options = options;
  }

  /** Load the saved results and start the schedule. Never throws. */
  async start(): Promise<void> {
    this.#stopped = false;
    const file = speedtestFile(this.#options.config());
    try {
      const text = await (this.#options.read ?? readFileIfExists)(file);
      if (text !== undefined) {
        for (const [name, result] of Object.entries(parseSpeedtestState(text).uplinks)) {
          this.#results.set(name, result);
        }
        this.#version++;
      }
    } catch (error) {
      this.#options.log.warn(
        { file, err: error },
        `speed test results in ${file} are unreadable; uplinks with bandwidth auto are measured again: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    this.wake();
  }

  /** Stop the schedule (a running test finishes on its own). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Look at the schedule now (at start, after a reload, when an uplink comes up). */
  wake(): void {
    if (this.#stopped) return;
    this.#after(0);
  }

  #after(ms: number): void {
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = this.#options.clock.setTimeout(
      () => {
        this.#timer = undefined;
        void this.#tick();
      },
      Math.min(MAX_WAIT_MS, Math.max(0, ms)),
    );
  }

  /** Each uplink with `auto` whose test is due and possible runs, one after another; then the next look. */
  async #tick(): Promise<void> {
    if (this.#stopped || this.#running !== undefined) return;
    const config = this.#options.config();
    const speedtest = config.speedtest;
    let next = MAX_WAIT_MS;
    for (const uplink of config.uplinks) {
      if (speedtest === undefined || (uplink.bandwidth?.auto.length ?? 0) === 0) continue;
      const last = this.#results.get(uplink.name);
      const measuredAt = last === undefined ? undefined : Date.parse(last.measured_at);
      const decision = scheduleDecision({
        now: this.#options.clock.wall(),
        lastMeasuredAt: Number.isNaN(measuredAt) ? undefined : measuredAt,
        last,
        lastAttemptAt: this.#attempts.get(uplink.name),
        throughput: this.#options.throughput(uplink.name),
        refusal: this.#options.refusal(uplink.name),
        everyMs: speedtest.every,
        retryMs: speedtest.retry,
        busyPercent: speedtest.busy,
      });
      if (decision.kind === "run") {
        try {
          await this.run(uplink.name, "schedule");
          next = 0;
        } catch {
          // Logged by run; tried again after `retry`.
          this.#attempts.set(uplink.name, this.#options.clock.wall());
          next = Math.min(next, speedtest.retry);
        }
        if (this.#halted()) return;
      } else {
        if (decision.kind === "skip") {
          this.#options.log.debug(
            { uplink: uplink.name },
            `speed test of ${uplink.name} postponed: ${decision.reason}`,
          );
          // Busy: wait `retry`. Down or quota: a transition wakes the schedule sooner.
          if (decision.reason.startsWith("busy")) {
            this.#attempts.set(uplink.name, this.#options.clock.wall());
          }
        }
        next = Math.min(next, decision.inMs);
      }
    }
    if (!this.#halted()) this.#after(next);
  }

  /** Whether {@link stop} was called (read after an await). */
  #halted(): boolean {
    return this.#stopped;
  }

  /**
   * Test an uplink now and keep the result.
   * @param why `request` (`uplinkd speedtest`) or `schedule`.
   * @throws {SpeedtestError} when another test runs, the uplink cannot be
   *   tested now (its refusal), or the test failed.
   */
  async run(uplink: string, why: "request" | "schedule" = "request"): Promise<SpeedtestResult> {
    if (this.#running !== undefined) {
      throw new SpeedtestError(
        `a speed test of ${this.#running} is running; try again when it is done`,
      );
    }
    const refusal = this.#options.refusal(uplink);
    if (refusal !== undefined) {
      throw new SpeedtestError(`uplink ${uplink} is not tested: ${refusal}`);
    }
    this.#running = uplink;
    this.#options.log.info({ uplink, why }, `speed test of ${uplink} started (${why})`);
    try {
      const result = await this.#options.measure(uplink);
      this.#results.set(uplink, result);
      this.#attempts.delete(uplink);
      this.#version++;
      this.#options.log.info(
        { event: "speedtest", ...result },
        `speed test of ${uplink}: ${mbitText(result.down)} down, ${mbitText(result.up)} up, ${result.bytes_down + result.bytes_up} bytes`,
      );
      await this.#save();
      this.#options.onResult(result);
      return result;
    } catch (error) {
      this.#options.log.warn(
        { uplink, err: error },
        `speed test of ${uplink} failed: ${error instanceof Error ? error.message : String(error)}`,
      );
      throw error;
    } finally {
      this.#running = undefined;
      // A test that ran on request may have held up the schedule.
      if (why === "request") this.wake();
    }
  }

  async #save(): Promise<void> {
    const file = speedtestFile(this.#options.config());
    const text =
      JSON.stringify({ version: 1, uplinks: Object.fromEntries(this.#results) }, null, 1) + "\n";
    try {
      await (this.#options.write ?? writeFileAtomic)(file, text);
    } catch (error) {
      this.#options.log.error(
        { file, err: error },
        `saving speed test results to ${file} failed: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  /** The uplink's last result; undefined when it has none. */
  result(uplink: string): SpeedtestResult | undefined {
    return this.#results.get(uplink);
  }

  /** The uplink's capacity for status; null without `bandwidth`. */
  status(uplink: string): BandwidthStatus | null {
    const config = this.#options.config().uplinks.find((u) => u.name === uplink);
    return config === undefined ? null : bandwidthStatus(config, this.#results.get(uplink));
  }

  /**
   * `config` with `auto` bandwidths filled in from the last results (see
   * withMeasuredBandwidth); the same object for the same config until a
   * new result arrives.
   */
  effective(config: Config): Config {
    const cached = this.#effective;
    if (cached?.config === config && cached.version === this.#version) return cached.result;
    const result = withMeasuredBandwidth(config, (name) => this.#results.get(name));
    this.#effective = { config, version: this.#version, result };
    return result;
  }
}

function mbitText(bitsPerSecond: number | null): string {
  return bitsPerSecond === null ? "-" : `${(bitsPerSecond / 1e6).toFixed(1)} Mbit/s`;
}

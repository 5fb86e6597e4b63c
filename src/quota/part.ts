/**
 * The daemon's quota part: samples the interface counters of the uplinks
 * with a quota, keeps their usage in `state_dir/usage.json` (replaced
 * atomically, at most every {@link SAVE_INTERVAL_MS} and at stop), reports
 * warn steps and `exceeded` once per period, and says when an uplink's
 * exceeded state changed (the dataplane then holds it back).
 *
 * A missing or unreadable state file is logged and counting starts again
 * from the interface counters; it never stops the daemon.
 */
import { join } from "node:path";
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../clock.js";
import type { Config, QuotaConfig } from "../config/schema.js";
import { readFileIfExists, writeFileAtomic } from "../files.js";
import {
  QuotaMeter,
  usageFileSchema,
  type Counters,
  type QuotaAlert,
  type QuotaStatus,
} from "./meter.js";

/** Counters are sampled this often, ms. */
export const SAMPLE_INTERVAL_MS = 2_000;
/** The state file is written at most this often, ms. */
export const SAVE_INTERVAL_MS = 10_000;

/** The state file in `state_dir`. */
export function usageFile(config: Pick<Config, "state_dir">): string {
  return join(config.state_dir, "usage.json");
}

/** Options of a {@link QuotaPart}. */
export interface QuotaPartOptions {
  clock: Clock;
  log: Logger;
  /** The config now. */
  config: () => Config;
  /** Received/transmitted bytes per interface now (`/proc/net/dev`). */
  readCounters: () => Promise<ReadonlyMap<string, Counters>>;
  /** A warn step or the limit was reached. Must not throw. */
  onAlert: (alert: QuotaAlert) => void;
  /** The set of exceeded uplinks changed. Must not throw. */
  onExceededChange: () => void;
  /** Writes a file atomically (default {@link writeFileAtomic}). */
  write?: (path: string, text: string) => Promise<void>;
  /** Reads a file, undefined when missing (default {@link readFileIfExists}). */
  read?: (path: string) => Promise<string | undefined>;
}

/** The quota part. The constructor starts nothing. */
export class QuotaPart {
  readonly #options: QuotaPartOptions;
  #meter = new QuotaMeter();
  #timer: TimerHandle | undefined;
  #dirty = false;
  #savedAt = Number.NEGATIVE_INFINITY;
  #saving: Promise<void> | undefined;
  #exceeded = new Set<string>();
  #stopped = false;

  constructor(options: QuotaPartOptions) {
    this.#options = options;
  }

  #quotas(): [string, string, QuotaConfig][] {
    return this.#options
      .config()
      .uplinks.flatMap((u) => (u.quota === undefined ? [] : [[u.name, u.interface, u.quota]]));
  }

  /** Load the state file, take a first sample, start sampling. Never throws. */
  async start(): Promise<void> {
    const file = usageFile(this.#options.config());
    if (this.#quotas().length > 0) {
      try {
        const text = await (this.#options.read ?? readFileIfExists)(file);
        if (text === undefined) {
          this.#options.log.info({ file }, `no quota usage saved in ${file}; counting starts now`);
        } else {
          this.#meter = new QuotaMeter(usageFileSchema.parse(JSON.parse(text)));
        }
      } catch (error) {
        this.#options.log.warn(
          { file, err: error },
          `quota usage in ${file} is unreadable; counting starts again from the interface counters: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    }
    await this.sample();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = this.#options.clock.setTimeout(() => {
      void this.sample().finally(() => {
        this.#schedule();
      });
    }, SAMPLE_INTERVAL_MS);
  }

  /** Read the counters and count them; save when due. Never throws. */
  async sample(): Promise<void> {
    const quotas = this.#quotas();
    this.#meter.keepOnly(new Set(quotas.map(([name]) => name)));
    if (quotas.length === 0) return;
    let counters: ReadonlyMap<string, Counters>;
    try {
      counters = await this.#options.readCounters();
    } catch (error) {
      this.#options.log.warn({ err: error }, `quota: reading interface counters: ${String(error)}`);
      return;
    }
    const at = this.#options.clock.wall();
    for (const [name, iface, quota] of quotas) {
      for (const alert of this.#meter.sample(name, quota, counters.get(iface) ?? null, at)) {
        this.#options.log.warn(
          { event: "quota", ...alert },
          alert.step === "exceeded"
            ? `uplink ${name} used its quota (${alert.usedBytes} of ${alert.limitBytes} bytes); ${quota.when_exceeded} until ${alert.periodEnd}`
            : `uplink ${name} used ${alert.step}% of its quota (${alert.usedBytes} of ${alert.limitBytes} bytes)`,
        );
        this.#options.onAlert(alert);
      }
    }
    this.#dirty = true;
    this.#checkExceeded();
    if (at - this.#savedAt >= SAVE_INTERVAL_MS) await this.save();
  }

  #checkExceeded(): void {
    const now = new Set(this.exceeded().keys());
    const changed =
      now.size !== this.#exceeded.size || [...now].some((n) => !this.#exceeded.has(n));
    this.#exceeded = now;
    if (changed) this.#options.onExceededChange();
  }

  /** Uplinks that used their allowance in this period -> what happens to them. */
  exceeded(): Map<string, "standby" | "off"> {
    const at = this.#options.clock.wall();
    return new Map(
      this.#quotas()
        .filter(([name, , quota]) => this.#meter.exceeded(name, quota, at))
        .map(([name, , quota]) => [name, quota.when_exceeded]),
    );
  }

  /** An uplink's quota for status: null without one. */
  status(uplink: string): QuotaStatus | null {
    const quota = this.#options.config().uplinks.find((u) => u.name === uplink)?.quota;
    if (quota === undefined) return null;
    return this.#meter.status(uplink, quota, this.#options.clock.wall());
  }

  /**
   * Set an uplink's usage in this period (`uplinkd quota UPLINK --set BYTES`, `--reset`: 0); saved at once.
   * @returns the quota afterwards, or undefined when the uplink has no quota.
   */
  async set(uplink: string, bytes: number): Promise<QuotaStatus | undefined> {
    const quota = this.#options.config().uplinks.find((u) => u.name === uplink)?.quota;
    if (quota === undefined) return undefined;
    this.#meter.set(uplink, quota, bytes, this.#options.clock.wall());
    this.#options.log.info({ uplink, bytes }, `quota usage of ${uplink} set to ${bytes} bytes`);
    this.#dirty = true;
    this.#checkExceeded();
    await this.save();
    return this.status(uplink) ?? undefined;
  }

  /** Write the state file now when something changed since the last write. Never throws. */
  async save(): Promise<void> {
    await this.#saving;
    if (!this.#dirty) return;
    this.#dirty = false;
    this.#savedAt = this.#options.clock.wall();
    const file = usageFile(this.#options.config());
    const text = JSON.stringify(this.#meter.snapshot()) + "\n";
    this.#saving = (this.#options.write ?? writeFileAtomic)(file, text)
      .catch((error: unknown) => {
        this.#dirty = true;
        this.#options.log.error(
          { file, err: error },
          `saving quota usage to ${file} failed: ${error instanceof Error ? error.message : String(error)}`,
        );
      })
      .finally(() => {
        this.#saving = undefined;
      });
    await this.#saving;
  }

  /** Stop sampling; a last sample and save. Never throws. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    if (this.#quotas().length === 0) return;
    await this.sample();
    await this.save();
  }
}

/**
 * Traffic per uplink for status, metrics and the dashboard: connections now
 * (conntrack entries by mark) and bytes through each interface. Connections
 * are kept from conntrack events in the background (Kernel.watchConntrack),
 * so reading them costs nothing and never waits for a dump of the table;
 * interface bytes are read from `/proc/net/dev` on demand, at most once per
 * second, so a scrape every second and a dashboard open in three browsers
 * cost one small file read per second.
 */
import { readFile } from "node:fs/promises";
import type { ConntrackCounts, Kernel } from "../kernel/types.js";
import { parseProcNetDev, type InterfaceBytes } from "../net/dev.js";

export { parseProcNetDev, type InterfaceBytes };

/** Options of a {@link TrafficSampler}. */
export interface TrafficSamplerOptions {
  /** A byte sample younger than this is reused, ms (default 1000; at least 1000). */
  maxAgeMs?: number;
  /** Reads `/proc/net/dev` (tests pass a fake). */
  readNetDev?: () => Promise<string>;
  /** Milliseconds clock (default Date.now). */
  now?: () => number;
  /** Called when a read fails; the old sample stays. */
  onError?: (error: unknown) => void;
  /** Restarts of `conntrack`, lost events, failed dumps (from the watcher). */
  onNote?: (level: "info" | "warn", message: string) => void;
}

/**
 * Connections per mark from a conntrack watcher (started by `start()`,
 * stopped by `stop()`) and interface byte counters sampled at most once
 * per `maxAgeMs`. Concurrent `refresh()` calls share one read.
 */
export class TrafficSampler {
  #bytes = new Map<string, InterfaceBytes>();
  #at = Number.NEGATIVE_INFINITY;
  #pending: Promise<void> | undefined;
  #haveBytes = false;
  #mask: number | undefined;
  readonly #conntrack: ConntrackCounts;
  readonly #maxAgeMs: number;
  readonly #readNetDev: () => Promise<string>;
  readonly #now: () => number;

  constructor(
    kernel: Pick<Kernel, "watchConntrack">,
    private readonly options: TrafficSamplerOptions = {},
  ) {
    this.#conntrack = kernel.watchConntrack(options.onNote);
    this.#maxAgeMs = Math.max(1000, options.maxAgeMs ?? 1000);
    this.#readNetDev = options.readNetDev ?? (() => readFile("/proc/net/dev", "utf8"));
    this.#now = options.now ?? Date.now;
  }

  /** Starts following conntrack (a `conntrack -E` child and a first dump in the background). */
  start(): void {
    this.#conntrack.start();
  }

  /** Stops the conntrack watcher and its children. */
  async stop(): Promise<void> {
    await this.#conntrack.stop();
  }

  /**
   * Takes `mask` for the connection counts and re-reads the byte counters
   * unless the last sample is younger than `maxAgeMs`. Never waits for
   * conntrack and never throws: a failed read is reported to `onError` and
   * the bytes keep their last sample (null before the first good one).
   * @param mask the fwmark mask (config `dataplane.mark_mask`).
   */
  refresh(mask: number): Promise<void> {
    this.#mask = mask;
    if (this.#now() - this.#at < this.#maxAgeMs) return Promise.resolve();
    this.#pending ??= this.#read().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async #read(): Promise<void> {
    try {
      const netDev = await this.#readNetDev();
      this.#bytes = parseProcNetDev(netDev);
      this.#haveBytes = true;
    } catch (error) {
      this.options.onError?.(error);
    } finally {
      this.#at = this.#now();
    }
  }

  /**
   * Conntrack entries carrying `mark` (already masked with the mask of the
   * last `refresh`) now; null before a refresh or before the watcher's
   * first count.
   */
  connections(mark: number): number | null {
    if (this.#mask === undefined) return null;
    const counts = this.#conntrack.countsByMark(this.#mask);
    return counts === null ? null : (counts.get(mark >>> 0) ?? 0);
  }

  /** Byte counters of an interface at the last sample; null before one or when it is missing. */
  bytes(iface: string): InterfaceBytes | null {
    return this.#haveBytes ? (this.#bytes.get(iface) ?? null) : null;
  }
}

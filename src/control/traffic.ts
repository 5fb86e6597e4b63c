/**
 * Traffic per uplink for status, metrics and the dashboard: connections now
 * (conntrack entries by mark) and bytes through each interface. Both are
 * read on demand and cached, so a scrape every second and a dashboard open
 * in three browsers cost one `conntrack -L` per second at most.
 */
import { readFile } from "node:fs/promises";
import type { Kernel } from "../kernel/types.js";

/** Bytes through one interface since it was created (kernel counters). */
export interface InterfaceBytes {
  /** Received, bytes. */
  rx: number;
  /** Transmitted, bytes. */
  tx: number;
}

/**
 * Parses `/proc/net/dev`: interface -> received and transmitted bytes.
 * `/proc/net` is the reading process's network namespace (unlike `/sys`,
 * which shows the namespace of whoever mounted it).
 */
export function parseProcNetDev(text: string): Map<string, InterfaceBytes> {
  const out = new Map<string, InterfaceBytes>();
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    const rx = fields[0];
    const tx = fields[8];
    if (name === "" || rx === undefined || tx === undefined || Number.isNaN(rx + tx)) continue;
    out.set(name, { rx, tx });
  }
  return out;
}

/** Options of a {@link TrafficSampler}. */
export interface TrafficSamplerOptions {
  /** A sample younger than this is reused, ms (default 1000; at least 1000). */
  maxAgeMs?: number;
  /** Reads `/proc/net/dev` (tests pass a fake). */
  readNetDev?: () => Promise<string>;
  /** Milliseconds clock (default Date.now). */
  now?: () => number;
  /** Called when a read fails; the old sample stays. */
  onError?: (error: unknown) => void;
}

/**
 * Samples conntrack entries by mark and interface byte counters, at most
 * once per `maxAgeMs`. Concurrent `refresh()` calls share one read.
 */
export class TrafficSampler {
  #connections = new Map<number, number>();
  #bytes = new Map<string, InterfaceBytes>();
  #at = Number.NEGATIVE_INFINITY;
  #pending: Promise<void> | undefined;
  #haveConnections = false;
  #haveBytes = false;
  readonly #maxAgeMs: number;
  readonly #readNetDev: () => Promise<string>;
  readonly #now: () => number;

  constructor(
    private readonly kernel: Pick<Kernel, "conntrackCountByMark">,
    private readonly options: TrafficSamplerOptions = {},
  ) {
    this.#maxAgeMs = Math.max(1000, options.maxAgeMs ?? 1000);
    this.#readNetDev = options.readNetDev ?? (() => readFile("/proc/net/dev", "utf8"));
    this.#now = options.now ?? Date.now;
  }

  /**
   * Read both sources unless the last sample is younger than `maxAgeMs`.
   * Never throws: a failed read is reported to `onError` and its values
   * keep their last sample (null before the first good one).
   * @param mask the fwmark mask (config `dataplane.mark_mask`).
   */
  refresh(mask: number): Promise<void> {
    if (this.#now() - this.#at < this.#maxAgeMs) return Promise.resolve();
    this.#pending ??= this.#read(mask).finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async #read(mask: number): Promise<void> {
    const [connections, netDev] = await Promise.allSettled([
      this.kernel.conntrackCountByMark(mask),
      this.#readNetDev(),
    ]);
    this.#at = this.#now();
    if (connections.status === "fulfilled") {
      this.#connections = connections.value;
      this.#haveConnections = true;
    } else this.options.onError?.(connections.reason);
    if (netDev.status === "fulfilled") {
      this.#bytes = parseProcNetDev(netDev.value);
      this.#haveBytes = true;
    } else this.options.onError?.(netDev.reason);
  }

  /** Conntrack entries carrying `mark` (already masked) at the last sample; null before one. */
  connections(mark: number): number | null {
    return this.#haveConnections ? (this.#connections.get(mark >>> 0) ?? 0) : null;
  }

  /** Byte counters of an interface at the last sample; null before one or when it is missing. */
  bytes(iface: string): InterfaceBytes | null {
    return this.#haveBytes ? (this.#bytes.get(iface) ?? null) : null;
  }
}

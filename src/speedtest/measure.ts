/**
 * Rate arithmetic of a speed test: bytes counted while streams run, turned
 * into bits per second over the part of the test after TCP's ramp-up, and
 * RTT samples taken under that load summarised. Pure.
 */

/** Bytes moved so far by all streams of one direction, at a time since the test began. */
export interface ByteSample {
  /** ms since the direction's test began. */
  atMs: number;
  /** Bytes moved since the test began (all streams together). */
  bytes: number;
}

/**
 * The part of a test counted as ramp-up and left out of the rate: a quarter
 * of it, at most 2 s (slow start, a token bucket's burst and the socket
 * buffers filling happen there).
 * @param durationMs the direction's test time, ms.
 * @returns ms from the start.
 */
export function warmupMs(durationMs: number): number {
  return Math.min(2000, durationMs / 4);
}

/**
 * The rate of a direction, bits per second: bytes moved between the first
 * sample at or after `fromMs` and the last sample, over the time between
 * them. Samples are cumulative and in time order.
 * @returns null with fewer than two samples after `fromMs` or no time
 *   between them (nothing measured).
 */
export function rateBitsPerSecond(samples: readonly ByteSample[], fromMs: number): number | null {
  const start = samples.find((s) => s.atMs >= fromMs);
  const end = samples.at(-1);
  if (start === undefined || end === undefined || end.atMs <= start.atMs) return null;
  return ((end.bytes - start.bytes) * 8 * 1000) / (end.atMs - start.atMs);
}

/**
 * The median of RTT samples, ms (the middle one; the mean of the two middle
 * ones for an even count).
 * @returns null without samples.
 */
export function medianMs(samples: readonly number[]): number | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const upper = sorted[mid] ?? 0;
  return sorted.length % 2 === 1 ? upper : ((sorted[mid - 1] ?? upper) + upper) / 2;
}

/**
 * RTTs in ping(8)'s output (`64 bytes from 198.51.100.1: icmp_seq=1 ttl=63
 * time=12.3 ms`), ms, in order.
 */
export function parsePingRtts(output: string): number[] {
  return [...output.matchAll(/\btime[=<]\s*(\d+(?:\.\d+)?)\s*ms\b/g)].map((m) => Number(m[1]));
}

/** Bits per second as Mbit/s with one decimal (`9.6`). */
export function mbit(bitsPerSecond: number): string {
  return (bitsPerSecond / 1e6).toFixed(1);
}

/**
 * Bytes the peer acknowledged per TCP connection in `ss -tinH` output (the
 * kernel's `tcpi_bytes_acked`): a connection line (`0 0 100.64.1.2:40112
 * 192.0.2.10:80`, with or without a state column) followed by its info line
 * holding `bytes_acked:N`.
 * @returns `local peer` -> bytes acknowledged.
 */
export function parseSsBytesAcked(output: string): Map<string, number> {
  const acked = new Map<string, number>();
  let connection: string | undefined;
  for (const line of output.split("\n")) {
    const endpoints = line
      .trim()
      .split(/\s+/)
      .filter((f) => /:\d+$/.test(f) && !f.includes("="));
    const info = /\bbytes_acked:(\d+)/.exec(line);
    if (info !== null && connection !== undefined) {
      acked.set(connection, Number(info[1]));
      connection = undefined;
    } else if (endpoints.length >= 2 && !/^\s/.test(line)) {
      connection = `${endpoints[0]} ${endpoints[1]}`;
    }
  }
  return acked;
}

/**
 * Adds up acknowledged bytes of connections across samples: each
 * connection counts from its value at the first sample it was seen in
 * (0 for connections opened after the first sample), and keeps its
 * highest value once it is gone.
 */
export class AckedBytes {
  readonly #base = new Map<string, number>();
  readonly #max = new Map<string, number>();
  #first = true;

  /**
   * Take one sample.
   * @returns bytes acknowledged since the first sample, all connections together.
   */
  add(sample: ReadonlyMap<string, number>): number {
    for (const [key, value] of sample) {
      if (!this.#base.has(key)) this.#base.set(key, this.#first ? value : 0);
      this.#max.set(key, Math.max(value, this.#max.get(key) ?? 0));
    }
    this.#first = false;
    let total = 0;
    for (const [key, max] of this.#max) total += max - (this.#base.get(key) ?? 0);
    return total;
  }
}

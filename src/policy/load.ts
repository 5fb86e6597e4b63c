/**
 * Balancing by spare capacity: the weights of a policy's chosen members
 * from their configured bandwidth and their measured throughput, and the
 * smoothing of that throughput. Pure; time is passed in.
 */
import type { PolicyMember } from "./select.js";

/** A line's capacity, bits per second per direction (config `uplinks[].bandwidth`). */
export interface Bandwidth {
  down?: number | undefined;
  up?: number | undefined;
}

/** Smoothed throughput, bits per second per direction. */
export interface Throughput {
  down: number;
  up: number;
}

/** How a policy spreads new connections over its chosen members. */
export type BalanceMode = "weight" | "least-used" | "spillover";

/** What the renderer needs to weigh members by load: a snapshot taken by the balancer. */
export interface LoadSnapshot {
  /** Uplink name -> smoothed throughput when the snapshot was taken. */
  throughput: Readonly<Record<string, Throughput>>;
  /** Uplinks a spillover policy counts as full (with hysteresis). */
  full: readonly string[];
}

/** Least share of a member's capacity that counts as spare, so no member gets nothing: 2 %. */
export const SPARE_FLOOR = 0.02;

/** Points below `threshold` at which a full spillover member counts as not full again. */
export const SPILLOVER_HYSTERESIS = 10;

/**
 * Utilisation of a line: the fuller of its configured directions, as a
 * fraction (0.5 = 50 %; may exceed 1 briefly). 0 without a bandwidth.
 */
export function utilisation(
  bandwidth: Bandwidth | undefined,
  throughput: Throughput | undefined,
): number {
  if (bandwidth === undefined || throughput === undefined) return 0;
  const parts: number[] = [];
  if (bandwidth.down !== undefined) parts.push(throughput.down / bandwidth.down);
  if (bandwidth.up !== undefined) parts.push(throughput.up / bandwidth.up);
  return Math.max(0, ...parts);
}

/** A member's capacity in bits per second: its download bandwidth, else its upload one. */
function capacity(bandwidth: Bandwidth | undefined): number {
  return bandwidth?.down ?? bandwidth?.up ?? 0;
}

/**
 * Spare capacity of a member, kbit/s (at least {@link SPARE_FLOOR} of its
 * capacity, at least 1): capacity × (1 − utilisation).
 */
function spareKbit(bandwidth: Bandwidth | undefined, throughput: Throughput | undefined): number {
  const cap = capacity(bandwidth);
  const spare = Math.max(SPARE_FLOOR, 1 - utilisation(bandwidth, throughput)) * cap;
  return Math.max(1, Math.round(spare / 1000));
}

/**
 * Whether each uplink counts as full for spillover now: full at or above
 * `threshold` %, and once full, until it falls below `threshold` −
 * {@link SPILLOVER_HYSTERESIS} points.
 * @param wasFull the uplinks that counted as full before.
 */
export function fullUplinks(
  uplinks: readonly string[],
  bandwidth: (uplink: string) => Bandwidth | undefined,
  throughput: (uplink: string) => Throughput | undefined,
  threshold: number,
  wasFull: ReadonlySet<string>,
): Set<string> {
  const full = new Set<string>();
  for (const uplink of uplinks) {
    const used = utilisation(bandwidth(uplink), throughput(uplink)) * 100;
    const limit = wasFull.has(uplink) ? threshold - SPILLOVER_HYSTERESIS : threshold;
    if (used >= limit) full.add(uplink);
  }
  return full;
}

/**
 * The members of a policy choice with their weights for `mode`:
 * - `weight`: unchanged;
 * - `least-used`: spare capacity in kbit/s (capacity − measured throughput,
 *   at least {@link SPARE_FLOOR} of capacity);
 * - `spillover`: the first member (in order) that is not full gets every
 *   new connection; when all are full, spare capacity decides as for
 *   `least-used`.
 * Health has already chosen the members: only those are weighed.
 *
 * @param full the uplinks that count as full (see {@link fullUplinks}).
 * @returns members with positive integer weights, in the same order.
 */
export function loadWeights(
  mode: BalanceMode,
  members: readonly PolicyMember[],
  bandwidth: (uplink: string) => Bandwidth | undefined,
  throughput: (uplink: string) => Throughput | undefined,
  full: ReadonlySet<string>,
): PolicyMember[] {
  if (mode === "weight" || members.length === 0) return [...members];
  const spare = members.map((m) => ({
    ...m,
    weight: spareKbit(bandwidth(m.uplink), throughput(m.uplink)),
  }));
  if (mode === "least-used") return spare;
  const first = members.find((m) => !full.has(m.uplink));
  if (first === undefined) return spare;
  return members.map((m) => ({ ...m, weight: m.uplink === first.uplink ? 1 : 0 }));
}

/**
 * Each member's share of new connections, % (0..100), from its weight.
 * @returns uplink -> share; empty for no members.
 */
export function shares(members: readonly PolicyMember[]): Map<string, number> {
  const total = members.reduce((sum, m) => sum + m.weight, 0);
  return new Map(members.map((m) => [m.uplink, total === 0 ? 0 : (100 * m.weight) / total]));
}

/** Byte counters of one interface (kernel counters, /proc/net/dev). */
export interface ByteCounters {
  rx: number;
  tx: number;
}

/**
 * Smooths interface throughput with an exponentially weighted moving
 * average of time constant `timeConstantMs`: a sample `dt` ms after the
 * last one weighs 1 − e^(−dt/τ), so the average follows a step to 63 % in τ
 * and to 95 % in 3τ, whatever the sampling interval.
 */
export class ThroughputMeter {
  readonly #timeConstantMs: number;
  readonly #last = new Map<string, { at: number; counters: ByteCounters }>();
  readonly #rates = new Map<string, Throughput>();

  /** @param timeConstantMs τ of the average, ms (default 2000). */
  constructor(timeConstantMs = 2000) {
    this.#timeConstantMs = timeConstantMs;
  }

  /**
   * Take a sample of every interface's byte counters.
   * @param now monotonic time of the sample, ms.
   * @param counters interface -> bytes received (down) and transmitted (up).
   */
  update(now: number, counters: ReadonlyMap<string, ByteCounters>): void {
    for (const [iface, sample] of counters) {
      const last = this.#last.get(iface);
      this.#last.set(iface, { at: now, counters: sample });
      if (last === undefined) continue;
      const dt = now - last.at;
      // A counter that went back: the interface was re-created; start again.
      if (dt <= 0 || sample.rx < last.counters.rx || sample.tx < last.counters.tx) continue;
      const down = ((sample.rx - last.counters.rx) * 8 * 1000) / dt;
      const up = ((sample.tx - last.counters.tx) * 8 * 1000) / dt;
      const old = this.#rates.get(iface);
      const alpha = 1 - Math.exp(-dt / this.#timeConstantMs);
      this.#rates.set(
        iface,
        old === undefined
          ? { down, up }
          : { down: old.down + alpha * (down - old.down), up: old.up + alpha * (up - old.up) },
      );
    }
  }

  /** Smoothed throughput of an interface, bits per second; undefined before two samples. */
  rate(iface: string): Throughput | undefined {
    return this.#rates.get(iface);
  }
}

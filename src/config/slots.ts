/**
 * Kernel resources per uplink: its id, fwmark and routing table. Derived from
 * the config alone, so they stay the same across restarts and reloads as long
 * as the uplink keeps its id (by default its position in the config).
 */
import type { Config, DataplaneConfig } from "./schema.js";

/** Kernel resources of one uplink. */
export interface UplinkSlot {
  /** The uplink's name from the config. */
  name: string;
  /** 1..254; fixes mark and table. */
  id: number;
  /** fwmark/connmark value of this uplink, inside `mask` (e.g. 0x100 for id 1, mask 0xff00). */
  mark: number;
  /** The mark mask (all uplinks share it). */
  mask: number;
  /** Routing table number (table_base + id). */
  table: number;
}

/** Number of the lowest set bit of `mask` (mask 0xff00 -> 8); -1 for 0. */
export function lowestBit(mask: number): number {
  if (mask === 0) return -1;
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  return shift;
}

/** The mask's bits shifted down to bit 0 (mask 0xff00 -> 255, 0x0f00 -> 15). */
function markCapacity(mask: number): number {
  const shift = lowestBit(mask);
  return shift < 0 ? 0 : (mask >>> 0) >>> shift;
}

/**
 * Largest uplink id whose mark fits in the mask (mask 0xff00 -> 254,
 * 0x0f00 -> 14). The value above it is reserved for {@link unreachableMark}.
 */
export function maxUplinkId(mask: number): number {
  return Math.max(0, markCapacity(mask) - 1);
}

/**
 * The mark of packets that a policy's `unreachable` last resort rejects: the
 * mask's largest value (0xff00 under mask 0xff00). An ip rule of type
 * `unreachable` matches it, so the kernel answers with ICMP net unreachable
 * (forwarded) or ENETUNREACH (local sockets).
 */
export function unreachableMark(mask: number): number {
  return markFor(markCapacity(mask), mask);
}

/** The mark of uplink `id` under `mask`: id shifted to the mask's lowest bit. */
export function markFor(id: number, mask: number): number {
  return (id << lowestBit(mask)) >>> 0;
}

/** Routing table of uplink `id`. */
export function tableFor(id: number, dataplane: DataplaneConfig): number {
  return dataplane.table_base + id;
}

/**
 * The slot of every uplink, in config order. An uplink without `id` gets its
 * 1-based position. Validation (`loadConfig`) already rejected collisions and
 * ids beyond the mask.
 */
export function uplinkSlots(config: Config): UplinkSlot[] {
  const mask = config.dataplane.mark_mask >>> 0;
  return config.uplinks.map((uplink, index) => {
    const id = uplink.id ?? index + 1;
    return {
      name: uplink.name,
      id,
      mark: markFor(id, mask),
      mask,
      table: tableFor(id, config.dataplane),
    };
  });
}

/** Formats a mark as nft and ip print it: `0x` and 8 hex digits is not needed; `0x100`. */
export function hex(value: number): string {
  return `0x${(value >>> 0).toString(16)}`;
}

/**
 * IPv4 addresses and prefixes as values, on ipaddr.js: parsing into uint32
 * numbers, canonical text, ranges, and the disjoint prefix lists nft
 * interval sets need. Pure functions; IPv6 lives in ./ipv6.ts.
 */
import { isIPv4 } from "node:net";
import ipaddr from "ipaddr.js";

/** The uint32 value of a dotted-quad IPv4 address (no validation: see {@link parsePrefix}). */
function valueOf4(address: string): number {
  return ipaddr.IPv4.parse(address)
    .toByteArray()
    .reduce((acc, octet) => acc * 256 + octet, 0);
}

/**
 * Parse `a.b.c.d` or `a.b.c.d/n` into [network as uint32, prefix length]:
 * host bits cleared. Undefined when invalid (only dotted quads, as Node's
 * `isIPv4` accepts them; a length of 0..32 digits).
 */
export function parsePrefix(text: string): [number, number] | undefined {
  // Like the config has always read it: text after a second "/" is ignored.
  const [address = "", length] = text.split("/");
  if (!isIPv4(address)) return undefined;
  if (length !== undefined && !/^\d+$/.test(length)) return undefined;
  const bits = length === undefined ? 32 : Number(length);
  if (bits > 32) return undefined;
  const mask = valueOf4(ipaddr.IPv4.subnetMaskFromPrefixLength(bits).toString());
  return [(valueOf4(address) & mask) >>> 0, bits];
}

/** True when `text` (IPv4, with a length) has host bits set. */
export function hasHostBits4(text: string): boolean {
  const parsed = parsePrefix(text);
  const [address = ""] = text.split("/");
  return parsed !== undefined && valueOf4(address) !== parsed[0];
}

const ranges = new Map<string, [number, number] | undefined>();

/**
 * The first and last address (as uint32) of a prefix; undefined when
 * invalid. Remembered per text: rendering a thousand rules compares the
 * same prefixes many times.
 */
export function prefixRange(text: string): [number, number] | undefined {
  if (ranges.has(text)) return ranges.get(text);
  const parsed = parsePrefix(text);
  const range: [number, number] | undefined =
    parsed === undefined ? undefined : [parsed[0], parsed[0] + 2 ** (32 - parsed[1]) - 1];
  if (ranges.size > 100_000) ranges.clear();
  ranges.set(text, range);
  return range;
}

/** Canonical text of a parsed prefix (`/32` omitted). */
export function formatPrefix([value, bits]: [number, number]): string {
  const address = ipaddr.fromByteArray([24, 16, 8, 0].map((s) => (value >>> s) & 255)).toString();
  return bits === 32 ? address : `${address}/${bits}`;
}

/**
 * Canonical IPv4 prefixes without those inside a wider one, sorted by
 * address (nft interval sets reject overlaps); invalid texts are dropped.
 */
export function disjointPrefixes4(prefixes: readonly string[]): string[] {
  const canonical = new Map<string, [number, number]>();
  for (const p of prefixes) {
    const parsed = parsePrefix(p);
    const text = parsed === undefined ? undefined : formatPrefix(parsed);
    const range = text === undefined ? undefined : prefixRange(text);
    if (text !== undefined && range !== undefined) canonical.set(text, range);
  }
  // By start, the widest first: a prefix inside the last kept one is dropped.
  const sorted = [...canonical].sort(([, a], [, b]) => a[0] - b[0] || b[1] - a[1]);
  const kept: string[] = [];
  let end = -1;
  for (const [text, range] of sorted) {
    if (range[0] <= end) continue;
    kept.push(text);
    end = range[1];
  }
  return kept;
}

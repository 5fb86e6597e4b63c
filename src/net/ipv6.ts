/**
 * IPv6 addresses and prefixes as values: parsing into 128-bit integers,
 * canonical text (RFC 5952, as nft and iproute2 print them with
 * inet_ntop), ranges and overlap, on ipaddr.js. Pure functions; IPv4 lives in ./ipv4.ts.
 */
import { isIPv4, isIPv6 } from "node:net";
import ipaddr from "ipaddr.js";

/** Address family of a text: 4, 6, or undefined for neither (a prefix's length is ignored). */
export function familyOf(text: string): 4 | 6 | undefined {
  const [address = ""] = text.split("/");
  if (isIPv4(address)) return 4;
  if (isIPv6(address)) return 6;
  return undefined;
}

/**
 * True when `address` lies inside `prefix` of the same family (IPv4 or
 * IPv6, `198.51.100.7` in `198.51.100.0/24`); false for addresses or
 * prefixes that do not parse and across families (IPv4 with ipaddr.js's
 * `match`, IPv6 with {@link inPrefix6}).
 */
export function inPrefix(address: string, prefix: string): boolean {
  if (!ipaddr.isValid(address) || !ipaddr.isValidCIDR(prefix)) return false;
  const range = ipaddr.parseCIDR(prefix);
  // IPv6 through parseAddress6, which keeps `::a.b.c.d` as RFC 4291 has it
  // (ipaddr.js would read it as `::ffff:a.b.c.d`).
  if (range[0].kind() === "ipv6") return inPrefix6(address, prefix);
  const parsed = ipaddr.parse(address);
  return parsed.kind() === "ipv4" && parsed.match(range);
}

const ALL = (1n << 128n) - 1n;

/**
 * The 128-bit value of an IPv6 address (`2001:db8::1`, also with an
 * embedded IPv4 tail `::ffff:192.0.2.1`); undefined when it is not one.
 * A zone (`fe80::1%wan1`) is not an address here.
 */
export function parseAddress6(text: string): bigint | undefined {
  if (!isIPv6(text) || text.includes("%")) return undefined;
  const { parts } = ipaddr.IPv6.parse(text);
  // ipaddr.js reads the deprecated IPv4-compatible form `::a.b.c.d` as
  // IPv4-mapped (`::ffff:a.b.c.d`); RFC 4291 2.5.5.1 and inet_pton keep it `::a.b.c.d`.
  if (/^::\d+\.\d+\.\d+\.\d+$/.test(text)) parts[5] = 0;
  return parts.reduce((acc, group) => (acc << 16n) | BigInt(group), 0n);
}

/**
 * Canonical text of a 128-bit value (RFC 5952, as inet_ntop prints it):
 * lower case, no leading zeros, the longest run of two or more zero groups
 * (the first on a tie) written `::`.
 */
export function formatAddress6(value: bigint): string {
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((value >> shift) & 0xffffn));
  return new ipaddr.IPv6(groups).toRFC5952String();
}

/** Canonical text of an IPv6 address (`2001:DB8:0::1` -> `2001:db8::1`); the text itself when not one. */
export function canonicalAddress6(text: string): string {
  const value = parseAddress6(text);
  return value === undefined ? text : formatAddress6(value);
}

/**
 * Parse `ADDR` or `ADDR/n` (IPv6) into [network, prefix length]: host bits
 * cleared. Undefined when invalid.
 */
export function parsePrefix6(text: string): [bigint, number] | undefined {
  const [address = "", length, ...rest] = text.split("/");
  if (rest.length > 0) return undefined;
  const value = parseAddress6(address);
  if (value === undefined) return undefined;
  if (length !== undefined && !/^\d{1,3}$/.test(length)) return undefined;
  const bits = length === undefined ? 128 : Number(length);
  if (bits > 128) return undefined;
  return [value & maskOf(bits), bits];
}

/** The network mask of a prefix length as a 128-bit value (/64 -> ffff:ffff:ffff:ffff::). */
export function maskOf(bits: number): bigint {
  return bits === 0 ? 0n : (ALL << BigInt(128 - bits)) & ALL;
}

/** True when `text` (IPv6, with a length) has host bits set. */
export function hasHostBits6(text: string): boolean {
  const [address = ""] = text.split("/");
  const parsed = parsePrefix6(text);
  const value = parseAddress6(address);
  return parsed !== undefined && value !== undefined && value !== parsed[0];
}

/** Canonical text of a parsed IPv6 prefix (`/128` omitted). */
export function formatPrefix6([value, bits]: [bigint, number]): string {
  const address = formatAddress6(value);
  return bits === 128 ? address : `${address}/${bits}`;
}

/** First and last address of an IPv6 prefix; undefined when invalid. */
export function prefixRange6(text: string): [bigint, bigint] | undefined {
  const parsed = parsePrefix6(text);
  if (parsed === undefined) return undefined;
  return [parsed[0], parsed[0] | (~maskOf(parsed[1]) & ALL)];
}

/** True when `address` (IPv6) lies inside `prefix` (IPv6). */
export function inPrefix6(address: string, prefix: string): boolean {
  const value = parseAddress6(address);
  const range = prefixRange6(prefix);
  return value !== undefined && range !== undefined && value >= range[0] && value <= range[1];
}

/** The prefix of `length` bits that holds `address` (`2001:db8:1::5`, 64 -> `2001:db8:1::/64`). */
export function networkOf6(address: string, length: number): string | undefined {
  const value = parseAddress6(address);
  return value === undefined ? undefined : formatPrefix6([value & maskOf(length), length]);
}

/**
 * Link-local unicast (fe80::/10): valid only together with an interface.
 * A zone (`fe80::1%wan1`) is allowed and ignored.
 */
export function isLinkLocal6(address: string): boolean {
  const [bare = ""] = address.split("%");
  return inPrefix6(bare, "fe80::/10");
}

/** Multicast (ff00::/8). */
export function isMulticast6(address: string): boolean {
  return inPrefix6(address, "ff00::/8");
}

/**
 * Canonical prefixes without those inside a wider one, sorted by address
 * (IPv6 only; nft interval sets reject overlaps).
 */
export function disjointPrefixes6(prefixes: readonly string[]): string[] {
  const canonical = new Map<string, [bigint, bigint]>();
  for (const p of prefixes) {
    const parsed = parsePrefix6(p);
    if (parsed === undefined) continue;
    const text = formatPrefix6(parsed);
    const range = prefixRange6(text);
    if (range !== undefined) canonical.set(text, range);
  }
  const sorted = [...canonical].sort(([, a], [, b]) =>
    a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : b[1] < a[1] ? -1 : b[1] > a[1] ? 1 : 0,
  );
  const kept: string[] = [];
  let end = -1n;
  for (const [text, range] of sorted) {
    if (range[0] <= end) continue;
    kept.push(text);
    end = range[1];
  }
  return kept;
}

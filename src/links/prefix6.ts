/**
 * Learning each `prefix6: auto` uplink's delegated prefix (DHCPv6 prefix
 * delegation), from what the router's DHCPv6-PD client leaves behind:
 *
 * - `prefix6_file`: a file the client's hook script writes, whose first
 *   word is the prefix (`2001:db8:1001::/56`); absent or empty while there
 *   is no lease. This names the uplink without doubt.
 * - otherwise, the guard route PD clients install in the main table for a
 *   delegated prefix, `unreachable PREFIX dev lo proto dhcp` (RTPROT_DHCP,
 *   16): it does not say which uplink delegated the prefix, so it is taken
 *   only when exactly one `auto` uplink has no file and exactly one such
 *   route exists.
 *
 * The link watcher calls this on each re-read (address and route changes
 * trigger one; a client that renews or is given another prefix changes its
 * route), so a renumbered prefix is followed without a restart.
 */
import { readFile } from "node:fs/promises";
import type { Config } from "../config/schema.js";
import { prefix6Problem } from "../config/checks6.js";
import { formatPrefix6, parsePrefix6 } from "../net/ipv6.js";
import { TABLE_MAIN, type Route } from "../kernel/types.js";

/** rtnetlink protocol RTPROT_DHCP (16): routes a DHCP client installs. */
export const RTPROT_DHCP = 16;

/** Reads a file as text; rejects when it cannot (absent, unreadable). */
export type ReadText = (path: string) => Promise<string>;

/**
 * The prefix in a PD client's prefix file: its first word, canonical, when
 * that is a usable `prefix6` (an IPv6 prefix of /64 or shorter); else
 * undefined (an empty file: no lease now).
 */
export function parsePrefixFile(text: string): string | undefined {
  const word = text.trim().split(/\s+/)[0] ?? "";
  if (word === "" || prefix6Problem(word) !== undefined) return undefined;
  const parsed = parsePrefix6(word);
  return parsed === undefined ? undefined : formatPrefix6(parsed);
}

/**
 * Delegated prefixes from the main table's `unreachable ... proto dhcp`
 * IPv6 routes (uplinkd's own protocol never counts).
 */
export function delegatedPrefixRoutes(routes: readonly Route[]): string[] {
  return routes
    .filter(
      (r) =>
        r.family === 6 &&
        r.table === TABLE_MAIN &&
        r.type === "unreachable" &&
        r.protocol === RTPROT_DHCP &&
        r.dst !== "default",
    )
    .map((r) => r.dst)
    .filter((p) => parsePrefixFile(p) !== undefined);
}

/**
 * The learned prefix of every `prefix6: auto` uplink that has one now.
 *
 * @param routes `ip -6 -j route show table all`, parsed (IPv4 routes are skipped).
 * @param read reads a prefix file (default: fs readFile, UTF-8).
 * @returns uplink name -> its delegated prefix (`2001:db8:1001::/56`). Never throws: an
 *   unreadable file means no prefix now.
 */
export async function learnPrefixes(
  config: Config,
  routes: readonly Route[],
  read: ReadText = (path) => readFile(path, "utf8"),
): Promise<Map<string, string>> {
  const learned = new Map<string, string>();
  const auto = config.uplinks.filter((u) => u.prefix6 === "auto");
  await Promise.all(
    auto.map(async (u) => {
      if (u.prefix6_file === undefined) return;
      const text = await read(u.prefix6_file).catch(() => "");
      const prefix = parsePrefixFile(text);
      if (prefix !== undefined) learned.set(u.name, prefix);
    }),
  );
  const withoutFile = auto.filter((u) => u.prefix6_file === undefined);
  const fromFiles = new Set(learned.values());
  const candidates = delegatedPrefixRoutes(routes).filter((p) => !fromFiles.has(p));
  const only = withoutFile[0];
  if (withoutFile.length === 1 && only !== undefined && candidates.length === 1) {
    learned.set(only.name, candidates[0] ?? "");
  }
  return learned;
}

/**
 * The nft sets of the `dst_domain` rules. uplinkd declares them in its
 * table; dnsmasq fills them (its `nftset=` lines, see src/dns/render.ts)
 * with the addresses it hands out for the rule's names. Pure functions.
 *
 * Each rule gets one set per family: `dom_<rule index>_4` (type ipv4_addr)
 * and `dom_<rule index>_6` (type ipv6_addr). Both carry `flags timeout` and
 * a default element timeout (`dns.dnsmasq.set_timeout`): dnsmasq adds
 * elements without a timeout of their own, so each lasts that long from
 * the answer that first added it. Re-adding an address that is already in
 * the set does not restart its timeout (tried: Linux 6.18, nft 1.0.6), and
 * dnsmasq adds addresses only from upstream answers, not from its cache
 * (tried: dnsmasq 2.90). So the timeout bounds how long an address that
 * stopped resolving keeps being steered, and once an element expires the
 * next upstream answer for the name puts it back (docs/steering.md says
 * how to keep the gap short).
 *
 * A rule matches the IPv4 set in one line (`ip daddr @dom_N_4`) and the
 * IPv6 set in another (`ip6 daddr @dom_N_6`).
 */
import type { Config } from "../config/schema.js";

/** Address families of the domain sets: 4 (A records), 6 (AAAA records). */
export type DomainFamily = 4 | 6;

/** One domain set of one rule. */
export interface DomainSet {
  /** nft set name, e.g. `dom_2_4`. */
  name: string;
  family: DomainFamily;
  /** Index of the rule in `config.rules` (0-based). */
  rule: number;
  /** The rule's name, if it has one. */
  ruleName?: string;
  /** The rule's DNS names, as configured (lower case). */
  domains: readonly string[];
  /** Default element timeout, whole seconds (at least 1). */
  timeoutSeconds: number;
}

/** Name of the domain set of rule `index` for `family`. */
export function domainSetName(index: number, family: DomainFamily): string {
  return `dom_${index}_${family}`;
}

/** True for the names of domain sets: their elements belong to dnsmasq, not uplinkd. */
export function isDomainSet(name: string): boolean {
  return /^dom_\d+_[46]$/.test(name);
}

/** Default element timeout of the domain sets in seconds: `dns.dnsmasq.set_timeout` (default 1 h). */
export function domainSetTimeout(config: Config): number {
  return Math.max(1, Math.round((config.dns?.dnsmasq?.set_timeout ?? 3_600_000) / 1000));
}

/** Every domain set of `config`, in rule order, IPv4 before IPv6 of each rule. */
export function domainSets(config: Config): DomainSet[] {
  const timeoutSeconds = domainSetTimeout(config);
  return config.rules.flatMap((rule, index) =>
    rule.dst_domain === undefined
      ? []
      : ([4, 6] as const).map((family) => ({
          name: domainSetName(index, family),
          family,
          rule: index,
          ...(rule.name === undefined ? {} : { ruleName: rule.name }),
          domains: rule.dst_domain ?? [],
          timeoutSeconds,
        })),
  );
}

/**
 * The comment of a domain set in the nft table: its rule and names, cut to
 * nft's 128-byte comment limit. A set keeps its elements across a whole
 * table reload only when name and comment are unchanged (see
 * {@link carryElements}), so a rule that changed its names starts empty.
 */
export function domainSetComment(set: DomainSet): string {
  const text = `rule ${set.rule}: ${set.domains.join(" ")}`;
  return text.length <= 120 ? text : `${text.slice(0, 117)}...`;
}

/** One element of a domain set as the kernel holds it. */
export interface DomainElement {
  /** The address. */
  address: string;
  /** Seconds until it expires; undefined when the kernel did not say. */
  expires?: number;
}

/** A domain set as read from `nft -j list table`. */
export interface DomainSetState {
  name: string;
  comment: string;
  elements: DomainElement[];
}

/**
 * The domain sets in `nft -j list table` output (`nftables[].set` objects
 * whose name is a domain set's), with their comment and elements.
 */
export function readDomainSets(json: { nftables: Record<string, unknown>[] }): DomainSetState[] {
  const out: DomainSetState[] = [];
  for (const object of json.nftables) {
    const set = object.set as { name?: string; comment?: string; elem?: unknown[] } | undefined;
    if (set?.name === undefined || !isDomainSet(set.name)) continue;
    const elements: DomainElement[] = [];
    for (const raw of set.elem ?? []) {
      if (typeof raw === "string") {
        elements.push({ address: raw });
        continue;
      }
      const inner = (raw as { elem?: { val?: unknown; expires?: unknown } } | null)?.elem;
      if (typeof inner?.val !== "string") continue;
      elements.push({
        address: inner.val,
        ...(typeof inner.expires === "number" ? { expires: inner.expires } : {}),
      });
    }
    out.push({ name: set.name, comment: set.comment ?? "", elements });
  }
  return out;
}

/**
 * nft commands that put back, after a whole-table reload, the elements of
 * every domain set that still exists with the same comment (same rule
 * position and names), each with the time it had left. Appended to the
 * reload's script, in the same transaction.
 *
 * @param table uplinkd's table (family inet).
 * @param wanted the domain sets of the new table.
 * @param held the domain sets read from the table before the reload.
 * @returns nft script lines (empty when nothing is carried).
 */
export function carryElements(
  table: string,
  wanted: readonly DomainSet[],
  held: readonly DomainSetState[],
): string[] {
  const lines: string[] = [];
  for (const set of wanted) {
    const old = held.find((h) => h.name === set.name);
    if (old === undefined || old.comment !== domainSetComment(set)) continue;
    const elements = old.elements
      .filter((e) => e.expires === undefined || e.expires > 0)
      .map((e) =>
        e.expires === undefined
          ? e.address
          : `${e.address} timeout ${set.timeoutSeconds}s expires ${Math.min(e.expires, set.timeoutSeconds)}s`,
      );
    if (elements.length > 0) {
      lines.push(`add element inet ${table} ${set.name} { ${elements.join(", ")} }`);
    }
  }
  return lines;
}

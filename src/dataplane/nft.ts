/**
 * Rendering uplinkd's nft table (family inet): pure text from the config,
 * the uplinks' views and the dynamic map/set elements.
 *
 * Packet path (IPv4 and IPv6 alike; each family has its own address sets,
 * pinned map, balance maps and active sets, since the families' health
 * differs):
 *   prerouting (filter, priority mangle):
 *     1. a connection that already has an uplink's ct mark: restore it into
 *        the packet mark (`@restore`);
 *     2. a new connection arriving on an uplink's interface: mark it with
 *        that uplink, so its replies leave by it (`@inbound`);
 *     3. from a LAN interface, not to the router itself nor to a connected
 *        network (`@local_networks`): an uplink's DNS servers and pinned
 *        destinations go to that uplink (`@pinned`); then the rules
 *        (`steer`, first match wins); then the default policy.
 *   output (route hook): the socket's own mark (probes, SO_MARK) wins and is
 *   saved; else restore; a socket bound to an uplink's address keeps it;
 *   else pinned destinations, then the router policy.
 *   prerouting (nat, dstnat): port forwards per uplink.
 *   postrouting (nat, srcnat): masquerade, or SNAT to a configured address.
 * A policy chain picks an uplink with `numgen random mod N vmap
 * @balance_<policy>`; the uplink chain sets packet and connection mark.
 */
import type { Config } from "../config/schema.js";
import { DSCP_NAMES, prefixesOverlap, type RuleConfig } from "../config/steering.js";
import { canonicalAddress6, disjointPrefixes6, familyOf } from "../net/ipv6.js";
import { disjointPrefixes4 } from "../net/ipv4.js";
import type { Family } from "../kernel/types.js";
import { BALANCE_MODULUS } from "../policy/select.js";
import { kernelWindows, type KernelWindow } from "../policy/schedule.js";
import { domainSetComment, domainSetName, domainSets } from "./domains.js";
import { hex, policyMarks, unreachableMark, uplinkSlots } from "../config/slots.js";
import { nftString } from "../text.js";
import type { UplinkView } from "./views.js";
import { tunnelEndpoint, type TunnelConfig } from "../config/tunnels.js";

/** Name of the nft chain that marks packets with uplink `id`. */
export function uplinkChain(id: number): string {
  return `uplink_${id}`;
}

/** Name of the policy chain of policy `name`. */
export function policyChain(name: string): string {
  return `policy_${name}`;
}

/** Name of the balance map of policy `name` for `family` (`balance_default`, `balance6_default`). */
export function balanceMap(name: string, family: Family): string {
  return family === 6 ? `balance6_${name}` : `balance_${name}`;
}

/** Name of the set of marks that policy `name` gives new connections of `family` now. */
export function activeSet(name: string, family: Family): string {
  return family === 6 ? `active6_${name}` : `active_${name}`;
}

/** Name of the nft set holding the `family` part of the config's set `name` (`set_office`, `set6_office`). */
export function configSetName(name: string, family: Family): string {
  return family === 6 ? `set6_${name}` : `set_${name}`;
}

const DYNAMIC_SETS = new Set([
  "uplink_addresses",
  "local_networks",
  "uplink_addresses6",
  "local_networks6",
  "lan_networks6",
]);

/** Dynamic nft objects that are sets (everything else dynamic is a map). */
export function isDynamicSet(name: string): boolean {
  return DYNAMIC_SETS.has(name) || name.startsWith("active_") || name.startsWith("active6_");
}

/** Link-local IPv6 (fe80::/10): neighbour discovery and DHCPv6 never leave the link, never balanced. */
export const LINK_LOCAL6 = "fe80::/10";

/** A quoted nft string; refuses what nft cannot quote (see nftString). */
const q = nftString;

function block(
  kind: "set" | "map",
  name: string,
  head: string[],
  elements?: readonly string[],
): string[] {
  const lines = [`\t${kind} ${name} {`, ...head.map((h) => `\t\t${h}`)];
  if (elements !== undefined && elements.length > 0) {
    lines.push(`\t\telements = { ${elements.join(", ")} }`);
  }
  lines.push("\t}");
  return lines;
}

function inline(items: readonly string[]): string {
  return items.length === 1 ? (items[0] ?? "") : `{ ${items.join(", ")} }`;
}

/** Expand `@set` references into the set's prefixes (deduplicated, in order). */
function expand(config: Config, items: readonly string[]): string[] {
  const out: string[] = [];
  for (const item of items) {
    for (const p of item.startsWith("@") ? (config.sets[item.slice(1)] ?? []) : [item]) {
      if (!out.includes(p)) out.push(p);
    }
  }
  return out;
}

/**
 * Canonical prefixes without those inside a wider one (nft interval sets
 * reject overlaps; two prefixes either nest or are disjoint), sorted by
 * address: the IPv4 ones, then the IPv6 ones.
 */
export function disjointPrefixes(prefixes: readonly string[]): string[] {
  return [
    ...disjointPrefixes4(prefixes.filter((p) => familyOf(p) !== 6)),
    ...disjointPrefixes6(prefixes.filter((p) => familyOf(p) === 6)),
  ];
}

/** The prefixes of one family, made disjoint (see {@link disjointPrefixes}). */
export function disjointOf(prefixes: readonly string[], family: Family): string[] {
  return family === 6
    ? disjointPrefixes6(prefixes.filter((p) => familyOf(p) === 6))
    : disjointPrefixes4(prefixes.filter((p) => familyOf(p) === 4));
}

/** The nft protocol keyword of a family: `ip`, `ip6`. */
function ipOf(family: Family): string {
  return family === 6 ? "ip6" : "ip";
}

function addressMatch(
  config: Config,
  field: "saddr" | "daddr",
  items: readonly string[],
  family: Family,
): string {
  const only = items[0];
  if (items.length === 1 && only?.startsWith("@") === true)
    return `${ipOf(family)} ${field} @${configSetName(only.slice(1), family)}`;
  return `${ipOf(family)} ${field} ${inline(disjointOf(expand(config, items), family))}`;
}

/** The families an address list can match: those of its prefixes (sets expanded). */
function familiesOfItems(config: Config, items: readonly string[]): Family[] {
  const prefixes = expand(config, items);
  return ([4, 6] as const).filter((f) => prefixes.some((p) => familyOf(p) === f));
}

/**
 * The families a rule needs a match line of its own for: none (one line
 * for both) when nothing in it is tied to a family; else those its
 * addresses can match (src and dst together), or both for a rule with a
 * DSCP or ICMP match (`ip dscp` / `ip6 dscp`, `icmp` / `ipv6-icmp`).
 */
export function ruleFamilies(config: Config, rule: RuleConfig): Family[] | undefined {
  let families: Family[] | undefined;
  const narrow = (own: Family[]) => {
    families = families === undefined ? own : families.filter((f) => own.includes(f));
  };
  if (rule.src !== undefined) narrow(familiesOfItems(config, rule.src));
  if (rule.dst !== undefined) narrow(familiesOfItems(config, rule.dst));
  if (families !== undefined) return families;
  if (rule.dst_domain !== undefined || rule.dscp !== undefined || rule.proto?.includes("icmp")) {
    return [4, 6];
  }
  return undefined;
}

/**
 * The match part of one rule for one family, or for both when `family` is
 * undefined (empty for a rule that matches everything).
 * @param index the rule's position in `config.rules` (names its domain set).
 */
export function ruleMatch(
  config: Config,
  rule: RuleConfig,
  index: number,
  family?: Family,
): string {
  const f = family ?? 4;
  const parts: string[] = [];
  if (rule.iif !== undefined) parts.push(`iifname ${inline(rule.iif.map(q))}`);
  if (rule.src_mac !== undefined) parts.push(`ether saddr ${inline(rule.src_mac)}`);
  if (rule.src !== undefined) parts.push(addressMatch(config, "saddr", rule.src, f));
  if (rule.dst !== undefined) parts.push(addressMatch(config, "daddr", rule.dst, f));
  if (rule.dst_domain !== undefined) {
    parts.push(`${ipOf(f)} daddr @${domainSetName(index, f)}`);
  }
  if (rule.proto !== undefined) {
    const names = rule.proto.map((p) => (p === "icmp" && f === 6 ? "ipv6-icmp" : String(p)));
    parts.push(`meta l4proto ${inline(names)}`);
  }
  if (rule.src_port !== undefined) parts.push(`th sport ${inline(rule.src_port.map(String))}`);
  if (rule.dst_port !== undefined) parts.push(`th dport ${inline(rule.dst_port.map(String))}`);
  if (rule.dscp !== undefined) {
    const values = rule.dscp.map((d) => String(typeof d === "number" ? d : (DSCP_NAMES[d] ?? 0)));
    parts.push(`${ipOf(f)} dscp ${inline(values)}`);
  }
  return parts.join(" ");
}

/**
 * The time part of a schedule rule's match for one kernel window: `meta
 * day` (UTC weekdays, 0 = Sunday; left out for every day) and `meta hour`
 * as bare numbers, seconds since midnight UTC (nft converts a quoted
 * "HH:MM" with its own TZ, a number not at all; left out for the whole
 * day). Empty for a window that covers the whole week.
 */
export function timeMatch(window: KernelWindow): string {
  const parts: string[] = [];
  if (window.days.length < 7) parts.push(`meta day ${inline(window.days.map(String))}`);
  if (window.from > 0 || window.to < 86_399) parts.push(`meta hour ${window.from}-${window.to}`);
  return parts.join(" ");
}

/**
 * The match lines of one rule: one per family it is tied to (or one for
 * both), and for a rule with a schedule, each of those once per kernel
 * window of the schedule at UTC offset `offsetMinutes`.
 */
export function ruleMatches(
  config: Config,
  rule: RuleConfig,
  index: number,
  offsetMinutes: number,
): string[] {
  const families = ruleFamilies(config, rule);
  const matches =
    families === undefined
      ? [ruleMatch(config, rule, index)]
      : families.map((f) => ruleMatch(config, rule, index, f));
  if (rule.schedule === undefined) return matches;
  const times = kernelWindows(rule.schedule, offsetMinutes).map(timeMatch);
  return matches.flatMap((match) => times.map((time) => `${match} ${time}`.trim()));
}

/** The verdict of a rule target: a policy chain, or main, unreachable, blackhole. */
function targetVerdict(target: string): string {
  if (target === "main") return "accept";
  if (target === "unreachable") return "goto mark_unreachable";
  if (target === "blackhole") return "drop";
  return `goto ${policyChain(target)}`;
}

/** A rule that matches only destinations (or only sources), with no sticky: it can share a vmap. */
function singleField(rule: RuleConfig): "saddr" | "daddr" | undefined {
  if (rule.sticky !== undefined) return undefined;
  const keys = Object.keys(rule).filter(
    (key) =>
      rule[key as keyof RuleConfig] !== undefined &&
      key !== "name" &&
      key !== "policy" &&
      key !== "on_change",
  );
  if (keys.length !== 1) return undefined;
  return keys[0] === "dst" ? "daddr" : keys[0] === "src" ? "saddr" : undefined;
}

/** The steering chain and the vmaps, sticky sets and chains it uses. */
interface SteerRender {
  objects: string[];
  chains: string[];
  steer: string[];
}

/**
 * Render the rules, first match wins. Runs of consecutive rules that match
 * only on destination (or only on source) and whose prefixes do not
 * overlap become one interval vmap per family (`rules_N`, `rules6_N`): one
 * lookup however many rules. A rule tied to families (addresses, DSCP,
 * ICMP, domains) gets one line per family; IPv4 and IPv6 packets never
 * match each other's lines, so first-match order holds within each family.
 */
function renderSteer(
  config: Config,
  views: readonly UplinkView[],
  mask: number,
  offsetMinutes: number,
): SteerRender {
  const out: SteerRender = { objects: [], chains: [], steer: [] };
  const keep = hex(~mask >>> 0);
  let group: { field: "saddr" | "daddr"; elements: Record<Family, [string, string][]> } | undefined;
  let groups = 0;
  const flush = () => {
    if (group === undefined) return;
    const index = groups++;
    for (const family of [4, 6] as const) {
      const elements = group.elements[family];
      if (elements.length === 0) continue;
      const name = family === 6 ? `rules6_${index}` : `rules_${index}`;
      out.objects.push(
        ...block(
          "map",
          name,
          [`type ${family === 6 ? "ipv6_addr" : "ipv4_addr"} : verdict`, "flags interval"],
          elements.map(([p, v]) => `${p} : ${v}`),
        ),
      );
      out.steer.push(`${ipOf(family)} ${group.field} vmap @${name}`);
    }
    group = undefined;
  };
  config.rules.forEach((rule, index) => {
    const field = singleField(rule);
    const verdict = targetVerdict(rule.policy);
    if (field !== undefined) {
      const all = expand(config, (field === "daddr" ? rule.dst : rule.src) ?? []);
      const prefixes = disjointPrefixes(all);
      const clash =
        group !== undefined &&
        (group.field !== field ||
          [...group.elements[4], ...group.elements[6]].some(([p]) =>
            prefixes.some((mine) => prefixesOverlap(p, mine)),
          ));
      if (clash) flush();
      group ??= { field, elements: { 4: [], 6: [] } };
      for (const family of [4, 6] as const) {
        group.elements[family].push(
          ...disjointOf(all, family).map((p): [string, string] => [p, verdict]),
        );
      }
      return;
    }
    flush();
    const matches = ruleMatches(config, rule, index, offsetMinutes);
    const comment = rule.name === undefined ? "" : ` comment ${q(rule.name)}`;
    if (rule.sticky === undefined) {
      for (const match of matches) out.steer.push(`${match} ${verdict}${comment}`.trim());
      return;
    }
    const policy = rule.policy;
    const members = policyMembers(config, views, policy)
      .map((m) => views.find((v) => v.name === m.uplink))
      .filter((v) => v !== undefined);
    const seconds = Math.max(1, Math.round(rule.sticky.timeout / 1000));
    const chain = `sticky_${index}`;
    const lines: string[] = [`\tchain ${chain} {`];
    const policyMark = policyMarks(config, policyNames(config)).get(policy);
    if (policyMark !== undefined) {
      const policyKeep = hex(~config.dataplane.policy_mark_mask >>> 0);
      lines.push(`\t\tct mark set ct mark & ${policyKeep} | ${hex(policyMark)}`);
    }
    const records: string[] = [];
    for (const family of [4, 6] as const) {
      const ip = ipOf(family);
      const key = rule.sticky.by === "src" ? `${ip} saddr` : `${ip} saddr . ${ip} daddr`;
      const type =
        rule.sticky.by === "src"
          ? `type ${family === 6 ? "ipv6_addr" : "ipv4_addr"}`
          : `typeof ${ip} saddr . ${ip} daddr`;
      const setOf = (id: number) =>
        family === 6 ? `sticky6_${index}_${id}` : `sticky_${index}_${id}`;
      for (const view of members) {
        const set = setOf(view.id);
        out.objects.push(
          ...block("set", set, [type, "flags dynamic, timeout", `timeout ${seconds}s`]),
        );
        lines.push(
          `\t\t${key} @${set} meta mark set meta mark & ${keep} | ${hex(view.mark)} meta mark & ${hex(mask)} @${activeSet(policy, family)} update @${set} { ${key} } goto ${uplinkChain(view.id)}`,
        );
        const others = members
          .filter((o) => o.id !== view.id)
          .map((o) => ` delete @${setOf(o.id)} { ${key} }`)
          .join("");
        records.push(
          `\t\tmeta nfproto ${family === 6 ? "ipv6" : "ipv4"} meta mark & ${hex(mask)} == ${hex(view.mark)} update @${set} { ${key} }${others}`,
        );
      }
    }
    lines.push(`\t\tjump ${policyChain(policy)}`, ...records, "\t}");
    out.chains.push(...lines);
    for (const match of matches) out.steer.push(`${match} goto ${chain}${comment}`.trim());
  });
  flush();
  return out;
}

/** Policy names in use: `default`, every configured one. */
export function policyNames(config: Config): string[] {
  return [...new Set(["default", ...Object.keys(config.policies)])];
}

/** Members of a policy: configured, or for `default` every uplink with its weight and tier. */
export function policyMembers(
  config: Config,
  views: readonly UplinkView[],
  policy: string,
): { uplink: string; weight: number; tier: number }[] {
  const members = config.policies[policy]?.members;
  if (members !== undefined) return members;
  return views.map((v) => ({ uplink: v.name, weight: v.weight, tier: v.tier }));
}

/**
 * The nft script for uplinkd's table. It begins by creating and deleting the
 * table so that loading it replaces the old table in the same transaction
 * (nft applies a file atomically: on any error nothing changes).
 *
 * @param maps elements of the dynamic maps and sets (see renderMaps).
 * @param hash structure hash stored in the `structure` set ("" while hashing).
 * @param offsetMinutes UTC offset of the schedules' time zone now, minutes
 *   east (see policy/schedule.ts); 0 when no rule has a schedule.
 */
export function renderNft(
  config: Config,
  views: readonly UplinkView[],
  maps: Record<string, string[]>,
  hash = "",
  offsetMinutes = 0,
): string {
  const table = config.dataplane.table;
  const mask = config.dataplane.mark_mask >>> 0;
  const policies = policyNames(config);
  const steer = renderSteer(config, views, mask, offsetMinutes);
  const out: string[] = [
    `table inet ${table} {}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    `\tcomment "owned by uplinkd; changes here are overwritten"`,
    ...tableSets(config, maps, hash),
    ...passiveObjects(views),
    ...tableMaps(maps, policies),
    ...steer.objects,
    ...uplinkChains(views, mask),
    ...unreachableChain(mask),
    ...policyChains(config, policies),
    ...steer.chains,
    ...steerChain(steer.steer),
    ...preroutingChain(config, mask),
    ...passiveChain(mask),
    ...outputChain(config, mask),
    ...portForwardsChain(config, views),
    ...postroutingChain(config, views),
    `}`,
  ];
  return out.join("\n") + "\n";
}

/**
 * The table's sets: its structure hash, the LAN interfaces, the uplinks'
 * addresses, the local and LAN networks (elements from `maps`), the
 * config's named sets per family, and the domain sets (empty: dnsmasq fills them).
 */
function tableSets(config: Config, maps: Record<string, string[]>, hash: string): string[] {
  const out: string[] = [
    ...block(
      "set",
      "structure",
      ["type mark", `comment "hash of this table's structure"`],
      hash === "" ? [] : [`0x${hash}`],
    ),
    ...block("set", "lan_interfaces", ["type ifname"], config.lan.map(q)),
    ...block("set", "uplink_addresses", ["type ipv4_addr"], maps.uplink_addresses),
    ...block("set", "uplink_addresses6", ["type ipv6_addr"], maps.uplink_addresses6),
    ...block("set", "local_networks", ["type ipv4_addr", "flags interval"], maps.local_networks),
    ...block("set", "local_networks6", ["type ipv6_addr", "flags interval"], maps.local_networks6),
    ...block("set", "lan_networks6", ["type ipv6_addr", "flags interval"], maps.lan_networks6),
  ];
  for (const [name, prefixes] of Object.entries(config.sets)) {
    for (const family of [4, 6] as const) {
      out.push(
        ...block(
          "set",
          configSetName(name, family),
          [`type ${family === 6 ? "ipv6_addr" : "ipv4_addr"}`, "flags interval"],
          disjointOf(prefixes, family),
        ),
      );
    }
  }
  // Filled by dnsmasq, never by uplinkd: no elements here (see domains.ts).
  for (const set of domainSets(config)) {
    out.push(
      ...block("set", set.name, [
        set.family === 4 ? "type ipv4_addr" : "type ipv6_addr",
        "flags timeout",
        `timeout ${set.timeoutSeconds}s`,
        `comment ${q(domainSetComment(set))}`,
      ]),
    );
  }
  return out;
}

/**
 * The verdict maps (restore, inbound, pinned) and per policy and family
 * its balance map and set of active marks, with the elements of `maps`.
 */
function tableMaps(maps: Record<string, string[]>, policies: readonly string[]): string[] {
  const out: string[] = [
    ...block("map", "restore", ["typeof ct mark : verdict"], maps.restore),
    ...block("map", "inbound", ["type ifname : verdict"], maps.inbound),
    ...block("map", "pinned", ["type ipv4_addr : verdict", "flags interval"], maps.pinned),
    ...block("map", "pinned6", ["type ipv6_addr : verdict", "flags interval"], maps.pinned6),
  ];
  for (const policy of policies) {
    for (const family of [4, 6] as const) {
      out.push(
        ...block(
          "map",
          balanceMap(policy, family),
          [`typeof numgen random mod ${BALANCE_MODULUS} : verdict`, "flags interval"],
          maps[balanceMap(policy, family)],
        ),
        ...block("set", activeSet(policy, family), ["type mark"], maps[activeSet(policy, family)]),
      );
    }
  }
  return out;
}

/** One chain per uplink: sets its mark in the packet and the connection, keeping bits outside `mask`. */
function uplinkChains(views: readonly UplinkView[], mask: number): string[] {
  const keep = hex(~mask >>> 0);
  return views.flatMap((view) => {
    const mark = hex(view.mark);
    return [
      `\tchain ${uplinkChain(view.id)} {`,
      `\t\tcomment ${q(`uplink ${view.name}`)}`,
      `\t\tmeta mark set meta mark & ${keep} | ${mark}`,
      `\t\tct mark set ct mark & ${keep} | ${mark}`,
      `\t}`,
    ];
  });
}

/** The last resort: the mark whose ip rule answers net unreachable. */
function unreachableChain(mask: number): string[] {
  return [
    `\tchain mark_unreachable {`,
    `\t\tcomment "last resort: the ip rule for this mark answers net unreachable"`,
    `\t\tmeta mark set meta mark & ${hex(~mask >>> 0)} | ${hex(unreachableMark(mask))}`,
    `\t}`,
  ];
}

/**
 * One chain per policy: a random number picks the member from the family's
 * balance map; a policy with `failback: move` first records itself in the
 * connection's mark (bits of `dataplane.policy_mark_mask`).
 */
function policyChains(config: Config, policies: readonly string[]): string[] {
  const marks = policyMarks(config, policies);
  const policyKeep = hex(~config.dataplane.policy_mark_mask >>> 0);
  return policies.flatMap((policy) => {
    const mark = marks.get(policy);
    return [
      `\tchain ${policyChain(policy)} {`,
      ...(mark === undefined ? [] : [`\t\tct mark set ct mark & ${policyKeep} | ${hex(mark)}`]),
      `\t\tmeta nfproto ipv6 numgen random mod ${BALANCE_MODULUS} vmap @${balanceMap(policy, 6)}`,
      `\t\tmeta nfproto ipv6 return`,
      `\t\tnumgen random mod ${BALANCE_MODULUS} vmap @${balanceMap(policy, 4)}`,
      `\t}`,
    ];
  });
}

/** The steer chain: the rules' lines in order, then the default policy. */
function steerChain(rules: readonly string[]): string[] {
  return [
    `\tchain steer {`,
    ...rules.map((r) => `\t\t${r}`),
    `\t\tgoto ${policyChain("default")}`,
    `\t}`,
  ];
}

/**
 * Forwarded traffic: known connections keep their uplink (connmark), new
 * inbound ones take the uplink they came in on, LAN traffic to local,
 * pinned or steered destinations goes where they say.
 */
function preroutingChain(config: Config, mask: number): string[] {
  return [
    `\tchain prerouting {`,
    `\t\ttype filter hook prerouting priority mangle; policy accept;`,
    `\t\tct mark & ${hex(mask)} vmap @restore`,
    // One of an HA pair: a TCP packet of a connection this router has no
    // entry of yet (a new master, before conntrackd committed the peer's
    // entries) would be picked up mid-stream: from the LAN, balanced afresh,
    // possibly to another uplink; from an uplink, delivered to the virtual
    // address itself, which answers with a reset. Drop it; it is sent again
    // once the entry is there. Only a SYN starts a connection.
    ...(config.ha === undefined
      ? []
      : [`\t\tct state new tcp flags & (fin | syn | rst | ack) != syn drop`]),
    ...config.tunnels.map((tunnel) => `\t\t${tunnelInboundLine(tunnel)}`),
    `\t\tct state new iifname vmap @inbound`,
    `\t\tiifname != @lan_interfaces return`,
    `\t\tfib daddr type { local, broadcast, multicast } return`,
    `\t\tip daddr @local_networks return`,
    `\t\tip6 daddr @local_networks6 return`,
    `\t\tip6 daddr ${LINK_LOCAL6} return`,
    `\t\tip daddr vmap @pinned`,
    `\t\tip6 daddr vmap @pinned6`,
    `\t\tjump steer`,
    `\t}`,
  ];
}

/**
 * The passive signal: counts SYNs from the LAN and their answers per uplink
 * (connmark) and family: SYN-ACKs, and refusals (a TCP RST, an ICMP
 * destination unreachable about the connection): a refused connection was
 * answered through the uplink, so it does not make the uplink suspect.
 */
function passiveChain(mask: number): string[] {
  return [
    `\tchain passive {`,
    `\t\ttype filter hook prerouting priority mangle + 1; policy accept;`,
    `\t\tiifname != @lan_interfaces ct state related icmp type destination-unreachable ct original ip saddr != @uplink_addresses counter name ct mark & ${hex(mask)} map @passive_refused`,
    `\t\tiifname != @lan_interfaces ct state related icmpv6 type destination-unreachable ct original ip6 saddr != @uplink_addresses6 counter name ct mark & ${hex(mask)} map @passive_refused6`,
    `\t\tmeta l4proto != tcp return`,
    `\t\tiifname @lan_interfaces ct state new tcp flags & (syn | ack) == syn meta nfproto ipv4 counter name ct mark & ${hex(mask)} map @passive_syn`,
    `\t\tiifname @lan_interfaces ct state new tcp flags & (syn | ack) == syn meta nfproto ipv6 counter name ct mark & ${hex(mask)} map @passive_syn6`,
    `\t\tiifname != @lan_interfaces ct direction reply tcp flags & (syn | ack) == syn | ack meta nfproto ipv4 ct original ip saddr != @uplink_addresses counter name ct mark & ${hex(mask)} map @passive_synack`,
    `\t\tiifname != @lan_interfaces ct direction reply tcp flags & (syn | ack) == syn | ack meta nfproto ipv6 ct original ip6 saddr != @uplink_addresses6 counter name ct mark & ${hex(mask)} map @passive_synack6`,
    `\t\tiifname != @lan_interfaces ct direction reply tcp flags & (syn | rst) == rst meta nfproto ipv4 ct original ip saddr != @uplink_addresses counter name ct mark & ${hex(mask)} map @passive_refused`,
    `\t\tiifname != @lan_interfaces ct direction reply tcp flags & (syn | rst) == rst meta nfproto ipv6 ct original ip6 saddr != @uplink_addresses6 counter name ct mark & ${hex(mask)} map @passive_refused6`,
    `\t}`,
  ];
}

/**
 * The line of the output chain that sends a tunnel's new flow to its
 * policy: `ip daddr 192.0.2.7 udp dport 51820 goto policy_site comment "tunnel site"`
 * (`meta l4proto udp` when the endpoint has no port).
 */
export function tunnelLine(tunnel: TunnelConfig): string {
  return `${tunnelMatch(tunnel, "daddr", "dport")} goto ${policyChain(tunnel.policy)} comment ${q(`tunnel ${tunnel.name}`)}`;
}

/**
 * The line of the prerouting chain that drops a new flow from a tunnel's
 * peer to the router: `ct state new fib daddr type local ip saddr
 * 192.0.2.7 udp sport 51820 drop comment "tunnel site: the router starts it"`.
 * The router starts the tunnel's flow; a flow the peer started (its
 * packets to the address of an uplink the tunnel just left, in flight
 * when the tunnel moved) would be kept on that uplink by its entry.
 */
export function tunnelInboundLine(tunnel: TunnelConfig): string {
  return `ct state new fib daddr type local ${tunnelMatch(tunnel, "saddr", "sport")} drop comment ${q(`tunnel ${tunnel.name}: the router starts it`)}`;
}

function tunnelMatch(
  tunnel: TunnelConfig,
  address: "saddr" | "daddr",
  port: "sport" | "dport",
): string {
  const endpoint = tunnelEndpoint(tunnel);
  const transport =
    endpoint.port === undefined
      ? `meta l4proto ${tunnel.protocol}`
      : `${tunnel.protocol} ${port} ${endpoint.port}`;
  return `${ipOf(endpoint.family)} ${address} ${endpoint.address} ${transport}`;
}

/**
 * The router's own traffic: marked connections keep their uplink; a new
 * flow to a tunnel's endpoint follows the tunnel's policy, whatever its
 * source address (a tunnel whose socket cached an uplink's address is
 * masqueraded to the chosen uplink's); traffic from an uplink address, to
 * the LAN or local networks is left alone; the rest follows pinned
 * destinations, then the router's policy. The kernel re-routes a packet
 * whose mark this `type route` chain changed (ip_route_me_harder).
 */
function outputChain(config: Config, mask: number): string[] {
  return [
    `\tchain output {`,
    `\t\ttype route hook output priority mangle; policy accept;`,
    `\t\tmeta mark & ${hex(mask)} vmap @restore`,
    `\t\tct mark & ${hex(mask)} vmap @restore`,
    ...config.tunnels.map((tunnel) => `\t\t${tunnelLine(tunnel)}`),
    `\t\tip saddr @uplink_addresses return`,
    `\t\tip6 saddr @uplink_addresses6 return`,
    `\t\tip6 saddr ${LINK_LOCAL6} return`,
    `\t\toifname "lo" return`,
    `\t\toifname @lan_interfaces return`,
    `\t\tfib daddr type { local, broadcast, multicast } return`,
    `\t\tip daddr @local_networks return`,
    `\t\tip6 daddr @local_networks6 return`,
    `\t\tip6 daddr ${LINK_LOCAL6} return`,
    `\t\tip daddr vmap @pinned`,
    `\t\tip6 daddr vmap @pinned6`,
    `\t\tgoto ${policyChain(config.router_policy)}`,
    `\t}`,
  ];
}

/** The uplinks' `forwards` (DNAT); no chain when there are none. */
function portForwardsChain(config: Config, views: readonly UplinkView[]): string[] {
  const forwards = views.flatMap((view) => {
    const uplink = config.uplinks.find((u) => u.name === view.name);
    return (uplink?.forwards ?? []).map((f) => {
      const v6 = familyOf(f.to) === 6;
      const host = v6 ? canonicalAddress6(f.to) : f.to;
      const to =
        f.to_port === undefined ? host : v6 ? `[${host}]:${f.to_port}` : `${host}:${f.to_port}`;
      return `\t\tiifname ${q(view.interface)} ${f.proto} dport ${f.port} dnat ${v6 ? "ip6" : "ip"} to ${to}`;
    });
  });
  if (forwards.length === 0) return [];
  return [
    `\tchain port_forwards {`,
    `\t\ttype nat hook prerouting priority dstnat; policy accept;`,
    ...forwards,
    `\t}`,
  ];
}

/**
 * Source NAT per uplink: masquerade or SNAT to its address (a virtual
 * address of an HA pair for forwarded connections); for IPv6, NPTv6 of the
 * LAN's networks into its prefix, then masquerade.
 */
function postroutingChain(config: Config, views: readonly UplinkView[]): string[] {
  const out: string[] = [
    `\tchain postrouting {`,
    `\t\ttype nat hook postrouting priority srcnat; policy accept;`,
  ];
  for (const view of views) {
    if (view.virtualAddress !== undefined && view.snat === undefined) {
      // One of an HA pair: the router's own connections (probes) keep this
      // node's address, forwarded ones take the address that moves with the master.
      out.push(
        `\t\tmeta nfproto ipv4 oifname ${q(view.interface)} fib saddr type local masquerade`,
        `\t\tmeta nfproto ipv4 oifname ${q(view.interface)} snat ip to ${view.virtualAddress}`,
      );
    } else {
      const nat = view.snat === undefined ? "masquerade" : `snat ip to ${view.snat}`;
      out.push(`\t\tmeta nfproto ipv4 oifname ${q(view.interface)} ${nat}`);
    }
    const uplink = config.uplinks.find((u) => u.name === view.name);
    if (uplink?.gateway6 === "none") continue;
    if (view.virtualAddress6 !== undefined) {
      // A dual-stack pair: as for IPv4, forwarded IPv6 connections take the
      // address (or, with prefix6, the prefix routed to it) that moves with
      // the master. The router's own keep the source they have (masquerade
      // could pick the virtual address, the newest on the interface).
      out.push(`\t\tmeta nfproto ipv6 oifname ${q(view.interface)} fib saddr type local accept`);
      if (view.ipv6?.prefix !== undefined) {
        out.push(
          `\t\toifname ${q(view.interface)} ip6 saddr @lan_networks6 snat ip6 prefix to ${view.ipv6.prefix}`,
        );
      }
      out.push(
        `\t\tmeta nfproto ipv6 oifname ${q(view.interface)} snat ip6 to ${view.virtualAddress6}`,
      );
      continue;
    }
    // An IPv4-only pair leaves IPv6 alone, as before.
    if (view.virtualAddress !== undefined && view.snat === undefined) continue;
    // NPTv6-style: each LAN host keeps its interface identifier inside the uplink's prefix.
    if (view.ipv6?.prefix !== undefined) {
      out.push(
        `\t\toifname ${q(view.interface)} ip6 saddr @lan_networks6 snat ip6 prefix to ${view.ipv6.prefix}`,
      );
    }
    out.push(`\t\tmeta nfproto ipv6 oifname ${q(view.interface)} masquerade`);
  }
  out.push(`\t}`);
  return out;
}

/**
 * Name of the named counter of uplink `id`'s SYNs from the LAN in `family`
 * (see {@link passiveObjects}): `passive_syn_1`, `passive6_syn_1`.
 */
export function passiveSynCounter(id: number, family: Family = 4): string {
  return `passive${family === 6 ? "6" : ""}_syn_${id}`;
}

/** Name of the named counter of uplink `id`'s SYN-ACKs in `family` (see {@link passiveObjects}). */
export function passiveSynAckCounter(id: number, family: Family = 4): string {
  return `passive${family === 6 ? "6" : ""}_synack_${id}`;
}

/**
 * Name of the named counter of uplink `id`'s refusals in `family`: TCP RSTs
 * and ICMP destination unreachables about LAN connections (see
 * {@link passiveObjects}).
 */
export function passiveRefusedCounter(id: number, family: Family = 4): string {
  return `passive${family === 6 ? "6" : ""}_refused_${id}`;
}

/**
 * The passive signal's counters of every uplink and family: the names of
 * its SYN, SYN-ACK and refusal counters in uplinkd's table. None without
 * `health.passive`.
 */
export function passiveCounters(
  config: Config,
): { uplink: string; family: Family; syn: string; synAck: string; refused: string }[] {
  if (!config.health.passive) return [];
  return uplinkSlots(config).flatMap((s) =>
    ([4, 6] as const).map((family) => ({
      uplink: s.name,
      family,
      syn: passiveSynCounter(s.id, family),
      synAck: passiveSynAckCounter(s.id, family),
      refused: passiveRefusedCounter(s.id, family),
    })),
  );
}

/**
 * The passive health signal's counters: per uplink and family, SYNs of new
 * TCP connections from the LAN (retransmitted SYNs too: `ct state` is `new`
 * until a reply was seen) and SYN-ACKs coming back from the internet for
 * connections not made by the router from an uplink address (its TCP
 * probes), and refusals of those connections (TCP RSTs, ICMP destination
 * unreachables), counted by the connection's mark through object maps in the
 * `passive` chain (prerouting, after the marking chain). Reading them costs
 * one `nft -j list counters` whatever the size of the conntrack table.
 */
function passiveObjects(views: readonly UplinkView[]): string[] {
  const out: string[] = [];
  for (const family of [4, 6] as const) {
    for (const view of views) {
      out.push(`\tcounter ${passiveSynCounter(view.id, family)} {`, `\t}`);
      out.push(`\tcounter ${passiveSynAckCounter(view.id, family)} {`, `\t}`);
      out.push(`\tcounter ${passiveRefusedCounter(view.id, family)} {`, `\t}`);
    }
  }
  for (const family of [4, 6] as const) {
    const suffix = family === 6 ? "6" : "";
    const syn = views.map((v) => `${hex(v.mark)} : ${q(passiveSynCounter(v.id, family))}`);
    const synack = views.map((v) => `${hex(v.mark)} : ${q(passiveSynAckCounter(v.id, family))}`);
    out.push(...block("map", `passive_syn${suffix}`, ["type mark : counter"], syn));
    const refused = views.map((v) => `${hex(v.mark)} : ${q(passiveRefusedCounter(v.id, family))}`);
    out.push(...block("map", `passive_synack${suffix}`, ["type mark : counter"], synack));
    out.push(...block("map", `passive_refused${suffix}`, ["type mark : counter"], refused));
  }
  return out;
}

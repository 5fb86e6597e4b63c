/**
 * Rendering uplinkd's nft table (family inet): pure text from the config,
 * the uplinks' views and the dynamic map/set elements.
 *
 * Packet path (IPv4):
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
import {
  DSCP_NAMES,
  formatPrefix,
  parsePrefix,
  prefixRange,
  prefixesOverlap,
  type RuleConfig,
} from "../config/steering.js";
import { BALANCE_MODULUS } from "../policy/select.js";
import { domainSetComment, domainSetName, domainSets } from "./domains.js";
import { hex, unreachableMark } from "./slots.js";
import type { UplinkView } from "./render.js";

/** Name of the nft chain that marks packets with uplink `id`. */
export function uplinkChain(id: number): string {
  return `uplink_${id}`;
}

/** Name of the policy chain of policy `name`. */
export function policyChain(name: string): string {
  return `policy_${name}`;
}

/** Dynamic nft objects that are sets (everything else dynamic is a map). */
export function isDynamicSet(name: string): boolean {
  return name === "uplink_addresses" || name === "local_networks" || name.startsWith("active_");
}

const q = (text: string): string => JSON.stringify(text);

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
 * address.
 */
export function disjointPrefixes(prefixes: readonly string[]): string[] {
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

function addressMatch(config: Config, field: "saddr" | "daddr", items: readonly string[]): string {
  const only = items[0];
  if (items.length === 1 && only?.startsWith("@") === true)
    return `ip ${field} @set_${only.slice(1)}`;
  return `ip ${field} ${inline(disjointPrefixes(expand(config, items)))}`;
}

/**
 * The match part of one rule (empty for a rule that matches everything).
 * @param index the rule's position in `config.rules` (names its domain set).
 */
export function ruleMatch(config: Config, rule: RuleConfig, index: number): string {
  const parts: string[] = [];
  if (rule.iif !== undefined) parts.push(`iifname ${inline(rule.iif.map(q))}`);
  if (rule.src !== undefined) parts.push(addressMatch(config, "saddr", rule.src));
  if (rule.dst !== undefined) parts.push(addressMatch(config, "daddr", rule.dst));
  if (rule.dst_domain !== undefined) parts.push(`ip daddr @${domainSetName(index, 4)}`);
  if (rule.proto !== undefined) parts.push(`meta l4proto ${inline(rule.proto.map(String))}`);
  if (rule.src_port !== undefined) parts.push(`th sport ${inline(rule.src_port.map(String))}`);
  if (rule.dst_port !== undefined) parts.push(`th dport ${inline(rule.dst_port.map(String))}`);
  if (rule.dscp !== undefined) {
    const values = rule.dscp.map((d) => String(typeof d === "number" ? d : (DSCP_NAMES[d] ?? 0)));
    parts.push(`ip dscp ${inline(values)}`);
  }
  return parts.join(" ");
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
    (key) => rule[key as keyof RuleConfig] !== undefined && key !== "name" && key !== "policy",
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
 * overlap become one interval vmap: one lookup however many rules.
 */
function renderSteer(config: Config, views: readonly UplinkView[], mask: number): SteerRender {
  const out: SteerRender = { objects: [], chains: [], steer: [] };
  const keep = hex(~mask >>> 0);
  let group: { field: "saddr" | "daddr"; elements: [string, string][] } | undefined;
  let groups = 0;
  const flush = () => {
    if (group === undefined) return;
    const name = `rules_${groups++}`;
    out.objects.push(
      ...block(
        "map",
        name,
        ["type ipv4_addr : verdict", "flags interval"],
        group.elements.map(([p, v]) => `${p} : ${v}`),
      ),
    );
    out.steer.push(`ip ${group.field} vmap @${name}`);
    group = undefined;
  };
  config.rules.forEach((rule, index) => {
    const field = singleField(rule);
    const verdict = targetVerdict(rule.policy);
    if (field !== undefined) {
      const prefixes = disjointPrefixes(
        expand(config, (field === "daddr" ? rule.dst : rule.src) ?? []),
      );
      const clash =
        group !== undefined &&
        (group.field !== field ||
          group.elements.some(([p]) => prefixes.some((mine) => prefixesOverlap(p, mine))));
      if (clash) flush();
      group ??= { field, elements: [] };
      group.elements.push(...prefixes.map((p): [string, string] => [p, verdict]));
      return;
    }
    flush();
    const match = ruleMatch(config, rule, index);
    const comment = rule.name === undefined ? "" : ` comment ${q(rule.name)}`;
    if (rule.sticky === undefined) {
      out.steer.push(`${match} ${verdict}${comment}`.trim());
      return;
    }
    const policy = rule.policy;
    const members = policyMembers(config, views, policy).map((m) =>
      views.find((v) => v.name === m.uplink),
    );
    const key = rule.sticky.by === "src" ? "ip saddr" : "ip saddr . ip daddr";
    const type = rule.sticky.by === "src" ? "type ipv4_addr" : "typeof ip saddr . ip daddr";
    const seconds = Math.max(1, Math.round(rule.sticky.timeout / 1000));
    const chain = `sticky_${index}`;
    const lines: string[] = [`\tchain ${chain} {`];
    const records: string[] = [];
    for (const view of members) {
      if (view === undefined) continue;
      const set = `sticky_${index}_${view.id}`;
      out.objects.push(
        ...block("set", set, [type, "flags dynamic, timeout", `timeout ${seconds}s`]),
      );
      lines.push(
        `\t\t${key} @${set} meta mark set meta mark & ${keep} | ${hex(view.mark)} meta mark & ${hex(mask)} @active_${policy} update @${set} { ${key} } goto ${uplinkChain(view.id)}`,
      );
      const others = members
        .filter((o) => o !== undefined && o.id !== view.id)
        .map((o) => ` delete @sticky_${index}_${o?.id ?? 0} { ${key} }`)
        .join("");
      records.push(
        `\t\tmeta mark & ${hex(mask)} == ${hex(view.mark)} update @${set} { ${key} }${others}`,
      );
    }
    lines.push(`\t\tjump ${policyChain(policy)}`, ...records, "\t}");
    out.chains.push(...lines);
    out.steer.push(`${match} goto ${chain}${comment}`.trim());
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
 */
export function renderNft(
  config: Config,
  views: readonly UplinkView[],
  maps: Record<string, string[]>,
  hash = "",
): string {
  const table = config.dataplane.table;
  const mask = config.dataplane.mark_mask >>> 0;
  const keep = hex(~mask >>> 0);
  const policies = policyNames(config);
  const steer = renderSteer(config, views, mask);
  const out: string[] = [
    `table inet ${table} {}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
  ];
  out.push(`\tcomment "owned by uplinkd; changes here are overwritten"`);
  out.push(
    ...block(
      "set",
      "structure",
      ["type mark", `comment "hash of this table's structure"`],
      hash === "" ? [] : [`0x${hash}`],
    ),
  );
  out.push(...block("set", "lan_interfaces", ["type ifname"], config.lan.map(q)));
  out.push(...block("set", "uplink_addresses", ["type ipv4_addr"], maps.uplink_addresses));
  out.push(
    ...block("set", "local_networks", ["type ipv4_addr", "flags interval"], maps.local_networks),
  );
  for (const [name, prefixes] of Object.entries(config.sets)) {
    out.push(
      ...block(
        "set",
        `set_${name}`,
        ["type ipv4_addr", "flags interval"],
        disjointPrefixes(prefixes),
      ),
    );
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
  out.push(...block("map", "restore", ["typeof ct mark : verdict"], maps.restore));
  out.push(...block("map", "inbound", ["type ifname : verdict"], maps.inbound));
  out.push(...block("map", "pinned", ["type ipv4_addr : verdict", "flags interval"], maps.pinned));
  for (const policy of policies) {
    out.push(
      ...block(
        "map",
        `balance_${policy}`,
        [`typeof numgen random mod ${BALANCE_MODULUS} : verdict`, "flags interval"],
        maps[`balance_${policy}`],
      ),
      ...block("set", `active_${policy}`, ["type mark"], maps[`active_${policy}`]),
    );
  }
  out.push(...steer.objects);
  for (const view of views) {
    const mark = hex(view.mark);
    out.push(
      `\tchain ${uplinkChain(view.id)} {`,
      `\t\tcomment ${q(`uplink ${view.name}`)}`,
      `\t\tmeta mark set meta mark & ${keep} | ${mark}`,
      `\t\tct mark set ct mark & ${keep} | ${mark}`,
      `\t}`,
    );
  }
  out.push(
    `\tchain mark_unreachable {`,
    `\t\tcomment "last resort: the ip rule for this mark answers net unreachable"`,
    `\t\tmeta mark set meta mark & ${keep} | ${hex(unreachableMark(mask))}`,
    `\t}`,
  );
  for (const policy of policies) {
    out.push(
      `\tchain ${policyChain(policy)} {`,
      `\t\tnumgen random mod ${BALANCE_MODULUS} vmap @balance_${policy}`,
      `\t}`,
    );
  }
  out.push(...steer.chains);
  out.push(
    `\tchain steer {`,
    ...steer.steer.map((r) => `\t\t${r}`),
    `\t\tgoto ${policyChain("default")}`,
    `\t}`,
  );
  out.push(
    `\tchain prerouting {`,
    `\t\ttype filter hook prerouting priority mangle; policy accept;`,
    `\t\tmeta nfproto != ipv4 return`,
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
    `\t\tct state new iifname vmap @inbound`,
    `\t\tiifname != @lan_interfaces return`,
    `\t\tfib daddr type { local, broadcast, multicast } return`,
    `\t\tip daddr @local_networks return`,
    `\t\tip daddr vmap @pinned`,
    `\t\tjump steer`,
    `\t}`,
  );
  out.push(
    `\tchain output {`,
    `\t\ttype route hook output priority mangle; policy accept;`,
    `\t\tmeta nfproto != ipv4 return`,
    `\t\tmeta mark & ${hex(mask)} vmap @restore`,
    `\t\tct mark & ${hex(mask)} vmap @restore`,
    `\t\tip saddr @uplink_addresses return`,
    `\t\toifname "lo" return`,
    `\t\toifname @lan_interfaces return`,
    `\t\tfib daddr type { local, broadcast, multicast } return`,
    `\t\tip daddr @local_networks return`,
    `\t\tip daddr vmap @pinned`,
    `\t\tgoto ${policyChain(config.router_policy)}`,
    `\t}`,
  );
  const forwards = views.flatMap((view) => {
    const uplink = config.uplinks.find((u) => u.name === view.name);
    return (uplink?.forwards ?? []).map((f) => {
      const to = f.to_port === undefined ? f.to : `${f.to}:${f.to_port}`;
      return `\t\tiifname ${q(view.interface)} ${f.proto} dport ${f.port} dnat ip to ${to}`;
    });
  });
  if (forwards.length > 0) {
    out.push(
      `\tchain port_forwards {`,
      `\t\ttype nat hook prerouting priority dstnat; policy accept;`,
    );
    out.push(...forwards, `\t}`);
  }
  out.push(
    `\tchain postrouting {`,
    `\t\ttype nat hook postrouting priority srcnat; policy accept;`,
  );
  for (const view of views) {
    if (view.virtualAddress !== undefined && view.snat === undefined) {
      // One of an HA pair: the router's own connections (probes) keep this
      // node's address, forwarded ones take the address that moves with the master.
      out.push(
        `\t\tmeta nfproto ipv4 oifname ${q(view.interface)} fib saddr type local masquerade`,
        `\t\tmeta nfproto ipv4 oifname ${q(view.interface)} snat ip to ${view.virtualAddress}`,
      );
      continue;
    }
    const nat = view.snat === undefined ? "masquerade" : `snat ip to ${view.snat}`;
    out.push(`\t\tmeta nfproto ipv4 oifname ${q(view.interface)} ${nat}`);
  }
  out.push(`\t}`, `}`);
  return out.join("\n") + "\n";
}

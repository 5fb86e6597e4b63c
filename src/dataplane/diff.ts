/**
 * Comparing desired and actual kernel state, and the iproute2 commands that
 * turn one into the other. Pure functions.
 */
import { IPV6_LINE, type NftJson, type Route, type Rule } from "../kernel/types.js";
import { isDomainSet } from "./domains.js";
import { hex } from "../config/slots.js";

/** Kernel identity of a route: family, table, destination, metric. */
export function routeKey(route: Route): string {
  const key = `${route.table}|${route.dst}|${route.metric}`;
  return route.family === 6 ? `6|${key}` : key;
}

/** `-6 ` before the command of an IPv6 route or rule (see {@link IPV6_LINE}). */
function familyPrefix(item: Route | Rule): string {
  return item.family === 6 ? IPV6_LINE : "";
}

function sameRoute(a: Route, b: Route): boolean {
  const options = (r: Route) =>
    JSON.stringify(Object.entries(r.options).sort(([x], [y]) => x.localeCompare(y)));
  return (
    a.type === b.type &&
    a.gateway === b.gateway &&
    a.dev === b.dev &&
    a.src === b.src &&
    a.protocol === b.protocol &&
    options(a) === options(b)
  );
}

/** Canonical text of a rule: two rules are the same when their keys are equal. */
export function ruleKey(rule: Rule): string {
  return (
    familyPrefix(rule) +
    ruleSelector(rule) +
    (rule.suppressPrefixlength === undefined ? "" : ` sp${rule.suppressPrefixlength}`)
  );
}

function ruleSelector(rule: Rule): string {
  const parts = [`priority ${rule.priority}`];
  if (rule.from !== undefined) parts.push(`from ${rule.from}`);
  if (rule.fwmark !== undefined) {
    parts.push(`fwmark ${hex(rule.fwmark)}/${hex(rule.fwmask ?? 0xffffffff)}`);
  }
  parts.push(rule.action ?? `lookup ${rule.table ?? 254}`);
  return parts.join(" ");
}

/** `ip` commands (without the leading `ip`) for a route. */
export function routeCommand(verb: "replace" | "del", route: Route): string {
  const parts = ["route", verb];
  if (route.type !== "unicast") parts.push(route.type);
  parts.push(route.dst);
  if (verb === "replace") {
    if (route.gateway !== undefined) parts.push("via", route.gateway);
    if (route.dev !== undefined) parts.push("dev", route.dev);
    if (route.src !== undefined) parts.push("src", route.src);
  }
  parts.push("table", String(route.table), "proto", String(route.protocol));
  parts.push("metric", String(route.metric));
  if (verb === "replace") {
    for (const [name, value] of Object.entries(route.options)) parts.push(name, String(value));
  }
  return familyPrefix(route) + parts.join(" ");
}

/** `ip` command (without the leading `ip`) that adds or deletes a rule. */
export function ruleCommand(verb: "add" | "del", rule: Rule): string {
  let text = `${familyPrefix(rule)}rule ${verb} ${ruleSelector(rule)}`;
  if (rule.suppressPrefixlength !== undefined) {
    text += ` suppress_prefixlength ${rule.suppressPrefixlength}`;
  }
  return `${text} protocol ${rule.protocol}`;
}

/** The changes that turn actual routes and rules into desired ones. */
export interface IpChanges {
  /** Routes to add or replace (missing, or different in gateway, device, type or options). */
  routeReplace: Route[];
  /** Owned routes that should not exist. */
  routeDelete: Route[];
  ruleAdd: Rule[];
  ruleDelete: Rule[];
}

/**
 * Compare desired routes/rules with the ones in the kernel that carry
 * uplinkd's protocol number (everything else is never touched).
 *
 * @param protocol uplinkd's rtnetlink protocol number.
 */
export function diffIp(
  desired: { routes: readonly Route[]; rules: readonly Rule[] },
  actual: { routes: readonly Route[]; rules: readonly Rule[] },
  protocol: number,
): IpChanges {
  const ownRoutes = actual.routes.filter((r) => r.protocol === protocol);
  const ownRules = actual.rules.filter((r) => r.protocol === protocol);
  const actualRoutes = new Map(ownRoutes.map((r) => [routeKey(r), r]));
  const desiredRouteKeys = new Set(desired.routes.map(routeKey));
  const actualRuleKeys = new Set(ownRules.map(ruleKey));
  const desiredRuleKeys = new Set(desired.rules.map(ruleKey));
  return {
    routeReplace: desired.routes.filter((r) => {
      const existing = actualRoutes.get(routeKey(r));
      return existing === undefined || !sameRoute(existing, r);
    }),
    routeDelete: ownRoutes.filter((r) => !desiredRouteKeys.has(routeKey(r))),
    ruleAdd: desired.rules.filter((r) => !actualRuleKeys.has(ruleKey(r))),
    ruleDelete: ownRules.filter((r) => !desiredRuleKeys.has(ruleKey(r))),
  };
}

/**
 * The commands for a set of changes, in a safe order: what is added or
 * replaced comes first and deletions last, so a failure half-way leaves the
 * old paths in place rather than none.
 */
export function ipCommands(changes: IpChanges): string[] {
  return [
    ...changes.routeReplace.map((r) => routeCommand("replace", r)),
    ...changes.ruleAdd.map((r) => ruleCommand("add", r)),
    ...changes.ruleDelete.map((r) => ruleCommand("del", r)),
    ...changes.routeDelete.map((r) => routeCommand("del", r)),
  ];
}

/** True when there is nothing to change. */
export function isEmpty(changes: IpChanges): boolean {
  return (
    changes.routeReplace.length +
      changes.routeDelete.length +
      changes.ruleAdd.length +
      changes.ruleDelete.length ===
    0
  );
}

/**
 * Canonical form of one map element, from the text uplinkd renders
 * (`0-4999 : goto uplink_1`, `0x100 : goto uplink_1`, `"wan1" : goto uplink_1`).
 */
export function canonicalElement(text: string): string {
  const [rawKey = "", rawVerdict] = text.split(" : ");
  const key = canonicalKey(rawKey.trim());
  return rawVerdict === undefined ? key : `${key} : ${rawVerdict.trim()}`;
}

/** Keys as nft -j prints them: numbers in decimal, ranges `a-b`, addresses and prefixes as text. */
function canonicalKey(key: string): string {
  if (key.startsWith('"')) return JSON.parse(key) as string;
  if (/^(0x[0-9a-f]+|\d+)$/i.test(key)) return String(Number(key));
  const range = /^(\d+)-(\d+)$/.exec(key);
  if (range !== null) return `${Number(range[1])}-${Number(range[2])}`;
  return key.includes(":") ? key.replace(/\/128$/, "") : key.replace(/\/32$/, "");
}

function canonicalJsonKey(key: unknown): string | undefined {
  if (typeof key === "number" || typeof key === "string") return String(key);
  if (typeof key !== "object" || key === null) return undefined;
  if ("range" in key) {
    const [from, to] = (key as { range: [unknown, unknown] }).range;
    return from === to ? String(from) : `${String(from)}-${String(to)}`;
  }
  if ("prefix" in key) {
    const { addr, len } = (key as { prefix: { addr: string; len: number } }).prefix;
    return `${addr}/${len}`;
  }
  return undefined;
}

function canonicalJsonElement(elem: unknown): string | undefined {
  if (!Array.isArray(elem)) return canonicalJsonKey(elem);
  if (elem.length !== 2) return undefined;
  const [rawKey, verdict] = elem as [unknown, Record<string, unknown>];
  const key = canonicalJsonKey(rawKey);
  const [kind] = Object.keys(verdict);
  if (key === undefined || kind === undefined) return undefined;
  const target = (verdict[kind] as { target?: string } | null)?.target;
  return `${key} : ${target === undefined ? kind : `${kind} ${target}`}`;
}

/**
 * What `nft -j list table` holds: its structure hash, chain names and each
 * map's canonical elements. Domain sets (filled by dnsmasq) are listed by
 * name only: their elements are never uplinkd's to compare.
 */
export interface NftSummary {
  /** The element of the `structure` set, 8 hex digits; empty when absent. */
  hash: string;
  chains: Set<string>;
  maps: Map<string, string[]>;
  /** Names of the domain sets present (see domains.ts). */
  domainSets: Set<string>;
}

/** Summarise `nft -j list table inet NAME` output. */
export function summariseNft(json: NftJson): NftSummary {
  const chains = new Set<string>();
  const maps = new Map<string, string[]>();
  const domainSets = new Set<string>();
  let hash = "";
  for (const object of json.nftables) {
    const set = object.set as { name?: string; elem?: unknown[] } | undefined;
    const element = set?.name === "structure" ? set.elem?.[0] : undefined;
    if (typeof element === "number") hash = element.toString(16).padStart(8, "0");
    const chain = object.chain as { name?: string } | undefined;
    if (chain?.name !== undefined) chains.add(chain.name);
    const map = (object.map ?? object.set) as { name?: string; elem?: unknown[] } | undefined;
    if (map?.name !== undefined && isDomainSet(map.name)) domainSets.add(map.name);
    else if (map?.name !== undefined) {
      const elements = (map.elem ?? []).map(canonicalJsonElement).filter((e) => e !== undefined);
      maps.set(map.name, elements.sort());
    }
  }
  return { hash, chains, maps, domainSets };
}

/** How uplinkd's nft table differs from the desired one. */
export interface NftDiff {
  /** Human-readable element differences of `maps` (for logs and errors). */
  differences: string[];
  /** Why the whole table must be loaded (missing, other structure, missing chain or map). */
  reload: string[];
  /** Maps whose elements differ (table structure otherwise equal): name -> desired elements. */
  maps: Record<string, readonly string[]>;
}

/**
 * Compare the desired table with what nft holds. Domain sets count only by
 * presence (a missing one reloads the table); their elements are dnsmasq's.
 *
 * @param desired the structure hash (see renderDesired), chains, map
 *   elements and domain set names.
 * @param actual the summary of the table, or null when it does not exist.
 */
export function diffNft(
  desired: {
    hash: string;
    chains: readonly string[];
    maps: Record<string, readonly string[]>;
    domainSets?: readonly string[];
  },
  actual: NftSummary | null,
): NftDiff {
  if (actual === null) return { reload: ["the nft table is missing"], maps: {}, differences: [] };
  const differences: string[] = [];
  const reload: string[] = [];
  if (actual.hash !== desired.hash) {
    reload.push(`the nft table's structure changed (${actual.hash || "none"} -> ${desired.hash})`);
  }
  for (const chain of desired.chains) {
    if (!actual.chains.has(chain)) reload.push(`nft chain ${chain} is missing`);
  }
  for (const set of desired.domainSets ?? []) {
    if (!actual.domainSets.has(set)) reload.push(`nft set ${set} is missing`);
  }
  const maps: Record<string, readonly string[]> = {};
  for (const [name, elements] of Object.entries(desired.maps)) {
    const want = elements.map(canonicalElement).sort();
    const have = actual.maps.get(name);
    if (have === undefined) reload.push(`nft map ${name} is missing`);
    else if (JSON.stringify(want) !== JSON.stringify(have)) maps[name] = elements;
    if (have !== undefined && name in maps) {
      differences.push(`nft ${name} holds {${have.join(", ")}}, want {${want.join(", ")}}`);
    }
  }
  return { reload, maps, differences };
}

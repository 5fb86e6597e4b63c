/**
 * Pure rendering of the kernel state uplinkd wants: one nft table (nft.ts),
 * a routing table and fwmark per uplink, the ip rules, and a default route
 * in main. No I/O here; see apply.ts for putting it into the kernel.
 */
import { createHash } from "node:crypto";
import type { Config } from "../config/schema.js";
import { TABLE_MAIN, type Family, type Route, type Rule } from "../kernel/types.js";
import { BALANCE_MODULUS, balanceSlices, choose, type PolicyChoice } from "../policy/select.js";
import {
  activeSet,
  balanceMap,
  disjointOf,
  disjointPrefixes,
  isDynamicSet,
  policyMembers,
  policyNames,
  renderNft,
  uplinkChain,
} from "./nft.js";
import { domainSets, type DomainSet } from "./domains.js";
import {
  routable,
  routable6,
  routableIn,
  usabilityIn,
  type UplinkView,
  type UplinkView6,
} from "./views.js";
import { hex, unreachableMark } from "../config/slots.js";
import { loadWeights } from "../policy/load.js";
import type { Surroundings } from "../links/watcher.js";
import { nftString } from "../text.js";

export { uplinkChain } from "./nft.js";

export { routable, routable6, routableIn, usabilityIn, type UplinkView, type UplinkView6 };

/** The kernel state uplinkd wants, rendered. */
export interface DesiredState {
  /** nft script that replaces uplinkd's table as a whole, in one transaction. */
  nftScript: string;
  /**
   * Hash of the table's structure (everything but the dynamic map elements),
   * 8 hex digits, stored as the one element of the table's `structure` set
   * (nft 1.0.6's JSON output leaves out table comments): a table with another
   * hash is reloaded whole.
   */
  nftHash: string;
  /** Elements of each dynamic map, as nft writes them (`0-4999 : goto uplink_1`), by map name. */
  maps: Record<string, string[]>;
  /** Every route uplinkd owns (all carry the configured protocol). */
  routes: Route[];
  /** Every rule uplinkd owns. */
  rules: Rule[];
  /** What each policy does now for IPv4 connections, for status and logs. */
  choices: Record<string, PolicyChoice>;
  /** What each policy does now for IPv6 connections. */
  choices6: Record<string, PolicyChoice>;
  /** The domain sets the table declares (filled by dnsmasq; see domains.ts). */
  domainSets: DomainSet[];
}

/** Metric of the catch-all `unreachable default` route in each uplink's table (lowest priority). */
export const SAFETY_METRIC = 4_294_967_295;
/** Offsets of uplinkd's rule priorities from `dataplane.rule_priority`. */
export const RULE_OFFSET = {
  suppress: 0,
  fwmark: 0,
  unreachable: 255,
  from: 300,
  fromPrefix: 400,
} as const;

/**
 * Metric of the IPv6 default route in each uplink's table. The kernel
 * stores an IPv6 route given metric 0 as 1024 (IP6_RT_PRIO_USER), so the
 * desired route says 1024 to compare equal with what it reads back.
 */
export const UPLINK_METRIC6 = 1024;

export type { Surroundings };

/** Tiers go up to 16: a standby member (quota used) ranks after all of them. */
const STANDBY_TIER_OFFSET = 16;

/** A policy's members with the quota's `when_exceeded` applied (see {@link Surroundings.quotaExceeded}). */
export function membersAfterQuota<M extends { uplink: string; tier: number }>(
  members: readonly M[],
  exceeded: ReadonlyMap<string, "standby" | "off"> | undefined,
): M[] {
  if (exceeded === undefined || exceeded.size === 0) return [...members];
  return members.flatMap((m) => {
    const mode = exceeded.get(m.uplink);
    if (mode === "off") return [];
    return mode === "standby" ? [{ ...m, tier: m.tier + STANDBY_TIER_OFFSET }] : [m];
  });
}

/**
 * The elements of one balance map for a policy choice.
 * @returns nft element strings, e.g. `["0-5999 : goto uplink_1", "6000-9999 : goto uplink_2"]`.
 */
export function balanceElements(
  choice: PolicyChoice,
  views: readonly UplinkView[],
  unreachableChain: string,
): string[] {
  const last = BALANCE_MODULUS - 1;
  if (choice.kind === "blackhole") return [`0-${last} : drop`];
  if (choice.kind === "main") return [`0-${last} : accept`];
  if (choice.kind === "unreachable") return [`0-${last} : goto ${unreachableChain}`];
  const ids = new Map(views.map((v) => [v.name, v.id]));
  return balanceSlices(choice.members).map((slice) => {
    const range = slice.from === slice.to ? `${slice.from}` : `${slice.from}-${slice.to}`;
    return `${range} : goto ${uplinkChain(ids.get(slice.uplink) ?? 0)}`;
  });
}

/**
 * The elements of every map and set whose content depends on the uplinks
 * now: restore (ct mark -> uplink chain), inbound (interface -> uplink
 * chain), pinned (an uplink's DNS servers and pinned prefixes -> its
 * chain), uplink_addresses, local_networks, and per policy the balance map
 * and the set of active marks (for sticky rules). A failover changes only
 * balance and active elements.
 */
export function renderMaps(
  config: Config,
  views: readonly UplinkView[],
  surroundings: Surroundings = {},
): {
  maps: Record<string, string[]>;
  choices: Record<string, PolicyChoice>;
  choices6: Record<string, PolicyChoice>;
} {
  const byName = new Map(views.map((v) => [v.name, v]));
  const pinned = (family: Family) =>
    views.flatMap((v) => {
      const uplink = config.uplinks.find((u) => u.name === v.name);
      const prefixes = disjointOf([...(uplink?.dns ?? []), ...(uplink?.pinned ?? [])], family);
      return prefixes.map((p) => `${p} : goto ${uplinkChain(v.id)}`);
    });
  const maps: Record<string, string[]> = {
    restore: views.map((v) => `${hex(v.mark)} : goto ${uplinkChain(v.id)}`),
    inbound: views.map((v) => `${nftString(v.interface)} : goto ${uplinkChain(v.id)}`),
    pinned: pinned(4),
    pinned6: pinned(6),
    uplink_addresses: [
      ...new Set(views.flatMap((v) => (v.address === undefined ? [] : [v.address]))),
    ],
    uplink_addresses6: [
      ...new Set(views.flatMap((v) => (v.ipv6 === undefined ? [] : [v.ipv6.address]))),
    ],
    local_networks: disjointPrefixes(surroundings.localNetworks ?? []),
    local_networks6: disjointOf(surroundings.localNetworks6 ?? [], 6),
    lan_networks6: disjointOf(surroundings.lanNetworks6 ?? [], 6),
  };
  const choices: Record<string, PolicyChoice> = {};
  const choices6: Record<string, PolicyChoice> = {};
  for (const policy of policyNames(config)) {
    for (const family of [4, 6] as const) {
      const choice = policyChoice(config, views, policy, family, surroundings);
      (family === 6 ? choices6 : choices)[policy] = choice;
      maps[balanceMap(policy, family)] = balanceElements(choice, views, "mark_unreachable");
      maps[activeSet(policy, family)] =
        choice.kind === "balance"
          ? choice.members.map((m) => hex(byName.get(m.uplink)?.mark ?? 0))
          : [];
    }
  }
  return { maps, choices, choices6 };
}

/**
 * What `policy` does now for new connections of `family`: its members by
 * their usability in that family, the last resort when none is usable.
 */
function policyChoice(
  config: Config,
  views: readonly UplinkView[],
  policy: string,
  family: Family,
  surroundings: Surroundings,
): PolicyChoice {
  const byName = new Map(views.map((v) => [v.name, v]));
  const configured = config.policies[policy];
  let choice = choose(
    membersAfterQuota(policyMembers(config, views, policy), surroundings.quotaExceeded),
    (name) => {
      const view = byName.get(name);
      return view === undefined ? "bad" : usabilityIn(view, family);
    },
    (name) => {
      const view = byName.get(name);
      return view !== undefined && routableIn(view, family);
    },
    configured?.last_resort ?? (policy === "default" ? config.last_resort : "main"),
    configured?.degraded ?? "avoid",
  );
  const mode = configured?.balance ?? "weight";
  if (choice.kind === "balance" && mode !== "weight") {
    const bandwidth = (name: string) => config.uplinks.find((u) => u.name === name)?.bandwidth;
    const throughput = (name: string) => surroundings.load?.throughput[name];
    choice = {
      kind: "balance",
      members: loadWeights(
        mode,
        choice.members,
        bandwidth,
        throughput,
        new Set(surroundings.load?.full ?? []),
      ),
    };
  }
  return choice;
}

/**
 * Routes uplinkd owns:
 * - in each uplink's table: `default via GW dev IF` while the uplink is
 *   routable (`default dev IF` on a point-to-point link or with `gateway:
 *   none`; `src ADDRESS` when the uplink has a configured `address`), and always `unreachable default` at the lowest priority, so
 *   that a probe marked for a dead uplink fails instead of leaking out of
 *   another one (`ip link set X down` deletes routes through X; the
 *   unreachable route has no device and stays);
 * - in main: a default route via the first chosen uplink of the default
 *   policy, because a local socket's first route lookup happens before the
 *   output hook marks it (without a default in main, connect() fails with
 *   ENETUNREACH). Its preferred source is the LAN address, so an unbound
 *   socket is told apart from one bound to an uplink's address (probes,
 *   services): only the first kind is balanced; masquerade then sets the
 *   chosen uplink's address.
 */
export function renderRoutes(
  config: Config,
  views: readonly UplinkView[],
  choice: PolicyChoice,
  lanAddress?: string,
): Route[] {
  return familyRoutes(config, views, choice, lanAddress, {
    family: 4,
    routable,
    gateway: (view) => view.gateway,
    source: (view) => view.source,
    uplinkMetric: 0,
    mainMetric: config.dataplane.main_metric,
  });
}

/**
 * Rules uplinkd owns, by priority P = `dataplane.rule_priority`:
 * - P: `lookup main suppress_prefixlength 0` — LAN and connected routes win
 *   over the uplinks' defaults (without it, replies to LAN clients follow an
 *   uplink's default route back out);
 * - P+id: `fwmark MARK/MASK lookup TABLE` per uplink;
 * - P+255: `fwmark UNREACHABLE/MASK unreachable` for the last resort;
 * - P+300+id: `from ADDRESS lookup TABLE` per uplink with an address, for
 *   sockets bound to it (TCP/HTTP/DNS probes, services on the router).
 */
export function renderRules(config: Config, views: readonly UplinkView[]): Rule[] {
  return familyRules(config, views, 4, [
    { offset: RULE_OFFSET.from, from: (view) => view.address },
  ]);
}

/**
 * IPv6 routes uplinkd owns (each `family: 6`), as {@link renderRoutes}
 * does for IPv4:
 * - in each uplink's table (the same number as its IPv4 table: tables are
 *   per family in Linux): `default via GATEWAY6 dev IF metric 1024` while
 *   the uplink has IPv6 (a link-local gateway is fine: the route names the
 *   device), and always `unreachable default` at the lowest priority;
 * - in main: a default route via the first chosen uplink of the router
 *   policy for IPv6, at `dataplane.main_metric6` (below the 1024 of the
 *   routes the kernel installs from router advertisements), with the LAN's
 *   IPv6 address as preferred source: an unbound socket of the router then
 *   takes that source, is balanced in the output hook, and is masqueraded
 *   (or prefix-translated) on the chosen uplink.
 */
export function renderRoutes6(
  config: Config,
  views: readonly UplinkView[],
  choice: PolicyChoice,
  lanAddress6?: string,
): Route[] {
  return familyRoutes(config, views, choice, lanAddress6, {
    family: 6,
    routable: routable6,
    gateway: (view) => view.ipv6?.gateway,
    source: () => undefined,
    uplinkMetric: UPLINK_METRIC6,
    mainMetric: config.dataplane.main_metric6,
  });
}

/** What tells the routes of one family apart (see {@link familyRoutes}). */
interface RouteFamily {
  family: Family;
  /** Whether the uplink can carry this family now. */
  routable: (view: UplinkView) => boolean;
  /** The uplink's next hop in this family, if any. */
  gateway: (view: UplinkView) => string | undefined;
  /** Preferred source of the uplink's own table's route, if any. */
  source: (view: UplinkView) => string | undefined;
  /** Metric of the default route in each uplink's table. */
  uplinkMetric: number;
  /** Metric of uplinkd's default route in main. */
  mainMetric: number;
}

/**
 * The routes of {@link renderRoutes} and {@link renderRoutes6}: per uplink
 * its default (while routable) and the unreachable safety default, and one
 * default in main via the policy's first routable member, with `lanSource`
 * as preferred source. IPv4 routes carry no `family` (the adapter's
 * default); IPv6 ones carry `family: 6`.
 */
function familyRoutes(
  config: Config,
  views: readonly UplinkView[],
  choice: PolicyChoice,
  lanSource: string | undefined,
  f: RouteFamily,
): Route[] {
  const protocol = config.dataplane.route_protocol;
  const tag = f.family === 6 ? { family: 6 as const } : {};
  const routes: Route[] = [];
  const viaUplink = (view: UplinkView, table: number, metric: number): Route => {
    const options = config.uplinks.find((u) => u.name === view.name)?.route_options ?? {};
    const gateway = f.gateway(view);
    const source = f.source(view);
    return {
      ...tag,
      table,
      type: "unicast",
      dst: "default",
      ...(gateway !== undefined && !view.pointToPoint ? { gateway } : {}),
      dev: view.interface,
      ...(table === TABLE_MAIN || source === undefined ? {} : { src: source }),
      metric,
      protocol,
      options: Object.fromEntries(
        Object.entries(options as Record<string, number | undefined>).filter(
          (e): e is [string, number] => e[1] !== undefined,
        ),
      ),
    };
  };
  for (const view of views) {
    if (f.routable(view)) routes.push(viaUplink(view, view.table, f.uplinkMetric));
    routes.push({
      ...tag,
      table: view.table,
      type: "unreachable",
      dst: "default",
      metric: SAFETY_METRIC,
      protocol,
      options: {},
    });
  }
  const preferred =
    (choice.kind === "balance"
      ? views.find((v) => choice.members.some((m) => m.uplink === v.name) && f.routable(v))
      : undefined) ?? views.find(f.routable);
  if (preferred !== undefined) {
    const main = viaUplink(preferred, TABLE_MAIN, f.mainMetric);
    routes.push(lanSource === undefined ? main : { ...main, src: lanSource });
  }
  return routes;
}

/**
 * IPv6 rules uplinkd owns (`ip -6 rule`, each `family: 6`), at the same
 * priorities as the IPv4 ones (rules are per family too):
 * - P: `lookup main suppress_prefixlength 0`;
 * - P+id: `fwmark MARK/MASK lookup TABLE` for every uplink (one without
 *   IPv6 then ends in its table's unreachable default: a marked packet
 *   never leaks out of another uplink);
 * - P+255: `fwmark UNREACHABLE/MASK unreachable`;
 * - P+300+id: `from ADDRESS6 lookup TABLE` for the uplink's global address;
 * - P+400+id: `from PREFIX6 lookup TABLE` for its prefix (LAN hosts
 *   numbered from it, the router's own addresses in it).
 */
export function renderRules6(config: Config, views: readonly UplinkView[]): Rule[] {
  return familyRules(config, views, 6, [
    { offset: RULE_OFFSET.from, from: (view) => view.ipv6?.address },
    { offset: RULE_OFFSET.fromPrefix, from: (view) => view.ipv6?.prefix },
  ]);
}

/**
 * The rules of {@link renderRules} and {@link renderRules6}: suppress, one
 * fwmark rule per uplink, the unreachable mark, then for each of `sources`
 * (in order) a `from` rule per uplink that has such a source, at priority
 * P + offset + id. IPv4 rules carry no `family` (the adapter's default);
 * IPv6 ones carry `family: 6`.
 */
function familyRules(
  config: Config,
  views: readonly UplinkView[],
  family: Family,
  sources: readonly { offset: number; from: (view: UplinkView) => string | undefined }[],
): Rule[] {
  const tag = family === 6 ? { family: 6 as const } : {};
  const base = config.dataplane.rule_priority;
  const protocol = config.dataplane.route_protocol;
  const mask = config.dataplane.mark_mask >>> 0;
  const rules: Rule[] = [
    {
      ...tag,
      priority: base + RULE_OFFSET.suppress,
      table: TABLE_MAIN,
      suppressPrefixlength: 0,
      protocol,
    },
  ];
  for (const view of views) {
    rules.push({
      ...tag,
      priority: base + RULE_OFFSET.fwmark + view.id,
      table: view.table,
      fwmark: view.mark,
      fwmask: mask,
      protocol,
    });
  }
  rules.push({
    ...tag,
    priority: base + RULE_OFFSET.unreachable,
    action: "unreachable",
    fwmark: unreachableMark(mask),
    fwmask: mask,
    protocol,
  });
  for (const source of sources) {
    for (const view of views) {
      const from = source.from(view);
      if (from === undefined) continue;
      rules.push({
        ...tag,
        priority: base + source.offset + view.id,
        table: view.table,
        from,
        protocol,
      });
    }
  }
  return rules;
}

/**
 * The whole desired state for a config and the uplinks as they are now.
 *
 * @param config a validated config.
 * @param views one view per configured uplink, in config order.
 * @param surroundings the LAN address and the main table's own networks,
 *   and the UTC offset of the schedules' time zone now (`scheduleOffset`).
 */
export function renderDesired(
  config: Config,
  views: readonly UplinkView[],
  surroundings: Surroundings = {},
): DesiredState {
  const { maps, choices, choices6 } = renderMaps(config, views, surroundings);
  const choice = choices[config.router_policy] ?? { kind: "balance", members: [] };
  const choice6 = choices6[config.router_policy] ?? { kind: "balance", members: [] };
  const offset = surroundings.scheduleOffset ?? 0;
  const structure = renderNft(
    config,
    views,
    Object.fromEntries(Object.keys(maps).map((name) => [name, []])),
    "",
    offset,
  );
  const nftHash = createHash("sha256").update(structure).digest("hex").slice(0, 8);
  return {
    nftScript: renderNft(config, views, maps, nftHash, offset),
    nftHash,
    maps,
    routes: [
      ...renderRoutes(config, views, choice, surroundings.lanAddress),
      ...renderRoutes6(config, views, choice6, surroundings.lanAddress6),
    ],
    rules: [...renderRules(config, views), ...renderRules6(config, views)],
    choices,
    choices6,
    domainSets: domainSets(config),
  };
}

/**
 * An nft script that replaces the elements of the given maps (and dynamic
 * sets) only: the small transaction a failover needs. Atomic like every
 * `nft -f`.
 */
export function renderMapUpdate(table: string, maps: Record<string, readonly string[]>): string {
  const lines: string[] = [];
  for (const [name, elements] of Object.entries(maps)) {
    lines.push(`flush ${isDynamicSet(name) ? "set" : "map"} inet ${table} ${name}`);
    if (elements.length > 0) {
      lines.push(`add element inet ${table} ${name} { ${elements.join(", ")} }`);
    }
  }
  return lines.join("\n") + "\n";
}

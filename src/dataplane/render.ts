/**
 * Pure rendering of the kernel state uplinkd wants: one nft table, a routing
 * table and fwmark per uplink, the ip rules, and a default route in main.
 * No I/O here; see apply.ts for putting it into the kernel.
 *
 * Packet path (IPv4):
 *   prerouting (filter, mangle priority):
 *     1. a connection that already has an uplink's ct mark: restore it into the
 *        packet mark (`@restore`);
 *     2. a new connection arriving on an uplink's interface: mark it with that
 *        uplink, so its replies leave by it (`@inbound`);
 *     3. a new connection from a LAN interface to anything but the router
 *        itself: balance by `numgen random mod N` over `@balance_<policy>`.
 *   output (route hook): the socket's own mark (probes, SO_MARK) wins and is
 *   saved; else restore; else balance the router's own connections.
 *   postrouting (nat): masquerade, or SNAT to a configured address, per uplink.
 * Marked packets then meet the ip rules (see {@link renderRules}).
 */
import { createHash } from "node:crypto";
import type { Config } from "../config/schema.js";
import { TABLE_MAIN, type Route, type Rule } from "../kernel/types.js";
import {
  BALANCE_MODULUS,
  balanceSlices,
  choose,
  type LastResort,
  type PolicyChoice,
  type PolicyMember,
} from "../policy/select.js";
import { hex, unreachableMark, type UplinkSlot } from "./slots.js";

/** Everything the renderer needs to know about one uplink now. */
export interface UplinkView extends UplinkSlot {
  interface: string;
  weight: number;
  tier: number;
  /** SNAT address; masquerade when absent. */
  snat?: string;
  /** The uplink's IPv4 address now (learned from the kernel), if any. */
  address?: string;
  /** Its gateway now (configured, or learned for `auto`), if any. */
  gateway?: string;
  /** Interface exists and is administratively up. */
  linkUp: boolean;
  /** Point-to-point link (PPP): routes need no gateway. */
  pointToPoint: boolean;
  /** May take new connections now (health and link agree). */
  usable: boolean;
}

/** True when the uplink can carry traffic at all: link up, an address, and a next hop. */
export function routable(view: UplinkView): boolean {
  return (
    view.linkUp && view.address !== undefined && (view.gateway !== undefined || view.pointToPoint)
  );
}

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
  /** What each policy does now, for status and logs. */
  choices: Record<string, PolicyChoice>;
}

/** Name of the nft chain that marks packets with uplink `id`. */
export function uplinkChain(id: number): string {
  return `uplink_${id}`;
}

const DEFAULT_POLICY = "default";
const LAST_RESORT: LastResort = "all";
/** Metric of the catch-all `unreachable default` route in each uplink's table (lowest priority). */
export const SAFETY_METRIC = 4_294_967_295;
/** Offsets of uplinkd's rule priorities from `dataplane.rule_priority`. */
export const RULE_OFFSET = { suppress: 0, fwmark: 0, unreachable: 255, from: 300 } as const;

function q(name: string): string {
  return JSON.stringify(name);
}

/** Members of the default policy: every uplink with its configured weight and tier. */
export function defaultPolicyMembers(views: readonly UplinkView[]): PolicyMember[] {
  return views.map((v) => ({ uplink: v.name, weight: v.weight, tier: v.tier }));
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
  if (choice.kind === "unreachable") return [`0-${last} : goto ${unreachableChain}`];
  const ids = new Map(views.map((v) => [v.name, v.id]));
  return balanceSlices(choice.members).map((slice) => {
    const range = slice.from === slice.to ? `${slice.from}` : `${slice.from}-${slice.to}`;
    return `${range} : goto ${uplinkChain(ids.get(slice.uplink) ?? 0)}`;
  });
}

function mapBlock(name: string, head: string[], elements: readonly string[]): string[] {
  const lines = [`\tmap ${name} {`, ...head.map((h) => `\t\t${h}`)];
  if (elements.length > 0) lines.push(`\t\telements = { ${elements.join(", ")} }`);
  lines.push("\t}");
  return lines;
}

/**
 * The nft script for uplinkd's table. It begins by creating and deleting the
 * table so that loading it replaces the old table in the same transaction
 * (nft applies a file atomically: on any error nothing changes).
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
  const lan = config.lan.map(q).join(", ");
  const out: string[] = [`table inet ${table} {}`, `delete table inet ${table}`];
  out.push(`table inet ${table} {`);
  out.push(`\tcomment "owned by uplinkd; changes here are overwritten"`);
  out.push(
    `\tset structure {`,
    `\t\ttype mark`,
    `\t\tcomment "hash of this table's structure"`,
    ...(hash === "" ? [] : [`\t\telements = { 0x${hash} }`]),
    `\t}`,
  );
  out.push(`\tset lan_interfaces {`, `\t\ttype ifname`, `\t\telements = { ${lan} }`, `\t}`);
  out.push(...mapBlock("restore", ["typeof ct mark : verdict"], maps.restore ?? []));
  out.push(
    ...mapBlock("uplink_addresses", ["type ipv4_addr"], maps.uplink_addresses ?? []).map((line) =>
      line.replace("map uplink_addresses", "set uplink_addresses"),
    ),
  );
  out.push(...mapBlock("inbound", ["type ifname : verdict"], maps.inbound ?? []));
  for (const [name, elements] of Object.entries(maps)) {
    if (!name.startsWith("balance_")) continue;
    out.push(
      ...mapBlock(
        name,
        [`typeof numgen random mod ${BALANCE_MODULUS} : verdict`, "flags interval"],
        elements,
      ),
    );
  }
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
  out.push(
    `\tchain prerouting {`,
    `\t\ttype filter hook prerouting priority mangle; policy accept;`,
    `\t\tmeta nfproto != ipv4 return`,
    `\t\tct mark & ${hex(mask)} vmap @restore`,
    `\t\tct state new iifname vmap @inbound`,
    `\t\tiifname != @lan_interfaces return`,
    `\t\tfib daddr type { local, broadcast, multicast } return`,
    `\t\tnumgen random mod ${BALANCE_MODULUS} vmap @balance_${DEFAULT_POLICY}`,
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
    `\t\tnumgen random mod ${BALANCE_MODULUS} vmap @balance_${DEFAULT_POLICY}`,
    `\t}`,
  );
  out.push(
    `\tchain postrouting {`,
    `\t\ttype nat hook postrouting priority srcnat; policy accept;`,
  );
  for (const view of views) {
    const nat = view.snat === undefined ? "masquerade" : `snat ip to ${view.snat}`;
    out.push(`\t\tmeta nfproto ipv4 oifname ${q(view.interface)} ${nat}`);
  }
  out.push(`\t}`, `}`);
  return out.join("\n") + "\n";
}

/**
 * The map elements of every dynamic map: restore (ct mark -> uplink chain),
 * inbound (interface -> uplink chain), and one balance map per policy.
 * These are the only things a failover changes.
 */
export function renderMaps(
  views: readonly UplinkView[],
  lastResort: LastResort = LAST_RESORT,
): { maps: Record<string, string[]>; choices: Record<string, PolicyChoice> } {
  const byName = new Map(views.map((v) => [v.name, v]));
  const choice = choose(
    defaultPolicyMembers(views),
    (name) => byName.get(name)?.usable === true,
    (name) => {
      const view = byName.get(name);
      return view !== undefined && routable(view);
    },
    lastResort,
  );
  return {
    maps: {
      restore: views.map((v) => `${hex(v.mark)} : goto ${uplinkChain(v.id)}`),
      uplink_addresses: [
        ...new Set(views.flatMap((v) => (v.address === undefined ? [] : [v.address]))),
      ],
      inbound: views.map((v) => `${q(v.interface)} : goto ${uplinkChain(v.id)}`),
      [`balance_${DEFAULT_POLICY}`]: balanceElements(choice, views, "mark_unreachable"),
    },
    choices: { [DEFAULT_POLICY]: choice },
  };
}

/**
 * Routes uplinkd owns:
 * - in each uplink's table: `default via GW dev IF` while the uplink is
 *   routable, and always `unreachable default` at the lowest priority, so
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
  const protocol = config.dataplane.route_protocol;
  const routes: Route[] = [];
  const viaUplink = (view: UplinkView, table: number, metric: number): Route => ({
    table,
    type: "unicast",
    dst: "default",
    ...(view.gateway !== undefined && !view.pointToPoint ? { gateway: view.gateway } : {}),
    dev: view.interface,
    metric,
    protocol,
    options: {},
  });
  for (const view of views) {
    if (routable(view)) routes.push(viaUplink(view, view.table, 0));
    routes.push({
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
      ? views.find((v) => choice.members.some((m) => m.uplink === v.name) && routable(v))
      : undefined) ?? views.find(routable);
  if (preferred !== undefined) {
    const main = viaUplink(preferred, TABLE_MAIN, config.dataplane.main_metric);
    routes.push(lanAddress === undefined ? main : { ...main, src: lanAddress });
  }
  return routes;
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
  const base = config.dataplane.rule_priority;
  const protocol = config.dataplane.route_protocol;
  const mask = config.dataplane.mark_mask >>> 0;
  const rules: Rule[] = [
    { priority: base + RULE_OFFSET.suppress, table: TABLE_MAIN, suppressPrefixlength: 0, protocol },
  ];
  for (const view of views) {
    rules.push({
      priority: base + RULE_OFFSET.fwmark + view.id,
      table: view.table,
      fwmark: view.mark,
      fwmask: mask,
      protocol,
    });
  }
  rules.push({
    priority: base + RULE_OFFSET.unreachable,
    action: "unreachable",
    fwmark: unreachableMark(mask),
    fwmask: mask,
    protocol,
  });
  for (const view of views) {
    if (view.address === undefined) continue;
    rules.push({
      priority: base + RULE_OFFSET.from + view.id,
      table: view.table,
      from: view.address,
      protocol,
    });
  }
  return rules;
}

/**
 * The whole desired state for a config and the uplinks as they are now.
 *
 * @param config a validated config.
 * @param views one view per configured uplink, in config order.
 * @param lanAddress the router's address on its first LAN interface, if any
 *   (preferred source of the main default route).
 */
export function renderDesired(
  config: Config,
  views: readonly UplinkView[],
  lanAddress?: string,
): DesiredState {
  const { maps, choices } = renderMaps(views);
  const choice = choices[DEFAULT_POLICY] ?? { kind: "balance", members: [] };
  const structure = renderNft(
    config,
    views,
    Object.fromEntries(Object.keys(maps).map((name) => [name, []])),
  );
  const nftHash = createHash("sha256").update(structure).digest("hex").slice(0, 8);
  return {
    nftScript: renderNft(config, views, maps, nftHash),
    nftHash,
    maps,
    routes: renderRoutes(config, views, choice, lanAddress),
    rules: renderRules(config, views),
    choices,
  };
}

/** Dynamic nft objects that are sets (the others are maps). */
const DYNAMIC_SETS = new Set(["uplink_addresses"]);

/**
 * An nft script that replaces the elements of the given maps (and dynamic
 * sets) only: the small transaction a failover needs. Atomic like every
 * `nft -f`.
 */
export function renderMapUpdate(table: string, maps: Record<string, readonly string[]>): string {
  const lines: string[] = [];
  for (const [name, elements] of Object.entries(maps)) {
    lines.push(`flush ${DYNAMIC_SETS.has(name) ? "set" : "map"} inet ${table} ${name}`);
    if (elements.length > 0) {
      lines.push(`add element inet ${table} ${name} { ${elements.join(", ")} }`);
    }
  }
  return lines.join("\n") + "\n";
}

/**
 * What the kernel says about each uplink's interface now: present, up,
 * carrier, address, gateway. Pure: fed with `ip -j` output already parsed.
 */
import type { Config, UplinkConfig } from "../config/schema.js";
import { canonicalAddress6, isLinkLocal6, networkOf6 } from "../net/ipv6.js";
import { virtualAddressesOf } from "../config/ha.js";
import { TABLE_MAIN, type InterfaceAddress6, type LinkState, type Route } from "../kernel/types.js";
import { optional } from "../optional.js";
import { problemReason, uplinkProblem } from "./problems.js";

/** rtnetlink protocol RTPROT_RA (9): routes the kernel installs from router advertisements. */
export const RTPROT_RA = 9;

/** One uplink's IPv6 now (see {@link UplinkLink.ipv6}). */
export interface UplinkLink6 {
  /**
   * A global IPv6 address of the interface that may be used: not
   * link-local, not tentative, deprecated or failed; a stable (not
   * temporary) one first, else the kernel's first.
   */
  address?: string;
  /**
   * The configured `gateway6`, or for `auto` the router of a default route
   * through the interface in the main table that uplinkd did not install
   * (router advertisements: `default via fe80::X dev IF proto ra`), lowest
   * metric first.
   */
  gateway?: string;
  /** The configured `prefix6`, or the learned one for `prefix6: auto`. */
  prefix?: string;
}

/** One uplink's interface as the kernel has it now. */
export interface UplinkLink {
  /** The interface exists. */
  present: boolean;
  /** Administratively up. */
  up: boolean;
  /** Carrier present (LOWER_UP). */
  carrier: boolean;
  /** The kernel flags the link POINTOPOINT (PPP, TUN, raw-IP modems): no gateway needed. */
  pointToPoint: boolean;
  /**
   * The uplink's source address: its configured `address` while the
   * interface holds it, else (no `address` configured) the interface's
   * primary IPv4 address (the first the kernel lists). Absent while there
   * is none: the uplink then waits.
   */
  address?: string;
  /** Where {@link address} comes from: the config's `address`, or the interface's primary address. */
  addressSource?: "configured" | "primary";
  /** The configured `address` while the interface does not hold it (the uplink waits for it). */
  missingAddress?: string;
  /** Prefix of that address, e.g. `100.64.1.0/24`. */
  network?: string;
  /**
   * The gateway: the configured one, or for `gateway: auto` the peer of a
   * point-to-point address, else the gateway of a default route through
   * the interface installed by someone else (a DHCP or PPP client), lowest
   * metric first. Absent for `gateway: none`, and for `auto` when there is
   * none.
   */
  gateway?: string;
  /** The uplink's IPv6 now; absent for `gateway6: none`, and while the interface has none. */
  ipv6?: UplinkLink6;
  /**
   * Why the kernel cannot serve the uplink as configured (links/problems.ts:
   * missing interface, configured address absent, gateway not on-link),
   * as `uplinks.N.KEY: message`; the uplink is failed while it is set.
   * An off-link gateway is then not reported as {@link gateway}.
   */
  problem?: string;
}

/**
 * The usable global IPv6 address of an interface (see {@link UplinkLink6.address}).
 * @param exclude addresses never chosen (canonical text): an HA pair's
 *   virtual addresses, which the master holds besides its own.
 */
export function chooseAddress6(
  addresses: readonly InterfaceAddress6[],
  exclude: readonly string[] = [],
): string | undefined {
  const usable = addresses.filter(
    (a) =>
      !exclude.includes(canonicalAddress6(a.address)) &&
      a.scope === "global" &&
      !isLinkLocal6(a.address) &&
      !a.tentative &&
      !a.deprecated &&
      !a.dadfailed,
  );
  return (usable.find((a) => !a.temporary) ?? usable[0])?.address;
}

/**
 * One uplink's IPv6 as the kernel has it (see {@link UplinkLink6}).
 * @param learnedPrefix the delegated prefix for `prefix6: auto`, if known.
 * @param virtual the interface's IPv6 virtual addresses (HA pair): never
 *   the uplink's own address.
 */
export function observeIpv6(
  uplink: UplinkConfig,
  link: LinkState,
  routes: readonly Route[],
  ownProtocol: number,
  learnedPrefix?: string,
  virtual: readonly string[] = [],
): UplinkLink6 | undefined {
  if (uplink.gateway6 === "none") return undefined;
  const prefix = uplink.prefix6 === "auto" ? learnedPrefix : uplink.prefix6;
  const address = chooseAddress6(link.addresses6 ?? [], virtual);
  let gateway: string | undefined;
  if (uplink.gateway6 !== "auto") gateway = uplink.gateway6;
  else {
    gateway = routes
      .filter(
        (r) =>
          r.family === 6 &&
          r.table === TABLE_MAIN &&
          r.dst === "default" &&
          r.type === "unicast" &&
          r.dev === uplink.interface &&
          r.gateway !== undefined &&
          r.protocol !== ownProtocol,
      )
      .sort(
        (a, b) =>
          a.metric - b.metric ||
          Number(b.protocol === RTPROT_RA) - Number(a.protocol === RTPROT_RA),
      )[0]?.gateway;
  }
  if (address === undefined && gateway === undefined) return undefined;
  return {
    ...optional("address", address),
    ...optional("gateway", gateway),
    ...optional("prefix", prefix),
  };
}

function networkOf(address: string, prefixlen: number): string {
  const value = address.split(".").reduce((acc, octet) => (acc << 8) + Number(octet), 0) >>> 0;
  const mask = prefixlen === 0 ? 0 : (~0 << (32 - prefixlen)) >>> 0;
  const net = (value & mask) >>> 0;
  return `${[24, 16, 8, 0].map((s) => (net >>> s) & 255).join(".")}/${prefixlen}`;
}

/**
 * The address an uplink uses on `link`: the configured one if the interface
 * holds it, else the first (primary) one when none is configured.
 */
function chooseAddress(
  configured: string | undefined,
  link: LinkState,
): Pick<UplinkLink, "address" | "addressSource" | "missingAddress" | "network"> & {
  peer?: string;
} {
  const entry =
    configured === undefined
      ? link.addresses[0]
      : link.addresses.find((a) => a.address === configured);
  if (entry === undefined) return configured === undefined ? {} : { missingAddress: configured };
  return {
    address: entry.address,
    addressSource: configured === undefined ? "primary" : "configured",
    network: networkOf(entry.address, entry.prefixlen),
    ...(entry.peer === undefined ? {} : { peer: entry.peer }),
  };
}

/**
 * The state of every configured uplink's interface.
 *
 * @param links `ip -j addr show`, parsed.
 * @param routes `ip -4|-6 -j route show table all`, parsed.
 * @param ownProtocol uplinkd's route protocol: its own routes never count as learned gateways.
 * @param learnedPrefixes uplink name -> delegated prefix, for `prefix6: auto`.
 * @returns uplink name -> its link state.
 */
export function observeUplinks(
  config: Config,
  links: readonly LinkState[],
  routes: readonly Route[],
  ownProtocol: number,
  learnedPrefixes: ReadonlyMap<string, string> = new Map(),
): Map<string, UplinkLink> {
  const byName = new Map(links.map((l) => [l.name, l]));
  const result = new Map<string, UplinkLink>();
  for (const [index, uplink] of config.uplinks.entries()) {
    const link = byName.get(uplink.interface);
    const found = uplinkProblem(uplink, index, link, links);
    const problem = found === undefined ? undefined : problemReason(found);
    if (link === undefined) {
      result.set(uplink.name, {
        present: false,
        up: false,
        carrier: false,
        pointToPoint: false,
        ...optional("missingAddress", uplink.address),
        ...optional("problem", problem),
      });
      continue;
    }
    const { peer, ...chosen } = chooseAddress(uplink.address, link);
    let gateway: string | undefined;
    if (uplink.gateway === "none") gateway = undefined;
    // A gateway the kernel refuses a route through is no gateway.
    else if (found?.path[2] === "gateway") gateway = undefined;
    else if (uplink.gateway !== "auto") gateway = uplink.gateway;
    else if (link.pointToPoint && peer !== undefined) gateway = peer.split("/")[0];
    else {
      const learned = routes
        .filter(
          (r) =>
            r.family !== 6 &&
            r.dst === "default" &&
            r.dev === uplink.interface &&
            r.gateway !== undefined &&
            r.protocol !== ownProtocol,
        )
        .sort((a, b) => a.metric - b.metric)[0];
      gateway = learned?.gateway;
    }
    result.set(uplink.name, {
      present: true,
      up: link.up,
      carrier: link.carrier,
      pointToPoint: link.pointToPoint,
      ...chosen,
      ...optional("gateway", gateway),
      ...optional(
        "ipv6",
        observeIpv6(
          uplink,
          link,
          routes,
          ownProtocol,
          learnedPrefixes.get(uplink.name),
          virtualAddressesOf(config.ha, uplink.interface, 6),
        ),
      ),
      ...optional("problem", problem),
    });
  }
  return result;
}

/**
 * The router's address on its LAN: the first IPv4 address of the first
 * `lan` interface that has one; undefined when none has.
 */
export function lanAddress(config: Config, links: readonly LinkState[]): string | undefined {
  for (const name of config.lan) {
    const address = links.find((l) => l.name === name)?.addresses[0]?.address;
    if (address !== undefined) return address;
  }
  return undefined;
}

/**
 * Destinations of the main table's own routes (connected networks, static
 * routes to other internal networks): never balanced. Default routes and
 * uplinkd's own routes are left out.
 *
 * @param routes `ip -4 -j route show table all`, parsed.
 */
export function localNetworks(routes: readonly Route[], ownProtocol: number): string[] {
  return routes
    .filter(
      (r) =>
        r.family !== 6 &&
        r.table === TABLE_MAIN &&
        r.dst !== "default" &&
        r.type === "unicast" &&
        r.protocol !== ownProtocol,
    )
    .map((r) => r.dst);
}

/**
 * IPv6 destinations of the main table's own routes (connected networks,
 * static routes to internal networks, fe80::/64): never balanced. Default
 * routes and uplinkd's own routes are left out.
 *
 * @param routes `ip -6 -j route show table all`, parsed (IPv4 routes are skipped).
 */
export function localNetworks6(routes: readonly Route[], ownProtocol: number): string[] {
  return routes
    .filter(
      (r) =>
        r.family === 6 &&
        r.table === TABLE_MAIN &&
        r.dst !== "default" &&
        r.type === "unicast" &&
        r.protocol !== ownProtocol,
    )
    .map((r) => r.dst);
}

/**
 * The LAN's IPv6 networks: the prefix of every global or unique-local
 * address on a `lan` interface (`fd00:1::/64`), in order, once each. These
 * are the sources that prefix translation (NPTv6) maps into an uplink's
 * `prefix6`.
 */
export function lanNetworks6(config: Config, links: readonly LinkState[]): string[] {
  const networks: string[] = [];
  for (const name of config.lan) {
    for (const a of links.find((l) => l.name === name)?.addresses6 ?? []) {
      if (a.scope !== "global" || isLinkLocal6(a.address) || a.dadfailed) continue;
      const network = networkOf6(a.address, a.prefixlen);
      if (network !== undefined && !networks.includes(network)) networks.push(network);
    }
  }
  return networks;
}

/**
 * The router's IPv6 address on its LAN (the preferred source of the IPv6
 * default in main): the first usable global or unique-local address of
 * the first `lan` interface that has one; in an HA pair never a virtual
 * address (it leaves with mastership).
 */
export function lanAddress6(config: Config, links: readonly LinkState[]): string | undefined {
  for (const name of config.lan) {
    const address = chooseAddress6(
      links.find((l) => l.name === name)?.addresses6 ?? [],
      virtualAddressesOf(config.ha, name, 6),
    );
    if (address !== undefined) return address;
  }
  return undefined;
}

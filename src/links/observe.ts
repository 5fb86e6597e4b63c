/**
 * What the kernel says about each uplink's interface now: present, up,
 * carrier, address, gateway. Pure: fed with `ip -j` output already parsed.
 */
import type { Config } from "../config/schema.js";
import { TABLE_MAIN, type LinkState, type Route } from "../kernel/types.js";
import { optional } from "../optional.js";

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
 * @param routes `ip -4 -j route show table all`, parsed.
 * @param ownProtocol uplinkd's route protocol: its own routes never count as learned gateways.
 * @returns uplink name -> its link state.
 */
export function observeUplinks(
  config: Config,
  links: readonly LinkState[],
  routes: readonly Route[],
  ownProtocol: number,
): Map<string, UplinkLink> {
  const byName = new Map(links.map((l) => [l.name, l]));
  const result = new Map<string, UplinkLink>();
  for (const uplink of config.uplinks) {
    const link = byName.get(uplink.interface);
    if (link === undefined) {
      result.set(uplink.name, {
        present: false,
        up: false,
        carrier: false,
        pointToPoint: false,
        ...optional("missingAddress", uplink.address),
      });
      continue;
    }
    const { peer, ...chosen } = chooseAddress(uplink.address, link);
    let gateway: string | undefined;
    if (uplink.gateway === "none") gateway = undefined;
    else if (uplink.gateway !== "auto") gateway = uplink.gateway;
    else if (link.pointToPoint && peer !== undefined) gateway = peer.split("/")[0];
    else {
      const learned = routes
        .filter(
          (r) =>
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
        r.table === TABLE_MAIN &&
        r.dst !== "default" &&
        r.type === "unicast" &&
        r.protocol !== ownProtocol,
    )
    .map((r) => r.dst);
}

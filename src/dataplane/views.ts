/**
 * Combining config, kernel links and health into what the renderer needs.
 */
import { uplinkHealth, type Config } from "../config/schema.js";
import { hasIpv6Health } from "../config/families.js";
import { optional } from "../optional.js";
import { virtualAddressesOf } from "../config/ha.js";
import type { UplinkLink } from "../links/observe.js";
import type { UplinkState } from "../uplink-health.js";
import type { Usability } from "../policy/select.js";
import type { Family } from "../kernel/types.js";
import { uplinkSlots, type UplinkSlot } from "../config/slots.js";

/** Everything the renderer needs to know about one uplink now. */
export interface UplinkView extends UplinkSlot {
  interface: string;
  weight: number;
  tier: number;
  /** SNAT address (config `snat`, else `address`); masquerade when absent. */
  snat?: string;
  /**
   * The uplink's virtual address (config `ha.virtual_addresses` of its
   * interface, the first one) when this router is one of a pair: forwarded
   * connections are SNATed to it, the router's own (probes) keep its own
   * address. Absent without `ha`.
   */
  virtualAddress?: string;
  /**
   * The uplink's IPv6 virtual address (the first IPv6 one of its interface
   * in `ha.virtual_addresses`, canonical): forwarded IPv6 connections are
   * SNATed to it (or, with `prefix6`, translated into that prefix), the
   * router's own keep its own address. Absent without a dual-stack pair.
   */
  virtualAddress6?: string;
  /** The uplink's IPv4 source address now (configured, or the interface's primary), if any. */
  address?: string;
  /**
   * Preferred source of the uplink's routes (`src`): its configured
   * `address` while the interface holds it, so that the router's own
   * traffic marked for the uplink (ICMP probes) leaves from it. Absent:
   * the kernel picks the interface's primary address.
   */
  source?: string;
  /** Its gateway now (configured, or learned for `auto`), if any. */
  gateway?: string;
  /** Interface exists and is administratively up. */
  linkUp: boolean;
  /**
   * Routes go straight out of the interface, with no gateway (`default dev
   * IF`): a POINTOPOINT link (PPP, a tunnel, a raw-IP modem) or `gateway: none`.
   */
  pointToPoint: boolean;
  /** How usable for new connections now (health and link together). */
  usability: Usability;
  /**
   * The uplink's IPv6 now: its global address, gateway (configured, or the
   * RA router), prefix (`prefix6`), and how usable it is for new IPv6
   * connections. Absent while the uplink has no global IPv6 address (and
   * for `gateway6: none`).
   */
  ipv6?: UplinkView6;
}

/** One uplink's IPv6 as the renderer needs it. */
export interface UplinkView6 {
  address: string;
  gateway?: string;
  prefix?: string;
  usability: Usability;
}

/** True when the uplink can carry traffic at all: link up, an address, and a next hop. */
export function routable(view: UplinkView): boolean {
  return (
    view.linkUp && view.address !== undefined && (view.gateway !== undefined || view.pointToPoint)
  );
}

/** True when the uplink can carry IPv6 traffic: link up, a global IPv6 address, and a next hop. */
export function routable6(view: UplinkView): boolean {
  return (
    view.linkUp && view.ipv6 !== undefined && (view.ipv6.gateway !== undefined || view.pointToPoint)
  );
}

/** Whether `view` can carry traffic of `family` (see {@link routable}, {@link routable6}). */
export function routableIn(view: UplinkView, family: Family): boolean {
  return family === 6 ? routable6(view) : routable(view);
}

/** How usable `view` is for new connections of `family`. */
export function usabilityIn(view: UplinkView, family: Family): Usability {
  return family === 6 ? (view.ipv6?.usability ?? "bad") : view.usability;
}

/**
 * One view per configured uplink, in config order. An uplink with an
 * `address` gets SNAT to it (unless `snat` says otherwise) and that address
 * as the preferred source of its routes; `gateway: none` makes it
 * point-to-point (routes straight out of the interface). With `ha`, an
 * uplink whose interface has a virtual address gets SNAT to it for
 * forwarded connections (see {@link UplinkView.virtualAddress}), and one
 * with an IPv6 virtual address SNAT to that for forwarded IPv6 connections
 * ({@link UplinkView.virtualAddress6}).
 *
 * The IPv6 part (`ipv6`) is there while the uplink has a global IPv6
 * address; its usability comes from the uplink's IPv6 health state, or,
 * for an uplink without IPv6 targets or probes (IPv6 unmonitored), from its
 * IPv4 usability (IPv4 health, route and carrier): an outage IPv4 sees takes
 * IPv6 out too, instead of IPv6 staying usable forever.
 *
 * @param links uplink name -> its interface now (observeUplinks).
 * @param stateOf each uplink's health state now, per family (until health
 *   judges the families apart, callers pass one state for both).
 */
export function buildViews(
  config: Config,
  links: ReadonlyMap<string, UplinkLink>,
  stateOf: (uplink: string, family: Family) => UplinkState,
): UplinkView[] {
  const slots = uplinkSlots(config);
  return config.uplinks.map((uplink, index) => {
    const slot = slots[index];
    if (slot === undefined) throw new Error(`no slot for uplink ${uplink.name}`);
    const link = links.get(uplink.name);
    const virtualAddress = virtualAddressesOf(config.ha, uplink.interface)[0];
    const view: UplinkView = {
      ...slot,
      interface: uplink.interface,
      weight: uplink.weight,
      tier: uplink.tier,
      // With a virtual address (HA pair), forwarded connections are SNATed to it instead.
      ...optional(
        "snat",
        uplink.snat ?? (virtualAddress === undefined ? uplink.address : undefined),
      ),
      ...optional("virtualAddress", virtualAddress),
      ...optional("virtualAddress6", virtualAddressesOf(config.ha, uplink.interface, 6)[0]),
      ...optional("address", link?.address),
      ...optional("source", link?.addressSource === "configured" ? link.address : undefined),
      ...optional("gateway", link?.gateway),
      linkUp: link !== undefined && link.present && link.up,
      pointToPoint: (link?.pointToPoint ?? false) || uplink.gateway === "none",
      usability: "bad",
    };
    view.usability =
      routable(view) && (link?.carrier ?? false) ? usabilityOf(stateOf(uplink.name, 4)) : "bad";
    const address6 = link?.ipv6?.address;
    if (address6 !== undefined) {
      view.ipv6 = {
        address: address6,
        ...optional("gateway", link?.ipv6?.gateway),
        ...optional("prefix", link?.ipv6?.prefix),
        usability: "bad",
      };
      const monitored6 = hasIpv6Health(uplink, uplinkHealth(config, uplink));
      view.ipv6.usability = !(routable6(view) && (link?.carrier ?? false))
        ? "bad"
        : monitored6
          ? usabilityOf(stateOf(uplink.name, 6))
          : view.usability;
    }
    return view;
  });
}

/**
 * How usable an uplink in `state` is for new connections (given it has a
 * route and carrier): `init` counts as good, so a restart never cuts traffic.
 */
export function usabilityOf(state: UplinkState): Usability {
  if (state === "up" || state === "init") return "good";
  if (state === "degraded") return "degraded";
  return "bad";
}

/**
 * Combining config, kernel links and health into what the renderer needs.
 */
import type { Config } from "../config/schema.js";
import { optional } from "../optional.js";
import { virtualAddressesOf } from "../config/ha.js";
import type { UplinkLink } from "../links/observe.js";
import type { UplinkState } from "../uplink-health.js";
import type { Usability } from "../policy/select.js";
import type { Family } from "../kernel/types.js";
import { routable, routable6, type UplinkView } from "./render.js";
import { uplinkSlots } from "./slots.js";

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
 * address; its usability comes from the uplink's IPv6 health state.
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
      view.ipv6.usability =
        routable6(view) && (link?.carrier ?? false) ? usabilityOf(stateOf(uplink.name, 6)) : "bad";
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

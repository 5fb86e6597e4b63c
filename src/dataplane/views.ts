/**
 * Combining config, kernel links and health into what the renderer needs.
 */
import type { Config } from "../config/schema.js";
import type { UplinkLink } from "../links/observe.js";
import { routable, type UplinkView } from "./render.js";
import { uplinkSlots } from "./slots.js";

/**
 * One view per configured uplink, in config order.
 *
 * @param links uplink name -> its interface now (observeUplinks).
 * @param takesConnections whether health lets the uplink take new connections now.
 */
export function buildViews(
  config: Config,
  links: ReadonlyMap<string, UplinkLink>,
  takesConnections: (uplink: string) => boolean,
): UplinkView[] {
  const slots = uplinkSlots(config);
  return config.uplinks.map((uplink, index) => {
    const slot = slots[index];
    if (slot === undefined) throw new Error(`no slot for uplink ${uplink.name}`);
    const link = links.get(uplink.name);
    const view: UplinkView = {
      ...slot,
      interface: uplink.interface,
      weight: uplink.weight,
      tier: uplink.tier,
      ...(uplink.snat === undefined ? {} : { snat: uplink.snat }),
      ...(link?.address === undefined ? {} : { address: link.address }),
      ...(link?.gateway === undefined ? {} : { gateway: link.gateway }),
      linkUp: link !== undefined && link.present && link.up,
      pointToPoint: link?.pointToPoint ?? false,
      usable: false,
    };
    view.usable = routable(view) && (link?.carrier ?? false) && takesConnections(uplink.name);
    return view;
  });
}

/** Link fixtures for unit tests that render or plan kernel state. */
import type { UplinkLink } from "../../src/links/observe.js";

/**
 * An uplink's link that is present, up, with carrier, not point-to-point,
 * holding `address` in its /24 with `gateway`.
 */
export function upLink(address: string, gateway: string): UplinkLink {
  return {
    present: true,
    up: true,
    carrier: true,
    pointToPoint: false,
    address,
    network: address.replace(/\.\d+$/, ".0/24"),
    gateway,
  };
}

/** Link fixtures for unit tests that render or plan kernel state. */
import type { Config } from "../../src/config/schema.js";
import { renderMaps, type UplinkView } from "../../src/dataplane/render.js";
import { buildViews } from "../../src/dataplane/views.js";
import type { UplinkLink } from "../../src/links/observe.js";
import type { PolicyChoice } from "../../src/policy/select.js";
import type { UplinkState } from "../../src/uplink-health.js";

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

/** Uplink `n`'s link as the lab numbers it: 100.64.N.2 in 100.64.N.0/24, gateway 100.64.N.1. */
export function numberedLink(n: number): UplinkLink {
  return upLink(`100.64.${n}.2`, `100.64.${n}.1`);
}

/**
 * The views and policy choices of `config` over `links`, with uplink
 * states from `states` (default up): what the controller would commit.
 */
export function policyWorld(
  config: Config,
  links: ReadonlyMap<string, UplinkLink>,
  states: Record<string, UplinkState>,
): {
  views: UplinkView[];
  choices: Record<string, PolicyChoice>;
  choices6: Record<string, PolicyChoice>;
} {
  const views = buildViews(config, links, (n) => states[n] ?? "up");
  const { choices, choices6 } = renderMaps(config, views);
  return { views, choices, choices6 };
}

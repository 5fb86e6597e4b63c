/**
 * The one builder of the desired kernel state:
 *
 *     desired kernel state = f(config, links, health, load)
 *
 * Pure: the daemon calls it with its monitors' states and the balancer's
 * load snapshot, `uplinkd plan` with what the running daemon reports over
 * its control socket (or, with no daemon, every uplink healthy and no
 * load). Both therefore render the same state from the same facts.
 */
import type { Config } from "../config/schema.js";
import { renderDesired, type DesiredState } from "../dataplane/render.js";
import { buildViews, routableIn, usabilityOf, type UplinkView } from "../dataplane/views.js";
import type { Surroundings } from "../links/watcher.js";
import type { Family } from "../kernel/types.js";
import type { UplinkLink } from "../links/observe.js";
import type { LoadSnapshot } from "../policy/load.js";
import type { UplinkState } from "../uplink-health.js";
import { zoneOffsetMinutes } from "../policy/schedule.js";

/** What the desired state is computed from, as it is now. */
export interface ControllerInputs {
  config: Config;
  /** One view per configured uplink, in config order (maintenance applied). */
  views: UplinkView[];
  /** The router's surroundings, with the load snapshot when there is one. */
  surroundings: Surroundings;
  /** Uplinks whose link or health checks say they cannot carry traffic, maintenance ignored. */
  failed: ReadonlySet<string>;
  /**
   * Uplinks whose IPv6 cannot carry traffic (IPv6 health or link bad, no
   * IPv6 address), maintenance ignored. Absent: IPv6 is not judged apart,
   * and a failed uplink's clean-up covers both families.
   */
  failed6?: ReadonlySet<string>;
}

/** Each uplink's health per family, as the builder needs it. */
export interface HealthReading {
  /** The uplink's state in `family` with maintenance applied (`disabled` while in maintenance). */
  state(uplink: string, family: Family): UplinkState;
  /**
   * What the uplink's health checks of `family` found, maintenance ignored;
   * undefined when it has no monitor of that family (then {@link state} counts).
   */
  probed(uplink: string, family: Family): UplinkState | undefined;
}

/** Every uplink healthy (`init`, which counts as good), none in maintenance: `plan` without a daemon. */
export const ASSUMED_HEALTHY: HealthReading = Object.freeze({
  state: () => "init" as const,
  probed: () => undefined,
});

/**
 * The desired state's inputs from the config, the links as observed, each
 * uplink's health and the load.
 *
 * @param links uplink name -> its interface now (observeUplinks).
 * @param surroundings the LAN addresses and the main table's own networks.
 * @param load the balancer's snapshot (`least-used`, `spillover`); undefined: no load yet.
 */
export function desiredInputs(
  config: Config,
  links: ReadonlyMap<string, UplinkLink>,
  surroundings: Surroundings,
  health: HealthReading,
  load: LoadSnapshot | undefined,
): ControllerInputs {
  const views = buildViews(config, links, (name, family) => health.state(name, family));
  // Judged from the same views: whether the link can carry the family at all, then the probes' verdict.
  const bad = (view: UplinkView, family: Family): boolean =>
    !routableIn(view, family) ||
    links.get(view.name)?.carrier !== true ||
    usabilityOf(health.probed(view.name, family) ?? health.state(view.name, family)) === "bad";
  return {
    config,
    views,
    surroundings: load === undefined ? surroundings : { ...surroundings, load },
    failed: new Set(views.filter((v) => bad(v, 4)).map((v) => v.name)),
    // IPv6 is judged apart: an uplink whose IPv6 is bad or gone loses its IPv6 connections.
    failed6: new Set(views.filter((v) => bad(v, 6)).map((v) => v.name)),
  };
}

/** The desired kernel state of `inputs` (see {@link desiredInputs}). */
export function desiredState(inputs: ControllerInputs): DesiredState {
  return renderDesired(inputs.config, inputs.views, inputs.surroundings);
}

/**
 * `surroundings` with the UTC offset of the schedules' time zone at `atMs`
 * (`scheduleOffset`, minutes east), when some rule has a schedule; else
 * unchanged (the table then does not depend on the time zone).
 * @param atMs epoch ms (the wall clock).
 */
export function scheduleSurroundings(
  config: Config,
  surroundings: Surroundings,
  atMs: number,
): Surroundings {
  if (!config.rules.some((r) => r.schedule !== undefined)) return surroundings;
  return { ...surroundings, scheduleOffset: zoneOffsetMinutes(config.time_zone, atMs) };
}

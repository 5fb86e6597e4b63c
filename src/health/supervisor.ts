/**
 * The health monitors of all uplinks, and maintenance (`uplinkd disable`):
 * per configured uplink one IPv4 monitor (judged by its IPv4 targets and
 * probes) and, when it has IPv6 targets or probes and `gateway6` is not
 * `none`, one IPv6 monitor (judged by its IPv6 ones, probing from its
 * global IPv6 address). A monitor is kept across reloads while its probe
 * settings, interface and mark stay the same. Carrier loss takes both
 * families down; maintenance applies to both.
 */
import type { Logger } from "pino";
import { uplinkHealth, type Config } from "../config/schema.js";
import { withMaintenance, type MaintainedHealth, type Maintenance } from "./maintenance.js";
import { uplinkSlots } from "../config/slots.js";
import type { Family } from "../kernel/types.js";
import type { UplinkLink } from "../links/observe.js";
import type {
  HealthSnapshot,
  Transition,
  UplinkHealth,
  UplinkHealthOptions,
  UplinkState,
} from "../uplink-health.js";
import { hasIpv6Health, healthOf, probesFamily, sourceAddressOf } from "./family.js";

/** Options of a {@link HealthSupervisor}. */
export interface HealthSupervisorOptions {
  log: Logger;
  /** Creates the health monitor of one uplink and one family (`options.family`). */
  createHealth: (options: UplinkHealthOptions) => UplinkHealth;
  /**
   * Every transition to record: each monitor's (`transition.family` says
   * which) while its uplink is not in maintenance, and those of maintenance
   * itself (to `disabled` and back, one per monitored family). Health
   * changes during maintenance are only logged.
   */
  onTransition: (transition: Transition) => void;
}

const FAMILIES: readonly Family[] = [4, 6];

/**
 * Map key of an uplink's monitor of one family: the uplink's name for IPv4
 * (as before IPv6, so code that looks a monitor up by name finds the IPv4
 * one), `NAME/6` for IPv6 (`/` is never part of an uplink's name).
 */
function keyOf(uplink: string, family: Family): string {
  return family === 4 ? uplink : `${uplink}/6`;
}

/** The uplinks' health monitors and their maintenance. The constructor starts nothing. */
export class HealthSupervisor {
  readonly #options: HealthSupervisorOptions;
  /** {@link keyOf} -> its monitor. */
  readonly #monitors = new Map<string, MaintainedHealth>();
  /** What each running monitor was created from (interface, mark, family's health settings). */
  readonly #keys = new Map<string, string>();
  readonly #maintenance = new Map<string, Maintenance>();

  constructor(options: HealthSupervisorOptions) {
    this.#options = options;
  }

  /**
   * The state an uplink's `family` would have after {@link reconfigure} to
   * `config`: kept, or `init` for a new monitor.
   */
  stateAfter(config: Config, uplink: string, family: Family = 4): UplinkState {
    const key = this.#settingsOf(config, uplink, family);
    const running = this.#monitors.get(keyOf(uplink, family));
    return running !== undefined &&
      key !== undefined &&
      this.#keys.get(keyOf(uplink, family)) === key
      ? running.snapshot().state
      : "init";
  }

  /** What an uplink's monitor of `family` is made from, as a string; undefined when it has none. */
  #settingsOf(config: Config, name: string, family: Family): string | undefined {
    const slot = uplinkSlots(config).find((s) => s.name === name);
    const uplink = config.uplinks.find((u) => u.name === name);
    if (slot === undefined || uplink === undefined) return undefined;
    const merged = uplinkHealth(config, uplink);
    if (family === 4 && !probesFamily(merged, 4)) return undefined;
    if (family === 6 && !hasIpv6Health(uplink, merged)) return undefined;
    return JSON.stringify([uplink.interface, slot.mark, family, healthOf(merged, family)]);
  }

  /**
   * Make the running monitors match `config`: a monitor whose probe
   * settings, interface and mark are unchanged is kept (and so its state);
   * others are stopped, created or replaced. Maintenance of uplinks the
   * config no longer has ends. An uplink without IPv4 targets or probes has
   * no IPv4 monitor (its IPv4 state is then `init`, i.e. usable while it has
   * carrier and a route).
   * @param links each uplink's interface now (carrier and addresses for new monitors).
   */
  reconfigure(config: Config, links: ReadonlyMap<string, UplinkLink>): void {
    const wanted = new Set<string>();
    const names = new Set<string>();
    for (const slot of uplinkSlots(config)) {
      const uplink = config.uplinks.find((u) => u.name === slot.name);
      if (uplink === undefined) continue;
      names.add(slot.name);
      for (const family of FAMILIES) {
        const settings = this.#settingsOf(config, slot.name, family);
        if (settings === undefined) continue;
        const key = keyOf(slot.name, family);
        wanted.add(key);
        const running = this.#monitors.get(key);
        if (running !== undefined && this.#keys.get(key) === settings) continue;
        running?.stop();
        const link = links.get(slot.name);
        const monitor = this.#options.createHealth({
          uplink,
          health: healthOf(uplinkHealth(config, uplink), family),
          mark: slot.mark,
          family,
          address: sourceAddressOf(link, family),
          carrier: (link?.carrier ?? false) && (link?.up ?? false),
          log: this.#options.log,
          onTransition: (t) => {
            this.#monitorTransition(t);
          },
        });
        this.#monitors.set(
          key,
          withMaintenance(monitor, () => this.#maintenance.get(slot.name)),
        );
        this.#keys.set(key, settings);
        monitor.start();
      }
    }
    for (const [key, monitor] of this.#monitors) {
      if (wanted.has(key)) continue;
      monitor.stop();
      this.#monitors.delete(key);
      this.#keys.delete(key);
    }
    for (const name of this.#maintenance.keys()) {
      if (!names.has(name)) this.#maintenance.delete(name);
    }
  }

  /**
   * Tell the monitors what changed in their links: carrier (both families),
   * the IPv4 address (IPv4 monitor) and the global IPv6 address (IPv6
   * monitor, `link.ipv6.address`).
   */
  linksChanged(
    before: ReadonlyMap<string, UplinkLink>,
    after: ReadonlyMap<string, UplinkLink>,
  ): void {
    for (const [name, link] of after) {
      const old = before.get(name);
      for (const family of FAMILIES) {
        const monitor = this.#monitors.get(keyOf(name, family));
        if (monitor === undefined) continue;
        if (old?.carrier !== link.carrier || old.up !== link.up) {
          monitor.setCarrier(link.carrier && link.up);
        }
        const address = sourceAddressOf(link, family);
        if (sourceAddressOf(old, family) !== address) monitor.setAddress(address);
      }
    }
  }

  /** Whether the uplink has a monitor of `family` (IPv6: IPv6 targets and `gateway6` not `none`). */
  monitors(uplink: string, family: Family): boolean {
    return this.#monitors.has(keyOf(uplink, family));
  }

  /**
   * Ask the uplink's monitor of `family` for a probe burst (see
   * UplinkHealth.burst); unknown uplinks and families without a monitor are
   * ignored.
   */
  burst(uplink: string, reason: string, family: Family = 4): void {
    this.#monitors.get(keyOf(uplink, family))?.burst?.(reason);
  }

  /**
   * The uplink's state in `family` with maintenance applied (`disabled`
   * while in maintenance); `init` without a monitor.
   */
  state(uplink: string, family: Family = 4): UplinkState {
    return this.#monitors.get(keyOf(uplink, family))?.snapshot().state ?? "init";
  }

  /** The uplink's snapshot in `family` with maintenance applied; undefined without a monitor. */
  snapshot(uplink: string, family: Family = 4): HealthSnapshot | undefined {
    return this.#monitors.get(keyOf(uplink, family))?.snapshot();
  }

  /** What the uplink's health checks of `family` found, maintenance ignored; undefined without a monitor. */
  health(uplink: string, family: Family = 4): HealthSnapshot | undefined {
    return this.#monitors.get(keyOf(uplink, family))?.healthSnapshot();
  }

  /** The uplink's maintenance (both families), if it is in maintenance. */
  maintenance(uplink: string): Maintenance | undefined {
    return this.#maintenance.get(uplink);
  }

  /** The families the uplink is monitored in: IPv4 always, IPv6 when it has an IPv6 monitor. */
  #monitoredFamilies(uplink: string): Family[] {
    return this.monitors(uplink, 6) ? [4, 6] : [4];
  }

  /**
   * A monitor's transition: passed on, unless its uplink is in maintenance:
   * then it is logged and shows once the uplink is enabled.
   */
  #monitorTransition(transition: Transition): void {
    if (this.#maintenance.has(transition.uplink) && transition.to !== "disabled") {
      const who = `uplink ${transition.uplink}${transition.family === 6 ? " IPv6" : ""}`;
      const { time: at, ...fields } = transition;
      this.#options.log.info(
        // The log line has its own `time`: the transition's is `at`.
        { event: "health", ...fields, at },
        `${who} (disabled): health ${transition.from} -> ${transition.to} (${transition.reason})`,
      );
      return;
    }
    this.#options.onTransition(transition);
  }

  /**
   * Put the uplink (both families) in maintenance (since `since`, epoch ms):
   * one transition to `disabled` per monitored family, from the state its
   * checks found. False (and no transition) if it already was.
   */
  disable(uplink: string, maintenance: Maintenance): boolean {
    if (this.#maintenance.has(uplink)) return false;
    const before = this.#monitoredFamilies(uplink).map(
      (family) => [family, this.health(uplink, family)] as const,
    );
    this.#maintenance.set(uplink, maintenance);
    for (const [family, snapshot] of before) {
      this.#options.onTransition({
        time: new Date(maintenance.since).toISOString(),
        uplink,
        family,
        from: snapshot?.state ?? "init",
        to: "disabled",
        reason: maintenance.reason,
        loss: snapshot?.loss ?? null,
        rtt: snapshot?.rtt ?? null,
      });
    }
    return true;
  }

  /**
   * End the uplink's maintenance at `at` (epoch ms): one transition per
   * monitored family, from `disabled` to the state its checks found. False
   * (and no transition) if it was not in maintenance.
   */
  enable(uplink: string, at: number): boolean {
    if (!this.#maintenance.delete(uplink)) return false;
    for (const family of this.#monitoredFamilies(uplink)) {
      const snapshot = this.health(uplink, family);
      const to = snapshot?.state ?? "init";
      this.#options.onTransition({
        time: new Date(at).toISOString(),
        uplink,
        family,
        from: "disabled",
        to,
        reason: `enabled by the operator; health: ${snapshot?.reason || to}`,
        loss: snapshot?.loss ?? null,
        rtt: snapshot?.rtt ?? null,
      });
    }
    return true;
  }

  /** Stop every monitor. */
  stop(): void {
    for (const monitor of this.#monitors.values()) monitor.stop();
  }
}

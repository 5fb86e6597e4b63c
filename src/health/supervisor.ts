/**
 * The health monitors of all uplinks, and maintenance (`uplinkd disable`):
 * one monitor per configured uplink, kept across reloads while its probe
 * settings, interface and mark stay the same.
 */
import type { Logger } from "pino";
import { uplinkHealth, type Config } from "../config/schema.js";
import {
  withMaintenance,
  type MaintainedHealth,
  type Maintenance,
} from "../control/maintenance.js";
import { uplinkSlots } from "../dataplane/slots.js";
import type { UplinkLink } from "../links/observe.js";
import type {
  HealthSnapshot,
  Transition,
  UplinkHealth,
  UplinkHealthOptions,
  UplinkState,
} from "../uplink-health.js";

/** Options of a {@link HealthSupervisor}. */
export interface HealthSupervisorOptions {
  log: Logger;
  /** Creates the health monitor of one uplink. */
  createHealth: (options: UplinkHealthOptions) => UplinkHealth;
  /** Every transition of every monitor. */
  onTransition: (transition: Transition) => void;
}

/** The uplinks' health monitors and their maintenance. The constructor starts nothing. */
export class HealthSupervisor {
  readonly #options: HealthSupervisorOptions;
  readonly #monitors = new Map<string, MaintainedHealth>();
  /** What each running monitor was created from (interface, mark, health settings). */
  readonly #keys = new Map<string, string>();
  readonly #maintenance = new Map<string, Maintenance>();

  constructor(options: HealthSupervisorOptions) {
    this.#options = options;
  }

  /** The state an uplink would have after {@link reconfigure} to `config`: kept, or `init` for a new monitor. */
  stateAfter(config: Config, uplink: string): UplinkState {
    const key = this.#keyOf(config, uplink);
    const running = this.#monitors.get(uplink);
    return running !== undefined && key !== undefined && this.#keys.get(uplink) === key
      ? running.snapshot().state
      : "init";
  }

  #keyOf(config: Config, name: string): string | undefined {
    const slot = uplinkSlots(config).find((s) => s.name === name);
    const uplink = config.uplinks.find((u) => u.name === name);
    if (slot === undefined || uplink === undefined) return undefined;
    return JSON.stringify([uplink.interface, slot.mark, uplinkHealth(config, uplink)]);
  }

  /**
   * Make the running monitors match `config`: an uplink whose probe
   * settings, interface and mark are unchanged keeps its monitor (and so its
   * state); others are stopped, created or replaced. Maintenance of uplinks
   * the config no longer has ends.
   * @param links each uplink's interface now (carrier and address for new monitors).
   */
  reconfigure(config: Config, links: ReadonlyMap<string, UplinkLink>): void {
    const wanted = new Set<string>();
    for (const slot of uplinkSlots(config)) {
      const uplink = config.uplinks.find((u) => u.name === slot.name);
      const key = this.#keyOf(config, slot.name);
      if (uplink === undefined || key === undefined) continue;
      wanted.add(slot.name);
      const running = this.#monitors.get(slot.name);
      if (running !== undefined && this.#keys.get(slot.name) === key) continue;
      running?.stop();
      const link = links.get(slot.name);
      const monitor = this.#options.createHealth({
        uplink,
        health: uplinkHealth(config, uplink),
        mark: slot.mark,
        address: link?.address,
        carrier: (link?.carrier ?? false) && (link?.up ?? false),
        log: this.#options.log,
        onTransition: (t) => {
          this.#options.onTransition(t);
        },
      });
      this.#monitors.set(
        slot.name,
        withMaintenance(monitor, () => this.#maintenance.get(slot.name)),
      );
      this.#keys.set(slot.name, key);
      monitor.start();
    }
    for (const [name, monitor] of this.#monitors) {
      if (wanted.has(name)) continue;
      monitor.stop();
      this.#monitors.delete(name);
      this.#keys.delete(name);
    }
    for (const name of this.#maintenance.keys()) {
      if (!wanted.has(name)) this.#maintenance.delete(name);
    }
  }

  /** Tell the monitors what changed in their links (carrier, address). */
  linksChanged(
    before: ReadonlyMap<string, UplinkLink>,
    after: ReadonlyMap<string, UplinkLink>,
  ): void {
    for (const [name, link] of after) {
      const old = before.get(name);
      const monitor = this.#monitors.get(name);
      if (monitor === undefined) continue;
      if (old?.carrier !== link.carrier || old.up !== link.up) {
        monitor.setCarrier(link.carrier && link.up);
      }
      if (old?.address !== link.address) monitor.setAddress(link.address);
    }
  }

  /** Ask uplink `uplink`'s monitor for a probe burst (see UplinkHealth.burst); unknown uplinks are ignored. */
  burst(uplink: string, reason: string): void {
    this.#monitors.get(uplink)?.burst?.(reason);
  }

  /** The uplink's state with maintenance applied (`disabled` while in maintenance); `init` without a monitor. */
  state(uplink: string): UplinkState {
    return this.#monitors.get(uplink)?.snapshot().state ?? "init";
  }

  /** The uplink's snapshot with maintenance applied; undefined without a monitor. */
  snapshot(uplink: string): HealthSnapshot | undefined {
    return this.#monitors.get(uplink)?.snapshot();
  }

  /** What the uplink's health checks found, maintenance ignored; undefined without a monitor. */
  health(uplink: string): HealthSnapshot | undefined {
    return this.#monitors.get(uplink)?.healthSnapshot();
  }

  /** The uplink's maintenance, if it is in maintenance. */
  maintenance(uplink: string): Maintenance | undefined {
    return this.#maintenance.get(uplink);
  }

  /** Put the uplink in maintenance (since `since`, epoch ms); false if it already was. */
  disable(uplink: string, maintenance: Maintenance): boolean {
    if (this.#maintenance.has(uplink)) return false;
    this.#maintenance.set(uplink, maintenance);
    return true;
  }

  /** End the uplink's maintenance; false if it was not in maintenance. */
  enable(uplink: string): boolean {
    return this.#maintenance.delete(uplink);
  }

  /** Stop every monitor. */
  stop(): void {
    for (const monitor of this.#monitors.values()) monitor.stop();
  }
}

/**
 * The uplinks' interfaces as the kernel has them now, kept up to date:
 * `ip monitor` says "something changed", then links and routes are re-read
 * with `ip -j` (outside the controller's queue: reads change nothing).
 */
import type { Logger } from "pino";
import type { Clock } from "../clock.js";
import type { Config } from "../config/schema.js";
import type { Kernel } from "../kernel/types.js";
import { optional } from "../optional.js";
import type { LoadSnapshot } from "../policy/load.js";
import { KernelMonitor } from "./monitor.js";
import { learnPrefixes, type ReadText } from "./prefix6.js";
import {
  lanAddress,
  lanAddress6,
  lanNetworks6,
  localNetworks,
  localNetworks6,
  observeUplinks,
  type UplinkLink,
} from "./observe.js";

/** What the renderer needs from the kernel besides the uplinks. */
export interface Surroundings {
  /** The router's address on its first LAN interface (preferred source of the main default). */
  lanAddress?: string;
  /** Destinations of the main table's own routes (connected networks, static routes): never balanced. */
  localNetworks?: readonly string[];
  /** Measured load for policies that balance by it (`least-used`, `spillover`); none: no load yet. */
  load?: LoadSnapshot;
  /** The router's IPv6 address on its LAN (preferred source of the IPv6 default in main). */
  lanAddress6?: string;
  /** IPv6 destinations of the main table's own routes: never balanced. */
  localNetworks6?: readonly string[];
  /** The LAN's IPv6 networks (from the LAN interfaces' addresses): the sources NPTv6 translates. */
  lanNetworks6?: readonly string[];
  /**
   * Uplinks that used their data quota in this period -> `when_exceeded`
   * (set by the daemon, not observed): `standby` ones rank after every tier
   * of each policy (new connections only when no other member is usable);
   * `off` ones get none.
   */
  quotaExceeded?: ReadonlyMap<string, "standby" | "off">;
  /**
   * UTC offset of the rules' schedules' time zone (`time_zone`, else the
   * router's) now, minutes east (set by the daemon and `plan`, not
   * observed): schedule rules are rendered with it. Absent: 0 (UTC).
   */
  scheduleOffset?: number;
}

/** What one read of the kernel says about the uplinks and their surroundings. */
export interface LinkObservation {
  /** Uplink name -> its interface now. */
  links: Map<string, UplinkLink>;
  surroundings: Surroundings;
}

/**
 * Read links and routes and observe the uplinks of `config`.
 * @throws {KernelCommandError} when `ip` fails.
 */
export async function observe(
  kernel: Kernel,
  config: Config,
  read?: ReadText,
): Promise<LinkObservation> {
  const [links, routes] = await Promise.all([kernel.readLinks(), kernel.readRoutes()]);
  const protocol = config.dataplane.route_protocol;
  const learnedPrefixes = await learnPrefixes(config, routes, read);
  return {
    links: observeUplinks(config, links, routes, protocol, learnedPrefixes),
    surroundings: {
      ...optional("lanAddress", lanAddress(config, links)),
      localNetworks: localNetworks(routes, protocol),
      ...optional("lanAddress6", lanAddress6(config, links)),
      localNetworks6: localNetworks6(routes, protocol),
      lanNetworks6: lanNetworks6(config, links),
    },
  };
}

/** Options of a {@link LinkWatcher}. */
export interface LinkWatcherOptions {
  kernel: Kernel;
  log: Logger;
  /** The config now. */
  config: () => Config;
  /** Called after a read that changed something: the old and the new observation. */
  onChange: (before: LinkObservation, after: LinkObservation) => void;
  /** Time for the monitor's debounce and restart backoff. */
  clock: Clock;
  /** Starts the `ip monitor` trigger; tests pass a fake. */
  monitor?: (onChange: () => void) => { start(): void; stop(): void };
}

/**
 * Keeps a {@link LinkObservation} current. One read at a time: a trigger
 * during a read causes one more read after it.
 */
export class LinkWatcher {
  readonly #options: LinkWatcherOptions;
  #now: LinkObservation = { links: new Map(), surroundings: {} };
  #monitor: { start(): void; stop(): void } | undefined;
  #reading: Promise<void> | undefined;
  #again = false;

  constructor(options: LinkWatcherOptions) {
    this.#options = options;
  }

  /** The last observation. */
  get now(): LinkObservation {
    return this.#now;
  }

  /**
   * Start the trigger and read once.
   * @throws {KernelCommandError} when the first read fails.
   */
  async start(): Promise<void> {
    const create =
      this.#options.monitor ??
      ((onChange: () => void) =>
        new KernelMonitor(onChange, { clock: this.#options.clock, log: this.#options.log }));
    this.#monitor = create(() => {
      this.refresh().catch(() => undefined);
    });
    this.#monitor.start();
    await this.refresh();
  }

  /**
   * Re-read now (a trigger, or after a reload). Failures are logged and
   * rethrown; the last observation stays.
   */
  refresh(): Promise<void> {
    if (this.#reading !== undefined) {
      this.#again = true;
      return this.#reading;
    }
    this.#reading = this.#read().finally(() => {
      this.#reading = undefined;
      if (this.#again) {
        this.#again = false;
        this.refresh().catch(() => undefined);
      }
    });
    return this.#reading;
  }

  async #read(): Promise<void> {
    for (;;) {
      const config = this.#options.config();
      let next: LinkObservation;
      try {
        next = await observe(this.#options.kernel, config);
      } catch (error) {
        this.#options.log.error({ err: error }, `reading links: ${String(error)}`);
        throw error;
      }
      // A reload switched configs meanwhile: this reading is of the old uplinks.
      if (this.#options.config() !== config) continue;
      this.adopt(next);
      return;
    }
  }

  /**
   * Take `next` as the observation now (a reload read it for its new
   * config). Logs each uplink that starts waiting for its configured
   * `address`, and each that got it.
   */
  adopt(next: LinkObservation): void {
    const before = this.#now;
    this.#now = next;
    for (const [name, link] of next.links) {
      const old = before.links.get(name);
      if (link.missingAddress !== undefined && old?.missingAddress !== link.missingAddress) {
        const uplink = this.#options.config().uplinks.find((u) => u.name === name);
        this.#options.log.warn(
          { uplink: name, address: link.missingAddress },
          `address ${link.missingAddress} of uplink ${name} is not on ${uplink?.interface ?? "its interface"}; waiting for it`,
        );
      } else if (old?.missingAddress !== undefined && link.addressSource === "configured") {
        this.#options.log.info(
          { uplink: name, address: link.address },
          `address ${link.address ?? ""} of uplink ${name} is there now`,
        );
      }
    }
    const changed =
      JSON.stringify(next.surroundings) !== JSON.stringify(before.surroundings) ||
      JSON.stringify([...next.links]) !== JSON.stringify([...before.links]);
    if (changed) this.#options.onChange(before, next);
  }

  /** Stop the trigger; reads in progress end on their own. */
  stop(): void {
    this.#monitor?.stop();
  }
}

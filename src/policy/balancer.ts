/**
 * The load part of the daemon: samples the uplinks' interface byte
 * counters (`/proc/net/dev`, a few times per second), smooths them into
 * throughput, and decides when policies that balance by load (`least-used`,
 * `spillover`) get new weights: at most once per `minIntervalMs`, and only
 * when a member's share of new connections would move by `shareStep`
 * points or more, or a spillover member became full or not full
 * (hysteresis, so weights do not oscillate). It publishes a
 * {@link LoadSnapshot} that the renderer reads; the controller then updates
 * only the balance maps. Established connections never move: maps decide
 * new connections only.
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import { parseProcNetDev } from "../net/dev.js";
import type { Clock, TimerHandle } from "../clock.js";
import {
  fullUplinks,
  loadWeights,
  shares,
  ThroughputMeter,
  type LoadSnapshot,
  type Throughput,
} from "./load.js";
import type { PolicyMember } from "./select.js";

/** Options of a {@link LoadBalancer}. */
export interface LoadBalancerOptions {
  clock: Clock;
  log: Logger;
  /** Called after a new snapshot was published (the daemon asks the controller to apply it). */
  onChange: () => void;
  /** Reads `/proc/net/dev` of the daemon's namespace (tests pass a fake). */
  readNetDev?: () => Promise<string>;
  /** Sampling interval while a policy balances by load, ms (default 250). */
  sampleMs?: number;
  /** Sampling interval otherwise (throughput for status only), ms (default 1000). */
  idleSampleMs?: number;
  /** Least time between two published snapshots, ms (default 1000). */
  minIntervalMs?: number;
  /** Least change of a member's share that publishes new weights, points (default 5). */
  shareStep?: number;
  /** Time constant of the throughput average, ms (default 2000). */
  timeConstantMs?: number;
}

/** Members of a policy before health chose among them. */
function allMembers(config: Config, policy: string): PolicyMember[] {
  return (
    config.policies[policy]?.members ??
    config.uplinks.map((u) => ({ uplink: u.name, weight: u.weight, tier: u.tier }))
  );
}

/** Samples throughput and publishes load snapshots. The constructor starts nothing. */
export class LoadBalancer {
  readonly #options: LoadBalancerOptions;
  readonly #readNetDev: () => Promise<string>;
  #config: Config | undefined;
  #meter: ThroughputMeter;
  #snapshot: LoadSnapshot | undefined;
  #lastPublish = Number.NEGATIVE_INFINITY;
  #timer: TimerHandle | undefined;
  #running = false;

  constructor(options: LoadBalancerOptions) {
    this.#options = options;
    this.#readNetDev = options.readNetDev ?? (() => readFile("/proc/net/dev", "utf8"));
    this.#meter = new ThroughputMeter(options.timeConstantMs ?? 2000);
  }

  /** The snapshot the renderer uses now; undefined before the first. */
  get snapshot(): LoadSnapshot | undefined {
    return this.#snapshot;
  }

  /** Smoothed throughput of an uplink's interface now, bits per second; undefined before two samples. */
  throughput(iface: string): Throughput | undefined {
    return this.#meter.rate(iface);
  }

  /** Start sampling for `config`. */
  start(config: Config): void {
    this.#running = true;
    this.reconfigure(config);
    this.#schedule(0);
  }

  /** Take a new config (after a reload): which policies balance by load, which interfaces to watch. */
  reconfigure(config: Config): void {
    this.#config = config;
  }

  /** Stop sampling. */
  stop(): void {
    this.#running = false;
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
  }

  #loadPolicies(config: Config): [string, "least-used" | "spillover", number][] {
    return Object.entries(config.policies).flatMap(([name, p]) =>
      p.balance === "weight" ? [] : [[name, p.balance, p.threshold] as const],
    );
  }

  #schedule(delayMs: number): void {
    if (!this.#running) return;
    this.#timer = this.#options.clock.setTimeout(() => {
      void this.#sample().finally(() => {
        const config = this.#config;
        const busy = config !== undefined && this.#loadPolicies(config).length > 0;
        this.#schedule(
          busy ? (this.#options.sampleMs ?? 250) : (this.#options.idleSampleMs ?? 1000),
        );
      });
    }, delayMs);
  }

  async #sample(): Promise<void> {
    const config = this.#config;
    if (config === undefined) return;
    let text: string;
    try {
      text = await this.#readNetDev();
    } catch (error) {
      this.#options.log.warn({ err: error }, `reading interface counters: ${String(error)}`);
      return;
    }
    const all = parseProcNetDev(text);
    const wanted = new Set(config.uplinks.map((u) => u.interface));
    this.#meter.update(
      this.#options.clock.now(),
      new Map([...all].filter(([iface]) => wanted.has(iface))),
    );
    this.decide();
  }

  /**
   * Publish a new snapshot if the weights it gives differ enough from the
   * published one's and the last publication is old enough.
   * @returns true when it published.
   */
  decide(): boolean {
    const config = this.#config;
    if (config === undefined) return false;
    const policies = this.#loadPolicies(config);
    if (policies.length === 0) {
      this.#snapshot = undefined;
      return false;
    }
    const now = this.#options.clock.now();
    const iface = new Map(config.uplinks.map((u) => [u.name, u.interface]));
    const bandwidth = (name: string) => config.uplinks.find((u) => u.name === name)?.bandwidth;
    const measured = (name: string) => this.#meter.rate(iface.get(name) ?? "");
    const old = this.#snapshot;
    const published = (name: string) => old?.throughput[name];
    const wasFull = new Set(old?.full ?? []);
    const full = new Set<string>();
    let step = 0;
    for (const [policy, mode, threshold] of policies) {
      const members = allMembers(config, policy);
      const names = members.map((m) => m.uplink);
      for (const name of fullUplinks(names, bandwidth, measured, threshold, wasFull)) {
        full.add(name);
      }
      const before = shares(loadWeights(mode, members, bandwidth, published, wasFull));
      const after = shares(loadWeights(mode, members, bandwidth, measured, full));
      for (const [name, share] of after) {
        step = Math.max(step, Math.abs(share - (before.get(name) ?? 0)));
      }
    }
    const fullChanged = full.size !== wasFull.size || [...full].some((name) => !wasFull.has(name));
    const due = now - this.#lastPublish >= (this.#options.minIntervalMs ?? 1000);
    if (!due || (old !== undefined && !fullChanged && step < (this.#options.shareStep ?? 5))) {
      return false;
    }
    const throughput: Record<string, Throughput> = {};
    for (const u of config.uplinks) {
      const rate = measured(u.name);
      if (rate !== undefined) throughput[u.name] = rate;
    }
    this.#snapshot = { throughput, full: [...full] };
    this.#lastPublish = now;
    this.#options.log.debug(
      {
        event: "load",
        throughput,
        full: [...full],
        shares: Object.fromEntries(
          policies.map(([policy, mode]) => [
            policy,
            Object.fromEntries(
              shares(loadWeights(mode, allMembers(config, policy), bandwidth, measured, full)),
            ),
          ]),
        ),
      },
      "new load-based weights (shares of new connections, %)",
    );
    this.#options.onChange();
    return true;
  }
}

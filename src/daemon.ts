/**
 * The controller: observe -> decide -> render -> apply -> verify.
 *
 * It watches the uplinks' interfaces (links), runs one health monitor per
 * uplink, decides which uplinks take new connections (policy), renders the
 * desired kernel state and applies it with the smallest change (dataplane).
 * All kernel writes go through one queue, so they never interleave.
 */
import type { Logger } from "pino";
import type { Config } from "./config/schema.js";
import { Dataplane } from "./dataplane/apply.js";
import {
  renderDesired,
  renderMaps,
  renderRoutes,
  renderRules,
  type Surroundings,
  type UplinkView,
} from "./dataplane/render.js";
import { buildViews, usabilityOf } from "./dataplane/views.js";
import { uplinkSlots } from "./dataplane/slots.js";
import { ConfigError, UnknownUplinkError } from "./errors.js";
import { optional } from "./optional.js";
import type { Kernel } from "./kernel/types.js";
import { KernelMonitor } from "./links/monitor.js";
import { lanAddress, localNetworks, observeUplinks, type UplinkLink } from "./links/observe.js";
import type { DisableOptions, MaintenanceResult, ReloadResult } from "./control/api.js";
import { configChanges } from "./control/changes.js";
import { withMaintenance, type MaintainedHealth, type Maintenance } from "./control/maintenance.js";
import { ControlService } from "./control/service.js";
import { Notifier } from "./notify/index.js";
import { TrafficSampler } from "./control/traffic.js";
import type { PolicyChoice } from "./policy/select.js";
import type {
  HealthSnapshot,
  Transition,
  UplinkHealth,
  UplinkHealthOptions,
  UplinkState,
} from "./uplink-health.js";
import { uplinkHealth } from "./config/schema.js";

/** Options of a daemon instance. */
export interface DaemonOptions {
  /** Path of the config file (for reload and messages). */
  configPath: string;
  /** Loads and validates the config file; throws ConfigError. */
  loadConfig: (file: string) => Promise<Config>;
  kernel: Kernel;
  log: Logger;
  /** Creates the health monitor of one uplink. */
  createHealth: (options: UplinkHealthOptions) => UplinkHealth;
  /** Full re-read and verify of the kernel state, in ms (default 10 s). */
  verifyIntervalMs?: number;
  /** Most recent transitions kept in memory (default 1000). */
  eventLimit?: number;
}

/** One uplink in `uplinkd status --json`. */
export interface UplinkStatus {
  name: string;
  interface: string;
  state: UplinkState;
  /** ISO time of the last state change. */
  since: string;
  /** Takes new connections now. */
  active: boolean;
  weight: number;
  tier: number;
  id: number;
  mark: string;
  table: number;
  address: string | null;
  gateway: string | null;
  carrier: boolean;
  /** Loss over the probe window, % (0..100); null before the first probe. */
  loss: number | null;
  /** Mean RTT over the window, ms. */
  rtt: number | null;
  /** RTT standard deviation over the window, ms. */
  jitter: number | null;
  reason: string;
  /** Conntrack entries with the uplink's mark (sampled at most once per second); null if unknown. */
  connections: number | null;
  /** Bytes received on the uplink's interface since it was created; null if unknown. */
  rxBytes: number | null;
  /** Bytes transmitted on the uplink's interface; null if unknown. */
  txBytes: number | null;
}

/** The status document served at `/status`. */
export interface StatusDocument {
  version: string;
  pid: number;
  config: string;
  startedAt: string;
  uplinks: UplinkStatus[];
  policies: Record<string, PolicyChoice>;
  lastApply: { at: string; ok: boolean; error?: string } | null;
}

/** The daemon. `start()` brings it up; `stop()` takes it down. */
export class Daemon {
  private config!: Config;
  private dataplane!: Dataplane;
  private links = new Map<string, UplinkLink>();
  private surroundings: Surroundings = {};
  private readonly health = new Map<string, MaintainedHealth>();
  /** What each running monitor was created from (interface, mark, health settings). */
  private readonly healthKeys = new Map<string, string>();
  private readonly events: Transition[] = [];
  private queue: Promise<void> = Promise.resolve();
  private monitor: KernelMonitor | undefined;
  private control: ControlService | undefined;
  /** Sends transitions to email, webhooks and hooks (config `notify`); none without it. */
  private notifier: Notifier | undefined;
  private traffic: TrafficSampler | undefined;
  /** Uplinks in maintenance (`uplinkd disable`): since when and why. */
  private readonly maintenance = new Map<string, Maintenance>();
  private verifyTimer: NodeJS.Timeout | undefined;
  private lastMaps: Record<string, string[]> = {};
  /** Routes and rules of the last apply (JSON), to skip kernel reads when a transition changes none. */
  private lastIp = "";
  private choices: Record<string, PolicyChoice> = {};
  private lastApply: StatusDocument["lastApply"] = null;
  private readonly startedAt = new Date();
  private stopping = false;

  constructor(private readonly options: DaemonOptions) {}

  /**
   * Load the config, adopt or build the kernel state, start monitors and the
   * control socket.
   * @throws {ConfigError} when the config is invalid.
   * @throws {KernelCommandError} when the first apply fails (nothing was changed by nft).
   */
  async start(): Promise<void> {
    this.config = await this.options.loadConfig(this.options.configPath);
    this.resetDataplane();
    this.resetNotifier();
    this.monitor = new KernelMonitor(() => {
      this.enqueue("links changed", () => this.refreshLinks());
    });
    this.monitor.start();
    await this.refreshLinks(false);
    // Routes and rules first: probes need their uplink's table.
    await this.reconcile("start");
    this.syncHealth();
    this.traffic = new TrafficSampler(this.options.kernel, {
      onError: (error) => {
        this.options.log.warn({ err: error }, `reading traffic counters: ${String(error)}`);
      },
      onNote: (level, message) => {
        this.options.log[level](message);
      },
    });
    this.traffic.start();
    this.control = new ControlService(
      {
        config: () => this.config,
        status: () => this.status(),
        refreshTraffic: () => this.refreshTraffic(),
        events: () => this.events,
        reload: () => this.reload(),
        disable: (uplink, options) => this.disable(uplink, options),
        enable: (uplink) => this.enable(uplink),
      },
      this.options.log,
    );
    await this.control.start();
    const verifyMs = this.options.verifyIntervalMs ?? 10_000;
    this.verifyTimer = setInterval(() => {
      this.enqueue("verify", () => this.reconcile("verify"));
    }, verifyMs);
    this.verifyTimer.unref();
    this.options.log.info(
      { uplinks: this.config.uplinks.map((u) => u.name), socket: this.config.control.socket },
      "uplinkd started",
    );
  }

  /** A new notifier for the config's `notify` (after start or a reload); the old one sends what it has. */
  private resetNotifier(): void {
    const old = this.notifier;
    const notify = this.config.notify;
    this.notifier =
      notify === undefined
        ? undefined
        : new Notifier(notify, this.options.log, {
            interfaceOf: (uplink) => this.config.uplinks.find((u) => u.name === uplink)?.interface,
            statusProvider: () => this.status().uplinks,
          });
    void old?.flush();
  }

  private resetDataplane(): void {
    this.dataplane = new Dataplane(this.options.kernel, {
      table: this.config.dataplane.table,
      protocol: this.config.dataplane.route_protocol,
    });
  }

  /**
   * Make the running health monitors match the config: an uplink whose
   * probe settings, interface and mark are unchanged keeps its monitor (and
   * so its state); others are stopped, created or replaced.
   */
  private syncHealth(): void {
    const wanted = new Map<string, string>();
    for (const slot of uplinkSlots(this.config)) {
      const uplink = this.config.uplinks.find((u) => u.name === slot.name);
      if (uplink === undefined) continue;
      const health = uplinkHealth(this.config, uplink);
      const key = JSON.stringify([uplink.interface, slot.mark, health]);
      wanted.set(slot.name, key);
      const running = this.health.get(slot.name);
      if (running !== undefined && this.healthKeys.get(slot.name) === key) continue;
      running?.stop();
      const link = this.links.get(slot.name);
      const monitor = this.options.createHealth({
        uplink,
        health,
        mark: slot.mark,
        address: link?.address,
        carrier: (link?.carrier ?? false) && (link?.up ?? false),
        log: this.options.log,
        onTransition: (t) => {
          this.onTransition(t);
        },
      });
      this.health.set(
        slot.name,
        withMaintenance(monitor, () => this.maintenance.get(slot.name)),
      );
      this.healthKeys.set(slot.name, key);
      monitor.start();
    }
    for (const [name, monitor] of this.health) {
      if (wanted.has(name)) continue;
      monitor.stop();
      this.health.delete(name);
      this.healthKeys.delete(name);
    }
  }

  /** Run kernel work one at a time, logging (not throwing) failures. */
  private enqueue(what: string, work: () => Promise<void>): void {
    this.queue = this.queue.then(async () => {
      if (this.stopping) return;
      try {
        await work();
      } catch (error) {
        this.options.log.error(
          { err: error, during: what },
          `${what}: ${(error as Error).message}`,
        );
      }
    });
  }

  /** Wait until every queued kernel change has run (tests, shutdown). */
  async idle(): Promise<void> {
    let seen: Promise<void> | undefined;
    while (seen !== this.queue) {
      seen = this.queue;
      await seen;
    }
  }

  private async refreshLinks(reconcile = true): Promise<void> {
    const [links, routes] = await Promise.all([
      this.options.kernel.readLinks(),
      this.options.kernel.readRoutes(),
    ]);
    const next = observeUplinks(this.config, links, routes, this.config.dataplane.route_protocol);
    const surroundings: Surroundings = {
      ...optional("lanAddress", lanAddress(this.config, links)),
      localNetworks: localNetworks(routes, this.config.dataplane.route_protocol),
    };
    const changed =
      JSON.stringify(surroundings) !== JSON.stringify(this.surroundings) ||
      JSON.stringify([...next]) !== JSON.stringify([...this.links]);
    this.surroundings = surroundings;
    const before = this.links;
    this.links = next;
    if (!changed) return;
    for (const [name, link] of next) {
      const old = before.get(name);
      const uplink = this.config.uplinks.find((u) => u.name === name);
      if (!link.present && old?.present !== false) {
        this.options.log.warn(
          { uplink: name },
          `interface ${uplink?.interface ?? "?"} of uplink ${name} is missing; waiting for it`,
        );
      }
      const health = this.health.get(name);
      if (health !== undefined) {
        if (old?.carrier !== link.carrier) health.setCarrier(link.carrier && link.up);
        if (old?.address !== link.address) health.setAddress(link.address);
      }
      if (old?.address !== link.address || old?.gateway !== link.gateway) {
        this.options.log.info(
          { uplink: name, address: link.address ?? null, gateway: link.gateway ?? null },
          `uplink ${name}: address ${link.address ?? "none"}, gateway ${link.gateway ?? "none"}`,
        );
      }
    }
    if (reconcile) await this.reconcile("links changed");
  }

  /** Every uplink as the renderer sees it now. */
  views(): UplinkView[] {
    return buildViews(
      this.config,
      this.links,
      (name) => this.health.get(name)?.snapshot().state ?? "init",
    );
  }

  /** Render everything and apply the difference (first start, link changes, periodic verify). */
  private async reconcile(why: string): Promise<void> {
    const views = this.views();
    const desired = renderDesired(this.config, views, this.surroundings);
    try {
      const plan = await this.dataplane.apply(desired, views);
      this.lastMaps = desired.maps;
      this.lastIp = JSON.stringify({ routes: desired.routes, rules: desired.rules });
      this.choices = desired.choices;
      this.lastApply = { at: new Date().toISOString(), ok: true };
      const changed =
        plan.nft.reload.length + Object.keys(plan.nft.maps).length + plan.ipCommands.length;
      if (changed > 0) {
        this.options.log.info(
          {
            why,
            nftReload: plan.nft.reload,
            nftMaps: Object.keys(plan.nft.maps),
            ip: plan.ipCommands,
          },
          `applied kernel changes (${why})`,
        );
      }
    } catch (error) {
      this.lastApply = { at: new Date().toISOString(), ok: false, error: (error as Error).message };
      throw error;
    }
  }

  /** A health transition: update only the maps and routes that change, then clear stale connections. */
  private onTransition(transition: Transition): void {
    this.record(transition);
    this.enqueue(`transition of ${transition.uplink}`, async () => {
      const views = this.views();
      const { maps, choices } = renderMaps(this.config, views, this.surroundings);
      const changed = Object.fromEntries(
        Object.entries(maps).filter(
          ([name, elements]) => JSON.stringify(elements) !== JSON.stringify(this.lastMaps[name]),
        ),
      );
      if (Object.keys(changed).length > 0) {
        await this.dataplane.updateMaps(changed);
        this.lastMaps = maps;
      }
      const before = activeUplinks(this.choices);
      this.choices = choices;
      const after = activeUplinks(choices);
      // Stale connections: those of the uplink that just went bad, and those
      // a last resort put on dead uplinks that are now out of every policy
      // (a client reusing such a port would otherwise stay on a dead uplink).
      for (const view of views) {
        const wentBad =
          view.name === transition.uplink &&
          usabilityOf(transition.to) === "bad" &&
          usabilityOf(transition.from) !== "bad";
        const leftDead = view.usability === "bad" && before.has(view.name) && !after.has(view.name);
        if (!wentBad && !leftDead) continue;
        const deleted = await this.options.kernel.conntrackDelete(view.mark, view.mask);
        this.options.log.info(
          { uplink: view.name, deleted },
          `cleared ${deleted} conntrack entries of ${view.name}`,
        );
      }
      // Routes change on a transition only when the router policy's first
      // choice (the main default route) moves: compare in memory first.
      const ip = {
        routes: renderRoutes(
          this.config,
          views,
          choices[this.config.router_policy] ?? { kind: "main" },
          this.surroundings.lanAddress,
        ),
        rules: renderRules(this.config, views),
      };
      if (JSON.stringify(ip) !== this.lastIp) {
        await this.dataplane.applyIp(ip);
        this.lastIp = JSON.stringify(ip);
      }
    });
  }

  /**
   * Record a transition (events, log, control API) unless the uplink is in
   * maintenance: then only its own disable transition counts, health changes
   * are logged and show once it is enabled.
   */
  private record(transition: Transition): void {
    if (this.maintenance.has(transition.uplink) && transition.to !== "disabled") {
      this.options.log.info(
        { event: "health", ...transition },
        `uplink ${transition.uplink} (disabled): health ${transition.from} -> ${transition.to} (${transition.reason})`,
      );
      return;
    }
    this.events.push(transition);
    const limit = this.options.eventLimit ?? 1000;
    if (this.events.length > limit) this.events.splice(0, this.events.length - limit);
    this.options.log.info(
      { event: "transition", ...transition },
      `uplink ${transition.uplink}: ${transition.from} -> ${transition.to} (${transition.reason})`,
    );
    this.control?.transition(transition);
    // Returns at once; deliveries run detached and never throw.
    this.notifier?.notify(transition);
  }

  /** Run `work` in the kernel queue and hand back its result; a failure is logged and rejected. */
  private queued<T>(what: string, work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.enqueue(what, async () => {
        try {
          resolve(await work());
        } catch (error) {
          const failure = error instanceof Error ? error : new Error(String(error));
          this.options.log.error({ err: failure, during: what }, `${what}: ${failure.message}`);
          reject(failure);
        }
      });
    });
  }

  /** What the uplink's health checks found, maintenance ignored; undefined without a monitor. */
  private healthOf(uplink: string): HealthSnapshot | undefined {
    return this.health.get(uplink)?.healthSnapshot();
  }

  /** @throws {UnknownUplinkError} when the config has no such uplink. */
  private knownUplink(uplink: string): void {
    const names = this.config.uplinks.map((u) => u.name);
    if (!names.includes(uplink)) throw new UnknownUplinkError(uplink, names);
  }

  /**
   * Maintenance (`uplinkd disable`): the uplink takes no new connections;
   * its existing ones keep flowing unless `drain`, which deletes its
   * conntrack entries. Its probes go on; their results show once enabled.
   * Lasts until `enable`, a restart, or a reload without the uplink.
   * @throws {UnknownUplinkError} for an unknown uplink.
   * @throws {KernelCommandError} when the kernel update fails.
   */
  async disable(uplink: string, options: DisableOptions): Promise<MaintenanceResult> {
    this.knownUplink(uplink);
    let changed = false;
    if (!this.maintenance.has(uplink)) {
      const health = this.healthOf(uplink);
      const reason = options.reason ?? "disabled by the operator";
      this.maintenance.set(uplink, { since: Date.now(), reason });
      this.record({
        time: new Date().toISOString(),
        uplink,
        from: health?.state ?? "init",
        to: "disabled",
        reason,
        loss: health?.loss ?? null,
        rtt: health?.rtt ?? null,
      });
      changed = true;
    }
    const drained = await this.queued(`disable ${uplink}`, async () => {
      await this.reconcile(`disable ${uplink}`);
      const view = this.views().find((v) => v.name === uplink);
      if (!options.drain || view === undefined) return 0;
      const deleted = await this.options.kernel.conntrackDelete(view.mark, view.mask);
      this.options.log.info(
        { uplink, deleted },
        `drained ${deleted} conntrack entries of ${uplink}`,
      );
      return deleted;
    });
    return { uplink, state: "disabled", changed, drained };
  }

  /**
   * End maintenance: the uplink is back in the state its probes found.
   * @throws {UnknownUplinkError} for an unknown uplink.
   * @throws {KernelCommandError} when the kernel update fails.
   */
  async enable(uplink: string): Promise<MaintenanceResult> {
    this.knownUplink(uplink);
    if (!this.maintenance.has(uplink)) {
      const state = this.health.get(uplink)?.snapshot().state ?? "init";
      return { uplink, state, changed: false, drained: 0 };
    }
    this.maintenance.delete(uplink);
    const health = this.healthOf(uplink);
    const state = health?.state ?? "init";
    this.record({
      time: new Date().toISOString(),
      uplink,
      from: "disabled",
      to: state,
      reason: `enabled by the operator; health: ${health?.reason || state}`,
      loss: health?.loss ?? null,
      rtt: health?.rtt ?? null,
    });
    await this.queued(`enable ${uplink}`, () => this.reconcile(`enable ${uplink}`));
    return { uplink, state, changed: true, drained: 0 };
  }

  /** Sample conntrack entries and interface counters (cached >= 1 s; never throws). */
  async refreshTraffic(): Promise<void> {
    await this.traffic?.refresh(this.config.dataplane.mark_mask);
  }

  /** Re-read the config file; apply what changed. A bad config is refused and the old one stays. */
  async reload(): Promise<ReloadResult> {
    let next: Config;
    try {
      next = await this.options.loadConfig(this.options.configPath);
    } catch (error) {
      if (error instanceof ConfigError) {
        this.options.log.error(
          { issues: error.issues },
          `reload refused, config unchanged:\n${error.message}`,
        );
      }
      throw error;
    }
    const changes = await this.queued("reload", async () => {
      const changes = configChanges(this.config, next);
      this.config = next;
      for (const name of this.maintenance.keys()) {
        if (!next.uplinks.some((u) => u.name === name)) this.maintenance.delete(name);
      }
      this.resetDataplane();
      await this.refreshLinks(false);
      this.syncHealth();
      await this.reconcile("reload");
      await this.control?.reconfigure();
      if (changes.some((c) => c.startsWith("notify"))) this.resetNotifier();
      return changes;
    });
    this.options.log.info(
      { changes },
      changes.length === 0
        ? "config reloaded: no changes"
        : `config reloaded: ${changes.join("; ")}`,
    );
    return {
      ok: true,
      config: this.options.configPath,
      uplinks: this.config.uplinks.map((u) => u.name),
      changes,
    };
  }

  /** The status document. */
  status(): StatusDocument {
    const views = this.views();
    const active = activeUplinks(this.choices);
    return {
      version: "0.1.0",
      pid: process.pid,
      config: this.options.configPath,
      startedAt: this.startedAt.toISOString(),
      uplinks: views.map((view) => {
        const snap: HealthSnapshot | undefined = this.health.get(view.name)?.snapshot();
        const link = this.links.get(view.name);
        return {
          name: view.name,
          interface: view.interface,
          state: snap?.state ?? "init",
          since: new Date(snap?.since ?? this.startedAt.getTime()).toISOString(),
          active: active.has(view.name),
          weight: view.weight,
          tier: view.tier,
          id: view.id,
          mark: `0x${view.mark.toString(16)}`,
          table: view.table,
          address: view.address ?? null,
          gateway: view.gateway ?? null,
          carrier: link?.carrier ?? false,
          loss: snap?.loss ?? null,
          rtt: snap?.rtt ?? null,
          jitter: snap?.jitter ?? null,
          reason: snap?.reason ?? "",
          connections: this.traffic?.connections(view.mark & view.mask) ?? null,
          rxBytes: this.traffic?.bytes(view.interface)?.rx ?? null,
          txBytes: this.traffic?.bytes(view.interface)?.tx ?? null,
        };
      }),
      policies: this.choices,
      lastApply: this.lastApply,
    };
  }

  /**
   * Stop: monitors, control socket, and (unless `keep`) every kernel object
   * uplinkd owns.
   * @param keep leave the kernel state in place (config `dataplane.on_stop: keep`).
   */
  async stop(keep = this.config.dataplane.on_stop === "keep"): Promise<void> {
    this.monitor?.stop();
    if (this.verifyTimer !== undefined) clearInterval(this.verifyTimer);
    for (const health of this.health.values()) health.stop();
    await this.idle();
    this.stopping = true;
    await this.control?.stop();
    await this.traffic?.stop();
    await this.notifier?.flush();
    if (!keep) await this.dataplane.removeAll();
    this.options.log.info(
      { kept: keep },
      keep ? "stopped; kernel state kept" : "stopped; kernel state removed",
    );
  }
}

/** Uplinks that some policy gives new connections now. */
function activeUplinks(choices: Record<string, PolicyChoice>): Set<string> {
  return new Set(
    Object.values(choices).flatMap((c) =>
      c.kind === "balance" ? c.members.map((m) => m.uplink) : [],
    ),
  );
}

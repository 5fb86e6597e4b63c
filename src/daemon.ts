/**
 * The daemon: wires its parts and runs their lifecycle. Each part has
 * `start`/`stop` (and `reconfigure` where a reload concerns it):
 *
 * | part | does |
 * |---|---|
 * | {@link LinkWatcher} | the uplinks' interfaces, addresses and gateways now |
 * | {@link HealthSupervisor} | one health monitor per uplink; maintenance |
 * | {@link Controller} | the one path to the kernel: render, apply, verify, clean up |
 * | {@link ControlService} | control API, metrics, dashboard |
 * | {@link Notifier} | email, webhooks, hooks on transitions |
 * | {@link TrafficSampler} | connections and bytes per uplink for status |
 * | {@link LoadBalancer} | throughput per uplink; weights of `least-used` and `spillover` policies |
 * | {@link DnsmasqPart} | the LAN dnsmasq's nftset and servers files, after each commit |
 * | {@link HaPart} | `ha`: keepalived's track file after each commit; this router's VRRP role |
 * | {@link QuotaPart} | usage of metered uplinks (`quota`), kept in `state_dir` |
 * | {@link SpeedtestPart} | speed tests on request and for `bandwidth: auto`, kept in `state_dir` |
 *
 * Every trigger ends in a request to the controller: a transition or
 * maintenance (urgent), a link change, a reload (a transaction: the new
 * config takes effect only when the kernel has accepted it).
 */
import type { Logger } from "pino";
import type { LogLevel } from "./log-level.js";
import { uplinkHealth, type Config } from "./config/schema.js";
import type { UplinkView } from "./dataplane/views.js";
import { acceptRaWarnings } from "./config/sysctl6.js";
import { maskSecrets } from "./config/secrets.js";
import { ConfigError, NoQuotaError, SpeedtestError, UnknownUplinkError } from "./errors.js";
import { isIPv4 } from "node:net";
import { SpeedtestPart } from "./speedtest/part.js";
import { runSpeedtest } from "./speedtest/run.js";
import type { SpeedtestResult } from "./speedtest/state.js";
import type { Family, Kernel } from "./kernel/types.js";
import { backoffDelay, type BackoffPolicy } from "./backoff.js";
import { SystemClock, type Clock } from "./clock.js";
import { optional } from "./optional.js";
import { HealthSupervisor } from "./health/supervisor.js";
import { PassiveWatcher, parsePassiveName, passiveName } from "./health/passive.js";
import { passiveCounters } from "./dataplane/nft.js";
import { LinkWatcher, observe, type LinkObservation } from "./links/watcher.js";
import { ProblemTracker } from "./links/problems.js";
import type {
  DisableOptions,
  InputsDocument,
  MaintenanceResult,
  ReloadResult,
  StatusDocument,
} from "./control/api.js";
import { configChanges } from "./control/changes.js";
import { ControlService } from "./control/service.js";
import { buildStatus } from "./control/status.js";
import { TrafficSampler } from "./control/traffic.js";
import { Controller } from "./controller/controller.js";
import {
  desiredInputs,
  scheduleSurroundings,
  type ControllerInputs,
  type HealthReading,
} from "./controller/desired.js";
import { ScheduleWatcher, scheduleStatus } from "./controller/schedule.js";
import { DnsmasqPart } from "./dns/dnsmasq.js";
import { Notifier } from "./notify/index.js";
import { HaPart, type HaRoleChange } from "./ha/part.js";
import { LoadBalancer } from "./policy/balancer.js";
import { Ring } from "./ring.js";
import { FailbackWatcher, type FailbackEvent } from "./controller/failback.js";
import { deleteTunnelFlow, TunnelWatcher } from "./controller/tunnels.js";
import { QuotaPart } from "./quota/part.js";
import type { QuotaAlert, QuotaStatus } from "./quota/meter.js";
import { readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { parseProcNetDev } from "./net/dev.js";
import type {
  HealthSnapshot,
  Transition,
  UplinkHealth,
  UplinkHealthOptions,
} from "./uplink-health.js";

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
  /** Time for timers and stamps (default the system clock). */
  clock?: Clock;
  /** Delay before retry `attempt` of failed kernel work, ms (default 100 ms doubling to 10 s). */
  retryDelayMs?: (attempt: number) => number;
  /** Starts the `ip monitor` trigger; unit tests pass a fake. */
  monitor?: (onChange: () => void) => { start(): void; stop(): void };
  /**
   * Sets the log's level to the config's `log.level`, at start and on each
   * reload. Absent: the level stays as `log` was made (the CLI's
   * `--log-level` wins over the config; tests keep their silent logs).
   */
  setLogLevel?: (level: LogLevel) => void;
}

/**
 * The message of the start line: what a person checks first (which config,
 * which uplinks, where the socket is). The config itself is logged at debug.
 */
export function startLine(config: Config, configPath: string): string {
  const uplinks = config.uplinks.map((u) => `${u.name} (${u.interface})`).join(", ");
  return `uplinkd started with ${configPath}: uplinks ${uplinks}; control socket ${config.control.socket}`;
}

/** Retries of failed kernel work (reconciles, conntrack clean-up): 100 ms, doubling, at most 10 s. */
export const KERNEL_RETRY: BackoffPolicy = Object.freeze({ baseMs: 100, factor: 2, maxMs: 10_000 });

/** The daemon. `start()` brings it up; `stop()` takes it down. */
export class Daemon {
  #config!: Config;
  readonly #options: DaemonOptions;
  readonly #clock: Clock;
  readonly #links: LinkWatcher;
  readonly #health: HealthSupervisor;
  readonly #controller: Controller;
  readonly #traffic: TrafficSampler;
  readonly #passive: PassiveWatcher;
  readonly #balancer: LoadBalancer;
  readonly #dns: DnsmasqPart;
  readonly #ha: HaPart;
  /** Role changes of this router (config `ha`), oldest first, at most `eventLimit`. */
  readonly #roleEvents: Ring<HaRoleChange>;
  /** Transitions, oldest first, at most `eventLimit`. */
  readonly #events: Ring<Transition>;
  /** Uplinks failed for a config the kernel cannot serve (missing interface, off-link gateway...). */
  readonly #problems = new ProblemTracker();
  /** Failbacks (`failback: move`), oldest first, at most `eventLimit`. */
  readonly #failbacks: Ring<FailbackEvent>;
  readonly #failback: FailbackWatcher;
  readonly #tunnels: TunnelWatcher;
  readonly #schedule: ScheduleWatcher;
  readonly #quota: QuotaPart;
  readonly #speedtest: SpeedtestPart;
  /** Why new connections go over the last resort (every uplink down by its probes, links up); null otherwise. */
  #lastResortReason: string | null = null;
  #control: ControlService | undefined;
  /** Sends transitions to email, webhooks and hooks (config `notify`); none without it. */
  #notifier: Notifier | undefined;
  readonly #startedAt: number;
  /** Whether start() ended well: a stop after a failed start says so instead of "stopped". */
  #started = false;
  /** During start, until the first reconcile: whether links changed meanwhile; undefined after. */
  #linksPending: boolean | undefined;

  constructor(options: DaemonOptions) {
    this.#options = options;
    this.#clock = options.clock ?? new SystemClock();
    this.#startedAt = this.#clock.wall();
    this.#events = new Ring(options.eventLimit ?? 1000);
    this.#roleEvents = new Ring(options.eventLimit ?? 1000);
    this.#failbacks = new Ring(options.eventLimit ?? 1000);
    const log = options.log;
    this.#health = new HealthSupervisor({
      log,
      createHealth: options.createHealth,
      onTransition: (t) => {
        // A failed uplink stays down for its problem; its probes' verdicts show once it is fixed.
        if (this.#problems.get(t.uplink) === undefined) this.#record(t);
        // A scheduled speed test waits for its uplink to be up.
        if (t.to === "up") this.#speedtest.wake();
        this.#controller.request("transition", `transition of ${t.uplink}`).catch(() => undefined);
      },
    });
    this.#links = new LinkWatcher({
      kernel: options.kernel,
      log,
      config: () => this.#config,
      onChange: (before, after) => {
        this.#linksChanged(before, after);
      },
      clock: this.#clock,
      ...(options.monitor === undefined ? {} : { monitor: options.monitor }),
    });
    this.#dns = new DnsmasqPart({ log, kernel: options.kernel });
    this.#ha = new HaPart({
      log,
      clock: this.#clock,
      onRole: (change) => {
        this.#roleChanged(change);
      },
    });
    this.#controller = new Controller({
      kernel: options.kernel,
      log,
      clock: this.#clock,
      inputs: () => this.#inputs(this.#config, this.#links.now, this.#healthNow),
      verifyIntervalMs: options.verifyIntervalMs ?? 10_000,
      retryDelayMs: options.retryDelayMs ?? ((attempt) => backoffDelay(KERNEL_RETRY, attempt)),
      // Two probe rounds, at least 1 s: uplinks failing together are seen failing together.
      failedClearGraceMs: () => Math.max(1000, 2 * this.#config.health.interval),
      // The servers file follows every state the kernel holds (transitions, links, reloads).
      onCommit: (inputs) => {
        this.#dns.update(inputs.config, inputs.views);
        this.#ha.update(inputs.views);
        this.#failback.update(
          inputs.config,
          inputs.views,
          this.#controller.choices,
          this.#controller.choices6,
        );
        this.#tunnels.update(
          inputs.config,
          inputs.views,
          this.#controller.choices,
          this.#controller.choices6,
        );
        this.#checkLastResort(inputs);
      },
    });
    this.#tunnels = new TunnelWatcher({
      log,
      wall: () => this.#clock.wall(),
      clearFlow: (flow) => deleteTunnelFlow(options.kernel, flow),
    });
    this.#schedule = new ScheduleWatcher({
      clock: this.#clock,
      log,
      config: () => this.#config,
      kernel: options.kernel,
      onOffsetChange: () => {
        this.#controller.request("schedule", "time zone offset changed").catch(() => undefined);
      },
    });
    this.#failback = new FailbackWatcher({
      clock: this.#clock,
      log,
      clear: (stale) => this.#controller.cleaner.clear(stale),
      onFailback: (event) => {
        this.#failbackDone(event);
      },
    });
    this.#quota = new QuotaPart({
      clock: this.#clock,
      log,
      config: () => this.#config,
      readCounters: async () => parseProcNetDev(await readFile("/proc/net/dev", "utf8")),
      onAlert: (alert) => {
        this.#quotaAlert(alert);
      },
      onExceededChange: () => {
        this.#controller.request("quota", "quota exceeded changed").catch(() => undefined);
      },
    });
    this.#speedtest = new SpeedtestPart({
      clock: this.#clock,
      log,
      config: () => this.#config,
      refusal: (uplink) => this.#speedtestRefusal(uplink),
      measure: (uplink) => this.#measure(uplink),
      throughput: (uplink) => {
        const iface = this.#config.uplinks.find((u) => u.name === uplink)?.interface;
        return iface === undefined ? undefined : this.#balancer.throughput(iface);
      },
      onResult: (result) => {
        this.#speedtestDone(result);
      },
    });
    this.#balancer = new LoadBalancer({
      clock: this.#clock,
      log,
      onChange: () => {
        this.#controller.request("load", "load changed").catch(() => undefined);
      },
    });
    this.#passive = new PassiveWatcher({
      clock: this.#clock,
      readCounters: () => options.kernel.nftCounters(this.#config.dataplane.table),
      uplinks: () =>
        passiveCounters(this.#config).map((c) => ({ ...c, name: passiveName(c.uplink, c.family) })),
      onSuspect: (suspect) => {
        const { uplink, family } = parsePassiveName(suspect.uplink);
        log.info(
          { uplink, family },
          `passive signal: IPv${family} ${suspect.reason}; probing it now`,
        );
        // Unmonitored IPv6 follows IPv4: its suspicion is checked by the IPv4 probes.
        const probed = this.#health.monitors(uplink, family) ? family : 4;
        this.#health.burst(uplink, `passive signal: ${suspect.reason}`, probed);
      },
      onError: (error) => {
        log.debug({ err: error }, `reading the passive signal's counters: ${String(error)}`);
      },
    });
    this.#traffic = new TrafficSampler(options.kernel, {
      onError: (error) => {
        log.warn({ err: error }, `reading traffic counters: ${String(error)}`);
      },
      onNote: (level, message) => {
        log[level](message);
      },
    });
  }

  /** The controller (tests and benchmarks wait on it). */
  get controller(): Controller {
    return this.#controller;
  }

  /**
   * Load the config, read the links, adopt or build the kernel state, start
   * monitors and the control socket.
   * @throws {ConfigError} when the config is invalid.
   * @throws {KernelCommandError} when the first apply fails (nothing was changed by nft).
   */
  async start(): Promise<void> {
    this.#config = await this.#options.loadConfig(this.#options.configPath);
    this.#options.setLogLevel?.(this.#config.log.level);
    // The full config (secrets masked) only at debug: the start line stays short.
    this.#options.log.debug(
      { config: maskSecrets(this.#config, undefined)[0] },
      `config ${this.#options.configPath}`,
    );
    this.#resetNotifier();
    this.#linksPending = false;
    for (const warning of await acceptRaWarnings(this.#config)) {
      this.#options.log.warn({ uplink: warning.uplink }, warning.message);
    }
    await this.#links.start();
    // Usage first: an uplink that used its quota is held back from the first apply.
    await this.#quota.start();
    this.#problemsChanged();
    // Routes and rules first: probes need their uplink's table.
    await this.#controller.start();
    this.#firstReconcileDone();
    this.#schedule.start();
    this.#ha.start(this.#config.ha);
    this.#health.reconfigure(this.#config, this.#links.now.links);
    this.#balancer.start(this.#speedtest.effective(this.#config));
    this.#traffic.start();
    if (this.#config.health.passive) this.#passive.start();
    this.#control = new ControlService(
      {
        config: () => this.#config,
        status: () => this.status(),
        refreshTraffic: () => this.refreshTraffic(),
        events: () => this.#events.items,
        roleEvents: () => (this.#config.ha === undefined ? undefined : this.#roleEvents.items),
        inputs: () => this.inputs(),
        reload: () => this.reload(),
        disable: (uplink, options) => this.disable(uplink, options),
        enable: (uplink) => this.enable(uplink),
        failbacks: () => this.#failbacks.items,
        setQuota: (uplink, bytes) => this.setQuota(uplink, bytes),
        speedtest: (uplink) => this.speedtest(uplink),
      },
      this.#options.log,
    );
    await this.#control.start();
    this.#started = true;
    // After the control socket: a first test waits for its uplink to be up.
    await this.#speedtest.start();
    this.#options.log.info(
      { uplinks: this.#config.uplinks.map((u) => u.name), socket: this.#config.control.socket },
      startLine(this.#config, this.#options.configPath),
    );
  }

  /** Each uplink's health now, from its monitors (maintenance applied to `state`). */
  readonly #healthNow: HealthReading = {
    state: (uplink, family) => this.#health.state(uplink, family),
    probed: (uplink, family) => this.#health.health(uplink, family)?.state,
  };

  /** The controller's inputs for `config`, the links in `observation`, `health` and the load now. */
  #inputs(config: Config, observation: LinkObservation, health: HealthReading): ControllerInputs {
    const quotaExceeded = this.#quota.exceeded();
    const surroundings = scheduleSurroundings(config, observation.surroundings, this.#clock.wall());
    return desiredInputs(
      // `bandwidth: auto` as the last speed tests measured it.
      this.#speedtest.effective(config),
      observation.links,
      quotaExceeded.size === 0 ? surroundings : { ...surroundings, quotaExceeded },
      health,
      this.#balancer.snapshot,
    );
  }

  /**
   * Every uplink down by its probes while some link is up: new connections
   * go over the last resort. Said once in the log when it begins and ends,
   * and in status (`reason`) while it lasts.
   */
  #checkLastResort(inputs: ControllerInputs): void {
    const everyFailed = inputs.views.every((v) => inputs.failed.has(v.name));
    const linkUp = inputs.views.some((v) => v.linkUp);
    const choice = this.#controller.choices.default;
    const how =
      choice === undefined
        ? "the last resort"
        : choice.kind === "balance"
          ? `the last resort (all: ${choice.members.map((m) => m.uplink).join(", ") || "none"})`
          : `the last resort (${choice.kind})`;
    const reason =
      everyFailed && linkUp && inputs.views.length > 0
        ? `every uplink is down by its probes while links are up (probe targets unreachable?): new connections go over ${how}; existing connections are kept`
        : null;
    if (reason !== null && this.#lastResortReason === null) this.#options.log.warn(reason);
    if (reason === null && this.#lastResortReason !== null) {
      this.#options.log.info("an uplink is usable again: the last resort ended");
    }
    this.#lastResortReason = reason;
  }

  /** A failback ended: kept for events, counted in metrics, pushed to event streams. */
  #failbackDone(event: FailbackEvent): void {
    this.#failbacks.push(event);
    this.#tunnels.failback(event);
    this.#control?.failback(event);
  }

  /** A quota warn step or the limit: counted, notified. */
  #quotaAlert(alert: QuotaAlert): void {
    this.#control?.quotaAlert(alert);
    this.#notifier?.notifyQuota(alert);
  }

  /**
   * Set an uplink's quota usage in this period (`uplinkd quota UPLINK --set BYTES | --reset`).
   * @throws {UnknownUplinkError} for an unknown uplink.
   * @throws {Error} when the uplink has no quota.
   */
  async setQuota(uplink: string, bytes: number): Promise<QuotaStatus> {
    this.#knownUplink(uplink);
    const status = await this.#quota.set(uplink, bytes);
    if (status === undefined) throw new NoQuotaError(uplink);
    return status;
  }

  /**
   * Why an uplink cannot be speed-tested now: down (by probes or a
   * problem), disabled, not yet judged, without an IPv4 address, or its
   * quota used up; undefined when it can.
   */
  #speedtestRefusal(uplink: string): string | undefined {
    const view = this.views().find((v) => v.name === uplink);
    if (view === undefined) return "no such uplink";
    const health = this.#shown(uplink, 4);
    const state = health?.state ?? "init";
    if (state === "down") return `it is down (${health?.reason ?? ""})`;
    if (state === "disabled") return "it is disabled (maintenance)";
    if (state === "init") return "its health is not known yet";
    if (this.#quota.exceeded().has(uplink)) return "its quota is used up for this period";
    if (view.address === undefined || !isIPv4(view.address)) return "it has no IPv4 address";
    return undefined;
  }

  /** Run a speed test through the uplink; its bytes are counted against its quota at once. */
  async #measure(uplink: string): Promise<SpeedtestResult> {
    const config = this.#config;
    const speedtest = config.speedtest;
    const u = config.uplinks.find((x) => x.name === uplink);
    const address = this.views().find((v) => v.name === uplink)?.address;
    if (speedtest === undefined || u === undefined || address === undefined) {
      throw new SpeedtestError("add a speedtest section with download_url and upload_url");
    }
    try {
      return await runSpeedtest({
        uplink,
        address,
        downloadUrl: speedtest.download_url,
        uploadUrl: speedtest.upload_url,
        durationMs: speedtest.duration,
        streams: speedtest.streams,
        pingTarget: uplinkHealth(config, u).targets.find((t) => isIPv4(t)),
        idleRttMs: this.#health.snapshot(uplink, 4)?.rtt ?? null,
        // Read at once (not on the thread pool): the sample's time is the read's.
        readCounters: () =>
          Promise.resolve(parseProcNetDev(readFileSync("/proc/net/dev", "utf8")).get(u.interface)),
        wall: () => this.#clock.wall(),
      });
    } finally {
      // The test's bytes went through the interface: count them against the quota now.
      await this.#quota.sample();
    }
  }

  /** A speed test ended: balancing takes the new capacity, metrics and event streams the result. */
  #speedtestDone(result: SpeedtestResult): void {
    this.#balancer.reconfigure(this.#speedtest.effective(this.#config));
    this.#controller.request("load", `speed test of ${result.uplink}`).catch(() => undefined);
    this.#control?.speedtest(result);
  }

  /**
   * Speed-test an uplink now (`uplinkd speedtest UPLINK`).
   * @throws {UnknownUplinkError} for an unknown uplink.
   * @throws {SpeedtestError} without a `speedtest` section, when the uplink
   *   is down, disabled or over its quota, another test runs, or the test failed.
   */
  async speedtest(uplink: string): Promise<SpeedtestResult> {
    this.#knownUplink(uplink);
    const speedtest = this.#config.speedtest;
    if (speedtest?.download_url === undefined && speedtest?.upload_url === undefined) {
      throw new SpeedtestError(
        "no speed test endpoints: set speedtest.download_url and speedtest.upload_url in the config",
      );
    }
    return this.#speedtest.run(uplink, "request");
  }

  /** After the first reconcile: link changes request reconciles of their own, and one that came meanwhile does now. */
  #firstReconcileDone(): void {
    const pending = this.#linksPending === true;
    this.#linksPending = undefined;
    if (pending) this.#controller.request("links", "links changed").catch(() => undefined);
  }

  #linksChanged(before: LinkObservation, after: LinkObservation): void {
    for (const [name, link] of after.links) {
      const old = before.links.get(name);
      const uplink = this.#config.uplinks.find((u) => u.name === name);
      if (!link.present && old?.present !== false) {
        this.#options.log.warn(
          { uplink: name },
          `interface ${uplink?.interface ?? "?"} of uplink ${name} is missing; waiting for it`,
        );
      }
      if (old?.address !== link.address || old?.gateway !== link.gateway) {
        this.#options.log.info(
          { uplink: name, address: link.address ?? null, gateway: link.gateway ?? null },
          `uplink ${name}: address ${link.address ?? "none"}, gateway ${link.gateway ?? "none"}`,
        );
      }
    }
    this.#health.linksChanged(before.links, after.links);
    this.#problemsChanged();
    // Before the controller's first reconcile, that reconcile reads the links itself.
    if (this.#linksPending === undefined) {
      this.#controller.request("links", "links changed").catch(() => undefined);
    } else this.#linksPending = true;
  }

  /**
   * Follow the uplinks' problems in the links now: an uplink the kernel
   * cannot serve as configured is failed (down, the problem as reason:
   * status, events, log) and the others are served; once fixed it is back
   * in the state its probes found.
   */
  #problemsChanged(): void {
    const now = this.#clock.wall();
    for (const change of this.#problems.update(this.#links.now.links, now)) {
      const { uplink, problem, previous } = change;
      if (problem !== undefined) {
        this.#options.log.error(
          { uplink, problem },
          `uplink ${uplink} failed: ${problem}; serving the other uplinks`,
        );
      } else {
        this.#options.log.info({ uplink }, `uplink ${uplink}: fixed (was: ${previous ?? ""})`);
      }
      if (problem !== undefined && previous !== undefined) continue; // still down, new reason
      for (const family of this.#monitoredFamilies(uplink)) {
        const snapshot = this.#health.snapshot(uplink, family);
        this.#record({
          time: new Date(now).toISOString(),
          uplink,
          family,
          from: problem === undefined ? "down" : (snapshot?.state ?? "init"),
          to: problem === undefined ? (snapshot?.state ?? "init") : "down",
          reason:
            problem ?? `fixed (was: ${previous ?? ""}); health: ${snapshot?.reason || "probing"}`,
          loss: snapshot?.loss ?? null,
          rtt: snapshot?.rtt ?? null,
        });
      }
    }
  }

  /** The uplink's health in `family` as status shows it: `down` with its problem while it has one. */
  #shown(uplink: string, family: Family): HealthSnapshot | undefined {
    const snapshot = this.#health.snapshot(uplink, family);
    const problem = this.#problems.get(uplink);
    if (problem === undefined || snapshot?.state === "disabled") return snapshot;
    return {
      state: "down",
      since: problem.since,
      loss: snapshot?.loss ?? null,
      rtt: null,
      jitter: null,
      reason: problem.reason,
    };
  }

  /** A new notifier for the config's `notify` (after start or a reload); the old one sends what it has. */
  #resetNotifier(): void {
    const old = this.#notifier;
    const notify = this.#config.notify;
    this.#notifier =
      notify === undefined
        ? undefined
        : new Notifier(notify, this.#options.log, {
            interfaceOf: (uplink) => this.#config.uplinks.find((u) => u.name === uplink)?.interface,
            statusProvider: () => this.status().uplinks,
          });
    void old?.flush();
  }

  /**
   * Record a transition (events, log, control API, notifications). The
   * health supervisor passes on only those to record (see its maintenance).
   */
  #record(transition: Transition): void {
    // "uplink isp1" for IPv4 (as before IPv6), "uplink isp1 IPv6" for IPv6.
    const who = `uplink ${transition.uplink}${transition.family === 6 ? " IPv6" : ""}`;
    this.#events.push(transition);
    // The log line has its own `time` (when it was written): the transition's is `at`.
    const { time: at, ...fields } = transition;
    this.#options.log.info(
      { event: "transition", ...fields, at },
      `${who}: ${transition.from} -> ${transition.to} (${transition.reason})`,
    );
    this.#control?.transition(transition);
    // Returns at once; deliveries run detached and never throw.
    this.#notifier?.notify(transition);
  }

  /** The families the uplink is monitored in: IPv4 always, IPv6 when it has an IPv6 monitor. */
  #monitoredFamilies(uplink: string): Family[] {
    return this.#health.monitors(uplink, 6) ? [4, 6] : [4];
  }

  /** @throws {UnknownUplinkError} when the config has no such uplink. */
  #knownUplink(uplink: string): void {
    const names = this.#config.uplinks.map((u) => u.name);
    if (!names.includes(uplink)) throw new UnknownUplinkError(uplink, names);
  }

  /**
   * Maintenance (`uplinkd disable`): the uplink takes no new connections;
   * its existing ones keep flowing unless `drain`, which deletes its
   * conntrack entries. Its probes go on; their results show once enabled.
   * Lasts until `enable`, a restart, or a reload without the uplink.
   * @throws {UnknownUplinkError} for an unknown uplink.
   * @throws {KernelCommandError} when the kernel update or the drain fails.
   */
  async disable(uplink: string, options: DisableOptions): Promise<MaintenanceResult> {
    this.#knownUplink(uplink);
    const reason = options.reason ?? "disabled by the operator";
    // Maintenance takes both families out: the supervisor reports one transition each.
    const changed = this.#health.disable(uplink, { since: this.#clock.wall(), reason });
    await this.#controller.request("maintenance", `disable ${uplink}`);
    const view = this.views().find((v) => v.name === uplink);
    const drained = options.drain && view !== undefined ? await this.#controller.drain(view) : 0;
    return { uplink, state: "disabled", changed, drained };
  }

  /**
   * End maintenance: the uplink is back in the state its probes found.
   * @throws {UnknownUplinkError} for an unknown uplink.
   * @throws {KernelCommandError} when the kernel update fails.
   */
  async enable(uplink: string): Promise<MaintenanceResult> {
    this.#knownUplink(uplink);
    if (!this.#health.enable(uplink, this.#clock.wall())) {
      return { uplink, state: this.#health.state(uplink), changed: false, drained: 0 };
    }
    const state = this.#health.health(uplink, 4)?.state ?? "init";
    await this.#controller.request("maintenance", `enable ${uplink}`);
    return { uplink, state, changed: true, drained: 0 };
  }

  /** Sample conntrack entries, interface counters and throughput (cached >= 1 s; never throws). */
  async refreshTraffic(): Promise<void> {
    await Promise.all([
      this.#traffic.refresh(this.#config.dataplane.mark_mask),
      this.#dns.refreshSizes(this.#config),
      this.#balancer.refresh(),
    ]);
  }

  /**
   * Re-read the config file and apply it as one transaction: the new config
   * takes effect only once the kernel has accepted its state; otherwise the
   * old config and kernel state stay and the kernel's refusal is thrown.
   * Objects of old dataplane settings (table name, route protocol, table
   * base, rule priority, marks) are removed. Resolves once dnsmasq's files
   * (dns.dnsmasq) follow the new config too.
   * @throws {ConfigError} when the file is invalid (nothing changes).
   * @throws {KernelCommandError} or {DataplaneVerifyError} when the kernel refused the new state.
   */
  async reload(): Promise<ReloadResult> {
    let next: Config;
    try {
      next = await this.#options.loadConfig(this.#options.configPath);
    } catch (error) {
      if (error instanceof ConfigError) {
        this.#options.log.error(
          { issues: error.issues },
          `reload refused, config unchanged:\n${error.message}`,
        );
      }
      throw error;
    }
    const changes = await this.#controller.exclusive(async () => {
      const observation = await observe(this.#options.kernel, next);
      const candidate = this.#inputs(next, observation, {
        state: (name, family) =>
          this.#health.maintenance(name) === undefined
            ? this.#health.stateAfter(next, name, family)
            : "disabled",
        probed: (name, family) => this.#health.health(name, family)?.state,
      });
      await this.#controller.applyCandidate(candidate);
      // The kernel holds the new state: the new config is the config now.
      const changes = configChanges(this.#config, next);
      this.#config = next;
      this.#options.setLogLevel?.(next.log.level);
      this.#links.adopt(observation);
      this.#health.reconfigure(next, observation.links);
      this.#problemsChanged();
      this.#balancer.reconfigure(this.#speedtest.effective(next));
      this.#ha.reconfigure(next.ha);
      this.#schedule.start();
      return changes;
    });
    // dnsmasq follows the new config (nftset fragment, servers) before the reload reports done.
    await this.#dns.idle();
    await this.#control?.reconfigure();
    if (changes.some((c) => c.startsWith("notify"))) this.#resetNotifier();
    // `bandwidth: auto` or `speedtest` may have changed.
    this.#speedtest.wake();
    this.#options.log.info(
      { changes },
      changes.length === 0
        ? "config reloaded: no changes"
        : `config reloaded: ${changes.join("; ")}`,
    );
    return {
      ok: true,
      config: this.#options.configPath,
      uplinks: this.#config.uplinks.map((u) => u.name),
      changes,
    };
  }

  /** Every uplink as the renderer sees it now. */
  views(): UplinkView[] {
    return this.#inputs(this.#config, this.#links.now, this.#healthNow).views;
  }

  /**
   * What the desired state is built from besides the config and the links:
   * each uplink's health per family and the load (`uplinkd plan` reads it).
   */
  inputs(): InputsDocument {
    const families = (name: string): Family[] => (this.#health.monitors(name, 6) ? [4, 6] : [4]);
    const speedtests = this.#config.uplinks.flatMap((u) => {
      const result = this.#speedtest.result(u.name);
      return result === undefined ? [] : [[u.name, result] as const];
    });
    return {
      uplinks: Object.fromEntries(
        this.#config.uplinks.map((u) => [
          u.name,
          Object.fromEntries(
            families(u.name).map((family) => [
              String(family),
              {
                state: this.#health.state(u.name, family),
                ...optional("probed", this.#health.health(u.name, family)?.state),
              },
            ]),
          ),
        ]),
      ),
      load: this.#balancer.snapshot ?? null,
      // Only when some uplink was measured: older answers had no such member.
      ...(speedtests.length === 0 ? {} : { speedtests: Object.fromEntries(speedtests) }),
    };
  }

  /** The status document: the state last applied, health, links and the last traffic sample. */
  status(): StatusDocument {
    return buildStatus({
      configPath: this.#options.configPath,
      startedAt: this.#startedAt,
      views: this.views(),
      links: this.#links.now.links,
      health: (name) => this.#shown(name, 4),
      health6: (name) => (this.#health.monitors(name, 6) ? this.#shown(name, 6) : undefined),
      choices6: this.#controller.choices6,
      choices: this.#controller.choices,
      lastApply: this.#controller.lastApply,
      traffic: this.#traffic,
      throughput: (iface) => this.#balancer.throughput(iface),
      domains: this.#dns.sizes,
      ha: this.#ha.status(),
      quota: (name) => this.#quota.status(name),
      bandwidth: (name) => this.#speedtest.status(name),
      reason: this.#lastResortReason,
      tunnels: this.#tunnels.status(this.#config),
      schedules: scheduleStatus(this.#config, this.#clock.wall()),
    });
  }

  /** Role changes of this router (config `ha`), oldest first. */
  roleEvents(): readonly HaRoleChange[] {
    return this.#roleEvents.items;
  }

  /** A role change of this router: kept for status and events, counted in metrics. */
  #roleChanged(change: HaRoleChange): void {
    this.#roleEvents.push(change);
    this.#control?.roleChange(change);
    // Returns at once; deliveries run detached and never throw.
    this.#notifier?.notifyRole(change);
  }

  /** Resolves when the controller has nothing to do (tests). */
  idle(): Promise<void> {
    return this.#controller.idle();
  }

  /** Resolves when the dnsmasq files are up to date with the last commit (tests). */
  dnsIdle(): Promise<void> {
    return this.#dns.idle();
  }

  /**
   * Stop: monitors, control socket, and (unless `keep`) every kernel object
   * uplinkd owns.
   * @param keep leave the kernel state in place (config `dataplane.on_stop: keep`).
   * @throws {KernelCommandError} when removing the kernel state fails.
   */
  async stop(keep?: boolean): Promise<void> {
    const config = this.#config as Config | undefined;
    const keepState = keep ?? config?.dataplane.on_stop === "keep";
    this.#links.stop();
    this.#health.stop();
    this.#failback.stop();
    this.#tunnels.stop();
    this.#schedule.stop();
    this.#speedtest.stop();
    // Without a config the quota part never started (and has nothing to save).
    if (config !== undefined) await this.#quota.stop();
    this.#balancer.stop();
    await this.#control?.stop();
    this.#passive.stop();
    await this.#traffic.stop();
    await this.#notifier?.flush();
    await this.#dns.stop();
    // A router that removes its dataplane must not stay master.
    await this.#ha.stop(!keepState);
    // A start that never loaded its config changed nothing: nothing to say.
    if (config === undefined) {
      this.#options.kernel.close?.();
      return;
    }
    await this.#controller.stop(config, !keepState);
    this.#options.kernel.close?.();
    if (!this.#started) {
      this.#options.log.info(
        { kept: keepState },
        keepState
          ? "start failed; kernel state kept"
          : "start failed; uplinkd's kernel state removed",
      );
      return;
    }
    this.#options.log.info(
      { kept: keepState },
      keepState ? "stopped; kernel state kept" : "stopped; kernel state removed",
    );
  }
}

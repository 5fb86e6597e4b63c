/**
 * The daemon's control part: the API on the Unix socket and the optional
 * TCP listener, metrics, the event stream and the health history behind the
 * dashboard. The daemon creates one, calls `start()`, reports every
 * transition with `transition()` (never blocks), `reconfigure()` after a
 * reload, and `stop()`.
 */
import type { HaRoleChange } from "../ha/part.js";
import type { FailbackEvent } from "../controller/failback.js";
import type { QuotaAlert, QuotaStatus } from "../quota/meter.js";
import type { SpeedtestResult } from "../speedtest/state.js";
import type { Server } from "node:http";
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import type { InputsDocument, StatusDocument } from "./api.js";
import type { Transition } from "../uplink-health.js";
import type {
  DisableOptions,
  HistorySample,
  MaintenanceResult,
  ReloadResult,
  StreamEvent,
} from "./api.js";
import { Metrics } from "./metrics.js";
import { RefusalLog } from "./refusals.js";
import { SystemClock } from "../clock.js";
import { cleanText } from "../text.js";
import { openFilesLimit } from "../process/limits.js";
import {
  closeServer,
  connectionBudget,
  startControlServer,
  startTcpListener,
  type ControlAppOptions,
  type ControlHandlers,
} from "./server.js";

/** What the control part needs from the daemon. */
export interface ControlSource {
  /** The config now. */
  config(): Config;
  /** Status with the last traffic sample (sync: cheap). */
  status(): StatusDocument;
  /** Refresh connections and bytes (cached >= 1 s; never throws). */
  refreshTraffic(): Promise<void>;
  /** Recent transitions, oldest first. */
  events(): readonly Transition[];
  /** Role changes of this router (config `ha`), oldest first; undefined without `ha`. */
  roleEvents?(): readonly HaRoleChange[] | undefined;
  /** Each uplink's health and the load (`GET /inputs`). */
  inputs(): InputsDocument;
  reload(): Promise<ReloadResult>;
  disable(uplink: string, options: DisableOptions): Promise<MaintenanceResult>;
  enable(uplink: string): Promise<MaintenanceResult>;
  /** Recent failbacks, oldest first. */
  failbacks?(): readonly FailbackEvent[];
  /** Set an uplink's quota usage in this period, bytes. */
  setQuota?(uplink: string, bytes: number): Promise<QuotaStatus>;
  /** Speed-test an uplink now; rejects with UnknownUplinkError or SpeedtestError. */
  speedtest?(uplink: string): Promise<SpeedtestResult>;
}

/** Options of a {@link ControlService}. */
export interface ControlServiceOptions {
  /** Status push and history sample interval, ms (default 1000). */
  tickMs?: number;
  /** Samples kept for the charts (default 600: 10 min at 1 s). */
  historySize?: number;
}

/** The control part of one daemon. The constructor starts nothing. */
export class ControlService {
  readonly metrics: Metrics;
  readonly #source: ControlSource;
  readonly #log: Logger;
  readonly #tickMs: number;
  readonly #historySize: number;
  readonly #history: HistorySample[] = [];
  readonly #listeners = new Set<(event: StreamEvent) => void>();
  #socket: Server | undefined;
  #tcp: Server | undefined;
  #tcpAddress: string | undefined;
  #socketPath: string | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(source: ControlSource, log: Logger, options: ControlServiceOptions = {}) {
    this.#source = source;
    this.#log = log.child({ component: "control" });
    this.#tickMs = options.tickMs ?? 1000;
    this.#historySize = options.historySize ?? 600;
    this.metrics = new Metrics({
      status: () => this.#fullStatus(),
      policyMembers: () => {
        // A policy without members (and `default` unless redefined) has every uplink.
        const config = this.#source.config();
        const every = config.uplinks.map((u) => u.name);
        return {
          default: every,
          ...Object.fromEntries(
            Object.entries(config.policies).map(([name, p]) => [
              name,
              p.members?.map((m) => m.uplink) ?? every,
            ]),
          ),
        };
      },
    });
  }

  async #fullStatus(): Promise<StatusDocument> {
    await this.#source.refreshTraffic();
    return this.#source.status();
  }

  /** The handlers both listeners serve. */
  readonly handlers: ControlHandlers = {
    status: () => this.#fullStatus(),
    events: (limit) => {
      const roles = this.#source.roleEvents?.();
      const failbacks = this.#source.failbacks?.() ?? [];
      return {
        events: this.#source.events().slice(-limit),
        ...(roles === undefined ? {} : { roles: roles.slice(-limit) }),
        ...(failbacks.length === 0 ? {} : { failbacks: failbacks.slice(-limit) }),
      };
    },
    history: () => ({ intervalMs: this.#tickMs, samples: this.#history }),
    inputs: () => this.#source.inputs(),
    reload: () => this.#source.reload(),
    disable: (uplink, options) => this.#source.disable(uplink, options),
    enable: (uplink) => this.#source.enable(uplink),
    setQuota: (uplink, bytes) => {
      if (this.#source.setQuota === undefined) return Promise.reject(new Error("no quotas here"));
      return this.#source.setQuota(uplink, bytes);
    },
    speedtest: (uplink) => {
      if (this.#source.speedtest === undefined) {
        return Promise.reject(new Error("no speed tests here"));
      }
      return this.#source.speedtest(uplink);
    },
    metrics: async () => ({
      contentType: this.metrics.contentType,
      text: await this.metrics.render(),
    }),
    subscribe: (listener) => {
      this.#listeners.add(listener);
      return () => {
        this.#listeners.delete(listener);
      };
    },
  };

  /** Refused requests: one line per source per `control.refused_log_interval`. */
  readonly #refusals = new RefusalLog(
    () => this.#source.config().control.refused_log_interval,
    new SystemClock(),
    (line) => {
      const more =
        line.suppressed > 0 ? `; ${line.suppressed} more refused since the last line` : "";
      this.#log.warn(
        line,
        `control: refused ${cleanText(line.method)} ${cleanText(line.path)} from ${line.source} (${line.status})${more}`,
      );
    },
  );

  readonly #appOptions: Omit<ControlAppOptions, "tokens"> = {
    onDenied: (info) => {
      this.#refusals.note(info);
    },
    limits: () => {
      const control = this.#source.config().control;
      return {
        maxConnections: Math.min(control.max_connections, this.#connectionBudget()),
        maxStreams: control.max_streams,
        streamBufferBytes: control.stream_buffer,
      };
    },
    onLimit: (info) => {
      this.#limitLog.note({
        source: info.what,
        method: "-",
        path: "-",
        status: 503,
        message: `limit ${info.limit}`,
      });
    },
    onServerError: (error) => {
      this.#limitLog.note({
        source: "accept",
        method: "-",
        path: "-",
        status: 0,
        message: error.message,
      });
    },
    onWrite: (info) => {
      this.#log.info(info, `control: ${info.method} ${info.path} by ${info.who}`);
    },
  };

  /** Connections and streams refused at their limits, slow readers dropped: rate-limited too. */
  readonly #limitLog = new RefusalLog(
    () => this.#source.config().control.refused_log_interval,
    new SystemClock(),
    (line) => {
      const more = line.suppressed > 0 ? ` (${line.suppressed} more since the last line)` : "";
      const what =
        line.source === "slow reader"
          ? `dropped an event stream whose reader fell behind (over ${line.message.slice(6)} bytes unsent)`
          : line.source === "accept"
            ? `could not accept a connection: ${line.message}`
            : `refused a ${line.source} at the ${line.message}`;
      this.#log.warn({ what: line.source, suppressed: line.suppressed }, `control: ${what}${more}`);
    },
  );

  /** The soft limit of open files, read once at start (undefined: unlimited or unknown). */
  #fileLimit: number | undefined;

  /** Connections per listener the file limit leaves (see {@link connectionBudget}). */
  #connectionBudget(): number {
    return connectionBudget(this.#fileLimit, this.#tcp === undefined ? 1 : 2);
  }

  /** Warn when `control.max_connections` is lowered to what the file limit leaves. */
  #warnFileBudget(): void {
    const configured = this.#source.config().control.max_connections;
    const budget = this.#connectionBudget();
    if (configured <= budget) return;
    this.#log.warn(
      { max_connections: configured, effective: budget, file_limit: this.#fileLimit },
      `control.max_connections ${configured} is more than the file limit (${this.#fileLimit}) leaves; ` +
        `each listener takes at most ${budget} connections (raise LimitNOFILE= or lower max_connections)`,
    );
  }

  /** The TCP listener's address, when one is open. */
  get tcpAddress(): string | undefined {
    return this.#tcpAddress;
  }

  /**
   * Open the Unix socket and (config `control.listen`) the TCP listener;
   * start sampling and counting.
   * @throws when the socket or the TCP address cannot be bound.
   */
  async start(): Promise<void> {
    const control = this.#source.config().control;
    this.#fileLimit = openFilesLimit();
    this.metrics.start();
    this.#socket = await startControlServer(control.socket, this.handlers, this.#appOptions);
    this.#socketPath = control.socket;
    await this.#openTcp(control.listen);
    this.#warnFileBudget();
    this.#sample();
    this.#timer = setInterval(() => {
      this.#tick();
    }, this.#tickMs);
    this.#timer.unref();
  }

  async #openTcp(listen: string | undefined): Promise<void> {
    if (listen === undefined) return;
    this.#tcp = await startTcpListener(listen, this.handlers, {
      ...this.#appOptions,
      tokens: () => this.#source.config().control.tokens,
    });
    this.#tcpAddress = listen;
    this.#log.info({ listen }, `dashboard and metrics on http://${listen}/`);
  }

  /**
   * Apply a reloaded config: the TCP listener moves when `control.listen`
   * changed (tokens apply at once anyway); a new `control.socket` needs a
   * restart.
   * @throws when the new TCP address cannot be bound (the old listener is closed).
   */
  async reconfigure(): Promise<void> {
    const control = this.#source.config().control;
    if (control.socket !== this.#socketPath) {
      this.#log.warn(
        { socket: this.#socketPath, configured: control.socket },
        `control.socket changed; the daemon keeps ${this.#socketPath} until it restarts`,
      );
    }
    if (control.listen !== this.#tcpAddress) {
      if (this.#tcp !== undefined) await closeServer(this.#tcp);
      this.#tcp = undefined;
      this.#tcpAddress = undefined;
      await this.#openTcp(control.listen);
    }
    this.#warnFileBudget();
  }

  /** Report one transition: counted, pushed to every event stream with the new status. Never throws. */
  transition(transition: Transition): void {
    try {
      this.metrics.transition(transition);
      if (this.#listeners.size === 0) return;
      this.#emit({ type: "transition", data: transition });
      this.#emit({ type: "status", data: this.#source.status() });
    } catch (error) {
      this.#log.error({ err: error }, "control: reporting a transition failed");
    }
  }

  /** Report a role change of this router (config `ha`): counted, pushed to every event stream. Never throws. */
  roleChange(change: HaRoleChange): void {
    try {
      this.metrics.roleChange(change);
      if (this.#listeners.size === 0) return;
      this.#emit({ type: "role", data: change });
      this.#emit({ type: "status", data: this.#source.status() });
    } catch (error) {
      this.#log.error({ err: error }, "control: reporting a role change failed");
    }
  }

  /** Report a failback: counted, pushed to every event stream. Never throws. */
  failback(event: FailbackEvent): void {
    try {
      this.metrics.failback(event);
      this.#emit({ type: "failback", data: event });
    } catch (error) {
      this.#log.error({ err: error }, "control: reporting a failback failed");
    }
  }

  /** Report a quota warn step or the limit: counted, pushed to every event stream. Never throws. */
  quotaAlert(alert: QuotaAlert): void {
    try {
      this.metrics.quotaAlert(alert);
      this.#emit({ type: "quota", data: alert });
    } catch (error) {
      this.#log.error({ err: error }, "control: reporting a quota alert failed");
    }
  }

  /** Report a speed test result: counted, pushed to every event stream. Never throws. */
  speedtest(result: SpeedtestResult): void {
    try {
      this.metrics.speedtest(result);
      this.#emit({ type: "speedtest", data: result });
    } catch (error) {
      this.#log.error({ err: error }, "control: reporting a speed test failed");
    }
  }

  #emit(event: StreamEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#log.error({ err: error }, "control: an event stream listener failed");
      }
    }
  }

  #sample(): StatusDocument {
    const status = this.#source.status();
    this.#history.push({
      t: Date.now(),
      uplinks: status.uplinks.map((u) => ({
        name: u.name,
        state: u.state,
        rtt: u.rtt,
        loss: u.loss,
        recentLoss: u.recentLoss,
      })),
    });
    if (this.#history.length > this.#historySize) {
      this.#history.splice(0, this.#history.length - this.#historySize);
    }
    return status;
  }

  #tick(): void {
    const status = this.#sample();
    if (this.#listeners.size === 0) return;
    this.#source
      .refreshTraffic()
      .then(() => {
        this.#emit({ type: "status", data: this.#source.status() });
      })
      .catch(() => {
        this.#emit({ type: "status", data: status });
      });
  }

  /** Close both listeners (ending open event streams) and stop sampling. */
  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.metrics.stop();
    this.#listeners.clear();
    await Promise.all(
      [this.#socket, this.#tcp].flatMap((s) => (s === undefined ? [] : [closeServer(s)])),
    );
    this.#socket = undefined;
    this.#tcp = undefined;
  }
}

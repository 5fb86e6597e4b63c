/**
 * Prometheus metrics (`GET /metrics`, text format 0.0.4), with prom-client.
 *
 * Gauges are set from the status document at scrape time (connections and
 * bytes come from the {@link TrafficSampler}, cached for at least 1 s).
 * Counters of transitions are fed by the daemon; probe counters come from the
 * health checks' `uplinkd:health:round` diagnostics channel: every decided
 * round counts one probe per target (answered, failed or still pending when
 * the round was decided early); a failed one counts as lost.
 */
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { StatusDocument } from "./api.js";
import type { Transition, UplinkState } from "../uplink-health.js";

/** Every state an uplink can be in: the `state` label of `uplinkd_uplink_state`. */
export const UPLINK_STATES: readonly UplinkState[] = ["init", "up", "degraded", "down", "disabled"];

/** The diagnostics channel the health monitors publish decided rounds on. */
export const ROUND_CHANNEL = "uplinkd:health:round";

/** What `uplinkd:health:round` carries (the fields used here). */
interface RoundMessage {
  uplink: string;
  round: { outcome: string; targets: { target: string; status: string }[] };
}

function isRoundMessage(message: unknown): message is RoundMessage {
  if (typeof message !== "object" || message === null) return false;
  const m = message as Partial<RoundMessage>;
  return typeof m.uplink === "string" && Array.isArray(m.round?.targets);
}

/** Options of {@link Metrics}. */
export interface MetricsOptions {
  /** The status document now, traffic refreshed (called once per scrape). */
  status: () => Promise<StatusDocument>;
  /** Also export the process's CPU, memory, event loop lag... (default true). */
  processMetrics?: boolean;
}

/** The metrics of one daemon, in their own registry. */
export class Metrics {
  readonly registry = new Registry();
  readonly #status: () => Promise<StatusDocument>;
  readonly #state: Gauge;
  readonly #active: Gauge;
  readonly #weight: Gauge;
  readonly #loss: Gauge;
  readonly #rtt: Gauge;
  readonly #jitter: Gauge;
  readonly #since: Gauge;
  readonly #connections: Gauge;
  readonly #rxBytes: Counter;
  readonly #txBytes: Counter;
  readonly #transitions: Counter;
  readonly #probesSent: Counter;
  readonly #probesLost: Counter;
  readonly #rounds: Counter;
  readonly #onRound = (message: unknown): void => {
    this.round(message);
  };
  #subscribed = false;

  constructor(options: MetricsOptions) {
    this.#status = options.status;
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    const uplink = ["uplink"] as const;
    this.#state = new Gauge({
      name: "uplinkd_uplink_state",
      help: "1 for the state the uplink is in, 0 for the others",
      labelNames: ["uplink", "state"],
      registers,
    });
    this.#active = new Gauge({
      name: "uplinkd_uplink_active",
      help: "1 when the uplink takes new connections now",
      labelNames: uplink,
      registers,
    });
    this.#weight = new Gauge({
      name: "uplinkd_uplink_weight",
      help: "configured weight of the uplink (share of new connections within its tier)",
      labelNames: ["uplink", "tier"],
      registers,
    });
    this.#loss = new Gauge({
      name: "uplinkd_uplink_loss_ratio",
      help: "probe loss over the window, 0..1; absent before the first probe resolved",
      labelNames: uplink,
      registers,
    });
    this.#rtt = new Gauge({
      name: "uplinkd_uplink_rtt_seconds",
      help: "mean probe round-trip time over the window, seconds",
      labelNames: uplink,
      registers,
    });
    this.#jitter = new Gauge({
      name: "uplinkd_uplink_jitter_seconds",
      help: "standard deviation of the probe round-trip time over the window, seconds",
      labelNames: uplink,
      registers,
    });
    this.#since = new Gauge({
      name: "uplinkd_uplink_state_since_timestamp_seconds",
      help: "when the uplink entered its current state, Unix time in seconds",
      labelNames: uplink,
      registers,
    });
    this.#connections = new Gauge({
      name: "uplinkd_uplink_connections",
      help: "conntrack entries carrying the uplink's mark (IPv4; kept from conntrack events)",
      labelNames: uplink,
      registers,
    });
    this.#rxBytes = new Counter({
      name: "uplinkd_interface_receive_bytes_total",
      help: "bytes received on the uplink's interface (kernel counter, /proc/net/dev)",
      labelNames: ["uplink", "interface"],
      registers,
    });
    this.#txBytes = new Counter({
      name: "uplinkd_interface_transmit_bytes_total",
      help: "bytes transmitted on the uplink's interface (kernel counter, /proc/net/dev)",
      labelNames: ["uplink", "interface"],
      registers,
    });
    this.#transitions = new Counter({
      name: "uplinkd_transitions_total",
      help: "state changes of an uplink, by old and new state",
      labelNames: ["uplink", "from", "to"],
      registers,
    });
    this.#probesSent = new Counter({
      name: "uplinkd_probes_sent_total",
      help: "probes sent through the uplink to each target (one per target per decided round)",
      labelNames: ["uplink", "target"],
      registers,
    });
    this.#probesLost = new Counter({
      name: "uplinkd_probes_lost_total",
      help: "probes that got no answer in time (or an error), per target",
      labelNames: ["uplink", "target"],
      registers,
    });
    this.#rounds = new Counter({
      name: "uplinkd_probe_rounds_total",
      help: "decided probe rounds, by outcome (passed, failed, void)",
      labelNames: ["uplink", "outcome"],
      registers,
    });
  }

  /** Start counting probes from the health checks' diagnostics channel. */
  start(): void {
    if (this.#subscribed) return;
    subscribe(ROUND_CHANNEL, this.#onRound);
    this.#subscribed = true;
  }

  /** Stop counting probes. */
  stop(): void {
    if (!this.#subscribed) return;
    unsubscribe(ROUND_CHANNEL, this.#onRound);
    this.#subscribed = false;
  }

  /** Count one transition. */
  transition(transition: Transition): void {
    this.#transitions.inc({ uplink: transition.uplink, from: transition.from, to: transition.to });
  }

  /** Count one decided round (a `uplinkd:health:round` message); other shapes are ignored. */
  round(message: unknown): void {
    if (!isRoundMessage(message)) return;
    const { uplink, round } = message;
    this.#rounds.inc({ uplink, outcome: round.outcome });
    for (const t of round.targets) {
      if (t.status === "gap") continue;
      this.#probesSent.inc({ uplink, target: t.target });
      if (t.status === "failed") this.#probesLost.inc({ uplink, target: t.target });
    }
  }

  /** Content-Type of {@link render}'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The metrics as Prometheus text, gauges set from the status now. */
  async render(): Promise<string> {
    const status = await this.#status();
    for (const g of [this.#state, this.#active, this.#weight, this.#loss, this.#rtt]) g.reset();
    for (const g of [this.#jitter, this.#since, this.#connections]) g.reset();
    this.#rxBytes.reset();
    this.#txBytes.reset();
    for (const u of status.uplinks) {
      const uplink = u.name;
      for (const state of UPLINK_STATES)
        this.#state.set({ uplink, state }, u.state === state ? 1 : 0);
      this.#active.set({ uplink }, u.active ? 1 : 0);
      this.#weight.set({ uplink, tier: String(u.tier) }, u.weight);
      if (u.loss !== null) this.#loss.set({ uplink }, u.loss / 100);
      if (u.rtt !== null) this.#rtt.set({ uplink }, u.rtt / 1000);
      if (u.jitter !== null) this.#jitter.set({ uplink }, u.jitter / 1000);
      this.#since.set({ uplink }, Date.parse(u.since) / 1000);
      if (u.connections !== null) this.#connections.set({ uplink }, u.connections);
      if (u.rxBytes !== null) this.#rxBytes.inc({ uplink, interface: u.interface }, u.rxBytes);
      if (u.txBytes !== null) this.#txBytes.inc({ uplink, interface: u.interface }, u.txBytes);
    }
    return this.registry.metrics();
  }
}

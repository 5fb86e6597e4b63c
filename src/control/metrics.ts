/**
 * Prometheus metrics (`GET /metrics`, text format 0.0.4), with prom-client.
 *
 * The per-uplink series are filled by each metric's `collect()` callback
 * from the status document at the moment the registry is read (connections
 * and bytes come from the {@link TrafficSampler}, cached for at least 1 s):
 * `render()` asks for the status once per scrape and every metric of that
 * scrape reads it; a read of the registry outside `render()` asks itself.
 * Counters of transitions are fed by the daemon; probe counters come from the
 * health checks' `uplinkd:health:round` diagnostics channel: every decided
 * round counts one probe per target (answered, failed or still pending when
 * the round was decided early); a failed one counts as lost.
 *
 * Families: the per-uplink health series (state, active, loss, RTT, jitter,
 * state since, transitions, probes, rounds) of an uplink's IPv6 carry the
 * label `family="6"`; its IPv4 series keep exactly the labels they had
 * before IPv6 (no `family` label), so their history, recording rules and
 * dashboards continue. Select IPv6 with `family="6"`, IPv4 with
 * `family!="6"`; a selector without `family` matches both.
 */
import { HA_ROLES, type HaRoleChange } from "../ha/part.js";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { StatusDocument, UplinkStatus } from "./api.js";
import { shares } from "../policy/load.js";
import type { FailbackEvent } from "../controller/failback.js";
import type { QuotaAlert } from "../quota/meter.js";
import type { SpeedtestResult } from "../speedtest/state.js";
import type { Transition, UplinkState } from "../uplink-health.js";

/** Every state an uplink can be in: the `state` label of `uplinkd_uplink_state`. */
export const UPLINK_STATES: readonly UplinkState[] = ["init", "up", "degraded", "down", "disabled"];

/** The outcomes of a decided probe round: the `outcome` label of `uplinkd_probe_rounds_total`. */
const ROUND_OUTCOMES = ["passed", "failed", "void"] as const;

/** The diagnostics channel the health monitors publish decided rounds on. */
export const ROUND_CHANNEL = "uplinkd:health:round";

/** What `uplinkd:health:round` carries (the fields used here). */
interface RoundMessage {
  uplink: string;
  /** 4 or 6; absent means 4. */
  family?: number;
  round: { outcome: string; targets: { target: string; status: string }[] };
}

/** The `family` label of a series: none for IPv4 (the series as before IPv6), `6` for IPv6. */
function familyLabel(family: number | undefined): { family?: string } {
  return family === 6 ? { family: "6" } : {};
}

/** An uplink's health in one family, as the per-family series read it. */
interface FamilyHealth {
  labels: { uplink: string; family?: string };
  /** `unmonitored`: IPv6 without IPv6 targets, following IPv4. */
  state: UplinkState | "unmonitored";
  since: string;
  active: boolean;
  loss: number | null;
  rtt: number | null;
  jitter: number | null;
}

/** The uplink's IPv4 health and, when it has IPv6, its IPv6 health. */
function familiesOf(u: UplinkStatus): FamilyHealth[] {
  const v4: FamilyHealth = { ...u, labels: { uplink: u.name } };
  const v6 = u.ipv6 ?? null;
  return v6 === null ? [v4] : [v4, { ...v6, labels: { uplink: u.name, family: "6" } }];
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
  /**
   * The uplinks of each policy by the config (`default`: every uplink,
   * unless redefined), so that a member that gets no share reads 0 instead
   * of vanishing. Default: only the members chosen now.
   */
  policyMembers?: () => Record<string, readonly string[]>;
}

/**
 * prom-client's default gauges whose names end in `_total`, which names
 * counters only: each is the sum of a gauge by type that stays
 * (`sum(nodejs_active_handles)`), so they are left out.
 */
export const DROPPED_DEFAULT_METRICS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
] as const;

/** The metrics of one daemon, in their own registry. */
export class Metrics {
  readonly registry = new Registry();
  readonly #status: () => Promise<StatusDocument>;
  /** The status of the scrape under way (see `render`); undefined between scrapes. */
  #scrape: Promise<StatusDocument> | undefined;
  /** Transitions counted so far, by their labels (JSON); `uplinkd_transitions_total` reads it. */
  readonly #transitionCounts = new Map<string, number>();
  readonly #probesSent: Counter;
  readonly #probesLost: Counter;
  readonly #rounds: Counter;
  readonly #roleChanges: Counter;
  readonly #failbacks: Counter;
  readonly #failbackCleared: Counter;
  readonly #quotaAlerts: Counter;
  readonly #speedtests: Counter;
  readonly #speedtestBytes: Counter;
  /** The HA metrics: rendered only while the status has `ha`. */
  readonly #haRegistry = new Registry();
  readonly #onRound = (message: unknown): void => {
    this.round(message);
  };
  #subscribed = false;

  constructor(options: MetricsOptions) {
    this.#status = options.status;
    const registers = [this.registry];
    if (options.processMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry });
      for (const name of DROPPED_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
    }
    const policyMembers = options.policyMembers;
    const uplink = ["uplink"] as const;
    /** Per-uplink health series: `family` only on IPv6 ones (see the module doc). */
    const perFamily = ["uplink", "family"] as const;
    const current = () => this.#currentStatus();
    /** Per-uplink series from the status now: reset, then one fill per uplink, in one go. */
    const fromStatus = <M extends Gauge | Counter>(fill: (metric: M, u: UplinkStatus) => void) =>
      async function collect(this: M): Promise<void> {
        const status = await current();
        this.reset();
        for (const u of status.uplinks) fill(this, u);
      };
    new Gauge({
      name: "uplinkd_uplink_state",
      help: "1 for the state the uplink is in, 0 for the others",
      labelNames: ["uplink", "state", "family"],
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        for (const f of familiesOf(u)) {
          const { uplink: name, ...family } = f.labels;
          const states =
            f.labels.family === "6" ? [...UPLINK_STATES, "unmonitored"] : UPLINK_STATES;
          for (const state of states) {
            g.set({ uplink: name, state, ...family }, f.state === state ? 1 : 0);
          }
        }
      }),
    });
    new Gauge({
      name: "uplinkd_uplink_active",
      help: "1 when the uplink takes new connections (of the family) now",
      labelNames: perFamily,
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        for (const f of familiesOf(u)) g.set(f.labels, f.active ? 1 : 0);
      }),
    });
    new Gauge({
      name: "uplinkd_uplink_weight",
      help: "configured weight of the uplink (share of new connections within its tier)",
      labelNames: ["uplink", "tier"],
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        g.set({ uplink: u.name, tier: String(u.tier) }, u.weight);
      }),
    });
    new Gauge({
      name: "uplinkd_uplink_loss_ratio",
      help: "probe loss over the window, 0..1; NaN before the first probe resolved",
      labelNames: perFamily,
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        for (const f of familiesOf(u)) g.set(f.labels, f.loss === null ? NaN : f.loss / 100);
      }),
    });
    new Gauge({
      name: "uplinkd_uplink_rtt_seconds",
      help: "mean probe round-trip time over the window, seconds; NaN while no probe answers (a down uplink)",
      labelNames: perFamily,
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        for (const f of familiesOf(u)) g.set(f.labels, f.rtt === null ? NaN : f.rtt / 1000);
      }),
    });
    new Gauge({
      name: "uplinkd_uplink_jitter_seconds",
      help: "standard deviation of the probe round-trip time over the window, seconds; NaN while no probe answers",
      labelNames: perFamily,
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        for (const f of familiesOf(u)) g.set(f.labels, f.jitter === null ? NaN : f.jitter / 1000);
      }),
    });
    new Gauge({
      name: "uplinkd_uplink_state_since_timestamp_seconds",
      help: "when the uplink entered its current state, Unix time in seconds",
      labelNames: perFamily,
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        for (const f of familiesOf(u)) g.set(f.labels, Date.parse(f.since) / 1000);
      }),
    });
    new Gauge({
      name: "uplinkd_uplink_connections",
      help: "conntrack entries carrying the uplink's mark (IPv4; kept from conntrack events)",
      labelNames: uplink,
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        if (u.connections !== null) g.set({ uplink: u.name }, u.connections);
      }),
    });
    new Gauge({
      name: "uplinkd_uplink_throughput_bytes_per_second",
      help: "throughput through the uplink's interface now, bytes per second (EWMA, time constant 2 s), by direction: down = received, up = sent",
      labelNames: ["uplink", "direction"],
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        // The status has bits per second; Prometheus wants the base unit.
        g.set({ uplink: u.name, direction: "down" }, (u.throughput?.down ?? 0) / 8);
        g.set({ uplink: u.name, direction: "up" }, (u.throughput?.up ?? 0) / 8);
      }),
    });
    new Gauge({
      name: "uplinkd_policy_share_ratio",
      help: "share of a policy's new connections the uplink gets now, 0..1 (effective weights: load-based for least-used and spillover)",
      labelNames: ["policy", "uplink"],
      registers,
      async collect(this: Gauge): Promise<void> {
        const status = await current();
        this.reset();
        // Every configured member reads 0 until it gets a share (a member down, a backup tier).
        for (const [policy, members] of Object.entries(policyMembers?.() ?? {})) {
          for (const uplink of members) this.set({ policy, uplink }, 0);
        }
        for (const [policy, choice] of Object.entries(status.policies)) {
          if (choice.kind !== "balance") continue;
          for (const [uplink, pct] of shares(choice.members)) {
            this.set({ policy, uplink }, pct / 100);
          }
        }
      },
    });
    // Kernel counters: the value is the kernel's total, so the series is set, not counted here.
    new Counter({
      name: "uplinkd_interface_receive_bytes_total",
      help: "bytes received on the uplink's interface (kernel counter, /proc/net/dev)",
      labelNames: ["uplink", "interface"],
      registers,
      collect: fromStatus<Counter>((c, u) => {
        if (u.rxBytes !== null) c.inc({ uplink: u.name, interface: u.interface }, u.rxBytes);
      }),
    });
    new Counter({
      name: "uplinkd_interface_transmit_bytes_total",
      help: "bytes transmitted on the uplink's interface (kernel counter, /proc/net/dev)",
      labelNames: ["uplink", "interface"],
      registers,
      collect: fromStatus<Counter>((c, u) => {
        if (u.txBytes !== null) c.inc({ uplink: u.name, interface: u.interface }, u.txBytes);
      }),
    });
    const transitions = this.#transitionCounts;
    new Counter({
      name: "uplinkd_transitions_total",
      help: "state changes of an uplink, by old and new state",
      labelNames: ["uplink", "from", "to", "family"],
      registers,
      // The uplinks of the status now; every pair of states reads 0 before its
      // first transition, so that increase() sees the first.
      async collect(this: Counter): Promise<void> {
        const status = await current();
        this.reset();
        for (const u of status.uplinks) {
          for (const f of familiesOf(u)) {
            const family = f.labels.family === undefined ? {} : { family: f.labels.family };
            for (const from of UPLINK_STATES) {
              for (const to of UPLINK_STATES) {
                if (from === to) continue;
                const labels = { uplink: u.name, from, to, ...family };
                this.inc(labels, transitions.get(JSON.stringify(labels)) ?? 0);
              }
            }
          }
        }
      },
    });
    this.#probesSent = new Counter({
      name: "uplinkd_probes_sent_total",
      help: "probes sent through the uplink to each target (one per target per decided round)",
      labelNames: ["uplink", "target", "family"],
      registers,
    });
    this.#probesLost = new Counter({
      name: "uplinkd_probes_lost_total",
      help: "probes that got no answer in time (or an error), per target",
      labelNames: ["uplink", "target", "family"],
      registers,
    });
    const haRole = new Gauge({
      name: "uplinkd_ha_role",
      help: "1 for this router's VRRP role now (config ha), 0 for the others",
      labelNames: ["node", "role"],
      registers: [],
      async collect(this: Gauge): Promise<void> {
        const ha = (await current()).ha;
        this.reset();
        if (ha === undefined || ha === null) return;
        for (const role of HA_ROLES) this.set({ node: ha.node, role }, role === ha.role ? 1 : 0);
      },
    });
    const haScore = new Gauge({
      name: "uplinkd_ha_score",
      help: "health score uplinkd gives keepalived (added to the VRRP priority; -254: fault)",
      labelNames: ["node"],
      registers: [],
      async collect(this: Gauge): Promise<void> {
        const ha = (await current()).ha;
        this.reset();
        if (ha?.score !== undefined && ha.score !== null) this.set({ node: ha.node }, ha.score);
      },
    });
    this.#roleChanges = new Counter({
      name: "uplinkd_ha_role_changes_total",
      help: "VRRP role changes of this router, by old and new role",
      labelNames: ["node", "from", "to"],
      registers: [],
    });
    for (const metric of [haRole, haScore, this.#roleChanges]) {
      this.#haRegistry.registerMetric(metric);
    }
    new Gauge({
      name: "uplinkd_uplink_quota_used_bytes",
      help: "bytes the uplink used in its quota period now (config uplinks[].quota)",
      labelNames: uplink,
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        if (u.quota != null) g.set({ uplink: u.name }, u.quota.used_bytes);
      }),
    });
    new Gauge({
      name: "uplinkd_uplink_quota_limit_bytes",
      help: "bytes the uplink may use per quota period (config uplinks[].quota.limit)",
      labelNames: uplink,
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        if (u.quota != null) g.set({ uplink: u.name }, u.quota.limit_bytes);
      }),
    });
    new Gauge({
      name: "uplinkd_uplink_bandwidth_bits_per_second",
      help: "capacity used for least-used and spillover, by direction and source (config, or speedtest for bandwidth: auto)",
      labelNames: ["uplink", "direction", "source"],
      registers,
      collect: fromStatus<Gauge>((g, u) => {
        const b = u.bandwidth;
        if (b == null) return;
        if (b.down !== null) g.set({ uplink: u.name, direction: "down", source: b.source }, b.down);
        if (b.up !== null) g.set({ uplink: u.name, direction: "up", source: b.source }, b.up);
      }),
    });
    this.#speedtests = new Counter({
      name: "uplinkd_speedtests_total",
      help: "speed tests that ended with a result",
      labelNames: ["uplink"],
      registers,
    });
    this.#speedtestBytes = new Counter({
      name: "uplinkd_speedtest_bytes_total",
      help: "bytes speed tests moved, by direction (also counted in the uplink's quota)",
      labelNames: ["uplink", "direction"],
      registers,
    });
    this.#quotaAlerts = new Counter({
      name: "uplinkd_uplink_quota_alerts_total",
      help: "quota notifications, by step (a warn percentage, or exceeded)",
      labelNames: ["uplink", "step"],
      registers,
    });
    this.#failbacks = new Counter({
      name: "uplinkd_failbacks_total",
      help: "failbacks of a policy with failback: move (its connections on worse tiers cleared)",
      labelNames: ["policy", "family"],
      registers,
    });
    this.#failbackCleared = new Counter({
      name: "uplinkd_failback_cleared_connections_total",
      help: "conntrack entries a failback cleared, by policy and the worse-tier uplink they were on",
      labelNames: ["policy", "uplink", "family"],
      registers,
    });
    this.#rounds = new Counter({
      name: "uplinkd_probe_rounds_total",
      help: "decided probe rounds, by outcome (passed, failed, void)",
      labelNames: ["uplink", "outcome", "family"],
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
    // The key's order is the collect's: uplink, from, to, family.
    const key = JSON.stringify({
      uplink: transition.uplink,
      from: transition.from,
      to: transition.to,
      ...familyLabel(transition.family),
    });
    this.#transitionCounts.set(key, (this.#transitionCounts.get(key) ?? 0) + 1);
  }

  /** Count one role change of this router (config `ha`). */
  roleChange(change: HaRoleChange): void {
    this.#roleChanges.inc({ node: change.node, from: change.from, to: change.to });
  }

  /** Count one failback and the connections it cleared. */
  failback(event: FailbackEvent): void {
    const family = familyLabel(event.family);
    this.#failbacks.inc({ policy: event.policy, ...family });
    for (const [uplink, n] of Object.entries(event.cleared)) {
      this.#failbackCleared.inc({ policy: event.policy, uplink, ...family }, n);
    }
  }

  /** Count one speed test and the bytes it moved. */
  speedtest(result: SpeedtestResult): void {
    this.#speedtests.inc({ uplink: result.uplink });
    this.#speedtestBytes.inc({ uplink: result.uplink, direction: "down" }, result.bytes_down);
    this.#speedtestBytes.inc({ uplink: result.uplink, direction: "up" }, result.bytes_up);
  }

  /** Count one quota notification. */
  quotaAlert(alert: QuotaAlert): void {
    this.#quotaAlerts.inc({ uplink: alert.uplink, step: String(alert.step) });
  }

  /** Count one decided round (a `uplinkd:health:round` message); other shapes are ignored. */
  round(message: unknown): void {
    if (!isRoundMessage(message)) return;
    const { uplink, round } = message;
    const family = familyLabel(message.family);
    // The other outcomes and a target's losses read 0 until their first.
    for (const outcome of ROUND_OUTCOMES) this.#rounds.inc({ uplink, outcome, ...family }, 0);
    this.#rounds.inc({ uplink, outcome: round.outcome, ...family });
    for (const t of round.targets) {
      if (t.status === "gap") continue;
      this.#probesSent.inc({ uplink, target: t.target, ...family });
      this.#probesLost.inc({ uplink, target: t.target, ...family }, t.status === "failed" ? 1 : 0);
    }
  }

  /** Content-Type of {@link render}'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * The metrics as Prometheus text, the per-uplink series from the status
   * now (asked once for the whole scrape).
   * @throws what the `status` option throws.
   */
  async render(): Promise<string> {
    const scrape = this.#status();
    this.#scrape = scrape;
    try {
      const text = await this.registry.metrics();
      // Without `ha` no HA series, not even their HELP and TYPE lines.
      if ((await scrape).ha == null) return text;
      return `${text}\n${await this.#haRegistry.metrics()}`;
    } finally {
      if (this.#scrape === scrape) this.#scrape = undefined;
    }
  }

  /** The status for a `collect()`: the scrape's under way, else a fresh one. */
  #currentStatus(): Promise<StatusDocument> {
    return this.#scrape ?? this.#status();
  }
}

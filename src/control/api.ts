/**
 * Shapes of the control API's answers: the status document, events,
 * maintenance, reload, history and the event stream.
 *
 * | method | path | access | answer |
 * |---|---|---|---|
 * | GET | /status | read | StatusDocument |
 * | GET | /events?limit=N | read | {@link EventsDocument}, oldest first |
 * | GET | /events/stream | read | server-sent events: {@link StreamEvent} |
 * | GET | /history | read | {@link HistoryDocument} |
 * | GET | /inputs | read | {@link InputsDocument}: what `uplinkd plan` builds the desired state from |
 * | GET | /metrics | read | Prometheus text |
 * | POST | /reload | write | {@link ReloadResult}; 422 with FILE:LINE:COL lines when refused |
 * | POST | /uplinks/NAME/disable | write | {@link MaintenanceResult}; body `{"drain": true}` optional |
 * | POST | /uplinks/NAME/enable | write | {@link MaintenanceResult} |
 * | POST | /uplinks/NAME/quota | write | QuotaStatus; body `{"used_bytes": BYTES}` (0: reset) |
 * | POST | /uplinks/NAME/speedtest | write | SpeedtestResult once the test ends; 409 when refused (down, quota, another test running) |
 * | GET | / and /dashboard/* | none | the dashboard (holds no data) |
 *
 * Errors: `{ "error": message, "code": "UPLINKD_ERR_..." }` with 400 (bad
 * body), 401 (no or unknown token), 403 (read-only token), 404 (unknown
 * uplink or path), 413 (body above `MAX_BODY_BYTES`, 16 KiB), 422 (config
 * refused), 500 (anything else).
 */
import type { LastApply } from "../controller/controller.js";
import type { LoadSnapshot } from "../policy/load.js";
import type { PolicyChoice } from "../policy/select.js";
import type { Transition, UplinkState } from "../uplink-health.js";
import type { HaRoleChange, HaStatus } from "../ha/part.js";
import type { FailbackEvent } from "../controller/failback.js";
import type { TunnelStatus } from "../controller/tunnels.js";

export type { TunnelStatus } from "../controller/tunnels.js";
import type { ScheduleRuleStatus } from "../controller/schedule.js";
import type { QuotaAlert, QuotaStatus } from "../quota/meter.js";
import type { BandwidthStatus, SpeedtestResult } from "../speedtest/state.js";

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
  /**
   * Where `address` comes from: the config's `address`, or the interface's
   * primary address; null while there is none.
   */
  addressSource?: "configured" | "primary" | null;
  /** The configured `address` while the interface does not hold it (the uplink waits); else null. */
  waitingForAddress?: string | null;
  gateway: string | null;
  carrier: boolean;
  /** Loss over the probe window, % (0..100); null before the first probe. */
  loss: number | null;
  /** Loss over the last 3 rounds whose probes resolved, % (0..100): what the link does now; null when unknown. */
  recentLoss: number | null;
  /** Mean RTT over the window, ms. */
  rtt: number | null;
  /** RTT standard deviation over the window, ms. */
  jitter: number | null;
  reason: string;
  /** Conntrack entries with the uplink's mark; null if unknown. */
  connections: number | null;
  /** Bytes received on the uplink's interface since it was created; null if unknown. */
  rxBytes: number | null;
  /** Bytes transmitted on the uplink's interface; null if unknown. */
  txBytes: number | null;
  /**
   * Throughput now, bits per second, smoothed (EWMA, time constant 2 s):
   * `down` received on the interface, `up` sent; null until measured.
   */
  throughput: { down: number; up: number } | null;
  /**
   * The uplink's IPv6: null when it has none (`gateway6: none`, or neither
   * an IPv6 monitor nor an IPv6 address); else its IPv6 state, judged by the
   * IPv6 targets alone. The fields above stay the uplink's IPv4 ones.
   */
  ipv6: Ipv6Status | null;
  /**
   * The uplink's data quota (config `uplinks[].quota`) in the period now:
   * bytes used and allowed, the period's start and end (ISO times), and
   * whether the allowance is used up. Null without a quota.
   */
  quota?: QuotaStatus | null;
  /**
   * The capacity balancing uses (config `uplinks[].bandwidth`; `auto`
   * directions from the last speed test), bits per second, with the test's
   * time and the source; null without `bandwidth`.
   */
  bandwidth?: BandwidthStatus | null;
}

/** An uplink's IPv6 in `uplinkd status --json` (`uplinks[].ipv6`). */
export interface Ipv6Status {
  /**
   * IPv6 health state, as `state` is for IPv4; `unmonitored` when the uplink
   * has no IPv6 targets or probes: its IPv6 then follows its IPv4 health and
   * link (`active` says whether it takes new IPv6 connections).
   */
  state: UplinkState | "unmonitored";
  /** ISO time of the last IPv6 state change. */
  since: string;
  /** Takes new IPv6 connections now. */
  active: boolean;
  /** The uplink's global IPv6 address (probes leave from it); null while it has none. */
  address: string | null;
  /** The IPv6 gateway (configured `gateway6`, or the router from router advertisements); null if none. */
  gateway: string | null;
  /** The prefix the ISP routes to the router (`prefix6`, configured or delegated); null if none. */
  prefix: string | null;
  /** Loss of the IPv6 probes over the window, % (0..100); null before the first probe. */
  loss: number | null;
  /** Loss of the IPv6 probes over the last 3 resolved rounds, % (0..100); null when unknown. */
  recentLoss: number | null;
  /** Mean RTT of the IPv6 probes, ms. */
  rtt: number | null;
  /** RTT standard deviation of the IPv6 probes, ms. */
  jitter: number | null;
  /** Why IPv6 is in `state` (e.g. "no global IPv6 address", "no IPv6 targets: follows IPv4, which is up"). */
  reason: string;
}

/** One domain set (a `dst_domain` rule's, per family) in `uplinkd status --json`. */
export interface DomainSetStatus {
  /** nft set name, e.g. `dom_0_4`. */
  set: string;
  /** 4 (filled from A records) or 6 (AAAA). */
  family: 4 | 6;
  /** Index of the rule in `rules` (0-based). */
  rule: number;
  /** The rule's name; null when it has none. */
  ruleName: string | null;
  /** The rule's DNS names. */
  domains: readonly string[];
  /** Addresses dnsmasq has put in the set and not yet expired; null when it could not be read. */
  elements: number | null;
}

/** `GET /status`: the status document. */
export interface StatusDocument {
  version: string;
  pid: number;
  config: string;
  startedAt: string;
  uplinks: UplinkStatus[];
  /**
   * What each policy does in the state last applied to the kernel; a
   * `balance` choice lists its members with their effective weights (for
   * `least-used` and `spillover`, the load-based ones).
   */
  policies: Record<string, PolicyChoice>;
  /** The outcome of the last reconcile; null before the first. */
  lastApply: LastApply | null;
  /** The domain sets and their sizes at the last sample; empty without `dst_domain` rules. */
  domains: readonly DomainSetStatus[];
  /** This router's VRRP role and the peer's (config `ha`); null or absent without `ha`. */
  ha?: HaStatus | null;
  /**
   * Why new connections go over the last resort now (every uplink down by
   * its probes while links are up); null while some uplink is usable.
   */
  reason?: string | null;
  /** The router's tunnels (config `tunnels`) and the uplink each is on; absent from older daemons. */
  tunnels?: TunnelStatus[];
  /**
   * The rules with a `schedule`, each with whether it is in force now (the
   * kernel applies it to new connections) and its next window edge; empty
   * without schedule rules, absent from older daemons.
   */
  schedules?: readonly ScheduleRuleStatus[];
}

/** `GET /events`. */
export interface EventsDocument {
  /** Recent transitions, oldest first. */
  events: readonly Transition[];
  /** With `ha`: recent VRRP role changes of this router, oldest first; absent without. */
  roles?: readonly HaRoleChange[];
  /** Recent failbacks (`failback: move`), oldest first; absent when there were none. */
  failbacks?: readonly FailbackEvent[];
}

/** One uplink's health in one family in {@link InputsDocument}. */
export interface FamilyHealthInput {
  /** The state the daemon renders with: maintenance applied (`disabled`). */
  state: UplinkState;
  /** What the family's health checks found, maintenance ignored; absent without a monitor. */
  probed?: UplinkState;
}

/**
 * `GET /inputs`: what the daemon builds the desired kernel state from
 * besides the config and the links (see controller/desired.ts).
 */
export interface InputsDocument {
  /** Uplink name -> family (`"4"`, `"6"` when it has an IPv6 monitor) -> its health. */
  uplinks: Record<string, Partial<Record<"4" | "6", FamilyHealthInput>>>;
  /** The load snapshot of `least-used` and `spillover` policies; null before the first. */
  load: LoadSnapshot | null;
  /** Each uplink's last speed test (the capacity of `bandwidth: auto`); absent from older daemons. */
  speedtests?: Record<string, SpeedtestResult>;
}

/** `POST /reload`. */
export interface ReloadResult {
  ok: true;
  /** The config file that was read. */
  config: string;
  uplinks: string[];
  /** What changed, one `path: before -> after` line each; empty when nothing did. */
  changes: string[];
}

/** `POST /uplinks/NAME/disable` and `/enable`. */
export interface MaintenanceResult {
  uplink: string;
  state: UplinkState;
  /** The state changed (false when it was already disabled, or already enabled). */
  changed: boolean;
  /** Conntrack entries deleted by `drain`; 0 without. */
  drained: number;
}

/** Options of `POST /uplinks/NAME/disable`. */
export interface DisableOptions {
  /** Also delete the uplink's conntrack entries: its existing connections end. */
  drain: boolean;
  /** Why, for the event log (default "disabled by the operator"). */
  reason?: string | undefined;
}

/** One sample of the health history (for the dashboard's charts). */
export interface HistorySample {
  /** Epoch ms. */
  t: number;
  /** Per uplink: state, window RTT (ms), window loss and loss over the last 3 rounds (%). */
  uplinks: {
    name: string;
    state: UplinkState;
    rtt: number | null;
    loss: number | null;
    recentLoss: number | null;
  }[];
}

/** `GET /history`: one sample per `intervalMs`, oldest first. */
export interface HistoryDocument {
  intervalMs: number;
  samples: readonly HistorySample[];
}

/** What `GET /events/stream` sends: `event: status`, `transition`, `role`, `failback`, `quota`, `speedtest`. */
export type StreamEvent =
  | { type: "status"; data: StatusDocument }
  | { type: "transition"; data: Transition }
  | { type: "role"; data: HaRoleChange }
  | { type: "failback"; data: FailbackEvent }
  | { type: "quota"; data: QuotaAlert }
  | { type: "speedtest"; data: SpeedtestResult };

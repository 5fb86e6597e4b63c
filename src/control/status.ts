/**
 * Assembling the status document (`GET /status`, `uplinkd status`) from
 * the daemon's parts. Pure: reads only what it is given.
 */
import type { QuotaStatus } from "../quota/meter.js";
import type { BandwidthStatus } from "../speedtest/state.js";
import type { HaStatus } from "../ha/part.js";
import type { TunnelStatus } from "../controller/tunnels.js";
import type { LastApply } from "../controller/controller.js";
import { activeUplinks } from "../controller/controller.js";
import type { ScheduleRuleStatus } from "../controller/schedule.js";
import type { UplinkView } from "../dataplane/render.js";
import type { UplinkLink } from "../links/observe.js";
import type { PolicyChoice } from "../policy/select.js";
import type { Throughput } from "../policy/load.js";
import { ipv6Of } from "../health/family.js";
import type { HealthSnapshot, UplinkState } from "../uplink-health.js";
import type { DomainSetStatus, Ipv6Status, StatusDocument } from "./api.js";
import type { TrafficSampler } from "./traffic.js";

/** The version the status document reports. */
export const STATUS_VERSION = "0.1.0";

/** What the status document is made of. */
export interface StatusParts {
  configPath: string;
  /** Epoch ms the daemon started. */
  startedAt: number;
  /** Every uplink as the renderer sees it now. */
  views: readonly UplinkView[];
  /** Uplink name -> its interface now. */
  links: ReadonlyMap<string, UplinkLink>;
  /** An uplink's IPv4 health (maintenance applied); undefined without a monitor. */
  health: (uplink: string) => HealthSnapshot | undefined;
  /** An uplink's IPv6 health (maintenance applied); undefined without an IPv6 monitor. */
  health6?: (uplink: string) => HealthSnapshot | undefined;
  /**
   * What each policy does with new IPv6 connections in the state last
   * applied to the kernel: an uplink is active for IPv6 while some policy
   * gives it new IPv6 connections. Without it: the uplink takes new IPv4
   * connections, has a global IPv6 address, and its IPv6 state is `up`,
   * `init` or `degraded`.
   */
  choices6?: Record<string, PolicyChoice>;
  /** What each policy does in the state last applied to the kernel. */
  choices: Record<string, PolicyChoice>;
  lastApply: LastApply | null;
  /** The last traffic sample. */
  traffic: Pick<TrafficSampler, "connections" | "bytes">;
  /** Smoothed throughput of an interface, bits per second; undefined before it is known. */
  throughput: (iface: string) => Throughput | undefined;
  /** The domain sets' sizes at the last sample (none when absent). */
  domains?: readonly DomainSetStatus[];
  /** This router's VRRP role (config `ha`); null without it. */
  ha?: HaStatus | null;
  /** An uplink's quota now; absent: no quotas. */
  quota?: (uplink: string) => QuotaStatus | null;
  /** An uplink's capacity (`bandwidth`, measured for `auto`); absent: none shown. */
  bandwidth?: (uplink: string) => BandwidthStatus | null;
  /** Why new connections go over the last resort; null or absent when they do not. */
  reason?: string | null;
  /** The tunnels and their uplinks; absent: none. */
  tunnels?: TunnelStatus[];
  /** The rules with a schedule and whether each is in force now; absent: none shown. */
  schedules?: readonly ScheduleRuleStatus[];
}

/** The status document of `parts`. */
export function buildStatus(parts: StatusParts): StatusDocument {
  const active = activeUplinks(parts.choices);
  const active6 = parts.choices6 === undefined ? undefined : activeUplinks(parts.choices6);
  return {
    version: STATUS_VERSION,
    pid: process.pid,
    config: parts.configPath,
    startedAt: new Date(parts.startedAt).toISOString(),
    uplinks: parts.views.map((view) => {
      const snap = parts.health(view.name);
      const ipv6 = ipv6Status(parts, view.name, active.has(view.name), active6);
      const bytes = parts.traffic.bytes(view.interface);
      return {
        name: view.name,
        interface: view.interface,
        state: snap?.state ?? "init",
        since: new Date(snap?.since ?? parts.startedAt).toISOString(),
        active: active.has(view.name),
        weight: view.weight,
        tier: view.tier,
        id: view.id,
        mark: `0x${view.mark.toString(16)}`,
        table: view.table,
        address: view.address ?? null,
        addressSource: parts.links.get(view.name)?.addressSource ?? null,
        waitingForAddress: parts.links.get(view.name)?.missingAddress ?? null,
        gateway: view.gateway ?? null,
        carrier: parts.links.get(view.name)?.carrier ?? false,
        loss: snap?.loss ?? null,
        recentLoss: snap?.recentLoss ?? null,
        rtt: snap?.rtt ?? null,
        jitter: snap?.jitter ?? null,
        reason: snap?.reason ?? "",
        connections: parts.traffic.connections(view.mark & view.mask),
        rxBytes: bytes?.rx ?? null,
        txBytes: bytes?.tx ?? null,
        throughput: parts.throughput(view.interface) ?? null,
        ipv6,
        quota: parts.quota?.(view.name) ?? null,
        bandwidth: parts.bandwidth?.(view.name) ?? null,
      };
    }),
    policies: parts.choices,
    lastApply: parts.lastApply,
    domains: parts.domains ?? [],
    ha: parts.ha ?? null,
    reason: parts.reason ?? null,
    tunnels: parts.tunnels ?? [],
    schedules: parts.schedules ?? [],
  };
}

/** States in which an uplink may take new connections (`usabilityOf` is not `bad`). */
const USABLE: readonly UplinkState[] = ["up", "init", "degraded"];

/**
 * The `ipv6` member of an uplink's status: null when the uplink has neither
 * an IPv6 monitor nor an observed IPv6 address, gateway or prefix (no IPv6,
 * e.g. `gateway6: none`); else its IPv6 state (`unmonitored` when it has no
 * IPv6 targets or probes: its IPv6 then follows its IPv4 health and link),
 * the link's IPv6 address, gateway and prefix, and the IPv6 probes' loss,
 * RTT and jitter (null when unmonitored).
 */
function ipv6Status(
  parts: StatusParts,
  uplink: string,
  active4: boolean,
  active6: ReadonlySet<string> | undefined,
): Ipv6Status | null {
  const snap = parts.health6?.(uplink);
  const observed = ipv6Of(parts.links.get(uplink));
  if (snap === undefined && observed === undefined) return null;
  const address = observed?.address ?? null;
  if (snap === undefined) {
    const v4 = parts.health(uplink);
    return {
      state: "unmonitored",
      since: new Date(v4?.since ?? parts.startedAt).toISOString(),
      active: active6 === undefined ? active4 && address !== null : active6.has(uplink),
      address,
      gateway: observed?.gateway ?? null,
      prefix: observed?.prefix ?? null,
      loss: null,
      recentLoss: null,
      rtt: null,
      jitter: null,
      reason: `no IPv6 targets: follows IPv4, which is ${v4?.state ?? "init"}`,
    };
  }
  const state = snap.state;
  const active =
    active6 === undefined
      ? active4 && address !== null && USABLE.includes(state)
      : active6.has(uplink);
  return {
    state,
    since: new Date(snap.since).toISOString(),
    active,
    address,
    gateway: observed?.gateway ?? null,
    prefix: observed?.prefix ?? null,
    loss: snap.loss,
    recentLoss: snap.recentLoss ?? null,
    rtt: snap.rtt,
    jitter: snap.jitter,
    reason: snap.reason,
  };
}

/**
 * Assembling the status document (`GET /status`, `uplinkd status`) from
 * the daemon's parts. Pure: reads only what it is given.
 */
import type { HaStatus } from "../ha/part.js";
import type { LastApply } from "../controller/controller.js";
import { activeUplinks } from "../controller/controller.js";
import type { UplinkView } from "../dataplane/render.js";
import type { UplinkLink } from "../links/observe.js";
import type { PolicyChoice } from "../policy/select.js";
import type { Throughput } from "../policy/load.js";
import type { HealthSnapshot } from "../uplink-health.js";
import type { DomainSetStatus, StatusDocument } from "./api.js";
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
  /** An uplink's health (maintenance applied); undefined without a monitor. */
  health: (uplink: string) => HealthSnapshot | undefined;
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
}

/** The status document of `parts`. */
export function buildStatus(parts: StatusParts): StatusDocument {
  const active = activeUplinks(parts.choices);
  return {
    version: STATUS_VERSION,
    pid: process.pid,
    config: parts.configPath,
    startedAt: new Date(parts.startedAt).toISOString(),
    uplinks: parts.views.map((view) => {
      const snap = parts.health(view.name);
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
        rtt: snap?.rtt ?? null,
        jitter: snap?.jitter ?? null,
        reason: snap?.reason ?? "",
        connections: parts.traffic.connections(view.mark & view.mask),
        rxBytes: bytes?.rx ?? null,
        txBytes: bytes?.tx ?? null,
        throughput: parts.throughput(view.interface) ?? null,
      };
    }),
    policies: parts.choices,
    lastApply: parts.lastApply,
    domains: parts.domains ?? [],
    ha: parts.ha ?? null,
  };
}

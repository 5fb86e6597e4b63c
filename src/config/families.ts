/**
 * Health settings per address family, as the config states them: an
 * uplink's IPv4 is judged by its IPv4 targets and probes, its IPv6 by its
 * IPv6 ones. Pure helpers used by config checks, the dataplane and health.
 */
import { isIPv6 } from "node:net";
import type { HealthConfig, UplinkConfig } from "./schema.js";

/** An address family: 4 (IPv4) or 6 (IPv6). */
type Family = 4 | 6;

/**
 * The family of a DNS server as configured (`ADDRESS`, `[IPv6]:PORT` or
 * `IPv4:PORT`): 6 for an IPv6 address or a bracketed one, else 4.
 */
export function dnsServerFamily(server: string): Family {
  return server.startsWith("[") || isIPv6(server) ? 6 : 4;
}

/** The ICMP targets of `family` among `health.targets` (IPv4 or IPv6 addresses), in config order. */
export function targetsOf(health: Pick<HealthConfig, "targets">, family: Family): string[] {
  return health.targets.filter((target) => (isIPv6(target) ? 6 : 4) === family);
}

/** The family of a configured TCP/HTTP/DNS probe (`health.probes[]`). */
function configuredProbeFamily(probe: HealthConfig["probes"][number]): Family {
  if (probe.type === "tcp") return isIPv6(probe.host) ? 6 : 4;
  if (probe.type === "http") return /^https?:\/\/\[/i.test(probe.url) ? 6 : 4;
  return dnsServerFamily(probe.server);
}

/**
 * An uplink's merged health settings restricted to one family: its targets
 * and TCP/HTTP/DNS probes of that family; `reliability` at most the number
 * of them (at least 1). Everything else is shared by both families.
 */
export function healthOf(health: HealthConfig, family: Family): HealthConfig {
  const targets = targetsOf(health, family);
  const probes = health.probes.filter((p) => configuredProbeFamily(p) === family);
  return {
    ...health,
    targets,
    probes,
    reliability: Math.max(1, Math.min(health.reliability, targets.length + probes.length)),
  };
}

/** Whether `health` has anything to probe for `family` (targets or probes). */
export function probesFamily(health: HealthConfig, family: Family): boolean {
  const own = healthOf(health, family);
  return own.targets.length + own.probes.length > 0;
}

/**
 * Whether the uplink has an IPv6 monitor: it has IPv6 targets or probes and
 * its `gateway6` is not `none`.
 */
export function hasIpv6Health(uplink: UplinkConfig, health: HealthConfig): boolean {
  return uplink.gateway6 !== "none" && probesFamily(health, 6);
}

/**
 * Health per address family: an uplink's IPv4 is judged by its IPv4 targets
 * and probes, its IPv6 by its IPv6 ones. Pure helpers that split an
 * uplink's merged `health` settings by family and say whether an uplink has
 * an IPv6 monitor at all.
 */
import { isIPv6 } from "node:net";
import type { HealthConfig, UplinkConfig } from "../config/schema.js";
import type { Family } from "../kernel/types.js";
import type { UplinkLink } from "../links/observe.js";
import { dnsServerFamily } from "./dns.js";
import type { ProbeSpec } from "./prober.js";

/** `IPv4` or `IPv6`, as messages, notifications and the table say it. */
export function familyName(family: Family): "IPv4" | "IPv6" {
  return family === 6 ? "IPv6" : "IPv4";
}

/** The ICMP targets of `family` among `health.targets` (IPv4 or IPv6 addresses), in config order. */
export function targetsOf(health: Pick<HealthConfig, "targets">, family: Family): string[] {
  return health.targets.filter((target) => (isIPv6(target) ? 6 : 4) === family);
}

/**
 * The family of a probe's target: an ICMP/TCP host or DNS server that is an
 * IPv6 address, or an HTTP URL whose host is an IPv6 literal
 * (`http://[2001:db8::1]/`), is 6; anything else (IPv4, a host name) is 4.
 */
export function probeFamily(spec: ProbeSpec): Family {
  switch (spec.type) {
    case "icmp":
    case "tcp":
      return isIPv6(spec.host) ? 6 : 4;
    case "http":
      return /^https?:\/\/\[/i.test(spec.url) ? 6 : 4;
    case "dns":
      return dnsServerFamily(spec.server);
  }
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

/**
 * What the links part observes of the uplink's IPv6 now
 * (`UplinkLink.ipv6`: its global address, not link-local, not tentative or
 * deprecated; its gateway; its prefix), or undefined while it has none.
 */
export function ipv6Of(link: UplinkLink | undefined): UplinkLink["ipv6"] {
  return link?.ipv6;
}

/** The address a family's probes use: the uplink's IPv4 address, or its global IPv6 address. */
export function sourceAddressOf(link: UplinkLink | undefined, family: Family): string | undefined {
  return family === 4 ? link?.address : ipv6Of(link)?.address;
}

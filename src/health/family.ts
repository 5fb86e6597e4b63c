/**
 * Health per address family: an uplink's IPv4 is judged by its IPv4 targets
 * and probes, its IPv6 by its IPv6 ones. Pure helpers that split an
 * uplink's merged `health` settings by family and say whether an uplink has
 * an IPv6 monitor at all.
 */
import { isIPv6 } from "node:net";
export { hasIpv6Health, healthOf, probesFamily, targetsOf } from "../config/families.js";
import type { Family } from "../kernel/types.js";
import type { UplinkLink } from "../links/observe.js";
import { dnsServerFamily } from "../config/families.js";
import type { ProbeSpec } from "./prober.js";

/** `IPv4` or `IPv6`, as messages, notifications and the table say it. */
export function familyName(family: Family): "IPv4" | "IPv6" {
  return family === 6 ? "IPv6" : "IPv4";
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

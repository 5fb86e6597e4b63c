/**
 * Warnings about a valid config: values the daemon accepts that are very
 * likely wrong on a real router. `uplinkd check` prints them and still
 * exits 0.
 *
 * Two kinds. An uplink that may get IPv6 (`gateway6` not `none`) but has
 * no IPv6 target or probe: its IPv6 is not monitored and follows its IPv4
 * health (warned even with `private_targets: true`). And a health target (ICMP target, TCP/DNS probe host, HTTP
 * probe URL with an address) that cannot tell whether an uplink reaches the
 * internet, because it is a documentation address (answers only in a lab),
 * a private, shared or unique-local address (on this side of the ISP or
 * inside it), loopback, link-local or a benchmarking address. A config
 * with `private_targets: true` (the lab writes it) gets none of these: lab targets are
 * documentation addresses on purpose.
 */
import { inPrefix } from "../net/ipv6.js";
import { hasIpv6Health } from "./families.js";
import { uplinkHealth, type Config } from "./schema.js";
import type { ConfigPath } from "./source.js";

/** One warning: the value to blame and what is likely wrong with it. */
export interface ConfigWarning {
  /** Path of the value, e.g. `["health", "targets", 0]`. */
  path: ConfigPath;
  message: string;
}

/** Targets `uplinkd init` writes and warnings suggest: public anycast DNS resolvers. */
export const PUBLIC_TARGETS: readonly string[] = ["1.1.1.1", "9.9.9.9", "8.8.8.8"];

/** What an address that cannot be a health target on a real uplink is. */
export type AddressKind =
  | "documentation"
  | "private"
  | "shared"
  | "unique-local"
  | "loopback"
  | "link-local"
  | "benchmarking";

/** Address ranges no health target should be in on a real uplink, with what each is. */
const LAB_ONLY_RANGES: readonly (readonly [prefix: string, kind: AddressKind, what: string])[] = [
  [
    "192.0.2.0/24",
    "documentation",
    "a documentation address (TEST-NET-1, RFC 5737) that answers only in a lab",
  ],
  [
    "198.51.100.0/24",
    "documentation",
    "a documentation address (TEST-NET-2, RFC 5737) that answers only in a lab",
  ],
  [
    "203.0.113.0/24",
    "documentation",
    "a documentation address (TEST-NET-3, RFC 5737) that answers only in a lab",
  ],
  [
    "2001:db8::/32",
    "documentation",
    "a documentation address (RFC 3849) that answers only in a lab",
  ],
  ["3fff::/20", "documentation", "a documentation address (RFC 9637) that answers only in a lab"],
  ["10.0.0.0/8", "private", "a private address (RFC 1918), on this side of the ISP or inside it"],
  [
    "172.16.0.0/12",
    "private",
    "a private address (RFC 1918), on this side of the ISP or inside it",
  ],
  [
    "192.168.0.0/16",
    "private",
    "a private address (RFC 1918), on this side of the ISP or inside it",
  ],
  ["100.64.0.0/10", "shared", "a shared address (RFC 6598), inside an ISP's network at most"],
  [
    "fc00::/7",
    "unique-local",
    "a unique local address (RFC 4193), on this side of the ISP or inside it",
  ],
  ["127.0.0.0/8", "loopback", "a loopback address, answered by this router itself"],
  ["::1/128", "loopback", "the loopback address, answered by this router itself"],
  ["169.254.0.0/16", "link-local", "a link-local address, never beyond the first hop"],
  ["fe80::/10", "link-local", "a link-local address, never beyond the first hop"],
  ["198.18.0.0/15", "benchmarking", "a benchmarking address (RFC 2544) that answers only in a lab"],
];

function rangeOf(address: string) {
  const found = LAB_ONLY_RANGES.find(([prefix]) => inPrefix(address, prefix));
  return found === undefined ? undefined : { kind: found[1], what: found[2] };
}

/**
 * What is wrong with `address` as a health target on a real uplink
 * ("a documentation address (TEST-NET-2, RFC 5737) that answers only in a
 * lab"), or undefined for an address that may be beyond the ISP. Ranges
 * from the IANA special-purpose address registries (RFC 6890).
 */
export function labOnlyAddress(address: string): string | undefined {
  return rangeOf(address)?.what;
}

/** The kind of special-purpose range `address` is in (see `labOnlyAddress`), if any. */
export function addressKind(address: string): AddressKind | undefined {
  return rangeOf(address)?.kind;
}

/** The address in an HTTP probe URL (`http://192.0.2.1/x`, `https://[2001:db8::1]/`), if it has one. */
function urlAddress(url: string): string | undefined {
  try {
    const host = new URL(url).hostname.replace(/^\[(.*)\]$/, "$1");
    return /^[\d.]+$/.test(host) || host.includes(":") ? host : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Every warning about `config`, in config order; empty for a config with
 * `private_targets: true`. Targets inherited from the top-level `health` are blamed
 * there, once, naming every uplink that probes them.
 */
export function configWarnings(config: Config): ConfigWarning[] {
  const unmonitored = unmonitoredIpv6Warnings(config);
  if (config.private_targets === true) return unmonitored;
  const found = new Map<string, { path: ConfigPath; address: string; uplinks: string[] }>();
  const note = (path: ConfigPath, address: string | undefined, uplink: string): void => {
    if (address === undefined) return;
    const key = path.join(".");
    const entry = found.get(key) ?? { path, address, uplinks: [] };
    entry.uplinks.push(uplink);
    found.set(key, entry);
  };
  config.uplinks.forEach((uplink, i) => {
    const health = uplinkHealth(config, uplink);
    const base: ConfigPath =
      uplink.health?.targets === undefined ? ["health"] : ["uplinks", i, "health"];
    health.targets.forEach((target, j) => {
      note([...base, "targets", j], target, uplink.name);
    });
    const probesBase: ConfigPath =
      uplink.health?.probes === undefined ? ["health"] : ["uplinks", i, "health"];
    health.probes.forEach((probe, j) => {
      const path: ConfigPath = [...probesBase, "probes", j];
      if (probe.type === "tcp") note([...path, "host"], probe.host, uplink.name);
      else if (probe.type === "dns") note([...path, "server"], probe.server, uplink.name);
      else note([...path, "url"], urlAddress(probe.url), uplink.name);
    });
  });
  const warnings: ConfigWarning[] = [...unmonitored];
  for (const { path, address, uplinks } of found.values()) {
    const what = labOnlyAddress(address);
    if (what === undefined) continue;
    const who =
      uplinks.length === 1 ? `uplink ${uplinks[0] ?? ""}` : `uplinks ${uplinks.join(", ")}`;
    warnings.push({
      path,
      message:
        `${address} is ${what}: probed through ${who}, it cannot tell whether the internet ` +
        `answers. Probe hosts beyond every ISP (public resolvers such as ${PUBLIC_TARGETS.join(", ")}), ` +
        `or set "private_targets: true" if these targets are meant (a test network)`,
    });
  }
  return warnings;
}

/** Public IPv6 anycast resolvers, the IPv6 counterparts of {@link PUBLIC_TARGETS}. */
export const PUBLIC_TARGETS6: readonly string[] = [
  "2606:4700:4700::1111",
  "2620:fe::fe",
  "2001:4860:4860::8888",
];

/**
 * One warning per `targets` list that leaves uplinks' IPv6 unmonitored:
 * uplinks with `gateway6` other than `none` whose health has no IPv6
 * target or TCP/HTTP/DNS probe. Blamed on the `health.targets` they use
 * (top-level once, or the uplink's own).
 */
function unmonitoredIpv6Warnings(config: Config): ConfigWarning[] {
  const found = new Map<string, { path: ConfigPath; uplinks: string[] }>();
  config.uplinks.forEach((uplink, i) => {
    if (uplink.gateway6 === "none") return;
    if (hasIpv6Health(uplink, uplinkHealth(config, uplink))) return;
    const path: ConfigPath =
      uplink.health?.targets === undefined
        ? ["health", "targets"]
        : ["uplinks", i, "health", "targets"];
    const key = path.join(".");
    const entry = found.get(key) ?? { path, uplinks: [] };
    entry.uplinks.push(uplink.name);
    found.set(key, entry);
  });
  return [...found.values()].map(({ path, uplinks }) => ({
    path,
    message:
      `no IPv6 target: the IPv6 of ${uplinks.length === 1 ? "uplink" : "uplinks"} ${uplinks.join(", ")} ` +
      `is not monitored and follows IPv4 (an outage only IPv6 sees goes unnoticed). ` +
      `Add IPv6 targets (e.g. ${PUBLIC_TARGETS6.slice(0, 2).join(", ")}), ` +
      `or set "gateway6: none" on uplinks that must not carry IPv6`,
  }));
}

/**
 * A config against the kernel: what the config says that this router's
 * interfaces cannot serve. An uplink whose interface does not exist, whose
 * configured gateway is not on-link (the kernel refuses a route through it:
 * "Nexthop has invalid gateway"), or whose configured `address` the
 * interface does not hold, cannot carry traffic: the daemon marks it
 * failed with the reason and serves the others; `check` and `plan` print
 * each problem at its config line with what to do. Pure: fed with
 * `ip -j addr show` already parsed.
 */
import { BlockList } from "node:net";
import type { Config, UplinkConfig } from "../config/schema.js";
import type { ConfigPath } from "../config/source.js";
import type { LinkState } from "../kernel/types.js";

/** One thing the kernel cannot serve as configured: the config value to blame and why. */
export interface KernelProblem {
  /** Path of the value, e.g. `["uplinks", 0, "gateway"]`. */
  path: ConfigPath;
  /** The uplink concerned; undefined for a `lan` interface. */
  uplink?: string;
  /** What is wrong and what to do, e.g. `gateway 100.80.9.1 is not on-link for wan1 (100.80.2.0/24): ...`. */
  message: string;
}

function networkOf(address: string, prefixlen: number): string {
  const value = address.split(".").reduce((acc, octet) => (acc << 8) + Number(octet), 0) >>> 0;
  const mask = prefixlen === 0 ? 0 : (~0 << (32 - prefixlen)) >>> 0;
  const net = (value & mask) >>> 0;
  return `${[24, 16, 8, 0].map((s) => (net >>> s) & 255).join(".")}/${prefixlen}`;
}

/** The interface names to suggest: every interface but loopback. */
function known(links: readonly LinkState[]): string {
  const names = links.map((l) => l.name).filter((n) => n !== "lo");
  return names.length === 0 ? "none" : names.join(", ");
}

/**
 * Why uplink `index` cannot be served by `link` (its interface, undefined
 * when missing), or undefined when it can. Only mistakes the kernel would
 * refuse or that never heal by themselves count: an interface without any
 * IPv4 address yet (DHCP, PPP still running) waits instead.
 *
 * - interface missing: `uplinks.N.interface`;
 * - configured `address` not held by the interface: `uplinks.N.address`;
 * - configured IPv4 `gateway` outside every IPv4 subnet of a
 *   non-point-to-point interface: `uplinks.N.gateway`.
 */
export function uplinkProblem(
  uplink: UplinkConfig,
  index: number,
  link: LinkState | undefined,
  links: readonly LinkState[],
): KernelProblem | undefined {
  const at = (key: string): ConfigPath => ["uplinks", index, key];
  if (link === undefined) {
    return {
      path: at("interface"),
      uplink: uplink.name,
      message: `no interface ${uplink.interface} on this router (interfaces: ${known(links)}); fix the name, or bring the interface up first`,
    };
  }
  const subnets = link.addresses.map((a) => networkOf(a.address, a.prefixlen));
  const held = link.addresses.map((a) => `${a.address}/${a.prefixlen}`);
  if (uplink.address !== undefined && !link.addresses.some((a) => a.address === uplink.address)) {
    return {
      path: at("address"),
      uplink: uplink.name,
      message: `address ${uplink.address} is not on ${uplink.interface} (it has ${held.length === 0 ? "no IPv4 address" : held.join(", ")}); add it (ip addr add ${uplink.address}/PREFIX dev ${uplink.interface}) or fix the address`,
    };
  }
  const gateway = uplink.gateway;
  if (gateway !== "auto" && gateway !== "none" && !link.pointToPoint && subnets.length > 0) {
    const onLink = new BlockList();
    for (const a of link.addresses) onLink.addSubnet(a.address, a.prefixlen, "ipv4");
    if (!onLink.check(gateway, "ipv4")) {
      return {
        path: at("gateway"),
        uplink: uplink.name,
        message: `gateway ${gateway} is not on-link for ${uplink.interface} (its subnets: ${subnets.join(", ")}): the kernel refuses a route through it; use the ISP's router inside ${subnets.length === 1 ? (subnets[0] ?? "") : "one of them"}, or "auto" to learn it from DHCP`,
      };
    }
  }
  return undefined;
}

/**
 * Every problem of `config` on this router's interfaces (`links`): one per
 * uplink at most (see {@link uplinkProblem}), and one per `lan` interface
 * that does not exist; in config order.
 */
export function kernelProblems(config: Config, links: readonly LinkState[]): KernelProblem[] {
  const byName = new Map(links.map((l) => [l.name, l]));
  const problems: KernelProblem[] = [];
  config.lan.forEach((name, i) => {
    if (byName.has(name)) return;
    problems.push({
      path: ["lan", i],
      message: `no interface ${name} on this router (interfaces: ${known(links)}); fix the name: connections from it are not balanced`,
    });
  });
  config.uplinks.forEach((uplink, i) => {
    const problem = uplinkProblem(uplink, i, byName.get(uplink.interface), links);
    if (problem !== undefined) problems.push(problem);
  });
  return problems;
}

/** `uplinks.0.gateway: gateway 100.80.9.1 is not on-link ...`: a problem as one reason line. */
export function problemReason(problem: KernelProblem): string {
  return `${problem.path.join(".")}: ${problem.message}`;
}

/** An uplink's problem appeared, changed or cleared (see {@link ProblemTracker.update}). */
export interface ProblemChange {
  uplink: string;
  /** The problem now; undefined once it is fixed. */
  problem: string | undefined;
  /** The problem before; undefined when there was none. */
  previous: string | undefined;
}

/**
 * The uplinks failed for a problem (UplinkLink.problem) and since when:
 * the daemon shows them `down` with the problem as the reason, whatever
 * their probes say, until the problem is gone.
 */
export class ProblemTracker {
  readonly #current = new Map<string, { reason: string; since: number }>();

  /**
   * Adopt the problems of `links` (uplink name -> link now) at `now`
   * (epoch ms); uplinks not in `links` are forgotten silently (removed by
   * a reload).
   * @returns the uplinks whose problem appeared, changed or cleared.
   */
  update(links: ReadonlyMap<string, { problem?: string }>, now: number): ProblemChange[] {
    const changes: ProblemChange[] = [];
    for (const name of [...this.#current.keys()]) {
      if (!links.has(name)) this.#current.delete(name);
    }
    for (const [uplink, link] of links) {
      const previous = this.#current.get(uplink)?.reason;
      const problem = link.problem;
      if (previous === problem) continue;
      if (problem === undefined) this.#current.delete(uplink);
      else this.#current.set(uplink, { reason: problem, since: now });
      changes.push({ uplink, problem, previous });
    }
    return changes;
  }

  /** The uplink's problem and since when (epoch ms); undefined when it has none. */
  get(uplink: string): { reason: string; since: number } | undefined {
    return this.#current.get(uplink);
  }
}

/**
 * The real kernel: iproute2 (`ip -j`, `ip -batch`), `nft -f` and `conntrack`,
 * run in the network namespace of the current process. Reads (`ip -j ...
 * show`, `nft -j list ...`) go to long-lived `ip -batch -` and `nft -i`
 * processes (see ./session.ts), so the periodic ones (the verify, the
 * passive signal's counters) start no process; writes (`ip -batch`, `nft
 * -f`) and conntrack deletions start one each, as they are rare.
 */
import { KernelCommandError, KernelCommandTimeoutError, KernelOutputError } from "../errors.js";
import { systemClock } from "../clock.js";
import { nodeSpawner } from "../process/spawn.js";
import { ConntrackWatch } from "./conntrack.js";
import { runCommand } from "../process/run.js";
import { canonicalAddress6 } from "../net/ipv6.js";
import { LineSession } from "./session.js";
import {
  IPV6_LINE,
  TABLE_MAIN,
  type ConntrackCounts,
  type Family,
  type InterfaceAddress6,
  type ConntrackFilter,
  type Kernel,
  type Neighbour,
  type LinkState,
  type NftJson,
  type Route,
  type RouteType,
  type Rule,
} from "./types.js";

/** The commands whose output the parsers below read. */
export const READ_ROUTES = ["-N", "-4", "-j", "route", "show", "table", "all"] as const;
/** iproute2's end of a failed command in batch mode. */
const IP_FAILED = /Command failed -:\d+/;
export const READ_RULES = ["-N", "-4", "-j", "rule", "show"] as const;
export const READ_ROUTES6 = ["-N", "-6", "-j", "route", "show", "table", "all"] as const;
export const READ_RULES6 = ["-N", "-6", "-j", "rule", "show"] as const;

/**
 * Route types by rtnetlink number (RTN_* in linux/rtnetlink.h), named as
 * iproute2 names them without `-N`. Rule actions FR_ACT_BLACKHOLE (6),
 * FR_ACT_UNREACHABLE (7) and FR_ACT_PROHIBIT (8) share these numbers, and
 * `ip -N rule` prints them as `"action": "7"`.
 */
const ROUTE_TYPES: readonly (RouteType | undefined)[] = [
  undefined,
  "unicast",
  "local",
  "broadcast",
  "anycast",
  "multicast",
  "blackhole",
  "unreachable",
  "prohibit",
  "throw",
  "nat",
  "xresolve",
];

/** RTPROT_BOOT: the protocol iproute2 leaves out of a route it prints. */
const RTPROT_BOOT = 3;

/**
 * A non-negative integer from iproute2's numeric JSON (`"101"` or `101`).
 *
 * @throws {KernelOutputError} naming `command`, the field and the value
 *   otherwise (e.g. a name: the command was run without `-N`).
 */
function numeric(value: unknown, field: string, command: string): number {
  if (typeof value === "number" && Number.isInteger(value) && value >= 0) return value;
  if (typeof value === "string" && /^\d+$/.test(value)) return Number(value);
  throw new KernelOutputError(
    command,
    `${JSON.stringify(value)} as ${field}; expected a number (ip -N)`,
  );
}

/**
 * Table number from `ip -N -j` (`"101"`; absent: main, which iproute2 leaves out).
 *
 * @throws {KernelOutputError} for anything but a number.
 */
export function parseTable(value: unknown, command = "ip -N -j"): number {
  return value === undefined ? TABLE_MAIN : numeric(value, "table", command);
}

/**
 * Route or rule protocol number from `ip -N -j` (`"73"`).
 *
 * @param absent what a missing field means: iproute2 leaves out a route's
 *   protocol when it is RTPROT_BOOT (3), a rule's when it is 0 or
 *   RTPROT_KERNEL (2) (iproute.c, iprule.c).
 * @throws {KernelOutputError} for anything but a number.
 */
export function parseProtocol(value: unknown, absent: number, command = "ip -N -j"): number {
  return value === undefined ? absent : numeric(value, "protocol", command);
}

/**
 * Route type from `ip -N -j route` (`"7"`; absent: unicast).
 *
 * @throws {KernelOutputError} for anything but a known RTN_* number.
 */
export function parseRouteType(value: unknown, command = "ip -N -j route"): RouteType {
  if (value === undefined) return "unicast";
  const type = ROUTE_TYPES[numeric(value, "route type", command)];
  if (type === undefined) {
    throw new KernelOutputError(command, `${JSON.stringify(value)} as route type`);
  }
  return type;
}

function asRecords(json: string): Record<string, unknown>[] {
  const parsed: unknown = JSON.parse(json || "[]");
  return Array.isArray(parsed) ? (parsed as Record<string, unknown>[]) : [];
}

/**
 * The IPv6 addresses of one `ip -j addr show` link (`addr_info` entries of
 * family inet6; iproute2 prints each IFA_F_* flag as a `true` field:
 * `tentative`, `deprecated`, `dadfailed`, `temporary`, `dynamic`).
 */
function parseAddresses6(info: readonly Record<string, unknown>[]): InterfaceAddress6[] {
  return info
    .filter((a) => a.family === "inet6" && typeof a.local === "string")
    .map((a) => ({
      address: canonicalAddress6(String(a.local)),
      prefixlen: Number(a.prefixlen),
      scope: typeof a.scope === "string" ? a.scope : "global",
      tentative: a.tentative === true,
      deprecated: a.deprecated === true,
      dadfailed: a.dadfailed === true,
      temporary: a.temporary === true,
      dynamic: a.dynamic === true,
    }));
}

/**
 * Parses `ip -j neigh show` (both families: `dst`, `dev`, `lladdr` when
 * the neighbour's link-layer address is known, `state` a list such as
 * `["REACHABLE"]`). Entries without an address (FAILED, INCOMPLETE) are
 * kept with no `lladdr`.
 */
export function parseNeighbours(json: string): Neighbour[] {
  return asRecords(json).flatMap((n) => {
    if (typeof n.dst !== "string" || typeof n.dev !== "string") return [];
    return [
      {
        address: n.dst,
        family: n.dst.includes(":") ? (6 as const) : (4 as const),
        dev: n.dev,
        ...(typeof n.lladdr === "string" ? { lladdr: n.lladdr.toLowerCase() } : {}),
      },
    ];
  });
}

/**
 * The arguments of `conntrack -D` for `filter`: `-f ipv4|ipv6`, `-s`/`-d`
 * with a prefix (conntrack-tools 1.4.7 takes `10.0.0.0/24`), `-p`,
 * `--sport`/`--dport`, `-m MARK/MASK`.
 */
export function conntrackFilterArgs(filter: ConntrackFilter): string[] {
  const args = ["-D", "-f", filter.family === 6 ? "ipv6" : "ipv4"];
  if (filter.src !== undefined) args.push("-s", filter.src);
  if (filter.dst !== undefined) args.push("-d", filter.dst);
  if (filter.proto !== undefined) args.push("-p", String(filter.proto));
  if (filter.sport !== undefined) args.push("--sport", String(filter.sport));
  if (filter.dport !== undefined) args.push("--dport", String(filter.dport));
  args.push("-m", `${filter.mark >>> 0}/${filter.mask >>> 0}`);
  return args;
}

/** Parses `ip -j addr show` into links with their IPv4 and IPv6 addresses. */
export function parseLinks(json: string): LinkState[] {
  return asRecords(json).map((link) => {
    const flags = (link.flags as string[] | undefined) ?? [];
    const info = (link.addr_info as Record<string, unknown>[] | undefined) ?? [];
    return {
      name: String(link.ifname),
      index: Number(link.ifindex),
      up: flags.includes("UP"),
      carrier: flags.includes("LOWER_UP"),
      pointToPoint: flags.includes("POINTOPOINT"),
      addresses: info
        .filter((a) => a.family === "inet")
        .map((a) => ({
          address: String(a.local),
          prefixlen: Number(a.prefixlen),
          ...(typeof a.address === "string" && a.address !== a.local ? { peer: a.address } : {}),
        })),
      addresses6: parseAddresses6(info),
    };
  });
}

/**
 * Parses `ip -N -4 -j route show table all` (iproute2 6.1: table, protocol,
 * type and scope as numeric strings; table left out for main, protocol for
 * boot, type for unicast). Route metrics come as `[{initcwnd: 10}]`.
 *
 * @throws {KernelOutputError} when a table, protocol or type is not a number.
 */
export function parseRoutes(json: string, family: Family = 4): Route[] {
  const command = `ip ${(family === 6 ? READ_ROUTES6 : READ_ROUTES).join(" ")}`;
  return asRecords(json).map((r) => {
    const type = parseRouteType(r.type, command);
    // IPv6 prints a route without a device (unreachable, blackhole) as `dev lo`.
    const dev =
      typeof r.dev === "string" && !(family === 6 && type !== "unicast" && r.dev === "lo")
        ? r.dev
        : undefined;
    const address = (text: string) => (family === 6 ? canonicalAddress6(text) : text);
    const options: Record<string, number> = {};
    for (const entry of (r.metrics as Record<string, unknown>[] | undefined) ?? []) {
      for (const [key, value] of Object.entries(entry)) {
        if (typeof value === "number") options[key] = value;
      }
    }
    return {
      ...(family === 6 ? { family: 6 as const } : {}),
      table: parseTable(r.table, command),
      type,
      dst: String(r.dst),
      ...(typeof r.gateway === "string" ? { gateway: address(r.gateway) } : {}),
      ...(dev !== undefined ? { dev } : {}),
      ...(typeof r.prefsrc === "string" ? { src: address(r.prefsrc) } : {}),
      metric: typeof r.metric === "number" ? r.metric : 0,
      protocol: parseProtocol(r.protocol, RTPROT_BOOT, command),
      options,
    };
  });
}

/**
 * Parses `ip -N -4 -j rule show` (iproute2 6.1: table and protocol as
 * numeric strings, an action rule as `"action": "7"` with the RTN_* number).
 *
 * @throws {KernelOutputError} when a table, protocol or action is not a number.
 */
export function parseRules(json: string, family: Family = 4): Rule[] {
  const command = `ip ${(family === 6 ? READ_RULES6 : READ_RULES).join(" ")}`;
  const hostLength = family === 6 ? 128 : 32;
  return asRecords(json).map((r) => {
    const rule: Rule = {
      ...(family === 6 ? { family: 6 as const } : {}),
      priority: Number(r.priority),
      protocol: parseProtocol(r.protocol, 0, command),
    };
    if (r.table !== undefined) rule.table = parseTable(r.table, command);
    if (r.action !== undefined) {
      const action = ROUTE_TYPES[numeric(r.action, "rule action", command)];
      if (action === "unreachable" || action === "blackhole" || action === "prohibit") {
        rule.action = action;
      } else {
        throw new KernelOutputError(command, `${JSON.stringify(r.action)} as rule action`);
      }
    }
    if (typeof r.src === "string" && r.src !== "all") {
      const src = family === 6 ? canonicalAddress6(r.src) : r.src;
      rule.from =
        typeof r.srclen === "number" && r.srclen !== hostLength ? `${src}/${r.srclen}` : src;
    }
    if (typeof r.fwmark === "string") rule.fwmark = Number.parseInt(r.fwmark, 16);
    if (typeof r.fwmask === "string") rule.fwmask = Number.parseInt(r.fwmask, 16);
    if (rule.fwmark !== undefined && rule.fwmask === undefined) rule.fwmask = 0xffffffff;
    if (typeof r.suppress_prefixlen === "number") rule.suppressPrefixlength = r.suppress_prefixlen;
    return rule;
  });
}

/**
 * How long each kind of kernel command may run before it is killed, ms.
 * A timeout ends in a KernelCommandTimeoutError naming the command.
 */
export interface KernelTimeouts {
  /** `ip -j addr|route|rule show`: netlink dumps, milliseconds even on a busy router. */
  ipRead: number;
  /** `ip -batch -`: a handful of route and rule changes. */
  ipWrite: number;
  /** `nft -j list table` and `nft -f -` (one transaction). */
  nft: number;
  /**
   * The process's first `nft -f -`: the kernel may load the nf_tables
   * expression modules it names (nft_ct, nft_nat, nft_fib_inet, ...) on
   * demand, each through modprobe, which takes seconds on a slow CPU.
   */
  nftFirst: number;
  /**
   * `conntrack -D -m MARK/MASK`: walks the whole conntrack table and deletes
   * one entry per netlink message; grows with the table (seconds at 250,000).
   */
  conntrackDelete: number;
  /** `conntrack -L`: dumps the whole table as text. */
  conntrackList: number;
}

/**
 * Default timeouts, ms: iproute2 and nft 5 s (their work here is a few
 * netlink messages; a hang means something is wrong, and failover must not
 * wait behind it), conntrack deletion 30 s and listing 15 s (they scale with
 * the conntrack table); the first `nft -f -` 60 s (module autoload).
 */
export const KERNEL_TIMEOUTS: Readonly<KernelTimeouts> = Object.freeze({
  ipRead: 5_000,
  ipWrite: 5_000,
  nft: 5_000,
  nftFirst: 60_000,
  conntrackDelete: 30_000,
  conntrackList: 15_000,
});

/** A long-lived `ip OPTIONS -force -batch -` (see ./session.ts). */
function ipSession(options: readonly string[]): LineSession {
  return new LineSession({
    file: "ip",
    args: [...options, "-force", "-batch", "-"],
    failureDone: (stderr) => IP_FAILED.test(stderr),
  });
}

/** The kernel of the network namespace this process runs in. */
export class LinuxKernel implements Kernel {
  /** The timeouts in force, ms. */
  readonly timeouts: Readonly<KernelTimeouts>;

  /** @param options.timeouts overrides of {@link KERNEL_TIMEOUTS}, ms. */
  /** `ip -j addr show` and the like (names, not numbers). */
  readonly #ip = ipSession(["-j"]);
  /** `ip -N -4 -j route|rule show`. */
  readonly #ip4 = ipSession(["-N", "-4", "-j"]);
  /** `ip -N -6 -j route|rule show`. */
  readonly #ip6 = ipSession(["-N", "-6", "-j"]);
  /** `nft -j list ...`. */
  readonly #nft = new LineSession({ file: "nft", args: ["-j", "-i"] });
  /** Whether an `nft -f -` of this process has succeeded (see {@link KernelTimeouts.nftFirst}). */
  #nftLoaded = false;

  constructor(options: { timeouts?: Partial<KernelTimeouts> } = {}) {
    this.timeouts = { ...KERNEL_TIMEOUTS, ...options.timeouts };
  }

  /** Ends the long-lived reader processes (a later read starts them again). */
  close(): void {
    for (const session of [this.#ip, this.#ip4, this.#ip6, this.#nft]) session.close();
  }

  async readLinks(): Promise<LinkState[]> {
    return parseLinks(await this.#ip.run("addr show", this.timeouts.ipRead));
  }

  async readRoutes(): Promise<Route[]> {
    const command = READ_ROUTES.slice(3).join(" ");
    const [v4, v6] = await Promise.all([
      this.#ip4.run(command, this.timeouts.ipRead),
      this.#ip6.run(command, this.timeouts.ipRead),
    ]);
    return [...parseRoutes(v4), ...parseRoutes(v6, 6)];
  }

  async readRules(): Promise<Rule[]> {
    const command = READ_RULES.slice(3).join(" ");
    const [v4, v6] = await Promise.all([
      this.#ip4.run(command, this.timeouts.ipRead),
      this.#ip6.run(command, this.timeouts.ipRead),
    ]);
    return [...parseRules(v4), ...parseRules(v6, 6)];
  }

  async ipBatch(lines: readonly string[]): Promise<void> {
    const v4 = lines.filter((l) => !l.startsWith(IPV6_LINE));
    const v6 = lines.filter((l) => l.startsWith(IPV6_LINE)).map((l) => l.slice(IPV6_LINE.length));
    await this.#batch(v4, []);
    await this.#batch(v6, ["-6"]);
  }

  async #batch(lines: readonly string[], options: readonly string[]): Promise<void> {
    if (lines.length === 0) return;
    const prefix = options.length === 0 ? "ip" : `ip ${options.join(" ")}`;
    try {
      await runCommand("ip", [...options, "-batch", "-"], {
        input: lines.join("\n") + "\n",
        timeoutMs: this.timeouts.ipWrite,
      });
    } catch (error) {
      if (!(error instanceof KernelCommandError) || error instanceof KernelCommandTimeoutError) {
        throw error;
      }
      // iproute2 reports "Command failed -:N"; name the failing line itself.
      const lineNo = /Command failed -:(\d+)/.exec(error.stderr)?.[1];
      const failing = lineNo === undefined ? undefined : lines[Number(lineNo) - 1];
      throw new KernelCommandError(
        failing === undefined ? error.command : `${prefix} ${failing}`,
        error.exitCode,
        error.stderr,
      );
    }
  }

  async nftLoad(script: string): Promise<void> {
    const timeoutMs = this.#nftLoaded ? this.timeouts.nft : this.timeouts.nftFirst;
    await runCommand("nft", ["-f", "-"], { input: script, timeoutMs });
    this.#nftLoaded = true;
  }

  async nftReadTable(name: string): Promise<NftJson | null> {
    try {
      const stdout = await this.#nft.run(`list table inet ${name}`, this.timeouts.nft);
      return JSON.parse(stdout) as NftJson;
    } catch (error) {
      if (error instanceof KernelCommandError && /No such file or directory/.test(error.stderr)) {
        return null;
      }
      throw error;
    }
  }

  async nftCounters(table: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    try {
      const stdout = await this.#nft.run(`list counters table inet ${table}`, this.timeouts.nft);
      for (const object of (JSON.parse(stdout) as NftJson).nftables) {
        const counter = object.counter as { name?: string; packets?: number } | undefined;
        if (counter?.name !== undefined) out.set(counter.name, counter.packets ?? 0);
      }
      return out;
    } catch (error) {
      if (error instanceof KernelCommandError && /No such file or directory/.test(error.stderr)) {
        return out;
      }
      throw error;
    }
  }

  async nftSetSize(table: string, set: string): Promise<number | null> {
    try {
      const stdout = await this.#nft.run(`list set inet ${table} ${set}`, this.timeouts.nft);
      const json = JSON.parse(stdout) as NftJson;
      for (const object of json.nftables) {
        const found = object.set as { elem?: unknown[] } | undefined;
        if (found !== undefined) return found.elem?.length ?? 0;
      }
      return null;
    } catch (error) {
      if (error instanceof KernelCommandError && /No such file or directory/.test(error.stderr)) {
        return null;
      }
      throw error;
    }
  }

  async conntrackDelete(mark: number, mask: number, family?: Family): Promise<number> {
    let total = 0;
    for (const f of family === undefined ? ([4, 6] as const) : [family]) {
      // conntrack exits 1 when no entry matched; it prints the count on stderr.
      const { stderr } = await runCommand(
        "conntrack",
        ["-D", "-f", f === 6 ? "ipv6" : "ipv4", "-m", `${mark >>> 0}/${mask >>> 0}`],
        { allowExitCodes: [1], timeoutMs: this.timeouts.conntrackDelete },
      );
      const count = /(\d+) flow entries have been deleted/.exec(stderr)?.[1];
      total += count === undefined ? 0 : Number(count);
    }
    return total;
  }

  async conntrackDeleteMatching(filter: ConntrackFilter): Promise<number> {
    const { stderr } = await runCommand("conntrack", conntrackFilterArgs(filter), {
      allowExitCodes: [1],
      timeoutMs: this.timeouts.conntrackDelete,
    });
    const count = /(\d+) flow entries have been deleted/.exec(stderr)?.[1];
    return count === undefined ? 0 : Number(count);
  }

  async readNeighbours(): Promise<Neighbour[]> {
    return parseNeighbours(await this.#ip.run("neigh show", this.timeouts.ipRead));
  }

  async conntrackCountByMark(mask: number): Promise<Map<number, number>> {
    const { stdout } = await runCommand("conntrack", ["-L", "-o", "extended"], {
      allowExitCodes: [1],
      timeoutMs: this.timeouts.conntrackList,
    });
    const counts = new Map<number, number>();
    for (const match of stdout.matchAll(/\bmark=(\d+)/g)) {
      const mark = (Number(match[1]) & mask) >>> 0;
      counts.set(mark, (counts.get(mark) ?? 0) + 1);
    }
    return counts;
  }

  watchConntrack(onNote?: (level: "info" | "warn", message: string) => void): ConntrackCounts {
    return new ConntrackWatch({
      spawner: nodeSpawner,
      clock: systemClock,
      ...(onNote === undefined ? {} : { onNote }),
    });
  }
}

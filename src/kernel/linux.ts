/**
 * The real kernel: iproute2 (`ip -j`, `ip -batch`), `nft -f` and `conntrack`,
 * run in the network namespace of the current process.
 */
import { KernelCommandError } from "../errors.js";
import { systemClock } from "../health/clock.js";
import { nodeSpawner } from "../health/process.js";
import { ConntrackWatch } from "./conntrack.js";
import { runCommand } from "./exec.js";
import {
  TABLE_DEFAULT,
  TABLE_LOCAL,
  TABLE_MAIN,
  type ConntrackCounts,
  type Kernel,
  type LinkState,
  type NftJson,
  type Route,
  type RouteType,
  type Rule,
} from "./types.js";

const TABLE_NAMES: Record<string, number> = {
  main: TABLE_MAIN,
  default: TABLE_DEFAULT,
  local: TABLE_LOCAL,
};

/** Protocol names iproute2 prints instead of numbers (/etc/iproute2/rt_protos). */
const PROTOCOL_NAMES: Record<string, number> = {
  unspec: 0,
  redirect: 1,
  kernel: 2,
  boot: 3,
  static: 4,
  gated: 8,
  ra: 9,
  mrt: 10,
  zebra: 11,
  bird: 12,
  dnrouted: 13,
  xorp: 14,
  ntk: 15,
  dhcp: 16,
  keepalived: 18,
  babel: 42,
  openr: 99,
  bgp: 186,
  isis: 187,
  ospf: 188,
  rip: 189,
  eigrp: 192,
};

/** Table number from iproute2's JSON (`"main"`, `"101"`, absent = main). */
export function parseTable(value: unknown): number {
  if (typeof value !== "string" && typeof value !== "number") return TABLE_MAIN;
  const text = String(value);
  return TABLE_NAMES[text] ?? Number.parseInt(text, 10);
}

/** Protocol number from iproute2's JSON (`"kernel"`, `"73"`, absent = 0). */
export function parseProtocol(value: unknown): number {
  if (typeof value !== "string" && typeof value !== "number") return 0;
  const text = String(value);
  return PROTOCOL_NAMES[text] ?? (Number.parseInt(text, 10) || 0);
}

function asRecords(json: string): Record<string, unknown>[] {
  const parsed: unknown = JSON.parse(json || "[]");
  return Array.isArray(parsed) ? (parsed as Record<string, unknown>[]) : [];
}

/** Parses `ip -j addr show` into links with their IPv4 addresses. */
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
    };
  });
}

/** Parses `ip -4 -j route show table all`. Route metrics come as `[{initcwnd: 10}]`. */
export function parseRoutes(json: string): Route[] {
  return asRecords(json).map((r) => {
    const options: Record<string, number> = {};
    for (const entry of (r.metrics as Record<string, unknown>[] | undefined) ?? []) {
      for (const [key, value] of Object.entries(entry)) {
        if (typeof value === "number") options[key] = value;
      }
    }
    const type = typeof r.type === "string" ? r.type : "unicast";
    return {
      table: parseTable(r.table),
      type: type as RouteType,
      dst: String(r.dst),
      ...(typeof r.gateway === "string" ? { gateway: r.gateway } : {}),
      ...(typeof r.dev === "string" ? { dev: r.dev } : {}),
      ...(typeof r.prefsrc === "string" ? { src: r.prefsrc } : {}),
      metric: typeof r.metric === "number" ? r.metric : 0,
      protocol: parseProtocol(r.protocol),
      options,
    };
  });
}

/** Parses `ip -4 -j rule show`. */
export function parseRules(json: string): Rule[] {
  return asRecords(json).map((r) => {
    const rule: Rule = { priority: Number(r.priority), protocol: parseProtocol(r.protocol) };
    if (r.table !== undefined) rule.table = parseTable(r.table);
    if (r.action === "unreachable" || r.action === "blackhole") rule.action = r.action;
    if (typeof r.src === "string" && r.src !== "all") {
      rule.from = typeof r.srclen === "number" && r.srclen !== 32 ? `${r.src}/${r.srclen}` : r.src;
    }
    if (typeof r.fwmark === "string") rule.fwmark = Number.parseInt(r.fwmark, 16);
    if (typeof r.fwmask === "string") rule.fwmask = Number.parseInt(r.fwmask, 16);
    if (rule.fwmark !== undefined && rule.fwmask === undefined) rule.fwmask = 0xffffffff;
    if (typeof r.suppress_prefixlen === "number") rule.suppressPrefixlength = r.suppress_prefixlen;
    return rule;
  });
}

/** The kernel of the network namespace this process runs in. */
export class LinuxKernel implements Kernel {
  async readLinks(): Promise<LinkState[]> {
    const { stdout } = await runCommand("ip", ["-j", "addr", "show"]);
    return parseLinks(stdout);
  }

  async readRoutes(): Promise<Route[]> {
    const { stdout } = await runCommand("ip", ["-4", "-j", "route", "show", "table", "all"]);
    return parseRoutes(stdout);
  }

  async readRules(): Promise<Rule[]> {
    const { stdout } = await runCommand("ip", ["-4", "-j", "rule", "show"]);
    return parseRules(stdout);
  }

  async ipBatch(lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return;
    try {
      await runCommand("ip", ["-batch", "-"], { input: lines.join("\n") + "\n" });
    } catch (error) {
      if (!(error instanceof KernelCommandError)) throw error;
      // iproute2 reports "Command failed -:N"; name the failing line itself.
      const lineNo = /Command failed -:(\d+)/.exec(error.stderr)?.[1];
      const failing = lineNo === undefined ? undefined : lines[Number(lineNo) - 1];
      throw new KernelCommandError(
        failing === undefined ? error.command : `ip ${failing}`,
        error.exitCode,
        error.stderr,
      );
    }
  }

  async nftLoad(script: string): Promise<void> {
    await runCommand("nft", ["-f", "-"], { input: script });
  }

  async nftReadTable(name: string): Promise<NftJson | null> {
    try {
      const { stdout } = await runCommand("nft", ["-j", "list", "table", "inet", name]);
      return JSON.parse(stdout) as NftJson;
    } catch (error) {
      if (error instanceof KernelCommandError && /No such file or directory/.test(error.stderr)) {
        return null;
      }
      throw error;
    }
  }

  async conntrackDelete(mark: number, mask: number): Promise<number> {
    // conntrack exits 1 when no entry matched; it prints the count on stderr.
    const { stderr } = await runCommand(
      "conntrack",
      ["-D", "-f", "ipv4", "-m", `${mark >>> 0}/${mask >>> 0}`],
      { allowExitCodes: [1] },
    );
    const count = /(\d+) flow entries have been deleted/.exec(stderr)?.[1];
    return count === undefined ? 0 : Number(count);
  }

  async conntrackCountByMark(mask: number): Promise<Map<number, number>> {
    const { stdout } = await runCommand("conntrack", ["-L", "-f", "ipv4", "-o", "extended"], {
      allowExitCodes: [1],
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

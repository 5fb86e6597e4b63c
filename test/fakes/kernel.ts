/**
 * An in-memory kernel for unit tests of the controller: it understands the
 * nft scripts and iproute2 commands uplinkd renders, keeps tables, routes
 * and rules, logs every call in order, and can fail or hold any call.
 */
import { canonicalElement, routeKey, ruleKey } from "../../src/dataplane/diff.js";
import { KernelCommandError } from "../../src/errors.js";
import { conntrackFilterArgs } from "../../src/kernel/linux.js";
import {
  IPV6_LINE,
  type ConntrackCounts,
  type ConntrackFilter,
  type Kernel,
  type Neighbour,
  type LinkState,
  type NftJson,
  type Route,
  type RouteType,
  type Rule,
} from "../../src/kernel/types.js";

/** One nft table as the fake holds it. */
interface FakeTable {
  hash: string;
  chains: Set<string>;
  /** Map and set name -> elements as rendered (`0-4999 : goto uplink_1`). */
  maps: Map<string, string[]>;
}

/** The kinds of call the fake logs and can fail or hold. */
export type FakeOp =
  | "read-links"
  | "read-routes"
  | "read-rules"
  | "read-nft"
  | "nft"
  | "ip"
  | "conntrack-delete"
  | "conntrack-count";

/** A call held until the test releases it. */
export interface HeldCall {
  op: FakeOp;
  release: () => void;
}

function elementJson(text: string): unknown {
  const [key = "", verdict] = canonicalElement(text).split(" : ");
  if (verdict === undefined) return key;
  const [kind = "", target] = verdict.split(" ");
  return [key, { [kind]: target === undefined ? null : { target } }];
}

function tokens(line: string): string[] {
  return line.trim().split(/\s+/);
}

/** Parses `route replace|del [type] DST [via GW] [dev DEV] [src SRC] table T proto P metric M [opts]`. */
function parseRoute(words: string[]): Route {
  let i = 2;
  let type: RouteType = "unicast";
  if (words[i] === "unreachable" || words[i] === "blackhole") type = words[i++] as RouteType;
  const route: Route = {
    table: 254,
    type,
    dst: words[i++] ?? "",
    metric: 0,
    protocol: 0,
    options: {},
  };
  while (i < words.length) {
    const key = words[i++] ?? "";
    const value = words[i++] ?? "";
    if (key === "via") route.gateway = value;
    else if (key === "dev") route.dev = value;
    else if (key === "src") route.src = value;
    else if (key === "table") route.table = Number(value);
    else if (key === "proto") route.protocol = Number(value);
    else if (key === "metric") route.metric = Number(value);
    else route.options[key] = Number(value);
  }
  return route;
}

/** Parses `rule add|del priority N [from X] [fwmark A/B] (lookup T|unreachable|blackhole) [suppress_prefixlength N] protocol P`. */
function parseRule(words: string[]): Rule {
  const rule: Rule = { priority: 0, protocol: 0 };
  for (let i = 2; i < words.length; i++) {
    const word = words[i];
    const next = words[i + 1] ?? "";
    if (word === "priority") rule.priority = Number(next);
    else if (word === "from") rule.from = next;
    else if (word === "fwmark") {
      const [mark = "0", mask = "0xffffffff"] = next.split("/");
      rule.fwmark = Number(mark);
      rule.fwmask = Number(mask);
    } else if (word === "lookup") rule.table = Number(next);
    else if (word === "suppress_prefixlength") rule.suppressPrefixlength = Number(next);
    else if (word === "protocol") rule.protocol = Number(next);
    else if (word === "unreachable" || word === "blackhole") {
      rule.action = word;
      continue;
    } else continue;
    i++;
  }
  return rule;
}

/** The fake kernel. Public fields are the state; tests may edit them. */
export class FakeKernel implements Kernel {
  links: LinkState[] = [];
  routes: Route[] = [];
  rules: Rule[] = [];
  readonly tables = new Map<string, FakeTable>();
  /** Conntrack entries: one mark each. */
  conntrack: number[] = [];
  /** Every call, in order: `nft table uplinkd`, `nft maps balance_default`, `ip route replace ...`, `conntrack -D 0x100/0xff00`, `read-nft`. */
  readonly calls: string[] = [];
  /** Errors for the next calls of an op, used up in order. */
  readonly #failures = new Map<FakeOp, Error[]>();
  /** Ops whose calls are held until released. */
  readonly #holding = new Set<FakeOp>();
  /** Calls held now. */
  readonly held: HeldCall[] = [];

  /** The next call of `op` fails with `error` (default: a KernelCommandError naming the op). */
  failNext(op: FakeOp, error?: Error): void {
    const list = this.#failures.get(op) ?? [];
    list.push(error ?? new KernelCommandError(op, 1, `fake ${op} failure`));
    this.#failures.set(op, list);
  }

  /** Calls of `op` wait until released (see {@link held}), until {@link releaseAll}. */
  hold(op: FakeOp): void {
    this.#holding.add(op);
  }

  /** Stop holding calls and let every held call go on. */
  releaseAll(): void {
    this.#holding.clear();
    for (const call of this.held.splice(0)) call.release();
  }

  async #enter(op: FakeOp, what: string): Promise<void> {
    this.calls.push(what);
    if (this.#holding.has(op)) {
      await new Promise<void>((resolve) => {
        this.held.push({ op, release: resolve });
      });
    }
    const error = this.#failures.get(op)?.shift();
    if (error !== undefined) throw error;
  }

  async readLinks(): Promise<LinkState[]> {
    await this.#enter("read-links", "read-links");
    return structuredClone(this.links);
  }

  async readRoutes(): Promise<Route[]> {
    await this.#enter("read-routes", "read-routes");
    return structuredClone(this.routes);
  }

  async readRules(): Promise<Rule[]> {
    await this.#enter("read-rules", "read-rules");
    return structuredClone(this.rules);
  }

  async nftReadTable(name: string): Promise<NftJson | null> {
    await this.#enter("read-nft", "read-nft");
    const table = this.tables.get(name);
    if (table === undefined) return null;
    const nftables: Record<string, unknown>[] = [
      { set: { name: "structure", elem: [Number.parseInt(table.hash || "0", 16)] } },
      ...[...table.chains].map((chain) => ({ chain: { name: chain } })),
      ...[...table.maps].map(([map, elements]) => ({
        map: { name: map, elem: elements.map(elementJson) },
      })),
    ];
    return { nftables };
  }

  async nftLoad(script: string): Promise<void> {
    const lines = script.split("\n");
    const flushes = lines.filter((l) => l.startsWith("flush "));
    const whole = /^table inet (\S+) \{$/m.exec(script)?.[1];
    const deleted = lines.find((l) => /^delete table inet \S+$/.test(l))?.split(" ")[3];
    const what =
      whole !== undefined
        ? `nft table ${whole}`
        : flushes.length > 0
          ? `nft maps ${flushes.map((l) => l.split(" ")[4]).join(",")}`
          : `nft delete ${deleted ?? "?"}`;
    await this.#enter("nft", what);
    if (whole !== undefined) {
      this.tables.set(whole, FakeKernel.#parseTable(script));
      return;
    }
    if (flushes.length === 0) {
      if (deleted !== undefined) this.tables.delete(deleted);
      return;
    }
    // A map update: all or nothing, like nft.
    const updates = new Map<string, { table: FakeTable; elements: string[] }>();
    for (const line of flushes) {
      const [, , , tableName = "", map = ""] = line.split(" ");
      const table = this.tables.get(tableName);
      if (table === undefined || !table.maps.has(map)) {
        throw new KernelCommandError("nft -f -", 1, `Error: No such file or directory; ${map}`);
      }
      updates.set(map, { table, elements: [] });
    }
    for (const line of lines) {
      const added = /^add element inet \S+ (\S+) \{ (.*) \}$/.exec(line);
      if (added === null) continue;
      updates.get(added[1] ?? "")?.elements.push(...(added[2] ?? "").split(", "));
    }
    for (const [map, { table, elements }] of updates) table.maps.set(map, elements);
  }

  static #parseTable(script: string): FakeTable {
    const table: FakeTable = { hash: "", chains: new Set(), maps: new Map() };
    let current: string | undefined;
    for (const line of script.split("\n")) {
      const chain = /^\tchain (\S+) \{$/.exec(line);
      if (chain !== null) table.chains.add(chain[1] ?? "");
      const map = /^\t(?:map|set) (\S+) \{$/.exec(line);
      if (map !== null) {
        current = map[1] ?? "";
        table.maps.set(current, []);
      }
      const elements = /^\t\telements = \{ (.*) \}$/.exec(line);
      if (elements !== null && current !== undefined) {
        const list = (elements[1] ?? "").split(", ");
        if (current === "structure") table.hash = (list[0] ?? "").replace(/^0x/, "");
        else table.maps.set(current, list);
      }
      if (line === "\t}") current = undefined;
    }
    table.maps.delete("structure");
    return table;
  }

  async ipBatch(lines: readonly string[]): Promise<void> {
    for (const line of lines) {
      await this.#enter("ip", `ip ${line}`);
      // `-6 ` marks an IPv6 command (IPV6_LINE), as LinuxKernel reads it.
      const v6 = line.startsWith(IPV6_LINE);
      const words = tokens(v6 ? line.slice(IPV6_LINE.length) : line);
      const [object, verb] = words;
      if (object === "route") {
        const route = parseRoute(words);
        if (v6) route.family = 6;
        const at = this.routes.findIndex((r) => routeKey(r) === routeKey(route));
        if (verb === "replace") {
          if (at >= 0) this.routes[at] = route;
          else this.routes.push(route);
        } else {
          if (at < 0)
            throw new KernelCommandError(`ip ${line}`, 2, "RTNETLINK answers: No such process");
          this.routes.splice(at, 1);
        }
      } else {
        const rule = parseRule(words);
        if (v6) rule.family = 6;
        const at = this.rules.findIndex(
          (r) => ruleKey(r) === ruleKey(rule) && r.protocol === rule.protocol,
        );
        if (verb === "add") {
          if (at >= 0)
            throw new KernelCommandError(`ip ${line}`, 2, "RTNETLINK answers: File exists");
          this.rules.push(rule);
        } else {
          if (at < 0)
            throw new KernelCommandError(
              `ip ${line}`,
              2,
              "RTNETLINK answers: No such file or directory",
            );
          this.rules.splice(at, 1);
        }
      }
    }
  }

  /** Named counters the fake reports (tests set them): table -> name -> packets. */
  counters = new Map<string, Map<string, number>>();

  async nftCounters(table: string): Promise<Map<string, number>> {
    await this.#enter("read-nft", "read-nft-counters");
    return new Map(this.counters.get(table) ?? []);
  }

  async nftSetSize(table: string, set: string): Promise<number | null> {
    await this.#enter("read-nft", "read-nft-set");
    return this.tables.get(table)?.maps.get(set)?.length ?? null;
  }

  async conntrackDelete(mark: number, mask: number): Promise<number> {
    await this.#enter(
      "conntrack-delete",
      `conntrack -D 0x${mark.toString(16)}/0x${mask.toString(16)}`,
    );
    const before = this.conntrack.length;
    this.conntrack = this.conntrack.filter((m) => (m & mask) !== (mark & mask));
    return before - this.conntrack.length;
  }

  /** The filters of every {@link conntrackDeleteMatching} call, in order. */
  conntrackFilters: ConntrackFilter[] = [];
  /** What {@link readNeighbours} reports (tests set it). */
  neighbours: Neighbour[] = [];

  async conntrackDeleteMatching(filter: ConntrackFilter): Promise<number> {
    await this.#enter("conntrack-delete", `conntrack ${conntrackFilterArgs(filter).join(" ")}`);
    this.conntrackFilters.push(filter);
    return 0;
  }

  async readNeighbours(): Promise<Neighbour[]> {
    await this.#enter("read-links", "read-neighbours");
    return this.neighbours.map((n) => ({ ...n }));
  }

  async conntrackCountByMark(mask: number): Promise<Map<number, number>> {
    await this.#enter("conntrack-count", "conntrack-count");
    const counts = new Map<number, number>();
    for (const m of this.conntrack) counts.set(m & mask, (counts.get(m & mask) ?? 0) + 1);
    return counts;
  }

  /** Counts from {@link conntrack} as it is when asked (no events to follow in memory). */
  watchConntrack(): ConntrackCounts {
    return {
      start: () => undefined,
      countsByMark: (mask) => {
        const counts = new Map<number, number>();
        for (const m of this.conntrack) counts.set(m & mask, (counts.get(m & mask) ?? 0) + 1);
        return counts;
      },
      stop: () => Promise.resolve(),
    };
  }

  /** Calls logged since `from` (an index into {@link calls}). */
  since(from: number): string[] {
    return this.calls.slice(from);
  }
}

/**
 * The kernel state uplinkd reads and writes, in uplinkd's own normalised
 * shapes. The same shapes describe desired state (rendered from the config)
 * and actual state (parsed from `ip -j`), so the two can be compared.
 */

/** Routing table numbers with names in /etc/iproute2/rt_tables (kernel constants RT_TABLE_*). */
export const TABLE_MAIN = 254;
export const TABLE_DEFAULT = 253;
export const TABLE_LOCAL = 255;

/** One IPv4 address on an interface. */
export interface InterfaceAddress {
  /** Dotted quad. */
  address: string;
  /** Prefix length, 0..32. */
  prefixlen: number;
  /** Peer address of a point-to-point link (PPP), if any. */
  peer?: string;
}

/** One interface as `ip -j addr show` reports it (IPv4 addresses only). */
export interface LinkState {
  name: string;
  /** ifindex. */
  index: number;
  /** Administratively up (flag UP). */
  up: boolean;
  /** Carrier present (flag LOWER_UP; NO-CARRIER otherwise). */
  carrier: boolean;
  /** True for point-to-point links (flag POINTOPOINT), e.g. PPP. */
  pointToPoint: boolean;
  addresses: InterfaceAddress[];
}

/**
 * Route types (rtnetlink RTN_*, named as iproute2 names them). uplinkd
 * writes only `unicast`, `unreachable` and `blackhole`; the others are read
 * from tables it does not own (e.g. `local` and `broadcast` in table local).
 */
export type RouteType =
  | "unicast"
  | "local"
  | "broadcast"
  | "anycast"
  | "multicast"
  | "blackhole"
  | "unreachable"
  | "prohibit"
  | "throw"
  | "nat"
  | "xresolve";

/**
 * One IPv4 route. Identity in the kernel: (table, dst, metric) — the kernel
 * key is (table, dst, tos, priority); uplinkd never sets tos.
 */
export interface Route {
  table: number;
  type: RouteType;
  /** `default` or a prefix `a.b.c.d/n` (a host route is written `/32`). */
  dst: string;
  gateway?: string;
  dev?: string;
  /** Preferred source address ("src"). */
  src?: string;
  /** Route priority ("metric"); 0 when absent. */
  metric: number;
  /** rtnetlink protocol number ("proto"). */
  protocol: number;
  /** Route metrics such as initcwnd, initrwnd, mtu: name -> value. */
  options: Record<string, number>;
}

/** One IPv4 policy routing rule (`ip rule`). */
export interface Rule {
  priority: number;
  /** Table number to look up; absent when `action` is set. */
  table?: number;
  /**
   * A rule that ends the lookup (no table): `unreachable`, `blackhole` or
   * `prohibit` (FR_ACT_UNREACHABLE/BLACKHOLE/PROHIBIT). uplinkd writes the first two.
   */
  action?: "unreachable" | "blackhole" | "prohibit";
  /** Source prefix, `a.b.c.d` or `a.b.c.d/n`; absent for "all". */
  from?: string;
  fwmark?: number;
  fwmask?: number;
  /** `suppress_prefixlength N`: ignore lookup results with prefix length <= N. */
  suppressPrefixlength?: number;
  /** rtnetlink protocol number. */
  protocol: number;
}

/**
 * The kernel as uplinkd uses it; the only door to it. Every method may also
 * throw a KernelCommandTimeoutError (a KernelCommandError) when its command
 * hangs past its timeout (LinuxKernel: see KERNEL_TIMEOUTS in ./linux.ts).
 */
export interface Kernel {
  /**
   * Every interface with its flags and IPv4 addresses (`ip -j addr show`).
   * @throws {KernelCommandError}
   */
  readLinks(): Promise<LinkState[]>;
  /**
   * Every IPv4 route of every table (`ip -N -4 -j route show table all`:
   * numbers, never names from /etc/iproute2/rt_tables or rt_protos).
   * @throws {KernelCommandError}
   */
  readRoutes(): Promise<Route[]>;
  /**
   * Every IPv4 rule (`ip -N -4 -j rule show`: numbers, never names).
   * @throws {KernelCommandError}
   */
  readRules(): Promise<Rule[]>;
  /**
   * Run iproute2 commands (`ip -batch -`), one per line, without the leading
   * `ip`. Not atomic: a failing line stops the batch there.
   * @throws {KernelCommandError} naming the failing line and the kernel's message.
   */
  ipBatch(lines: readonly string[]): Promise<void>;
  /**
   * Load an nft script in one transaction (`nft -f -`): all or nothing.
   * @throws {KernelCommandError} with nft's message; the old ruleset stays.
   */
  nftLoad(script: string): Promise<void>;
  /**
   * The table as `nft -j list table inet NAME` prints it, or null when absent.
   * @throws {KernelCommandError} for failures other than "no such table".
   */
  nftReadTable(name: string): Promise<NftJson | null>;
  /**
   * The number of elements in set `set` of table inet `table`
   * (`nft -j list set inet TABLE SET`), or null when there is no such set.
   * @throws {KernelCommandError} for failures other than "no such set".
   */
  nftSetSize(table: string, set: string): Promise<number | null>;
  /**
   * The named counters of table inet `table` (`nft -j list counters table
   * inet TABLE`): name -> packets; an empty map when there is no such table.
   * @throws {KernelCommandError} for failures other than "no such table".
   */
  nftCounters(table: string): Promise<Map<string, number>>;
  /**
   * Delete conntrack entries whose mark matches `mark/mask`
   * (`conntrack -D -m MARK/MASK`).
   * @returns the number of entries deleted.
   * @throws {KernelCommandError}
   */
  conntrackDelete(mark: number, mask: number): Promise<number>;
  /**
   * Count conntrack entries per mark value under `mask` by dumping the
   * table (`conntrack -L`): its cost grows with the table (~0.7 s of CPU at
   * 100,000 entries); the daemon uses {@link Kernel.watchConntrack} instead.
   * @returns mark (masked) -> number of entries.
   * @throws {KernelCommandError}
   */
  conntrackCountByMark(mask: number): Promise<Map<number, number>>;
  /**
   * A watcher that keeps conntrack entries per mark from conntrack events
   * (`conntrack -E`) and a dump now and then (see kernel/conntrack.ts);
   * not started yet. Never throws: a failing `conntrack` is reported to
   * `onNote` and retried.
   */
  watchConntrack(onNote?: (level: "info" | "warn", message: string) => void): ConntrackCounts;
}

/** Conntrack entries per mark, kept current in the background (a {@link Kernel.watchConntrack}). */
export interface ConntrackCounts {
  /** Starts following the table. Idempotent. */
  start(): void;
  /**
   * Entries per mark under `mask`: `(mark & mask) -> entries`; null until
   * the first count is complete. Never waits.
   */
  countsByMark(mask: number): Map<number, number> | null;
  /** Stops every child process and timer. */
  stop(): Promise<void>;
}

/** `nft -j` output: a list of objects keyed by their kind. */
export interface NftJson {
  nftables: Record<string, unknown>[];
}

/**
 * The kernel state uplinkd reads and writes, in uplinkd's own normalised
 * shapes. The same shapes describe desired state (rendered from the config)
 * and actual state (parsed from `ip -j`), so the two can be compared.
 */

/** An address family: 4 (IPv4) or 6 (IPv6). */
export type Family = 4 | 6;

/**
 * The prefix that marks an IPv6 line for {@link Kernel.ipBatch}
 * (`-6 route replace ...`): `ip -batch` reads no options per line, so the
 * kernel adapter runs these lines in an `ip -6 -batch`.
 */
export const IPV6_LINE = "-6 ";

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

/** One IPv6 address on an interface, with the flags that say whether it may be used. */
export interface InterfaceAddress6 {
  /** Canonical text (`2001:db8:1::2`). */
  address: string;
  /** Prefix length, 0..128. */
  prefixlen: number;
  /** `global`, `link` (fe80::/10), `host` (::1). */
  scope: string;
  /** Duplicate address detection has not finished (IFA_F_TENTATIVE): not usable yet. */
  tentative: boolean;
  /** Its preferred lifetime ran out (IFA_F_DEPRECATED): kept for old connections only. */
  deprecated: boolean;
  /** Duplicate address detection failed (IFA_F_DADFAILED). */
  dadfailed: boolean;
  /** A privacy (temporary, RFC 8981) address: it changes, so uplinkd prefers others. */
  temporary: boolean;
  /** Learned (SLAAC, DHCPv6) with lifetimes rather than configured by hand. */
  dynamic: boolean;
}

/** One interface as `ip -j addr show` reports it. */
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
  /** Its IPv6 addresses, in the kernel's order (absent: none read). */
  addresses6?: InterfaceAddress6[];
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
  /** 6 for an IPv6 route; absent for IPv4. */
  family?: 6;
  table: number;
  type: RouteType;
  /** `default` or a prefix `a.b.c.d/n` (a host route is written `/32`; IPv6 `2001:db8::/32`). */
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
  /** 6 for an IPv6 rule (`ip -6 rule`); absent for IPv4. */
  family?: 6;
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
   * Ends long-lived helper processes (readers kept open between reads), if
   * the implementation has any; a later call starts them again.
   */
  close?(): void;
  /**
   * Every interface with its flags and IPv4 addresses (`ip -j addr show`).
   * @throws {KernelCommandError}
   */
  readLinks(): Promise<LinkState[]>;
  /**
   * Every IPv4 and IPv6 route of every table (`ip -N -4 -j route show table
   * all`, then `ip -N -6 ...`: numbers, never names from
   * /etc/iproute2/rt_tables or rt_protos); IPv6 routes carry `family: 6`.
   * @throws {KernelCommandError}
   */
  readRoutes(): Promise<Route[]>;
  /**
   * Every IPv4 and IPv6 rule (`ip -N -4 -j rule show`, `ip -N -6 ...`:
   * numbers, never names); IPv6 rules carry `family: 6`.
   * @throws {KernelCommandError}
   */
  readRules(): Promise<Rule[]>;
  /**
   * Run iproute2 commands (`ip -batch -`), one per line, without the leading
   * `ip`. A line that starts with `-6 ` is an IPv6 command: those lines run
   * in their own `ip -6 -batch -`, after the IPv4 ones (`ip -batch` reads
   * no options per line). Not atomic: a failing line stops its batch there.
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
   * (`conntrack -D -f ipv4|ipv6 -m MARK/MASK`).
   * @param family the family whose entries go; absent: both (IPv4 first).
   * @returns the number of entries deleted.
   * @throws {KernelCommandError}
   */
  conntrackDelete(mark: number, mask: number, family?: Family): Promise<number>;
  /**
   * Delete the conntrack entries that match `filter` (`conntrack -D -f
   * ipv4|ipv6 [-s PREFIX] [-d PREFIX] [-p PROTO] [--sport N] [--dport N]
   * -m MARK/MASK`; addresses and ports of the original direction).
   * @returns the number of entries deleted.
   * @throws {KernelCommandError}
   */
  conntrackDeleteMatching(filter: ConntrackFilter): Promise<number>;
  /**
   * The neighbour table of both families (`ip -j neigh show`): which
   * address each link-layer (MAC) address holds on which interface.
   * @throws {KernelCommandError}
   */
  readNeighbours(): Promise<Neighbour[]>;
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

/** Which conntrack entries {@link Kernel.conntrackDeleteMatching} deletes: all of the given fields must match. */
export interface ConntrackFilter {
  family: Family;
  /** Source address or prefix of the original direction. */
  src?: string;
  /** Destination address or prefix of the original direction. */
  dst?: string;
  /** Protocol name (`tcp`) or number. */
  proto?: string | number;
  sport?: number;
  dport?: number;
  /** The entry's mark under `mask`. */
  mark: number;
  mask: number;
}

/** One entry of the neighbour table (ARP for IPv4, neighbour discovery for IPv6). */
export interface Neighbour {
  address: string;
  family: Family;
  /** Interface the neighbour is on. */
  dev: string;
  /** Its link-layer address, lower case; absent while unknown (INCOMPLETE, FAILED). */
  lladdr?: string;
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

/**
 * The lab's topology as data: namespace names, interface names and
 * addresses, and the `ip -batch` scripts that build it. Pure functions: no
 * kernel access here (see lab.ts for that).
 *
 * For prefix P and N uplinks:
 *
 *     P-lan  eth0 100.64.100.2/24 ── lan0 100.64.100.1/24  P-rtr
 *     P-rtr  wanI 100.64.I.2/24   ── cust 100.64.I.1/24    P-ispI
 *     P-ispI core 100.100.I.1/24  ── ispI 100.100.I.2/24   P-net
 *     P-net  lo: 198.51.100.1, 203.0.113.1 (ping targets), 192.0.2.10 (echo
 *            host), 192.0.2.53 (DNS)
 *
 * Uplinks of other kinds:
 * - point-to-point (`p2p`, a raw-IP stand-in: LTE modems, tunnels): `wanI`
 *   and the ISP's `cust` are a pair of TUN devices (POINTOPOINT, NOARP, no
 *   link-layer header) joined by a relay process; the router has
 *   100.64.I.2/32 and no gateway, the ISP 100.64.I.1 with the peer prefix
 *   100.64.I.0/24.
 * - CGNAT (`cgnat`): the router gets 10.I.1.2/24 behind gateway 10.I.1.1;
 *   the ISP masquerades it again to its core address 100.100.I.1, and has a
 *   private upstream network 10.I.0.0/16 with a host at 10.I.0.53 (an echo
 *   host on its `lo`) that only this ISP reaches.
 *
 * IPv6 (dual-stack by default; point-to-point uplinks are IPv4 only):
 *
 *     P-lan  eth0 fd00:1::100/64, default via fd00:1::1 ── lan0 fd00:1::1/64  P-rtr
 *     P-rtr  wanI fe80::ff:fe00:2 (MAC 02:00:00:00:00:02), SLAAC 2001:db8:I::2/64
 *            (token ::2), accept_ra=2,
 *            `default via fe80::1 dev wanI proto ra` in the main table
 *                                         ── cust fe80::1, 2001:db8:I::1/64, radvd  P-ispI
 *     P-ispI core 2001:db8:fe:I::1/64     ── ispI 2001:db8:fe:I::2/64         P-net
 *            routes the delegation pool 2001:db8:(1000+I)::/48 via fe80::ff:fe00:2 dev cust;
 *            with `pd`, kea-dhcp6 delegates 2001:db8:(1000+I)::/56 on request
 *     P-net  lo: 2001:db8:ffff::1, ::2 (ping targets), ::10 (echo host), ::53
 *            (DNS); routes 2001:db8:I::/48 and 2001:db8:(1000+I)::/48 via ISP I
 *
 * After `renumber` fault number G the uplink network is 2001:db8:I:G::/64 and
 * the delegated prefix 2001:db8:(1000+I):G00::/56; after `ra-change` number G
 * the ISP router's link-local address is fe80::1:G (see ipv6.ts).
 *
 * Only 100.64.0.0/10, the TEST-NET ranges, 2001:db8::/32 and fd00::/8 are
 * used, and only inside the lab's namespaces; CGNAT uplinks add
 * 10.I.0.0/16, also only inside them.
 */
import { LabError } from "./errors.js";

/** Most uplinks a lab can have (100.64.1.0/24 .. 100.64.32.0/24). */
export const MAX_UPLINKS = 32;

/** Prefix used when none is given. */
export const DEFAULT_PREFIX = "ul";

/** Where lab state directories live: `${DEFAULT_STATE_ROOT}/${prefix}`. */
export const DEFAULT_STATE_ROOT = "/run/uplinkd-lab";

/** Addresses of the test hosts in the `net` namespace. */
export const LAB_HOSTS = {
  /** ICMP targets the daemon's health checks use. */
  pingTargets: ["198.51.100.1", "203.0.113.1"],
  /** Echo host: HTTP on port 80 (`GET /`, `GET /json`; speed-test endpoints `GET /bytes?n=N`, `POST /upload`), whoami on TCP port 7, iperf3 on 5201. */
  echo: "192.0.2.10",
  /** DNS server (dnsmasq) answering for `*.lab.test`. */
  dns: "192.0.2.53",
} as const;

/**
 * IPv6 addresses of the test hosts in the `net` namespace (on its `lo`),
 * all inside {@link LAB_HOSTS6.subnet}. The echo host answers on the same
 * ports as on IPv4 ({@link LAB_PORTS}).
 */
export const LAB_HOSTS6 = {
  /** ICMPv6 targets. */
  pingTargets: ["2001:db8:ffff::1", "2001:db8:ffff::2"],
  /** Echo host: HTTP, whoami (same ports as 192.0.2.10). */
  echo: "2001:db8:ffff::10",
  /** DNS server (the same dnsmasq as 192.0.2.53). */
  dns: "2001:db8:ffff::53",
  /** The internet's test host network; every ISP routes it towards `net`. */
  subnet: "2001:db8:ffff::/64",
} as const;

/** TCP ports of the echo host. */
export const LAB_PORTS = { http: 80, whoami: 7, iperf3: 5201 } as const;

/** Names the DNS server answers, and their addresses. */
export const LAB_DNS_RECORDS: Readonly<Record<string, string>> = {
  "echo.lab.test": LAB_HOSTS.echo,
  "ping1.lab.test": "198.51.100.1",
  "ping2.lab.test": "203.0.113.1",
  "dns.lab.test": LAB_HOSTS.dns,
};

/** IPv6 addresses (AAAA records) of the names in {@link LAB_DNS_RECORDS} that have one. */
export const LAB_DNS_RECORDS6: Readonly<Record<string, string>> = {
  "echo.lab.test": LAB_HOSTS6.echo,
  "ping1.lab.test": LAB_HOSTS6.pingTargets[0],
  "ping2.lab.test": LAB_HOSTS6.pingTargets[1],
  "dns.lab.test": LAB_HOSTS6.dns,
};

/** LAN side: the router's `lan0` and the client's `eth0`. */
export const LAN = {
  routerInterface: "lan0",
  routerAddress: "100.64.100.1",
  clientInterface: "eth0",
  clientAddress: "100.64.100.2",
  prefixLength: 24,
  subnet: "100.64.100.0/24",
} as const;

/** IPv6 on the LAN: a ULA prefix with static addresses (no RAs on the LAN). */
export const LAN6 = {
  routerAddress: "fd00:1::1",
  clientAddress: "fd00:1::100",
  prefixLength: 64,
  subnet: "fd00:1::/64",
} as const;

/**
 * MAC address of the router's interface on every uplink (each on its own
 * link), so its EUI-64 link-local address is known: {@link ROUTER_LINK_LOCAL}.
 */
export const ROUTER_UPLINK_MAC = "02:00:00:00:00:02";

/**
 * Link-local address of the router on every uplink interface, from
 * {@link ROUTER_UPLINK_MAC} (EUI-64, RFC 4291 appendix A); the kernel makes
 * it again whenever the link comes up. ISPs route delegated prefixes to it.
 */
export const ROUTER_LINK_LOCAL = "fe80::ff:fe00:2";

/** Interface identifier of the router's SLAAC address on every uplink (`ip token`): 2001:db8:I::2. */
export const ROUTER_TOKEN = "::2";

/**
 * Interface names inside an ISP namespace. On a PPPoE uplink `cust` is the
 * session's PPP interface (its pppd's `ifname`) and `custeth` the Ethernet
 * link under it.
 */
export const ISP_INTERFACES = { customer: "cust", core: "core", customerLink: "custeth" } as const;

/**
 * A lab node: where commands can run. `isp1`..`ispN` are the ISP gateways.
 * An HA lab (`lab up --ha`, see ha.ts) adds `rtr2`, the second router, and
 * `sw`, the switch namespace holding the shared segments' bridges.
 */
export type LabNode = "lan" | "rtr" | "net" | `isp${number}` | "rtr2" | "sw";

/**
 * How an uplink is wired: `ethernet` (a veth, static or DHCP), `p2p` (a TUN
 * pair, no gateway), `cgnat` (a veth with a private address behind a
 * second NAT), `pppoe` (a PPPoE session over a veth: pppoe-server in the
 * ISP, pppd with the kernel-mode PPPoE plugin on the router; see pppoe.ts).
 */
export type UplinkKind = "ethernet" | "p2p" | "cgnat" | "pppoe";

/**
 * IPv6 of an uplink as `lab up` builds it (generation 0: before any
 * `renumber` or `ra-change` fault; see ipv6.ts for later generations).
 */
export interface UplinkIpv6Plan {
  /** The uplink network the ISP announces in router advertisements: `2001:db8:1::/64`. */
  network: string;
  /** The router's SLAAC address there (token {@link ROUTER_TOKEN}): `2001:db8:1::2`. */
  routerAddress: string;
  /** The router's link-local address on `wanI`: `fe80::ff:fe00:2`. */
  routerLinkLocal: string;
  /** The ISP router's static global address on `cust`: `2001:db8:1::1`. */
  ispAddress: string;
  /** The ISP router's link-local address: the RA source, the router's `default via`: `fe80::1`. */
  gateway: string;
  /** Every uplink network of this ISP (all generations): `2001:db8:1::/48`; the ISP drops other sources (besides the pool). */
  customerSpace: string;
  /** Prefixes this ISP may delegate, routed via the router's link-local: `2001:db8:1001::/48`. */
  delegationPool: string;
  /** The prefix delegated on request (DHCPv6-PD, `lab up --pd`): `2001:db8:1001::/56`. */
  delegatedPrefix: string;
  /** ISP's core-side address: `2001:db8:fe:1::1`. */
  coreAddress: string;
  /** The internet's address towards this ISP: `2001:db8:fe:1::2`. */
  netAddress: string;
}

/** Everything about uplink `i` (1-based) that does not depend on the kernel. */
export interface UplinkPlan {
  /** 1..32. */
  number: number;
  /** Uplink name in the daemon config: `isp1`. */
  name: string;
  /** Router interface: `wan1` (PPPoE: the session's `ppp1`, which exists only while it is up). */
  routerInterface: string;
  /** PPPoE only: the Ethernet link under the session, on the router: `wan1`. */
  linkInterface?: string;
  /** How it is wired. */
  kind: UplinkKind;
  /** Router address for a static uplink: `100.64.1.2` (DHCP ones get one from the ISP; CGNAT `10.1.1.2`). */
  routerAddress: string;
  /** ISP gateway address on the customer side: `100.64.1.1` (CGNAT `10.1.1.1`; p2p: the ISP's end, not a gateway). */
  gateway: string;
  /** Customer subnet: `100.64.1.0/24` (CGNAT `10.1.1.0/24`); the ISP drops forwarded packets from elsewhere. */
  subnet: string;
  /** CGNAT only: the ISP's private upstream network (`10.1.0.0/16`) and its host (`10.1.0.53`). */
  upstream?: { network: string; host: string };
  /** ISP's core-side address towards the internet: `100.100.1.1`. */
  coreAddress: string;
  /** The internet's address towards this ISP: `100.100.1.2`. */
  netAddress: string;
  /** Interface in the net namespace towards this ISP: `isp1`. */
  netInterface: string;
  /** Namespace of the ISP: `P-isp1`. */
  namespace: string;
  /** The router gets its address by DHCP (dnsmasq in the ISP, udhcpc in the router). */
  dhcp: boolean;
  /** Weight in the generated daemon config (>= 1). */
  weight: number;
  /** Tier in the generated daemon config (>= 1). */
  tier: number;
  /** IPv6 of the uplink; absent for point-to-point uplinks (IPv4 only). */
  ipv6?: UplinkIpv6Plan;
}

/** The whole lab as data. */
export interface LabPlan {
  prefix: string;
  namespaces: { lan: string; rtr: string; net: string; isps: string[] };
  uplinks: UplinkPlan[];
}

/** What `lab up` is asked to build. */
export interface LabShape {
  /** Names every namespace: `P-lan`, `P-rtr`, ...; letters, digits, `_`, `-`; at most 16. */
  prefix: string;
  /** 1..32. */
  uplinks: number;
  /** Uplink numbers (1-based) that use DHCP. */
  dhcp?: readonly number[];
  /** One weight per uplink (default 1 each). */
  weights?: readonly number[];
  /** One tier per uplink (default 1 each). */
  tiers?: readonly number[];
  /** Uplink numbers (1-based) that are point-to-point (a TUN pair, no gateway). */
  p2p?: readonly number[];
  /** Uplink numbers (1-based) behind a CGNAT (private address, second NAT at the ISP). */
  cgnat?: readonly number[];
  /** Uplink numbers (1-based) reached over PPPoE (IPv4 only). */
  pppoe?: readonly number[];
}

const PREFIX_RE = /^[a-zA-Z][a-zA-Z0-9_-]{0,15}$/;

/**
 * Check a lab prefix.
 * @throws {LabError} unless it starts with a letter and holds 1..16 letters, digits, `_`, `-`.
 */
export function validatePrefix(prefix: string): string {
  if (!PREFIX_RE.test(prefix)) {
    throw new LabError(
      `invalid lab prefix ${JSON.stringify(prefix)}: use 1 to 16 letters, digits, '_' or '-', starting with a letter`,
    );
  }
  return prefix;
}

/** Namespace name of a node: `P-rtr`, `P-isp2`. */
export function namespaceOf(prefix: string, node: LabNode): string {
  return `${prefix}-${node}`;
}

/** True for a namespace name that a lab with this prefix creates (and nothing else). */
export function isLabNamespace(prefix: string, name: string): boolean {
  if (!name.startsWith(`${prefix}-`)) return false;
  const rest = name.slice(prefix.length + 1);
  return (
    rest === "lan" ||
    rest === "rtr" ||
    rest === "net" ||
    rest === "rtr2" ||
    rest === "sw" ||
    /^isp[1-9][0-9]?$/.test(rest)
  );
}

/**
 * Parse a lab node name (`lan`, `rtr`, `net`, `isp3`); `router` and
 * `client` are accepted as aliases of `rtr` and `lan`.
 * @throws {LabError} for any other name, or an ISP beyond `uplinks`.
 */
export function parseNode(name: string, uplinks: number): LabNode {
  if (name === "lan" || name === "client") return "lan";
  if (name === "rtr" || name === "router") return "rtr";
  if (name === "net") return "net";
  // The HA lab's second router and switch (they exist only in a lab made with --ha).
  if (name === "rtr2") return "rtr2";
  if (name === "sw") return "sw";
  const m = /^isp([1-9][0-9]?)$/.exec(name);
  if (m?.[1] !== undefined && Number(m[1]) <= uplinks) return `isp${Number(m[1])}`;
  throw new LabError(
    `unknown lab node ${JSON.stringify(name)}: use lan, rtr, net or isp1..isp${uplinks}`,
  );
}

/**
 * Parse an uplink given as its name (`isp2`) or number (`2`).
 * @returns the uplink number, 1..uplinks.
 * @throws {LabError} when it names no uplink of the lab.
 */
export function parseUplink(value: string | number, uplinks: number): number {
  const text = String(value).trim();
  const m = /^(?:isp)?([1-9][0-9]?)$/.exec(text);
  const n = m?.[1] === undefined ? NaN : Number(m[1]);
  if (!Number.isInteger(n) || n < 1 || n > uplinks) {
    throw new LabError(
      `unknown uplink ${JSON.stringify(text)}: use isp1..isp${uplinks} or 1..${uplinks}`,
    );
  }
  return n;
}

/**
 * Router address of a DHCP uplink after `generation` address changes:
 * 100.64.I.2 first, then .3, .4, ... (wrapping after .201).
 */
export function dhcpAddress(uplink: number, generation: number): string {
  return `100.64.${uplink}.${2 + (generation % 200)}`;
}

/** `2001:db8:A:B::` with B left out when 0; A and B are hex group texts. */
function v6Prefix(a: string, b: number): string {
  return b === 0 ? `2001:db8:${a}::` : `2001:db8:${a}:${b.toString(16)}::`;
}

/**
 * Uplink network of ISP `uplink` after `generation` renumberings:
 * `2001:db8:I::/64`, then `2001:db8:I:1::/64`, `2001:db8:I:2::/64`, ...
 * (I is the uplink number written as a hex group: isp12 -> `2001:db8:12::`).
 */
export function uplinkNetwork6(uplink: number, generation: number): string {
  return `${v6Prefix(String(uplink), generation % 0x10000)}/64`;
}

/**
 * Prefix ISP `uplink` delegates after `generation` renumberings:
 * `2001:db8:(1000+I)::/56`, then `2001:db8:(1000+I):100::/56`, `...:200::/56`, ...
 * (wrapping after 256).
 */
export function delegatedPrefix6(uplink: number, generation: number): string {
  return `${v6Prefix(String(1000 + uplink), (generation % 256) * 256)}/56`;
}

/** Link-local address of the ISP's router after `generation` `ra-change`s: `fe80::1`, then `fe80::1:1`, `fe80::1:2`, ... */
export function ispLinkLocal6(generation: number): string {
  const g = generation % 0x10000;
  return g === 0 ? "fe80::1" : `fe80::1:${g.toString(16)}`;
}

/** The address `prefix` (`2001:db8:1::/64`) with the interface identifier `iid` (`::2`): `2001:db8:1::2`. */
export function addressIn(prefix: string, iid: string): string {
  const network = prefix.split("/")[0] ?? prefix;
  return `${network.replace(/::$/, "")}${iid.startsWith("::") ? iid : `::${iid}`}`;
}

/** IPv6 plan of uplink `i` (generation 0). */
export function uplinkIpv6Plan(i: number): UplinkIpv6Plan {
  const network = uplinkNetwork6(i, 0);
  return {
    network,
    routerAddress: addressIn(network, ROUTER_TOKEN),
    routerLinkLocal: ROUTER_LINK_LOCAL,
    ispAddress: addressIn(network, "::1"),
    gateway: ispLinkLocal6(0),
    customerSpace: `2001:db8:${i}::/48`,
    delegationPool: `2001:db8:${1000 + i}::/48`,
    delegatedPrefix: delegatedPrefix6(i, 0),
    coreAddress: `2001:db8:fe:${i}::1`,
    netAddress: `2001:db8:fe:${i}::2`,
  };
}

/**
 * Turn a shape into a plan.
 * @throws {LabError} on a bad prefix, uplink count outside 1..32, a DHCP
 *   uplink number outside the lab, or weight/tier lists of the wrong length.
 */
export function planLab(shape: LabShape): LabPlan {
  const prefix = validatePrefix(shape.prefix);
  const n = shape.uplinks;
  if (!Number.isInteger(n) || n < 1 || n > MAX_UPLINKS) {
    throw new LabError(`a lab has 1 to ${MAX_UPLINKS} uplinks, not ${n}`);
  }
  const dhcp = new Set<number>();
  for (const d of shape.dhcp ?? []) dhcp.add(parseUplink(d, n));
  const kinds = new Map<number, UplinkKind>();
  for (const [kind, list] of [
    ["p2p", shape.p2p],
    ["cgnat", shape.cgnat],
    ["pppoe", shape.pppoe],
  ] as const) {
    for (const value of list ?? []) {
      const i = parseUplink(value, n);
      const other = dhcp.has(i) ? "dhcp" : kinds.get(i);
      if (other !== undefined && other !== kind) {
        throw new LabError(`uplink isp${i} cannot be both ${other} and ${kind}`);
      }
      kinds.set(i, kind);
    }
  }
  const list = (what: string, values: readonly number[] | undefined, max: number): number[] => {
    if (values === undefined) return Array.from({ length: n }, () => 1);
    if (values.length !== n) {
      throw new LabError(`${what}: give one value per uplink (${n}), not ${values.length}`);
    }
    for (const v of values) {
      if (!Number.isInteger(v) || v < 1 || v > max) {
        throw new LabError(`${what}: ${v} is not a whole number from 1 to ${max}`);
      }
    }
    return [...values];
  };
  const weights = list("weights", shape.weights, 1000);
  const tiers = list("tiers", shape.tiers, 16);
  const uplinks: UplinkPlan[] = [];
  for (let i = 1; i <= n; i++) {
    const kind = kinds.get(i) ?? "ethernet";
    const net = kind === "cgnat" ? `10.${i}.1` : `100.64.${i}`;
    uplinks.push({
      number: i,
      name: `isp${i}`,
      routerInterface: kind === "pppoe" ? `ppp${i}` : `wan${i}`,
      ...(kind === "pppoe" ? { linkInterface: `wan${i}` } : {}),
      kind,
      routerAddress: `${net}.2`,
      gateway: `${net}.1`,
      subnet: `${net}.0/24`,
      ...(kind === "cgnat"
        ? { upstream: { network: `10.${i}.0.0/16`, host: `10.${i}.0.53` } }
        : {}),
      coreAddress: `100.100.${i}.1`,
      netAddress: `100.100.${i}.2`,
      netInterface: `isp${i}`,
      namespace: namespaceOf(prefix, `isp${i}`),
      dhcp: dhcp.has(i),
      weight: weights[i - 1] ?? 1,
      tier: tiers[i - 1] ?? 1,
      ...(kind === "p2p" || kind === "pppoe" ? {} : { ipv6: uplinkIpv6Plan(i) }),
    });
  }
  return {
    prefix,
    namespaces: {
      lan: namespaceOf(prefix, "lan"),
      rtr: namespaceOf(prefix, "rtr"),
      net: namespaceOf(prefix, "net"),
      isps: uplinks.map((u) => u.namespace),
    },
    uplinks,
  };
}

/** Every namespace of the plan, LAN first. */
export function allNamespaces(plan: LabPlan): string[] {
  const ns = plan.namespaces;
  return [ns.lan, ns.rtr, ns.net, ...ns.isps];
}

/** `ip -batch` lines (run in the host's ip, touching only /run/netns) creating every namespace. */
export function renderNamespaceBatch(plan: LabPlan): string {
  return allNamespaces(plan)
    .map((ns) => `netns add ${ns}\n`)
    .join("");
}

/**
 * Sysctls of each namespace, set before any link is created so new links
 * inherit the `default` values: IPv4 forwarding in router, ISPs and net,
 * reverse path filtering off in the router (asymmetric multi-uplink
 * routing). IPv6 on everywhere with DAD off (addresses usable at once);
 * IPv6 forwarding in router, ISPs and net; the router accepts router
 * advertisements although it forwards (`accept_ra=2`, on every interface
 * it creates: its uplinks); ISPs keep their static IPv6 addresses across a
 * carrier fault (`keep_addr_on_down=1`; the kernel flushes them otherwise).
 * Order matters: `all.forwarding` is set before `default.accept_ra`.
 */
export function namespaceSysctls(plan: LabPlan): Map<string, string[]> {
  const v6 = [
    "net.ipv6.conf.all.disable_ipv6=0",
    "net.ipv6.conf.default.disable_ipv6=0",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
  ];
  const v6fwd = ["net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.forwarding=1"];
  const noRa = ["net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0"];
  const noRp = ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"];
  const fwd = ["net.ipv4.ip_forward=1"];
  const out = new Map<string, string[]>();
  out.set(plan.namespaces.lan, [...v6, ...noRa]);
  out.set(plan.namespaces.rtr, [
    ...fwd,
    ...noRp,
    ...v6,
    ...v6fwd,
    "net.ipv6.conf.default.accept_ra=2",
  ]);
  out.set(plan.namespaces.net, [...fwd, ...v6, ...v6fwd, ...noRa]);
  for (const ns of plan.namespaces.isps) {
    out.set(ns, [
      ...fwd,
      ...noRp,
      ...v6,
      ...v6fwd,
      ...noRa,
      "net.ipv6.conf.default.keep_addr_on_down=1",
    ]);
  }
  return out;
}

/**
 * Router batch (`ip -n P-rtr -batch -`): creates the LAN veth (peer in
 * P-lan) and every uplink veth (peer `cust` in P-ispI), directly inside the
 * namespaces; addresses for static uplinks; IPv6: the LAN's ULA address, on
 * each uplink a static link-local and the SLAAC token; links up. No default route:
 * static uplinks leave that to the daemon, DHCP ones get it from udhcpc.
 * Point-to-point uplinks are left out (their relay makes them).
 */
export function renderRouterBatch(plan: LabPlan): string {
  const lines = [
    "link set lo up",
    `link add ${LAN.routerInterface} type veth peer name ${LAN.clientInterface} netns ${plan.namespaces.lan}`,
    `addr add ${LAN.routerAddress}/${LAN.prefixLength} dev ${LAN.routerInterface}`,
    `addr add ${LAN6.routerAddress}/${LAN6.prefixLength} dev ${LAN.routerInterface}`,
    `link set ${LAN.routerInterface} up`,
  ];
  for (const u of plan.uplinks) {
    // A point-to-point uplink's TUN pair is made by its relay (see renderP2pRouterBatch).
    if (u.kind === "p2p") continue;
    // PPPoE: a bare Ethernet link; pppd makes the session's interface on it.
    if (u.linkInterface !== undefined) {
      lines.push(
        `link add ${u.linkInterface} address ${ROUTER_UPLINK_MAC} type veth peer name ${ISP_INTERFACES.customerLink} netns ${u.namespace}`,
        `link set ${u.linkInterface} up`,
      );
      continue;
    }
    // A fixed MAC, so a known link-local address (the ISP routes delegated
    // prefixes to it), and a fixed SLAAC interface identifier (`ip token`);
    // the prefix comes from the ISP's RAs.
    lines.push(
      `link add ${u.routerInterface} address ${ROUTER_UPLINK_MAC} type veth peer name ${ISP_INTERFACES.customer} netns ${u.namespace}`,
    );
    if (!u.dhcp) lines.push(`addr add ${u.routerAddress}/24 dev ${u.routerInterface}`);
    if (u.ipv6 !== undefined) lines.push(`token set ${ROUTER_TOKEN} dev ${u.routerInterface}`);
    lines.push(`link set ${u.routerInterface} up`);
  }
  return lines.map((l) => `${l}\n`).join("");
}

/**
 * Net batch, first part (`ip -n P-net -batch -`): test host addresses
 * (IPv4 and IPv6) on `lo`, one veth per ISP (peer `core` in P-ispI),
 * addresses, links up.
 */
export function renderNetBatch(plan: LabPlan): string {
  const lines = ["link set lo up"];
  for (const a of [...LAB_HOSTS.pingTargets, LAB_HOSTS.echo, LAB_HOSTS.dns]) {
    lines.push(`addr add ${a}/32 dev lo`);
  }
  for (const a of [...LAB_HOSTS6.pingTargets, LAB_HOSTS6.echo, LAB_HOSTS6.dns]) {
    lines.push(`addr add ${a}/128 dev lo`);
  }
  for (const u of plan.uplinks) {
    lines.push(
      `link add ${u.netInterface} type veth peer name ${ISP_INTERFACES.core} netns ${u.namespace}`,
      `addr add ${u.netAddress}/24 dev ${u.netInterface}`,
      ...(u.ipv6 === undefined ? [] : [`addr add ${u.ipv6.netAddress}/64 dev ${u.netInterface}`]),
      `link set ${u.netInterface} up`,
    );
  }
  return lines.map((l) => `${l}\n`).join("");
}

/**
 * Net batch, second part: a route to each ISP's customer subnet via that
 * ISP; none to a CGNAT ISP's private networks (the internet sees only its
 * core address). IPv6 (CGNAT ISPs too: native IPv6): each ISP's customer
 * space and delegation pool via that ISP.
 */
export function renderNetRoutesBatch(plan: LabPlan): string {
  const lines: string[] = [];
  for (const u of plan.uplinks) {
    if (u.kind !== "cgnat") lines.push(`route add ${u.subnet} via ${u.coreAddress}`);
    if (u.ipv6 !== undefined) {
      lines.push(
        `route add ${u.ipv6.customerSpace} via ${u.ipv6.coreAddress}`,
        `route add ${u.ipv6.delegationPool} via ${u.ipv6.coreAddress}`,
      );
    }
  }
  return lines.map((l) => `${l}\n`).join("");
}

/** Name of a point-to-point uplink's ISP-side TUN device in the router namespace, before it moves: `p2p1`. */
export function p2pTransitName(u: UplinkPlan): string {
  return `p2p${u.number}`;
}

/**
 * Router address of a point-to-point uplink in its `generation`-th session
 * (a reconnect gets a new one, as PPP often does): 100.64.I.2 first, then
 * .3, .4, ... (wrapping after .201).
 */
export function p2pAddress(uplink: number, generation: number): string {
  return `100.64.${uplink}.${2 + (generation % 200)}`;
}

/**
 * Router batch of a point-to-point uplink, once its relay holds both TUN
 * devices: the router's address (`100.64.I.2/32` in the first session: no
 * connected subnet, no gateway), link up, and the ISP's end moved into the
 * ISP namespace.
 */
export function renderP2pRouterBatch(u: UplinkPlan, address: string = u.routerAddress): string {
  return [
    `addr add ${address}/32 dev ${u.routerInterface}`,
    `link set ${u.routerInterface} up`,
    `link set ${p2pTransitName(u)} netns ${u.namespace}`,
  ]
    .map((l) => `${l}\n`)
    .join("");
}

/**
 * ISP batch of a point-to-point uplink, once its end moved in: renamed
 * `cust`, the ISP's address with the customer prefix as peer (its route
 * comes back with the address after a carrier fault), link up.
 */
export function renderP2pIspBatch(u: UplinkPlan): string {
  const { customer } = ISP_INTERFACES;
  return [
    `link set ${p2pTransitName(u)} name ${customer}`,
    `addr add ${u.gateway} peer ${u.subnet} dev ${customer}`,
    `link set ${customer} up`,
  ]
    .map((l) => `${l}\n`)
    .join("");
}

/** LAN client batch: addresses (IPv4 and ULA), link up, default routes via the router. */
export function renderLanBatch(): string {
  return [
    "link set lo up",
    `addr add ${LAN.clientAddress}/${LAN.prefixLength} dev ${LAN.clientInterface}`,
    `addr add ${LAN6.clientAddress}/${LAN6.prefixLength} dev ${LAN.clientInterface}`,
    `link set ${LAN.clientInterface} up`,
    `route add default via ${LAN.routerAddress}`,
    `route add default via ${LAN6.routerAddress}`,
  ]
    .map((l) => `${l}\n`)
    .join("");
}

/**
 * ISP batch: gateway address on `cust` (point-to-point uplinks: nothing
 * there, see {@link renderP2pIspBatch}), core address, default route to the
 * internet; CGNAT: the private upstream host on `lo`. IPv6: the ISP
 * router's link-local and global address on `cust`, the core address, a
 * default route to the internet (see {@link renderIspRoutes6Batch} for the
 * route of the delegation pool).
 */
export function renderIspBatch(u: UplinkPlan): string {
  const { customer, core } = ISP_INTERFACES;
  const v6 = u.ipv6;
  const customerSide =
    u.kind === "p2p"
      ? []
      : u.kind === "pppoe"
        ? [`link set ${ISP_INTERFACES.customerLink} up`]
        : [
            `addr add ${u.gateway}/24 dev ${customer}`,
            ...(v6 === undefined
              ? []
              : [
                  `link set ${customer} addrgenmode none`,
                  `addr add ${v6.gateway}/64 dev ${customer}`,
                  `addr add ${v6.ispAddress}/64 dev ${customer}`,
                ]),
            `link set ${customer} up`,
          ];
  return [
    "link set lo up",
    ...(u.upstream === undefined ? [] : [`addr add ${u.upstream.host}/32 dev lo`]),
    ...customerSide,
    `addr add ${u.coreAddress}/24 dev ${core}`,
    ...(v6 === undefined ? [] : [`addr add ${v6.coreAddress}/64 dev ${core}`]),
    `link set ${core} up`,
    `route add default via ${u.netAddress}`,
    ...(v6 === undefined ? [] : [`route add default via ${v6.netAddress}`]),
    ...(v6 === undefined ? [] : renderIspRoutes6Batch(u).trimEnd().split("\n")),
  ]
    .map((l) => `${l}\n`)
    .join("");
}

/**
 * IPv6 routes of an ISP towards its customer that a carrier fault deletes
 * (`ip link set cust down` removes routes through it): the delegation pool
 * via the router's link-local address. `replace`, so it can run again
 * after a heal.
 */
export function renderIspRoutes6Batch(u: UplinkPlan): string {
  const v6 = u.ipv6;
  if (v6 === undefined) return "";
  return `route replace ${v6.delegationPool} via ${v6.routerLinkLocal} dev ${ISP_INTERFACES.customer}\n`;
}

/**
 * The ISP's nft table `inet lab`: BCP38 (drop forwarded packets from the
 * customer side whose source is outside the customer subnet, counted in
 * `spoofed`; IPv6: outside the customer space and the delegation pool, so
 * the LAN's un-translated ULA addresses are dropped too), then the `faults` chain, then named counters `up` (customer
 * -> internet) and `down` (internet -> customer) of what crossed the ISP.
 * A CGNAT ISP also masquerades IPv4 that leaves by its core side (the
 * second NAT); its IPv6 is native, not translated.
 */
export function renderIspRuleset(u: UplinkPlan): string {
  const { customer } = ISP_INTERFACES;
  return `table inet lab {
\tcounter up {
\t}
\tcounter down {
\t}
\tcounter spoofed {
\t}
\tchain faults {
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname "${customer}" ip saddr != ${u.subnet} counter name "spoofed" drop
${
  u.ipv6 === undefined
    ? `\t\tiifname "${customer}" meta nfproto ipv6 counter name "spoofed" drop\n`
    : `\t\tiifname "${customer}" ip6 saddr != { ${u.ipv6.customerSpace}, ${u.ipv6.delegationPool} } counter name "spoofed" drop\n`
}\t\tjump faults
\t\tiifname "${customer}" counter name "up" accept
\t\toifname "${customer}" counter name "down" accept
\t}
${
  u.kind === "cgnat"
    ? `\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta nfproto ipv4 oifname "${ISP_INTERFACES.core}" masquerade
\t}
`
    : ""
}}
`;
}

/**
 * The `ha:` section: this router as one of a redundant pair, with
 * keepalived (VRRP) moving the virtual addresses and conntrackd (FTFW)
 * copying connection state over a dedicated sync link.
 *
 * Kept apart from schema.ts (which imports it) and free of imports from it,
 * so the two never load in a cycle; `checkHa` holds the checks that need
 * the rest of the config (interfaces of `lan` and `uplinks`).
 */
import { z } from "zod";
import { duration } from "./duration.js";
import { interfaceName, safePath } from "./names.js";
import type { ConfigProblem } from "./source.js";
import { canonicalAddress6, familyOf, isLinkLocal6, networkOf6 } from "../net/ipv6.js";

/**
 * Highest `ha.priority`. The health score keepalived adds to it (see
 * src/ha/score.ts) moves in steps of {@link HA_SCORE_STEP}, so any
 * difference of health outweighs any difference of configured priority.
 */
export const HA_MAX_PRIORITY = 20;

/** Step of the health score per usable best-tier uplink; above HA_MAX_PRIORITY - 1. */
export const HA_SCORE_STEP = 20;

/** Shortest and longest VRRP advert interval, ms: VRRPv3 counts centiseconds in 12 bits (RFC 5798 5.2.7). */
export const HA_ADVERT_MIN_MS = 10;
export const HA_ADVERT_MAX_MS = 40_950;

const haName = z
  .string()
  .regex(
    /^[a-zA-Z][a-zA-Z0-9_-]{0,23}$/,
    "must start with a letter and hold only letters, digits, '_' and '-' (at most 24)",
  );

const haInterface = interfaceName;

const haIpv4 = z.ipv4({ error: "must be an IPv4 address (e.g. 192.0.2.1)" });

/**
 * `a.b.c.d/n` (n 1..32) or a bare IPv4 address (taken as /32); an IPv6
 * address with an optional prefix length (n 1..128; bare: /128), link-local
 * (`fe80::1/64`) included.
 */
const virtualAddress = z
  .string()
  .refine(
    (text) => {
      const [address, length, extra] = text.split("/");
      if (extra !== undefined) return false;
      const family = z.ipv4().safeParse(address).success
        ? 4
        : z.ipv6().safeParse(address).success
          ? 6
          : undefined;
      if (family === undefined) return false;
      if (length === undefined) return true;
      const max = family === 4 ? 32 : 128;
      return /^[0-9]{1,3}$/.test(length) && Number(length) >= 1 && Number(length) <= max;
    },
    {
      error:
        "must be an IPv4 or IPv6 address with an optional prefix length (e.g. 100.64.1.10/24, 2001:db8:1::10/64, fe80::1/64)",
    },
  )
  .describe(
    "a virtual address with the prefix length of its segment (100.64.1.10/24, 2001:db8:1::10/64), so it sits beside the node's own address; on a dual-stack LAN also a link-local one (fe80::1/64), the LAN's default router",
  );

const absolutePath = safePath;

/** The `ha:` section. */
export const haSchema = z
  .object({
    node: haName.describe("this router's name in the pair (its VRRP and conntrackd identity)"),
    priority: z
      .number()
      .int()
      .min(1)
      .max(HA_MAX_PRIORITY)
      .describe(
        `this router's VRRP priority (1..${HA_MAX_PRIORITY}); uplinkd's health score is added to it, so it only decides between routers whose uplinks are equally good`,
      ),
    peer: z
      .object({
        name: haName.describe("the other router's `ha.node`"),
        address: haIpv4.describe("the other router's address on the sync link"),
      })
      .strict()
      .describe("the other router of the pair"),
    sync: z
      .object({
        interface: haInterface.describe("the dedicated link between the two routers, e.g. sync0"),
        address: haIpv4.describe("this router's address on the sync link"),
        port: z
          .number()
          .int()
          .min(1)
          .max(65535)
          .default(3780)
          .describe("UDP port conntrackd sends and receives on"),
      })
      .strict()
      .describe("the link conntrackd copies connection state over (FTFW mode)"),
    virtual_addresses: z
      .record(haInterface, z.array(virtualAddress).min(1))
      .refine((record) => Object.keys(record).length > 0, "give at least one interface")
      .describe(
        "per interface the addresses that move to the master: the LAN's gateway, each uplink's public address",
      ),
    virtual_router_id: z
      .number()
      .int()
      .min(1)
      .max(255)
      .default(51)
      .describe(
        "VRRP id of the first segment; the segments, sorted by interface name, take ids from here on",
      ),
    advert_interval: duration
      .pipe(
        z
          .number()
          .min(HA_ADVERT_MIN_MS, `must be at least ${HA_ADVERT_MIN_MS}ms`)
          .max(HA_ADVERT_MAX_MS, `must be at most ${HA_ADVERT_MAX_MS}ms`)
          .refine((ms) => ms % 10 === 0, "must be a whole number of centiseconds (VRRPv3)"),
      )
      .prefault("1s")
      .describe(
        "VRRP advert interval (VRRPv3: 10ms to 40.95s); the backup takes over about 3 intervals after the master fell silent",
      ),
    preempt_delay: duration
      .pipe(z.number().min(0).max(1_000_000, "must be at most 1000s"))
      .prefault("5s")
      .describe(
        "how long a returning router with a better score waits before it takes mastership back (time for conntrackd to copy the state)",
      ),
    track_file: absolutePath
      .default("/run/uplinkd/ha-score")
      .describe("file uplinkd writes its health score to; keepalived adds it to the priority"),
    state_file: absolutePath
      .default("/run/uplinkd/ha-role")
      .describe("file the notify script writes this router's VRRP role to; uplinkd reads it"),
    keepalived_config: absolutePath
      .default("/etc/keepalived/keepalived.conf")
      .describe("where `uplinkd ha render` puts keepalived's config"),
    notify_script: absolutePath
      .default("/etc/keepalived/uplinkd-notify.sh")
      .describe("where `uplinkd ha render` puts the notify script keepalived runs on role changes"),
    radvd: z
      .object({
        config: absolutePath
          .default("/etc/uplinkd/radvd.conf")
          .describe(
            "where `uplinkd ha render` puts radvd's config (written when a LAN interface has IPv6 virtual addresses)",
          ),
        pid_file: absolutePath
          .default("/run/uplinkd/radvd.pid")
          .describe(
            "radvd's pid file; the notify script starts radvd on MASTER and stops it otherwise",
          ),
      })
      .strict()
      .prefault({})
      .describe(
        "router advertisements on a dual-stack LAN: radvd runs on the master only, sending from the virtual link-local address",
      ),
    conntrackd: z
      .object({
        config: absolutePath
          .default("/etc/conntrackd/conntrackd.conf")
          .describe("conntrackd's config file (the notify script passes it with -C)"),
        socket: absolutePath
          .default("/var/run/conntrackd.ctl")
          .describe("conntrackd's control socket"),
        lock_file: absolutePath
          .default("/var/lock/conntrack.lock")
          .describe("conntrackd's lock file"),
        log_file: absolutePath
          .optional()
          .describe("conntrackd's log file; none when absent (conntrackd logs nothing)"),
        hash_size: z.number().int().min(64).max(16_777_216).default(32_768),
        hash_limit: z.number().int().min(64).max(67_108_864).default(131_072),
      })
      .strict()
      .prefault({})
      .describe("paths and table sizes of conntrackd on this router"),
  })
  .strict()
  .describe(
    "a redundant router pair: keepalived moves the virtual addresses, conntrackd copies the connections",
  );

/** A validated `ha:` section (durations in ms). */
export type HaConfig = z.output<typeof haSchema>;

/** The part of a config `checkHa` looks at (schema.ts's `Config` fits). */
export interface HaCheckInput {
  lan: readonly string[];
  uplinks: readonly {
    name: string;
    interface: string;
    snat?: string | undefined;
    gateway6?: string | undefined;
    prefix6?: string | undefined;
  }[];
  ha?: HaConfig | undefined;
}

/** The address of a virtual address text, without its prefix length. */
export function virtualAddressOnly(text: string): string {
  return text.split("/")[0] ?? text;
}

/**
 * The interface's virtual addresses of `family` (without prefix length; IPv6
 * ones canonical, RFC 5952), in the order given; empty without `ha` or
 * without addresses for it.
 */
export function virtualAddressesOf(
  ha: HaConfig | undefined,
  iface: string,
  family: 4 | 6 = 4,
): string[] {
  // Own keys only: an interface named `toString` or `constructor` is not a prototype's.
  if (ha === undefined || !Object.hasOwn(ha.virtual_addresses, iface)) return [];
  return (ha.virtual_addresses[iface] ?? [])
    .map(virtualAddressOnly)
    .filter((a) => familyOf(a) === family)
    .map((a) => (family === 6 ? canonicalAddress6(a) : a));
}

/** True when some interface of `ha` has an IPv6 virtual address: a dual-stack pair. */
export function haDualStack(ha: HaConfig | undefined): boolean {
  return Object.keys(ha?.virtual_addresses ?? {}).some(
    (iface) => virtualAddressesOf(ha, iface, 6).length > 0,
  );
}

/**
 * The global IPv6 prefixes of a LAN interface's virtual addresses (the ones
 * radvd announces): `fd00:1::1/64` -> `fd00:1::/64`; link-local ones and
 * bare addresses (/128) are left out.
 */
export function virtualPrefixes6(ha: HaConfig | undefined, iface: string): string[] {
  const out: string[] = [];
  if (ha === undefined || !Object.hasOwn(ha.virtual_addresses, iface)) return out;
  for (const text of ha.virtual_addresses[iface] ?? []) {
    const [address = "", length] = text.split("/");
    if (familyOf(address) !== 6 || isLinkLocal6(address) || length === undefined) continue;
    if (Number(length) === 128) continue;
    const prefix = networkOf6(address, Number(length));
    if (prefix !== undefined && !out.includes(prefix)) out.push(prefix);
  }
  return out;
}

/**
 * Cross-field problems of `ha`: the peer is another router; every LAN
 * interface has a virtual address (the clients' gateway); virtual
 * addresses sit on LAN or uplink interfaces, each once, never on the sync
 * link; the segments' VRIDs (one each, from `virtual_router_id` on) stay
 * within 1..255; an uplink with a virtual address has no `snat` of its own (uplinkd
 * SNATs to the virtual address); the sync link is none of the LAN or uplink
 * interfaces and the two sync addresses differ.
 *
 * A dual-stack pair (any IPv6 virtual address): a link-local virtual
 * address sits only on a LAN interface, at most one each; a LAN interface
 * with IPv6 virtual addresses has one (the source of the master's router
 * advertisements, the LAN hosts' default router); every LAN interface and
 * every uplink with IPv6 (`gateway6` not `none`) has an IPv6 virtual
 * address; such an uplink has no `prefix6: auto` (a prefix delegated to one
 * router does not move with the master).
 */
export function checkHa(config: HaCheckInput): ConfigProblem[] {
  const ha = config.ha;
  if (ha === undefined) return [];
  const problems: ConfigProblem[] = [];
  if (ha.peer.name === ha.node) {
    problems.push({
      path: ["ha", "peer", "name"],
      message: `the peer must be the other router, not this one (${ha.node})`,
    });
  }
  if (ha.peer.address === ha.sync.address) {
    problems.push({
      path: ["ha", "peer", "address"],
      message: `the peer's sync address must differ from this router's (${ha.sync.address})`,
    });
  }
  const uplinkInterfaces = new Map(config.uplinks.map((u) => [u.interface, u]));
  const known = [...config.lan, ...uplinkInterfaces.keys()];
  if (known.includes(ha.sync.interface)) {
    problems.push({
      path: ["ha", "sync", "interface"],
      message: `the sync link must be a dedicated interface, not ${ha.sync.interface} (a LAN or uplink interface)`,
    });
  }
  for (const lan of config.lan) {
    if (!Object.hasOwn(ha.virtual_addresses, lan)) {
      problems.push({
        path: ["ha", "virtual_addresses"],
        message: `LAN interface ${lan} needs a virtual address: the clients' gateway must move with the master`,
      });
    }
  }
  const segments = Object.keys(ha.virtual_addresses).length;
  if (ha.virtual_router_id + segments - 1 > 255) {
    problems.push({
      path: ["ha", "virtual_router_id"],
      message: `${segments} segments need VRIDs ${ha.virtual_router_id}..${ha.virtual_router_id + segments - 1}; VRRP has 1..255`,
    });
  }
  const seen = new Map<string, string>();
  for (const [iface, addresses] of Object.entries(ha.virtual_addresses)) {
    if (!known.includes(iface)) {
      problems.push({
        path: ["ha", "virtual_addresses", iface],
        message: `${iface} is neither a LAN nor an uplink interface (${known.join(", ")})`,
      });
    }
    const uplink = uplinkInterfaces.get(iface);
    if (uplink?.snat !== undefined) {
      problems.push({
        path: ["ha", "virtual_addresses", iface],
        message: `uplink ${uplink.name} has snat ${uplink.snat}: with a virtual address uplinkd SNATs to that; remove one of them`,
      });
    }
    addresses.forEach((text, index) => {
      const address = virtualAddressOnly(text);
      const other = seen.get(address);
      if (other !== undefined) {
        problems.push({
          path: ["ha", "virtual_addresses", iface, index],
          message: `${address} is already a virtual address of ${other}`,
        });
      }
      if (address === ha.sync.address || address === ha.peer.address) {
        problems.push({
          path: ["ha", "virtual_addresses", iface, index],
          message: `${address} is a sync link address`,
        });
      }
      seen.set(address, iface);
    });
  }
  if (haDualStack(ha)) problems.push(...checkHa6(config, ha));
  return problems;
}

/** The dual-stack checks of {@link checkHa}. */
function checkHa6(config: HaCheckInput, ha: HaConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const [iface, addresses] of Object.entries(ha.virtual_addresses)) {
    const isLan = config.lan.includes(iface);
    const linkLocal = addresses
      .map((text, index) => ({ address: virtualAddressOnly(text), index }))
      .filter((a) => familyOf(a.address) === 6 && isLinkLocal6(a.address));
    if (!isLan) {
      for (const a of linkLocal) {
        problems.push({
          path: ["ha", "virtual_addresses", iface, a.index],
          message: `${a.address} is link-local: a link-local virtual address is the LAN's default router and belongs on a LAN interface (${config.lan.join(", ")})`,
        });
      }
      continue;
    }
    for (const a of linkLocal.slice(1)) {
      problems.push({
        path: ["ha", "virtual_addresses", iface, a.index],
        message: `${iface} already has the link-local virtual address ${linkLocal[0]?.address ?? ""}; the LAN has one default router`,
      });
    }
    if (virtualAddressesOf(ha, iface, 6).length === 0) {
      problems.push({
        path: ["ha", "virtual_addresses", iface],
        message: `LAN interface ${iface} has no IPv6 virtual address: in a dual-stack pair give it a link-local one (e.g. fe80::1/64, its hosts' default router) and one in the LAN's prefix (e.g. fd00:1::1/64)`,
      });
    } else if (linkLocal.length === 0) {
      problems.push({
        path: ["ha", "virtual_addresses", iface],
        message: `LAN interface ${iface} needs a link-local virtual address (e.g. fe80::1/64): the master's router advertisements come from it, so LAN hosts keep one default router across a takeover`,
      });
    }
  }
  config.uplinks.forEach((uplink, index) => {
    if (uplink.gateway6 === "none") return;
    if (virtualAddressesOf(ha, uplink.interface, 6).length === 0) {
      problems.push({
        path: ["uplinks", index, "gateway6"],
        message: `uplink "${uplink.name}" has IPv6 but ${uplink.interface} has no IPv6 virtual address in ha.virtual_addresses: its forwarded IPv6 connections would leave from this router's own address and break at a takeover; add one (e.g. 2001:db8:1::10/64) or set gateway6: none`,
      });
    }
    if (uplink.prefix6 === "auto") {
      problems.push({
        path: ["uplinks", index, "prefix6"],
        message: `uplink "${uplink.name}" has prefix6: auto: a prefix delegated to one router does not move with the master; give both routers the same static prefix6, routed by the ISP to the uplink's IPv6 virtual address`,
      });
    }
  });
  return problems;
}

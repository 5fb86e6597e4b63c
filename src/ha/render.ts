/**
 * The engine configs of an HA pair, rendered from uplinkd's config (pure
 * functions, text in, text out): keepalived.conf, conntrackd.conf and the
 * notify script keepalived runs on role changes.
 *
 * keepalived (keepalived.conf(5), 2.2.7):
 * - one VRRP instance per shared segment and family (each interface of
 *   `ha.virtual_addresses`, sorted by name, VRIDs from
 *   `ha.virtual_router_id` on; a segment's IPv4 and IPv6 instances share
 *   its VRID, as RFC 5798 allows), all in one sync group so every virtual
 *   address of both families moves together; an IPv6 instance lists its
 *   link-local address first (RFC 5798 5.2.9);
 * - VRRPv3 (`vrrp_version 3`), whose advert interval may be below 1 s;
 * - both routers start as BACKUP with `preempt_delay`, so a returning router
 *   gives conntrackd time to copy the connections before it takes over;
 * - a track file (uplinkd's health score, see score.ts) with weight 1 on
 *   every instance, and `sync_group_tracking_weight` on the group: all
 *   instances track the same file with the same weight.
 *
 * conntrackd (conntrack-tools 1.4.7, FTFW as in its sync/ftfw example):
 * unicast UDP between the two sync addresses on the dedicated link; TCP
 * and UDP entries of both families (with their marks); connections of the
 * routers themselves (loopback, the sync link, the virtual addresses,
 * configured uplink addresses) are not copied.
 *
 * radvd (radvd.conf(5), 2.19), for a dual-stack LAN: router advertisements
 * of the LAN's virtual prefixes, sent only from the virtual link-local
 * address (`AdvRASrcAddress`), so every LAN host has that one default
 * router whichever router is master; no last advertisement with router
 * lifetime 0 on exit (`RemoveAdvOnExit off`): the new master goes on
 * advertising the same router. The notify script starts it on MASTER and
 * stops it on every other role.
 */
import type { Config } from "../config/schema.js";
import {
  virtualAddressesOf,
  virtualAddressOnly,
  virtualPrefixes6,
  type HaConfig,
} from "../config/ha.js";
import { familyOf, isLinkLocal6 } from "../net/ipv6.js";
import { HA_FAULT_SCORE, HA_SCORE_BASE, HA_SCORE_STEP } from "./score.js";
import { cleanText, confWord } from "../text.js";

/** A keepalived.conf value, refused unless it is one plain word (see confWord). */
const kw = (text: string): string => confWord(text, "keepalived.conf");
/** A conntrackd.conf value, refused unless it is one plain word (see confWord). */
const cw = (text: string): string => confWord(text, "conntrackd.conf");

/** Name of the VRRP sync group and prefix of the instance names. */
export const VRRP_GROUP = "uplinkd";

/** Name of the track file block in keepalived.conf. */
export const TRACK_FILE_NAME = "uplinkd_health";

/** One shared segment: an interface with virtual addresses and its VRRP instance(s). */
export interface VrrpSegment {
  /** Instance name of the IPv4 instance: `uplinkd_lan0`; the IPv6 one adds `_6`. */
  instance: string;
  interface: string;
  /** 1..255, of both instances. */
  virtualRouterId: number;
  /** IPv4 ones as configured (`100.64.1.10/24`); none: no IPv4 instance. */
  addresses: string[];
  /**
   * IPv6 ones as configured (`fe80::1/64`, `fd00:1::1/64`), the link-local
   * one first; none: no IPv6 instance.
   */
  addresses6: string[];
}

/** keepalived instance names of a segment, IPv4 first: `uplinkd_lan0`, `uplinkd_lan0_6`. */
export function vrrpInstances(s: VrrpSegment): { name: string; family: 4 | 6 }[] {
  return [
    ...(s.addresses.length > 0 ? [{ name: s.instance, family: 4 as const }] : []),
    ...(s.addresses6.length > 0 ? [{ name: `${s.instance}_6`, family: 6 as const }] : []),
  ];
}

/** The config's `ha`, or an error saying the config has none. */
export function haOf(config: Config): HaConfig {
  if (config.ha === undefined) throw new Error("the config has no ha section");
  return config.ha;
}

/**
 * The VRRP segments of `ha`, sorted by interface name (so both routers
 * number them alike whatever order their files list them in).
 */
export function vrrpSegments(ha: HaConfig): VrrpSegment[] {
  return Object.keys(ha.virtual_addresses)
    .sort()
    .map((iface, index) => ({
      instance: `${VRRP_GROUP}_${iface.replace(/[^a-zA-Z0-9_]/g, "_")}`,
      interface: iface,
      virtualRouterId: ha.virtual_router_id + index,
      addresses: (ha.virtual_addresses[iface] ?? []).filter(
        (a) => familyOf(virtualAddressOnly(a)) === 4,
      ),
      addresses6: (ha.virtual_addresses[iface] ?? [])
        .filter((a) => familyOf(virtualAddressOnly(a)) === 6)
        .sort(
          (x, y) =>
            Number(isLinkLocal6(virtualAddressOnly(y))) -
            Number(isLinkLocal6(virtualAddressOnly(x))),
        ),
    }));
}

/** Seconds with up to two decimals (VRRPv3 counts centiseconds): 1000 -> "1", 200 -> "0.2". */
export function advertSeconds(ms: number): string {
  return String(Math.round(ms / 10) / 100);
}

/**
 * keepalived.conf for this router.
 * @param config a validated config with `ha`.
 * @param source the config file's name, for the header (control characters removed).
 * @throws {Error} when the config has no `ha`.
 * @throws {UnsafeTextError} when a name, interface or path is not one plain
 *   word (the schema refuses those first).
 */
export function renderKeepalived(config: Config, source: string): string {
  const ha = haOf(config);
  const segments = vrrpSegments(ha);
  const out = [
    `# keepalived.conf of router ${kw(ha.node)} (peer ${kw(ha.peer.name)}), written by \`uplinkd ha render\``,
    `# from ${commentText(source)}. Edit that file and render again instead of this one.`,
    "",
    "global_defs {",
    `\trouter_id ${kw(ha.node)}`,
    "\tvrrp_version 3",
    "\tscript_user root",
    "\tenable_script_security",
    "}",
    "",
    `# uplinkd writes its health score here: ${HA_SCORE_BASE} + ${HA_SCORE_STEP} per usable best-tier uplink,`,
    `# ${HA_FAULT_SCORE} (FAULT) when no uplink is usable.`,
    `track_file ${TRACK_FILE_NAME} {`,
    `\tfile "${kw(ha.track_file)}"`,
    "\tweight 1",
    "\tinit_file 0",
    "}",
    "",
    `vrrp_sync_group ${VRRP_GROUP} {`,
    "\tgroup {",
    ...segments.flatMap((s) => vrrpInstances(s).map((i) => `\t\t${i.name}`)),
    "\t}",
    // The script takes its paths as arguments; keepalived appends GROUP NAME STATE PRIORITY.
    `\tnotify "${[ha.notify_script, ha.conntrackd.config, ha.conntrackd.lock_file, ha.state_file, ha.radvd.config, ha.radvd.pid_file].map(kw).join(" ")}"`,
    "\tsync_group_tracking_weight",
    "}",
  ];
  for (const s of segments) {
    for (const instance of vrrpInstances(s)) {
      const addresses = instance.family === 4 ? s.addresses : s.addresses6;
      const host = instance.family === 4 ? 32 : 128;
      out.push(
        "",
        `vrrp_instance ${kw(instance.name)} {`,
        "\tstate BACKUP",
        `\tinterface ${kw(s.interface)}`,
        `\tvirtual_router_id ${s.virtualRouterId}`,
        `\tpriority ${ha.priority}`,
        `\tadvert_int ${advertSeconds(ha.advert_interval)}`,
        `\tpreempt_delay ${Math.round(ha.preempt_delay / 1000)}`,
        "\tvirtual_ipaddress {",
        ...addresses.map(
          (a) => `\t\t${kw(a.includes("/") ? a : `${a}/${host}`)} dev ${kw(s.interface)}`,
        ),
        "\t}",
        "\ttrack_file {",
        `\t\t${TRACK_FILE_NAME} weight 1`,
        "\t}",
        "}",
      );
    }
  }
  return out.join("\n") + "\n";
}

/**
 * conntrackd.conf for this router (FTFW over unicast UDP on the sync link).
 * @throws {Error} when the config has no `ha`.
 * @throws {UnsafeTextError} when a name, interface, address or path is not
 *   one plain word (the schema refuses those first).
 */
export function renderConntrackd(config: Config, source: string): string {
  const ha = haOf(config);
  const virtuals = Object.keys(ha.virtual_addresses);
  const ignore = [
    "127.0.0.1",
    ha.sync.address,
    ha.peer.address,
    ...virtuals.flatMap((iface) => virtualAddressesOf(ha, iface, 4)),
    ...config.uplinks.flatMap((u) => (u.address === undefined ? [] : [u.address])),
  ];
  const ignore6 = [
    "::1",
    ...virtuals.flatMap((iface) =>
      virtualAddressesOf(ha, iface, 6).filter((a) => !isLinkLocal6(a)),
    ),
  ];
  const c = ha.conntrackd;
  return `# conntrackd.conf of router ${cw(ha.node)} (peer ${cw(ha.peer.name)}), written by \`uplinkd ha render\`
# from ${commentText(source)}. Edit that file and render again instead of this one.
Sync {
\tMode FTFW {
\t}
\tUDP {
\t\tIPv4_address ${cw(ha.sync.address)}
\t\tIPv4_Destination_Address ${cw(ha.peer.address)}
\t\tPort ${ha.sync.port}
\t\tInterface ${cw(ha.sync.interface)}
\t\tSndSocketBuffer 1249280
\t\tRcvSocketBuffer 1249280
\t\tChecksum on
\t}
}

General {
\tHashSize ${c.hash_size}
\tHashLimit ${c.hash_limit}
\tLogFile ${cw(c.log_file ?? "off")}
\tSyslog off
\tLockFile ${cw(c.lock_file)}
\tUNIX {
\t\tPath ${cw(c.socket)}
\t}
\tNetlinkBufferSize 2097152
\tNetlinkBufferSizeMaxGrowth 8388608
\tFilter From Userspace {
\t\tProtocol Accept {
\t\t\tTCP
\t\t\tUDP
\t\t}
\t\tAddress Ignore {
${[...new Set(ignore)].map((a) => `\t\t\tIPv4_address ${cw(a)}`).join("\n")}
${[...new Set(ignore6)].map((a) => `\t\t\tIPv6_address ${cw(a)}`).join("\n")}
\t\t}
\t}
}
`;
}

/**
 * The notify script keepalived runs for the sync group. Its paths come as
 * arguments (never spliced into its code): keepalived.conf's `notify` line
 * gives `CONNTRACKD_CONF LOCK_FILE STATE_FILE RADVD_CONF RADVD_PID`, and
 * keepalived appends `GROUP NAME STATE PRIORITY` (`GROUP`, the group's
 * name, MASTER, BACKUP, FAULT or STOP, the priority). On MASTER it commits
 * the peer's connections from conntrackd's external cache into the kernel
 * (-c), flushes both caches (-f), resyncs the internal cache with the
 * kernel (-R) and sends it all to the peer (-B); on BACKUP it starts
 * conntrackd if it does not answer, shortens the kernel's timers (-t, the
 * connections are the master's now) and asks the master for a resync (-n);
 * on FAULT it shortens the timers. It then writes `ROLE WALL_MS PRIORITY
 * COMMIT_MS` to the state file (replaced atomically), which uplinkd reads;
 * COMMIT_MS is how long the conntrackd commands of this role change took
 * (ms: on MASTER the commit path from the first `-c` to the last `-B`).
 *
 * A dual-stack LAN (see {@link renderRadvd}): on MASTER, after the commit,
 * it (re)starts radvd; on every other role it stops radvd with SIGKILL, so
 * radvd sends no last advertisement with router lifetime 0, which LAN
 * hosts would apply to the virtual link-local router the new master now
 * advertises.
 * @throws {Error} when the config has no `ha`.
 */
export function renderNotifyScript(config: Config, source: string): string {
  const ha = haOf(config);
  const ra = radvdInterfaces(ha).length > 0;
  const radvd = ra
    ? `
radvd_stop() {
\tif [ -s "$radvd_pid" ]; then
\t\tkill -KILL "$(cat "$radvd_pid")" 2>/dev/null
\tfi
\trm -f "$radvd_pid"
}

radvd_start() {
\tradvd_stop
\tmkdir -p "$(dirname "$radvd_pid")"
\tradvd -C "$radvd_conf" -p "$radvd_pid" -m syslog || logger -t uplinkd-ha "radvd -C $radvd_conf failed (exit $?)"
}
`
    : "";
  const start = ra ? "\n\tradvd_start" : "";
  const stop = ra ? "\n\tradvd_stop" : "";
  return `#!/bin/sh
# keepalived notify script of router ${kw(ha.node)} (peer ${kw(ha.peer.name)}), written by
# \`uplinkd ha render\` from ${commentText(source)}.
# keepalived runs it as (see its notify line in keepalived.conf):
#   SCRIPT CONNTRACKD_CONF LOCK_FILE STATE_FILE RADVD_CONF RADVD_PID GROUP|INSTANCE NAME MASTER|BACKUP|FAULT|STOP PRIORITY
set -u
usage() {
\techo "usage: $0 CONNTRACKD_CONF LOCK_FILE STATE_FILE RADVD_CONF RADVD_PID GROUP|INSTANCE NAME MASTER|BACKUP|FAULT|STOP PRIORITY" >&2
\texit 2
}
[ "$#" -ge 8 ] || usage
conf=$1
lock=$2
state=$3
radvd_conf=$4
radvd_pid=$5
shift 5

run() {
\tconntrackd -C "$conf" "$@" || logger -t uplinkd-ha "conntrackd -C $conf $* failed (exit $?)"
}

${radvd}
role() {
\tmkdir -p "$(dirname "$state")"
\tnow=$(date +%s%3N)
\tprintf '%s %s %s %s\\n' "$1" "$now" "$2" "$((now - began))" >"$state.tmp" && mv -f "$state.tmp" "$state"
}

began=$(date +%s%3N)
case "\${3:-}" in
MASTER)
\trun -c # the peer's connections: external cache -> kernel
\trun -f # empty the internal and external caches
\trun -R # internal cache <- kernel
\trun -B # everything to the peer
\trole master "\${4:-0}"${start}
\t;;
BACKUP)${stop}
\tif ! conntrackd -C "$conf" -s >/dev/null 2>&1; then
\t\trm -f "$lock"
\t\trun -d
\tfi
\trun -t # short timers: these connections are the master's now
\trun -n # ask the master for its connections
\trole backup "\${4:-0}"
\t;;
FAULT)${stop}
\trun -t
\trole fault "\${4:-0}"
\t;;
STOP)${stop}
\trole stopped "\${4:-0}"
\t;;
*)
\tusage
\t;;
esac
exit 0
`;
}

/** A file name for a `#` comment line: control characters (a newline) become blanks. */
function commentText(text: string): string {
  return cleanText(text);
}

/**
 * The LAN interfaces whose router advertisements radvd sends: those with
 * an IPv6 virtual link-local address (a dual-stack pair), sorted by name.
 */
export function radvdInterfaces(ha: HaConfig): string[] {
  return Object.keys(ha.virtual_addresses)
    .sort()
    .filter((iface) => virtualAddressesOf(ha, iface, 6).some((a) => isLinkLocal6(a)));
}

/**
 * radvd.conf for this router, or undefined when no interface has an IPv6
 * virtual link-local address. Per such interface: advertisements sent
 * only from that address (`AdvRASrcAddress`), the prefixes of its global
 * virtual addresses on-link and for SLAAC.
 * @throws {Error} when the config has no `ha`.
 */
export function renderRadvd(config: Config, source: string): string | undefined {
  const ha = haOf(config);
  const interfaces = radvdInterfaces(ha);
  if (interfaces.length === 0) return undefined;
  const out = [
    `# radvd.conf of router ${kw(ha.node)} (peer ${kw(ha.peer.name)}), written by \`uplinkd ha render\``,
    `# from ${commentText(source)}. Edit that file and render again instead of this one.`,
    "# The notify script runs radvd on the master only.",
  ];
  for (const iface of interfaces) {
    const linkLocal = virtualAddressesOf(ha, iface, 6).filter((a) => isLinkLocal6(a));
    out.push(
      "",
      `interface ${kw(iface)} {`,
      "\tAdvSendAdvert on;",
      "\tAdvRASrcAddress {",
      ...linkLocal.map((a) => `\t\t${kw(a)};`),
      "\t};",
      ...virtualPrefixes6(ha, iface).flatMap((p) => [
        `\tprefix ${kw(p)} {`,
        "\t\tAdvOnLink on;",
        "\t\tAdvAutonomous on;",
        "\t};",
      ]),
      "};",
    );
  }
  return out.join("\n") + "\n";
}

/**
 * The engine configs of an HA pair, rendered from uplinkd's config (pure
 * functions, text in, text out): keepalived.conf, conntrackd.conf and the
 * notify script keepalived runs on role changes.
 *
 * keepalived (keepalived.conf(5), 2.2.7):
 * - one VRRP instance per shared segment (each interface of
 *   `ha.virtual_addresses`, sorted by name, VRIDs from
 *   `ha.virtual_router_id` on), all in one sync group so every virtual
 *   address moves together;
 * - VRRPv3 (`vrrp_version 3`), whose advert interval may be below 1 s;
 * - both routers start as BACKUP with `preempt_delay`, so a returning router
 *   gives conntrackd time to copy the connections before it takes over;
 * - a track file (uplinkd's health score, see score.ts) with weight 1 on
 *   every instance, and `sync_group_tracking_weight` on the group: all
 *   instances track the same file with the same weight.
 *
 * conntrackd (conntrack-tools 1.4.7, FTFW as in its sync/ftfw example):
 * unicast UDP between the two sync addresses on the dedicated link; TCP
 * and UDP entries only; connections of the routers themselves (loopback,
 * the sync link, the virtual addresses, configured uplink addresses) are
 * not copied.
 */
import type { Config } from "../config/schema.js";
import { virtualAddressOnly, type HaConfig } from "../config/ha.js";
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

/** One shared segment: an interface with virtual addresses and its VRRP instance. */
export interface VrrpSegment {
  /** Instance name: `uplinkd_lan0`. */
  instance: string;
  interface: string;
  /** 1..255. */
  virtualRouterId: number;
  /** As configured (`100.64.1.10/24`). */
  addresses: string[];
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
      addresses: ha.virtual_addresses[iface] ?? [],
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
    ...segments.map((s) => `\t\t${s.instance}`),
    "\t}",
    // The script takes its paths as arguments; keepalived appends GROUP NAME STATE PRIORITY.
    `\tnotify "${[ha.notify_script, ha.conntrackd.config, ha.conntrackd.lock_file, ha.state_file].map(kw).join(" ")}"`,
    "\tsync_group_tracking_weight",
    "}",
  ];
  for (const s of segments) {
    out.push(
      "",
      `vrrp_instance ${s.instance} {`,
      "\tstate BACKUP",
      `\tinterface ${kw(s.interface)}`,
      `\tvirtual_router_id ${s.virtualRouterId}`,
      `\tpriority ${ha.priority}`,
      `\tadvert_int ${advertSeconds(ha.advert_interval)}`,
      `\tpreempt_delay ${Math.round(ha.preempt_delay / 1000)}`,
      "\tvirtual_ipaddress {",
      ...s.addresses.map(
        (a) => `\t\t${kw(a.includes("/") ? a : `${a}/32`)} dev ${kw(s.interface)}`,
      ),
      "\t}",
      "\ttrack_file {",
      `\t\t${TRACK_FILE_NAME} weight 1`,
      "\t}",
      "}",
    );
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
  const ignore = [
    "127.0.0.1",
    ha.sync.address,
    ha.peer.address,
    ...Object.values(ha.virtual_addresses).flat().map(virtualAddressOnly),
    ...config.uplinks.flatMap((u) => (u.address === undefined ? [] : [u.address])),
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
\t\t}
\t}
}
`;
}

/**
 * The notify script keepalived runs for the sync group. Its paths come as
 * arguments (never spliced into its code): keepalived.conf's `notify` line
 * gives `CONNTRACKD_CONF LOCK_FILE STATE_FILE`, and keepalived appends
 * `GROUP NAME STATE PRIORITY` (`GROUP`, the group's name, MASTER, BACKUP,
 * FAULT or STOP, the priority). On MASTER it commits the peer's
 * connections from conntrackd's external cache into the kernel (-c),
 * flushes both caches (-f), resyncs the internal cache with the kernel
 * (-R) and sends it all to the peer (-B); on BACKUP it starts conntrackd if
 * it does not answer, shortens the kernel's timers (-t, the connections are
 * the master's now) and asks the master for a resync (-n); on FAULT it
 * shortens the timers. It then writes `ROLE WALL_MS PRIORITY` to the state
 * file (replaced atomically), which uplinkd reads.
 * @throws {Error} when the config has no `ha`.
 */
export function renderNotifyScript(config: Config, source: string): string {
  const ha = haOf(config);
  return `#!/bin/sh
# keepalived notify script of router ${kw(ha.node)} (peer ${kw(ha.peer.name)}), written by
# \`uplinkd ha render\` from ${commentText(source)}.
# keepalived runs it as (see its notify line in keepalived.conf):
#   SCRIPT CONNTRACKD_CONF LOCK_FILE STATE_FILE GROUP|INSTANCE NAME MASTER|BACKUP|FAULT|STOP PRIORITY
set -u
usage() {
\techo "usage: $0 CONNTRACKD_CONF LOCK_FILE STATE_FILE GROUP|INSTANCE NAME MASTER|BACKUP|FAULT|STOP PRIORITY" >&2
\texit 2
}
[ "$#" -ge 6 ] || usage
conf=$1
lock=$2
state=$3
shift 3

run() {
\tconntrackd -C "$conf" "$@" || logger -t uplinkd-ha "conntrackd -C $conf $* failed (exit $?)"
}

role() {
\tmkdir -p "$(dirname "$state")"
\tprintf '%s %s %s\\n' "$1" "$(date +%s%3N)" "$2" >"$state.tmp" && mv -f "$state.tmp" "$state"
}

case "\${3:-}" in
MASTER)
\trun -c # the peer's connections: external cache -> kernel
\trun -f # empty the internal and external caches
\trun -R # internal cache <- kernel
\trun -B # everything to the peer
\trole master "\${4:-0}"
\t;;
BACKUP)
\tif ! conntrackd -C "$conf" -s >/dev/null 2>&1; then
\t\trm -f "$lock"
\t\trun -d
\tfi
\trun -t # short timers: these connections are the master's now
\trun -n # ask the master for its connections
\trole backup "\${4:-0}"
\t;;
FAULT)
\trun -t
\trole fault "\${4:-0}"
\t;;
STOP)
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

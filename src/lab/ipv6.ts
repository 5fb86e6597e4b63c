/**
 * IPv6 services of the lab's ISPs, as text and argument lists (pure): the
 * router advertisement daemon (radvd), the DHCPv6 prefix delegation server
 * (kea-dhcp6) in each ISP namespace, and the router's DHCPv6-PD client
 * (ISC dhclient) with its event script.
 *
 * Why these:
 * - radvd rather than dnsmasq `--enable-ra`: radvd sends a last router
 *   advertisement with router lifetime 0 when it stops, so the router drops
 *   the old `default via fe80::... proto ra` at once (an `ra-change` leaves
 *   no stale default router for up to its lifetime), and its config file
 *   says exactly which prefixes are announced and which are deprecated
 *   (preferred lifetime 0) after a renumbering. It reloads on SIGHUP.
 * - kea-dhcp6: takes every path from its config and the environment
 *   (`KEA_PIDFILE_DIR`, `KEA_LOCKFILE_DIR`), so each ISP's server keeps its
 *   lease file, pid file and log in the lab's state directory.
 * - dhclient (`dhclient -6 -P`): one process per interface, binding only
 *   that interface's link-local address (port 546), with its lease file,
 *   DUID file, pid file, config and event script all given on the command
 *   line (`-lf -df -pf -cf -sf`); the script is ours, so nothing outside
 *   the router namespace and the state directory changes. dhcpcd keeps its
 *   pid files and sockets in a fixed /run/dhcpcd (two labs would share
 *   them) and takes router advertisements over from the kernel;
 *   wide-dhcpv6's client gives its script no delegated prefix unless it
 *   also numbers a LAN interface from it.
 *
 * What the router's client leaves for uplinkd (`prefix6: auto`) to read,
 * per uplink interface IF with a delegated prefix P:
 * - a route in the router's main table: `unreachable P dev lo proto dhcp
 *   metric 1024` (`ip -6 -j route show type unreachable proto dhcp`; the
 *   usual guard against routing loops for a delegated prefix), and
 * - the file `STATE_DIR/dhcp6-IF.prefix`: one line `P` (e.g.
 *   `2001:db8:1001::/56`), removed when the lease ends. The route does not
 *   say which uplink delegated it; the file does (and so do the lease
 *   file `STATE_DIR/dhclient6-IF.leases` and the ISP's pool).
 */
import { BlockList, isIPv6 } from "node:net";
import { join } from "node:path";
import { ISP_INTERFACES, type UplinkPlan } from "./topology.js";

/** Router advertisement timing, seconds: unsolicited RAs every 3..10 s, router lifetime 600 s. */
export const RA_TIMING = { minIntervalS: 3, maxIntervalS: 10, routerLifetimeS: 600 } as const;

/** DHCPv6 lease times the ISPs give, seconds (short, so renewals happen in a test's time). */
export const PD_TIMERS = { renewS: 60, rebindS: 90, preferredS: 120, validS: 180 } as const;

/** Files of one ISP's IPv6 services and the router's DHCPv6 client on that uplink. */
export function ipv6Paths(
  dir: string,
  u: UplinkPlan,
): {
  radvdConfig: string;
  radvdPid: string;
  radvdLog: string;
  keaConfig: string;
  keaLeases: string;
  keaLog: string;
  keaOut: string;
  clientConfig: string;
  clientLeases: string;
  clientDuid: string;
  clientPid: string;
  clientLog: string;
  clientScript: string;
  /** The delegated prefix, one line, while a lease holds one. */
  delegatedPrefixFile: string;
} {
  const i = u.name;
  const dev = u.routerInterface;
  return {
    radvdConfig: join(dir, `radvd-${i}.conf`),
    radvdPid: join(dir, `radvd-${i}.pid`),
    radvdLog: join(dir, `radvd-${i}.log`),
    keaConfig: join(dir, `kea-${i}.json`),
    keaLeases: join(dir, `kea-${i}.leases`),
    keaLog: join(dir, `kea-${i}.log`),
    keaOut: join(dir, `kea-${i}.out`),
    clientConfig: join(dir, "dhclient6.conf"),
    clientLeases: join(dir, `dhclient6-${dev}.leases`),
    clientDuid: join(dir, `dhclient6-${dev}.duid`),
    clientPid: join(dir, `dhclient6-${dev}.pid`),
    clientLog: join(dir, `dhclient6-${dev}.log`),
    clientScript: join(dir, "dhclient6.sh"),
    delegatedPrefixFile: join(dir, `dhcp6-${dev}.prefix`),
  };
}

/**
 * radvd config of an ISP: announce `network` (on-link, SLAAC) as default
 * router; `deprecated` networks (earlier numbers of the uplink) are
 * announced with preferred lifetime 0 so the router stops using its
 * addresses there (the kernel keeps them valid for at most 2 h more:
 * RFC 4862 5.5.3 e).
 */
export function renderRadvdConfig(network: string, deprecated: readonly string[] = []): string {
  const prefix = (p: string, extra: string): string =>
    `\tprefix ${p} {\n\t\tAdvOnLink on;\n\t\tAdvAutonomous on;\n${extra}\t};\n`;
  return (
    `# uplinkd lab: router advertisements of this ISP\n` +
    `interface ${ISP_INTERFACES.customer} {\n` +
    `\tAdvSendAdvert on;\n` +
    `\tMinRtrAdvInterval ${RA_TIMING.minIntervalS};\n` +
    `\tMaxRtrAdvInterval ${RA_TIMING.maxIntervalS};\n` +
    `\tAdvDefaultLifetime ${RA_TIMING.routerLifetimeS};\n` +
    prefix(network, "\t\tAdvValidLifetime 86400;\n\t\tAdvPreferredLifetime 14400;\n") +
    deprecated
      .map((p) => prefix(p, "\t\tAdvValidLifetime 7200;\n\t\tAdvPreferredLifetime 0;\n"))
      .join("") +
    `};\n`
  );
}

/** `radvd` in the foreground with its config, pid file and log in the state directory. */
export function radvdArgv(dir: string, u: UplinkPlan): string[] {
  const p = ipv6Paths(dir, u);
  return [
    "radvd",
    "--nodaemon",
    `--config=${p.radvdConfig}`,
    `--pidfile=${p.radvdPid}`,
    "--logmethod=logfile",
    `--logfile=${p.radvdLog}`,
    "--username=root",
  ];
}

/**
 * kea-dhcp6 config of an ISP: on `cust`, the uplink's customer space as
 * subnet, a pool of exactly one prefix (`delegated`, e.g.
 * `2001:db8:1001::/56`) delegated on request; leases in a memfile in the
 * state directory; server id not persisted.
 */
export function renderKeaConfig(dir: string, u: UplinkPlan, delegated: string): string {
  const p = ipv6Paths(dir, u);
  const [prefix, length] = delegated.split("/");
  const config = {
    Dhcp6: {
      "interfaces-config": { interfaces: [ISP_INTERFACES.customer] },
      "server-id": { type: "LL", persist: false },
      "data-directory": dir,
      "lease-database": { type: "memfile", persist: true, name: p.keaLeases, "lfc-interval": 0 },
      "renew-timer": PD_TIMERS.renewS,
      "rebind-timer": PD_TIMERS.rebindS,
      "preferred-lifetime": PD_TIMERS.preferredS,
      "valid-lifetime": PD_TIMERS.validS,
      subnet6: [
        {
          id: u.number,
          subnet: u.ipv6?.customerSpace ?? `2001:db8:${u.number}::/48`,
          interface: ISP_INTERFACES.customer,
          "pd-pools": [
            {
              prefix,
              "prefix-len": Number(length),
              "delegated-len": Number(length),
            },
          ],
        },
      ],
      loggers: [
        {
          name: "kea-dhcp6",
          output_options: [{ output: p.keaLog }],
          severity: "INFO",
        },
      ],
    },
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** `kea-dhcp6` with its config; run it with {@link keaEnv} (pid and lock files in the state directory). */
export function keaArgv(dir: string, u: UplinkPlan): string[] {
  return ["kea-dhcp6", "-c", ipv6Paths(dir, u).keaConfig];
}

/** Environment of kea-dhcp6: its pid file and lock file go to the state directory. */
export function keaEnv(dir: string): NodeJS.ProcessEnv {
  return { ...process.env, KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir };
}

/** `dhclient -6 -P` on the uplink's interface, in the foreground, every file in the state directory. */
export function dhclientArgv(dir: string, u: UplinkPlan): string[] {
  const p = ipv6Paths(dir, u);
  return [
    "dhclient",
    "-6",
    "-P",
    "-d",
    "-cf",
    p.clientConfig,
    "-lf",
    p.clientLeases,
    "-df",
    p.clientDuid,
    "-pf",
    p.clientPid,
    "-sf",
    p.clientScript,
    u.routerInterface,
  ];
}

/**
 * Event script of the router's DHCPv6-PD client (see the module comment
 * for what it leaves). dhclient sets `reason`, `interface`,
 * `new_ip6_prefix` and `old_ip6_prefix` (dhclient-script(8)).
 */
export function dhclientScript(dir: string): string {
  return `#!/bin/sh
# DHCPv6 prefix delegation event script of the uplinkd lab; runs in the router namespace.
# Records the delegated prefix of $interface in ${dir}/dhcp6-$interface.prefix and as an
# unreachable route (proto dhcp) in the main table. Touches nothing else.
file="${dir}/dhcp6-$interface.prefix"
drop() {
  [ -n "$1" ] && ip -6 route del unreachable "$1" proto dhcp 2>/dev/null
  return 0
}
case "$reason" in
  BOUND6|RENEW6|REBIND6|REBOOT6)
    if [ -n "$new_ip6_prefix" ]; then
      if [ -s "$file" ]; then
        was=$(cat "$file")
        [ "$was" = "$new_ip6_prefix" ] || drop "$was"
      fi
      [ -n "$old_ip6_prefix" ] && [ "$old_ip6_prefix" != "$new_ip6_prefix" ] && drop "$old_ip6_prefix"
      ip -6 route replace unreachable "$new_ip6_prefix" dev lo proto dhcp metric 1024
      echo "$new_ip6_prefix" > "$file.tmp" && mv "$file.tmp" "$file"
    fi
    ;;
  EXPIRE6|RELEASE6|STOP6)
    [ -s "$file" ] && drop "$(cat "$file")"
    drop "$old_ip6_prefix"
    rm -f "$file"
    ;;
esac
exit 0
`;
}

/**
 * Which uplink an IPv6 address belongs to, by the ISP's address space: its
 * customer space (`2001:db8:I::/48`: every generation of its uplink
 * network, so the router's SLAAC address, masqueraded traffic) or its
 * delegation pool (`2001:db8:(1000+I)::/48`: prefix-translated traffic).
 * Matching uses node:net's BlockList, so any spelling of the address works.
 * @returns the uplink number, or undefined for an address of no uplink (a
 *   ULA, a link-local, an IPv4 address).
 */
export function uplinkOfAddress6(
  uplinks: readonly UplinkPlan[],
  address: string,
): number | undefined {
  if (!isIPv6(address)) return undefined;
  for (const u of uplinks) {
    if (u.ipv6 === undefined) continue;
    const list = new BlockList();
    for (const cidr of [u.ipv6.customerSpace, u.ipv6.delegationPool]) {
      const [network, length] = cidr.split("/");
      list.addSubnet(network ?? "", Number(length), "ipv6");
    }
    if (list.check(address, "ipv6")) return u.number;
  }
  return undefined;
}

/**
 * How an address was given its uplink: `uplink` (in the uplink network
 * space: SLAAC, masquerade) or `delegated` (in the delegation pool:
 * prefix translation), with the uplink number; undefined as
 * {@link uplinkOfAddress6}.
 */
export function addressKind6(
  uplinks: readonly UplinkPlan[],
  address: string,
): { uplink: number; space: "uplink" | "delegated" } | undefined {
  const n = uplinkOfAddress6(uplinks, address);
  if (n === undefined) return undefined;
  const u = uplinks.find((x) => x.number === n);
  const pool = u?.ipv6?.delegationPool.split("/") ?? [];
  const list = new BlockList();
  list.addSubnet(pool[0] ?? "", Number(pool[1]), "ipv6");
  return { uplink: n, space: list.check(address, "ipv6") ? "delegated" : "uplink" };
}

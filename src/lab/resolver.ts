/**
 * The lab's DNS: the LAN's resolver on the router (dnsmasq, fed by uplinkd
 * through `dns.dnsmasq`), and what the internet's DNS server answers.
 *
 *     P-lan  /etc/netns/P-lan/resolv.conf: nameserver 100.64.100.1
 *     P-rtr  dnsmasq on 100.64.100.1:53: conf-dir DIR/resolver.d (uplinkd's
 *            nftset fragment), servers-file DIR/resolver-servers.conf
 *            (uplinkd's server= lines), pid file DIR/resolver.pid
 *     P-net  dnsmasq on 192.0.2.53 and on one resolver address per ISP,
 *            203.0.113.(50+I): `uplinks[I].dns` in the lab config, so the
 *            router reaches ISP I's resolver only through ISP I (uplinkd
 *            pins an uplink's DNS servers to it)
 *
 * `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf over
 * /etc/resolv.conf (ip-netns(8)), which is how the LAN client finds the
 * router's resolver. Pure functions and text, except {@link startResolver}
 * and {@link writeClientResolvConf}.
 */
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { labRun, waitFor } from "./netns.js";
import { LAB_HOSTS, LAN, type LabPlan } from "./topology.js";

/** Names (each with every name below it) the internet's DNS server answers, and their IPv4 address. */
export const LAB_DNS_DOMAINS: Readonly<Record<string, { ipv4: string; ipv6?: string }>> = {
  /** A "streaming service": a second host address, for domain steering. */
  "video.lab.test": { ipv4: "192.0.2.11", ipv6: "2001:db8::11" },
  /** Any name below it: the echo host (fresh names that no cache holds). */
  "web.lab.test": { ipv4: "192.0.2.10" },
};

/** The address of ISP `number`'s DNS resolver, in the internet: 203.0.113.(50 + number). */
export function ispResolver(number: number): string {
  return `203.0.113.${50 + number}`;
}

/** Files of the router's resolver in the lab's state directory `dir`. */
export function resolverPaths(dir: string): {
  confDir: string;
  nftsetFile: string;
  serversFile: string;
  pidFile: string;
  restartScript: string;
  log: string;
} {
  return {
    confDir: join(dir, "resolver.d"),
    nftsetFile: join(dir, "resolver.d", "uplinkd-nftset.conf"),
    serversFile: join(dir, "resolver-servers.conf"),
    pidFile: join(dir, "resolver.pid"),
    restartScript: join(dir, "resolver-restart.sh"),
    log: join(dir, "resolver.log"),
  };
}

/** dnsmasq arguments of the router's resolver (it runs as a daemon and writes its pid file). */
export function resolverArgv(dir: string): string[] {
  const paths = resolverPaths(dir);
  return [
    "dnsmasq",
    "--conf-file=/dev/null",
    `--conf-dir=${paths.confDir},*.conf`,
    "--no-resolv",
    "--no-hosts",
    "--no-poll",
    `--servers-file=${paths.serversFile}`,
    `--listen-address=${LAN.routerAddress}`,
    "--bind-interfaces",
    `--pid-file=${paths.pidFile}`,
    `--log-facility=${paths.log}`,
    "--log-queries",
    "--user=root",
    "--group=root",
  ];
}

/**
 * The script that (re)starts the router's resolver: it ends the dnsmasq in
 * the pid file (waiting at most 5 s), then starts a new one. The lab
 * config's `dns.dnsmasq.reload`, run by uplinkd inside the router namespace.
 */
export function resolverRestartScript(dir: string): string {
  const paths = resolverPaths(dir);
  const quoted = resolverArgv(dir)
    .map((a) => `'${a}'`)
    .join(" ");
  return `#!/bin/sh
# Restarts the lab router's dnsmasq (the LAN's resolver); written by \`uplinkd lab up\`.
pidfile='${paths.pidFile}'
if [ -s "$pidfile" ]; then
  pid=$(cat "$pidfile")
  # dnsmasq removes its pid file when it exits; a zombie (nobody reaps it) counts as gone.
  if kill "$pid" 2>/dev/null; then
    i=0
    while [ "$i" -lt 50 ] && [ -e "/proc/$pid" ] && ! grep -qs '^State:.*Z' "/proc/$pid/status"; do
      sleep 0.1
      i=$((i + 1))
    done
  fi
  rm -f "$pidfile"
fi
exec ${quoted} </dev/null >>'${join(dir, "resolver.out")}' 2>&1
`;
}

/** The servers file before uplinkd writes its own: every ISP's resolver. */
export function initialServers(plan: LabPlan): string {
  return plan.uplinks.map((u) => `server=${ispResolver(u.number)}\n`).join("");
}

/** dnsmasq arguments for the internet's DNS server: what it answers, besides its host records. */
export function internetDnsArgs(plan: LabPlan): string[] {
  return [
    ...plan.uplinks.map((u) => `--listen-address=${ispResolver(u.number)}`),
    ...Object.entries(LAB_DNS_DOMAINS).flatMap(([name, a]) => [
      `--address=/${name}/${a.ipv4}`,
      ...(a.ipv6 === undefined ? [] : [`--address=/${name}/${a.ipv6}`]),
    ]),
  ];
}

/** Addresses the internet namespace holds on `lo` for the lab's DNS: the ISP resolvers and the domain hosts. */
export function internetDnsAddresses(plan: LabPlan): string[] {
  return [
    ...plan.uplinks.map((u) => ispResolver(u.number)),
    ...Object.values(LAB_DNS_DOMAINS)
      .map((a) => a.ipv4)
      .filter((a) => a !== LAB_HOSTS.echo),
  ];
}

/** IPv6 addresses the internet namespace holds on `lo` for the lab's DNS: the domain hosts that have one. */
export function internetDnsAddresses6(): string[] {
  return Object.values(LAB_DNS_DOMAINS).flatMap((a) => (a.ipv6 === undefined ? [] : [a.ipv6]));
}

/** The directory `ip netns exec` takes the resolv.conf of namespace `lanNamespace` from. */
export function clientNetnsDir(lanNamespace: string): string {
  return join("/etc/netns", lanNamespace);
}

/** Point the LAN client's resolver at the router (see the module comment). */
export async function writeClientResolvConf(plan: LabPlan): Promise<void> {
  const dir = clientNetnsDir(plan.namespaces.lan);
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, "resolv.conf"),
    `# uplinkd lab ${plan.prefix}: the router's dnsmasq\nnameserver ${LAN.routerAddress}\noptions timeout:1 attempts:2\n`,
  );
}

/** Remove what {@link writeClientResolvConf} wrote for `lanNamespace`; nothing else under /etc/netns. */
export async function removeClientResolvConf(lanNamespace: string): Promise<void> {
  await rm(clientNetnsDir(lanNamespace), { recursive: true, force: true });
}

/**
 * Write the router resolver's files and start it in the router namespace.
 * @returns its pid.
 * @throws {LabError} when it does not start or write its pid file within 5 s.
 */
export async function startResolver(plan: LabPlan, dir: string): Promise<number> {
  const paths = resolverPaths(dir);
  await mkdir(paths.confDir, { recursive: true });
  await writeFile(paths.serversFile, initialServers(plan));
  await writeFile(paths.restartScript, resolverRestartScript(dir));
  await chmod(paths.restartScript, 0o755);
  await labRun(`start the router's resolver in ${plan.namespaces.rtr}`, "ip", [
    "netns",
    "exec",
    plan.namespaces.rtr,
    paths.restartScript,
  ]);
  return waitFor(`the router's resolver writing ${paths.pidFile}`, 5000, async () => {
    const pid = Number((await readFile(paths.pidFile, "utf8").catch(() => "")).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  });
}

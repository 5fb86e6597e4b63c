/**
 * The lab's helper services and the processes that run them: the DHCP
 * client's event script, the ISPs' DHCP and DNS servers, the echo hosts,
 * point-to-point and PPPoE sessions, pid files and liveness checks.
 */
import type { ChildProcess } from "node:child_process";
import { access, readFile, rm } from "node:fs/promises";
import { closeSync, constants as fsConstants, openSync } from "node:fs";
import { delimiter, join } from "node:path";
import { errorText, tail } from "./logs.js";
import { labScriptArgv } from "./scripts.js";
import { internetDnsArgs } from "./resolver.js";
import { routerAddresses } from "./router-addresses.js";
import { LabError } from "./errors.js";
import {
  ipBatch,
  labTimeScale,
  namespacePids,
  spawnIn,
  waitFor,
  startDetachedIn,
} from "./netns.js";
import { TUN_RELAY_FILE } from "./p2p.js";
import { pppoeOptionsFile, pppoeServerArgv, routerPppdArgv } from "./pppoe.js";
import { type LabProcess } from "./state.js";
import {
  ISP_INTERFACES,
  LAB_DNS_RECORDS,
  LAB_DNS_RECORDS6,
  LAB_HOSTS,
  LAB_HOSTS6,
  LAB_PORTS,
  namespaceOf,
  p2pTransitName,
  renderP2pIspBatch,
  renderP2pRouterBatch,
  type LabPlan,
  type UplinkPlan,
} from "./topology.js";

/** Event script busybox udhcpc runs in the router namespace (only `ip addr`/`ip route` on its interface). */
export const UDHCPC_SCRIPT = `#!/bin/sh
# udhcpc event script of the uplinkd lab; runs inside the router namespace.
# Sets the lease's address and default route on $interface, nothing else
# (never /etc/resolv.conf). udhcpc sets interface, ip, mask (prefix length)
# and router; the lab sets UPLINKD_LAB_METRIC.
metric="\${UPLINKD_LAB_METRIC:-100}"
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ;;
  bound|renew)
    ip -4 -o addr show dev "$interface" | while read -r _ _ _ cidr _; do
      [ "$cidr" = "$ip/\${mask:-24}" ] || ip addr del "$cidr" dev "$interface"
    done
    ip addr replace "$ip/\${mask:-24}" dev "$interface"
    gw="\${router%% *}"
    if [ -n "$gw" ]; then
      ip route replace default via "$gw" dev "$interface" metric "$metric"
    fi
    ;;
esac
exit 0
`;

/** Lease time the ISPs' DHCP servers give. */
export const DHCP_LEASE = "1h";

export async function onPath(program: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(delimiter)) {
    try {
      await access(join(dir, program), fsConstants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

/**
 * Start an echo host on `address` (default the internet's 192.0.2.10, and
 * then also its IPv6 address 2001:db8:ffff::10) in `ns` and wait (at most `timeoutMs`) until it prints `ready`.
 * @throws {LabError} when it exits first or takes too long; names its log.
 */
export function launchEchoHost(
  ns: string,
  log: string,
  address: string = LAB_HOSTS.echo,
  timeoutMs = 20_000,
): Promise<number> {
  const argv = [
    ...labScriptArgv("host"),
    "--address",
    address,
    ...(address === LAB_HOSTS.echo ? ["--address", LAB_HOSTS6.echo] : []),
    "--http-port",
    String(LAB_PORTS.http),
    "--whoami-port",
    String(LAB_PORTS.whoami),
  ];
  const fd = openSync(log, "a");
  let child: ChildProcess;
  try {
    child = spawnIn(ns, argv, { detached: true, stdio: ["ignore", "pipe", fd] });
  } finally {
    closeSync(fd);
  }
  return new Promise((resolve, reject) => {
    let out = "";
    const fail = (why: string): void => {
      clearTimeout(timer);
      child.removeAllListeners();
      child.on("error", () => undefined);
      child.stdout?.destroy();
      child.unref();
      void tail(log).then((t) => {
        reject(new LabError(`echo host in ${ns} ${why}; ${log}: ${t}`));
      });
    };
    const limitMs = Math.round(timeoutMs * labTimeScale());
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      fail(`was not ready within ${limitMs} ms`);
    }, limitMs);
    child.on("error", (error) => {
      fail(`could not start: ${error.message}`);
    });
    child.on("exit", (code, signal) => {
      fail(`exited (${code ?? signal ?? "?"}) before it was ready`);
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
      if (!out.includes("ready\n")) return;
      clearTimeout(timer);
      child.removeAllListeners();
      child.on("error", () => undefined);
      child.stdout?.removeAllListeners();
      child.stdout?.on("error", () => undefined);
      child.stdout?.destroy();
      child.unref();
      if (child.pid === undefined) reject(new LabError(`echo host in ${ns} has no pid`));
      else resolve(child.pid);
    });
  });
}

export function dhcpServerArgv(u: UplinkPlan, address: string, dir: string): string[] {
  return [
    "dnsmasq",
    "--keep-in-foreground",
    "--conf-file=/dev/null",
    "--port=0",
    `--interface=${ISP_INTERFACES.customer}`,
    "--bind-interfaces",
    `--dhcp-range=${address},${address},255.255.255.0,${DHCP_LEASE}`,
    `--dhcp-option=option:router,${u.gateway}`,
    `--dhcp-option=option:dns-server,${LAB_HOSTS.dns}`,
    "--dhcp-authoritative",
    "--no-ping",
    `--dhcp-leasefile=${join(dir, `dhcp-${u.name}.leases`)}`,
    `--pid-file=${join(dir, `dhcp-${u.name}.pid`)}`,
    `--log-facility=${join(dir, `dhcp-${u.name}.log`)}`,
    "--log-dhcp",
    "--user=root",
    "--group=root",
  ];
}

export function dnsServerArgv(plan: LabPlan, dir: string): string[] {
  return [
    "dnsmasq",
    "--keep-in-foreground",
    "--conf-file=/dev/null",
    "--no-resolv",
    "--no-hosts",
    "--no-poll",
    `--listen-address=${LAB_HOSTS.dns}`,
    `--listen-address=${LAB_HOSTS6.dns}`,
    "--bind-interfaces",
    "--local=/lab.test/",
    ...Object.entries(LAB_DNS_RECORDS).map(
      ([name, a]) =>
        `--host-record=${name},${a}` +
        (LAB_DNS_RECORDS6[name] === undefined ? "" : `,${LAB_DNS_RECORDS6[name]}`),
    ),
    ...internetDnsArgs(plan),
    `--pid-file=${join(dir, "dns.pid")}`,
    `--log-facility=${join(dir, "dns.log")}`,
    "--user=root",
    "--group=root",
  ];
}

/** Read a pid file; undefined while it is missing or empty. */
export async function readPidFile(file: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(file, "utf8")).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Start a session of point-to-point uplink `u`: its TUN relay (which makes
 * `wanI` and the ISP's end), the router's `address`, and the ISP's end
 * moved and configured. Like a PPP session coming up: the interface
 * appears with its address.
 * @returns the relay process, to record.
 * @throws {LabError} when the relay does not start (its log's end in the
 *   message) or a command fails.
 */
export async function startP2pSession(
  dir: string,
  rtr: string,
  u: UplinkPlan,
  address: string,
): Promise<LabProcess> {
  const log = join(dir, `p2p-${u.name}.log`);
  await rm(log, { force: true });
  const argv = ["python3", join(dir, TUN_RELAY_FILE), u.routerInterface, p2pTransitName(u)];
  const pid = startDetachedIn(rtr, argv, log);
  await waitFor(`TUN relay of ${u.name} making its devices`, 5000, async () =>
    (await tail(log)).includes("ready") ? true : undefined,
  ).catch(async (error: unknown) => {
    throw new LabError(`${errorText(error)}; ${log}: ${await tail(log)}`, { cause: error });
  });
  await ipBatch(`wire point-to-point ${u.name} in ${rtr}`, rtr, renderP2pRouterBatch(u, address));
  await ipBatch(
    `wire point-to-point ${u.name} in ${u.namespace}`,
    u.namespace,
    renderP2pIspBatch(u),
  );
  return { name: `p2p-${u.name}`, node: "rtr", pid, log };
}

/** Longest wait for a PPPoE session to come up (discovery, LCP, IPCP; slow under emulation), ms. */
export const PPPOE_SESSION_TIMEOUT_MS = 30_000;

/** Start the PPPoE server of uplink `u` in its ISP for session generation `generation`. */
export function startPppoeServer(dir: string, u: UplinkPlan, generation: number): LabProcess {
  const log = join(dir, `pppoe-${u.name}.log`);
  const argv = pppoeServerArgv(u, join(dir, pppoeOptionsFile(u)), generation);
  return {
    name: `pppoe-${u.name}`,
    node: `isp${u.number}`,
    pid: startDetachedIn(u.namespace, argv, log),
    log,
  };
}

/** Start the router's pppd of PPPoE uplink `u` (it redials by itself after a session ends). */
export function startRouterPppd(
  dir: string,
  rtr: string,
  u: UplinkPlan,
  plugin: string,
): LabProcess {
  const log = join(dir, `pppd-${u.name}.log`);
  return {
    name: `pppd-${u.name}`,
    node: "rtr",
    pid: startDetachedIn(rtr, routerPppdArgv(u, plugin), log),
    log,
  };
}

/**
 * Wait until the router's session interface of PPPoE uplink `u` has `address`.
 * @throws {LabError} after {@link PPPOE_SESSION_TIMEOUT_MS}, with the end of both sides' logs.
 */
export async function waitForPppoeSession(
  dir: string,
  rtr: string,
  u: UplinkPlan,
  address: string,
): Promise<void> {
  await waitFor(
    `PPPoE session of ${u.name} (${address} on ${u.routerInterface})`,
    PPPOE_SESSION_TIMEOUT_MS,
    async () =>
      (await routerAddresses(rtr, u.routerInterface).catch(() => [])).some((a) =>
        a.startsWith(`${address}/`),
      )
        ? true
        : undefined,
  ).catch(async (error: unknown) => {
    const pppd = join(dir, `pppd-${u.name}.log`);
    const server = join(dir, `pppoe-${u.name}.log`);
    throw new LabError(
      `${errorText(error)}; ${pppd}: ${await tail(pppd)}; ${server}: ${await tail(server)}`,
      { cause: error },
    );
  });
}

/**
 * Check that every process the lab started still runs in its namespace (a
 * service with a bad option or a missing program exits at once).
 * @throws {LabError} naming the dead process and the end of its log.
 */
export async function checkAlive(prefix: string, processes: readonly LabProcess[]): Promise<void> {
  const pids = new Map<string, number[]>();
  for (const p of processes) {
    const ns = namespaceOf(prefix, p.node);
    let inNs = pids.get(ns);
    if (inNs === undefined) {
      inNs = await namespacePids(ns);
      pids.set(ns, inNs);
    }
    if (!inNs.includes(p.pid)) {
      throw new LabError(
        `${p.name} (pid ${p.pid}) in ${ns} exited at start; ${p.log}: ${await tail(p.log)}`,
      );
    }
  }
}

/**
 * PPPoE uplinks in the lab (`lab up --pppoe UPLINK...`): DSL as a router
 * sees it. The router's `wanI` and the ISP's `custeth` are a veth pair (the
 * Ethernet segment); in the ISP, Debian's `pppoe-server` (package pppoe;
 * Debian builds it without kernel mode, so its sessions run through the
 * user-space `pppoe` on a pty) answers discovery and starts one pppd per
 * session whose interface is `cust` (the name the ISP's rules and faults
 * use); on the
 * router, pppd with the kernel-mode PPPoE plugin (`rp-pppoe.so` in ppp
 * 2.4.9, Debian 12; `pppoe.so` in ppp 2.5, Debian 13) runs the session on
 * `wanI` as interface `pppI`, asks the ISP for an address (IPCP), sets no
 * default route (uplinkd routes), and redials one second after a session
 * ends (`persist holdoff 1 maxfail 0`).
 *
 * Session generation G (a new one after each `pppoe-drop` fault or
 * `lab session UPLINK up`): the router gets 100.64.I.(2+G) and the ISP's end
 * (the peer, what `gateway: auto` learns) is 100.64.I.1 first, then
 * 100.64.I.254, .253, ... (a new peer, as a BRAS change gives).
 *
 * Needs a kernel with CONFIG_PPP and CONFIG_PPPOE (Debian's stock kernels
 * have both as modules: `ppp_generic`, `pppoe`); {@link pppUnavailable} says
 * why not. Pure functions here except {@link pppUnavailable} and
 * {@link pppoePlugin}, which read the machine.
 */
import { access, readdir } from "node:fs/promises";
import { runCommand } from "../process/run.js";
import type { UplinkPlan } from "./topology.js";

/** Name of the ISP's pppd options file (in the lab's state directory): `pppoe-isp2.options`. */
export function pppoeOptionsFile(u: UplinkPlan): string {
  return `pppoe-${u.name}.options`;
}

/** Router address of a PPPoE uplink in session generation `generation`: 100.64.I.2, .3, ... (wrapping after .201). */
export function pppoeAddress(uplink: number, generation: number): string {
  return `100.64.${uplink}.${2 + (generation % 200)}`;
}

/** The ISP's end (the router's peer) in session generation `generation`: 100.64.I.1, then .254, .253, ... (wrapping after .205). */
export function pppoePeer(uplink: number, generation: number): string {
  const g = generation % 50;
  return `100.64.${uplink}.${g === 0 ? 1 : 255 - g}`;
}

/**
 * Options of the ISP's per-session pppd (`pppoe-server -O FILE`): no
 * authentication asked of the customer, the session interface named `cust`,
 * LCP echoes every second (a dead router is noticed in ~3 s), nothing
 * compressed, the PPPoE MTU.
 */
export function renderIspPppOptions(): string {
  return [
    "noauth",
    "ifname cust",
    "nodefaultroute",
    "lcp-echo-interval 1",
    "lcp-echo-failure 3",
    "mtu 1492",
    "mru 1492",
    "noaccomp",
    "nopcomp",
    "novj",
    "noccp",
    "",
  ].join("\n");
}

/**
 * argv of the ISP's PPPoE server for session generation `generation`:
 * on `custeth`, one session at a time, foreground, handing out
 * {@link pppoeAddress} with {@link pppoePeer} as its own end.
 */
export function pppoeServerArgv(u: UplinkPlan, optionsFile: string, generation: number): string[] {
  return [
    "pppoe-server",
    "-F",
    "-I",
    "custeth",
    "-N",
    "1",
    "-C",
    `lab-${u.name}`,
    "-S",
    "lab",
    "-L",
    pppoePeer(u.number, generation),
    "-R",
    pppoeAddress(u.number, generation),
    "-O",
    optionsFile,
  ];
}

/**
 * argv of the router's pppd for PPPoE uplink `u`: the kernel-mode plugin
 * `plugin` on `wanI`, interface `pppI`, the address from the ISP (IPCP), no
 * default route and no DNS from the peer (uplinkd routes; the lab has its own
 * resolver), redial one second after a session ends, for ever; in the
 * foreground, logging to its standard output.
 */
export function routerPppdArgv(u: UplinkPlan, plugin: string): string[] {
  return [
    "pppd",
    "plugin",
    plugin,
    u.linkInterface ?? `wan${u.number}`,
    "ifname",
    u.routerInterface,
    "user",
    "lab",
    "noauth",
    "noipdefault",
    "nodefaultroute",
    "persist",
    "maxfail",
    "0",
    "holdoff",
    "1",
    "lcp-echo-interval",
    "1",
    "lcp-echo-failure",
    "3",
    "mtu",
    "1492",
    "mru",
    "1492",
    "noaccomp",
    "nopcomp",
    "novj",
    "noccp",
    "nodetach",
    "logfd",
    "1",
  ];
}

/**
 * Why this machine cannot run a PPPoE session, or undefined when it can.
 * Loads the `pppoe` module first (it brings `ppp_generic`) where the kernel
 * has modules; then needs `/dev/ppp` and `/proc/net/pppoe` (the kernel's
 * PPP and PPPoE support: CONFIG_PPP, CONFIG_PPPOE), and pppd and
 * pppoe-server on the PATH.
 */
export async function pppUnavailable(): Promise<string | undefined> {
  await runCommand("modprobe", ["-q", "pppoe"]).catch(() => undefined);
  const missing = async (path: string): Promise<boolean> =>
    access(path).then(
      () => false,
      () => true,
    );
  if ((await missing("/dev/ppp")) || (await missing("/proc/net/pppoe"))) {
    const release = await runCommand("uname", ["-r"]).then(
      (r) => r.stdout.trim(),
      () => "?",
    );
    return `this kernel (${release}) has no PPP or PPPoE (CONFIG_PPP, CONFIG_PPPOE; no /dev/ppp or /proc/net/pppoe); run the lab in a VM with Debian's kernel: bash scripts/vm.sh -- uplinkd lab up --pppoe ...`;
  }
  for (const [tool, pkg] of [
    ["pppd", "ppp"],
    ["pppoe-server", "pppoe"],
  ] as const) {
    const found = await runCommand("sh", ["-c", `command -v ${tool}`]).then(
      () => true,
      () => false,
    );
    if (!found) return `PPPoE uplinks need ${tool}: apt-get install ${pkg}`;
  }
  return undefined;
}

/**
 * The kernel-mode PPPoE plugin pppd has: `pppoe.so` (ppp 2.5, and a link
 * to rp-pppoe.so in 2.4.9) or `rp-pppoe.so`, as a path under
 * `/usr/lib/pppd/VERSION/`.
 * @throws {Error} when neither is there.
 */
export async function pppoePlugin(root = "/usr/lib/pppd"): Promise<string> {
  const versions = await readdir(root).catch(() => [] as string[]);
  for (const version of versions.sort().reverse()) {
    for (const name of ["pppoe.so", "rp-pppoe.so"]) {
      const path = `${root}/${version}/${name}`;
      const present = await access(path).then(
        () => true,
        () => false,
      );
      if (present) return path;
    }
  }
  throw new Error(
    `no kernel-mode PPPoE plugin (pppoe.so, rp-pppoe.so) under ${root}: apt-get install ppp`,
  );
}

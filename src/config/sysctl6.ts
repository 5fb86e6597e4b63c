/**
 * The IPv6 sysctls uplinkd needs the admin to set, checked at `check` and
 * at start. Kernel fact (Documentation/networking/ip-sysctl.rst,
 * `accept_ra`): with forwarding on for an interface, `accept_ra = 1`
 * ignores router advertisements; only `2` accepts them. A router
 * (forwarding on) whose uplink learns its IPv6 default router or its SLAAC
 * address from router advertisements needs `accept_ra = 2` there.
 *
 * The files under /proc/sys/net belong to the network namespace of the
 * process that reads them, so this says what holds where uplinkd runs.
 */
import { readFile } from "node:fs/promises";
import type { Config } from "./schema.js";

/** Reads a sysctl file's text; undefined when it does not exist (no such interface). */
export type ReadSysctl = (path: string) => Promise<string | undefined>;

const readProc: ReadSysctl = (path) => readFile(path, "utf8").catch(() => undefined);

/** One sysctl warning: the uplink and what to do. */
export interface SysctlWarning {
  uplink: string;
  message: string;
}

/**
 * Warnings for every uplink that takes its IPv6 gateway from router
 * advertisements (`gateway6: auto`) on an interface with forwarding on and
 * `accept_ra` other than 2. An interface that does not exist (yet) gives
 * no warning.
 */
export async function acceptRaWarnings(
  config: Config,
  read: ReadSysctl = readProc,
): Promise<SysctlWarning[]> {
  const warnings: SysctlWarning[] = [];
  for (const uplink of config.uplinks) {
    if (uplink.gateway6 !== "auto") continue;
    const dir = `/proc/sys/net/ipv6/conf/${uplink.interface}`;
    const [forwarding, acceptRa] = await Promise.all([
      read(`${dir}/forwarding`),
      read(`${dir}/accept_ra`),
    ]);
    if (forwarding === undefined || acceptRa === undefined) continue;
    if (forwarding.trim() !== "1" || acceptRa.trim() === "2") continue;
    warnings.push({
      uplink: uplink.name,
      message: `net.ipv6.conf.${uplink.interface}.accept_ra is ${acceptRa.trim()} while forwarding is on: the kernel ignores router advertisements on ${uplink.interface}, so uplink ${uplink.name} gets no IPv6 default router (gateway6: auto) and no SLAAC address; set it to 2 (sysctl -w net.ipv6.conf.${uplink.interface}.accept_ra=2), or give gateway6 or gateway6: none`,
    });
  }
  return warnings;
}

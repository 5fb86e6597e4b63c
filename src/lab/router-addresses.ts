/**
 * What the lab reads from its router namespace: interface addresses of both
 * families, DHCP results, router advertisements (the ISPs' gateways) and
 * the prefix delegated by DHCPv6 (`lab up --pd`).
 */
import { chmod, readFile, rm, writeFile } from "node:fs/promises";
import { LabError } from "./errors.js";
import { labRun, waitFor, startDetachedIn } from "./netns.js";
import { dhclientArgv, dhclientScript, ipv6Paths } from "./ipv6.js";
import { type LabProcess } from "./state.js";
import {
  addressIn,
  ispLinkLocal6,
  uplinkNetwork6,
  ROUTER_TOKEN,
  type UplinkPlan,
} from "./topology.js";
import { errorText, tail } from "./logs.js";

export interface IpAddrJson {
  ifname?: string;
  flags?: string[];
  operstate?: string;
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

export async function readRouterLinks(rtr: string): Promise<IpAddrJson[]> {
  const { stdout } = await labRun(`read addresses in ${rtr}`, "ip", [
    "-n",
    rtr,
    "-j",
    "addr",
    "show",
  ]);
  return JSON.parse(stdout) as IpAddrJson[];
}

export function ipv4Of(link: IpAddrJson | undefined): string[] {
  return (link?.addr_info ?? [])
    .filter((a) => a.family === "inet" && a.local !== undefined)
    .map((a) => `${a.local ?? ""}/${a.prefixlen ?? 32}`);
}

/**
 * True once the router holds `address` on `dev` and a default route via
 * `dev` in its main table (what the udhcpc script installs); else undefined.
 */
export async function dhcpApplied(
  rtr: string,
  dev: string,
  address: string,
): Promise<true | undefined> {
  const addresses = await routerAddresses(rtr, dev);
  if (!addresses.some((c) => c.startsWith(`${address}/`))) return undefined;
  const { stdout } = await labRun(`read routes in ${rtr}`, "ip", [
    "-n",
    rtr,
    "-j",
    "-4",
    "route",
    "show",
    "default",
    "dev",
    dev,
  ]);
  return (JSON.parse(stdout) as unknown[]).length > 0 ? true : undefined;
}

/** IPv4 addresses (CIDR) of `dev` in namespace `rtr`; [] when it has none. */
export async function routerAddresses(rtr: string, dev: string): Promise<string[]> {
  const { stdout } = await labRun(`read addresses of ${dev} in ${rtr}`, "ip", [
    "-n",
    rtr,
    "-j",
    "-4",
    "addr",
    "show",
    "dev",
    dev,
  ]);
  return ipv4Of((JSON.parse(stdout) as IpAddrJson[])[0]);
}

export interface IpAddr6Json {
  addr_info?: {
    family?: string;
    local?: string;
    prefixlen?: number;
    scope?: string;
    deprecated?: boolean;
    tentative?: boolean;
  }[];
}

/** Global IPv6 addresses (CIDR) of `dev` in `rtr`, deprecated ones with ` (deprecated)` after them. */
export async function routerAddresses6(rtr: string, dev: string): Promise<string[]> {
  const { stdout } = await labRun(`read IPv6 addresses of ${dev} in ${rtr}`, "ip", [
    "-n",
    rtr,
    "-j",
    "-6",
    "addr",
    "show",
    "dev",
    dev,
    "scope",
    "global",
  ]);
  return ((JSON.parse(stdout) as IpAddr6Json[])[0]?.addr_info ?? [])
    .filter((a) => a.family === "inet6" && a.local !== undefined)
    .map(
      (a) =>
        `${a.local ?? ""}/${a.prefixlen ?? 128}` +
        (a.deprecated === true ? " (deprecated)" : "") +
        (a.tentative === true ? " (tentative)" : ""),
    );
}

/** Routers of `default ... proto ra` routes via `dev` in the main table of `rtr`, lowest metric first. */
export async function raGateways(rtr: string, dev: string): Promise<string[]> {
  const { stdout } = await labRun(`read IPv6 default routes of ${dev} in ${rtr}`, "ip", [
    "-n",
    rtr,
    "-j",
    "-6",
    "route",
    "show",
    "default",
    "dev",
    dev,
    "proto",
    "ra",
  ]);
  return (JSON.parse(stdout) as { gateway?: string; metric?: number }[])
    .sort((a, b) => (a.metric ?? 0) - (b.metric ?? 0))
    .flatMap((r) => (r.gateway === undefined ? [] : [r.gateway]));
}

/**
 * Wait (at most `timeoutMs`) until the router holds its SLAAC address of
 * uplink network generation `network` (not deprecated) and a default route
 * via the ISP router's link-local address of generation `router`, from
 * router advertisements alone.
 * @throws {LabError} naming what is missing and the radvd log's end.
 */
export async function waitForRa(
  dir: string,
  rtr: string,
  u: UplinkPlan,
  network: number,
  router: number,
  timeoutMs = 15_000,
): Promise<void> {
  const address = addressIn(uplinkNetwork6(u.number, network), ROUTER_TOKEN);
  const gateway = ispLinkLocal6(router);
  await waitFor(
    `router address ${address} and default via ${gateway} on ${u.routerInterface} from router advertisements`,
    timeoutMs,
    async () => {
      const addresses = await routerAddresses6(rtr, u.routerInterface);
      if (!addresses.includes(`${address}/64`)) return undefined;
      return (await raGateways(rtr, u.routerInterface)).includes(gateway) ? true : undefined;
    },
    100,
  ).catch(async (error: unknown) => {
    const log = ipv6Paths(dir, u).radvdLog;
    throw new LabError(`${errorText(error)}; ${log}: ${await tail(log)}`, { cause: error });
  });
}

/** The prefix in a delegated-prefix file, or undefined while there is none. */
export async function readDelegatedPrefix(file: string): Promise<string | undefined> {
  const text = (await readFile(file, "utf8").catch(() => "")).trim();
  return text === "" ? undefined : text;
}

/**
 * Start the router's DHCPv6-PD client on uplink `u` (writing its config and
 * event script first).
 * @returns the process, to record.
 */
export async function startPdClient(dir: string, rtr: string, u: UplinkPlan): Promise<LabProcess> {
  const paths = ipv6Paths(dir, u);
  await writeFile(
    paths.clientConfig,
    "# uplinkd lab: dhclient -6 -P, nothing beyond the defaults\n",
  );
  await writeFile(paths.clientScript, dhclientScript(dir));
  await chmod(paths.clientScript, 0o755);
  await rm(paths.clientPid, { force: true });
  const pid = startDetachedIn(rtr, dhclientArgv(dir, u), paths.clientLog);
  return { name: `dhclient6-${u.routerInterface}`, node: "rtr", pid, log: paths.clientLog };
}

/**
 * Wait (at most `timeoutMs`) until the router's client recorded `want` as
 * the prefix delegated on uplink `u`.
 * @throws {LabError} with the ends of the client's and the ISP server's logs.
 */
export async function waitForDelegatedPrefix(
  dir: string,
  u: UplinkPlan,
  want: string,
  timeoutMs = 20_000,
): Promise<void> {
  const paths = ipv6Paths(dir, u);
  await waitFor(
    `delegated prefix ${want} on ${u.routerInterface}`,
    timeoutMs,
    async () =>
      (await readDelegatedPrefix(paths.delegatedPrefixFile)) === want ? true : undefined,
    100,
  ).catch(async (error: unknown) => {
    throw new LabError(
      `${errorText(error)}; ${paths.clientLog}: ${await tail(paths.clientLog)}; ${paths.keaLog}: ${await tail(paths.keaLog)}`,
      { cause: error },
    );
  });
}

/**
 * The daemon config `lab up` writes for its router: every uplink of the
 * lab, the lab's ping targets, and a control socket inside the lab's state
 * directory (so two labs never share one).
 */
import { stringify } from "yaml";
import { configSchema } from "../config/schema.js";
import { LabError } from "./errors.js";
import { ipv6Paths } from "./ipv6.js";
import { labTimeScale } from "./netns.js";
import { ispResolver, type resolverPaths } from "./resolver.js";
import { LAB_HOSTS, LAB_HOSTS6, LAN, type LabPlan, type UplinkPlan } from "./topology.js";

/** IPv6 health targets of the lab (the internet's IPv6 ping targets), for configs that list them. */
export const LAB_HEALTH_TARGETS6: readonly string[] = LAB_HOSTS6.pingTargets;

/**
 * An uplink's IPv6 fields for the lab config, once the config schema has
 * them (issue 10's `gateway6`, `prefix6`, `prefix6_file`): `gateway6: auto`
 * (the router of the ISP's router advertisements) or `none` for a
 * point-to-point uplink (IPv4 only in the lab); with prefix delegation
 * (`pd`), `prefix6: auto` and `prefix6_file`, the file the router's DHCPv6
 * client writes the delegated prefix to (in `stateDir`). `renderLabConfig`
 * does not write them yet.
 */
export function labUplinkIpv6Config(
  u: UplinkPlan,
  pd: boolean,
  stateDir: string,
): { gateway6: "auto" | "none"; prefix6?: "auto"; prefix6_file?: string } {
  if (u.ipv6 === undefined) return { gateway6: "none" };
  if (!pd) return { gateway6: "auto" };
  return {
    gateway6: "auto",
    prefix6: "auto",
    prefix6_file: ipv6Paths(stateDir, u).delegatedPrefixFile,
  };
}

/**
 * The lab's health profile: probes every 200 ms with a 500 ms timeout (the
 * fast profile), or the daemon's defaults (500 ms, 1 s) when the lab runs
 * slowed down ({@link labTimeScale} > 1: an emulated machine, where the
 * daemon can miss 3 rounds of 200 ms while it starts its probes).
 */
export function labHealthProfile(): { interval: string; timeout: string } {
  return labTimeScale() > 1
    ? { interval: "500ms", timeout: "1s" }
    : { interval: "200ms", timeout: "500ms" };
}

/**
 * The config as YAML text: `private_targets: true`, `lan: [lan0]`; uplinks `ispI` on `wanI` with
 * gateway `100.64.I.1` (`auto` for DHCP uplinks, `none` for point-to-point
 * ones; CGNAT ones pin their ISP's private upstream network), their weight and tier;
 * health targets 198.51.100.1 and 203.0.113.1 and the IPv6 ones
 * ({@link LAB_HEALTH_TARGETS6}: 2001:db8:ffff::1 and ::2) at {@link labHealthProfile};
 * each uplink's IPv6 fields from {@link labUplinkIpv6Config} (`ipv6.pd`: the
 * lab delegates prefixes, `ipv6.stateDir`: the lab's state directory; without
 * `ipv6`, no prefix delegation and no `prefix6_file`);
 * `control.socket` = `controlSocket`. `configPath` only appears in a comment.
 * With `resolver` (the router's dnsmasq): each uplink's `dns` is its ISP's
 * resolver (203.0.113.(50+I)) and `dns.dnsmasq` points at the resolver's
 * files, its restart script and pid file.
 * @throws {LabError} when the result does not pass the config schema (a lab bug).
 */
export function renderLabConfig(
  plan: LabPlan,
  controlSocket: string,
  configPath: string,
  resolver?: ReturnType<typeof resolverPaths>,
  ipv6: { pd: boolean; stateDir: string } = { pd: false, stateDir: "" },
): string {
  const config = {
    // Lab targets are documentation addresses: `check` expects them here.
    private_targets: true,
    lan: [LAN.routerInterface],
    uplinks: plan.uplinks.map((u) => ({
      name: u.name,
      interface: u.routerInterface,
      gateway: u.dhcp || u.kind === "pppoe" ? "auto" : u.kind === "p2p" ? "none" : u.gateway,
      weight: u.weight,
      tier: u.tier,
      ...labUplinkIpv6Config(u, ipv6.pd, ipv6.stateDir),
      ...(resolver === undefined ? {} : { dns: [ispResolver(u.number)] }),
      ...(u.upstream === undefined ? {} : { pinned: [u.upstream.network] }),
    })),
    health: {
      targets: [...LAB_HOSTS.pingTargets, ...LAB_HEALTH_TARGETS6],
      ...labHealthProfile(),
    },
    control: { socket: controlSocket },
    ...(resolver === undefined
      ? {}
      : {
          dns: {
            dnsmasq: {
              nftset_file: resolver.nftsetFile,
              servers_file: resolver.serversFile,
              reload: [resolver.restartScript],
              pid_file: resolver.pidFile,
            },
          },
        }),
  };
  const checked = configSchema.safeParse(config);
  if (!checked.success) {
    throw new LabError(`lab config does not validate: ${checked.error.message}`);
  }
  const header =
    `# uplinkd config for the lab "${plan.prefix}", written by \`uplinkd lab up\`.\n` +
    `# Run the daemon in the router namespace: uplinkd lab exec rtr --prefix ${plan.prefix} -- uplinkd run -c ${configPath}\n`;
  return header + stringify(config);
}

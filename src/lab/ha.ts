/**
 * The HA lab (`uplinkd lab up --ha`): two routers sharing the LAN and every
 * ISP segment, with keepalived (VRRP), conntrackd (FTFW) and uplinkd
 * running in each. Built on a normal lab (see lab.ts), which it rewires:
 *
 *                        P-sw (bridges)
 *     P-lan eth0 ─ c-lan ┐
 *     P-rtr lan0 ─ a-lan ├ brlan   100.64.100.0/24: client .2, virtual .1, a .11, b .12
 *     P-rtr2 lan0 ─ b-lan┘
 *     P-ispI cust ─ i-ispI ┐
 *     P-rtr wanI ─ a-wanI  ├ brispI  100.64.I.0/24: gateway .1, a .2, b .3, virtual .10
 *     P-rtr2 wanI ─ b-wanI ┘
 *     P-rtr sync0 ──────── sync0 P-rtr2   100.64.250.0/24: a .1, b .2 (conntrackd)
 *
 * Dual-stack, every segment:
 *
 *     LAN    fd00:1::/64: client ::100 (static, default router from RAs),
 *            virtual fd00:1::1 and fe80::1 (the default router), a ::11, b ::12;
 *            radvd on the master only (the notify script starts and kills it)
 *     ispI   2001:db8:I::/64: gateway fe80::1 and ::1, a ::2, b ::3, virtual ::10
 *            (static addresses, no router advertisements taken); isp1 routes its
 *            delegation pool 2001:db8:1001::/48 to the virtual ::10 and both
 *            routers have `prefix6: 2001:db8:1001::/56` there (NPTv6); the other
 *            uplinks masquerade to their virtual address
 *
 * Router `a` (namespace P-rtr, priority 20) is master when both are
 * healthy; `b` (P-rtr2, priority 10) is its backup. Each has its files in
 * `STATE_DIR/ha-a` or `ha-b`: uplinkd.yaml, the rendered keepalived.conf,
 * conntrackd.conf, radvd.conf and notify script, the track and state files,
 * radvd's pid file and the logs; conntrackd's socket and lock file are there
 * too, so two nodes (and two labs) never share one. The VRRP advert
 * interval is 100 ms unless `advertMs` says otherwise.
 *
 * Only static ethernet uplinks (no --dhcp, --p2p, --cgnat).
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { parseConfig } from "../config/load.js";
import type { StatusDocument } from "../control/api.js";
import { tail } from "./logs.js";
import { LabError } from "./errors.js";
import { haFiles, writeHaFiles } from "../ha/cli.js";
import { parseStateFile, type HaRole } from "../ha/part.js";
import { renderLabConfig } from "./config.js";
import { statusAt, uplinkdArgv } from "./daemon.js";
import { labUp, openLab, type Lab, type LabUpOptions } from "./lab.js";
import { ipBatch, labRun, namespacePids, setSysctls, startDetachedIn, waitFor } from "./netns.js";
import {
  addressIn,
  ISP_INTERFACES,
  LAN,
  LAN6,
  namespaceOf,
  type LabPlan,
  type UplinkPlan,
} from "./topology.js";

/** The two routers of the HA lab. */
export type HaNodeName = "a" | "b";

/** Addresses of the HA lab. */
export const HA_LAB = {
  /** The clients' gateway, a virtual address (the normal lab's router address). */
  lanVirtual: LAN.routerAddress,
  /** Each router's own LAN address. */
  lanAddress: { a: "100.64.100.11", b: "100.64.100.12" },
  /** The LAN's IPv6 virtual addresses: the ULA one (the normal lab's router address). */
  lanVirtual6: LAN6.routerAddress,
  /** The LAN's virtual link-local address: the clients' IPv6 default router (from RAs). */
  lanLinkLocal: "fe80::1",
  /** Each router's own ULA address on the LAN. */
  lanAddress6: { a: "fd00:1::11", b: "fd00:1::12" },
  /** The sync link: interface and each router's address (/24). */
  sync: { interface: "sync0", a: "100.64.250.1", b: "100.64.250.2" },
  /** VRRP priorities: a wins while both are equally healthy. */
  priority: { a: 20, b: 10 },
  /** VRRP advert interval by default, ms. */
  advertMs: 100,
  /** Wait of a returning router before it takes mastership back, ms. */
  preemptDelayMs: 2000,
  /** Name of the switch's bridge of the LAN and of ISP I. */
  lanBridge: "brlan",
} as const;

/** Lab node (namespace suffix) of a router. */
export function haNode(name: HaNodeName): "rtr" | "rtr2" {
  return name === "a" ? "rtr" : "rtr2";
}

/** Router `name`'s own address on uplink `u`'s segment: `100.64.I.2` (a) or `.3` (b). */
export function haUplinkAddress(u: UplinkPlan, name: HaNodeName): string {
  return name === "a" ? u.routerAddress : u.routerAddress.replace(/\.2$/, ".3");
}

/** The uplink's virtual address: `100.64.I.10`. */
export function haUplinkVirtual(u: UplinkPlan): string {
  return u.routerAddress.replace(/\.2$/, ".10");
}

/** Router `name`'s own IPv6 address on uplink `u`'s segment: `2001:db8:I::2` (a) or `::3` (b). */
export function haUplinkAddress6(u: UplinkPlan, name: HaNodeName): string {
  return addressIn(ipv6Of(u).network, name === "a" ? "::2" : "::3");
}

/** The uplink's IPv6 virtual address: `2001:db8:I::10`. */
export function haUplinkVirtual6(u: UplinkPlan): string {
  return addressIn(ipv6Of(u).network, "::10");
}

/**
 * The static `prefix6` of uplink `u` in the HA lab (NPTv6): the first
 * uplink's is the prefix its ISP delegates in the normal lab
 * (`2001:db8:1001::/56`), routed by the ISP to the virtual address; the
 * others have none (masquerade to the virtual address).
 */
export function haUplinkPrefix6(u: UplinkPlan): string | undefined {
  return u.number === 1 ? ipv6Of(u).delegatedPrefix : undefined;
}

/**
 * The address the echo host sees for the LAN client's IPv6 connections by
 * uplink `u`: the client's address translated into the uplink's `prefix6`
 * (`2001:db8:1001::100`), or else the uplink's IPv6 virtual address.
 */
export function haClientSource6(u: UplinkPlan): string {
  const prefix6 = haUplinkPrefix6(u);
  const iid = LAN6.clientAddress.slice(LAN6.clientAddress.indexOf("::"));
  return prefix6 === undefined ? haUplinkVirtual6(u) : addressIn(prefix6, iid);
}

function ipv6Of(u: UplinkPlan): NonNullable<UplinkPlan["ipv6"]> {
  if (u.ipv6 === undefined) throw new LabError(`${u.name} has no IPv6`);
  return u.ipv6;
}

/** Bridge of uplink `u`'s segment in the switch: `brisp1`. */
function ispBridge(u: UplinkPlan): string {
  return `br${u.name}`;
}

/** Switch port of router `name` on the LAN (`a-lan`) or on an uplink (`a-wan1`). */
export function haSwitchPort(name: HaNodeName, u?: UplinkPlan): string {
  return u === undefined ? `${name}-lan` : `${name}-${u.routerInterface}`;
}

const lines = (l: readonly string[]): string => l.map((x) => `${x}\n`).join("");

/**
 * Router batch: the LAN veth (switch port `X-lan`), one veth per uplink
 * (switch port `X-wanI`) with the router's own address, and (router a) the
 * sync link to router b. Run after the normal lab's veths are gone.
 */
export function renderHaRouterBatch(plan: LabPlan, name: HaNodeName): string {
  const sw = namespaceOf(plan.prefix, "sw");
  const out = [
    "link set lo up",
    `link add ${LAN.routerInterface} type veth peer name ${haSwitchPort(name)} netns ${sw}`,
    `addr add ${HA_LAB.lanAddress[name]}/${LAN.prefixLength} dev ${LAN.routerInterface}`,
    `addr add ${HA_LAB.lanAddress6[name]}/${LAN6.prefixLength} dev ${LAN.routerInterface}`,
    `link set ${LAN.routerInterface} up`,
  ];
  for (const u of plan.uplinks) {
    out.push(
      `link add ${u.routerInterface} type veth peer name ${haSwitchPort(name, u)} netns ${sw}`,
      `addr add ${haUplinkAddress(u, name)}/24 dev ${u.routerInterface}`,
      `addr add ${haUplinkAddress6(u, name)}/64 dev ${u.routerInterface}`,
      `link set ${u.routerInterface} up`,
    );
  }
  if (name === "a") {
    out.push(
      `link add ${HA_LAB.sync.interface} type veth peer name ${HA_LAB.sync.interface} netns ${namespaceOf(plan.prefix, "rtr2")}`,
    );
  }
  out.push(
    `addr add ${HA_LAB.sync[name]}/24 dev ${HA_LAB.sync.interface}`,
    `link set ${HA_LAB.sync.interface} up`,
  );
  return lines(out);
}

/**
 * Switch batch: one bridge per segment, every port in its bridge and up.
 * Multicast snooping is off: the bridges flood VRRP adverts and neighbour
 * solicitations to every port, as a plain switch does.
 */
export function renderHaSwitchBatch(plan: LabPlan): string {
  const bridge = (name: string) => `link add ${name} type bridge mcast_snooping 0`;
  const out = ["link set lo up", bridge(HA_LAB.lanBridge)];
  for (const u of plan.uplinks) out.push(bridge(ispBridge(u)));
  const port = (dev: string, bridge: string) => [
    `link set ${dev} master ${bridge}`,
    `link set ${dev} up`,
  ];
  out.push(...port("c-lan", HA_LAB.lanBridge));
  for (const name of ["a", "b"] as const) {
    out.push(...port(haSwitchPort(name), HA_LAB.lanBridge));
    for (const u of plan.uplinks) out.push(...port(haSwitchPort(name, u), ispBridge(u)));
  }
  for (const u of plan.uplinks) out.push(...port(`i-${u.name}`, ispBridge(u)));
  out.push(
    `link set ${HA_LAB.lanBridge} up`,
    ...plan.uplinks.map((u) => `link set ${ispBridge(u)} up`),
  );
  return lines(out);
}

/** Paths of one router's files. */
export interface HaNodePaths {
  dir: string;
  config: string;
  controlSocket: string;
  keepalivedPid: string;
  vrrpPid: string;
  radvdConfig: string;
  radvdPid: string;
  log: { keepalived: string; conntrackd: string; uplinkd: string };
}

/** Where router `name`'s files go in the lab's state directory. */
export function haNodePaths(stateDir: string, name: HaNodeName): HaNodePaths {
  const dir = join(stateDir, `ha-${name}`);
  return {
    dir,
    config: join(dir, "uplinkd.yaml"),
    controlSocket: join(dir, "uplinkd.sock"),
    keepalivedPid: join(dir, "keepalived.pid"),
    vrrpPid: join(dir, "keepalived-vrrp.pid"),
    radvdConfig: join(dir, "radvd.conf"),
    radvdPid: join(dir, "radvd.pid"),
    log: {
      keepalived: join(dir, "keepalived.log"),
      conntrackd: join(dir, "conntrackd.out"),
      uplinkd: join(dir, "uplinkd.log"),
    },
  };
}

/**
 * Router `name`'s uplinkd config (YAML): the normal lab's config (no LAN
 * resolver) with each uplink's IPv6 static (`gateway6` the ISP's
 * link-local router, the first uplink's `prefix6`, see
 * {@link haUplinkPrefix6}), the same on both routers, and an `ha` section
 * (adverts every `advertMs`) whose files all live in the node's directory.
 * @throws {ConfigError} when the result does not validate (a lab bug).
 */
export function renderHaNodeConfig(
  plan: LabPlan,
  stateDir: string,
  name: HaNodeName,
  advertMs: number = HA_LAB.advertMs,
): string {
  const paths = haNodePaths(stateDir, name);
  const peer: HaNodeName = name === "a" ? "b" : "a";
  const config = parse(renderLabConfig(plan, paths.controlSocket, paths.config)) as Record<
    string,
    unknown
  > & { uplinks: Record<string, unknown>[] };
  config.uplinks = config.uplinks.map((entry, i) => {
    const u = plan.uplinks[i];
    if (u?.ipv6 === undefined) return entry;
    const prefix6 = haUplinkPrefix6(u);
    return { ...entry, gateway6: u.ipv6.gateway, ...(prefix6 === undefined ? {} : { prefix6 }) };
  });
  config.ha = {
    node: name,
    priority: HA_LAB.priority[name],
    peer: { name: peer, address: HA_LAB.sync[peer] },
    sync: { interface: HA_LAB.sync.interface, address: HA_LAB.sync[name] },
    advert_interval: `${advertMs}ms`,
    preempt_delay: `${HA_LAB.preemptDelayMs}ms`,
    virtual_addresses: {
      [LAN.routerInterface]: [
        `${HA_LAB.lanVirtual}/${LAN.prefixLength}`,
        `${HA_LAB.lanVirtual6}/${LAN6.prefixLength}`,
        `${HA_LAB.lanLinkLocal}/64`,
      ],
      ...Object.fromEntries(
        plan.uplinks.map((u) => [
          u.routerInterface,
          [`${haUplinkVirtual(u)}/24`, `${haUplinkVirtual6(u)}/64`],
        ]),
      ),
    },
    track_file: join(paths.dir, "ha-score"),
    state_file: join(paths.dir, "ha-role"),
    keepalived_config: join(paths.dir, "keepalived.conf"),
    notify_script: join(paths.dir, "notify.sh"),
    radvd: { config: paths.radvdConfig, pid_file: paths.radvdPid },
    conntrackd: {
      config: join(paths.dir, "conntrackd.conf"),
      socket: join(paths.dir, "conntrackd.ctl"),
      lock_file: join(paths.dir, "conntrackd.lock"),
      log_file: join(paths.dir, "conntrackd.log"),
    },
  };
  const text =
    `# uplinkd config of HA router ${name} in lab "${plan.prefix}", written by \`uplinkd lab up --ha\`.\n` +
    stringify(config);
  parseConfig(text, paths.config);
  return text;
}

/** What `--ha` adds to the state directory (`ha.json`). */
export interface HaLabState {
  version: 1;
  /** VRRP advert interval of both routers, ms (absent in older labs: 200). */
  advertMs?: number;
  nodes: Record<HaNodeName, { pids: Record<string, number> }>;
}

/**
 * Options of {@link haLabUp}: those of a normal lab (static ethernet
 * uplinks only) and the VRRP advert interval (ms, whole centiseconds;
 * default {@link HA_LAB}.advertMs).
 */
export type HaLabUpOptions = LabUpOptions & { advertMs?: number };

/**
 * Build the HA lab and start conntrackd, uplinkd and keepalived in both
 * routers; returns once one router is master and the other backup.
 * @throws {LabError} for DHCP, point-to-point or CGNAT uplinks, a missing
 *   keepalived or conntrackd, or any failing command; the lab is removed.
 */
export async function haLabUp(options: HaLabUpOptions = {}): Promise<HaLab> {
  for (const [what, list] of [
    ["--dhcp", options.dhcp],
    ["--p2p", options.p2p],
    ["--cgnat", options.cgnat],
    ["--pppoe", options.pppoe],
  ] as const) {
    if ((list ?? []).length > 0) {
      throw new LabError(`--ha builds static ethernet uplinks only; drop ${what}`);
    }
  }
  for (const tool of ["keepalived", "conntrackd", "radvd"]) {
    try {
      await labRun(`find ${tool}`, "sh", ["-c", `command -v ${tool}`]);
    } catch {
      throw new LabError(`--ha needs ${tool}: apt-get install keepalived conntrackd radvd`);
    }
  }
  const { advertMs = HA_LAB.advertMs, ...labOptions } = options;
  const lab = await labUp(labOptions);
  try {
    const plan = lab.plan;
    const rtr = lab.namespace("rtr");
    const rtr2 = namespaceOf(plan.prefix, "rtr2");
    const sw = namespaceOf(plan.prefix, "sw");
    await ipBatch(
      `create HA namespaces of lab ${plan.prefix}`,
      null,
      `netns add ${rtr2}\nnetns add ${sw}\n`,
    );
    // Both routers: IPv6 forwarding, no DAD, no router advertisements taken (their
    // uplinks are static; on the LAN they would hear each other's radvd). Set before
    // the links are made: new links take the `default` values.
    const router6 = [
      "net.ipv6.conf.all.disable_ipv6=0",
      "net.ipv6.conf.default.disable_ipv6=0",
      "net.ipv6.conf.all.accept_dad=0",
      "net.ipv6.conf.default.accept_dad=0",
      "net.ipv6.conf.all.forwarding=1",
      "net.ipv6.conf.default.forwarding=1",
      "net.ipv6.conf.all.accept_ra=0",
      "net.ipv6.conf.default.accept_ra=0",
    ];
    await setSysctls(rtr2, [
      "net.ipv4.ip_forward=1",
      "net.ipv4.conf.all.rp_filter=0",
      "net.ipv4.conf.default.rp_filter=0",
      ...router6,
    ]);
    await setSysctls(rtr, router6);
    // The client takes its IPv6 default router from the master's RAs, but no SLAAC address.
    await setSysctls(lab.namespace("lan"), [
      "net.ipv6.conf.default.accept_ra=1",
      "net.ipv6.conf.default.autoconf=0",
    ]);
    await setSysctls(sw, [
      "net.ipv6.conf.all.disable_ipv6=1",
      "net.ipv6.conf.default.disable_ipv6=1",
    ]);
    // The normal lab's point-to-point veths go (deleting one end deletes its peer).
    await ipBatch(
      `unwire router ${rtr}`,
      rtr,
      lines([
        `link del ${LAN.routerInterface}`,
        ...plan.uplinks.map((u) => `link del ${u.routerInterface}`),
      ]),
    );
    await ipBatch(
      `wire client ${lab.namespace("lan")} to the switch`,
      lab.namespace("lan"),
      lines([
        `link add ${LAN.clientInterface} type veth peer name c-lan netns ${sw}`,
        `addr add ${LAN.clientAddress}/${LAN.prefixLength} dev ${LAN.clientInterface}`,
        `addr add ${LAN6.clientAddress}/${LAN6.prefixLength} dev ${LAN.clientInterface}`,
        `link set ${LAN.clientInterface} up`,
        `route add default via ${HA_LAB.lanVirtual}`,
      ]),
    );
    for (const u of plan.uplinks) {
      const v6 = ipv6Of(u);
      const prefix6 = haUplinkPrefix6(u);
      await ipBatch(
        `wire ISP ${u.namespace} to the switch`,
        u.namespace,
        lines([
          `link add ${ISP_INTERFACES.customer} type veth peer name i-${u.name} netns ${sw}`,
          `addr add ${u.gateway}/24 dev ${ISP_INTERFACES.customer}`,
          `link set ${ISP_INTERFACES.customer} addrgenmode none`,
          `addr add ${v6.gateway}/64 dev ${ISP_INTERFACES.customer}`,
          `addr add ${v6.ispAddress}/64 dev ${ISP_INTERFACES.customer}`,
          `link set ${ISP_INTERFACES.customer} up`,
          // The delegation pool goes to the uplink's virtual address (NPTv6 uplinks).
          ...(prefix6 === undefined
            ? []
            : [`route replace ${v6.delegationPool} via ${haUplinkVirtual6(u)}`]),
        ]),
      );
    }
    await ipBatch(`wire router a in ${rtr}`, rtr, renderHaRouterBatch(plan, "a"));
    await ipBatch(`wire router b in ${rtr2}`, rtr2, renderHaRouterBatch(plan, "b"));
    await ipBatch(`build switch ${sw}`, sw, renderHaSwitchBatch(plan));
    const state: HaLabState = {
      version: 1,
      advertMs,
      nodes: { a: { pids: {} }, b: { pids: {} } },
    };
    const ha = new HaLab(lab, state);
    for (const name of ["a", "b"] as const) {
      const paths = haNodePaths(lab.stateDir, name);
      await mkdir(paths.dir, { recursive: true });
      await writeFile(paths.config, renderHaNodeConfig(plan, lab.stateDir, name, advertMs));
      const config = parseConfig(await readFile(paths.config, "utf8"), paths.config);
      await writeHaFiles(haFiles(config, paths.config));
    }
    await Promise.all([ha.startNode("a"), ha.startNode("b")]);
    await ha.waitForRoles({ a: "master", b: "backup" }, 30_000);
    // The client's IPv6 default router: the virtual link-local, from the master's radvd.
    await waitFor("the LAN client's IPv6 default route via the virtual link-local", 30_000, () =>
      ha.clientRouter6().then((r) => (r === HA_LAB.lanLinkLocal ? true : undefined)),
    );
    return ha;
  } catch (error) {
    await lab.down().catch(() => undefined);
    throw error;
  }
}

/**
 * The HA lab with this prefix, built by {@link haLabUp} (possibly in
 * another process).
 * @throws {LabError} when there is no lab, or it was not built with --ha.
 */
export async function openHaLab(
  prefix: string,
  options: { stateRoot?: string } = {},
): Promise<HaLab> {
  const lab = await openLab(prefix, options);
  let state: HaLabState;
  try {
    state = JSON.parse(await readFile(join(lab.stateDir, "ha.json"), "utf8")) as HaLabState;
  } catch {
    throw new LabError(`lab ${prefix} was not built with --ha`);
  }
  return new HaLab(lab, state);
}

/** An HA lab: the normal lab plus the second router, the switch and their processes. */
export class HaLab {
  constructor(
    readonly lab: Lab,
    readonly state: HaLabState,
  ) {}

  /** Namespace of router `name`. */
  namespace(name: HaNodeName): string {
    return namespaceOf(this.lab.prefix, haNode(name));
  }

  /** Paths of router `name`'s files. */
  paths(name: HaNodeName): HaNodePaths {
    return haNodePaths(this.lab.stateDir, name);
  }

  async #save(): Promise<void> {
    await writeFile(join(this.lab.stateDir, "ha.json"), `${JSON.stringify(this.state, null, 2)}\n`);
  }

  /**
   * Start conntrackd, uplinkd and keepalived in router `name` (in that
   * order: keepalived's first notify needs conntrackd; its first election
   * uplinkd's score). Stale sockets, locks and role files are removed first.
   * @throws {LabError} when one does not come up (its log's end in the message).
   */
  async startNode(name: HaNodeName): Promise<void> {
    const ns = this.namespace(name);
    const p = this.paths(name);
    const config = parseConfig(await readFile(p.config, "utf8"), p.config);
    const ha = config.ha;
    if (ha === undefined) throw new LabError(`${p.config} has no ha section`);
    for (const f of [
      ha.conntrackd.socket,
      ha.conntrackd.lock_file,
      ha.state_file,
      ha.track_file,
      // A stale radvd pid file would have the notify script kill whatever has that pid now.
      ha.radvd.pid_file,
      p.keepalivedPid,
      p.vrrpPid,
      p.controlSocket,
    ]) {
      await rm(f, { force: true });
    }
    const pids = this.state.nodes[name].pids;
    pids.conntrackd = startDetachedIn(
      ns,
      ["conntrackd", "-C", ha.conntrackd.config],
      p.log.conntrackd,
    );
    await waitFor(`conntrackd of router ${name} answering`, 10_000, async () => {
      try {
        await labRun("conntrackd stats", "ip", [
          "netns",
          "exec",
          ns,
          "conntrackd",
          "-C",
          ha.conntrackd.config,
          "-s",
        ]);
        return true;
      } catch {
        return undefined;
      }
    }).catch(async (error: unknown) => {
      throw new LabError(
        `${String(error)}; ${p.log.conntrackd}: ${await tail(p.log.conntrackd, 8)}`,
      );
    });
    pids.uplinkd = startDetachedIn(ns, uplinkdArgv("run", "-c", p.config), p.log.uplinkd);
    // 60 s: uplinkd gives its first nft load that long (module autoloading, a busy machine).
    await waitFor(`uplinkd of router ${name} answering`, 60_000, () => this.status(name)).catch(
      async (error: unknown) => {
        throw new LabError(`${String(error)}; ${p.log.uplinkd}: ${await tail(p.log.uplinkd, 8)}`);
      },
    );
    pids.keepalived = startDetachedIn(
      ns,
      [
        "keepalived",
        "--dont-fork",
        "--log-console",
        "--log-detail",
        "--no-syslog",
        "--vrrp",
        "--use-file",
        ha.keepalived_config,
        "--pid",
        p.keepalivedPid,
        "--vrrp_pid",
        p.vrrpPid,
      ],
      p.log.keepalived,
    );
    await this.#save();
  }

  /** Router `name`'s uplinkd status, or undefined while its socket does not answer. */
  status(name: HaNodeName): Promise<StatusDocument | undefined> {
    return statusAt(this.paths(name).controlSocket);
  }

  /** Router `name`'s VRRP role as its notify script last wrote it (`unknown` before). */
  async role(name: HaNodeName): Promise<HaRole> {
    try {
      const text = await readFile(join(this.paths(name).dir, "ha-role"), "utf8");
      return parseStateFile(text)?.role ?? "unknown";
    } catch {
      return "unknown";
    }
  }

  /**
   * How long router `name`'s notify script took for its conntrackd
   * commands at its last role change (ms; on MASTER the commit path), as
   * its state file says; null before the first or from an older script.
   */
  async commitMs(name: HaNodeName): Promise<number | null> {
    try {
      const text = await readFile(join(this.paths(name).dir, "ha-role"), "utf8");
      return parseStateFile(text)?.commitMs ?? null;
    } catch {
      return null;
    }
  }

  /** VRRP advert interval of the pair, ms. */
  get advertMs(): number {
    return this.state.advertMs ?? 200;
  }

  /**
   * Which router holds the LAN's virtual address of `family` now (both: a
   * split brain; none): 100.64.100.1, or for 6 the link-local fe80::1.
   */
  async holders(family: 4 | 6 = 4): Promise<HaNodeName[]> {
    const virtual = family === 4 ? HA_LAB.lanVirtual : HA_LAB.lanLinkLocal;
    const out: HaNodeName[] = [];
    for (const name of ["a", "b"] as const) {
      const { stdout } = await labRun(`read addresses of ${name}`, "ip", [
        "-n",
        this.namespace(name),
        "-j",
        `-${family}`,
        "addr",
        "show",
        "dev",
        LAN.routerInterface,
      ]);
      const entries = JSON.parse(stdout) as { addr_info?: { local?: string }[] }[];
      if ((entries[0]?.addr_info ?? []).some((a) => a.local === virtual)) out.push(name);
    }
    return out;
  }

  /**
   * The LAN client's IPv6 default router (`ip -6 route show default`, the
   * first entry's gateway), learned from router advertisements; undefined
   * while it has none.
   */
  async clientRouter6(): Promise<string | undefined> {
    const { stdout } = await labRun("read the LAN client's IPv6 default route", "ip", [
      "-n",
      this.lab.namespace("lan"),
      "-j",
      "-6",
      "route",
      "show",
      "default",
    ]);
    return (JSON.parse(stdout) as { gateway?: string }[])[0]?.gateway;
  }

  /** Whether router `name`'s radvd (started by its notify script) runs: its pid file names a live process. */
  async radvdRunning(name: HaNodeName): Promise<boolean> {
    try {
      const pid = Number((await readFile(this.paths(name).radvdPid, "utf8")).trim());
      if (!Number.isInteger(pid) || pid <= 0) return false;
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Wait until the routers' notify scripts and uplinkd daemons report
   * `roles` and, of the routers named, the master alone holds the LAN's
   * virtual address.
   * @throws {LabError} when that does not happen within `timeoutMs`.
   */
  async waitForRoles(
    roles: Partial<Record<HaNodeName, HaRole>>,
    timeoutMs = 15_000,
  ): Promise<void> {
    const master = (Object.entries(roles) as [HaNodeName, HaRole][]).find(
      ([, r]) => r === "master",
    )?.[0];
    await waitFor(
      `roles ${JSON.stringify(roles)}`,
      timeoutMs,
      async () => {
        for (const [name, role] of Object.entries(roles) as [HaNodeName, HaRole][]) {
          if ((await this.role(name)) !== role) return undefined;
          // uplinkd reads the role file every 100 ms: wait until it reports the role too.
          if ((await this.status(name))?.ha?.role !== role) return undefined;
        }
        if (master !== undefined) {
          // A dead router (links cut, killed) may keep the addresses it held: only the named count.
          const named = Object.keys(roles);
          for (const family of [4, 6] as const) {
            const holders = (await this.holders(family)).filter((h) => named.includes(h));
            if (holders.length !== 1 || holders[0] !== master) return undefined;
          }
        }
        return true;
      },
      50,
    ).catch(async (error: unknown) => {
      const a = this.paths("a").log.keepalived;
      const b = this.paths("b").log.keepalived;
      throw new LabError(
        `${String(error)}: a ${await this.role("a")}, b ${await this.role("b")}; ${a}: ${await tail(a, 8)}; ${b}: ${await tail(b, 8)}`,
      );
    });
  }

  /**
   * Router `name` dies: its links are cut (its switch ports and the sync
   * link go down) and every process in its namespace is killed (SIGKILL,
   * no goodbye: keepalived sends no priority-0 advert).
   */
  async kill(name: HaNodeName): Promise<void> {
    const sw = namespaceOf(this.lab.prefix, "sw");
    await ipBatch(
      `cut router ${name}'s links`,
      sw,
      lines(
        [haSwitchPort(name), ...this.lab.plan.uplinks.map((u) => haSwitchPort(name, u))].map(
          (d) => `link set ${d} down`,
        ),
      ),
    );
    await ipBatch(
      `cut the sync link`,
      this.namespace(name),
      `link set ${HA_LAB.sync.interface} down\n`,
    );
    const ns = this.namespace(name);
    for (const pid of await namespacePids(ns)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await waitFor(`processes of router ${name} gone`, 5000, async () =>
      (await namespacePids(ns)).length === 0 ? true : undefined,
    );
  }

  /**
   * Router `name` comes back as after a reboot: the virtual addresses it
   * held and its conntrack table are gone, its links come up, and its
   * conntrackd, uplinkd and keepalived start again.
   */
  async restore(name: HaNodeName): Promise<void> {
    const ns = this.namespace(name);
    const plan = this.lab.plan;
    await ipBatch(
      `forget router ${name}'s virtual addresses`,
      ns,
      lines([
        `addr flush dev ${LAN.routerInterface} to ${HA_LAB.lanVirtual}/32`,
        `addr flush dev ${LAN.routerInterface} to ${HA_LAB.lanVirtual6}/128`,
        `addr flush dev ${LAN.routerInterface} to ${HA_LAB.lanLinkLocal}/128`,
        ...plan.uplinks.flatMap((u) => [
          `addr flush dev ${u.routerInterface} to ${haUplinkVirtual(u)}/32`,
          `addr flush dev ${u.routerInterface} to ${haUplinkVirtual6(u)}/128`,
        ]),
        `link set ${HA_LAB.sync.interface} up`,
      ]),
    );
    await labRun(`flush conntrack of ${name}`, "ip", [
      "netns",
      "exec",
      ns,
      "conntrack",
      "-F",
    ]).catch(() => undefined);
    await ipBatch(
      `reconnect router ${name}'s links`,
      namespaceOf(plan.prefix, "sw"),
      lines(
        [haSwitchPort(name), ...plan.uplinks.map((u) => haSwitchPort(name, u))].map(
          (d) => `link set ${d} up`,
        ),
      ),
    );
    await this.startNode(name);
  }

  /**
   * Every uplink of router `name` fails beyond its link (the switch drops
   * what it sends towards the ISP except ARP, VRRP, neighbour discovery and
   * traffic to the ISP's subnet, of both families), while the other
   * router's uplinks work; `heal` ends it.
   */
  async failUplinks(name: HaNodeName): Promise<void> {
    const rules = this.lab.plan.uplinks.flatMap((u) => [
      `\t\tiifname "${haSwitchPort(name, u)}" ip daddr != { ${u.subnet}, 224.0.0.0/4 } drop`,
      `\t\tiifname "${haSwitchPort(name, u)}" ip6 daddr != { ${ipv6Of(u).network}, fe80::/10, ff00::/8 } drop`,
    ]);
    await labRun(
      `fail router ${name}'s uplinks`,
      "ip",
      ["netns", "exec", namespaceOf(this.lab.prefix, "sw"), "nft", "-f", "-"],
      {
        input: `table bridge ha_fault_${name} {\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n${rules.join("\n")}\n\t}\n}\n`,
      },
    );
  }

  /** End {@link failUplinks} of router `name`. */
  async healUplinks(name: HaNodeName): Promise<void> {
    await labRun(`heal router ${name}'s uplinks`, "ip", [
      "netns",
      "exec",
      namespaceOf(this.lab.prefix, "sw"),
      "nft",
      "delete",
      "table",
      "bridge",
      `ha_fault_${name}`,
    ]);
  }

  /** Remove the whole lab (both routers, the switch, every process). */
  async down(): Promise<void> {
    await this.lab.down();
  }
}

/** What `lab up --ha` prints after the lab's status: each router's role, files and processes. */
export async function formatHaLab(ha: HaLab): Promise<string> {
  const out: string[] = [];
  for (const name of ["a", "b"] as const) {
    const p = ha.paths(name);
    const pids = Object.entries(ha.state.nodes[name].pids)
      .map(([k, v]) => `${k}[${v}]`)
      .join(" ");
    out.push(
      `router ${name} (${ha.namespace(name)}): ${await ha.role(name)}; ${pids}`,
      `  files:  ${p.dir} (uplinkd.yaml, keepalived.conf, conntrackd.conf, notify.sh, logs)`,
      `  status: uplinkd status --socket ${p.controlSocket}`,
    );
  }
  out.push(
    `kill router a:   ip -n ${namespaceOf(ha.lab.prefix, "sw")} link set a-lan down (and a-wanI, sync0), then kill its processes`,
    `remove the lab:  uplinkd lab down --prefix ${ha.lab.prefix}`,
  );
  return `${out.join("\n")}\n`;
}

/**
 * The lab: network namespaces wired as LAN client, router, one ISP per
 * uplink and an "internet" with test hosts, plus fault injection. Used by
 * integration tests, the demo, the benchmark and `uplinkd lab ...`.
 *
 *     const lab = await labUp({ prefix: "t1", uplinks: 3, dhcp: [3] });
 *     try {
 *       await lab.fault("isp2", "blackhole");
 *       const r = await lab.exec("lan", ["ping", "-c", "1", "198.51.100.1"]);
 *     } finally {
 *       await lab.down();
 *     }
 *
 * Nothing here touches the host's own network namespace: links are created
 * directly inside lab namespaces and every command names its namespace.
 */
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { UplinkdError } from "../errors.js";
import { LabError } from "./errors.js";
import { renderLabConfig } from "./config.js";
import {
  addFault,
  describeFaults,
  parseFault,
  renderFaultChain,
  tbfArgs,
  type Fault,
  type FaultSet,
} from "./faults.js";
import {
  execIn,
  ipBatch,
  killNamespaceProcesses,
  labRun,
  listNamespaces,
  namespacePids,
  setSysctls,
  spawnIn,
  waitFor,
  type ExecResult,
  startDetachedIn,
} from "./netns.js";
import {
  internetDnsAddresses,
  internetDnsAddresses6,
  removeClientResolvConf,
  resolverPaths,
  startResolver,
  writeClientResolvConf,
} from "./resolver.js";
import {
  ipv6Paths,
  keaArgv,
  keaEnv,
  radvdArgv,
  renderKeaConfig,
  renderRadvdConfig,
} from "./ipv6.js";
import { TUN_RELAY_FILE, TUN_RELAY_SCRIPT } from "./p2p.js";
import {
  pppoeAddress,
  pppoeOptionsFile,
  pppoePlugin,
  pppUnavailable,
  renderIspPppOptions,
} from "./pppoe.js";
import {
  DELAY_LINE_FILE,
  DELAY_LINE_SCRIPT,
  delayLineArgv,
  delayRoute6Args,
  delayRuleArgs,
  renderDelayBatch,
} from "./delay.js";
import {
  readState,
  removeStateDir,
  stateDirOf,
  stateFileOf,
  writeState,
  type LabProcess,
  type LabState,
} from "./state.js";
import {
  DEFAULT_PREFIX,
  DEFAULT_STATE_ROOT,
  ISP_INTERFACES,
  LAB_HOSTS,
  LAB_HOSTS6,
  LAB_PORTS,
  addressIn,
  allNamespaces,
  delegatedPrefix6,
  ispLinkLocal6,
  uplinkNetwork6,
  renderIspRoutes6Batch,
  dhcpAddress,
  isLabNamespace,
  namespaceOf,
  namespaceSysctls,
  parseNode,
  parseUplink,
  planLab,
  renderIspBatch,
  renderIspRuleset,
  renderLanBatch,
  renderNamespaceBatch,
  renderNetBatch,
  renderNetRoutesBatch,
  p2pAddress,
  renderRouterBatch,
  validatePrefix,
  type LabNode,
  type LabPlan,
  type UplinkKind,
  type UplinkPlan,
} from "./topology.js";
import {
  UDHCPC_SCRIPT,
  onPath,
  launchEchoHost,
  dhcpServerArgv,
  dnsServerArgv,
  readPidFile,
  startP2pSession,
  startPppoeServer,
  startRouterPppd,
  waitForPppoeSession,
  checkAlive,
} from "./services.js";
import { errorText, tail } from "./logs.js";
import {
  readRouterLinks,
  ipv4Of,
  dhcpApplied,
  routerAddresses,
  type IpAddr6Json,
  routerAddresses6,
  raGateways,
  waitForRa,
  readDelegatedPrefix,
  startPdClient,
  waitForDelegatedPrefix,
} from "./router-addresses.js";

export type { ExecResult } from "./netns.js";
export type { Fault, FaultSet } from "./faults.js";
export type { LabNode, LabPlan, UplinkKind, UplinkPlan } from "./topology.js";

/** What to build; every field is optional. */
export interface LabUpOptions {
  /** Names every namespace (`P-lan`, `P-rtr`, ...); default `ul`. */
  prefix?: string;
  /** 1..32; default 3. */
  uplinks?: number;
  /** Uplinks (numbers or names like `isp2`) whose router address comes from DHCP. */
  dhcp?: readonly (number | string)[];
  /** One weight per uplink for the generated config; default 1 each. */
  weights?: readonly number[];
  /** One tier per uplink for the generated config; default 1 each. */
  tiers?: readonly number[];
  /** Point-to-point uplinks (numbers or names): a TUN pair, no gateway (`gateway: none`); need python3. */
  p2p?: readonly (number | string)[];
  /** Uplinks behind a CGNAT: a 10.I.1.2 address, a second NAT at the ISP, a private upstream 10.I.0.0/16. */
  cgnat?: readonly (number | string)[];
  /**
   * PPPoE uplinks (numbers or names): pppoe-server in the ISP, pppd on the
   * router (interface `pppI`, `gateway: auto`); IPv4 only; need a kernel
   * with PPP (see pppoe.ts).
   */
  pppoe?: readonly (number | string)[];
  /** Parent of the state directory; default `/run/uplinkd-lab`. */
  stateRoot?: string;
  /** Tear down a lab with the same prefix first (default true); false: throw instead. */
  replace?: boolean;
  /**
   * iperf3 servers on the echo host, on ports 5201, 5202, ... (default 1;
   * at most 64). One server runs one test at a time.
   */
  iperf3Servers?: number;
  /**
   * DHCPv6 prefix delegation (default false): kea-dhcp6 in every ISP with
   * IPv6 and `dhclient -6 -P` on the router's uplinks; `lab up` returns once
   * each uplink holds its delegated prefix (see ipv6.ts for where it shows).
   */
  pd?: boolean;
}

/** Those of `pids` whose command name (`/proc/PID/comm`) is `comm`. */
async function pidsNamed(pids: readonly number[], comm: string): Promise<number[]> {
  const named = await Promise.all(
    pids.map(async (pid) => {
      const text = await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "");
      return text.trim() === comm ? pid : undefined;
    }),
  );
  return named.filter((pid): pid is number => pid !== undefined);
}

/** Packets and bytes a counter saw. */
export interface Count {
  packets: number;
  bytes: number;
}

/**
 * What crossed one ISP (nft named counters in its `inet lab` table):
 * `up` customer -> internet, `down` internet -> customer, `spoofed`
 * dropped by BCP38 (source outside the customer subnet). Faulted packets
 * (blackhole, loss) are in none of them.
 */
export interface IspCounters {
  up: Count;
  down: Count;
  spoofed: Count;
}

/** One uplink as `lab status` shows it. */
export interface UplinkStatus {
  name: string;
  number: number;
  interface: string;
  dhcp: boolean;
  /** How it is wired: `ethernet`, `p2p` (a TUN pair) or `cgnat`. */
  kind: UplinkKind;
  /** The ISP's gateway; `none` for a point-to-point uplink. */
  gateway: string;
  /** The router's IPv4 addresses on the uplink interface (CIDR). */
  addresses: string[];
  /** The router's global IPv6 addresses on the uplink interface (CIDR), deprecated ones marked ` (deprecated)`. */
  addresses6: string[];
  /** Routers of the `default ... proto ra` routes via the uplink in the router's main table (`fe80::1`). */
  gateways6: string[];
  /** The prefix delegated to the router on this uplink (DHCPv6-PD), if any. */
  delegatedPrefix?: string;
  /** The router's interface has carrier (LOWER_UP). */
  carrier: boolean;
  /** Active faults, e.g. `["blackhole", "loss=30"]`. */
  faults: string[];
  /** Undefined when the ISP namespace is gone. */
  counters?: IspCounters;
}

/** `lab status`: namespaces, processes and uplinks of one lab. */
export interface LabStatus {
  prefix: string;
  stateDir: string;
  configPath: string;
  controlSocket: string;
  createdAt: string;
  upMs: number;
  namespaces: { name: string; present: boolean }[];
  processes: (LabProcess & { alive: boolean })[];
  uplinks: UplinkStatus[];
}

/** What `lab down` removed. */
export interface LabDownReport {
  prefix: string;
  /** Namespaces deleted. */
  namespaces: string[];
  /** Processes ended inside them. */
  processes: number;
}

/** Options for {@link Lab.exec}. */
export interface LabExecOptions {
  /** Fed to the command's stdin. */
  input?: string;
  /** SIGKILL after this many ms (default 60000); the call then throws LabError. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * Remove the lab with this prefix: end every process in its namespaces,
 * delete the namespaces (`P-lan`, `P-rtr`, `P-net`, `P-ispN`, found by name,
 * so a half-built lab goes too) and its state directory. Nothing else is
 * touched; a prefix with no lab is not an error.
 * @throws {LabError} when a process or namespace cannot be removed.
 */
export async function labDown(
  prefix: string = DEFAULT_PREFIX,
  options: { stateRoot?: string } = {},
): Promise<LabDownReport> {
  validatePrefix(prefix);
  const dir = stateDirOf(prefix, options.stateRoot ?? DEFAULT_STATE_ROOT);
  const mine = (await listNamespaces()).filter((n) => isLabNamespace(prefix, n));
  const killed = await Promise.all(mine.map((ns) => killNamespaceProcesses(ns)));
  if (mine.length > 0) {
    try {
      await ipBatch(
        `delete namespaces of lab ${prefix}`,
        null,
        mine.map((ns) => `netns del ${ns}\n`).join(""),
      );
    } catch (error) {
      const left = (await listNamespaces()).filter((n) => isLabNamespace(prefix, n));
      if (left.length > 0) throw error;
    }
  }
  await removeClientResolvConf(namespaceOf(prefix, "lan"));
  await removeStateDir(dir);
  return { prefix, namespaces: mine, processes: killed.reduce((a, b) => a + b, 0) };
}

/** True when a lab with this prefix exists (a namespace or a state file). */
export async function labExists(
  prefix: string = DEFAULT_PREFIX,
  options: { stateRoot?: string } = {},
): Promise<boolean> {
  validatePrefix(prefix);
  const dir = stateDirOf(prefix, options.stateRoot ?? DEFAULT_STATE_ROOT);
  if ((await readState(dir)) !== undefined) return true;
  return (await listNamespaces()).some((n) => isLabNamespace(prefix, n));
}

/**
 * Build a lab and start its services: echo host (HTTP 80, whoami 7; on
 * 192.0.2.10 and 2001:db8:ffff::10), DNS (192.0.2.53, 2001:db8:ffff::53),
 * iperf3 servers (192.0.2.10:5201 and up, [2001:db8:ffff::10]:5201), radvd
 * in every ISP with IPv6, for DHCP uplinks dnsmasq in the ISP and busybox
 * udhcpc on the router, and with `pd` kea-dhcp6 in the ISPs and dhclient on
 * the router. Returns once
 * everything answers, every DHCP uplink has its address, every IPv6
 * uplink its SLAAC address and RA default route, and (with `pd`) its
 * delegated prefix. Writes the
 * daemon config (`STATE_DIR/uplinkd.yaml`) and the state file
 * (`STATE_DIR/lab.json`). On failure, removes whatever it built.
 * @throws {LabError} on bad options, an existing lab when `replace` is
 *   false, a missing tool (busybox for DHCP), or any failing command (named,
 *   with the kernel's message).
 */
export async function labUp(options: LabUpOptions = {}): Promise<Lab> {
  const started = performance.now();
  const plan = planLab({
    prefix: options.prefix ?? DEFAULT_PREFIX,
    uplinks: options.uplinks ?? 3,
    dhcp: (options.dhcp ?? []).map((d) => parseUplink(d, options.uplinks ?? 3)),
    weights: options.weights,
    tiers: options.tiers,
    p2p: (options.p2p ?? []).map((d) => parseUplink(d, options.uplinks ?? 3)),
    cgnat: (options.cgnat ?? []).map((d) => parseUplink(d, options.uplinks ?? 3)),
    pppoe: (options.pppoe ?? []).map((d) => parseUplink(d, options.uplinks ?? 3)),
  });
  const prefix = plan.prefix;
  const stateRoot = options.stateRoot ?? DEFAULT_STATE_ROOT;
  const dir = stateDirOf(prefix, stateRoot);
  const dhcpUplinks = plan.uplinks.filter((u) => u.dhcp);
  const iperf3Servers = options.iperf3Servers ?? 1;
  if (!Number.isInteger(iperf3Servers) || iperf3Servers < 0 || iperf3Servers > 64) {
    throw new LabError(`iperf3Servers must be 0..64, not ${iperf3Servers}`);
  }
  if (dhcpUplinks.length > 0 && !(await onPath("busybox"))) {
    throw new LabError(
      "DHCP uplinks need busybox (its udhcpc is the router's DHCP client): apt-get install busybox",
    );
  }
  const p2pUplinks = plan.uplinks.filter((u) => u.kind === "p2p");
  if (p2pUplinks.length > 0 && !(await onPath("python3"))) {
    throw new LabError(
      "point-to-point uplinks need python3 (it runs the TUN relay): apt-get install python3-minimal",
    );
  }
  const pppoeUplinks = plan.uplinks.filter((u) => u.kind === "pppoe");
  const pppoeBlocked = pppoeUplinks.length > 0 ? await pppUnavailable() : undefined;
  if (pppoeBlocked !== undefined) throw new LabError(pppoeBlocked);
  if (plan.uplinks.some((u) => u.ipv6 !== undefined) && !(await onPath("radvd"))) {
    throw new LabError(
      "the lab's ISPs send IPv6 router advertisements with radvd: apt-get install radvd",
    );
  }
  if (options.pd === true && !((await onPath("kea-dhcp6")) && (await onPath("dhclient")))) {
    throw new LabError(
      "prefix delegation (pd) needs kea-dhcp6 in the ISPs and dhclient on the router: " +
        "apt-get install kea-dhcp6-server isc-dhcp-client",
    );
  }
  if (await labExists(prefix, { stateRoot })) {
    if (options.replace === false) {
      throw new LabError(
        `a lab with prefix ${prefix} exists: remove it with \`uplinkd lab down --prefix ${prefix}\``,
      );
    }
    await labDown(prefix, { stateRoot });
  }
  const ns = plan.namespaces;
  const state: LabState = {
    version: 1,
    prefix,
    uplinks: plan.uplinks.length,
    dhcp: dhcpUplinks.map((u) => u.number),
    weights: plan.uplinks.map((u) => u.weight),
    tiers: plan.uplinks.map((u) => u.tier),
    p2p: p2pUplinks.map((u) => u.number),
    cgnat: plan.uplinks.filter((u) => u.kind === "cgnat").map((u) => u.number),
    ...(pppoeUplinks.length > 0 ? { pppoe: pppoeUplinks.map((u) => u.number) } : {}),
    stateDir: dir,
    configPath: join(dir, "uplinkd.yaml"),
    controlSocket: join(dir, "uplinkd.sock"),
    createdAt: new Date().toISOString(),
    upMs: 0,
    processes: [],
    faults: {},
    dhcpGeneration: Object.fromEntries(dhcpUplinks.map((u) => [String(u.number), 0])),
    pd: options.pd === true,
  };
  try {
    await mkdir(dir, { recursive: true });
    await writeState(state);
    await ipBatch(`create namespaces of lab ${prefix}`, null, renderNamespaceBatch(plan));
    await Promise.all(
      [...namespaceSysctls(plan)].map(([name, settings]) => setSysctls(name, settings)),
    );
    await Promise.all([
      ipBatch(`build router ${ns.rtr}`, ns.rtr, renderRouterBatch(plan)),
      ipBatch(`build internet ${ns.net}`, ns.net, renderNetBatch(plan)),
    ]);
    const record = (name: string, node: LabNode, pid: number, log: string): void => {
      state.processes.push({ name, node, pid, log });
    };
    if (p2pUplinks.length > 0) {
      await writeFile(join(dir, TUN_RELAY_FILE), TUN_RELAY_SCRIPT);
      await Promise.all(
        p2pUplinks.map(async (u) => {
          state.processes.push(await startP2pSession(dir, ns.rtr, u, u.routerAddress));
        }),
      );
    }
    await Promise.all([
      ipBatch(`configure LAN client ${ns.lan}`, ns.lan, renderLanBatch()),
      ipBatch(`add routes in ${ns.net}`, ns.net, renderNetRoutesBatch(plan)),
      ipBatch(
        `add DNS addresses in ${ns.net}`,
        ns.net,
        internetDnsAddresses(plan)
          .map((a) => `addr add ${a}/32 dev lo\n`)
          .join("") +
          internetDnsAddresses6()
            .map((a) => `addr add ${a}/128 dev lo\n`)
            .join(""),
      ),
      ...plan.uplinks.map((u) =>
        ipBatch(`configure ISP ${u.namespace}`, u.namespace, renderIspBatch(u)),
      ),
      ...plan.uplinks.map((u) =>
        labRun(
          `load nft table lab in ${u.namespace}`,
          "ip",
          ["netns", "exec", u.namespace, "nft", "-f", "-"],
          {
            input: renderIspRuleset(u),
          },
        ),
      ),
    ]);

    // PPPoE: the ISP's server, then the router's pppd; the session's address shows on pppI.
    if (pppoeUplinks.length > 0) {
      const plugin = await pppoePlugin();
      await Promise.all(
        pppoeUplinks.map(async (u) => {
          await writeFile(join(dir, pppoeOptionsFile(u)), renderIspPppOptions());
          state.processes.push(
            startPppoeServer(dir, u, 0),
            startRouterPppd(dir, ns.rtr, u, plugin),
          );
          await waitForPppoeSession(dir, ns.rtr, u, pppoeAddress(u.number, 0));
        }),
      );
    }

    // IPv6: router advertisements (and prefix delegation) from every ISP with IPv6.
    const v6Uplinks = plan.uplinks.filter((u) => u.ipv6 !== undefined);
    for (const u of v6Uplinks) {
      const paths = ipv6Paths(dir, u);
      await writeFile(paths.radvdConfig, renderRadvdConfig(uplinkNetwork6(u.number, 0)));
      record(
        `radvd-${u.name}`,
        `isp${u.number}`,
        startDetachedIn(u.namespace, radvdArgv(dir, u), paths.radvdLog),
        paths.radvdLog,
      );
      if (options.pd === true) {
        await writeFile(paths.keaConfig, renderKeaConfig(dir, u, delegatedPrefix6(u.number, 0)));
        record(
          `kea-${u.name}`,
          `isp${u.number}`,
          startDetachedIn(u.namespace, keaArgv(dir, u), paths.keaOut, keaEnv(dir)),
          paths.keaOut,
        );
      }
    }

    // Services. DHCP servers first, so the clients' first DISCOVER is answered.
    const udhcpcScript = join(dir, "udhcpc.sh");
    await writeFile(udhcpcScript, UDHCPC_SCRIPT);
    await chmod(udhcpcScript, 0o755);
    for (const u of dhcpUplinks) {
      await rm(join(dir, `dhcp-${u.name}.pid`), { force: true });
      const log = join(dir, `dhcp-${u.name}.out`);
      const argv = dhcpServerArgv(u, dhcpAddress(u.number, 0), dir);
      record(`dhcp-${u.name}`, `isp${u.number}`, startDetachedIn(u.namespace, argv, log), log);
    }
    const dnsLog = join(dir, "dns.out");
    record("dns", "net", startDetachedIn(ns.net, dnsServerArgv(plan, dir), dnsLog), dnsLog);
    // The LAN's resolver on the router; uplinkd restarts it (new pid) when its nftset file changes.
    record("resolver", "rtr", await startResolver(plan, dir), resolverPaths(dir).log);
    await writeClientResolvConf(plan);
    for (let k = 0; k < iperf3Servers; k++) {
      const port = String(LAB_PORTS.iperf3 + k);
      const name = k === 0 ? "iperf3" : `iperf3-${port}`;
      const log = join(dir, `${name}.log`);
      const argv = ["iperf3", "-s", "-B", LAB_HOSTS.echo, "-p", port];
      record(name, "net", startDetachedIn(ns.net, argv, log), log);
    }
    if (iperf3Servers > 0) {
      // One on the echo host's IPv6 address too (same port: another address).
      const log = join(dir, "iperf3-v6.log");
      const argv = ["iperf3", "-s", "-B", LAB_HOSTS6.echo, "-p", String(LAB_PORTS.iperf3)];
      record("iperf3-v6", "net", startDetachedIn(ns.net, argv, log), log);
    }
    const hostLog = join(dir, "host.log");
    const hostReady = Promise.all([
      launchEchoHost(ns.net, hostLog).then((pid) => {
        record("host", "net", pid, hostLog);
      }),
      ...plan.uplinks.map(async (u) => {
        if (u.upstream === undefined) return;
        const log = join(dir, `host-${u.name}.log`);
        const pid = await launchEchoHost(u.namespace, log, u.upstream.host);
        record(`host-${u.name}`, `isp${u.number}`, pid, log);
      }),
    ]);
    const dhcpReady = Promise.all(
      dhcpUplinks.map(async (u) => {
        await waitFor(`DHCP server of ${u.name} writing its pid file`, 5000, () =>
          readPidFile(join(dir, `dhcp-${u.name}.pid`)),
        );
        const log = join(dir, `udhcpc-${u.routerInterface}.log`);
        const pid = startDetachedIn(
          ns.rtr,
          [
            "busybox",
            "udhcpc",
            "-f",
            "-i",
            u.routerInterface,
            "-s",
            udhcpcScript,
            "-t",
            "5",
            "-T",
            "1",
            "-A",
            "1",
          ],
          log,
          { ...process.env, UPLINKD_LAB_METRIC: String(100 + u.number) },
        );
        record(`udhcpc-${u.routerInterface}`, "rtr", pid, log);
        const want = dhcpAddress(u.number, 0);
        await waitFor(`router address ${want} on ${u.routerInterface} by DHCP`, 10_000, () =>
          dhcpApplied(ns.rtr, u.routerInterface, want),
        ).catch(async (error: unknown) => {
          throw new LabError(`${errorText(error)}; ${log}: ${await tail(log)}`, { cause: error });
        });
      }),
    );
    const v6Ready = Promise.all(
      v6Uplinks.map(async (u) => {
        await waitForRa(dir, ns.rtr, u, 0, 0);
        if (options.pd === true) {
          state.processes.push(await startPdClient(dir, ns.rtr, u));
          await waitForDelegatedPrefix(dir, u, delegatedPrefix6(u.number, 0));
        }
      }),
    );
    await Promise.all([hostReady, dhcpReady, v6Ready]);
    await checkAlive(plan.prefix, state.processes);
    await writeFile(
      state.configPath,
      renderLabConfig(plan, state.controlSocket, state.configPath, resolverPaths(dir), {
        pd: options.pd === true,
        stateDir: dir,
      }),
    );
    state.upMs = Math.round(performance.now() - started);
    await writeState(state);
  } catch (error) {
    await labDown(prefix, { stateRoot }).catch(() => undefined);
    if (error instanceof UplinkdError) throw error;
    throw new LabError(`lab up ${prefix}: ${errorText(error)}`, { cause: error });
  }
  return new Lab(state, plan);
}

/**
 * A lab that `lab up` built (possibly in another process).
 * @throws {LabError} when there is no lab with this prefix.
 */
export async function openLab(
  prefix: string = DEFAULT_PREFIX,
  options: { stateRoot?: string } = {},
): Promise<Lab> {
  validatePrefix(prefix);
  const dir = stateDirOf(prefix, options.stateRoot ?? DEFAULT_STATE_ROOT);
  const state = await readState(dir);
  if (state === undefined) {
    throw new LabError(
      `no lab with prefix ${prefix} (no ${stateFileOf(dir)}): start one with \`uplinkd lab up --prefix ${prefix}\``,
    );
  }
  return new Lab(state, planFromState(state));
}

function planFromState(state: LabState): LabPlan {
  return planLab({
    prefix: state.prefix,
    uplinks: state.uplinks,
    dhcp: state.dhcp,
    weights: state.weights,
    tiers: state.tiers,
    p2p: state.p2p ?? [],
    cgnat: state.cgnat ?? [],
    pppoe: state.pppoe ?? [],
  });
}

/** A built lab. Get one from {@link labUp} or {@link openLab}. */
export class Lab {
  #state: LabState;
  /** Tail of the faults and heals in progress: each rewrites the state file, so they run one at a time. */
  #changes: Promise<unknown> = Promise.resolve();
  readonly plan: LabPlan;

  /** @internal use labUp or openLab. */
  constructor(state: LabState, plan: LabPlan) {
    this.#state = state;
    this.plan = plan;
  }

  /** The prefix of every namespace name. */
  get prefix(): string {
    return this.plan.prefix;
  }

  /** Every uplink, in order (uplink i at index i - 1). */
  get uplinks(): readonly UplinkPlan[] {
    return this.plan.uplinks;
  }

  /** Directory with the state file, config, logs, leases: `/run/uplinkd-lab/P`. */
  get stateDir(): string {
    return this.#state.stateDir;
  }

  /** The daemon config written by `lab up`. */
  get configPath(): string {
    return this.#state.configPath;
  }

  /** The control socket named in that config. */
  get controlSocket(): string {
    return this.#state.controlSocket;
  }

  /** How long `lab up` took, ms. */
  get upMs(): number {
    return this.#state.upMs;
  }

  /** Processes the lab started (as recorded; see status() for liveness). */
  get processes(): readonly LabProcess[] {
    return this.#state.processes;
  }

  /**
   * Namespace of a node: `lan`, `rtr`, `net`, `isp1`.. (aliases `router`, `client`).
   * @throws {LabError} for an unknown node.
   */
  namespace(node: string): string {
    return namespaceOf(this.prefix, parseNode(node, this.uplinks.length));
  }

  /**
   * The uplink given by name (`isp2`) or number (2).
   * @throws {LabError} when the lab has no such uplink.
   */
  uplink(uplink: string | number): UplinkPlan {
    const n = parseUplink(uplink, this.uplinks.length);
    const u = this.uplinks[n - 1];
    if (u === undefined) throw new LabError(`no uplink ${n}`);
    return u;
  }

  /**
   * Run a command in a lab node and wait for it. A non-zero exit is
   * returned in `code`, not thrown.
   * @throws {LabError} for an unknown node, a command that cannot start, or a timeout.
   */
  exec(node: string, argv: readonly string[], options: LabExecOptions = {}): Promise<ExecResult> {
    return execIn(this.namespace(node), argv, options);
  }

  /**
   * Start a long-running command in a lab node (e.g. the daemon in `rtr`).
   * The caller owns the process; `down()` ends it too if it is still running.
   * @throws {LabError} for an unknown node.
   */
  spawn(node: string, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
    return spawnIn(this.namespace(node), argv, options);
  }

  /** The router's IPv4 addresses on an uplink's interface, CIDR (`["100.64.1.2/24"]`). */
  async routerAddresses(uplink: string | number): Promise<string[]> {
    const u = this.uplink(uplink);
    return routerAddresses(this.namespace("rtr"), u.routerInterface);
  }

  /**
   * The router's global IPv6 addresses on an uplink's interface, CIDR;
   * deprecated ones end in ` (deprecated)` (`["2001:db8:1::2/64"]`).
   */
  async routerAddresses6(uplink: string | number): Promise<string[]> {
    const u = this.uplink(uplink);
    return routerAddresses6(this.namespace("rtr"), u.routerInterface);
  }

  /**
   * The router's preferred (not deprecated) global IPv6 address on an
   * uplink, no prefix length (`2001:db8:1::2`), or undefined while it has none.
   */
  async routerAddress6(uplink: string | number): Promise<string | undefined> {
    const preferred = (await this.routerAddresses6(uplink)).filter((a) => !a.includes(" "));
    return preferred[0]?.split("/")[0];
  }

  /** Routers of the uplink's `default ... proto ra` routes in the router's main table (`["fe80::1"]`). */
  async raGateways(uplink: string | number): Promise<string[]> {
    const u = this.uplink(uplink);
    return raGateways(this.namespace("rtr"), u.routerInterface);
  }

  /**
   * The uplink network the ISP announces now (`2001:db8:1::/64`; another
   * after a `renumber` fault).
   */
  async uplinkNetwork6(uplink: string | number): Promise<string> {
    const u = this.uplink(uplink);
    await this.#reload();
    return uplinkNetwork6(u.number, this.#v6Generation(u).network);
  }

  /**
   * The prefix delegated to the router on an uplink as its DHCPv6 client
   * recorded it (`2001:db8:1001::/56`); undefined without `pd` or while
   * there is no lease. See ipv6.ts for where else it shows.
   */
  async delegatedPrefix(uplink: string | number): Promise<string | undefined> {
    const u = this.uplink(uplink);
    return readDelegatedPrefix(ipv6Paths(this.stateDir, u).delegatedPrefixFile);
  }

  /** The file the router's DHCPv6 client writes an uplink's delegated prefix to (one line). */
  delegatedPrefixFile(uplink: string | number): string {
    return ipv6Paths(this.stateDir, this.uplink(uplink)).delegatedPrefixFile;
  }

  /** The router's address on an uplink (no prefix length), or undefined while it has none. */
  async routerAddress(uplink: string | number): Promise<string | undefined> {
    return (await this.routerAddresses(uplink))[0]?.split("/")[0];
  }

  /**
   * Packets and bytes that crossed an uplink's ISP so far.
   * @throws {LabError} when the ISP's nft table cannot be read.
   */
  async ispCounters(uplink: string | number): Promise<IspCounters> {
    const u = this.uplink(uplink);
    const { stdout } = await labRun(`read counters of ${u.name}`, "ip", [
      "netns",
      "exec",
      u.namespace,
      "nft",
      "-j",
      "list",
      "counters",
      "table",
      "inet",
      "lab",
    ]);
    const parsed = JSON.parse(stdout) as {
      nftables?: { counter?: { name?: string; packets?: number; bytes?: number } }[];
    };
    const out: IspCounters = {
      up: { packets: 0, bytes: 0 },
      down: { packets: 0, bytes: 0 },
      spoofed: { packets: 0, bytes: 0 },
    };
    for (const item of parsed.nftables ?? []) {
      const c = item.counter;
      if (c?.name === "up" || c?.name === "down" || c?.name === "spoofed") {
        out[c.name] = { packets: c.packets ?? 0, bytes: c.bytes ?? 0 };
      }
    }
    return out;
  }

  /**
   * Active faults of an uplink, from the state file (so faults set by another process show).
   * @throws {LabError} for an unknown uplink or when the lab is gone.
   */
  async faults(uplink: string | number): Promise<FaultSet> {
    const u = this.uplink(uplink);
    await this.#reload();
    return this.#faultsOf(u);
  }

  #faultsOf(u: UplinkPlan): FaultSet {
    return { ...(this.#state.faults[String(u.number)] ?? {}) };
  }

  /**
   * Inject a fault into an uplink, in its ISP namespace (see {@link Fault}).
   * Idempotent; carrier, blackhole, loss, rate and delay combine; a new loss, delay or
   * rate replaces the old one (`loss=0`, `delay=0` remove them). `dhcp-change` waits
   * (at most 15 s) until the router holds its new address.
   * @param fault a Fault or its text: `carrier`, `blackhole`, `loss=30`, `rate=1mbit`,
   *   `delay=80ms,jitter=20ms`, `dhcp-change`.
   * @throws {LabError} for an unknown uplink or fault, dhcp-change on a
   *   static uplink or one without carrier, or a failing command.
   */
  async fault(uplink: string | number, fault: Fault | string): Promise<void> {
    const u = this.uplink(uplink);
    const f = typeof fault === "string" ? parseFault(fault) : fault;
    await this.#oneAtATime(() => this.#fault(u, f));
  }

  async #fault(u: UplinkPlan, f: Fault): Promise<void> {
    await this.#reload();
    const current = this.#faultsOf(u);
    if (f.kind === "dhcp-change") {
      await this.#dhcpChange(u, current);
      return;
    }
    if (f.kind === "ra-change" || f.kind === "renumber") {
      await this.#ipv6Change(u, current, f.kind);
      return;
    }
    if (f.kind === "pppoe-drop") {
      if (u.kind !== "pppoe") throw new LabError(`pppoe-drop: ${u.name} is not a PPPoE uplink`);
      await this.#pppoeSession(u, "down", {});
      await this.#pppoeSession(u, "up", {});
      return;
    }
    const next = addFault(current, f);
    await this.#applyFaults(u, next);
    this.#state.faults[String(u.number)] = next;
    await writeState(this.#state);
  }

  /**
   * Remove every fault of an uplink: carrier back, nothing dropped, no rate
   * limit. The DHCP address stays what it is. Idempotent.
   * @throws {LabError} for an unknown uplink or a failing command.
   */
  async heal(uplink: string | number): Promise<void> {
    const u = this.uplink(uplink);
    await this.#oneAtATime(() => this.#heal(u));
  }

  async #heal(u: UplinkPlan): Promise<void> {
    await this.#reload();
    await this.#applyFaults(u, {});
    this.#state.faults[String(u.number)] = {};
    await writeState(this.#state);
  }

  /**
   * End or start the session of a point-to-point uplink, as a PPP session
   * drops and comes back: `down` ends its TUN relay, so `wanI` (and the
   * ISP's end) disappear; `up` starts a new one, with the next address
   * (100.64.I.3, .4, ...) unless `sameAddress`.
   * @returns the router's address in the new session (`up`), or undefined (`down`).
   * @throws {LabError} for an uplink that is not point-to-point, `up` while
   *   the session is up, or a failing command.
   */
  async session(
    uplink: string | number,
    to: "up" | "down",
    options: { sameAddress?: boolean } = {},
  ): Promise<string | undefined> {
    const u = this.uplink(uplink);
    if (u.kind === "pppoe") return this.#oneAtATime(() => this.#pppoeSession(u, to, options));
    if (u.kind !== "p2p") {
      throw new LabError(`session: ${u.name} is neither a point-to-point nor a PPPoE uplink`);
    }
    return this.#oneAtATime(async () => {
      await this.#reload();
      const rtr = this.namespace("rtr");
      const name = `p2p-${u.name}`;
      const relay = this.#state.processes.find((p) => p.name === name);
      const running = relay !== undefined && (await namespacePids(rtr)).includes(relay.pid);
      if (to === "down") {
        if (running) {
          process.kill(relay.pid, "SIGTERM");
          await waitFor(`TUN relay of ${u.name} (pid ${relay.pid}) exiting`, 3000, async () =>
            (await namespacePids(rtr)).includes(relay.pid) ? undefined : true,
          );
        }
        return undefined;
      }
      if (running) throw new LabError(`session: ${u.name}'s session is up already`);
      const generations = (this.#state.p2pGeneration ??= {});
      const generation = (generations[String(u.number)] ?? 0) + (options.sameAddress ? 0 : 1);
      const address = p2pAddress(u.number, generation);
      const started = await startP2pSession(this.stateDir, rtr, u, address);
      this.#state.processes = [...this.#state.processes.filter((p) => p.name !== name), started];
      generations[String(u.number)] = generation;
      await writeState(this.#state);
      // The ISP's end is a new device: faults set on the old one (rate) are gone.
      await this.#applyFaults(u, this.#faultsOf(u));
      return address;
    });
  }

  /**
   * End or start the PPPoE session of `u` from the ISP's side. `down`: the
   * ISP's server and its session pppd stop (the pppd sends LCP
   * Terminate-Request and PADT), the router's `pppI` disappears and its pppd
   * keeps dialling; `up`: a server for the next generation (a new address
   * and peer, see pppoe.ts, unless `sameAddress`) answers, and this returns
   * once the router holds the new address.
   */
  async #pppoeSession(
    u: UplinkPlan,
    to: "up" | "down",
    options: { sameAddress?: boolean },
  ): Promise<string | undefined> {
    await this.#reload();
    const rtr = this.namespace("rtr");
    const name = `pppoe-${u.name}`;
    const server = this.#state.processes.find((p) => p.name === name);
    const ispPids = await namespacePids(u.namespace);
    const running = server !== undefined && ispPids.includes(server.pid);
    if (to === "down") {
      const sessions = await pidsNamed(ispPids, "pppd");
      const victims = [...(running ? [server.pid] : []), ...sessions];
      for (const pid of victims) process.kill(pid, "SIGTERM");
      await waitFor(`PPPoE server and sessions of ${u.name} exiting`, 5000, async () => {
        const left = await namespacePids(u.namespace);
        return victims.some((pid) => left.includes(pid)) ? undefined : true;
      });
      await waitFor(`${u.routerInterface} disappearing from ${rtr}`, 15_000, async () =>
        (await readRouterLinks(rtr)).some((l) => l.ifname === u.routerInterface) ? undefined : true,
      );
      return undefined;
    }
    if (running) throw new LabError(`session: ${u.name}'s PPPoE server is running already`);
    const generations = (this.#state.p2pGeneration ??= {});
    const generation = (generations[String(u.number)] ?? 0) + (options.sameAddress ? 0 : 1);
    const started = startPppoeServer(this.stateDir, u, generation);
    this.#state.processes = [...this.#state.processes.filter((p) => p.name !== name), started];
    generations[String(u.number)] = generation;
    await writeState(this.#state);
    const address = pppoeAddress(u.number, generation);
    await waitForPppoeSession(this.stateDir, rtr, u, address);
    // The ISP's `cust` is a new device: faults set on the old one (rate) are gone.
    await this.#applyFaults(u, this.#faultsOf(u));
    return address;
  }

  /**
   * Namespaces, processes and uplinks of the lab as the kernel has them now.
   * @throws {LabError} when the router cannot be read.
   */
  async status(): Promise<LabStatus> {
    await this.#reload();
    const present = new Set(await listNamespaces());
    const names = allNamespaces(this.plan);
    const rtr = this.namespace("rtr");
    const links = present.has(rtr) ? await readRouterLinks(rtr) : [];
    const pidsByNode = new Map<string, Set<number>>();
    for (const p of this.#state.processes) {
      if (!pidsByNode.has(p.node)) {
        pidsByNode.set(p.node, new Set(await namespacePids(this.namespace(p.node))));
      }
    }
    const uplinks = await Promise.all(
      this.uplinks.map(async (u): Promise<UplinkStatus> => {
        const link = links.find((l) => l.ifname === u.routerInterface);
        const counters = present.has(u.namespace)
          ? await this.ispCounters(u.number).catch(() => undefined)
          : undefined;
        const v6 = u.ipv6 !== undefined && present.has(rtr);
        const addresses6 = v6 ? await routerAddresses6(rtr, u.routerInterface).catch(() => []) : [];
        const gateways6 = v6 ? await raGateways(rtr, u.routerInterface).catch(() => []) : [];
        const delegatedPrefix = v6
          ? await readDelegatedPrefix(ipv6Paths(this.stateDir, u).delegatedPrefixFile)
          : undefined;
        return {
          name: u.name,
          number: u.number,
          interface: u.routerInterface,
          dhcp: u.dhcp,
          kind: u.kind,
          gateway: u.kind === "p2p" ? "none" : u.kind === "pppoe" ? "auto" : u.gateway,
          addresses: ipv4Of(link),
          addresses6,
          gateways6,
          ...(delegatedPrefix === undefined ? {} : { delegatedPrefix }),
          carrier: link?.flags?.includes("LOWER_UP") ?? false,
          faults: describeFaults(this.#faultsOf(u)),
          counters,
        };
      }),
    );
    // uplinkd restarts the router's resolver (a new pid) when its nftset file changes.
    const resolverPid = await readPidFile(resolverPaths(this.stateDir).pidFile);
    return {
      prefix: this.prefix,
      stateDir: this.stateDir,
      configPath: this.configPath,
      controlSocket: this.controlSocket,
      createdAt: this.#state.createdAt,
      upMs: this.#state.upMs,
      namespaces: names.map((name) => ({ name, present: present.has(name) })),
      processes: this.#state.processes.map((p) => {
        const pid = p.name === "resolver" ? (resolverPid ?? p.pid) : p.pid;
        return { ...p, pid, alive: pidsByNode.get(p.node)?.has(pid) ?? false };
      }),
      uplinks,
    };
  }

  /**
   * Remove the lab (see {@link labDown}).
   * @throws {LabError} when a process or namespace cannot be removed.
   */
  down(): Promise<LabDownReport> {
    return labDown(this.prefix, { stateRoot: this.#stateRoot() });
  }

  /** Run `work` after every earlier fault and heal of this Lab ended (read-modify-write of the state file). */
  #oneAtATime<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#changes.then(work, work);
    this.#changes = run.catch(() => undefined);
    return run;
  }

  #stateRoot(): string {
    return join(this.stateDir, "..");
  }

  async #reload(): Promise<void> {
    const fresh = await readState(this.stateDir);
    if (fresh === undefined) {
      throw new LabError(`lab ${this.prefix} is gone (no ${stateFileOf(this.stateDir)})`);
    }
    this.#state = fresh;
  }

  async #applyFaults(u: UplinkPlan, set: FaultSet): Promise<void> {
    const ns = u.namespace;
    const what = `apply faults [${describeFaults(set).join(", ") || "none"}] to ${u.name}`;
    await labRun(what, "ip", ["netns", "exec", ns, "nft", "-f", "-"], {
      input: renderFaultChain(set),
    });
    for (const dev of [ISP_INTERFACES.customer, ISP_INTERFACES.core]) {
      if (set.rate !== undefined) {
        await labRun(what, "tc", ["-n", ns, ...tbfArgs(dev, set.rate)]);
      } else {
        // exit 2: there was no root qdisc to delete
        await labRun(what, "tc", ["-n", ns, "qdisc", "del", "dev", dev, "root"], {
          allowExitCodes: [2],
        });
      }
    }
    await labRun(what, "ip", [
      "-n",
      ns,
      "link",
      "set",
      ISP_INTERFACES.customer,
      set.carrier ? "down" : "up",
    ]);
    if (!set.carrier) await this.#restoreIpv6(u, what);
    await this.#applyDelay(u, set, what);
  }

  /**
   * Start, restart or end the delay line of `u` (see delay.ts) so that it
   * matches `set.delay`/`set.jitter`; a running line with the same values
   * stays. Updates `this.#state.processes`; the caller writes the state.
   * @throws {LabError} when the line does not start or a command fails.
   */
  async #applyDelay(u: UplinkPlan, set: FaultSet, what: string): Promise<void> {
    const ns = u.namespace;
    const name = `delay-${u.name}`;
    const old = this.#state.processes.find((p) => p.name === name);
    const alive = old !== undefined && (await namespacePids(ns)).includes(old.pid);
    const before = this.#faultsOf(u);
    if (
      alive &&
      set.delay !== undefined &&
      before.delay === set.delay &&
      (before.jitter ?? 0) === (set.jitter ?? 0)
    ) {
      return;
    }
    const core = ISP_INTERFACES.core;
    // IPv6 too where the uplink has it (point-to-point uplinks are IPv4 only).
    const families = u.ipv6 === undefined ? ["-4"] : ["-4", "-6"];
    // The rules go first: without the line its table is empty and lookups fall through to main.
    for (const family of families) {
      await labRun(what, "ip", ["-n", ns, family, "rule", ...delayRuleArgs("del", core)], {
        allowExitCodes: [2],
      });
    }
    if (alive) {
      process.kill(old.pid, "SIGTERM");
      await waitFor(`delay line of ${u.name} (pid ${old.pid}) exiting`, 3000, async () =>
        (await namespacePids(ns)).includes(old.pid) ? undefined : true,
      );
    }
    this.#state.processes = this.#state.processes.filter((p) => p.name !== name);
    if (set.delay === undefined) return;
    const dir = this.stateDir;
    const script = join(dir, DELAY_LINE_FILE);
    await writeFile(script, DELAY_LINE_SCRIPT);
    const log = join(dir, `${name}.log`);
    await rm(log, { force: true });
    const pid = startDetachedIn(ns, delayLineArgv(script, set.delay, set.jitter ?? 0), log);
    this.#state.processes.push({ name, node: `isp${u.number}`, pid, log });
    await waitFor(`delay line of ${u.name} making its device`, 5000, async () =>
      (await tail(log)).includes("ready") ? true : undefined,
    ).catch(async (error: unknown) => {
      throw new LabError(`${errorText(error)}; ${log}: ${await tail(log)}`, { cause: error });
    });
    await ipBatch(`${what}: delay line`, ns, renderDelayBatch());
    if (u.ipv6 !== undefined) await labRun(what, "ip", ["-n", ns, ...delayRoute6Args()]);
    for (const family of families) {
      await labRun(what, "ip", ["-n", ns, family, "rule", ...delayRuleArgs("add", core)]);
    }
  }

  /**
   * After a carrier fault: `ip link set cust down` deleted the ISP's
   * link-local address (keep_addr_on_down keeps only the others) and the
   * routes through `cust` (the delegation pool's). Put them back; radvd and
   * kea bound the old address, so they restart too.
   */
  async #restoreIpv6(u: UplinkPlan, what: string): Promise<void> {
    if (u.ipv6 === undefined) return;
    const ns = u.namespace;
    const gateway = ispLinkLocal6(this.#v6Generation(u).router);
    const { stdout } = await labRun(what, "ip", [
      "-n",
      ns,
      "-j",
      "-6",
      "addr",
      "show",
      "dev",
      ISP_INTERFACES.customer,
      "scope",
      "link",
    ]);
    const has = ((JSON.parse(stdout) as IpAddr6Json[])[0]?.addr_info ?? []).some(
      (a) => a.local === gateway,
    );
    if (!has) {
      // Stopped before the address is back, radvd's last RA (router lifetime 0) cannot go out:
      // the router keeps its default route through the outage.
      await this.#restartIspIpv6(u, () =>
        ipBatch(what, ns, `addr replace ${gateway}/64 dev ${ISP_INTERFACES.customer}\n`),
      );
      await writeState(this.#state);
    }
    await ipBatch(what, ns, renderIspRoutes6Batch(u));
  }

  /**
   * Restart the ISP's radvd (and kea with `pd`) from their current config
   * files, running `between` (if given) while they are stopped.
   */
  async #restartIspIpv6(u: UplinkPlan, between?: () => Promise<void>): Promise<void> {
    const dir = this.stateDir;
    const paths = ipv6Paths(dir, u);
    const ispNode: LabNode = `isp${u.number}`;
    await this.#stopProcess(u.namespace, `radvd-${u.name}`);
    if (this.#state.pd === true) await this.#stopProcess(u.namespace, `kea-${u.name}`);
    await between?.();
    const radvd = startDetachedIn(u.namespace, radvdArgv(dir, u), paths.radvdLog);
    this.#replaceProcess({
      name: `radvd-${u.name}`,
      node: ispNode,
      pid: radvd,
      log: paths.radvdLog,
    });
    if (this.#state.pd === true) {
      const kea = startDetachedIn(u.namespace, keaArgv(dir, u), paths.keaOut, keaEnv(dir));
      this.#replaceProcess({ name: `kea-${u.name}`, node: ispNode, pid: kea, log: paths.keaOut });
    }
  }

  #v6Generation(u: UplinkPlan): { network: number; router: number } {
    return this.#state.v6Generation?.[String(u.number)] ?? { network: 0, router: 0 };
  }

  /**
   * `ra-change`: the ISP router's link-local address changes and radvd
   * restarts from it. `renumber`: the ISP announces the next uplink
   * network (the old one deprecated, its ISP address gone) and, with
   * prefix delegation, delegates the next prefix to a fresh client
   * request. Waits (at most 15 s, 20 s for the prefix) until the router
   * has followed.
   */
  async #ipv6Change(
    u: UplinkPlan,
    current: FaultSet,
    kind: "ra-change" | "renumber",
  ): Promise<void> {
    const v6 = u.ipv6;
    if (v6 === undefined) throw new LabError(`${kind}: ${u.name} has no IPv6 (point-to-point)`);
    if (current.carrier) throw new LabError(`${kind}: ${u.name} has no carrier; heal it first`);
    const dir = this.stateDir;
    const rtr = this.namespace("rtr");
    const paths = ipv6Paths(dir, u);
    const was = this.#v6Generation(u);
    const next =
      kind === "ra-change"
        ? { network: was.network, router: was.router + 1 }
        : { network: was.network + 1, router: was.router };
    const customer = ISP_INTERFACES.customer;
    if (kind === "ra-change") {
      // radvd's last advertisement (router lifetime 0) goes out from the old
      // address; the DHCPv6 server binds the link-local address: it restarts too.
      await this.#restartIspIpv6(u, () =>
        ipBatch(
          `${kind} on ${u.name}`,
          u.namespace,
          `addr del ${ispLinkLocal6(was.router)}/64 dev ${customer}\n` +
            `addr add ${ispLinkLocal6(next.router)}/64 dev ${customer}\n`,
        ),
      );
    } else {
      const oldNet = uplinkNetwork6(u.number, was.network);
      const newNet = uplinkNetwork6(u.number, next.network);
      await ipBatch(
        `${kind} on ${u.name}`,
        u.namespace,
        `addr del ${addressIn(oldNet, "::1")}/64 dev ${customer}\n` +
          `addr add ${addressIn(newNet, "::1")}/64 dev ${customer}\n`,
      );
      await writeFile(paths.radvdConfig, renderRadvdConfig(newNet, [oldNet]));
      // radvd rereads its config on SIGHUP and advertises at once; the default
      // router stays (a restart would withdraw it for a moment).
      const radvd = this.#state.processes.find((p) => p.name === `radvd-${u.name}`);
      if (radvd !== undefined && (await namespacePids(u.namespace)).includes(radvd.pid)) {
        process.kill(radvd.pid, "SIGHUP");
      } else {
        const pid = startDetachedIn(u.namespace, radvdArgv(dir, u), paths.radvdLog);
        this.#replaceProcess({
          name: `radvd-${u.name}`,
          node: `isp${u.number}`,
          pid,
          log: paths.radvdLog,
        });
      }
      if (this.#state.pd === true) {
        // The next pool: a restarted server delegates only the new prefix.
        await this.#stopProcess(u.namespace, `kea-${u.name}`);
        await writeFile(
          paths.keaConfig,
          renderKeaConfig(dir, u, delegatedPrefix6(u.number, next.network)),
        );
        const kea = startDetachedIn(u.namespace, keaArgv(dir, u), paths.keaOut, keaEnv(dir));
        this.#replaceProcess({
          name: `kea-${u.name}`,
          node: `isp${u.number}`,
          pid: kea,
          log: paths.keaOut,
        });
      }
    }
    (this.#state.v6Generation ??= {})[String(u.number)] = next;
    await writeState(this.#state);
    await waitForRa(dir, rtr, u, next.network, next.router);
    if (this.#state.pd === true && kind === "renumber") {
      // A client that asks afresh (no lease file) gets the new pool's prefix.
      await this.#stopProcess(rtr, `dhclient6-${u.routerInterface}`);
      await rm(paths.clientLeases, { force: true });
      this.#replaceProcess(await startPdClient(dir, rtr, u));
      await writeState(this.#state);
      await waitForDelegatedPrefix(dir, u, delegatedPrefix6(u.number, next.network));
    }
  }

  /** End a recorded process (SIGTERM, waiting at most 3 s) if it still runs in `ns`. */
  async #stopProcess(ns: string, name: string): Promise<void> {
    const p = this.#state.processes.find((x) => x.name === name);
    if (p === undefined || !(await namespacePids(ns)).includes(p.pid)) return;
    process.kill(p.pid, "SIGTERM");
    await waitFor(`${name} (pid ${p.pid}) exiting`, 3000, async () =>
      (await namespacePids(ns)).includes(p.pid) ? undefined : true,
    );
  }

  #replaceProcess(p: LabProcess): void {
    this.#state.processes = [...this.#state.processes.filter((x) => x.name !== p.name), p];
  }

  async #dhcpChange(u: UplinkPlan, current: FaultSet): Promise<void> {
    if (!u.dhcp) throw new LabError(`dhcp-change: ${u.name} is a static uplink, not DHCP`);
    if (current.carrier) {
      throw new LabError(`dhcp-change: ${u.name} has no carrier; heal it first`);
    }
    const dir = this.stateDir;
    const ispNode: LabNode = `isp${u.number}`;
    const generation = (this.#state.dhcpGeneration[String(u.number)] ?? 0) + 1;
    const address = dhcpAddress(u.number, generation);
    // Restart the ISP's DHCP server with a one-address pool holding only the new address.
    const old = this.#state.processes.find((p) => p.name === `dhcp-${u.name}`);
    if (old !== undefined && (await namespacePids(u.namespace)).includes(old.pid)) {
      process.kill(old.pid, "SIGTERM");
      await waitFor(`DHCP server of ${u.name} (pid ${old.pid}) exiting`, 3000, async () =>
        (await namespacePids(u.namespace)).includes(old.pid) ? undefined : true,
      );
    }
    await rm(join(dir, `dhcp-${u.name}.leases`), { force: true });
    await rm(join(dir, `dhcp-${u.name}.pid`), { force: true });
    const log = join(dir, `dhcp-${u.name}.out`);
    const pid = startDetachedIn(u.namespace, dhcpServerArgv(u, address, dir), log);
    this.#state.processes = this.#state.processes.filter((p) => p.name !== `dhcp-${u.name}`);
    this.#state.processes.push({ name: `dhcp-${u.name}`, node: ispNode, pid, log });
    this.#state.dhcpGeneration[String(u.number)] = generation;
    await writeState(this.#state);
    await waitFor(`DHCP server of ${u.name} writing its pid file`, 5000, () =>
      readPidFile(join(dir, `dhcp-${u.name}.pid`)),
    );
    // The router's client renews, gets a NAK for its old address, and asks again.
    const client = this.#state.processes.find((p) => p.name === `udhcpc-${u.routerInterface}`);
    const rtr = this.namespace("rtr");
    if (client === undefined || !(await namespacePids(rtr)).includes(client.pid)) {
      throw new LabError(`dhcp-change: the DHCP client on ${u.routerInterface} is not running`);
    }
    process.kill(client.pid, "SIGUSR1");
    await waitFor(
      `router address ${address} on ${u.routerInterface} after dhcp-change`,
      15_000,
      () => dhcpApplied(rtr, u.routerInterface, address),
    );
  }
}

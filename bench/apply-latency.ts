/**
 * Part 5's measuring script, run inside a lab's router namespace
 * (`ip netns exec P-rtr node --import tsx bench/apply-latency.ts ...`): the
 * built dataplane (`dist/`) against the real kernel, timed in-process. No
 * daemon and no health checks: uplink states are set by this script.
 *
 *     apply-latency.ts full --config FILE [--rounds 10]
 *         remove everything uplinkd owns, then render + apply the whole
 *         desired state (nft table, routes, rules; verified) ROUNDS times;
 *         leaves the last apply in place.
 *     apply-latency.ts transitions --config FILE [--rounds 40]
 *         with the full state in place, take uplinks down and up again
 *         (uplink i, round-robin) through the daemon's own controller
 *         (Controller.request("transition")): it renders, replaces the
 *         changed map elements (one small nft transaction), applies the
 *         routes and rules that differ, and clears the uplink's conntrack
 *         entries on its own lane. The kernel calls are timed.
 *     apply-latency.ts cleanup --config FILE
 *         remove everything uplinkd owns.
 *
 * Prints one JSON object. Times are ms.
 */
import { parseArgs } from "node:util";
import type { Config } from "../src/config/schema.js";
import type { UplinkView } from "../src/dataplane/render.js";
import type { UplinkState } from "../src/uplink-health.js";
import { DIST_DIR } from "./built.js";

async function load<T>(path: string): Promise<T> {
  return (await import(`${DIST_DIR}${path}`)) as T;
}

const { loadConfig } = await load<typeof import("../src/config/load.js")>("config/load.js");
const { Dataplane } = await load<typeof import("../src/dataplane/apply.js")>("dataplane/apply.js");
const { renderDesired } =
  await load<typeof import("../src/dataplane/render.js")>("dataplane/render.js");
const { buildViews } = await load<typeof import("../src/dataplane/views.js")>("dataplane/views.js");
const { Controller } = await load<typeof import("../src/controller/controller.js")>(
  "controller/controller.js",
);
const { SystemClock } = await load<typeof import("../src/clock.js")>("clock.js");
const { observeUplinks, lanAddress, localNetworks } =
  await load<typeof import("../src/links/observe.js")>("links/observe.js");
const { LinuxKernel } = await load<typeof import("../src/kernel/linux.js")>("kernel/linux.js");

/** Timings of one down or up transition, ms. */
export interface TransitionTiming {
  uplink: string;
  to: "down" | "up";
  /** Rendering the whole desired state (what the controller does first). */
  renderMs: number;
  /** `nft -f` of the changed map elements. */
  mapsMs: number;
  /** `conntrack -D -m MARK/MASK` (down only; 0 on up). */
  conntrackMs: number;
  /** Conntrack entries deleted. */
  deleted: number;
  /** `ip -batch` of the route and rule commands that differ (0 when none). */
  ipMs: number;
  /** Routes or rules changed, so they were applied. */
  ipApplied: boolean;
  /** Transition -> the controller's urgent reconcile done (maps, routes, rules; not the clean-up). */
  totalMs: number;
  /** Until new connections avoid (or may use) the uplink: the map update is in the kernel. */
  mapsReadyMs: number;
}

/** What `full` prints. */
export interface FullReport {
  uplinks: number;
  rules: number;
  /** nft script size, bytes. */
  nftBytes: number;
  /** Rendering the desired state, ms per round. */
  renderMs: number[];
  /** Dataplane.apply from nothing (plan, nft -f, ip -batch, re-read and verify), ms per round. */
  applyMs: number[];
}

/** What `transitions` prints. */
export interface TransitionsReport {
  uplinks: number;
  /** Conntrack entries in the table when the transitions started. */
  conntrackEntries: number;
  transitions: TransitionTiming[];
}

function ms(t0: number): number {
  return Math.round((performance.now() - t0) * 100) / 100;
}

async function setup(configPath: string) {
  const config: Config = await loadConfig(configPath);
  const kernel = new LinuxKernel();
  kernelsToClose.push(kernel);
  const [links, routes] = await Promise.all([kernel.readLinks(), kernel.readRoutes()]);
  const protocol = config.dataplane.route_protocol;
  const observed = observeUplinks(config, links, routes, protocol);
  const lan = lanAddress(config, links);
  const surroundings = {
    ...(lan === undefined ? {} : { lanAddress: lan }),
    localNetworks: localNetworks(routes, protocol),
  };
  const dataplane = new Dataplane(kernel, { table: config.dataplane.table, protocol });
  const states = new Map<string, UplinkState>(config.uplinks.map((u) => [u.name, "up"]));
  const views = (): UplinkView[] =>
    buildViews(config, observed, (name) => states.get(name) ?? "up");
  return { config, kernel, dataplane, surroundings, states, views };
}

async function full(configPath: string, rounds: number): Promise<FullReport> {
  const { config, dataplane, surroundings, views } = await setup(configPath);
  const report: FullReport = {
    uplinks: config.uplinks.length,
    rules: config.rules.length,
    nftBytes: 0,
    renderMs: [],
    applyMs: [],
  };
  for (let i = 0; i < rounds; i++) {
    await dataplane.removeAll();
    let t0 = performance.now();
    const v = views();
    const desired = renderDesired(config, v, surroundings);
    report.renderMs.push(ms(t0));
    report.nftBytes = Buffer.byteLength(desired.nftScript);
    t0 = performance.now();
    await dataplane.apply(desired, v);
    report.applyMs.push(ms(t0));
  }
  return report;
}

/** Kernel adapters made by this run, closed once its report is written. */
const kernelsToClose: InstanceType<typeof LinuxKernel>[] = [];

/** A kernel whose writes are timed: what ran, from when to when (performance.now ms). */
function timedKernel(kernel: InstanceType<typeof LinuxKernel>) {
  const calls: { op: string; start: number; end: number; result?: number }[] = [];
  const time = async <T>(op: string, work: () => Promise<T>): Promise<T> => {
    const start = performance.now();
    const result = await work();
    calls.push({
      op,
      start,
      end: performance.now(),
      ...(typeof result === "number" ? { result } : {}),
    });
    return result;
  };
  type K = InstanceType<typeof LinuxKernel>;
  const wrapped: Partial<K> = {
    nftLoad: (script) => time("nft", () => kernel.nftLoad(script)),
    ipBatch: (lines) => time(lines.length === 0 ? "ip-none" : "ip", () => kernel.ipBatch(lines)),
    conntrackDelete: (mark, mask) => time("conntrack", () => kernel.conntrackDelete(mark, mask)),
  };
  // A proxy, not a prototype copy: the kernel's methods use its private fields (its sessions).
  const timed = new Proxy(kernel, {
    get(target, prop) {
      if (Object.hasOwn(wrapped, prop)) return wrapped[prop as keyof K];
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function"
        ? (value as (...a: unknown[]) => unknown).bind(target)
        : value;
    },
  });
  return { timed, calls };
}

async function transitions(configPath: string, rounds: number): Promise<TransitionsReport> {
  const { config, kernel, surroundings, states, views } = await setup(configPath);
  const { timed, calls } = timedKernel(kernel);
  const silent = (await import("pino")).pino({ level: "silent" });
  const controller = new Controller({
    kernel: timed,
    log: silent,
    clock: new SystemClock(),
    inputs: () => {
      const v = views();
      return {
        config,
        views: v,
        surroundings,
        failed: new Set(v.filter((x) => x.usability === "bad").map((x) => x.name)),
      };
    },
    verifyIntervalMs: 3_600_000,
    retryDelayMs: () => 1000,
  });
  await controller.start();
  const counts = await kernel.conntrackCountByMark(0);
  const report: TransitionsReport = {
    uplinks: config.uplinks.length,
    conntrackEntries: [...counts.values()].reduce((a, b) => a + b, 0),
    transitions: [],
  };
  const step = async (name: string, to: "down" | "up"): Promise<void> => {
    states.set(name, to);
    calls.length = 0;
    const t0 = performance.now();
    renderDesired(config, views(), surroundings);
    const renderMs = ms(t0);
    const start = performance.now();
    await controller.request("transition", `transition of ${name}`);
    const totalMs = ms(start);
    await controller.cleaner.idle();
    await controller.idle();
    const nft = calls.find((c) => c.op === "nft");
    const ip = calls.find((c) => c.op === "ip");
    const cleanups = calls.filter((c) => c.op === "conntrack");
    report.transitions.push({
      uplink: name,
      to,
      renderMs,
      mapsMs: nft === undefined ? 0 : Math.round((nft.end - nft.start) * 100) / 100,
      conntrackMs: Math.round(cleanups.reduce((a, c) => a + c.end - c.start, 0) * 100) / 100,
      deleted: cleanups.reduce((a, c) => a + (c.result ?? 0), 0),
      ipMs: ip === undefined ? 0 : Math.round((ip.end - ip.start) * 100) / 100,
      ipApplied: ip !== undefined,
      totalMs,
      mapsReadyMs: nft === undefined ? 0 : Math.round((nft.end - start) * 100) / 100,
    });
  };
  for (let i = 0; i < rounds; i++) {
    const uplink = config.uplinks[i % config.uplinks.length];
    if (uplink === undefined) break;
    await step(uplink.name, "down");
    await step(uplink.name, "up");
  }
  await controller.stop(config, false);
  return report;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { config: { type: "string" }, rounds: { type: "string" } },
  });
  const mode = positionals[0];
  const configPath = values.config;
  if (configPath === undefined) throw new Error("--config is required");
  const rounds = Number(values.rounds ?? "10");
  let out: unknown;
  if (mode === "full") out = await full(configPath, rounds);
  else if (mode === "transitions") out = await transitions(configPath, rounds);
  else if (mode === "cleanup") {
    await (await setup(configPath)).dataplane.removeAll();
    out = { ok: true };
  } else throw new Error(`unknown mode ${String(mode)}: use full, transitions or cleanup`);
  process.stdout.write(`${JSON.stringify(out)}\n`);
  // The kernel adapter keeps long-lived reader processes (ip, nft): end them.
  kernelsToClose.forEach((k) => {
    k.close();
  });
}

main().catch((error: unknown) => {
  process.stderr.write(
    `apply-latency: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});

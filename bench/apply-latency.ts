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
 *         (uplink i, round-robin), doing what the daemon does on a health
 *         transition (Daemon.onTransition): render the maps, replace the
 *         changed map elements (one small nft transaction), delete the
 *         uplink's conntrack entries (on down), render routes and rules and,
 *         when they differ from the last ones applied, apply them.
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
const { renderDesired, renderMaps, renderRoutes, renderRules } =
  await load<typeof import("../src/dataplane/render.js")>("dataplane/render.js");
const { buildViews, usabilityOf } =
  await load<typeof import("../src/dataplane/views.js")>("dataplane/views.js");
const { observeUplinks, lanAddress, localNetworks } =
  await load<typeof import("../src/links/observe.js")>("links/observe.js");
const { LinuxKernel } = await load<typeof import("../src/kernel/linux.js")>("kernel/linux.js");

/** Timings of one down or up transition, ms. */
export interface TransitionTiming {
  uplink: string;
  to: "down" | "up";
  /** renderMaps + comparing with the maps in place. */
  renderMs: number;
  /** `nft -f` of the changed map elements. */
  mapsMs: number;
  /** `conntrack -D -m MARK/MASK` (down only; 0 on up). */
  conntrackMs: number;
  /** Conntrack entries deleted. */
  deleted: number;
  /** Rendering routes and rules, and (when they changed) reading the kernel's and applying the difference. */
  ipMs: number;
  /** Routes or rules changed, so they were applied. */
  ipApplied: boolean;
  /** Transition -> kernel updated: everything above. */
  totalMs: number;
  /** Until new connections avoid (or may use) the uplink: render + maps. */
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

async function transitions(configPath: string, rounds: number): Promise<TransitionsReport> {
  const { config, kernel, dataplane, surroundings, states, views } = await setup(configPath);
  const initial = renderDesired(config, views(), surroundings);
  await dataplane.apply(initial, views());
  let lastMaps = renderMaps(config, views(), surroundings).maps;
  let lastIp = JSON.stringify({ routes: initial.routes, rules: initial.rules });
  const counts = await kernel.conntrackCountByMark(0);
  const report: TransitionsReport = {
    uplinks: config.uplinks.length,
    conntrackEntries: [...counts.values()].reduce((a, b) => a + b, 0),
    transitions: [],
  };
  const step = async (name: string, to: "down" | "up"): Promise<void> => {
    const from = states.get(name) ?? "up";
    states.set(name, to);
    const start = performance.now();
    const v = views();
    const { maps, choices } = renderMaps(config, v, surroundings);
    const changed = Object.fromEntries(
      Object.entries(maps).filter(
        ([map, elements]) => JSON.stringify(elements) !== JSON.stringify(lastMaps[map]),
      ),
    );
    const renderMs = ms(start);
    let t0 = performance.now();
    if (Object.keys(changed).length > 0) await dataplane.updateMaps(changed);
    lastMaps = maps;
    const mapsMs = ms(t0);
    const mapsReadyMs = ms(start);
    let conntrackMs = 0;
    let deleted = 0;
    const view = v.find((x) => x.name === name);
    if (view !== undefined && usabilityOf(to) === "bad" && usabilityOf(from) !== "bad") {
      t0 = performance.now();
      deleted = await kernel.conntrackDelete(view.mark, view.mask);
      conntrackMs = ms(t0);
    }
    t0 = performance.now();
    const ip = {
      routes: renderRoutes(
        config,
        v,
        choices[config.router_policy] ?? { kind: "main" },
        surroundings.lanAddress,
      ),
      rules: renderRules(config, v),
    };
    const ipApplied = JSON.stringify(ip) !== lastIp;
    if (ipApplied) {
      await dataplane.applyIp(ip);
      lastIp = JSON.stringify(ip);
    }
    const ipMs = ms(t0);
    report.transitions.push({
      uplink: name,
      to,
      renderMs,
      mapsMs,
      conntrackMs,
      deleted,
      ipMs,
      ipApplied,
      totalMs: ms(start),
      mapsReadyMs,
    });
  };
  for (let i = 0; i < rounds; i++) {
    const uplink = config.uplinks[i % config.uplinks.length];
    if (uplink === undefined) break;
    await step(uplink.name, "down");
    await step(uplink.name, "up");
  }
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
}

main().catch((error: unknown) => {
  process.stderr.write(
    `apply-latency: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});

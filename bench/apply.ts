/**
 * Part 5: apply latency. How long the dataplane takes to put an uplink
 * state change into the kernel (the steps of Daemon.onTransition), at 2, 8
 * and 32 uplinks, and how long a
 * full apply takes (the 32-uplink table; a config with 1,000 steering
 * rules). Measured in-process by bench/apply-latency.ts, run in each lab's
 * router namespace against the real kernel, with conntrack holding the
 * entries of a few thousand recent LAN connections (conntrack -D scans the
 * whole table).
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, stringify } from "yaml";
import { readFile } from "node:fs/promises";
import type { Lab } from "../src/lab/lab.js";
import type { FullReport, TransitionsReport } from "./apply-latency.js";
import { labDaemons } from "./built.js";
import type { BenchContext } from "./context.js";
import { spreadOf, type Spread } from "./stats.js";

const SCRIPT = fileURLToPath(new URL("./apply-latency.ts", import.meta.url));

/** Run the measuring script in the lab's router namespace. */
async function script<T>(lab: Lab, args: string[]): Promise<T> {
  const r = await lab.exec(
    "rtr",
    [process.execPath, "--import", import.meta.resolve("tsx"), SCRIPT, ...args],
    { timeoutMs: 600_000 },
  );
  if (r.code !== 0) {
    throw new Error(
      `apply-latency ${args[0] ?? ""} failed (${r.code ?? r.signal}): ${r.stderr.trim()}`,
    );
  }
  return JSON.parse(r.stdout) as T;
}

/**
 * Steering config of `count` rules over the lab's uplinks, a mix of what
 * users write: destination prefixes (from 198.18.0.0/15, the benchmarking
 * range), destination ports with protocol, LAN sources, named sets, DSCP
 * and sticky rules, over four policies.
 */
export function steeringConfig(uplinks: readonly string[], count = 1000): Record<string, unknown> {
  const half = Math.max(1, Math.floor(uplinks.length / 2));
  const member = (uplink: string, tier = 1) => ({ uplink, weight: 1, tier });
  const policies = {
    video: { members: uplinks.slice(0, half).map((u) => member(u)) },
    bulk: { members: uplinks.slice(half).map((u) => member(u)) },
    voip: {
      members: [member(uplinks[0] ?? "isp1"), member(uplinks[1] ?? uplinks[0] ?? "isp1", 2)],
    },
    backup: {
      members: uplinks.map((u, i) => member(u, i === 0 ? 1 : 2)),
      last_resort: "unreachable",
    },
  };
  const names = ["video", "bulk", "voip", "backup", "default"];
  const pick = (i: number): string => names[i % names.length] ?? "default";
  const sets: Record<string, string[]> = {};
  for (let k = 0; k < 10; k++) {
    sets[`list${k}`] = Array.from({ length: 20 }, (_, j) => `198.19.${200 + k}.${j * 8}/29`);
  }
  const rules: Record<string, unknown>[] = [];
  const shares = { dst: 0.6, port: 0.2, src: 0.1, set: 0.05, dscp: 0.03 };
  const n = (share: number): number => Math.floor(count * share);
  for (let i = 0; i < n(shares.dst); i++) {
    rules.push({ dst: `198.18.${Math.floor(i / 4)}.${(i % 4) * 64}/26`, policy: pick(i) });
  }
  for (let i = 0; i < n(shares.port); i++) {
    rules.push({
      proto: "tcp",
      dst: `198.19.${i % 200}.0/24`,
      dst_port: 8000 + i,
      policy: pick(i + 1),
    });
  }
  for (let i = 0; i < n(shares.src); i++) {
    rules.push({
      src: `100.64.100.${(i % 250) + 3}`,
      proto: "tcp",
      dst_port: 20_000 + i,
      policy: pick(i + 2),
    });
  }
  for (let i = 0; i < n(shares.set); i++) {
    rules.push({ dst: `@list${i % 10}`, proto: "udp", dst_port: 30_000 + i, policy: pick(i + 3) });
  }
  for (let i = 0; i < n(shares.dscp); i++) {
    rules.push({
      dscp: ["ef", "af41", "cs1"][i % 3],
      proto: "udp",
      dst_port: 40_000 + i,
      policy: "voip",
    });
  }
  let i = 0;
  while (rules.length < count) {
    rules.push({
      src: "100.64.100.128/25",
      proto: "tcp",
      dst_port: 50_000 + i,
      policy: "bulk",
      sticky: { by: "src", timeout: "10m" },
    });
    i++;
  }
  return { sets, policies, rules };
}

/** Render + apply of each round, ms. */
function totals(r: FullReport): number[] {
  return r.applyMs.map((a, i) => a + (r.renderMs[i] ?? 0));
}

/** One lab size's figures. */
export interface ApplySize {
  uplinks: number;
  /** Conntrack entries while the transitions ran. */
  conntrackEntries: number;
  /** Uplink down -> kernel updated (maps, conntrack, routes/rules), ms. */
  down: Spread;
  /** Uplink down -> new connections avoid it (maps replaced), ms. */
  downMaps: Spread;
  /** conntrack -D of the uplink's entries, ms. */
  downConntrack: Spread;
  /** Uplink up -> kernel updated, ms. */
  up: Spread;
  /** Full apply from nothing (plan, nft -f of the whole table, ip batch, verify), ms. */
  full: Spread;
  /** Render + full apply: what a start or a reload costs, ms. */
  fullTotal: Spread;
  /** Rendering the whole desired state, ms. */
  render: Spread;
  nftBytes: number;
  raw: { full: FullReport; transitions: TransitionsReport };
}

/** Results of part 5. */
export interface ApplyResults {
  sizes: ApplySize[];
  /** Full apply of a config with 1,000 steering rules (32 uplinks). */
  rules:
    | (Omit<
        ApplySize,
        "down" | "downMaps" | "downConntrack" | "up" | "conntrackEntries" | "raw"
      > & {
        rules: number;
        raw: FullReport;
      })
    | null;
  rulesNote?: string;
}

/** Part 5. */
export async function applyPart(ctx: BenchContext): Promise<ApplyResults> {
  const fullRounds = ctx.quick ? 3 : 10;
  const connections = ctx.quick ? 1000 : 4000;
  const results: ApplyResults = { sizes: [], rules: null };
  for (const uplinks of [2, 8, 32]) {
    await ctx.withLab(`ap${uplinks}`, { uplinks }, async (lab) => {
      const config = lab.configPath;
      const full = await script<FullReport>(lab, [
        "full",
        "--config",
        config,
        "--rounds",
        String(fullRounds),
      ]);
      // Fill conntrack through the applied dataplane (entries stay ~120 s in TIME_WAIT).
      const traffic = await labDaemons.lanTraffic(lab, connections, { rounds: 1, concurrency: 50 });
      const rounds = ctx.quick ? Math.min(uplinks, 8) : Math.max(32, uplinks);
      const transitions = await script<TransitionsReport>(lab, [
        "transitions",
        "--config",
        config,
        "--rounds",
        String(rounds),
      ]);
      const downs = transitions.transitions.filter((t) => t.to === "down");
      const ups = transitions.transitions.filter((t) => t.to === "up");
      const size: ApplySize = {
        uplinks,
        conntrackEntries: transitions.conntrackEntries,
        down: spreadOf(downs.map((t) => t.totalMs)),
        downMaps: spreadOf(downs.map((t) => t.mapsReadyMs)),
        downConntrack: spreadOf(downs.map((t) => t.conntrackMs)),
        up: spreadOf(ups.map((t) => t.totalMs)),
        full: spreadOf(full.applyMs),
        fullTotal: spreadOf(totals(full)),
        render: spreadOf(full.renderMs, 2),
        nftBytes: full.nftBytes,
        raw: { full, transitions },
      };
      results.sizes.push(size);
      ctx.log(
        "apply",
        `${uplinks} uplinks (${traffic.ok} connections, ${transitions.conntrackEntries} conntrack entries): ` +
          `down ${size.down.median} ms, up ${size.up.median} ms, render + apply ${size.fullTotal.median} ms`,
      );
      if (uplinks === 32) {
        const parsed = parse(await readFile(config, "utf8")) as Record<string, unknown>;
        const steering = steeringConfig(lab.uplinks.map((u) => u.name));
        const rulesPath = join(lab.stateDir, "uplinkd-rules.yaml");
        await writeFile(rulesPath, stringify({ ...parsed, ...steering }));
        try {
          const r = await script<FullReport>(lab, [
            "full",
            "--config",
            rulesPath,
            "--rounds",
            String(fullRounds),
          ]);
          results.rules = {
            uplinks,
            rules: r.rules,
            full: spreadOf(r.applyMs),
            fullTotal: spreadOf(totals(r)),
            render: spreadOf(r.renderMs, 2),
            nftBytes: r.nftBytes,
            raw: r,
          };
          ctx.log(
            "apply",
            `${r.rules} rules, 32 uplinks: render + apply ${results.rules.fullTotal.median} ms`,
          );
        } catch (error) {
          results.rulesNote = `1,000-rule config: ${error instanceof Error ? error.message : String(error)}`;
          ctx.log("apply", results.rulesNote);
        }
      }
      await script(lab, ["cleanup", "--config", config]);
    });
  }
  return results;
}

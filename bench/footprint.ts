/**
 * Part 8: footprint. The daemon's resident memory and CPU while it probes,
 * idle otherwise (no LAN traffic, no status requests, no dashboard): a cost
 * curve at 2, 4, 8 and 16 uplinks with 2 IPv4 targets each, in the fast
 * profile (interval 200 ms) and the sub-second one (50 ms), and 4 uplinks
 * with 2 IPv4 + 2 IPv6 targets (both families). CPU is counted in clock
 * ticks (utime + stime from /proc), which depends less on the machine's
 * other load than wall-clock timings, in windows of 10 s (5 s with
 * --quick) whose median is reported. A profile of the idle daemon at 4
 * uplinks x 2 targets x 200 ms (`node --cpu-prof`) names its top costs.
 * With `--baseline DIR` (the `dist/` of another build) that build and this
 * one run back to back, in alternation, in the same lab, and the ratio of
 * their medians is reported.
 * Read from /proc: VmRSS of /proc/PID/status (sampled every second),
 * utime + stime of /proc/PID/stat (start and end). The daemon's children
 * (one `ping` per uplink and target, and `ip monitor`) are reported
 * separately, their memory as the sum of their PSS (smaps_rollup), which
 * shares the pages they have in common (libc, ping's text) among them.
 * The whole process tree (daemon and every descendant, short-lived ones
 * such as `nft`, `ip` and `conntrack` included) is counted too: see
 * {@link treeSample}.
 */
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LabDaemon } from "../src/lab/daemon.js";
import type { Lab } from "../src/lab/lab.js";
import { DIST_DIR, exec, labDaemons } from "./built.js";
import { errorText, sleep, writeConfig, type BenchContext } from "./context.js";
import { ratio, round, spreadOf, type Spread } from "./stats.js";

/** One footprint measurement. */
export interface Footprint {
  /** Health profile: `fast` (interval 200 ms) or `sub-second` (50 ms). */
  profile?: string;
  /** Families probed: `ipv4` or `both`. */
  families?: string;
  uplinks: number;
  targets: number;
  probesPerSecond: number;
  seconds: number;
  /** Daemon process: VmRSS samples, MB. */
  rssMb: Spread;
  /** Daemon process: peak resident memory (VmHWM) at the end, MB. */
  peakRssMb: number | null;
  /** Daemon process: CPU time / wall time, % of one core. */
  cpuPct: number | null;
  /** Daemon and all its descendants: CPU (% of one core) and summed VmRSS samples (MB). */
  tree: { cpuPct: number | null; rssMb: Spread };
  /** Tree CPU per window, % of one core (median over the windows). */
  treeWindows?: Spread;
  /** Daemon CPU per window, % of one core. */
  daemonWindows?: Spread;
  /** Children: how many (by command), their summed PSS (MB) and CPU (% of one core). */
  children: {
    count: number;
    commands: Record<string, number>;
    pssMb: number | null;
    cpuPct: number | null;
  };
}

/** One function of a CPU profile and its share of the samples. */
export interface ProfileCost {
  /** `name (file:line)`. */
  fn: string;
  /** Self time, % of the samples that were not idle. */
  selfPct: number;
}

/** Two builds measured back to back (alternating windows in one lab). */
export interface BackToBack {
  /** The other build's `dist/` directory. */
  baseline: string;
  /** Tree CPU per window, % of one core. */
  before: Spread;
  after: Spread;
  /** Daemon CPU per window. */
  daemonBefore: Spread;
  daemonAfter: Spread;
  /** Daemon RSS (MB) at the end of each window. */
  rssBefore: Spread;
  rssAfter: Spread;
  /** after / before of the tree medians. */
  ratio: number | null;
}

/** Results of part 8. */
export interface FootprintResults {
  runs: Footprint[];
  /** Top self-time functions of the idle daemon (4 uplinks x 2 targets x 200 ms). */
  profile?: { seconds: number; top: ProfileCost[]; idlePct: number | null; gcPct: number | null };
  /** The same for the `--baseline` build. */
  baselineProfile?: FootprintResults["profile"];
  backToBack?: BackToBack;
  /** Runs that could not be measured, with the reason. */
  failed?: string[];
  /** When this part was measured apart from the rest of a results file: its start, mode and a note. */
  run?: { startedAt: string; mode: string; note: string };
}

/** utime + stime of a process, clock ticks; null when it is gone. */
async function cpuTicks(pid: number): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // Fields after the command (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return null;
  }
}

/** A `Vm...: N kB` value of /proc/PID/status, MB; null when absent. */
async function vm(pid: number, field: string): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    return m?.[1] === undefined ? null : Number(m[1]) / 1024;
  } catch {
    return null;
  }
}

/** Proportional set size of a process (/proc/PID/smaps_rollup), MB; null when gone. */
async function pss(pid: number): Promise<number | null> {
  try {
    const text = await readFile(`/proc/${pid}/smaps_rollup`, "utf8");
    const m = /^Pss:\s+(\d+) kB/m.exec(text);
    return m?.[1] === undefined ? null : Number(m[1]) / 1024;
  } catch {
    return null;
  }
}

/** The command name of a process (/proc/PID/comm). */
async function comm(pid: number): Promise<string> {
  try {
    return (await readFile(`/proc/${pid}/comm`, "utf8")).trim();
  } catch {
    return "?";
  }
}

/** Pids whose parent is `pid`. */
async function children(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

async function sumTicks(pids: readonly number[]): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const p of pids) {
    const t = await cpuTicks(p);
    if (t !== null) out.set(p, t);
  }
  return out;
}

/** A process and its descendants at one moment. */
export interface TreeSample {
  /** The process and its descendants alive now. */
  pids: number[];
  /**
   * CPU clock ticks of the tree: utime + stime + cutime + cstime of each
   * (/proc/PID/stat fields 14-17). A child that has ended and been reaped
   * has its time in its parent's cutime/cstime, so the difference of two
   * samples counts short-lived children too (Node reaps its children).
   */
  ticks: number;
  /** Sum of VmRSS of the tree, MB (shared pages counted in each process). */
  rssMb: number;
}

/** The tree rooted at `pid` (null when `pid` is gone), read from /proc. */
export async function treeSample(pid: number): Promise<TreeSample | null> {
  const parents = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parents.set(Number(entry), Number(fields[1]));
      ticks.set(
        Number(entry),
        Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]),
      );
    } catch {
      // gone
    }
  }
  if (!ticks.has(pid)) return null;
  const pids = [pid];
  for (let i = 0; i < pids.length; i++) {
    for (const [child, parent] of parents) if (parent === pids[i]) pids.push(child);
  }
  let rss = 0;
  for (const p of pids) rss += (await vm(p, "VmRSS")) ?? 0;
  return {
    pids,
    ticks: pids.reduce((sum, p) => sum + (ticks.get(p) ?? 0), 0),
    rssMb: rss,
  };
}

/**
 * Measure process `pid` (and its children) for `seconds`, in windows of
 * `windowS` seconds (default: one window).
 */
export async function sample(
  pid: number,
  seconds: number,
  hz: number,
  windowS = seconds,
): Promise<Omit<Footprint, "uplinks" | "targets" | "probesPerSecond">> {
  const kids0 = await children(pid);
  const t0 = performance.now();
  const tree0 = await treeSample(pid);
  const cpu0 = await cpuTicks(pid);
  const kidCpu0 = await sumTicks(kids0);
  const rss: number[] = [];
  const treeRss: number[] = [];
  const kidPss: number[] = [];
  const treeWindows: number[] = [];
  const daemonWindows: number[] = [];
  let w0 = { at: performance.now(), tree: tree0?.ticks ?? null, daemon: cpu0 };
  for (let i = 0; i < seconds; i++) {
    await sleep(1000);
    if ((i + 1) % windowS === 0) {
      const at = performance.now();
      const [tree, daemon] = [await treeSample(pid), await cpuTicks(pid)];
      const wall = (at - w0.at) / 1000;
      if (tree !== null && w0.tree !== null) {
        treeWindows.push(((tree.ticks - w0.tree) / hz / wall) * 100);
      }
      if (daemon !== null && w0.daemon !== null) {
        daemonWindows.push(((daemon - w0.daemon) / hz / wall) * 100);
      }
      w0 = { at, tree: tree?.ticks ?? null, daemon };
    }
    const r = await vm(pid, "VmRSS");
    if (r !== null) rss.push(r);
    const tree = await treeSample(pid);
    if (tree !== null) treeRss.push(tree.rssMb);
    let sum = 0;
    for (const k of kids0) sum += (await pss(k)) ?? 0;
    kidPss.push(sum);
  }
  const commands: Record<string, number> = {};
  for (const k of kids0) {
    const c = await comm(k);
    commands[c] = (commands[c] ?? 0) + 1;
  }
  const cpu1 = await cpuTicks(pid);
  const kidCpu1 = await sumTicks(kids0);
  const tree1 = await treeSample(pid);
  const wall = (performance.now() - t0) / 1000;
  let kidTicks = 0;
  for (const [p, t] of kidCpu1) kidTicks += t - (kidCpu0.get(p) ?? t);
  return {
    seconds,
    rssMb: spreadOf(rss),
    peakRssMb: round(await vm(pid, "VmHWM")),
    cpuPct: cpu0 === null || cpu1 === null ? null : round(((cpu1 - cpu0) / hz / wall) * 100, 2),
    tree: {
      cpuPct:
        tree0 === null || tree1 === null
          ? null
          : round(((tree1.ticks - tree0.ticks) / hz / wall) * 100, 2),
      rssMb: spreadOf(treeRss),
    },
    treeWindows: spreadOf(treeWindows, 2),
    daemonWindows: spreadOf(daemonWindows, 2),
    children: {
      count: kids0.length,
      commands,
      pssMb: round(spreadOf(kidPss).median),
      cpuPct: round((kidTicks / hz / wall) * 100, 2),
    },
  };
}

/** The sub-second profile (as in the sub-second part): 50 ms rounds, RTT-aware timeouts. */
const SUBSECOND_PROFILE = { name: "sub-second", interval: "50ms", timeout: "auto", down: 3 };
/** The fast profile: 200 ms rounds, timeout 500 ms. */
const FAST_PROFILE = { name: "fast", interval: "200ms", timeout: "500ms", down: 3, up: 5 };
const TARGETS4 = ["198.51.100.1", "203.0.113.1"];
const TARGETS6 = ["2001:db8:ffff::1", "2001:db8:ffff::2"];

/**
 * Top self-time functions of a V8 CPU profile (`.cpuprofile` JSON), as %
 * of the samples that were not idle; idle and GC shares as % of all.
 */
export function profileTop(
  profile: {
    nodes: {
      id: number;
      callFrame: { functionName: string; url: string; lineNumber: number };
    }[];
    samples?: number[];
    timeDeltas?: number[];
    startTime: number;
    endTime: number;
  },
  window: { fromEndS: number; toEndS: number } = { fromEndS: Infinity, toEndS: 0 },
  n = 15,
): { top: ProfileCost[]; idlePct: number | null; gcPct: number | null } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  let idle = 0;
  let gc = 0;
  // Only the samples `fromEndS`..`toEndS` seconds before the profile's end (µs stamps).
  const from = profile.endTime - window.fromEndS * 1e6;
  const to = profile.endTime - window.toEndS * 1e6;
  const samples: number[] = [];
  let t = profile.startTime;
  (profile.samples ?? []).forEach((id, i) => {
    t += profile.timeDeltas?.[i] ?? 0;
    if (t >= from && t <= to) samples.push(id);
  });
  for (const id of samples) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined) continue;
    if (frame.functionName === "(idle)") {
      idle++;
      continue;
    }
    if (frame.functionName === "(garbage collector)") gc++;
    const file =
      frame.url === ""
        ? ""
        : ` (${frame.url.replace(/^.*\/(dist|node_modules)\//, "$1/")}:${frame.lineNumber + 1})`;
    const key = `${frame.functionName || "(anonymous)"}${file}`;
    self.set(key, (self.get(key) ?? 0) + 1);
  }
  const busy = samples.length - idle;
  const top = [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([fn, count]) => ({ fn, selfPct: round((count / Math.max(1, busy)) * 100, 1) ?? 0 }));
  return {
    top,
    idlePct: samples.length === 0 ? null : round((idle / samples.length) * 100, 1),
    gcPct: samples.length === 0 ? null : round((gc / samples.length) * 100, 1),
  };
}

/**
 * Start the built daemon of `dist` (default this build's) on `config` in
 * the lab's router, with `nodeArgs` (e.g. `--cpu-prof`) before the script.
 */
function startDaemon(
  lab: Lab,
  config: string,
  dist: string = DIST_DIR,
  nodeArgs: readonly string[] = [],
): LabDaemon {
  const argv = [process.execPath, ...nodeArgs, join(dist, "cli.js"), "run", "-c", config];
  const child = lab.spawn("rtr", argv, { stdio: ["ignore", "pipe", "pipe"] });
  return new labDaemons.LabDaemon(lab, child);
}

/**
 * Profile the built daemon of `dist` on `config` in `lab` with `node
 * --cpu-prof`: `settleMs` after every uplink is up, then `seconds` whose
 * samples alone are counted (neither the start nor the stop).
 * @returns its top self-time functions (see {@link profileTop}).
 */
export async function profileDaemon(
  lab: Lab,
  config: string,
  dist: string,
  seconds: number,
  settleMs: number,
): Promise<ReturnType<typeof profileTop>> {
  const dir = await mkdtemp(join(tmpdir(), "uplinkd-prof-"));
  try {
    const daemon = startDaemon(lab, config, dist, ["--cpu-prof", `--cpu-prof-dir=${dir}`]);
    let stopS = 0;
    try {
      await daemon.waitForStates(["up"], 60_000);
      await sleep(settleMs);
      await sleep(seconds * 1000);
    } finally {
      const t0 = performance.now();
      await daemon.stop();
      stopS = (performance.now() - t0) / 1000;
    }
    const file = (await readdir(dir)).find((f) => f.endsWith(".cpuprofile"));
    if (file === undefined) throw new Error(`no CPU profile in ${dir}`);
    const cpuProfile = JSON.parse(await readFile(join(dir, file), "utf8")) as Parameters<
      typeof profileTop
    >[0];
    return profileTop(cpuProfile, { fromEndS: stopS + seconds, toEndS: stopS });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Part 8. `baseline`: the `dist/` of another build to compare with, back to back. */
export async function footprintPart(
  ctx: BenchContext,
  baseline?: string,
  sizes: readonly number[] = ctx.quick ? [4] : [2, 4, 8, 16],
): Promise<FootprintResults> {
  const windowS = ctx.quick ? 5 : 10;
  const windows = ctx.quick ? 3 : 6;
  const hz = Number((await exec.runCommand("getconf", ["CLK_TCK"])).stdout.trim()) || 100;
  const runs: Footprint[] = [];
  const results: FootprintResults = { runs };
  const settle = ctx.quick ? 2000 : 5000;

  const measureRun = async (
    lab: Lab,
    profile: typeof FAST_PROFILE | typeof SUBSECOND_PROFILE,
    uplinks: number,
    families: "ipv4" | "both",
  ): Promise<void> => {
    const targets = families === "both" ? [...TARGETS4, ...TARGETS6] : TARGETS4;
    const config = await writeConfig(lab, { ...profile, targets });
    const daemon = startDaemon(lab, config);
    const what = `${profile.name}, ${uplinks} uplinks x ${targets.length} targets (${families})`;
    try {
      await daemon.waitFor(
        (s) =>
          s.uplinks.every(
            (u) => u.state === "up" && (families === "ipv4" || u.ipv6?.state === "up"),
          ),
        60_000,
        "every uplink up",
      );
      await sleep(settle);
      const pid = daemon.child.pid;
      if (pid === undefined) throw new Error("the daemon has no pid");
      const s = await sample(pid, windowS * windows, hz, windowS);
      const probesPerSecond = profile === FAST_PROFILE ? 5 : 20;
      const f: Footprint = {
        profile: profile.name,
        families,
        uplinks,
        targets: targets.length,
        probesPerSecond,
        ...s,
      };
      runs.push(f);
      ctx.log(
        "footprint",
        `${what}: ` +
          `tree CPU ${f.treeWindows?.median} % (median of ${f.treeWindows?.n} windows of ${windowS} s), ` +
          `daemon ${f.daemonWindows?.median} %, RSS ${f.rssMb.median} MB; tree RSS ${f.tree.rssMb.median} MB; ` +
          `${f.children.count} children ${JSON.stringify(f.children.commands)}`,
      );
    } catch (error) {
      // A busy machine may keep a sub-second uplink from coming up: record it, go on.
      results.failed = [...(results.failed ?? []), `${what}: ${errorText(error).split("\n")[0]}`];
      ctx.log("footprint", `${what}: not measured: ${errorText(error).split("\n")[0]}`);
    } finally {
      await daemon.stop();
    }
  };

  // The profile first: where the idle daemon spends its time (the other build's too).
  const seconds = windowS * windows;
  const builds: [string, string][] = [["this build", DIST_DIR]];
  if (baseline !== undefined) builds.push(["before", baseline]);
  for (const [name, dist] of builds) {
    await ctx.withLab("fpp", { uplinks: 4 }, async (lab) => {
      const config = await writeConfig(lab, { ...FAST_PROFILE, targets: TARGETS4 });
      const top = await profileDaemon(lab, config, dist, seconds, settle);
      if (dist === DIST_DIR) results.profile = { seconds, ...top };
      else results.baselineProfile = { seconds, ...top };
      ctx.log(
        "footprint",
        `profile of the idle daemon, ${name} (4 uplinks x 2 targets x 200 ms, ${seconds} s; idle ${top.idlePct} %, GC ${top.gcPct} %), ` +
          `top self time (% of busy samples):\n` +
          top.top.map((t) => `    ${String(t.selfPct).padStart(5)} %  ${t.fn}`).join("\n"),
      );
    });
  }

  if (baseline !== undefined) {
    await ctx.withLab("fpb", { uplinks: 4 }, async (lab) => {
      const config = await writeConfig(lab, { ...FAST_PROFILE, targets: TARGETS4 });
      const tree = { before: [] as number[], after: [] as number[] };
      const daemonCpu = { before: [] as number[], after: [] as number[] };
      const rss = { before: [] as number[], after: [] as number[] };
      for (let round = 0; round < windows; round++) {
        for (const which of ["before", "after"] as const) {
          ctx.check();
          const daemon = startDaemon(lab, config, which === "before" ? baseline : undefined);
          try {
            await daemon.waitForStates(["up"], 60_000);
            await sleep(settle);
            const pid = daemon.child.pid;
            if (pid === undefined) throw new Error("the daemon has no pid");
            const s = await sample(pid, windowS * 2, hz, windowS * 2);
            if (s.tree.cpuPct !== null) tree[which].push(s.tree.cpuPct);
            if (s.cpuPct !== null) daemonCpu[which].push(s.cpuPct);
            if (s.rssMb.max !== null) rss[which].push(s.rssMb.max);
          } finally {
            await daemon.stop();
          }
        }
      }
      const before = spreadOf(tree.before, 2);
      const after = spreadOf(tree.after, 2);
      results.backToBack = {
        baseline,
        before,
        after,
        daemonBefore: spreadOf(daemonCpu.before, 2),
        daemonAfter: spreadOf(daemonCpu.after, 2),
        rssBefore: spreadOf(rss.before),
        rssAfter: spreadOf(rss.after),
        ratio: ratio(after.median, before.median),
      };
      ctx.log(
        "footprint",
        `back to back, 4 uplinks x 2 targets x 200 ms: tree CPU ${before.median} % -> ${after.median} % ` +
          `(ratio ${results.backToBack.ratio}; ${windows} alternating runs of ${windowS * 2} s each), ` +
          `daemon ${results.backToBack.daemonBefore.median} % -> ${results.backToBack.daemonAfter.median} %, ` +
          `RSS ${results.backToBack.rssBefore.median} -> ${results.backToBack.rssAfter.median} MB`,
      );
    });
  }

  // The cost curve: one lab per size, both profiles in it.
  for (const uplinks of sizes) {
    await ctx.withLab(`fp${uplinks}`, { uplinks }, async (lab) => {
      // Quick: the fast profile only (the sub-second curve is for full runs).
      for (const profile of ctx.quick ? [FAST_PROFILE] : [FAST_PROFILE, SUBSECOND_PROFILE]) {
        ctx.check();
        await measureRun(lab, profile, uplinks, "ipv4");
        if (uplinks === 4) await measureRun(lab, profile, uplinks, "both");
      }
    });
  }
  return results;
}

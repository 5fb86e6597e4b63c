/**
 * Part 8: footprint. The daemon's resident memory and CPU while it probes
 * 4 uplinks x 3 targets at 5 probes/s each (interval 200 ms), and the same
 * settings at 32 uplinks, over 60 s (15 s with --quick), idle otherwise.
 * Read from /proc: VmRSS of /proc/PID/status (sampled every second),
 * utime + stime of /proc/PID/stat (start and end). The daemon's children
 * (one `ping` per uplink and target, and `ip monitor`) are reported
 * separately, their memory as the sum of their PSS (smaps_rollup), which
 * shares the pages they have in common (libc, ping's text) among them.
 * The whole process tree (daemon and every descendant, short-lived ones
 * such as `nft`, `ip` and `conntrack` included) is counted too: see
 * {@link treeSample}.
 */
import { readFile, readdir } from "node:fs/promises";
import { exec, labDaemons } from "./built.js";
import { sleep, writeConfig, type BenchContext } from "./context.js";
import { round, spreadOf, type Spread } from "./stats.js";

/** One footprint measurement. */
export interface Footprint {
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
  /** Children: how many (by command), their summed PSS (MB) and CPU (% of one core). */
  children: {
    count: number;
    commands: Record<string, number>;
    pssMb: number | null;
    cpuPct: number | null;
  };
}

/** Results of part 8. */
export interface FootprintResults {
  runs: Footprint[];
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

/** Measure process `pid` (and its children) for `seconds`. */
export async function sample(
  pid: number,
  seconds: number,
  hz: number,
): Promise<Omit<Footprint, "uplinks" | "targets" | "probesPerSecond">> {
  const kids0 = await children(pid);
  const t0 = performance.now();
  const tree0 = await treeSample(pid);
  const cpu0 = await cpuTicks(pid);
  const kidCpu0 = await sumTicks(kids0);
  const rss: number[] = [];
  const treeRss: number[] = [];
  const kidPss: number[] = [];
  for (let i = 0; i < seconds; i++) {
    await sleep(1000);
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
    children: {
      count: kids0.length,
      commands,
      pssMb: round(spreadOf(kidPss).median),
      cpuPct: round((kidTicks / hz / wall) * 100, 2),
    },
  };
}

/** Part 8. */
export async function footprintPart(ctx: BenchContext): Promise<FootprintResults> {
  const seconds = ctx.quick ? 15 : 60;
  const hz = Number((await exec.runCommand("getconf", ["CLK_TCK"])).stdout.trim()) || 100;
  const targets = ["198.51.100.1", "203.0.113.1", "192.0.2.53"];
  const runs: Footprint[] = [];
  for (const uplinks of [4, 32]) {
    await ctx.withLab(`fp${uplinks}`, { uplinks }, async (lab) => {
      const config = await writeConfig(lab, {
        name: "footprint",
        interval: "200ms",
        timeout: "500ms",
        down: 3,
        up: 5,
        targets,
      });
      const daemon = labDaemons.startLabDaemon(lab, config);
      try {
        await daemon.waitForStates(["up"], 60_000);
        await sleep(ctx.quick ? 2000 : 5000);
        const pid = daemon.child.pid;
        if (pid === undefined) throw new Error("the daemon has no pid");
        const s = await sample(pid, seconds, hz);
        const f: Footprint = { uplinks, targets: targets.length, probesPerSecond: 5, ...s };
        runs.push(f);
        ctx.log(
          "footprint",
          `${uplinks} uplinks x ${targets.length} targets: RSS ${f.rssMb.median} MB, CPU ${f.cpuPct} %, ` +
            `with its process tree ${f.tree.rssMb.median} MB, ${f.tree.cpuPct} %, ` +
            `${f.children.count} children (${JSON.stringify(f.children.commands)}; PSS ${f.children.pssMb} MB, ` +
            `${f.children.cpuPct} % CPU)`,
        );
      } finally {
        await daemon.stop();
      }
    });
  }
  return { runs };
}

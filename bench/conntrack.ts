/**
 * Part 9: large conntrack tables. A busy office router holds 50,000 to
 * 250,000 conntrack entries; uplinkd must cost the same with them as with
 * an empty table.
 *
 * One lab with two uplinks and the fast health profile. The router's table
 * is filled with synthetic entries (`conntrack -R`, half with each uplink's
 * mark; see src/lab/conntrack.ts) to 0, 100,000 and 250,000 entries (0,
 * 2,000 and 5,000 with --quick), and at each size:
 *
 * - **CPU** of the daemon and its whole process tree (children included,
 *   short-lived ones too: see footprint.ts treeSample) over 60 s (5 s
 *   quick) with a dashboard event stream open (`/events/stream`, one status
 *   a second) and `/status` asked twice a second, as a ratio to the empty
 *   table;
 * - **`/status` answer time** of those requests (socket to parsed JSON);
 * - **blackhole failover** of one uplink (fast profile), as in part 1, at
 *   the empty and the largest table (the entries of the failed uplink are
 *   loaded again before each trial);
 * - **clean-up** of one uplink at the largest table: `conntrack -D -f ipv4
 *   -m MARK/MASK` as the daemon runs it, half the table being that
 *   uplink's, timed from the outside (with the daemon running).
 *
 * The measurement at a size starts once the daemon's status counts the
 * loaded entries, and a few seconds more.
 */
import { readFile } from "node:fs/promises";
import { request } from "node:http";
import type { LabDaemon } from "../src/lab/daemon.js";
import type { Lab } from "../src/lab/lab.js";
import type { StatusDocument } from "../src/control/api.js";
import { conntrackLab, control, exec, labDaemons } from "./built.js";
import {
  FAST,
  describeProfile,
  errorText,
  sleep,
  writeConfig,
  type BenchContext,
} from "./context.js";
import { daemonEvents, runTrial, trialSet, type Monitor, type TrialSet } from "./failover.js";
import { treeSample } from "./footprint.js";
import { ratio, round, spreadOf, type Spread } from "./stats.js";

/** The lab config's `dataplane.mark_mask`. */
const MARK_MASK = 0xff00;

/** One table size. */
export interface ConntrackSizeRun {
  /** Synthetic entries in the router's table. */
  entries: number;
  /** Time to load the entries added for this size, ms (null for 0). */
  fillMs: number | null;
  seconds: number;
  /** Daemon + descendants, % of one core. */
  treeCpuPct: number | null;
  /** The daemon process alone, % of one core (its reaped children not included). */
  daemonCpuPct: number | null;
  /** Tree CPU / tree CPU with the empty table. */
  cpuRatio: number | null;
  /** Summed VmRSS of the tree, MB (samples every second). */
  treeRssMb: Spread;
  /** `/status` answer times, ms. */
  statusMs: Spread;
  /** Status events received on the dashboard stream during the window. */
  streamEvents: number;
  /** Sum of `connections` over the uplinks at the end, and what `conntrack -C` said. */
  connections: number | null;
  tableSize: number;
  /** Recounts (dumps) the daemon logged during the window. */
  recounts: number;
}

/** Results of part 9. */
export interface ConntrackResults {
  sizes: ConntrackSizeRun[];
  /** Blackhole failover, fast profile, per table size. */
  failover: { entries: number; set: TrialSet }[];
  /** Clean-up of one uplink. */
  cleanup: {
    entries: number;
    uplinkEntries: number;
    ms: Spread;
    deleted: number[];
  } | null;
}

/** The daemon's log lines "conntrack entries counted: N ...", in order: N of each. */
function recounts(daemon: LabDaemon): number[] {
  return [...daemon.output.join("").matchAll(/conntrack entries counted: (\d+)/g)].map((m) =>
    Number(m[1]),
  );
}

/**
 * Waits until the daemon's status counts at least `atLeast` connections
 * over all uplinks (its counts follow the table), and then `settleMs`.
 */
async function waitForCount(
  daemon: LabDaemon,
  atLeast: number,
  maxMs: number,
  settleMs = 2000,
): Promise<void> {
  const deadline = Date.now() + maxMs;
  let seen: number | null = null;
  while (Date.now() < deadline) {
    const s = await daemon.status();
    seen =
      s?.uplinks.reduce<number | null>(
        (sum, u) => (sum === null || u.connections === null ? null : sum + u.connections),
        0,
      ) ?? null;
    if (seen !== null && seen >= atLeast) {
      await sleep(settleMs);
      return;
    }
    await sleep(200);
  }
  throw new Error(
    `the daemon's status did not count ${atLeast} connections within ${maxMs} ms ` +
      `(last: ${seen ?? "none"}):\n${daemon.log(20)}`,
  );
}

/** An open `/events/stream` on the control socket, counting the status events it gets. */
class EventStream {
  events = 0;
  readonly #req: ReturnType<typeof request>;

  constructor(socketPath: string) {
    this.#req = request({ socketPath, path: "/events/stream", method: "GET" }, (res) => {
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        this.events += chunk.split("event: status").length - 1;
      });
    });
    this.#req.on("error", () => undefined);
    this.#req.end();
  }

  close(): void {
    this.#req.destroy();
  }
}

/** CPU, RSS and `/status` times over `seconds`, with a stream open and status twice a second. */
async function measureWindow(
  lab: Lab,
  daemon: LabDaemon,
  seconds: number,
  hz: number,
): Promise<Omit<ConntrackSizeRun, "entries" | "fillMs" | "cpuRatio" | "tableSize">> {
  const pid = daemon.child.pid;
  if (pid === undefined) throw new Error("the daemon has no pid");
  const recountsBefore = recounts(daemon).length;
  const stream = new EventStream(lab.controlSocket);
  const statusMs: number[] = [];
  const rss: number[] = [];
  let last: StatusDocument | undefined;
  const state = { stop: false };
  const asker = (async () => {
    while (!state.stop) {
      const next = Date.now() + 500;
      const t0 = performance.now();
      last = (await control.controlRequest(
        lab.controlSocket,
        "GET",
        "/status",
        undefined,
        10_000,
      )) as StatusDocument;
      statusMs.push(performance.now() - t0);
      await sleep(Math.max(0, next - Date.now()));
    }
  })();
  try {
    await sleep(1000);
    const t0 = performance.now();
    const tree0 = await treeSample(pid);
    const self0 = await selfTicks(pid);
    for (let i = 0; i < seconds; i++) {
      await sleep(1000);
      const t = await treeSample(pid);
      if (t !== null) rss.push(t.rssMb);
    }
    const tree1 = await treeSample(pid);
    const self1 = await selfTicks(pid);
    const wall = (performance.now() - t0) / 1000;
    const pct = (a: number | null | undefined, b: number | null | undefined): number | null =>
      a === null || a === undefined || b === null || b === undefined
        ? null
        : round(((b - a) / hz / wall) * 100, 2);
    return {
      seconds,
      treeCpuPct: pct(tree0?.ticks, tree1?.ticks),
      daemonCpuPct: pct(self0, self1),
      treeRssMb: spreadOf(rss),
      statusMs: spreadOf(statusMs, 2),
      streamEvents: stream.events,
      connections:
        last?.uplinks.reduce<number | null>(
          (sum, u) => (sum === null || u.connections === null ? null : sum + u.connections),
          0,
        ) ?? null,
      recounts: recounts(daemon).length - recountsBefore,
    };
  } finally {
    state.stop = true;
    await asker;
    stream.close();
  }
}

/** utime + stime of one process (/proc/PID/stat fields 14, 15), ticks; null when gone. */
async function selfTicks(pid: number): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]);
  } catch {
    return null;
  }
}

/** Keeps the router's table at `target` synthetic entries, half per uplink mark. */
class TableFiller {
  #offset = 0;

  constructor(
    private readonly lab: Lab,
    private readonly marks: readonly number[],
  ) {}

  /** Loads what each mark lacks to reach `target / marks` entries; returns the load time, ms. */
  async fill(target: number): Promise<number> {
    const ns = this.lab.namespace("rtr");
    const per = Math.floor(target / this.marks.length);
    const groups = [];
    for (const mark of this.marks) {
      const have = await conntrackLab.countConntrackByMark(ns, mark, MARK_MASK);
      if (have < per) groups.push({ mark, count: per - have });
    }
    if (groups.length === 0) return 0;
    const r = await conntrackLab.fillConntrack(ns, groups, { offset: this.#offset });
    this.#offset += r.entries;
    return r.ms;
  }
}

/** uplinkd with a full table before each trial; restarted every 4 trials (flap damping). */
class FullTableMonitor implements Monitor {
  daemon: LabDaemon | undefined;

  constructor(
    private readonly lab: Lab,
    private readonly configPath: string,
    private readonly filler: TableFiller,
    private readonly entries: number,
  ) {}

  /** "cleared N conntrack entries of UPLINK" lines before the trial. */
  #cleared = 0;

  /** How many times the daemon has logged the clean-up of `uplink`'s entries. */
  #clearedLines(uplink: string): number {
    return this.daemon?.output.join("").split(`conntrack entries of ${uplink}"`).length ?? 1;
  }

  async before(trial: number, uplink: number): Promise<void> {
    await this.filler.fill(this.entries);
    if (this.daemon === undefined || trial % 4 === 0) {
      await this.stop();
      this.daemon = labDaemons.startLabDaemon(this.lab, this.configPath);
    }
    await this.daemon.waitForStates(["up"], 60_000);
    await waitForCount(this.daemon, this.entries * 0.99, 120_000);
    this.#cleared = this.#clearedLines(this.lab.uplink(uplink).name);
  }

  async downAt(uplink: number, since: number): Promise<number | null> {
    const name = this.lab.uplink(uplink).name;
    const down = (await daemonEvents(this.lab)).find(
      (e) => e.uplink === name && e.to === "down" && Date.parse(e.time) >= since,
    );
    return down === undefined ? null : Date.parse(down.time);
  }

  /**
   * Waits until every uplink is up and the daemon has finished deleting the
   * failed uplink's entries (its clean-up runs after the failover, for
   * seconds at 250,000 entries): a refill while it runs would be deleted
   * in part.
   */
  async after(_trial: number, uplink: number): Promise<void> {
    await this.daemon?.waitForStates(["up"], 60_000);
    const name = this.lab.uplink(uplink).name;
    const deadline = Date.now() + 60_000;
    while (this.#clearedLines(name) <= this.#cleared) {
      if (Date.now() > deadline) {
        throw new Error(`the daemon did not clear ${name}'s conntrack entries within 60 s`);
      }
      await sleep(200);
    }
  }

  async stop(): Promise<void> {
    await this.daemon?.stop();
    this.daemon = undefined;
  }
}

/** Part 9. */
export async function conntrackPart(ctx: BenchContext, trials: number): Promise<ConntrackResults> {
  const sizes = ctx.quick ? [0, 2000, 5000] : [0, 100_000, 250_000];
  const seconds = ctx.quick ? 5 : 60;
  const hz = Number((await exec.runCommand("getconf", ["CLK_TCK"])).stdout.trim()) || 100;
  const results: ConntrackResults = { sizes: [], failover: [], cleanup: null };
  await ctx.withLab("ct", { uplinks: 2 }, async (lab) => {
    const configPath = await writeConfig(lab, FAST);
    const ns = lab.namespace("rtr");
    let daemon = labDaemons.startLabDaemon(lab, configPath);
    const first = await daemon.waitForStates(["up"], 60_000).catch(async (error: unknown) => {
      await daemon.stop();
      throw error;
    });
    const marks = first.uplinks.map((u) => Number(u.mark));
    const filler = new TableFiller(lab, marks);
    try {
      for (const entries of sizes) {
        ctx.check();
        const fillMs = entries === 0 ? null : await filler.fill(entries);
        await waitForCount(daemon, entries * 0.99, 120_000, ctx.quick ? 2000 : 5000);
        const w = await measureWindow(lab, daemon, seconds, hz);
        const base = results.sizes[0]?.treeCpuPct ?? null;
        const run: ConntrackSizeRun = {
          entries,
          fillMs,
          ...w,
          cpuRatio: entries === 0 ? 1 : ratio(w.treeCpuPct, base, 2),
          tableSize: await conntrackLab.conntrackSize(ns),
        };
        results.sizes.push(run);
        ctx.log(
          "conntrack",
          `${entries} entries (loaded in ${fillMs ?? 0} ms): tree CPU ${run.treeCpuPct} % ` +
            `(x${run.cpuRatio}), daemon ${run.daemonCpuPct} %, /status median ${run.statusMs.median} ms ` +
            `max ${run.statusMs.max} ms, ${run.streamEvents} stream events, connections ${run.connections} ` +
            `of ${run.tableSize}, ${run.recounts} recounts in the window`,
        );
      }
    } finally {
      await daemon.stop();
    }

    // Clean-up of one uplink at the largest size, with the daemon running.
    const largest = sizes[sizes.length - 1] ?? 0;
    const cleanups: number[] = [];
    const deleted: number[] = [];
    daemon = labDaemons.startLabDaemon(lab, configPath);
    try {
      await daemon.waitForStates(["up"], 60_000);
      const mark = marks[0] ?? 0x100;
      for (let i = 0; i < (ctx.quick ? 1 : 3); i++) {
        ctx.check();
        await filler.fill(largest);
        const r = await conntrackLab.deleteConntrackByMark(ns, mark, MARK_MASK);
        cleanups.push(r.ms);
        deleted.push(r.deleted);
        ctx.log("conntrack", `clean-up of one uplink: ${r.deleted} of ${largest} in ${r.ms} ms`);
      }
    } finally {
      await daemon.stop();
    }
    results.cleanup = {
      entries: largest,
      uplinkEntries: Math.floor(largest / 2),
      ms: spreadOf(cleanups, 0),
      deleted,
    };

    // Blackhole failover, fast profile, at the empty and the largest table.
    for (const entries of [0, largest]) {
      ctx.check();
      await exec.runCommand("ip", ["netns", "exec", ns, "conntrack", "-F"], {
        allowExitCodes: [1],
      });
      const monitor = new FullTableMonitor(lab, configPath, filler, entries);
      const done = [];
      try {
        for (let i = 0; i < trials; i++) {
          ctx.check();
          const t = await runTrial(ctx, lab, monitor, i, (i % 2) + 1, "blackhole", {
            failoverMaxMs: 20_000,
            recoveryMaxMs: 0,
          });
          done.push(t);
          ctx.log(
            "conntrack",
            `failover at ${entries} entries #${i + 1} ${t.uplink}: ${t.failoverMs ?? "-"} ms` +
              (t.error === undefined ? "" : ` (${t.error})`),
          );
        }
      } catch (error) {
        ctx.log("conntrack", `failover at ${entries} entries: ${errorText(error)}`);
        throw error;
      } finally {
        await monitor.stop();
      }
      results.failover.push({
        entries,
        set: trialSet("uplinkd", FAST.name, describeProfile(FAST), "blackhole", done),
      });
    }
  });
  return results;
}

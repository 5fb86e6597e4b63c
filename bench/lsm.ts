/**
 * Part 4: a peer in the same run. lsm ("link status monitor", Debian
 * package `lsm`, the monitor Shorewall's multi-ISP documentation points
 * to) with its default detection settings watches each uplink of a lab
 * router set up by hand (see static-routing.ts); its event script
 * (bench/lsm-event.sh) drops a dead uplink from the multipath default route
 * (and deletes its conntrack entries, as uplinkd does), and adds it back
 * when lsm reports it up. Failover and recovery are
 * measured exactly as for uplinkd (same lab topology, fault commands and
 * probe).
 *
 * lsm's defaults (lsm 1.0.4, /etc/lsm/lsm.conf): one ICMP echo every
 * 1000 ms, timeout 1000 ms, decisions once a second; down when 7 in a row
 * are lost or 15 of the last 100; up when more than 10 in a row came back
 * and at most 5 of the last 100 were lost. Only the plumbing is set per
 * connection: name, checkip (198.51.100.1, one of uplinkd's targets),
 * device and sourceip (the uplink), eventscript; notifyscript and
 * warn_email are emptied (no mail).
 */
import type { ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Lab } from "../src/lab/lab.js";
import { exec, topology } from "./built.js";
import { errorText, sleep, type BenchContext } from "./context.js";
import { runTrial, trialSet, type Monitor, type Trial, type TrialSet } from "./failover.js";
import type { FailoverFault } from "./probe.js";
import { allNexthops, installStaticRouting } from "./static-routing.js";

/** What lsm's defaults are, for the report. */
export const LSM_SETTINGS =
  "lsm defaults: ping every 1000 ms, timeout 1000 ms; down after 7 lost in a row or 15 of the last 100; " +
  "up after > 10 in a row with <= 5 of the last 100 lost";

/** One line of the event script's log. */
export interface LsmEvent {
  /** Script started / route replaced, epoch ms. */
  start: number;
  end: number;
  state: string;
  name: string;
}

/** lsm watching every uplink of a lab, started in its router namespace. */
export class Lsm {
  readonly dir: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly lab: Lab) {
    this.dir = join(lab.stateDir, "lsm");
  }

  /** lsm's version (`lsm --version`), or an error when it is not installed. */
  static async version(): Promise<string> {
    try {
      const { stdout, stderr } = await exec.runCommand("lsm", ["--version"], {
        allowExitCodes: [1, 2],
      });
      return (stdout + stderr).trim().split("\n")[0] ?? "?";
    } catch (error) {
      throw new Error(
        `lsm is not installed (apt-get install lsm; scripts/setup.sh installs it): ${errorText(error)}`,
      );
    }
  }

  /** Write lsm.conf, the uplinks file and the event script into the lab's state directory. */
  async prepare(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const script = join(this.dir, "event.sh");
    await copyFile(fileURLToPath(new URL("./lsm-event.sh", import.meta.url)), script);
    await exec.runCommand("chmod", ["0755", script]);
    await writeFile(
      join(this.dir, "uplinks"),
      this.lab.uplinks
        .map((u) => `${u.name} ${u.routerInterface} ${u.gateway} 1 ${u.routerAddress}\n`)
        .join(""),
    );
    const connections = this.lab.uplinks.map((u) =>
      [
        "connection {",
        `  name=${u.name}`,
        `  checkip=${topology.LAB_HOSTS.pingTargets[0]}`,
        `  eventscript=${script}`,
        "  notifyscript=",
        "  warn_email=",
        `  device=${u.routerInterface}`,
        `  sourceip=${u.routerAddress}`,
        "}",
      ].join("\n"),
    );
    await writeFile(
      join(this.dir, "lsm.conf"),
      `# lsm config of the uplinkd benchmark: detection settings are lsm's defaults.\n${connections.join("\n")}\n`,
    );
  }

  /** Start lsm with a clean slate: every uplink in the route, no recorded state. */
  async start(): Promise<void> {
    await this.stop();
    await rm(join(this.dir, "state"), { recursive: true, force: true });
    await exec.runCommand("ip", [
      "-n",
      this.lab.namespace("rtr"),
      "route",
      "replace",
      "default",
      ...allNexthops(this.lab),
    ]);
    const fd = openSync(join(this.dir, "lsm.out"), "a");
    try {
      const child = this.lab.spawn(
        "rtr",
        ["lsm", "-c", join(this.dir, "lsm.conf"), "-p", join(this.dir, "lsm.pid"), "-f"],
        { stdio: ["ignore", fd, fd] },
      );
      this.child = child;
      this.exited = new Promise((resolve) => {
        child.on("exit", () => {
          resolve();
        });
      });
      child.on("error", () => undefined);
    } finally {
      closeSync(fd);
    }
  }

  /** The event script's log so far. */
  async events(): Promise<LsmEvent[]> {
    let text = "";
    try {
      text = await readFile(join(this.dir, "events.log"), "utf8");
    } catch {
      return [];
    }
    return text
      .split("\n")
      .map((line) => line.trim().split(/\s+/))
      .filter((f) => f.length === 4)
      .map(([start = "0", end = "0", state = "", name = ""]) => ({
        start: Number(start) * 1000,
        end: Number(end) * 1000,
        state,
        name,
      }));
  }

  /**
   * Wait until lsm reported every uplink up after `since` (epoch ms).
   * @throws {Error} after `maxMs`, or when lsm exited.
   */
  async waitUp(since: number, maxMs = 40_000): Promise<void> {
    const deadline = Date.now() + maxMs;
    while (Date.now() < deadline) {
      if (this.child?.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`lsm exited: ${await this.output()}`);
      }
      const events = (await this.events()).filter((e) => e.start >= since);
      const last = new Map(events.map((e) => [e.name, e.state]));
      if (this.lab.uplinks.every((u) => last.get(u.name) === "up")) return;
      await sleep(200);
    }
    throw new Error(
      `lsm did not report every uplink up within ${maxMs} ms: ${await this.output()}`,
    );
  }

  private async output(): Promise<string> {
    try {
      return (
        (await readFile(join(this.dir, "lsm.out"), "utf8")).trim().slice(-500) || "(no output)"
      );
    } catch {
      return "(no output)";
    }
  }

  /** Stop lsm (SIGTERM, SIGKILL after 3 s). */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** lsm as the monitor under test: a fresh lsm for every trial (its 100-ping history would
 * otherwise carry one trial's losses into the next). */
class LsmMonitor implements Monitor {
  constructor(private readonly lsm: Lsm) {}

  async before(): Promise<void> {
    const since = Date.now();
    await this.lsm.start();
    await this.lsm.waitUp(since);
  }

  async downAt(uplink: number, since: number): Promise<number | null> {
    const name = this.lsm.lab.uplink(uplink).name;
    const down = (await this.lsm.events()).find(
      (e) => e.name === name && e.state === "down" && e.end >= since,
    );
    return down === undefined ? null : Math.round(down.end);
  }

  async after(): Promise<void> {
    await this.lsm.stop();
  }
}

/** Results of part 4. */
export interface LsmResults {
  version: string;
  settings: string;
  sets: TrialSet[];
}

/**
 * Part 4: `trials` failovers per fault with lsm; recovery is measured in the
 * first `recoveryTrials` of each (lsm needs ~100 s to forget an outage, so
 * the others start a fresh lsm instead of waiting).
 */
export async function lsmPart(
  ctx: BenchContext,
  trials: number,
  recoveryTrials: number,
): Promise<LsmResults> {
  const version = await Lsm.version();
  const sets: TrialSet[] = [];
  await ctx.withLab("lsm", { uplinks: 2 }, async (lab) => {
    await installStaticRouting(lab);
    const lsm = new Lsm(lab);
    await lsm.prepare();
    const monitor = new LsmMonitor(lsm);
    try {
      for (const fault of ["blackhole", "carrier"] as FailoverFault[]) {
        const done: Trial[] = [];
        for (let i = 0; i < trials; i++) {
          ctx.check();
          const t = await runTrial(ctx, lab, monitor, i, (i % 2) + 1, fault, {
            failoverMaxMs: 60_000,
            recoveryMaxMs: i < recoveryTrials ? 240_000 : 0,
          });
          done.push(t);
          ctx.log(
            "lsm",
            `${fault} #${i + 1} ${t.uplink}: failover ${t.failoverMs ?? "-"} ms, ` +
              `recovery ${i < recoveryTrials ? `${t.recoveryMs ?? "-"} ms` : "not measured"}` +
              (t.error === undefined ? "" : ` (${t.error})`),
          );
        }
        sets.push(trialSet("lsm", "defaults", LSM_SETTINGS, fault, done));
      }
    } finally {
      await lsm.stop();
    }
  });
  return { version, settings: LSM_SETTINGS, sets };
}

/**
 * Part "subsecond": the sub-second health profile (interval 50 ms, timeout
 * auto, down 3; the loss-aware down count at its default).
 *
 * 1. Failover after a blackhole beyond the gateway, from the LAN client's
 *    side (the same trial as part 1), on a two-uplink lab; and the same
 *    blackhole with no LAN traffic: fault -> the daemon's down event.
 * 2. False failovers: 5 % random loss on isp1 and 60 ± 20 ms delay (the
 *    lab's delay line) on isp2 at once, for 10 minutes (1 with --quick);
 *    nothing else is wrong, so every down is a false alarm.
 * 3. Time to `degraded` after the RTT rises above `rtt_fail` (40 ms;
 *    `delay=80ms` on one uplink), and back to `up` under `rtt_recover`
 *    (20 ms) after the heal.
 * 4. Probe cost at 4 uplinks: echo requests per second each ISP forwarded
 *    (its `up` counter; nothing else crosses it), and the daemon's CPU (and
 *    its ping children's).
 */
import { readFile } from "node:fs/promises";
import { parse } from "yaml";
import type { Lab } from "../src/lab/lab.js";
import { exec, labDaemons } from "./built.js";
import {
  describeProfile,
  errorText,
  sleep,
  writeConfig,
  type BenchContext,
  type HealthProfile,
} from "./context.js";
import {
  UplinkdMonitor,
  daemonEvents,
  runTrials,
  trialSet,
  type Trial,
  type TrialSet,
} from "./failover.js";
import { sample } from "./footprint.js";
import { round, spreadOf, type Spread } from "./stats.js";

/** The sub-second profile: 50 ms rounds, RTT-aware timeouts (floor 50 ms, ceiling 1 s), down 3. */
export const SUBSECOND: HealthProfile = {
  name: "sub-second",
  interval: "50ms",
  timeout: "auto",
  down: 3,
};

/** False failovers of the sub-second profile over one soak. */
export interface SubsecondSoak {
  durationS: number;
  /** Fault of each uplink: `loss=5`, `delay=60ms,jitter=20ms`. */
  faults: Record<string, string>;
  /** Changes to down per uplink: false failovers. */
  downs: Record<string, number>;
  /** Changes to degraded per uplink. */
  degraded: Record<string, number>;
  /** Loss and RTT the daemon measured at the end, per uplink. */
  measured: Record<string, { loss: number | null; rtt: number | null }>;
  error?: string;
}

/** Time to degraded after the RTT rose, and back up after it fell. */
export interface SubsecondDegraded {
  delayMs: number;
  rttFailMs: number;
  rttRecoverMs: number;
  /** Fault -> degraded event, ms; null: not within 60 s. */
  degradedMs: number | null;
  /** Heal -> up event, ms; null: not within 60 s. */
  upMs: number | null;
  /** Whether the uplink went down on the way (it must not). */
  wentDown: boolean;
  error?: string;
}

/** Probe cost at `uplinks` uplinks. */
export interface SubsecondCost {
  uplinks: number;
  targets: number;
  seconds: number;
  /** Echo requests per second through each ISP (its `up` counter). */
  packetsPerSecond: (number | null)[];
  /** Daemon process CPU, % of one core; with its ping children. */
  cpuPct: number | null;
  treeCpuPct: number | null;
}

/** Detection without LAN traffic: fault -> the daemon's down event, ms, per trial (null: not within 10 s). */
export interface SubsecondQuiet {
  detectMs: (number | null)[];
  detect: Spread;
}

/** Results of the sub-second part. */
export interface SubsecondResults {
  profile: string;
  failover: TrialSet;
  /** The same blackhole with no LAN traffic (probes alone). */
  quiet: SubsecondQuiet;
  soak: SubsecondSoak;
  degraded: SubsecondDegraded;
  cost: SubsecondCost;
}

async function failovers(ctx: BenchContext, trials: number): Promise<TrialSet> {
  return ctx.withLab("ss", { uplinks: 2 }, async (lab) => {
    const configPath = await writeConfig(lab, SUBSECOND);
    const monitor = new UplinkdMonitor(lab, configPath);
    let done: Trial[] = [];
    try {
      done = await runTrials(ctx, lab, monitor, trials, "blackhole", "subsecond", "blackhole");
    } finally {
      await monitor.stop();
    }
    return trialSet("uplinkd", SUBSECOND.name, describeProfile(SUBSECOND), "blackhole", done);
  });
}

/**
 * Blackholes with no LAN traffic: fault -> the daemon's down event. The
 * faulted uplink alternates and the daemon restarts every four trials (no
 * third down within flap damping's period).
 */
async function quietDetection(ctx: BenchContext, trials: number): Promise<SubsecondQuiet> {
  const detectMs: (number | null)[] = [];
  await ctx.withLab("sn", { uplinks: 2 }, async (lab) => {
    const config = await writeConfig(lab, SUBSECOND);
    let daemon: ReturnType<typeof labDaemons.startLabDaemon> | undefined;
    try {
      for (let i = 0; i < trials; i++) {
        ctx.check();
        if (daemon === undefined || i % 4 === 0) {
          await daemon?.stop();
          daemon = labDaemons.startLabDaemon(lab, config);
        }
        await daemon.waitForStates(["up"], 30_000);
        await sleep(1000);
        const uplink = lab.uplink((i % 2) + 1).name;
        const from = Date.now();
        await lab.fault(uplink, "blackhole");
        const at = await eventAt(lab, uplink, "down", from, 10_000);
        detectMs.push(at === null ? null : at - from);
        await lab.heal(uplink);
        ctx.log(
          "subsecond",
          `no LAN traffic, blackhole #${i + 1} ${uplink}: down after ${detectMs[i] ?? "-"} ms`,
        );
      }
    } finally {
      await daemon?.stop();
    }
  });
  return { detectMs, detect: spreadOf(detectMs) };
}

async function soak(ctx: BenchContext, durationMs: number): Promise<SubsecondSoak> {
  const faults: Record<string, string> = { isp1: "loss=5", isp2: "delay=60ms,jitter=20ms" };
  const result: SubsecondSoak = {
    durationS: 0,
    faults,
    downs: {},
    degraded: {},
    measured: {},
  };
  await ctx.withLab("sq", { uplinks: 2 }, async (lab) => {
    const daemon = labDaemons.startLabDaemon(lab, await writeConfig(lab, SUBSECOND));
    try {
      await daemon.waitForStates(["up"], 30_000);
      for (const u of lab.uplinks) await daemon.waitForState6(u.name, "up", 30_000);
      for (const [uplink, fault] of Object.entries(faults)) await lab.fault(uplink, fault);
      // The soak judges the links as they are with the faults, not the moment they begin
      // (the delay line starting up holds the first packets).
      await sleep(2000);
      const t0 = Date.now();
      while (Date.now() - t0 < durationMs) {
        ctx.check();
        await sleep(Math.min(5000, durationMs - (Date.now() - t0)));
      }
      const t1 = Date.now();
      result.durationS = Math.round((t1 - t0) / 1000);
      const during = (await daemonEvents(lab)).filter(
        (e) => Date.parse(e.time) >= t0 && Date.parse(e.time) <= t1,
      );
      const status = await daemon.status();
      for (const uplink of Object.keys(faults)) {
        result.downs[uplink] = during.filter((e) => e.uplink === uplink && e.to === "down").length;
        result.degraded[uplink] = during.filter(
          (e) => e.uplink === uplink && e.to === "degraded",
        ).length;
        const u = status?.uplinks.find((x) => x.name === uplink);
        result.measured[uplink] = { loss: round(u?.loss ?? null), rtt: round(u?.rtt ?? null) };
      }
      ctx.log(
        "subsecond",
        `soak ${result.durationS} s: downs ${JSON.stringify(result.downs)}, degraded ${JSON.stringify(result.degraded)}, ` +
          `measured ${JSON.stringify(result.measured)}`,
      );
      for (const e of during.filter((x) => x.to === "down" || x.to === "degraded")) {
        ctx.log("subsecond", `soak: ${e.uplink} IPv${e.family} ${e.from} -> ${e.to}: ${e.reason}`);
      }
    } catch (error) {
      result.error = errorText(error);
    } finally {
      await daemon.stop();
    }
  });
  return result;
}

/** Epoch ms of `uplink`'s first change to `to` at or after `since`, polling up to `timeoutMs`. */
async function eventAt(
  lab: Lab,
  uplink: string,
  to: string,
  since: number,
  timeoutMs: number,
): Promise<number | null> {
  const deadline = since + timeoutMs;
  while (Date.now() < deadline) {
    const e = (await daemonEvents(lab)).find(
      (x) => x.uplink === uplink && x.to === to && Date.parse(x.time) >= since,
    );
    if (e !== undefined) return Date.parse(e.time);
    await sleep(100);
  }
  return null;
}

async function degraded(ctx: BenchContext): Promise<SubsecondDegraded> {
  const result: SubsecondDegraded = {
    delayMs: 80,
    rttFailMs: 40,
    rttRecoverMs: 20,
    degradedMs: null,
    upMs: null,
    wentDown: false,
  };
  await ctx.withLab("sd", { uplinks: 2 }, async (lab) => {
    const config = await writeConfig(lab, SUBSECOND, (c) => {
      const health = c.health as Record<string, unknown>;
      health.rtt_fail = `${result.rttFailMs}ms`;
      health.rtt_recover = `${result.rttRecoverMs}ms`;
    });
    const daemon = labDaemons.startLabDaemon(lab, config);
    try {
      await daemon.waitForStates(["up"], 30_000);
      // The mean RTT is judged over the window (30 s of probes) once half of it is new.
      await sleep(ctx.quick ? 16_000 : 20_000);
      const faultAt = Date.now();
      await lab.fault("isp1", `delay=${result.delayMs}ms`);
      const at = await eventAt(lab, "isp1", "degraded", faultAt, 60_000);
      result.degradedMs = at === null ? null : at - faultAt;
      const healAt = Date.now();
      await lab.heal("isp1");
      const upAt = await eventAt(lab, "isp1", "up", healAt, 60_000);
      result.upMs = upAt === null ? null : upAt - healAt;
      result.wentDown = (await daemonEvents(lab)).some(
        (e) => e.uplink === "isp1" && e.to === "down" && Date.parse(e.time) >= faultAt,
      );
      ctx.log(
        "subsecond",
        `RTT 80 ms over rtt_fail 40 ms: degraded after ${result.degradedMs ?? "-"} ms, ` +
          `up ${result.upMs ?? "-"} ms after the heal${result.wentDown ? ", went DOWN on the way" : ""}`,
      );
    } catch (error) {
      result.error = errorText(error);
    } finally {
      await daemon.stop();
    }
  });
  return result;
}

async function cost(ctx: BenchContext): Promise<SubsecondCost> {
  const seconds = ctx.quick ? 15 : 60;
  const hz = Number((await exec.runCommand("getconf", ["CLK_TCK"])).stdout.trim()) || 100;
  const uplinks = 4;
  return ctx.withLab("sc", { uplinks }, async (lab) => {
    const configPath = await writeConfig(lab, SUBSECOND);
    // Every uplink probes the lab's targets of both families.
    const config = parse(await readFile(configPath, "utf8")) as {
      health?: { targets?: unknown[] };
    };
    const targets = config.health?.targets?.length ?? 0;
    const daemon = labDaemons.startLabDaemon(lab, configPath);
    try {
      await daemon.waitForStates(["up"], 60_000);
      await sleep(2000);
      const pid = daemon.child.pid;
      if (pid === undefined) throw new Error("the daemon has no pid");
      const before = await Promise.all(lab.uplinks.map((u) => lab.ispCounters(u.number)));
      const t0 = performance.now();
      const s = await sample(pid, seconds, hz);
      const wall = (performance.now() - t0) / 1000;
      const after = await Promise.all(lab.uplinks.map((u) => lab.ispCounters(u.number)));
      const packetsPerSecond = after.map((a, i) => {
        const b = before[i];
        return b === undefined ? null : round((a.up.packets - b.up.packets) / wall, 1);
      });
      const result: SubsecondCost = {
        uplinks,
        targets,
        seconds,
        packetsPerSecond,
        cpuPct: s.cpuPct,
        treeCpuPct: s.tree.cpuPct,
      };
      ctx.log(
        "subsecond",
        `cost at ${uplinks} uplinks x ${targets} targets: ${packetsPerSecond.join(", ")} probe packets/s per uplink, ` +
          `daemon CPU ${s.cpuPct ?? "-"} %, with its ping children ${s.tree.cpuPct ?? "-"} %`,
      );
      return result;
    } finally {
      await daemon.stop();
    }
  });
}

/** The sub-second part: `trials` failovers, a 10 min soak (1 min with --quick), degraded, cost. */
export async function subsecondPart(ctx: BenchContext, trials: number): Promise<SubsecondResults> {
  const failover = await failovers(ctx, trials);
  const quiet = await quietDetection(ctx, trials);
  const degradedResult = await degraded(ctx);
  const costResult = await cost(ctx);
  const soakResult = await soak(ctx, ctx.quick ? 60_000 : 600_000);
  return {
    profile: describeProfile(SUBSECOND),
    failover,
    quiet,
    soak: soakResult,
    degraded: degradedResult,
    cost: costResult,
  };
}

/**
 * Parts 1 and 2: uplinkd's failover and recovery time, from the LAN
 * client's side, for a blackhole beyond the gateway and for carrier loss,
 * with the schema's default health settings and with the fast profile.
 *
 * One lab with two uplinks of equal weight. The faulted uplink alternates
 * (isp1, isp2, ...); the daemon is restarted every four trials, so no
 * uplink goes down a third time within flap damping's 5 min period (its
 * third down would be held down for 60 s): every trial is a first or
 * second outage.
 */
import { rm, writeFile } from "node:fs/promises";
import type { Lab } from "../src/lab/lab.js";
import type { LabDaemon } from "../src/lab/daemon.js";
import type { Transition } from "../src/uplink-health.js";
import { control, labDaemons } from "./built.js";
import {
  DEFAULTS,
  FAST,
  describeProfile,
  errorText,
  writeConfig,
  type BenchContext,
  type HealthProfile,
} from "./context.js";
import { Probe, heal, inject, type FailoverFault } from "./probe.js";
import { spreadOf, type Spread } from "./stats.js";

/** Profile name of the trials with hung `conntrack -D` and `nft list`. */
export const HUNG_PROFILE = "fast, hung conntrack/nft";

/** New connection every this many ms during a trial. */
export const PROBE_INTERVAL_MS = 20;
/** A probe connection that has not answered after this is a failure. */
export const PROBE_TIMEOUT_MS = 1000;
/** Failover is over once every connection in this long after the last failure succeeded. */
export const SETTLE_MS = 1500;

/** One fault injected and healed. */
export interface Trial {
  uplink: string;
  /** Fault -> first new connection after which all succeed (ms); null: did not settle. */
  failoverMs: number | null;
  /** Connections that failed after the fault. */
  failed: number;
  /** Heal -> first new connection through the healed uplink (ms); null: not within the limit or not measured. */
  recoveryMs: number | null;
  /** Fault -> the monitor declared the uplink down (daemon's /events or lsm's event script), ms. */
  detectMs: number | null;
  /** Duration of the fault command (the fault's moment is known to within this), ms. */
  commandMs: number;
  error?: string;
}

/** Trials of one (monitor, profile, fault) and their spread. */
export interface TrialSet {
  monitor: "uplinkd" | "lsm";
  profile: string;
  settings: string;
  fault: FailoverFault;
  failover: Spread;
  recovery: Spread;
  detect: Spread;
  trials: Trial[];
}

/** Summarise trials. */
export function trialSet(
  monitor: TrialSet["monitor"],
  profile: string,
  settings: string,
  fault: FailoverFault,
  trials: Trial[],
): TrialSet {
  return {
    monitor,
    profile,
    settings,
    fault,
    failover: spreadOf(
      trials.map((t) => t.failoverMs),
      0,
    ),
    recovery: spreadOf(
      trials.map((t) => t.recoveryMs),
      0,
    ),
    detect: spreadOf(
      trials.map((t) => t.detectMs),
      0,
    ),
    trials,
  };
}

/** What the monitor under test does around a trial. */
export interface Monitor {
  /** Prepare for a trial on `uplink` (start or restart when needed); resolves when it is ready. */
  before(trial: number, uplink: number): Promise<void>;
  /** When it declared `uplink` down after `since` (epoch ms), if it did. */
  downAt(uplink: number, since: number): Promise<number | null>;
  /** After the trial's heal: wait until it uses every uplink again (or restart it). */
  after(trial: number, uplink: number, recovered: boolean): Promise<void>;
}

/**
 * Run `trials` trials of `fault` with `monitor` (see {@link runTrial}),
 * alternating between uplinks 1 and 2, logging each under `part` with
 * `describe`'s text (`#N UPLINK: ...` follows it). Stops early when the
 * benchmark's time is up (ctx.check throws).
 */
export async function runTrials(
  ctx: BenchContext,
  lab: Lab,
  monitor: Monitor,
  trials: number,
  fault: FailoverFault,
  part: string,
  describe: string,
  family: 4 | 6 = 4,
): Promise<Trial[]> {
  const done: Trial[] = [];
  for (let i = 0; i < trials; i++) {
    ctx.check();
    const t = await runTrial(
      ctx,
      lab,
      monitor,
      i,
      (i % 2) + 1,
      fault,
      { failoverMaxMs: 20_000, recoveryMaxMs: 30_000 },
      family,
    );
    done.push(t);
    ctx.log(
      part,
      `${describe} #${i + 1} ${t.uplink}: failover ${t.failoverMs ?? "-"} ms, detected ${t.detectMs ?? "-"} ms, ` +
        `recovery ${t.recoveryMs ?? "-"} ms${t.error === undefined ? "" : ` (${t.error})`}`,
    );
  }
  return done;
}

/**
 * Run one trial: probe, fault, failover, heal, recovery.
 * @param recoveryMaxMs how long to wait for recovery (0: do not measure it).
 * @param family 4: IPv4 probe connections (sources: the router's uplink
 *   addresses); 6: IPv6 ones (sources: `uplink:N`, see {@link Probe}).
 */
export async function runTrial(
  ctx: BenchContext,
  lab: Lab,
  monitor: Monitor,
  trial: number,
  uplink: number,
  fault: FailoverFault,
  limits: { failoverMaxMs: number; recoveryMaxMs: number },
  family: 4 | 6 = 4,
): Promise<Trial> {
  const u = lab.uplink(uplink);
  const result: Trial = {
    uplink: u.name,
    failoverMs: null,
    failed: 0,
    recoveryMs: null,
    detectMs: null,
    commandMs: 0,
  };
  try {
    await monitor.before(trial, uplink);
  } catch (error) {
    result.error = `before the fault: ${errorText(error)}`;
    return result;
  }
  const probe = new Probe(lab, PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS, undefined, family);
  const sourceOf = (x: (typeof lab.uplinks)[number]): string =>
    family === 6 ? `uplink:${x.number}` : x.routerAddress;
  let faulted = false;
  let recovered = false;
  try {
    const start = Date.now();
    await probe.warmUp(start, lab.uplinks.map(sourceOf));
    ctx.check();
    const f = await inject(lab, uplink, fault);
    faulted = true;
    result.commandMs = f.commandMs;
    const failover = await probe.failover(f.at, SETTLE_MS, limits.failoverMaxMs);
    result.failoverMs = failover.ms;
    result.failed = failover.failed;
    const down = await monitor.downAt(uplink, f.at - 100);
    result.detectMs = down === null ? null : down - f.at;
    const h = await heal(lab, uplink, fault);
    faulted = false;
    if (limits.recoveryMaxMs > 0) {
      result.recoveryMs = await probe.recovery(h.at, sourceOf(u), limits.recoveryMaxMs);
      recovered = result.recoveryMs !== null;
    }
  } catch (error) {
    result.error = errorText(error);
  } finally {
    await probe.stop();
    if (faulted) await heal(lab, uplink, fault).catch(() => undefined);
  }
  try {
    await monitor.after(trial, uplink, recovered);
  } catch (error) {
    result.error ??= `after the heal: ${errorText(error)}`;
  }
  return result;
}

/**
 * uplinkd as the monitor under test: restarted every 4 trials. With
 * `hang`, its PATH starts with stand-ins whose `conntrack -D` and `nft list`
 * hang once it runs (the marker is made after each start). `family`: the
 * address family whose down transitions `downAt` reports (6: and before
 * and after a trial, every uplink's IPv6 is also up and active).
 */
export class UplinkdMonitor implements Monitor {
  daemon: LabDaemon | undefined;

  constructor(
    private readonly lab: Lab,
    private readonly configPath: string,
    private readonly hang?: { dir: string; marker: string },
    private readonly family: 4 | 6 = 4,
  ) {}

  /** Every uplink up (IPv4), and with family 6 every uplink's IPv6 up and active. */
  private async ready(daemon: LabDaemon): Promise<void> {
    await daemon.waitForStates(["up"], 30_000);
    if (this.family === 6) {
      await daemon.waitFor(
        (s) => s.uplinks.every((u) => u.ipv6?.state === "up" && u.ipv6.active),
        30_000,
        "every uplink's IPv6 up and active",
      );
    }
  }

  async before(trial: number): Promise<void> {
    if (this.daemon === undefined || trial % 4 === 0) {
      await this.stop();
      const env =
        this.hang === undefined
          ? undefined
          : { ...process.env, PATH: `${this.hang.dir}:${process.env.PATH ?? ""}` };
      this.daemon = labDaemons.startLabDaemon(
        this.lab,
        this.configPath,
        env === undefined ? {} : { env },
      );
      await this.ready(this.daemon);
      if (this.hang !== undefined) await writeFile(this.hang.marker, "");
    }
    await this.ready(this.daemon);
  }

  async downAt(uplink: number, since: number): Promise<number | null> {
    const name = this.lab.uplink(uplink).name;
    const events = await daemonEvents(this.lab);
    const down = events.find(
      (e) =>
        e.uplink === name &&
        e.family === this.family &&
        e.to === "down" &&
        Date.parse(e.time) >= since,
    );
    return down === undefined ? null : Date.parse(down.time);
  }

  async after(): Promise<void> {
    if (this.daemon !== undefined) await this.ready(this.daemon);
  }

  async stop(): Promise<void> {
    if (this.hang !== undefined) await rm(this.hang.marker, { force: true });
    await this.daemon?.stop();
    this.daemon = undefined;
  }
}

/**
 * {@link runTrials} with uplinkd under `configPath` as the monitor
 * ({@link UplinkdMonitor}, with `hang` and `family` as there), stopped
 * afterwards whatever happens.
 */
export async function uplinkdTrials(
  ctx: BenchContext,
  lab: Lab,
  configPath: string,
  trials: number,
  fault: FailoverFault,
  part: string,
  describe: string,
  options: { hang?: { dir: string; marker: string }; family?: 4 | 6 } = {},
): Promise<Trial[]> {
  const family = options.family ?? 4;
  const monitor = new UplinkdMonitor(lab, configPath, options.hang, family);
  try {
    return await runTrials(ctx, lab, monitor, trials, fault, part, describe, family);
  } finally {
    await monitor.stop();
  }
}

/** The daemon's recent transitions, oldest first. */
export async function daemonEvents(lab: Lab): Promise<Transition[]> {
  const doc = (await control.controlRequest(
    lab.controlSocket,
    "GET",
    "/events?limit=1000",
    undefined,
    5000,
  )) as { events?: Transition[] } | null;
  return doc?.events ?? [];
}

/** Results of parts 1 and 2. */
export interface FailoverResults {
  probe: { intervalMs: number; timeoutMs: number; settleMs: number };
  uplinks: number;
  sets: TrialSet[];
}

/**
 * Parts 1 and 2: `trials` trials per (profile, fault) on a two-uplink lab.
 */
export async function failoverPart(ctx: BenchContext, trials: number): Promise<FailoverResults> {
  const sets: TrialSet[] = [];
  await ctx.withLab("fo", { uplinks: 2 }, async (lab) => {
    for (const profile of [DEFAULTS, FAST] as HealthProfile[]) {
      const configPath = await writeConfig(lab, profile);
      for (const fault of ["blackhole", "carrier"] as FailoverFault[]) {
        const done = await uplinkdTrials(
          ctx,
          lab,
          configPath,
          trials,
          fault,
          "failover",
          `uplinkd ${profile.name} ${fault}`,
        );
        sets.push(trialSet("uplinkd", profile.name, describeProfile(profile), fault, done));
      }
    }
    // The fast profile again while every `conntrack -D` and `nft list` hangs.
    const configPath = await writeConfig(lab, FAST);
    const tools = await labDaemons.hangingTools();
    let done: Trial[] = [];
    try {
      done = await uplinkdTrials(
        ctx,
        lab,
        configPath,
        trials,
        "blackhole",
        "failover",
        "uplinkd fast, conntrack -D and nft list hanging, blackhole",
        { hang: tools },
      );
    } finally {
      await tools.remove();
    }
    sets.push(
      trialSet(
        "uplinkd",
        HUNG_PROFILE,
        `${describeProfile(FAST)}; conntrack -D and nft list hang`,
        "blackhole",
        done,
      ),
    );
  });
  return {
    probe: { intervalMs: PROBE_INTERVAL_MS, timeoutMs: PROBE_TIMEOUT_MS, settleMs: SETTLE_MS },
    uplinks: 2,
    sets,
  };
}

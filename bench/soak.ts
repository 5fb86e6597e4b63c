/**
 * Part 3: false failovers. Random loss (5 % and 10 % round trip, the lab's
 * `loss=N` fault) on every uplink of a two-uplink lab for 10 minutes (2 with
 * --quick), nothing else wrong: every transition the monitor makes is a
 * false alarm. Six labs run side by side: uplinkd with the default and the
 * fast health profile, and lsm with its defaults, at each loss rate.
 *
 * Counted from uplinkd's `/events` (control socket) and from lsm's event
 * script log: transitions to down (new connections leave the uplink), to
 * degraded (uplinkd: loss or RTT over its quality threshold; policies avoid
 * a degraded uplink while another is up), and the share of uplink-time
 * spent out of service.
 */
import type { Lab } from "../src/lab/lab.js";
import type { Transition } from "../src/uplink-health.js";
import { labDaemons } from "./built.js";
import {
  DEFAULTS,
  FAST,
  describeProfile,
  errorText,
  sleep,
  writeConfig,
  type BenchContext,
  type HealthProfile,
} from "./context.js";
import { daemonEvents } from "./failover.js";
import { LSM_SETTINGS, Lsm } from "./lsm.js";
import { round } from "./stats.js";
import { installStaticRouting } from "./static-routing.js";

/** One monitor under loss for the whole soak. */
export interface SoakResult {
  monitor: "uplinkd" | "lsm";
  profile: string;
  settings: string;
  lossPct: number;
  durationS: number;
  uplinks: number;
  /** Every state change during the soak. */
  transitions: number;
  /** Changes to down: false failovers. */
  downs: number;
  /** Changes to degraded (uplinkd only). */
  degraded: number;
  /** Share of uplink-time spent down, % (0..100). */
  downTimePct: number;
  /** Share of uplink-time spent degraded, %. */
  degradedTimePct: number;
  /** Loss each uplink's monitor measured at the end, % (uplinkd only). */
  measuredLossPct: (number | null)[];
  /** The transitions (time, uplink, from, to). */
  events: { time: string; uplink: string; from: string; to: string }[];
  error?: string;
}

/**
 * Time spent in `states` per uplink, summed, as % of uplinks x duration.
 * `events` must be sorted; every uplink starts `initial` at `t0`.
 */
export function timeInPct(
  events: readonly { at: number; uplink: string; to: string }[],
  uplinks: readonly string[],
  states: readonly string[],
  t0: number,
  t1: number,
  initial = "up",
): number {
  let total = 0;
  for (const name of uplinks) {
    let state = initial;
    let since = t0;
    for (const e of events.filter((x) => x.uplink === name)) {
      if (states.includes(state)) total += e.at - since;
      state = e.to;
      since = e.at;
    }
    if (states.includes(state)) total += t1 - since;
  }
  return round((100 * total) / (uplinks.length * (t1 - t0)), 2) ?? 0;
}

async function soakUplinkd(
  ctx: BenchContext,
  lab: Lab,
  profile: HealthProfile,
  lossPct: number,
  durationMs: number,
): Promise<SoakResult> {
  const config = await writeConfig(lab, profile);
  const daemon = labDaemons.startLabDaemon(lab, config);
  try {
    await daemon.waitForStates(["up"], 30_000);
    for (const u of lab.uplinks) await lab.fault(u.number, `loss=${lossPct}`);
    const t0 = Date.now();
    await wait(ctx, durationMs);
    const t1 = Date.now();
    const all: Transition[] = await daemonEvents(lab);
    const status = await daemon.status();
    const during = all.filter((e) => Date.parse(e.time) >= t0 && Date.parse(e.time) <= t1);
    const timed = during.map((e) => ({ at: Date.parse(e.time), uplink: e.uplink, to: e.to }));
    const names = lab.uplinks.map((u) => u.name);
    return {
      monitor: "uplinkd",
      profile: profile.name,
      settings: describeProfile(profile),
      lossPct,
      durationS: Math.round((t1 - t0) / 1000),
      uplinks: names.length,
      transitions: during.length,
      downs: during.filter((e) => e.to === "down").length,
      degraded: during.filter((e) => e.to === "degraded").length,
      downTimePct: timeInPct(timed, names, ["down"], t0, t1),
      degradedTimePct: timeInPct(timed, names, ["degraded"], t0, t1),
      measuredLossPct: names.map((n) =>
        round(status?.uplinks.find((u) => u.name === n)?.loss ?? null, 1),
      ),
      events: during.map((e) => ({ time: e.time, uplink: e.uplink, from: e.from, to: e.to })),
    };
  } finally {
    await daemon.stop();
  }
}

async function soakLsm(
  ctx: BenchContext,
  lab: Lab,
  lossPct: number,
  durationMs: number,
): Promise<SoakResult> {
  await installStaticRouting(lab);
  const lsm = new Lsm(lab);
  await lsm.prepare();
  try {
    const started = Date.now();
    await lsm.start();
    await lsm.waitUp(started);
    for (const u of lab.uplinks) await lab.fault(u.number, `loss=${lossPct}`);
    const t0 = Date.now();
    await wait(ctx, durationMs);
    const t1 = Date.now();
    const names = lab.uplinks.map((u) => u.name);
    // lsm reports a state again only when it changes; keep real changes only.
    const last = new Map(names.map((n) => [n, "up"]));
    const changes: { at: number; uplink: string; from: string; to: string }[] = [];
    for (const e of (await lsm.events()).filter((x) => x.start >= t0 && x.start <= t1)) {
      const from = last.get(e.name) ?? "up";
      if (from === e.state) continue;
      last.set(e.name, e.state);
      changes.push({ at: e.start, uplink: e.name, from, to: e.state });
    }
    return {
      monitor: "lsm",
      profile: "defaults",
      settings: LSM_SETTINGS,
      lossPct,
      durationS: Math.round((t1 - t0) / 1000),
      uplinks: names.length,
      transitions: changes.length,
      downs: changes.filter((e) => e.to === "down").length,
      degraded: 0,
      downTimePct: timeInPct(changes, names, ["down", "long_down"], t0, t1),
      degradedTimePct: 0,
      measuredLossPct: names.map(() => null),
      events: changes.map((e) => ({
        time: new Date(e.at).toISOString(),
        uplink: e.uplink,
        from: e.from,
        to: e.to,
      })),
    };
  } finally {
    await lsm.stop();
  }
}

/** Sleep `ms` in steps, stopping early when the run is aborted. */
async function wait(ctx: BenchContext, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    ctx.check();
    await sleep(Math.min(1000, end - Date.now()));
  }
}

/** Results of part 3. */
export interface SoakResults {
  durationS: number;
  results: SoakResult[];
}

/** Part 3: every (loss, monitor) soak in its own lab, all at once. */
export async function soakPart(ctx: BenchContext): Promise<SoakResults> {
  const durationMs = (ctx.quick ? 2 : 10) * 60_000;
  const jobs: {
    tag: string;
    monitor: SoakResult["monitor"];
    profile: string;
    loss: number;
    run: (lab: Lab) => Promise<SoakResult>;
  }[] = [];
  for (const loss of [5, 10]) {
    for (const profile of [DEFAULTS, FAST]) {
      jobs.push({
        tag: `s${loss}${profile.name[0] ?? "p"}`,
        monitor: "uplinkd",
        profile: profile.name,
        loss,
        run: (lab) => soakUplinkd(ctx, lab, profile, loss, durationMs),
      });
    }
    jobs.push({
      tag: `s${loss}l`,
      monitor: "lsm",
      profile: "defaults",
      loss,
      run: (lab) => soakLsm(ctx, lab, loss, durationMs),
    });
  }
  ctx.log("soak", `${jobs.length} labs, ${durationMs / 60_000} min of loss each, side by side`);
  const results = await Promise.all(
    jobs.map(async (job) => {
      try {
        const r = await ctx.withLab(job.tag, { uplinks: 2 }, job.run);
        ctx.log(
          "soak",
          `${r.monitor} ${r.profile} at ${r.lossPct} % loss: ${r.downs} down, ${r.degraded} degraded, ` +
            `${r.downTimePct} % of uplink-time down`,
        );
        return r;
      } catch (error) {
        ctx.log(
          "soak",
          `${job.monitor} ${job.profile} at ${job.loss} % failed: ${errorText(error)}`,
        );
        return {
          monitor: job.monitor,
          profile: job.profile,
          settings: "",
          lossPct: job.loss,
          durationS: 0,
          uplinks: 2,
          transitions: 0,
          downs: 0,
          degraded: 0,
          downTimePct: 0,
          degradedTimePct: 0,
          measuredLossPct: [],
          events: [],
          error: errorText(error),
        } satisfies SoakResult;
      }
    }),
  );
  return { durationS: durationMs / 1000, results };
}

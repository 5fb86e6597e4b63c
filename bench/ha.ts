/**
 * Part `ha`: the redundant router pair of `lab up --ha` (keepalived VRRP
 * with the lab's 100 ms adverts, conntrackd FTFW, uplinkd in each router).
 *
 * - **Takeover**: long-lived LAN connections (whoami `hold`, an answer every
 *   100 ms) and a probe opening a new connection every 20 ms run while the
 *   master dies (its switch ports and sync link cut, then its processes
 *   killed). Takeover time: from the cut until new connections succeed
 *   again for good (the probe's failover time, as in part 1). Surviving
 *   share: long-lived connections answering again after the cut (within
 *   10 s; TCP retransmits what the new master dropped before its commit),
 *   never reset, always from the same address. The old master then returns (as after a reboot) and takes
 *   over again before the next trial.
 * - **Sync traffic**: 10,000 synthetic ESTABLISHED TCP entries loaded into
 *   the master's table (`conntrack -R`): bytes on the sync link until the
 *   backup's external cache holds them all, and for a bulk send (`-B`).
 *
 * Part `ha-takeover` (full runs only): the takeover of the dual-stack pair
 * at 1 s, 200 ms and 100 ms adverts (a lab each). Per trial 30 long-lived
 * flows, 15 of each family, and a probe of each family (a new connection
 * every 20 ms) run while the master dies as above: per family the takeover
 * time (median over the trials), the flows kept (as surviving above) and
 * the new master's commit path (the notify script's conntrackd commands,
 * from its state file).
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { conntrackLab, haLabs, labDaemons, labs, topology } from "./built.js";
import { BenchContext, errorText, sleep } from "./context.js";
import { Probe } from "./probe.js";
import { spreadOf, type Spread } from "./stats.js";
import type { HaLab } from "../src/lab/ha.js";
import type { HoldLine } from "../src/lab/traffic.js";

const run = promisify(execFile);

/**
 * A probe connection of a takeover trial fails when it has not answered
 * after this, ms: below Linux's first SYN retransmission (1 s, RFC 6298's
 * initial RTO), so that a connection whose first SYN was lost while the
 * masters changed counts as failed, whatever the timers' jitter.
 */
export const TAKEOVER_PROBE_TIMEOUT_MS = 800;

/** One takeover trial of part `ha` (IPv4). */
export interface HaTrial extends FamilyTrial {
  error?: string;
}

/** Results of the part. */
export interface HaResults {
  advertMs: number;
  trials: HaTrial[];
  takeoverMs: Spread;
  /** Surviving long-lived connections over all trials, %. */
  survivedPct: number | null;
  sync: {
    entries: number;
    /** Bytes the master sent on the sync link while the backup took the entries in. */
    txBytes: number;
    /** Bytes the backup sent back (FTFW acknowledgements). */
    rxBytes: number;
    /** Until the backup's external cache held them all, ms; null when it did not within 60 s. */
    ms: number | null;
    /** A bulk send (`conntrackd -B`) of the same table: bytes the master sent. */
    bulkTxBytes: number;
  } | null;
}

/** tx and rx bytes of `dev` in namespace `ns`. */
async function linkBytes(ns: string, dev: string): Promise<{ tx: number; rx: number }> {
  const { stdout } = await run("ip", ["-n", ns, "-j", "-s", "link", "show", "dev", dev]);
  const [link] = JSON.parse(stdout) as {
    stats64?: { tx: { bytes: number }; rx: { bytes: number } };
  }[];
  return { tx: link?.stats64?.tx.bytes ?? 0, rx: link?.stats64?.rx.bytes ?? 0 };
}

/** Entries in router `name`'s conntrackd external cache. */
async function externalCache(ha: HaLab, name: "a" | "b"): Promise<number> {
  const conf = `${ha.paths(name).dir}/conntrackd.conf`;
  const { stdout } = await run("ip", [
    "netns",
    "exec",
    ha.namespace(name),
    "conntrackd",
    "-C",
    conf,
    "-s",
    "cache",
  ]);
  // `-s cache` prints "cache:external\tactive objects:\t\t10000" (conntrackd 1.4.7).
  const m = /cache:external\s+active objects:\s+(\d+)/.exec(stdout);
  return m?.[1] === undefined ? 0 : Number(m[1]);
}

/** The address the echo host saw on a hold's first answer. */
function sourceOf(hold: Hold): string | undefined {
  for (const l of hold.lines) if (l.event === "answer") return l.source;
  return undefined;
}

/** Answers of a hold so far. */
function answersOf(hold: Hold): Extract<HoldLine, { event: "answer" }>[] {
  return hold.lines.filter(
    (l): l is Extract<HoldLine, { event: "answer" }> => l.event === "answer",
  );
}

type Hold = ReturnType<typeof labDaemons.holdConnection>;
type Family = 4 | 6;

/** One family's side of a takeover trial. */
export interface FamilyTrial {
  /** Cut to new connections succeeding again for good, ms; null when they did not within 15 s. */
  takeoverMs: number | null;
  /** Probe connections that failed meanwhile. */
  failed: number;
  /** Long-lived connections held / answering again after the cut (within 10 s), from the same address. */
  held: number;
  survived: number;
  /** Long-lived connections that were reset or closed. */
  broken: number;
}

/**
 * The master dies while `flows[family]` long-lived connections of each
 * family and a probe of each family in `flows` run; the old master then
 * returns and takes over again. Returns per family what {@link FamilyTrial}
 * says, the new master's commit path (ms, from its state file) and the
 * error that ended the trial early, if any.
 */
async function takeoverTrial(
  ha: HaLab,
  flows: Partial<Record<Family, number>>,
): Promise<{
  families: Partial<Record<Family, FamilyTrial>>;
  commitMs: number | null;
  error?: string;
}> {
  const lab = ha.lab;
  const families = (Object.keys(flows) as `${Family}`[]).map((f) => Number(f) as Family);
  const echo = (f: Family) => (f === 6 ? topology.LAB_HOSTS6.echo : topology.LAB_HOSTS.echo);
  const holds = new Map<Family, Hold[]>(
    families.map((f) => [
      f,
      Array.from({ length: flows[f] ?? 0 }, () =>
        labDaemons.holdConnection(lab, {
          durationMs: 60_000,
          intervalMs: 100,
          timeoutMs: 1000,
          host: echo(f),
        }),
      ),
    ]),
  );
  const probes = new Map<Family, Probe>(
    families.map((f) => [f, new Probe(lab, 20, TAKEOVER_PROBE_TIMEOUT_MS, 600_000, f)]),
  );
  const out: Awaited<ReturnType<typeof takeoverTrial>> = { families: {}, commitMs: null };
  const all = () => [...holds.values()].flat();
  try {
    // The flows start alongside (30 processes on a small machine): a probe connection that
    // timed out meanwhile starts the warm-up again (three times at most).
    for (const [f, probe] of probes) {
      const addresses =
        f === 4
          ? lab.plan.uplinks.map((u) => haLabs.haUplinkVirtual(u))
          : lab.plan.uplinks.map((u) => `uplink:${u.number}`);
      for (let attempt = 1; ; attempt++) {
        try {
          await probe.warmUp(Date.now(), addresses, 10_000);
          break;
        } catch (error) {
          if (attempt === 3) throw error;
        }
      }
    }
    for (let k = 0; k < 400 && !all().every((h) => sourceOf(h) !== undefined); k++) await sleep(50);
    const atCut = new Map(all().map((h) => [h, answersOf(h).length]));
    const at = Date.now();
    await ha.kill("a");
    const failovers = await Promise.all(
      [...probes].map(async ([f, probe]) => [f, await probe.failover(at, 1500, 15_000)] as const),
    );
    // Surviving: never closed, answered at least 5 more times after the cut, always from one
    // address. A connection whose packets the new master dropped before its commit waits for
    // TCP's retransmission (backing off under load): allow it 10 s.
    const closed = (h: Hold) => h.lines.some((l) => l.event === "closed");
    const answeredAgain = (h: Hold) => answersOf(h).length - (atCut.get(h) ?? 0) >= 5;
    for (let k = 0; k < 100; k++) {
      if (all().every((h) => closed(h) || answeredAgain(h))) break;
      await sleep(100);
    }
    for (const [f, failover] of failovers) {
      const mine = holds.get(f) ?? [];
      out.families[f] = {
        takeoverMs: failover.ms,
        failed: failover.failed,
        held: mine.filter((h) => sourceOf(h) !== undefined).length,
        broken: mine.filter(closed).length,
        survived: mine.filter((h) => {
          const source = sourceOf(h);
          if (source === undefined || closed(h)) return false;
          return answersOf(h).every((a) => a.source === source) && answeredAgain(h);
        }).length,
      };
    }
    out.commitMs = await ha.commitMs("b");
  } catch (error) {
    out.error = errorText(error);
  } finally {
    await Promise.all([...probes.values()].map((p) => p.stop()));
    await Promise.all(all().map((h) => h.stop()));
  }
  await ha.restore("a");
  await ha.waitForRoles({ a: "master", b: "backup" }, 30_000);
  return out;
}

async function trial(ha: HaLab): Promise<HaTrial> {
  const t = await takeoverTrial(ha, { 4: 6 });
  const four = t.families[4] ?? { takeoverMs: null, failed: 0, held: 0, survived: 0, broken: 0 };
  return { ...four, ...(t.error === undefined ? {} : { error: t.error }) };
}

/** Run the part: `trials` takeovers, then the sync traffic at 10,000 entries. */
export async function haPart(ctx: BenchContext, trials: number): Promise<HaResults> {
  ctx.check();
  const prefix = ctx.prefix("ha");
  ctx.prefixes.add(prefix);
  const ha = await haLabs.haLabUp({ prefix, uplinks: 2, iperf3Servers: 0 });
  try {
    const results: HaTrial[] = [];
    for (let i = 0; i < trials; i++) {
      ctx.check();
      const t = await trial(ha);
      ctx.log(
        "ha",
        `trial ${i + 1}: takeover ${t.takeoverMs ?? "-"} ms, ${t.survived}/${t.held} survived, ${t.broken} broken${t.error === undefined ? "" : `, ${t.error}`}`,
      );
      results.push(t);
    }
    const held = results.reduce((s, t) => s + t.held, 0);
    const survived = results.reduce((s, t) => s + t.survived, 0);
    let sync: HaResults["sync"] = null;
    try {
      const entries = 10_000;
      const rtr = ha.namespace("a");
      const before = await linkBytes(rtr, "sync0");
      const started = Date.now();
      await conntrackLab.fillConntrack(rtr, [{ mark: 0x100, count: entries }], { offset: 0 });
      let ms: number | null = null;
      while (Date.now() - started < 60_000) {
        if ((await externalCache(ha, "b")) >= entries) {
          ms = Date.now() - started;
          break;
        }
        await sleep(100);
      }
      await sleep(500);
      const after = await linkBytes(rtr, "sync0");
      const conf = `${ha.paths("a").dir}/conntrackd.conf`;
      await run("ip", ["netns", "exec", rtr, "conntrackd", "-C", conf, "-B"]);
      await sleep(3000);
      const bulk = await linkBytes(rtr, "sync0");
      sync = {
        entries,
        txBytes: after.tx - before.tx,
        rxBytes: after.rx - before.rx,
        ms,
        bulkTxBytes: bulk.tx - after.tx,
      };
    } catch (error) {
      ctx.log("ha", `sync traffic: ${errorText(error)}`);
    }
    return {
      advertMs: ha.advertMs,
      trials: results,
      takeoverMs: spreadOf(
        results.map((t) => t.takeoverMs),
        0,
      ),
      survivedPct: held === 0 ? null : Math.round((survived / held) * 1000) / 10,
      sync,
    };
  } finally {
    await ha.down().catch(() => labs.labDown(prefix).catch(() => undefined));
  }
}

/** One row of part `ha-takeover`: an advert interval and a family. */
export interface HaTakeoverRow {
  advertMs: number;
  family: Family;
  /** Master's death to new connections of this family succeeding again for good, ms. */
  takeoverMs: Spread;
  /** Long-lived flows of this family kept (same address, answering again) / held, all trials. */
  kept: number;
  held: number;
  keptPct: number | null;
  /** Probe connections of this family that failed, all trials. */
  failed: number;
  /** The new master's commit path (conntrackd commands of its notify script), ms. */
  commitMs: Spread;
}

/** Results of part `ha-takeover`. */
export interface HaTakeoverResults {
  /** Trials per advert interval. */
  trials: number;
  /** Long-lived flows per trial (half of each family). */
  flowsPerTrial: number;
  rows: HaTakeoverRow[];
  /** Per advert interval, each trial's results. */
  runs: {
    advertMs: number;
    trials: {
      families: Partial<Record<Family, FamilyTrial>>;
      commitMs: number | null;
      error?: string;
    }[];
  }[];
}

/** The advert intervals part `ha-takeover` measures, ms. */
export const TAKEOVER_ADVERTS_MS = [1000, 200, 100] as const;

/**
 * Run part `ha-takeover`: per advert interval in `adverts` a dual-stack HA
 * lab and `trials` takeovers, each with `flows` long-lived flows (half of
 * each family).
 */
export async function haTakeoverPart(
  ctx: BenchContext,
  trials: number,
  adverts: readonly number[] = TAKEOVER_ADVERTS_MS,
  flows = 30,
): Promise<HaTakeoverResults> {
  const runs: HaTakeoverResults["runs"] = [];
  const rows: HaTakeoverRow[] = [];
  for (const advertMs of adverts) {
    ctx.check();
    const prefix = ctx.prefix("hat");
    ctx.prefixes.add(prefix);
    const ha = await haLabs.haLabUp({ prefix, uplinks: 2, iperf3Servers: 0, advertMs });
    const run: HaTakeoverResults["runs"][number] = { advertMs, trials: [] };
    try {
      for (let i = 0; i < trials; i++) {
        ctx.check();
        const t = await takeoverTrial(ha, { 4: Math.ceil(flows / 2), 6: Math.floor(flows / 2) });
        run.trials.push(t);
        const text = ([4, 6] as const)
          .map((f) => {
            const x = t.families[f];
            return x === undefined
              ? `IPv${f} -`
              : `IPv${f} ${x.takeoverMs ?? "-"} ms, ${x.survived}/${x.held} kept`;
          })
          .join("; ");
        ctx.log(
          "ha-takeover",
          `${advertMs} ms adverts, trial ${i + 1}: ${text}; commit ${t.commitMs ?? "-"} ms${t.error === undefined ? "" : `, ${t.error}`}`,
        );
      }
    } finally {
      await ha.down().catch(() => labs.labDown(prefix).catch(() => undefined));
    }
    runs.push(run);
    for (const family of [4, 6] as const) {
      const mine = run.trials.flatMap((t) =>
        t.families[family] === undefined ? [] : [t.families[family]],
      );
      const held = mine.reduce((s, t) => s + t.held, 0);
      const kept = mine.reduce((s, t) => s + t.survived, 0);
      rows.push({
        advertMs,
        family,
        takeoverMs: spreadOf(
          mine.map((t) => t.takeoverMs),
          0,
        ),
        kept,
        held,
        keptPct: held === 0 ? null : Math.round((kept / held) * 1000) / 10,
        failed: mine.reduce((s, t) => s + t.failed, 0),
        commitMs: spreadOf(
          run.trials.map((t) => t.commitMs),
          0,
        ),
      });
    }
  }
  return { trials, flowsPerTrial: flows, rows, runs };
}

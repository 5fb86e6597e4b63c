/**
 * Part `ha`: the redundant dual-stack router pair of `lab up --ha`
 * (keepalived VRRP, conntrackd FTFW, radvd on the master, uplinkd in each
 * router), at 1 s, 200 ms and 100 ms VRRP adverts (one lab each).
 *
 * - **Takeover**: long-lived LAN connections (whoami `hold`, an answer every
 *   100 ms) and a probe opening a new connection every 20 ms run while the
 *   master dies (its switch ports and sync link cut, then its processes
 *   killed). Takeover time: from the cut until new connections succeed
 *   again for good (the probe's failover time, as in part 1). Surviving
 *   share: long-lived connections answering again after the cut (within
 *   10 s; TCP retransmits what the new master dropped before its commit),
 *   never reset, always from the same address. The old master then returns (as after a reboot) and takes
 *   over again before the next trial. Both families: 15 IPv4 and 15 IPv6
 *   long-lived connections per trial, an IPv4 and an IPv6 probe; the new
 *   master's notify script reports how long its conntrackd commit path took.
 * - **Sync traffic**: 10,000 synthetic ESTABLISHED TCP entries loaded into
 *   the master's table (`conntrack -R`): bytes on the sync link until the
 *   backup's external cache holds them all, and for a bulk send (`-B`).
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { conntrackLab, haLabs, haPartModule, labDaemons, labs, topology } from "./built.js";
import { BenchContext, errorText, sleep } from "./context.js";
import { Probe } from "./probe.js";
import { spreadOf, type Spread } from "./stats.js";
import type { HaLab } from "../src/lab/ha.js";
import type { HoldLine } from "../src/lab/traffic.js";

const run = promisify(execFile);

/** One takeover trial. */
export interface HaTrial {
  /** Cut to new connections succeeding again for good, ms; null when they did not within 15 s. */
  takeoverMs: number | null;
  /** The same for new IPv6 connections. */
  takeover6Ms: number | null;
  /** IPv6 long-lived connections held / surviving (also counted in held / survived). */
  held6: number;
  survived6: number;
  /** The new master's notify script: its conntrackd commands (-c -f -R -B), ms; null when not read. */
  commitMs: number | null;
  /** Probe connections that failed meanwhile. */
  failed: number;
  /** Long-lived connections held / answering again after the cut (within 10 s), from the same address. */
  held: number;
  survived: number;
  /** Long-lived connections that were reset or closed. */
  broken: number;
  error?: string;
}

/** One advert interval's takeovers. */
export interface HaAdvertRow {
  advertMs: number;
  trials: number;
  takeoverMs: Spread;
  takeover6Ms: Spread;
  /** Surviving long-lived connections per family, %. */
  survivedPct: number | null;
  survived6Pct: number | null;
  commitMs: Spread;
}

/** Results of the part (the top-level fields: the lab's own advert interval). */
export interface HaResults {
  /** One row per advert interval (1000, 200, 100 ms). */
  adverts?: HaAdvertRow[];
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

async function trial(
  ha: HaLab,
  virtuals: readonly string[],
  holdsPerFamily: number,
): Promise<HaTrial> {
  const lab = ha.lab;
  const hold = (host?: string) =>
    labDaemons.holdConnection(lab, {
      durationMs: 60_000,
      intervalMs: 100,
      timeoutMs: 1000,
      ...(host === undefined ? {} : { host }),
    });
  const holds4 = Array.from({ length: holdsPerFamily }, () => hold());
  const holds6 = Array.from({ length: holdsPerFamily }, () => hold(topology.LAB_HOSTS6.echo));
  const holds = [...holds4, ...holds6];
  const probe = new Probe(lab, 20, 1000);
  const probe6 = new Probe(lab, 20, 1000, 600_000, 6);
  const result: HaTrial = {
    takeoverMs: null,
    takeover6Ms: null,
    failed: 0,
    held: 0,
    survived: 0,
    held6: 0,
    survived6: 0,
    broken: 0,
    commitMs: null,
  };
  try {
    await probe.warmUp(Date.now(), virtuals);
    await probe6.warmUp(
      Date.now(),
      lab.plan.uplinks.map((u) => `uplink:${u.number}`),
    );
    for (let k = 0; k < 200 && !holds.every((h) => sourceOf(h) !== undefined); k++) await sleep(50);
    const atCut = holds.map((h) => answersOf(h).length);
    const at = Date.now();
    await ha.kill("a");
    const [failover, failover6] = await Promise.all([
      probe.failover(at, 1500, 15_000),
      probe6.failover(at, 1500, 15_000),
    ]);
    result.takeoverMs = failover.ms;
    result.takeover6Ms = failover6.ms;
    result.failed = failover.failed + failover6.failed;
    // Surviving: never closed, answered at least 5 more times after the cut, always from one
    // address. A connection whose packets the new master dropped before its commit waits for
    // TCP's retransmission (backing off under load): allow it 10 s.
    const closed = (h: Hold) => h.lines.some((l) => l.event === "closed");
    const answeredAgain = (h: Hold) => answersOf(h).length - (atCut[holds.indexOf(h)] ?? 0) >= 5;
    for (let k = 0; k < 100; k++) {
      if (holds.every((h) => closed(h) || answeredAgain(h))) break;
      await sleep(100);
    }
    const survived = (h: Hold) => {
      const source = sourceOf(h);
      if (source === undefined || closed(h)) return false;
      return answersOf(h).every((a) => a.source === source) && answeredAgain(h);
    };
    result.held = holds.filter((h) => sourceOf(h) !== undefined).length;
    result.held6 = holds6.filter((h) => sourceOf(h) !== undefined).length;
    result.broken = holds.filter(closed).length;
    result.survived = holds.filter(survived).length;
    result.survived6 = holds6.filter(survived).length;
    result.commitMs = await commitMsOf(ha, "b");
  } catch (error) {
    result.error = errorText(error);
  } finally {
    await probe.stop();
    await probe6.stop();
    await Promise.all(holds.map((h) => h.stop()));
  }
  await ha.restore("a");
  await ha.waitForRoles({ a: "master", b: "backup" }, 30_000);
  return result;
}

/** The commit time router `name`'s notify script wrote with its role, ms; null when absent. */
async function commitMsOf(ha: HaLab, name: "a" | "b"): Promise<number | null> {
  try {
    const text = await readFile(join(ha.paths(name).dir, "ha-role"), "utf8");
    return haPartModule.parseStateFile(text)?.commitMs ?? null;
  } catch {
    return null;
  }
}

/** The advert intervals the part compares, ms. */
export const HA_ADVERTS_MS = [1000, 200, 100] as const;

/** `trials` takeovers in a fresh HA lab with `advertMs` adverts. */
async function advertRow(
  ctx: BenchContext,
  advertMs: number,
  trials: number,
  holdsPerFamily: number,
): Promise<{ row: HaAdvertRow; trials: HaTrial[] }> {
  ctx.check();
  const prefix = ctx.prefix(`ha${advertMs}`);
  ctx.prefixes.add(prefix);
  const ha = await haLabs.haLabUp({ prefix, uplinks: 2, iperf3Servers: 0, advertMs });
  try {
    const virtuals = ha.lab.plan.uplinks.map((u) => haLabs.haUplinkVirtual(u));
    const results: HaTrial[] = [];
    for (let i = 0; i < trials; i++) {
      ctx.check();
      const t = await trial(ha, virtuals, holdsPerFamily);
      ctx.log(
        "ha",
        `${advertMs} ms adverts, trial ${i + 1}: takeover ${t.takeoverMs ?? "-"} / IPv6 ${t.takeover6Ms ?? "-"} ms, ${t.survived}/${t.held} survived (IPv6 ${t.survived6}/${t.held6}), commit ${t.commitMs ?? "-"} ms, ${t.broken} broken${t.error === undefined ? "" : `, ${t.error}`}`,
      );
      results.push(t);
    }
    const pct = (a: number, b: number) => (b === 0 ? null : Math.round((a / b) * 1000) / 10);
    const sum = (f: (t: HaTrial) => number) => results.reduce((s, t) => s + f(t), 0);
    return {
      trials: results,
      row: {
        advertMs,
        trials: results.length,
        takeoverMs: spreadOf(
          results.map((t) => t.takeoverMs),
          0,
        ),
        takeover6Ms: spreadOf(
          results.map((t) => t.takeover6Ms),
          0,
        ),
        survivedPct: pct(
          sum((t) => t.survived - t.survived6),
          sum((t) => t.held - t.held6),
        ),
        survived6Pct: pct(
          sum((t) => t.survived6),
          sum((t) => t.held6),
        ),
        commitMs: spreadOf(
          results.map((t) => t.commitMs),
          0,
        ),
      },
    };
  } finally {
    await ha.down().catch(() => labs.labDown(prefix).catch(() => undefined));
  }
}

/**
 * Run the part: `trials` takeovers at each advert interval of `adverts`
 * (default {@link HA_ADVERTS_MS}), `holdsPerFamily` long-lived connections
 * of each family per trial; then, in the lab's own setting, the takeovers
 * of the top-level fields and the sync traffic at 10,000 entries.
 */
export async function haPart(
  ctx: BenchContext,
  trials: number,
  adverts: readonly number[] = HA_ADVERTS_MS,
  holdsPerFamily = 15,
): Promise<HaResults> {
  const rows: HaAdvertRow[] = [];
  for (const advertMs of adverts) {
    rows.push((await advertRow(ctx, advertMs, trials, holdsPerFamily)).row);
  }
  ctx.check();
  const prefix = ctx.prefix("ha");
  ctx.prefixes.add(prefix);
  const ha = await haLabs.haLabUp({ prefix, uplinks: 2, iperf3Servers: 0 });
  try {
    const virtuals = ha.lab.plan.uplinks.map((u) => haLabs.haUplinkVirtual(u));
    const results: HaTrial[] = [];
    for (let i = 0; i < trials; i++) {
      ctx.check();
      const t = await trial(ha, virtuals, holdsPerFamily);
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
      adverts: rows,
      advertMs: haLabs.HA_LAB.advertMs,
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

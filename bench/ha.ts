/**
 * Part `ha`: the redundant router pair of `lab up --ha` (keepalived VRRP
 * with 200 ms adverts, conntrackd FTFW, uplinkd in each router).
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
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { conntrackLab, haLabs, labDaemons, labs } from "./built.js";
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
  /** Probe connections that failed meanwhile. */
  failed: number;
  /** Long-lived connections held / answering again after the cut (within 10 s), from the same address. */
  held: number;
  survived: number;
  /** Long-lived connections that were reset or closed. */
  broken: number;
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

async function trial(ha: HaLab, virtuals: readonly string[]): Promise<HaTrial> {
  const lab = ha.lab;
  const holds = Array.from({ length: 6 }, () =>
    labDaemons.holdConnection(lab, { durationMs: 60_000, intervalMs: 100, timeoutMs: 1000 }),
  );
  const probe = new Probe(lab, 20, 1000);
  const result: HaTrial = { takeoverMs: null, failed: 0, held: 0, survived: 0, broken: 0 };
  try {
    await probe.warmUp(Date.now(), virtuals);
    for (let k = 0; k < 200 && !holds.every((h) => sourceOf(h) !== undefined); k++) await sleep(50);
    const atCut = holds.map((h) => answersOf(h).length);
    const at = Date.now();
    await ha.kill("a");
    const failover = await probe.failover(at, 1500, 15_000);
    result.takeoverMs = failover.ms;
    result.failed = failover.failed;
    // Surviving: never closed, answered at least 5 more times after the cut, always from one
    // address. A connection whose packets the new master dropped before its commit waits for
    // TCP's retransmission (backing off under load): allow it 10 s.
    const closed = (h: Hold) => h.lines.some((l) => l.event === "closed");
    const answeredAgain = (h: Hold, i: number) => answersOf(h).length - (atCut[i] ?? 0) >= 5;
    for (let k = 0; k < 100; k++) {
      if (holds.every((h, i) => closed(h) || answeredAgain(h, i))) break;
      await sleep(100);
    }
    const held = holds.filter((h) => sourceOf(h) !== undefined);
    result.held = held.length;
    result.broken = holds.filter(closed).length;
    result.survived = holds.filter((h, i) => {
      const source = sourceOf(h);
      if (source === undefined || closed(h)) return false;
      return answersOf(h).every((a) => a.source === source) && answeredAgain(h, i);
    }).length;
  } catch (error) {
    result.error = errorText(error);
  } finally {
    await probe.stop();
    await Promise.all(holds.map((h) => h.stop()));
  }
  await ha.restore("a");
  await ha.waitForRoles({ a: "master", b: "backup" }, 30_000);
  return result;
}

/** Run the part: `trials` takeovers, then the sync traffic at 10,000 entries. */
export async function haPart(ctx: BenchContext, trials: number): Promise<HaResults> {
  ctx.check();
  const prefix = ctx.prefix("ha");
  ctx.prefixes.add(prefix);
  const ha = await haLabs.haLabUp({ prefix, uplinks: 2, iperf3Servers: 0 });
  try {
    const virtuals = ha.lab.plan.uplinks.map((u) => haLabs.haUplinkVirtual(u));
    const results: HaTrial[] = [];
    for (let i = 0; i < trials; i++) {
      ctx.check();
      const t = await trial(ha, virtuals);
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

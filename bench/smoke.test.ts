/**
 * Smoke test of the benchmark, for CI: `bench/run.ts --quick` (under 7
 * minutes) into a temporary directory writes RESULTS.md and results.json,
 * every part succeeds with figures in a sane range, and nothing of the run
 * is left behind: no lab namespace or state directory, no process, no
 * change to the host's own network namespace.
 *
 *     node --import tsx --test bench/smoke.test.ts     (root; after npm run build)
 *
 * Figures are checked for plausibility; failover and recovery times
 * against what the health settings allow (below the detection floor is a
 * measurement error, far above it a stall), with room for a loaded machine.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { healthSchema, type HealthConfig } from "../src/config/schema.js";
import { resolveTimeout } from "../src/health/options.js";
import { PASSIVE_DEFAULTS } from "../src/health/passive.js";
import type { ApplyResults } from "./apply.js";
import type { BalanceResults } from "./balance.js";
import type { ConntrackResults } from "./conntrack.js";
import { DEFAULTS, FAST } from "./context.js";
import { HUNG_PROFILE, type FailoverResults } from "./failover.js";
import type { HaResults } from "./ha.js";
import type { LoadResults } from "./load.js";
import type { FootprintResults } from "./footprint.js";
import type { LsmResults } from "./lsm.js";
import type { Results } from "./report.js";
import type { SoakResults } from "./soak.js";
import type { SubsecondResults } from "./subsecond.js";
import type { ThroughputResults } from "./throughput.js";
import type { Ipv6Results } from "./ipv6.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * Runs `file args...` and collects its output. When `signal` aborts (the
 * test's timeout), the child gets SIGTERM: the benchmark then removes its
 * labs and exits.
 */
function run(
  file: string,
  args: readonly string[],
  signal?: AbortSignal,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    const onAbort = (): void => {
      child.kill("SIGTERM");
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    child.on("exit", () => signal?.removeEventListener("abort", onAbort));
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (out += c.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => {
      resolve({ code, out });
    });
  });
}

/** The host's own network state (read only): link names and flags, routes, rules, nft tables. */
async function hostNetworkState(): Promise<string> {
  const [links, routes, rules, nft] = await Promise.all([
    run("ip", ["-j", "link", "show"]),
    run("ip", ["-j", "route", "show", "table", "all"]),
    run("ip", ["-j", "rule", "show"]),
    run("nft", ["list", "tables"]),
  ]);
  const names = (JSON.parse(links.out) as { ifname: string; flags: string[] }[])
    .map((l) => `${l.ifname}:${l.flags.join(",")}`)
    .sort();
  return JSON.stringify([names, routes.out, rules.out, nft.out]);
}

/** Pids whose command line mentions `text`. */
async function processesMentioning(text: string): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, "utf8")).replace(/\0/g, " ");
      if (cmdline.includes(text)) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

function between(value: number | null | undefined, low: number, high: number, what: string): void {
  assert.ok(
    typeof value === "number" && value >= low && value <= high,
    `${what}: ${String(value)} is not within ${low}..${high}`,
  );
}

/** The health settings (ms) the daemon runs with under the failover part's profile `name`. */
function profileHealth(name: string): HealthConfig {
  // The hung-commands set runs the fast profile.
  const profile = [DEFAULTS, FAST].find(
    (p) => p.name === (name === HUNG_PROFILE ? FAST.name : name),
  );
  assert.ok(profile !== undefined, `unknown failover profile ${name}`);
  const { interval, timeout, down, up } = profile;
  return healthSchema.parse({ interval, timeout, down, up });
}

/**
 * Early slack, ms: the traffic probe's resolution (a new connection every
 * 20 ms) and connections that happened to take the healthy uplink just
 * before the switch.
 */
const EARLY_MS = 150;
/** Late slack, ms: the quick run overlaps its parts on a small, shared machine. */
const LATE_MS = 1500;

/**
 * What a failover may take, ms. A blackhole is seen after `down` failed
 * rounds, the first starting up to one interval after the fault and each
 * failing at its timeout: (down - 1) x interval + timeout, plus up to one
 * interval. A carrier loss is seen from the kernel's link state at once.
 */
function failoverBounds(health: HealthConfig, fault: string): [number, number] {
  if (fault === "carrier") return [0, 1000];
  // timeout: auto: each probe's timeout lies between timeout_min and timeout_max.
  const { timeoutMs, adaptive } = resolveTimeout(health);
  const rounds = (health.down - 1) * health.interval;
  const byRounds = rounds + (adaptive?.minMs ?? timeoutMs);
  // With the passive signal (on by default) the benchmark's LAN traffic can
  // start a probe burst: a new connection counts as unanswered after the
  // grace time, then `down` burst probes go out 20 ms apart.
  const byBurst = PASSIVE_DEFAULTS.graceMs + (health.down - 1) * 20;
  return [
    (health.passive ? Math.min(byRounds, byBurst) : byRounds) - EARLY_MS,
    rounds + timeoutMs + health.interval + LATE_MS,
  ];
}

/**
 * What an HA takeover may take, ms: the backup becomes master once the
 * killed master has been silent for VRRP's master down interval, 3 adverts
 * plus a skew below one advert (RFC 5798 6.1), then uplinkd commits its
 * state there.
 */
function takeoverBounds(advertMs: number): [number, number] {
  return [3 * advertMs - EARLY_MS, 4 * advertMs + LATE_MS];
}

/**
 * What a recovery may take, ms: `up` good rounds, the first up to one
 * interval after the heal; a link back from carrier loss also needs its
 * routes put back.
 */
function recoveryBounds(health: HealthConfig): [number, number] {
  const floor = (health.up - 1) * health.interval;
  return [floor - EARLY_MS, floor + health.interval + LATE_MS + 1000];
}

void test(
  "the quick benchmark writes sane results and leaves nothing behind",
  { timeout: 600_000 },
  async (t) => {
    assert.ok(existsSync(join(ROOT, "dist", "cli.js")), "no build: run `npm run build` first");
    const hostBefore = await hostNetworkState();
    const out = await mkdtemp(join(tmpdir(), "uplinkd-bench-"));
    try {
      const started = Date.now();
      const r = await run(
        process.execPath,
        ["--import", "tsx", join(ROOT, "bench", "run.ts"), "--quick", "--out", out],
        t.signal,
      );
      const tail = r.out.split("\n").slice(-60).join("\n");
      assert.equal(r.code, 0, `bench --quick failed:\n${tail}`);
      const tookS = (Date.now() - started) / 1000;
      const markdown = await readFile(join(out, "RESULTS.md"), "utf8");
      assert.match(markdown, /^# uplinkd benchmark results/);
      const doc = JSON.parse(await readFile(join(out, "results.json"), "utf8")) as Results;
      assert.equal(doc.mode, "quick");
      assert.ok(doc.machine.cpus > 0 && doc.machine.kernel !== "", "machine info is missing");
      for (const [name, part] of Object.entries(doc.parts)) {
        assert.equal(part?.status, "ok", `part ${name}: ${part?.error ?? ""}`);
      }
      const data = (name: string): unknown => doc.parts[name]?.data;

      const ss = data("subsecond") as SubsecondResults;
      assert.equal(ss.failover.failover.n, 3, "sub-second failover trials that did not settle");
      between(
        ss.failover.failover.median,
        ...failoverBounds(
          healthSchema.parse({ interval: "50ms", timeout: "auto", down: 3 }),
          "blackhole",
        ),
        "sub-second blackhole failover",
      );
      assert.equal(ss.quiet.detect.n, 3, "sub-second blackholes without traffic never detected");
      between(ss.quiet.detect.median, 50, 2000, "sub-second detection without LAN traffic");
      assert.deepEqual(
        ss.soak.downs,
        { isp1: 0, isp2: 0 },
        "false failovers of the sub-second profile",
      );
      assert.ok(
        ss.degraded.degradedMs !== null && !ss.degraded.wentDown,
        "degraded on RTT, not down",
      );
      assert.equal(ss.cost.packetsPerSecond.length, 4);
      // 50 ms rounds: ~17.5 echo requests/s per target (ping's period runs ~13 % long).
      assert.ok(ss.cost.targets >= 2, `targets per uplink: ${ss.cost.targets}`);
      for (const pps of ss.cost.packetsPerSecond)
        between(
          pps === null ? null : pps / ss.cost.targets,
          10,
          30,
          "probe packets/s per uplink and target",
        );

      const fo = data("failover") as FailoverResults;
      // defaults and fast, blackhole and carrier; fast blackhole with hung conntrack -D and nft list.
      assert.equal(fo.sets.length, 5);
      assert.ok(fo.sets.some((s) => s.profile === HUNG_PROFILE && s.fault === "blackhole"));
      for (const s of fo.sets) {
        assert.equal(s.failover.n, 3, `${s.profile} ${s.fault}: trials that did not settle`);
        const health = profileHealth(s.profile);
        between(
          s.failover.median,
          ...failoverBounds(health, s.fault),
          `${s.profile} ${s.fault} failover`,
        );
        between(s.recovery.median, ...recoveryBounds(health), `${s.profile} ${s.fault} recovery`);
      }
      const lsm = data("lsm") as LsmResults;
      // lsm: 7 lost pings in a row at one a second, decided on a one-second tick (7-9 s).
      for (const s of lsm.sets) between(s.failover.median, 6000, 12_000, `lsm ${s.fault} failover`);
      const soak = data("soak") as SoakResults;
      assert.equal(soak.results.length, 6);
      for (const s of soak.results) {
        assert.equal(s.error, undefined, `soak ${s.monitor} ${s.profile} ${s.lossPct} %`);
        between(s.durationS, 100, 200, "soak duration");
        for (const loss of s.measuredLossPct) {
          if (loss !== null) between(loss, 0, 40, `loss measured at ${s.lossPct} %`);
        }
      }
      const apply = data("apply") as ApplyResults;
      assert.deepEqual(
        apply.sizes.map((s) => s.uplinks),
        [2, 8, 32],
      );
      for (const s of apply.sizes) {
        between(s.down.median, 0.1, 5000, `apply down, ${s.uplinks} uplinks`);
        between(s.full.median, 0.1, 10_000, `full apply, ${s.uplinks} uplinks`);
      }
      between(apply.rules?.full.median, 0.1, 60_000, "full apply with rules");
      const balance = data("balance") as BalanceResults;
      assert.equal(balance.ok, balance.connections, "balance: connections failed");
      assert.equal(balance.inconsistent, 0);
      between(balance.maxDiffPoints, 0, 5, "balance: largest deviation (points)");
      const tp = data("throughput") as ThroughputResults;
      between(tp.ratio, 0.2, 5, "throughput ratio");
      const v6 = data("ipv6") as Ipv6Results;
      // An IPv6-only blackhole is seen by the IPv6 probes exactly as a blackhole is by the IPv4 ones.
      assert.equal(v6.failover.fault, "blackhole6");
      assert.equal(v6.failover.failover.n, 3, "IPv6 blackhole: trials that did not settle");
      const fast = profileHealth(v6.failover.profile);
      between(v6.failover.failover.median, ...failoverBounds(fast, "blackhole"), "IPv6 failover");
      between(v6.failover.detect.median, 0, failoverBounds(fast, "blackhole")[1], "IPv6 detection");
      between(v6.failover.recovery.median, ...recoveryBounds(fast), "IPv6 recovery");
      assert.equal(v6.balance.ok, v6.balance.connections, "IPv6 balance: connections failed");
      assert.equal(v6.balance.inconsistent, 0);
      between(v6.balance.maxDiffPoints, 0, 5, "IPv6 balance: largest deviation (points)");
      between(v6.throughput.ratio, 0.2, 5, "IPv6 throughput ratio");
      const fp = data("footprint") as FootprintResults;
      // Quick: 4 uplinks, the fast profile, IPv4 and both families.
      assert.equal(fp.runs.length + (fp.failed?.length ?? 0), 2, JSON.stringify(fp.failed));
      assert.ok(
        fp.runs.some((f) => f.uplinks === 4 && f.profile === "fast" && f.families === "ipv4"),
      );
      assert.ok((fp.profile?.top.length ?? 0) > 0, "the idle daemon's profile names its top costs");
      // An idle daemon of 4 uplinks measured 82-113 MB and 2.5-3.7 % of a core (daemon),
      // 3.4-4.5 % with its children, on a busy machine (docs/footprint.md); the build
      // before the long-lived readers used 8.5 % (daemon) and 18 % (tree). The bounds
      // allow 3-4 times the measured figures and catch a return to that build's cost.
      // At least an empty Node's RSS (~40 MB), and some CPU: it parses 40 probes a second.
      for (const f of fp.runs) {
        between(f.rssMb.median, 30, 350, `RSS, ${f.uplinks} uplinks`);
        between(f.cpuPct, 0.1, 8, `CPU, ${f.uplinks} uplinks`);
      }
      for (const f of fp.runs) {
        between(f.tree.cpuPct, f.cpuPct ?? 0, 15, `tree CPU, ${f.uplinks} uplinks`);
        assert.ok(
          (f.tree.rssMb.median ?? 0) > (f.rssMb.median ?? 0),
          `the tree's RSS (${f.tree.rssMb.median} MB) counts the children beside the daemon (${f.rssMb.median} MB)`,
        );
      }
      const load = data("load") as LoadResults;
      assert.deepEqual(
        load.modes.map((m) => m.mode),
        ["weight 1:1", "weight 1:4", "least-used", "spillover"],
      );
      for (const m of load.modes) {
        assert.ok(m.transfers > 0, `${m.mode}: no transfers`);
        assert.equal(m.failed, 0, `${m.mode}: failed transfers`);
        // 10 + 40 Mbit/s at the ISPs: the goodput cannot exceed 50.
        between(m.goodputMbit, 1, 52, `${m.mode} goodput (Mbit/s)`);
      }
      const ct = data("conntrack") as ConntrackResults;
      assert.deepEqual(
        ct.sizes.map((r) => r.entries),
        [0, 2000, 5000],
      );
      for (const r of ct.sizes) {
        assert.ok(r.statusMs.n >= 5, `${r.entries} entries: only ${r.statusMs.n} status requests`);
        between(r.statusMs.median, 0.1, 1000, `/status at ${r.entries} entries`);
        assert.ok(r.streamEvents >= 2, `${r.entries} entries: ${r.streamEvents} stream events`);
        between(r.treeCpuPct, 0.01, 400, `tree CPU at ${r.entries} entries`);
        // The status counts every synthetic entry (and the probes' own).
        between(r.connections, r.entries, r.tableSize, `connections at ${r.entries} entries`);
      }
      assert.ok(ct.cleanup !== null, "no clean-up measured");
      assert.equal(ct.cleanup.uplinkEntries, 2500);
      assert.equal(ct.cleanup.deleted.length, 1);
      for (const d of ct.cleanup.deleted) between(d, 2500, 2600, "entries cleaned up");
      assert.deepEqual(
        ct.failover.map((f) => [f.entries, f.set.failover.n]),
        [
          [0, 2],
          [5000, 2],
        ],
      );
      // The conntrack part fails over with the fast profile, whatever the table holds.
      for (const f of ct.failover) {
        between(
          f.set.failover.median,
          ...failoverBounds(profileHealth(f.set.profile), "blackhole"),
          `failover at ${f.entries} entries`,
        );
      }
      const ha = data("ha") as HaResults;
      assert.equal(ha.trials.length, 5);
      assert.equal(ha.takeoverMs.n, 5, "takeovers that did not settle");
      between(ha.takeoverMs.median, ...takeoverBounds(ha.advertMs), "HA takeover");
      // The share is a measurement (86.7 % and 100 % seen in quick runs on a busy
      // machine); that every connection survives is asserted by test/lab/ha.test.ts.
      between(ha.survivedPct, 50, 100, "long-lived connections surviving a takeover, %");
      assert.ok(ha.sync !== null, "no sync traffic measured");
      between(ha.sync.txBytes, 10_000, 100 * 1024 * 1024, "sync link bytes for 10,000 entries");
      assert.ok(tookS < 420, `the quick run took ${Math.round(tookS)} s`);

      // Nothing left behind.
      assert.ok(doc.prefixes.length > 0, "results.json lists no lab prefixes to check");
      const namespaces = (await run("ip", ["netns", "list"])).out;
      for (const prefix of doc.prefixes) {
        assert.doesNotMatch(
          namespaces,
          new RegExp(`^${prefix}-`, "m"),
          `namespaces of ${prefix} remain`,
        );
        assert.ok(
          !existsSync(`/run/uplinkd-lab/${prefix}`),
          `state directory of ${prefix} remains`,
        );
        assert.deepEqual(
          await processesMentioning(`/run/uplinkd-lab/${prefix}/`),
          [],
          `processes of ${prefix} remain`,
        );
      }
      assert.equal(
        await hostNetworkState(),
        hostBefore,
        "the host's own network namespace changed",
      );
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  },
);

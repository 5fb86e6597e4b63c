/**
 * results.json's shape, the machine it ran on, and the two renderings of
 * it: the console table and RESULTS.md.
 */
import { cpus, release, totalmem } from "node:os";
import type { ApplyResults } from "./apply.js";
import type { BalanceResults } from "./balance.js";
import { exec } from "./built.js";
import { FAST } from "./context.js";
import type { ConntrackResults } from "./conntrack.js";
import type { FailoverResults, TrialSet } from "./failover.js";
import type { FootprintResults } from "./footprint.js";
import type { SubsecondResults } from "./subsecond.js";
import type { LsmResults } from "./lsm.js";
import type { SoakResults } from "./soak.js";
import { ratio, type Spread } from "./stats.js";
import type { ThroughputResults } from "./throughput.js";
import type { Ipv6Results } from "./ipv6.js";
import type { LoadResults } from "./load.js";
import { TAKEOVER_PROBE_TIMEOUT_MS, type HaResults, type HaTakeoverResults } from "./ha.js";
import type { VmResults } from "./vm.js";

/** One part's outcome. */
export interface PartResult {
  status: "ok" | "error";
  durationS: number;
  error?: string;
  data?: unknown;
  /**
   * Set on a part measured by a later run with `--merge` (it replaced the
   * record's part of that name): when, and on which machine and commit.
   */
  merged?: {
    startedAt: string;
    /** Absent for a part merged by hand before `--merge` existed (then `note` says what is known). */
    machine?: Machine;
    note?: string;
  };
}

/** What the machine was. */
export interface Machine {
  kernel: string;
  cpus: number;
  cpuModel: string;
  memoryMb: number;
  node: string;
  nft: string;
  iproute2: string;
  lsm: string;
  commit: string;
  /** Uncommitted changes in the checkout when it ran. */
  dirty: boolean;
}

/** results.json. */
export interface Results {
  version: 1;
  mode: "full" | "quick";
  startedAt: string;
  finishedAt: string;
  durationS: number;
  machine: Machine;
  /** Lab prefixes the run used (all removed at its end). */
  prefixes: string[];
  parts: Partial<Record<string, PartResult>>;
}

async function firstLine(file: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await exec.runCommand(file, args, { allowExitCodes: [1, 2] });
    return (stdout || stderr).trim().split("\n")[0] ?? "?";
  } catch {
    return "not found";
  }
}

/** Kernel, CPUs, memory, tool versions and the checkout's commit. */
export async function machineInfo(): Promise<Machine> {
  // The record's own files do not count: a run with --merge starts from an uncommitted record.
  const status = await firstLine("git", [
    "status",
    "--porcelain",
    "--untracked-files=no",
    "--",
    ".",
    ":(exclude)bench/results.json",
    ":(exclude)bench/RESULTS.md",
  ]);
  return {
    kernel: release(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? "?",
    memoryMb: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    nft: await firstLine("nft", ["--version"]),
    iproute2: await firstLine("ip", ["-V"]),
    lsm: await firstLine("lsm", ["--version"]),
    commit: await firstLine("git", ["rev-parse", "--short", "HEAD"]),
    dirty: status !== "" && status !== "not found" && status !== "?",
  };
}

/** One row of the summary table. */
export interface Row {
  figure: string;
  median: string;
  p90: string;
  max: string;
  n: string;
  note: string;
}

const dash = "-";

function num(v: number | null | undefined, unit = ""): string {
  return v === null || v === undefined ? dash : `${v}${unit}`;
}

function spreadRow(figure: string, s: Spread, unit: string, note = ""): Row {
  return {
    figure,
    median: num(s.median, unit),
    p90: num(s.p90, unit),
    max: num(s.max, unit),
    n: String(s.n),
    note,
  };
}

function valueRow(figure: string, value: string, note = "", n = dash): Row {
  return { figure, median: value, p90: dash, max: dash, n, note };
}

/** A part's data, or undefined when it did not run or failed. */
function data(doc: Results, part: string): unknown {
  const p = doc.parts[part];
  return p?.status === "ok" ? p.data : undefined;
}

function failed(set: TrialSet): string {
  const errors = set.trials.filter((t) => t.error !== undefined).length;
  const unsettled = set.trials.filter((t) => t.error === undefined && t.failoverMs === null).length;
  const clean = set.trials.filter((t) => t.failoverMs === 0).length;
  const parts = [];
  if (clean > 0) parts.push(`${clean} of ${set.trials.length} trials: no connection failed`);
  if (errors > 0) parts.push(`${errors} trial(s) failed`);
  if (unsettled > 0) parts.push(`${unsettled} did not settle`);
  return parts.join(", ");
}

/** 250000 -> "250,000". */
function thousands(n: number): string {
  return n.toLocaleString("en-US");
}

function childList(f: FootprintResults["runs"][number]): string {
  return Object.entries(f.children.commands)
    .map(([c, n]) => `${n} ${c}`)
    .join(", ");
}

/** The summary rows, in report order. */
export function summaryRows(doc: Results): Row[] {
  const rows: Row[] = [];
  const fo = data(doc, "failover") as FailoverResults | undefined;
  const lsm = data(doc, "lsm") as LsmResults | undefined;
  for (const set of fo?.sets ?? []) {
    rows.push(
      spreadRow(`Failover, ${set.fault}, uplinkd ${set.profile}`, set.failover, " ms", failed(set)),
    );
  }
  for (const set of lsm?.sets ?? []) {
    rows.push(
      spreadRow(`Failover, ${set.fault}, lsm ${set.profile}`, set.failover, " ms", failed(set)),
    );
  }
  for (const set of fo?.sets ?? []) {
    const peer = lsm?.sets.find((s) => s.fault === set.fault);
    if (peer === undefined) continue;
    rows.push(
      valueRow(
        `Failover ratio, ${set.fault}: uplinkd ${set.profile} / lsm`,
        num(ratio(set.failover.median, peer.failover.median, 3)),
        "ratio of medians; < 1: uplinkd is faster",
      ),
    );
  }
  for (const set of fo?.sets ?? []) {
    rows.push(spreadRow(`Recovery, ${set.fault}, uplinkd ${set.profile}`, set.recovery, " ms"));
  }
  for (const set of lsm?.sets ?? []) {
    if (set.recovery.n === 0) continue;
    rows.push(
      spreadRow(
        `Recovery, ${set.fault}, lsm defaults`,
        set.recovery,
        " ms",
        "few trials: ~100 s each",
      ),
    );
  }
  const soak = data(doc, "soak") as SoakResults | undefined;
  for (const r of soak?.results ?? []) {
    const who = `${r.monitor} ${r.profile}`;
    rows.push(
      valueRow(
        `False failovers, ${r.lossPct} % loss, ${who}`,
        r.error === undefined ? `${r.downs} down` : "error",
        r.error ??
          `${r.degraded} degraded; down ${r.downTimePct} %, degraded ${r.degradedTimePct} % of uplink-time`,
        `${r.uplinks} x ${Math.round(r.durationS / 60)} min`,
      ),
    );
  }
  const apply = data(doc, "apply") as ApplyResults | undefined;
  for (const s of apply?.sizes ?? []) {
    rows.push(
      spreadRow(
        `Apply, uplink down -> kernel updated, ${s.uplinks} uplinks`,
        s.down,
        " ms",
        `new connections avoid it after ${num(s.downMaps.median, " ms")}; ${s.conntrackEntries} conntrack entries`,
      ),
    );
  }
  for (const s of apply?.sizes ?? []) {
    rows.push(spreadRow(`Apply, uplink up -> kernel updated, ${s.uplinks} uplinks`, s.up, " ms"));
  }
  const big = apply?.sizes.find((s) => s.uplinks === 32);
  if (big !== undefined) {
    rows.push(
      spreadRow(
        "Full apply (render + apply), 32 uplinks",
        big.fullTotal,
        " ms",
        `render ${num(big.render.median, " ms")}, apply ${num(big.full.median, " ms")} (medians); nft script ${big.nftBytes} bytes`,
      ),
    );
  }
  if (apply?.rules !== undefined && apply.rules !== null) {
    rows.push(
      spreadRow(
        `Full apply (render + apply), ${apply.rules.rules} rules, 32 uplinks`,
        apply.rules.fullTotal,
        " ms",
        `render ${num(apply.rules.render.median, " ms")}, apply ${num(apply.rules.full.median, " ms")} (medians); nft script ${apply.rules.nftBytes} bytes`,
      ),
    );
  } else if (apply?.rulesNote !== undefined) {
    rows.push(valueRow("Full apply, 1,000 rules", "error", apply.rulesNote));
  }
  const bal = data(doc, "balance") as BalanceResults | undefined;
  if (bal !== undefined) {
    rows.push(
      valueRow(
        `Balance, weights ${bal.shares.map((s) => s.weight).join(":")}: max |share - weight share|`,
        `${bal.maxDiffPoints} points`,
        `${bal.shares.map((s) => `${s.measuredPct}/${s.expectedPct} %`).join(", ")}; chi-square p = ${bal.pValue}`,
        String(bal.ok),
      ),
    );
  }
  const tp = data(doc, "throughput") as ThroughputResults | undefined;
  if (tp !== undefined) {
    rows.push(
      valueRow(
        "Throughput, uplinkd / static multipath",
        num(tp.ratio),
        `${num(tp.uplinkd.median)} vs ${num(tp.baseline.median)} Gbit/s (medians), ${tp.streams} streams x ${tp.seconds} s`,
        String(tp.uplinkd.n),
      ),
    );
  }
  const v6 = data(doc, "ipv6") as Ipv6Results | undefined;
  if (v6 !== undefined) {
    rows.push(
      spreadRow(
        `Failover, IPv6 only (blackhole6), uplinkd ${v6.failover.profile}`,
        v6.failover.failover,
        " ms",
        failed(v6.failover),
      ),
      valueRow(
        `Balance, IPv6, weights ${v6.balance.shares.map((s) => s.weight).join(":")}: max |share - weight share|`,
        `${v6.balance.maxDiffPoints} points`,
        `${v6.balance.shares.map((s) => `${s.measuredPct}/${s.expectedPct} %`).join(", ")}; chi-square p = ${v6.balance.pValue}`,
        String(v6.balance.ok),
      ),
      valueRow(
        "Throughput, IPv6, uplinkd / plain route",
        num(v6.throughput.ratio),
        `${num(v6.throughput.uplinkd.median)} vs ${num(v6.throughput.baseline.median)} Gbit/s (medians), ${v6.throughput.streams} streams x ${v6.throughput.seconds} s`,
        String(v6.throughput.uplinkd.n),
      ),
    );
  }
  const fp = data(doc, "footprint") as FootprintResults | undefined;
  for (const f of fp?.runs ?? []) {
    const what = `${f.uplinks} uplinks x ${f.targets} targets${f.profile === undefined ? "" : `, ${f.profile}${f.families === "both" ? ", both families" : ""}`}`;
    rows.push(
      spreadRow(
        `Daemon RSS, ${what}`,
        f.rssMb,
        " MB",
        `peak ${num(f.peakRssMb, " MB")}; children: ${childList(f)}, PSS ${num(f.children.pssMb, " MB")}`,
      ),
    );
    rows.push(
      valueRow(
        `Daemon CPU, ${what}`,
        num(f.daemonWindows?.median ?? f.cpuPct, " %"),
        `of one core over ${f.seconds} s; children ${num(f.children.cpuPct, " %")}`,
      ),
    );
    // Older results.json files have no tree figures.
    if ((f as Partial<typeof f>).tree !== undefined) {
      const w = f.treeWindows;
      rows.push(
        w === undefined
          ? valueRow(
              `Daemon + children CPU, ${what}`,
              num(f.tree.cpuPct, " %"),
              `of one core over ${f.seconds} s, short-lived children included; RSS of the tree ${num(f.tree.rssMb.median, " MB")}`,
            )
          : spreadRow(
              `Daemon + children CPU, ${what}`,
              w,
              " %",
              `of one core, windows over ${f.seconds} s, short-lived children included; RSS of the tree ${num(f.tree.rssMb.median, " MB")}`,
            ),
      );
    }
  }
  if (fp?.backToBack !== undefined) {
    const b = fp.backToBack;
    rows.push(
      valueRow(
        "Idle tree CPU after / before, 4 uplinks x 2 targets, fast",
        num(b.ratio),
        `back to back in one lab: ${num(b.before.median, " %")} -> ${num(b.after.median, " %")} (medians); daemon ${num(b.daemonBefore.median, " %")} -> ${num(b.daemonAfter.median, " %")}; RSS ${num(b.rssBefore.median, " MB")} -> ${num(b.rssAfter.median, " MB")}`,
        String(b.after.n),
      ),
    );
  }
  const ct = data(doc, "conntrack") as ConntrackResults | undefined;
  for (const r of ct?.sizes ?? []) {
    rows.push(
      valueRow(
        `Daemon + children CPU, ${thousands(r.entries)} conntrack entries, stream + /status 2/s`,
        num(r.treeCpuPct, " %"),
        `x${num(r.cpuRatio)} of the empty table (aim <= 1.2); daemon alone ${num(r.daemonCpuPct, " %")}; ` +
          `tree RSS ${num(r.treeRssMb.median, " MB")}; over ${r.seconds} s`,
      ),
    );
  }
  for (const r of ct?.sizes ?? []) {
    rows.push(
      spreadRow(
        `/status answer time, ${thousands(r.entries)} conntrack entries`,
        r.statusMs,
        " ms",
        r.entries >= 250_000 ? "aim <= 20 ms" : "",
      ),
    );
  }
  for (const f of ct?.failover ?? []) {
    rows.push(
      spreadRow(
        `Failover, blackhole, uplinkd fast, ${thousands(f.entries)} conntrack entries`,
        f.set.failover,
        " ms",
        failed(f.set),
      ),
    );
  }
  if (ct?.cleanup !== undefined && ct.cleanup !== null) {
    rows.push(
      spreadRow(
        `Conntrack clean-up of one uplink, ${thousands(ct.cleanup.uplinkEntries)} of ${thousands(ct.cleanup.entries)} entries`,
        ct.cleanup.ms,
        " ms",
        `conntrack -D -f ipv4 -m MARK/MASK; deleted ${ct.cleanup.deleted.join(", ")}`,
      ),
    );
  }
  const load = data(doc, "load") as LoadResults | undefined;
  for (const m of load?.modes ?? []) {
    rows.push(
      spreadRow(
        `Mixed bulk workload over 10 + 40 Mbit/s, ${m.mode}: completion time`,
        m.completion,
        " ms",
        `goodput ${num(m.goodputMbit, " Mbit/s")} (${num(m.ofCapacityPct, " %")} of 50); ${m.failed} failed`,
      ),
    );
  }
  const ha = data(doc, "ha") as HaResults | undefined;
  if (ha !== undefined) {
    rows.push(
      spreadRow(
        `HA pair: master dies -> new LAN connections succeed again (VRRP adverts ${ha.advertMs} ms)`,
        ha.takeoverMs,
        " ms",
        `${ha.trials.reduce((s, t) => s + t.failed, 0)} probe connections failed in all`,
      ),
      valueRow(
        "HA pair: long-lived connections surviving the takeover",
        num(ha.survivedPct, " %"),
        `${ha.trials.reduce((s, t) => s + t.survived, 0)} of ${ha.trials.reduce((s, t) => s + t.held, 0)}, same uplink and address`,
        String(ha.trials.length),
      ),
    );
    if (ha.sync !== null) {
      rows.push(
        valueRow(
          `HA pair: sync link traffic for ${thousands(ha.sync.entries)} new connections`,
          `${num(Math.round(ha.sync.txBytes / 1024))} KiB`,
          `${num(Math.round((ha.sync.txBytes / ha.sync.entries) * 10) / 10)} B each; acks back ${num(Math.round(ha.sync.rxBytes / 1024))} KiB; ` +
            `in ${num(ha.sync.ms, " ms")}; bulk send ${num(Math.round(ha.sync.bulkTxBytes / 1024))} KiB`,
        ),
      );
    }
  }
  const takeover = data(doc, "ha-takeover") as HaTakeoverResults | undefined;
  for (const r of takeover?.rows ?? []) {
    // A trial whose probe saw no failed connection measures 0 ms: say how many there were.
    const trials = takeover?.runs.find((run) => run.advertMs === r.advertMs)?.trials ?? [];
    const clean = trials.filter((t) => t.families[r.family]?.takeoverMs === 0).length;
    rows.push(
      spreadRow(
        `HA pair, dual-stack: master dies -> new IPv${r.family} connections succeed again (VRRP adverts ${r.advertMs} ms)`,
        r.takeoverMs,
        " ms",
        (clean > 0 ? `${clean} of ${trials.length} trials: no probe connection failed; ` : "") +
          `flows kept ${num(r.keptPct, " %")} (${r.kept} of ${r.held}); ${r.failed} probe connections failed; commit path ${num(r.commitMs.median, " ms")}`,
      ),
    );
  }
  const vm = data(doc, "vm") as VmResults | undefined;
  if (vm !== undefined) {
    for (const b of vm.boots) {
      rows.push(
        spreadRow(
          `VM (${vm.accel.toUpperCase()}, Debian's Linux ${b.kernel}): boot, run \`true\`, power off`,
          b.ms,
          " ms",
          "scripts/vm.sh wall time",
        ),
      );
    }
    rows.push(
      spreadRow(
        "VM, Linux 6.1: PPPoE session dropped by the ISP -> uplink up from its new address",
        vm.pppoeReconnectMs,
        " ms",
        "lab health profile (500 ms probes under emulation); pppd redials after 1 s",
      ),
    );
    const host = fo?.sets.find((s) => s.profile === FAST.name && s.fault === "blackhole");
    for (const { kernel, set } of vm.failover ?? []) {
      const notes = [
        `detected ${num(set.detect.median, " ms")}, recovery ${num(set.recovery.median, " ms")} (medians)`,
        `host kernel (part failover): ${host === undefined ? "not measured" : num(host.failover.median, " ms")}`,
        failed(set),
      ];
      rows.push(
        spreadRow(
          `VM (${vm.accel.toUpperCase()}, Debian's Linux ${kernel}): failover, blackhole, uplinkd fast`,
          set.failover,
          " ms",
          notes.filter(Boolean).join("; "),
        ),
      );
    }
  }
  for (const [name, p] of Object.entries(doc.parts)) {
    if (p?.status === "error") rows.push(valueRow(`Part ${name}`, "FAILED", p.error ?? ""));
  }
  rows.push(...subsecondRows(data(doc, "subsecond") as SubsecondResults | undefined));
  return rows;
}

function table(rows: readonly Row[], markdown: boolean): string {
  const head: Row = {
    figure: "figure",
    median: "median",
    p90: "p90",
    max: "max",
    n: "n",
    note: "notes",
  };
  const all = [head, ...rows];
  const keys = ["figure", "median", "p90", "max", "n", "note"] as const;
  if (markdown) {
    const esc = (s: string) => s.replace(/\|/g, "\\|");
    const line = (r: Row) => `| ${keys.map((k) => esc(r[k])).join(" | ")} |`;
    return [
      line(head),
      `|${keys.map((k) => (k === "figure" || k === "note" ? "---" : "---:")).join("|")}|`,
      ...rows.map(line),
    ].join("\n");
  }
  const width = Object.fromEntries(
    keys.map((k) => [k, Math.max(...all.map((r) => r[k].length))]),
  ) as Record<(typeof keys)[number], number>;
  const line = (r: Row) =>
    keys
      .map((k) =>
        k === "note" ? r[k] : k === "figure" ? r[k].padEnd(width[k]) : r[k].padStart(width[k]),
      )
      .join("  ")
      .trimEnd();
  return all.map(line).join("\n");
}

/** The summary as a plain-text table for the console. */
export function renderTable(doc: Results): string {
  return table(summaryRows(doc), false);
}

/** The header's list of parts measured later (`--merge`), each with its date and machine; [] when none. */
function mergedLines(doc: Results): string[] {
  const merged = Object.entries(doc.parts).flatMap(([name, p]) =>
    p?.merged === undefined ? [] : [{ name, ...p.merged }],
  );
  if (merged.length === 0) return [];
  return [
    "Parts measured later, each in a run of its own (`--only PART`), which replaced that part of the run above:",
    "",
    ...merged.map(
      (m) =>
        `- ${m.name}: ${m.startedAt.slice(0, 10)}; ` +
        [m.machine === undefined ? "" : machineLine(m.machine), m.note ?? ""]
          .filter(Boolean)
          .join("; ") +
        ".",
    ),
    "",
  ];
}

function machineLine(m: Machine): string {
  return (
    `Linux ${m.kernel}, ${m.cpus} CPUs (${m.cpuModel}), ${Math.round(m.memoryMb / 1024)} GiB; ` +
    `Node ${m.node}; ${m.nft}; ${m.iproute2}; ${m.lsm}; commit ${m.commit}${m.dirty ? " with uncommitted changes" : ""}`
  );
}

function trialTable(sets: readonly TrialSet[]): string {
  const lines = [
    "| monitor | settings | fault | failover median / p90 / max (ms) | detected (median, ms) | recovery median / p90 / max (ms) | n |",
    "|---|---|---|---:|---:|---:|---:|",
  ];
  for (const s of sets) {
    const f = `${num(s.failover.median)} / ${num(s.failover.p90)} / ${num(s.failover.max)}`;
    const r =
      s.recovery.n === 0
        ? "not measured"
        : `${num(s.recovery.median)} / ${num(s.recovery.p90)} / ${num(s.recovery.max)} (n=${s.recovery.n})`;
    lines.push(
      `| ${s.monitor} ${s.profile} | ${s.settings} | ${s.fault} | ${f} | ${num(s.detect.median)} | ${r} | ${s.failover.n} |`,
    );
  }
  return lines.join("\n");
}

/** uplinkd / baseline of each pair of consecutive runs. */
function pairRatios(tp: ThroughputResults): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < tp.runs.length; i += 2) {
    const pair = tp.runs.slice(i, i + 2);
    const u = pair.find((r) => r.setup === "uplinkd");
    const b = pair.find((r) => r.setup === "baseline");
    if (u !== undefined && b !== undefined) out.push(num(ratio(u.bps, b.bps, 2)));
  }
  return out;
}

/** RESULTS.md. */
export function renderMarkdown(doc: Results): string {
  const out: string[] = [];
  const m = doc.machine;
  out.push(
    "# uplinkd benchmark results",
    "",
    `Produced by \`npm run bench\`${doc.mode === "quick" ? " --quick (smoke run: few trials, short soaks, parts overlapped)" : " (full run)"}, ` +
      `${doc.startedAt.slice(0, 10)}, in ${Math.round(doc.durationS / 60)} min. ` +
      "Every figure comes from labs of network namespaces on one machine (veth links, no real ISP); " +
      "comparisons are ratios measured in the same run. Medians with p90 and max; raw trials are in `results.json`.",
    "",
    `Machine: ${machineLine(m)}.`,
    "",
    ...mergedLines(doc),
    "## Summary",
    "",
    table(summaryRows(doc), true),
    "",
  );
  const fo = data(doc, "failover") as FailoverResults | undefined;
  const lsm = data(doc, "lsm") as LsmResults | undefined;
  out.push(
    "## 1, 2, 4. Failover and recovery (uplinkd and lsm)",
    "",
    "Two uplinks of equal weight. The LAN client opens a new TCP connection to the echo host every " +
      `${fo?.probe.intervalMs ?? 20} ms (lab traffic tool, \`probe\` mode); one that has not answered after ` +
      `${fo?.probe.timeoutMs ?? 1000} ms is a failure. A fault is injected into one uplink's ISP with one command ` +
      "(blackhole beyond the gateway: the ISP forwards nothing but its gateway still answers; carrier: the ISP's " +
      "side of the link goes down). The faulted uplink alternates.",
    "",
    "- **Failover**: fault -> start of the first new connection after which every new connection succeeded " +
      `(checked for ${(fo?.probe.settleMs ?? 1500) / 1000} s after the last failure). Resolution: the probe interval.`,
    "- **Detected**: fault -> the monitor declared the uplink down (uplinkd's `/events`; lsm: its event script " +
      "had replaced the route).",
    "- **Recovery**: fault healed -> start of the first new connection that went through the healed uplink " +
      "(by the source address the echo host saw).",
    "- uplinkd is restarted every 4 trials, so no uplink goes down a third time within flap damping's period " +
      "(3 downs in 5 min hold an uplink down for 60 s): recovery is that of a first or second outage.",
    "- lsm runs on a router set up by hand as a Shorewall-style multi-ISP router would be: per-uplink routing " +
      "tables and source rules, masquerade, a multipath default route (layer-4 hashing) that the event script " +
      "(`bench/lsm-event.sh`) rebuilds without the dead uplink; on down the script also deletes the uplink's " +
      "conntrack entries, as uplinkd does (without that, a client that reuses the port of a failed attempt still " +
      "held in conntrack keeps the dead uplink's NAT: failures went on for seconds after the route change in a " +
      "trial run). lsm keeps its default detection settings; a fresh " +
      "lsm is started for every trial. lsm brings an uplink back only when at most 5 of its last 100 pings were " +
      "lost, so its recovery takes ~100 s; it is measured in a few trials only.",
    "- What to expect: for a blackhole uplinkd needs `down` failed rounds in a row, the first failing up to one " +
      "interval after the fault and each failing at its timeout: (down - 1) x interval + timeout + up to one " +
      "interval, i.e. 2.0-2.5 s with the defaults and 0.9-1.1 s with the fast profile. Carrier loss is seen from " +
      "the kernel's link state, whatever the profile. Recovery takes `up` good rounds (2.5 s, 1 s). lsm needs 7 " +
      "lost pings in a row at one per second, decided on a one-second tick: 7-9 s.",
    "",
  );
  if (fo !== undefined || lsm !== undefined) {
    out.push(trialTable([...(fo?.sets ?? []), ...(lsm?.sets ?? [])]), "");
  }
  if (lsm !== undefined) out.push(`lsm: ${lsm.version}; ${lsm.settings}.`, "");

  const soak = data(doc, "soak") as SoakResults | undefined;
  out.push(
    "## 3. False failovers under random loss",
    "",
    "Every uplink of a two-uplink lab loses 5 % or 10 % of packets (round trip, random) for " +
      `${soak === undefined ? "10" : Math.round(soak.durationS / 60)} minutes and nothing else is wrong, so every ` +
      "transition is a false alarm. Six labs side by side: uplinkd (defaults, fast) and lsm (defaults) at each rate. " +
      "**down**: the uplink was taken out of service (new connections leave it); **degraded**: uplinkd judged its " +
      "quality bad (loss >= 20 % or RTT over half the timeout over its probe window); a policy avoids a degraded uplink " +
      "while another is up. Time shares are of uplink-time (uplinks x duration).",
    "",
  );
  if (soak !== undefined) {
    out.push(
      "| monitor | loss | down | degraded | time down | time degraded | loss uplinkd measured at the end (its last probe window) |",
      "|---|---:|---:|---:|---:|---:|---|",
    );
    for (const r of soak.results) {
      const who = `${r.monitor} ${r.profile}`;
      out.push(
        r.error === undefined
          ? `| ${who} | ${r.lossPct} % | ${r.downs} | ${r.degraded} | ${r.downTimePct} % | ${r.degradedTimePct} % | ${r.measuredLossPct.map((l) => num(l, " %")).join(", ")} |`
          : `| ${who} | ${r.lossPct} % | error: ${r.error} | | | | |`,
      );
    }
    out.push("");
  }

  const apply = data(doc, "apply") as ApplyResults | undefined;
  out.push(
    "## 5. Apply latency",
    "",
    "`bench/apply-latency.ts` runs the built dataplane in the lab router's namespace against the real kernel and " +
      "times what the daemon does on a health transition: render the maps, replace the changed map elements (one " +
      "small `nft -f`), delete the uplink's conntrack entries (on down; `conntrack -D` scans the whole table, filled " +
      "here by a few thousand recent LAN connections), then render routes and rules and, only when they differ " +
      "from the last ones applied (the main table's default route moved), read the kernel's and apply the " +
      "difference. " +
      "Detection is not included (see failover). **Full apply**: from nothing, render and apply the whole state " +
      "(plan, one `nft -f` of the table, `ip -batch`, re-read and verify).",
    "",
  );
  if (apply !== undefined) {
    out.push(
      "| uplinks | down: maps replaced (ms) | down: conntrack -D (ms) | down: total (ms) | up: total (ms) | full: render (ms) | full: apply (ms) | conntrack entries |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    const sp = (s: Spread) => `${num(s.median)} / ${num(s.p90)} / ${num(s.max)}`;
    for (const s of apply.sizes) {
      out.push(
        `| ${s.uplinks} | ${sp(s.downMaps)} | ${sp(s.downConntrack)} | ${sp(s.down)} | ${sp(s.up)} | ${sp(s.render)} | ${sp(s.full)} | ${s.conntrackEntries} |`,
      );
    }
    out.push("", "Cells are median / p90 / max.", "");
    if (apply.rules !== null) {
      out.push(
        `Full apply of a config with ${apply.rules.rules} steering rules and 32 uplinks (60 % destination prefixes, ` +
          "20 % destination port + prefix, 10 % LAN sources, 5 % named sets, 3 % DSCP, 2 % sticky; five policies): " +
          `render + apply median ${num(apply.rules.fullTotal.median)} ms, p90 ${num(apply.rules.fullTotal.p90)} ms, ` +
          `max ${num(apply.rules.fullTotal.max)} ms (render ${sp(apply.rules.render)} ms, apply ${sp(apply.rules.full)} ms; ` +
          `nft script ${apply.rules.nftBytes} bytes).`,
        "",
      );
    } else if (apply.rulesNote !== undefined) {
      out.push(apply.rulesNote, "");
    }
  }

  const bal = data(doc, "balance") as BalanceResults | undefined;
  out.push(
    "## 6. Balance accuracy",
    "",
    "New TCP connections from the LAN client through four uplinks weighted 1:2:3:4 (daemon running, lab config); " +
      "each uplink's share by the source address the echo host saw. Random per-connection choice gives each share a " +
      "standard deviation (sd) of sqrt(p(1-p)/n); the chi-square p-value is the chance of deviations this large from " +
      "weighted random choice alone.",
    "",
  );
  if (bal !== undefined) {
    out.push(
      "| uplink | weight | expected | measured | difference | sd |",
      "|---|---:|---:|---:|---:|---:|",
    );
    for (const s of bal.shares) {
      out.push(
        `| ${s.uplink} | ${s.weight} | ${s.expectedPct} % | ${s.measuredPct} % | ${s.diffPoints} points | ${s.sdPoints} points |`,
      );
    }
    out.push(
      "",
      `${bal.ok} of ${bal.connections} connections succeeded (${bal.failed} failed); ${bal.inconsistent} changed uplink ` +
        `between their two questions; chi-square ${bal.chiSquare}, p = ${bal.pValue}.`,
      "",
    );
  }

  const tp = data(doc, "throughput") as ThroughputResults | undefined;
  out.push(
    "## 7. Dataplane overhead",
    "",
    "iperf3 from the LAN client to 192.0.2.10 (8 parallel streams) through the router, with uplinkd running, " +
      "against the same lab with a static multipath default route (layer-4 hashing) and masquerade only. " +
      "Runs alternate; the figure is the ratio of medians. The links are veth pairs without rate limits, so the " +
      "router's CPU (shared with everything else on the machine) is the bottleneck.",
    "",
  );
  if (tp !== undefined) {
    out.push(
      `uplinkd ${num(tp.uplinkd.median)} Gbit/s (max ${num(tp.uplinkd.max)}), baseline ${num(tp.baseline.median)} Gbit/s ` +
        `(max ${num(tp.baseline.max)}), ratio ${num(tp.ratio)}; runs: ` +
        tp.runs.map((r) => `${r.setup} ${(r.bps / 1e9).toFixed(2)}`).join(", ") +
        ` Gbit/s (${tp.seconds} s each); uplinkd / baseline within each pair: ${pairRatios(tp).join(", ")}.`,
      "",
    );
  }

  const v6 = data(doc, "ipv6") as Ipv6Results | undefined;
  if (v6 !== undefined) {
    out.push(
      "## 7b. IPv6",
      "",
      "The same measurements with the LAN client's IPv6 connections to [2001:db8:ffff::10] (the echo host's answer " +
        "names the source it saw; each source is counted for the uplink whose address space it is in). " +
        "**Failover**: the ISP drops IPv6 beyond the gateway and passes IPv4 (`blackhole6`), fast profile, " +
        "the faulted uplink alternating; detected = the daemon's IPv6 down transition. " +
        "**Balance**: new IPv6 connections over weights 1:2:3:4. **Throughput**: iperf3 over IPv6 with uplinkd " +
        "against a plain route (the router's router-advertisement default routes, masquerade only).",
      "",
      trialTable([v6.failover]),
      "",
      `Balance: ${v6.balance.shares.map((s) => `${s.uplink} ${s.measuredPct} % (weight share ${s.expectedPct} %)`).join(", ")}; ` +
        `${v6.balance.ok} of ${v6.balance.connections} connections succeeded; ${v6.balance.inconsistent} changed uplink; ` +
        `chi-square ${v6.balance.chiSquare}, p = ${v6.balance.pValue}.`,
      "",
      `Throughput: uplinkd ${num(v6.throughput.uplinkd.median)} Gbit/s, plain route ${num(v6.throughput.baseline.median)} Gbit/s, ` +
        `ratio ${num(v6.throughput.ratio)}; runs: ` +
        v6.throughput.runs.map((r) => `${r.setup} ${(r.bps / 1e9).toFixed(2)}`).join(", ") +
        ` Gbit/s (${v6.throughput.seconds} s each).`,
      "",
    );
  }

  const fp = data(doc, "footprint") as FootprintResults | undefined;
  out.push(
    "## 8. Footprint",
    "",
    "The daemon (built, `node dist/cli.js run`) probing, otherwise idle (no LAN traffic, no status requests, no " +
      "dashboard). RSS: VmRSS of /proc/PID/status sampled every second; CPU: utime + stime of /proc/PID/stat in " +
      "clock ticks, as % of one core, per window (median of the windows where given). Children (`ping` per uplink " +
      "and target, `ip monitor`, the long-lived `ip -batch` and `nft -i` readers, `conntrack -E`) are counted " +
      "separately; their memory is the sum of their PSS. **Tree**: the daemon and every descendant, short-lived " +
      "ones included (utime + stime + cutime + cstime summed over the tree), and the sum of their VmRSS. " +
      "Profiles: `fast` = interval 200 ms, timeout 500 ms; `sub-second` = interval 50 ms, timeout auto.",
    "",
  );
  if (fp?.run !== undefined) {
    out.push(`Measured ${fp.run.startedAt} (${fp.run.mode} mode): ${fp.run.note}.`, "");
  }
  if (fp !== undefined) {
    out.push(
      "| profile | uplinks x targets | RSS median / max (MB) | peak RSS (MB) | CPU | children | their PSS | their CPU | tree CPU | tree RSS (MB) |",
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (const f of fp.runs) {
      const tree = (f as Partial<typeof f>).tree;
      const profile = `${f.profile ?? "fast"}${f.families === "both" ? " (IPv4 + IPv6)" : ""}`;
      out.push(
        `| ${profile} | ${f.uplinks} x ${f.targets} | ${num(f.rssMb.median)} / ${num(f.rssMb.max)} | ${num(f.peakRssMb)} | ${num(f.daemonWindows?.median ?? f.cpuPct, " %")} | ${childList(f)} | ${num(f.children.pssMb, " MB")} | ${num(f.children.cpuPct, " %")} | ${num(f.treeWindows?.median ?? tree?.cpuPct, " %")} | ${num(tree?.rssMb.median)} |`,
      );
    }
    out.push("");
    for (const failed of fp.failed ?? []) out.push(`Not measured: ${failed}.`, "");
    if (fp.backToBack !== undefined) {
      const b = fp.backToBack;
      out.push(
        `Back to back (4 uplinks x 2 IPv4 targets, fast; ${b.after.n} alternating runs of each build in one lab): ` +
          `tree CPU ${num(b.before.median, " %")} before, ${num(b.after.median, " %")} after (ratio ${num(b.ratio)}); ` +
          `daemon ${num(b.daemonBefore.median, " %")} -> ${num(b.daemonAfter.median, " %")}; ` +
          `daemon RSS ${num(b.rssBefore.median, " MB")} -> ${num(b.rssAfter.median, " MB")}. Before: \`${b.baseline}\`.`,
        "",
      );
    }
    for (const [which, profile] of [
      ["this build", fp.profile],
      ["the build before", fp.baselineProfile],
    ] as const) {
      if (profile === undefined) continue;
      out.push(
        `Profile of the idle daemon, ${which} (4 uplinks x 2 targets, fast, ${profile.seconds} s, \`node --cpu-prof\`): ` +
          `idle ${num(profile.idlePct, " %")} of the samples, GC ${num(profile.gcPct, " %")}. Top self time, % of the busy samples:`,
        "",
        "| self | function |",
        "|---:|---|",
        ...profile.top.map((t) => `| ${t.selfPct} % | \`${t.fn.replace(/\|/g, "\\|")}\` |`),
        "",
      );
    }
  }

  const load = data(doc, "load") as LoadResults | undefined;
  out.push(
    "## 9. Balancing by load",
    "",
    "Two uplinks limited to 10 and 40 Mbit/s at the ISPs (tbf), with those bandwidths in the config. The LAN " +
      "client runs the lab's bulk workload: HTTP downloads of 200 kB, 2 MB and 20 MB (70:25:5) arriving at random " +
      "(Poisson, 3.8/s, about 50 Mbit/s offered), the same seed for every mode. Goodput: bytes received over the " +
      "span from the first start to the last end; completion time: start to last byte of each transfer.",
    "",
  );
  if (load !== undefined) {
    out.push(
      `${load.durationS} s of arrivals per mode, seed ${load.seed}.`,
      "",
      "| mode | goodput (Mbit/s) | of 50 Mbit/s | completion median (ms) | p90 (ms) | transfers | failed | share isp1 / isp2 |",
      "|---|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (const m of load.modes) {
      out.push(
        `| ${m.mode} | ${num(m.goodputMbit)} | ${num(m.ofCapacityPct, " %")} | ${num(m.completion.median)} | ${num(m.completion.p90)} | ${m.transfers} | ${m.failed} | ${m.sharePct.isp1 ?? 0} / ${m.sharePct.isp2 ?? 0} % |`,
      );
    }
    out.push("");
  }

  const ct = data(doc, "conntrack") as ConntrackResults | undefined;
  out.push(
    "## 10. Large conntrack tables",
    "",
    "A busy office router holds 50,000-250,000 conntrack entries. The router of a two-uplink lab gets synthetic " +
      "entries (`conntrack -R`, TCP ESTABLISHED, half with each uplink's mark) and the daemon (fast profile) runs " +
      "with a dashboard event stream open (`/events/stream`) and `/status` asked twice a second. **CPU**: the daemon " +
      "and its whole process tree (short-lived children included, as in part 8's tree), as % of one core and as a " +
      "ratio to the empty table. **/status**: socket to parsed JSON. The daemon keeps connection counts from " +
      "conntrack events (`conntrack -E`) and dumps the table only at start, after lost events and every 30 min; " +
      "each window starts once it has counted the loaded table. **Failover**: blackhole, as in part 1, with the " +
      "failed uplink's entries loaded again before each trial (the daemon deletes them when it fails over). " +
      "**Clean-up**: `conntrack -D -f ipv4 -m MARK/MASK` as the daemon runs it, timed from outside, half the table " +
      "being that uplink's. `nf_conntrack_max` (262,144 here) is the host's and cannot be raised in a namespace.",
    "",
  );
  if (ct !== undefined) {
    out.push(
      "| entries | loaded in | tree CPU | x empty | daemon CPU | tree RSS (MB) | /status median / p90 / max (ms) | stream events | connections / table | recounts in window |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (const r of ct.sizes) {
      out.push(
        `| ${thousands(r.entries)} | ${num(r.fillMs, " ms")} | ${num(r.treeCpuPct, " %")} | ${num(r.cpuRatio)} | ${num(r.daemonCpuPct, " %")} | ${num(r.treeRssMb.median)} | ${num(r.statusMs.median)} / ${num(r.statusMs.p90)} / ${num(r.statusMs.max)} | ${r.streamEvents} | ${num(r.connections)} / ${r.tableSize} | ${r.recounts} |`,
      );
    }
    out.push("");
    if (ct.failover.length > 0) {
      out.push(
        trialTable(
          ct.failover.map((f) => ({
            ...f.set,
            profile: `${f.set.profile}, ${thousands(f.entries)} entries`,
          })),
        ),
        "",
      );
    }
    if (ct.cleanup !== null) {
      out.push(
        `Clean-up of one uplink: ${thousands(ct.cleanup.uplinkEntries)} of ${thousands(ct.cleanup.entries)} entries in ` +
          `${num(ct.cleanup.ms.median, " ms")} (median of ${ct.cleanup.ms.n}; max ${num(ct.cleanup.ms.max, " ms")}).`,
        "",
      );
    }
  }

  const ha = data(doc, "ha") as HaResults | undefined;
  out.push(
    "## 11. Redundant router pair",
    "",
    "`uplinkd lab up --ha`: two routers sharing the LAN and both ISP segments (bridges), keepalived with " +
      `VRRPv3 adverts every ${ha?.advertMs ?? 100} ms, conntrackd FTFW over a dedicated link, uplinkd in each. Per trial six ` +
      "long-lived LAN connections (an answer every 100 ms) and a probe opening a connection every 20 ms run " +
      "while the master dies: its switch ports and sync link are cut, then its processes killed. **Takeover**: " +
      "cut to new connections succeeding again for good (as part 1's failover, but a probe connection fails " +
      `after ${TAKEOVER_PROBE_TIMEOUT_MS} ms, below TCP's first SYN retransmission at 1 s). **Surviving**: long-lived ` +
      "connections answering again after the cut (within 10 s), never reset, always from the same address. The old master returns (its " +
      "virtual addresses and conntrack table gone, as after a reboot) and takes over again before the next " +
      "trial. **Sync traffic**: 10,000 synthetic ESTABLISHED entries loaded into the master's table; bytes on " +
      "the sync link until the backup's external cache holds them all, and for one bulk send (`conntrackd -B`).",
    "",
  );
  if (ha !== undefined) {
    out.push(
      "| trial | takeover (ms) | probe failures | surviving | reset |",
      "|---:|---:|---:|---:|---:|",
    );
    ha.trials.forEach((t, i) => {
      out.push(
        `| ${i + 1} | ${num(t.takeoverMs)} | ${t.failed} | ${t.survived} / ${t.held}${t.error === undefined ? "" : ` (${t.error})`} | ${t.broken} |`,
      );
    });
    out.push("");
  }

  const takeover = data(doc, "ha-takeover") as HaTakeoverResults | undefined;
  out.push(
    "## 12. Redundant router pair, dual-stack: takeover by advert interval",
    "",
    "The dual-stack pair of `uplinkd lab up --ha` (IPv6 masqueraded to the uplink's virtual address, or " +
      "translated into its `prefix6` on isp1; radvd on the master only), built once per VRRP advert interval: " +
      "1 s (keepalived's default), 200 ms and 100 ms. Per trial 30 long-lived flows, 15 IPv4 and 15 IPv6 " +
      "(an answer every 100 ms each), and a probe of each family opening a connection every 20 ms run while " +
      "the master dies as in part 11. **Takeover**: per family, the cut to new connections succeeding again " +
      "for good. **Kept**: flows answering again after the cut (within 10 s), never reset, always from the " +
      "same address. **Commit path**: the new master's notify script, conntrackd's commit to its bulk send. " +
      "Full runs only.",
    "",
  );
  if (takeover !== undefined) {
    out.push(
      "| adverts | family | takeover median (ms) | p90 | max | trials | flows kept | probe failures | commit path median (ms) |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (const r of takeover.rows) {
      out.push(
        `| ${r.advertMs} ms | IPv${r.family} | ${num(r.takeoverMs.median)} | ${num(r.takeoverMs.p90)} | ${num(r.takeoverMs.max)} | ${r.takeoverMs.n} | ${r.kept} / ${r.held} | ${r.failed} | ${num(r.commitMs.median)} |`,
      );
    }
    const errors = takeover.runs.flatMap((run) =>
      run.trials.flatMap((t, i) =>
        t.error === undefined ? [] : [`${run.advertMs} ms, trial ${i + 1}: ${t.error}`],
      ),
    );
    if (errors.length > 0) out.push("", ...errors.map((e) => `- ${e}`));
    out.push("");
  }

  const errors = Object.entries(doc.parts).filter(([, p]) => p?.status === "error");
  if (errors.length > 0) {
    out.push("## Errors", "");
    for (const [name, p] of errors) out.push(`- ${name}: ${p?.error ?? "?"}`);
    out.push("");
  }
  out.push(
    "## Running it",
    "",
    "`npm run bench` (root: network namespaces; `lsm` from scripts/setup.sh) writes this file and `results.json`; " +
      "`npm run bench -- --quick` is a smoke run into `bench/quick/`; `--only PART,...` runs some parts. " +
      `Part durations in this run: ${Object.entries(doc.parts)
        .map(([name, p]) => `${name} ${p?.durationS ?? 0} s`)
        .join(", ")}.`,
    "",
  );
  out.push(...subsecondSection(data(doc, "subsecond") as SubsecondResults | undefined));
  return out.join("\n");
}

/** Summary rows of the sub-second part (none when it did not run). */
function subsecondRows(ss: SubsecondResults | undefined): Row[] {
  if (ss === undefined) return [];
  const perUplink = (r: Record<string, number>): string =>
    Object.entries(r)
      .map(([u, n]) => `${u} ${n}`)
      .join(", ");
  return [
    spreadRow(
      "Failover after a blackhole, sub-second profile (50 ms, auto, 3)",
      ss.failover.failover,
      " ms",
      `detect ${num(ss.failover.detect.median, " ms")} (median)`,
    ),
    spreadRow(
      "Blackhole detected, sub-second profile, no LAN traffic",
      ss.quiet.detect,
      " ms",
      "fault -> the daemon's down event",
    ),
    valueRow(
      "False failovers, sub-second profile: 5 % loss (isp1), 60 ± 20 ms (isp2)",
      perUplink(ss.soak.downs),
      `${ss.soak.durationS} s; degraded ${perUplink(ss.soak.degraded)}${ss.soak.error === undefined ? "" : `; error: ${ss.soak.error}`}`,
    ),
    valueRow(
      `Time to degraded, RTT ${ss.degraded.delayMs} ms over rtt_fail ${ss.degraded.rttFailMs} ms`,
      num(ss.degraded.degradedMs, " ms"),
      `back up ${num(ss.degraded.upMs, " ms")} after the heal (rtt_recover ${ss.degraded.rttRecoverMs} ms)${ss.degraded.wentDown ? "; WENT DOWN" : ""}`,
    ),
    valueRow(
      `Probe packets/s per uplink and daemon CPU, sub-second profile, ${ss.cost.uplinks} uplinks x ${ss.cost.targets} targets (both families)`,
      ss.cost.packetsPerSecond.map((p) => num(p)).join(", "),
      `daemon CPU ${num(ss.cost.cpuPct, " %")}, with its ping children ${num(ss.cost.treeCpuPct, " %")} of one core over ${ss.cost.seconds} s`,
    ),
  ];
}

/** The sub-second part's section of RESULTS.md (empty when it did not run). */
function subsecondSection(ss: SubsecondResults | undefined): string[] {
  if (ss === undefined) return [];
  const out = [
    "## Sub-second profile",
    "",
    `Profile: ${ss.profile} (\`timeout: auto\`: RFC 6298 RTO per target between 50 ms and 1 s; the loss-aware ` +
      "down count at its default). Failover: the trial of parts 1 and 2 on a two-uplink lab (blackhole). False " +
      "failovers: 5 % random loss on isp1 and 60 ± 20 ms delay (the lab's delay line) on isp2 at once; every down " +
      "is a false alarm. Time to degraded: `delay=80ms` on isp1 with `rtt_fail: 40ms`, `rtt_recover: 20ms`. Cost: " +
      "echo requests per second through each ISP (its `up` counter) at 4 uplinks, and the daemon's CPU.",
    "",
    "| trial | uplink | failover (ms) | detect (ms) | recovery (ms) |",
    "|---:|---|---:|---:|---:|",
  ];
  ss.failover.trials.forEach((t, i) => {
    out.push(
      `| ${i + 1} | ${t.uplink} | ${num(t.failoverMs)} | ${num(t.detectMs)} | ${num(t.recoveryMs)} |`,
    );
  });
  out.push("");
  return out;
}

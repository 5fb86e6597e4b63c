/**
 * uplinkd's benchmark: builds its own labs, measures, prints a table and
 * writes RESULTS.md and results.json.
 *
 *     npm run bench                      # full run (~25 min): bench/RESULTS.md, bench/results.json
 *     npm run bench -- --quick           # smoke run (< 7 min): bench/quick/
 *     tsx bench/run.ts --only failover,balance --out /tmp/b
 *
 * Options: `--quick`; `--out DIR` (default bench/, or bench/quick/ with
 * --quick); `--only PART,...` (failover, lsm, soak, apply, balance,
 * throughput, ipv6, footprint, load, conntrack, subsecond, ha, ha-takeover, vm); `--render FILE`: only rewrite RESULTS.md next to
 * the results.json FILE; `--baseline DIR`: the footprint part also runs the
 * `dist/` in DIR (another build, with its `node_modules` beside it) back to
 * back with this one; `--footprint-sizes 8,16`: the footprint part's uplink
 * counts (default 2,4,8,16; 4 with --quick, fast profile only); `--takeover-trials N`:
 * trials per advert interval of the ha-takeover part (default 10); `--merge` (with
 * `--only`): the parts run replace those of the record in DIR/results.json
 * (the rest stays, and RESULTS.md names each replaced part's date and
 * machine). Needs root (network namespaces) and a build.
 *
 * Every part runs in labs of its own (prefix `b<part><run id>`), removed at
 * the end, on error and on SIGINT/SIGTERM. A part that fails is recorded
 * with its error and the run goes on. Sensitive parts (failover timing,
 * apply latency, balance, throughput, footprint, large conntrack tables)
 * run one after another;
 * the long, seconds-scale ones (the loss soaks and the lsm comparison) run
 * alongside each other afterwards. With --quick everything overlaps.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { BenchContext, errorText } from "./context.js";
import { applyPart } from "./apply.js";
import { balancePart } from "./balance.js";
import { conntrackPart } from "./conntrack.js";
import { failoverPart } from "./failover.js";
import { footprintPart } from "./footprint.js";
import { lsmPart } from "./lsm.js";
import {
  machineInfo,
  renderMarkdown,
  renderTable,
  type PartResult,
  type Results,
} from "./report.js";
import { soakPart } from "./soak.js";
import { throughputPart } from "./throughput.js";
import { loadPart } from "./load.js";
import { subsecondPart } from "./subsecond.js";
import { haPart, haTakeoverPart } from "./ha.js";
import { ipv6Part } from "./ipv6.js";
import { vmPart } from "./vm.js";

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

/** Every part, in the order of the report. */
export const PARTS = [
  "failover",
  "lsm",
  "soak",
  "apply",
  "balance",
  "throughput",
  "ipv6",
  "footprint",
  "load",
  "conntrack",
  "subsecond",
  "ha",
  "ha-takeover",
  "vm",
] as const;
export type PartName = (typeof PARTS)[number];

/** `text` formatted as the project's prettier would (unchanged when prettier is not installed). */
async function formatted(text: string, parser: "json" | "markdown", file: string): Promise<string> {
  try {
    const prettier = await import("prettier");
    const options = (await prettier.resolveConfig(file)) ?? {};
    return await prettier.format(text, { ...options, parser });
  } catch {
    return text;
  }
}

async function runPart(
  ctx: BenchContext,
  name: PartName,
  fn: () => Promise<unknown>,
  results: Partial<Record<PartName, PartResult>>,
): Promise<void> {
  const started = Date.now();
  ctx.log(name, "start");
  try {
    const data = await fn();
    results[name] = { status: "ok", durationS: Math.round((Date.now() - started) / 1000), data };
    ctx.log(name, `done in ${Math.round((Date.now() - started) / 1000)} s`);
  } catch (error) {
    results[name] = {
      status: "error",
      durationS: Math.round((Date.now() - started) / 1000),
      error: errorText(error),
    };
    ctx.log(name, `FAILED: ${errorText(error)}`);
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      out: { type: "string" },
      only: { type: "string" },
      render: { type: "string" },
      baseline: { type: "string" },
      "footprint-sizes": { type: "string" },
      "takeover-trials": { type: "string" },
      merge: { type: "boolean", default: false },
    },
  });
  if (values.render !== undefined) {
    // Re-render RESULTS.md from a results.json (after a change to the report's text).
    const json = resolve(values.render);
    const doc = JSON.parse(await readFile(json, "utf8")) as Results;
    const markdown = join(dirname(json), "RESULTS.md");
    await writeFile(markdown, await formatted(renderMarkdown(doc), "markdown", markdown));
    process.stdout.write(`${renderTable(doc)}\n`);
    return 0;
  }
  const quick = values.quick;
  const outDir = resolve(values.out ?? (quick ? join(BENCH_DIR, "quick") : BENCH_DIR));
  const only = new Set(
    (values.only ?? PARTS.join(","))
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  );
  for (const name of only) {
    if (!(PARTS as readonly string[]).includes(name)) {
      throw new Error(`unknown part ${name}: use ${PARTS.join(", ")}`);
    }
  }
  if (values.merge && values.only === undefined) {
    throw new Error("--merge needs --only: it replaces those parts of the record");
  }
  // Read first: a run that cannot merge should fail before it measures.
  const record = values.merge
    ? (JSON.parse(await readFile(join(outDir, "results.json"), "utf8")) as Results)
    : undefined;
  if (process.getuid?.() !== 0) throw new Error("the benchmark needs root (network namespaces)");
  const ctx = new BenchContext(quick);
  const onSignal = (signal: NodeJS.Signals): void => {
    if (ctx.aborted) return;
    ctx.aborted = true;
    ctx.log("bench", `${signal}: removing labs`);
    void ctx.teardown().finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const startedAt = new Date();
  ctx.log("bench", `${quick ? "quick" : "full"} run, results to ${outDir}`);
  const results: Partial<Record<PartName, PartResult>> = {};
  const part = (name: PartName, fn: () => Promise<unknown>): Promise<void> =>
    only.has(name) ? runPart(ctx, name, fn, results) : Promise.resolve();

  const trials = quick ? 3 : 10;
  const sensitive = async (): Promise<void> => {
    await part("failover", () => failoverPart(ctx, trials));
    await part("apply", () => applyPart(ctx));
    await part("balance", () => balancePart(ctx));
    await part("throughput", () => throughputPart(ctx));
    await part("ipv6", () => ipv6Part(ctx, trials));
    await part("footprint", () =>
      footprintPart(
        ctx,
        values.baseline === undefined ? undefined : resolve(values.baseline),
        values["footprint-sizes"]?.split(",").map(Number),
      ),
    );
    await part("load", () => loadPart(ctx));
    if (!quick) await part("conntrack", () => conntrackPart(ctx, 6));
    if (!quick) await part("subsecond", () => subsecondPart(ctx, trials));
    // Each takeover trial takes ~12 s (the old master returns in between).
    if (!quick) await part("ha", () => haPart(ctx, 10));
    // The dual-stack pair's takeover at 1 s, 200 ms and 100 ms adverts (~25 s a trial): full runs only.
    if (!quick)
      await part("ha-takeover", () =>
        haTakeoverPart(ctx, Number(values["takeover-trials"] ?? trials)),
      );
    // Minutes of emulation: full runs and --only vm.
    if (!quick) await part("vm", () => vmPart(ctx));
  };
  const long = (): Promise<unknown> =>
    Promise.all([
      part("soak", () => soakPart(ctx)),
      part("lsm", () => lsmPart(ctx, quick ? 1 : trials, quick ? 0 : 3)),
      // A smoke run of the large-table part (small tables) beside the soaks.
      quick ? part("conntrack", () => conntrackPart(ctx, 2)) : Promise.resolve(),
      // Quick: the sub-second profile beside the soaks (its own 1-minute soak included).
      quick ? part("subsecond", () => subsecondPart(ctx, trials)) : Promise.resolve(),
      // The HA pair (5 takeovers, ~70 s) beside the soaks, so the quick run stays short.
      quick ? part("ha", () => haPart(ctx, 5)) : Promise.resolve(),
    ]);
  try {
    if (quick) await Promise.all([sensitive(), long()]);
    else {
      await sensitive();
      await long();
    }
  } finally {
    await ctx.teardown();
  }

  const finishedAt = new Date();
  const machine = await machineInfo();
  const doc: Results =
    record === undefined
      ? {
          version: 1,
          mode: quick ? "quick" : "full",
          startedAt: startedAt.toISOString(),
          finishedAt: finishedAt.toISOString(),
          durationS: Math.round((finishedAt.getTime() - startedAt.getTime()) / 1000),
          machine,
          prefixes: [...ctx.prefixes],
          parts: results,
        }
      : {
          ...record,
          parts: {
            ...record.parts,
            ...Object.fromEntries(
              Object.entries(results).map(([name, part]) => [
                name,
                { ...part, merged: { startedAt: startedAt.toISOString(), machine } },
              ]),
            ),
          },
        };
  await mkdir(outDir, { recursive: true });
  const json = join(outDir, "results.json");
  const markdown = join(outDir, "RESULTS.md");
  await writeFile(json, await formatted(JSON.stringify(doc, null, 2) + "\n", "json", json));
  await writeFile(markdown, await formatted(renderMarkdown(doc), "markdown", markdown));
  process.stdout.write(`\n${renderTable(doc)}\n`);
  ctx.log(
    "bench",
    `wrote ${join(outDir, "RESULTS.md")} and results.json; this run took ${Math.round((finishedAt.getTime() - startedAt.getTime()) / 1000)} s`,
  );
  return Object.values(results).some((r) => r.status === "error") ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`bench: ${errorText(error)}\n`);
    process.exitCode = 2;
  },
);

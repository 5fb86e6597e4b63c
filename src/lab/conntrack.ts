/**
 * Filling a lab node's conntrack table with synthetic entries, for tests
 * and the benchmark of large tables (a busy office router holds 50,000 to
 * 250,000 entries).
 *
 * Entries are loaded with conntrack-tools' `conntrack -R FILE` (`--load-file`,
 * 1.4.7: one `-I ...` command per line), one process for
 * the whole batch: 100,000 entries load in about 1.6 s on the lab machine,
 * where 100,000 `conntrack -I` processes would take minutes. Each entry is
 * a TCP connection in ESTABLISHED from 100.96.0.0/12 (a lab range no lab
 * node uses) to 198.51.100.200:80, with a chosen conntrack mark and a
 * timeout of an hour; source address and port make each tuple unique.
 *
 * The table's limit, `net.netfilter.nf_conntrack_max`, cannot be raised
 * inside a namespace on this kernel (6.18: writing it in a namespace other
 * than the host's fails with EINVAL; the host's value, 262,144 here, holds
 * for every namespace), so the fill checks the limit first and refuses
 * batches that do not fit rather than changing the host's settings.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LabError } from "./errors.js";
import { execIn } from "./netns.js";

/** Synthetic entries with one conntrack mark. */
export interface ConntrackFillGroup {
  /** The entries' conntrack mark (uplink i's fwmark for "connections on uplink i"). */
  mark: number;
  /** How many entries. */
  count: number;
}

/** Ports per source address: 1024..61023. */
const PORTS = 60_000;
/** Source addresses available: 100.96.0.0/12 from .0.1 on. */
const MAX_ENTRIES = PORTS * (16 * 65_536 - 2);

/**
 * The `conntrack -R` lines for `groups`, in order. Entry `offset + k`
 * (k counting across groups) gets source `100.96.0.0 + 1 + floor(n / 60000)`
 * and source port `1024 + n % 60000`, so batches with distinct, non-
 * overlapping offsets never collide. With `remove`, the lines delete those
 * same entries (`-D` and the tuple).
 *
 * @param options.offset index of the first entry (default 0).
 * @param options.timeoutS the entries' timeout, s (default 3600).
 * @throws {LabError} for a negative count or mark, or more entries than the range holds.
 */
export function conntrackFillLines(
  groups: readonly ConntrackFillGroup[],
  options: { offset?: number; timeoutS?: number; remove?: boolean } = {},
): string[] {
  const timeoutS = options.timeoutS ?? 3600;
  let n = options.offset ?? 0;
  const lines: string[] = [];
  for (const group of groups) {
    if (!Number.isInteger(group.count) || group.count < 0) {
      throw new LabError(`conntrack fill: bad count ${group.count}`);
    }
    if (!Number.isInteger(group.mark) || group.mark < 0 || group.mark > 0xffffffff) {
      throw new LabError(`conntrack fill: bad mark ${group.mark}`);
    }
    if (n + group.count > MAX_ENTRIES) {
      throw new LabError(`conntrack fill: more than ${MAX_ENTRIES} entries`);
    }
    for (let k = 0; k < group.count; k++, n++) {
      const host = 1 + Math.floor(n / PORTS);
      const src = `100.${96 + (host >>> 16)}.${(host >>> 8) & 255}.${host & 255}`;
      const tuple = `-p tcp -s ${src} -d 198.51.100.200 --sport ${1024 + (n % PORTS)} --dport 80`;
      lines.push(
        options.remove === true
          ? `-D ${tuple}`
          : `-I ${tuple} --state ESTABLISHED -t ${timeoutS} -m ${group.mark}`,
      );
    }
  }
  return lines;
}

/** What a fill did. */
export interface ConntrackFillResult {
  /** Entries loaded. */
  entries: number;
  /** Wall time of the load, ms. */
  ms: number;
  /** Entries in the table afterwards (`conntrack -C`). */
  tableSize: number;
}

/** Entries in the table of namespace `ns` now (`conntrack -C`). @throws {LabError} */
export async function conntrackSize(ns: string): Promise<number> {
  const r = await execIn(ns, ["conntrack", "-C"]);
  const n = Number(r.stdout.trim());
  if (r.code !== 0 || !Number.isInteger(n)) {
    throw new LabError(`conntrack -C in ${ns} failed: ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return n;
}

/** `net.netfilter.nf_conntrack_max` as namespace `ns` sees it. @throws {LabError} */
export async function conntrackMax(ns: string): Promise<number> {
  const r = await execIn(ns, ["sysctl", "-n", "net.netfilter.nf_conntrack_max"]);
  const n = Number(r.stdout.trim());
  if (r.code !== 0 || !Number.isInteger(n)) {
    throw new LabError(`reading nf_conntrack_max in ${ns} failed: ${r.stderr.trim()}`);
  }
  return n;
}

/**
 * Load synthetic entries into the conntrack table of namespace `ns` (one
 * `conntrack -R FILE`), after checking they fit under `nf_conntrack_max` with
 * 1 % to spare for the lab's own traffic.
 *
 * @param options.offset as {@link conntrackFillLines}: give each batch into one
 *   namespace its own range.
 * @param options.timeoutMs kill the load after this long, ms (default 120000).
 * @throws {LabError} when the entries would not fit, or conntrack fails
 *   (its message, e.g. "Such conntrack exists" for a reused offset).
 */
export async function fillConntrack(
  ns: string,
  groups: readonly ConntrackFillGroup[],
  options: { offset?: number; timeoutS?: number; timeoutMs?: number } = {},
): Promise<ConntrackFillResult> {
  const lines = conntrackFillLines(groups, options);
  const [max, before] = await Promise.all([conntrackMax(ns), conntrackSize(ns)]);
  if (before + lines.length > max * 0.99) {
    throw new LabError(
      `conntrack fill in ${ns}: ${before} + ${lines.length} entries exceed 99 % of ` +
        `nf_conntrack_max (${max}); the limit is the host's and cannot be raised in a namespace`,
    );
  }
  const { ms } = await loadFile(ns, lines, options.timeoutMs);
  return { entries: lines.length, ms, tableSize: await conntrackSize(ns) };
}

/**
 * Delete entries that {@link fillConntrack} loaded (the same `groups` and
 * `offset`, or a part of them), one `conntrack -R FILE` of `-D` lines.
 * @returns wall time of the deletion, ms.
 * @throws {LabError} when conntrack fails (e.g. an entry that is gone).
 */
export async function unfillConntrack(
  ns: string,
  groups: readonly ConntrackFillGroup[],
  options: { offset?: number; timeoutMs?: number } = {},
): Promise<number> {
  const lines = conntrackFillLines(groups, { ...options, remove: true });
  return (await loadFile(ns, lines, options.timeoutMs)).ms;
}

/** Runs `conntrack -R` on `lines` in `ns`. */
async function loadFile(
  ns: string,
  lines: readonly string[],
  timeoutMs = 120_000,
): Promise<{ ms: number }> {
  // `-R -` opens /dev/stdin, which fails on the socket Node gives a child
  // as stdin: the lines go through a file.
  const dir = await mkdtemp(join(tmpdir(), "uplinkd-ctfill-"));
  const file = join(dir, "entries");
  try {
    await writeFile(file, lines.join("\n") + "\n");
    const started = performance.now();
    const r = await execIn(ns, ["conntrack", "-R", file], { timeoutMs });
    const ms = performance.now() - started;
    if (r.code !== 0) {
      throw new LabError(`conntrack -R in ${ns} failed (exit ${r.code}): ${r.stderr.trim()}`);
    }
    return { ms: Math.round(ms) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** What a clean-up by mark did. */
export interface ConntrackDeleteResult {
  /** Entries deleted, as conntrack reports them. */
  deleted: number;
  /** Wall time, ms. */
  ms: number;
}

/**
 * Delete the entries of namespace `ns` whose mark matches `mark/mask`, as
 * the daemon's clean-up does (`conntrack -D -f ipv4 -m MARK/MASK`), timed.
 * @throws {LabError} when conntrack fails (exit 1 with nothing matched is 0 deleted).
 */
export async function deleteConntrackByMark(
  ns: string,
  mark: number,
  mask: number,
  options: { timeoutMs?: number } = {},
): Promise<ConntrackDeleteResult> {
  const started = performance.now();
  const r = await execIn(
    ns,
    ["conntrack", "-D", "-f", "ipv4", "-m", `${mark >>> 0}/${mask >>> 0}`],
    { timeoutMs: options.timeoutMs ?? 120_000 },
  );
  const ms = performance.now() - started;
  const count = /(\d+) flow entries have been deleted/.exec(r.stderr)?.[1];
  if (r.code !== 0 && !(r.code === 1 && count !== undefined)) {
    throw new LabError(`conntrack -D in ${ns} failed (exit ${r.code}): ${r.stderr.trim()}`);
  }
  return { deleted: count === undefined ? 0 : Number(count), ms: Math.round(ms) };
}

/**
 * Entries per mark under `mask` in namespace `ns`, by dumping the table
 * (`conntrack -L -f ipv4 -m MARK/MASK` counts, via `-o extended` and the
 * summary line): the reference the daemon's counts are checked against.
 * @throws {LabError} when conntrack fails.
 */
export async function countConntrackByMark(
  ns: string,
  mark: number,
  mask: number,
): Promise<number> {
  const r = await execIn(
    ns,
    ["conntrack", "-L", "-f", "ipv4", "-m", `${mark >>> 0}/${mask >>> 0}`],
    {
      timeoutMs: 120_000,
    },
  );
  const count = /(\d+) flow entries have been shown/.exec(r.stderr)?.[1];
  if (count === undefined) {
    throw new LabError(`conntrack -L in ${ns} failed (exit ${r.code}): ${r.stderr.trim()}`);
  }
  return Number(count);
}

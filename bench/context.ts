/**
 * What every part of the benchmark shares: the run's mode, progress lines,
 * lab prefixes unique to this run, and the registry of labs that must be
 * removed however the run ends (normal end, error, SIGINT).
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parse, stringify } from "yaml";
import type { Lab, LabUpOptions } from "../src/lab/lab.js";
import { labs } from "./built.js";

export { sleep };

/** One run of the benchmark. */
export class BenchContext {
  readonly started = Date.now();
  /** Every lab prefix this run used (removed at the end; listed in results.json). */
  readonly prefixes = new Set<string>();
  /** Set once the run is being torn down (SIGINT): parts stop at their next step. */
  aborted = false;

  constructor(
    /** `--quick`: fewer trials, shorter soaks, everything overlapped. */
    readonly quick: boolean,
    /** Short id unique to this process, part of every lab prefix. */
    readonly runId: string = (process.pid % 46656).toString(36),
  ) {}

  /** Print one progress line: `[mm:ss] part: message`. */
  log(part: string, message: string): void {
    const s = Math.round((Date.now() - this.started) / 1000);
    const stamp = `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
    process.stdout.write(`[${stamp}] ${part}: ${message}\n`);
  }

  /** A lab prefix for `tag` in this run (`b` + tag + run id; at most 16 characters). */
  prefix(tag: string): string {
    return `b${tag}${this.runId}`.slice(0, 16);
  }

  /** Throw when the run is being aborted (call between steps of a long part). */
  check(): void {
    if (this.aborted) throw new Error("aborted");
  }

  /**
   * Bring up a lab (registered for teardown first, so even a half-built one
   * goes), run `fn`, and remove the lab whatever happens.
   */
  async withLab<T>(tag: string, options: LabUpOptions, fn: (lab: Lab) => Promise<T>): Promise<T> {
    this.check();
    const prefix = this.prefix(tag);
    this.prefixes.add(prefix);
    const lab = await labs.labUp({ iperf3Servers: 0, ...options, prefix });
    try {
      return await fn(lab);
    } finally {
      await lab.down().catch(() => labs.labDown(prefix).catch(() => undefined));
    }
  }

  /** Remove every lab of this run that may still exist (end of run, SIGINT). */
  async teardown(): Promise<void> {
    await Promise.all([...this.prefixes].map((p) => labs.labDown(p).catch(() => undefined)));
  }
}

/** Health settings of a profile; `undefined` fields are left to the schema's defaults. */
export interface HealthProfile {
  name: string;
  interval?: string;
  timeout?: string;
  down?: number;
  up?: number;
  targets?: string[];
}

/** The schema's defaults: interval 500ms, timeout 1s, down 3, up 5. */
export const DEFAULTS: HealthProfile = { name: "defaults" };
/** The fast profile of the issue: interval 200ms, timeout 500ms, down 3. */
export const FAST: HealthProfile = { name: "fast", interval: "200ms", timeout: "500ms", down: 3 };

/**
 * Write a copy of the lab's daemon config with `profile`'s health settings
 * (the lab writes interval/timeout; a field the profile leaves out is
 * removed so the schema's default applies) and `edit` applied.
 * @returns the new config's path (in the lab's state directory).
 */
export async function writeConfig(
  lab: Lab,
  profile: HealthProfile,
  edit: (config: Record<string, unknown>) => void = () => undefined,
): Promise<string> {
  const config = parse(await readFile(lab.configPath, "utf8")) as Record<string, unknown>;
  const keys = ["interval", "timeout", "down", "up"];
  const current = Object.entries((config.health as Record<string, unknown> | undefined) ?? {});
  const health: Record<string, unknown> = Object.fromEntries(
    current.filter(([key]) => !keys.includes(key)),
  );
  for (const [key, value] of Object.entries({
    interval: profile.interval,
    timeout: profile.timeout,
    down: profile.down,
    up: profile.up,
    targets: profile.targets,
  })) {
    if (value !== undefined) health[key] = value;
  }
  config.health = health;
  edit(config);
  const path = join(lab.stateDir, `uplinkd-${profile.name}.yaml`);
  await writeFile(path, stringify(config));
  return path;
}

/** Describe a profile: `interval 500ms, timeout 1s, down 3, up 5 (schema defaults)`. */
export function describeProfile(p: HealthProfile): string {
  const parts = [
    `interval ${p.interval ?? "500ms"}`,
    `timeout ${p.timeout ?? "1s"}`,
    `down ${p.down ?? 3}`,
    `up ${p.up ?? 5}`,
  ];
  return parts.join(", ");
}

/** Error text of anything thrown. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

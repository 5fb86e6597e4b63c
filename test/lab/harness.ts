/**
 * Running the daemon in a lab's router namespace for integration tests, and
 * measuring traffic from the LAN client.
 */
import type { ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { parse, stringify } from "yaml";
import { controlRequest } from "../../src/control/client.js";
import type { StatusDocument } from "../../src/daemon.js";
import { labUp, type Lab, type LabUpOptions } from "../../src/lab/lab.js";
import { labScriptArgv } from "../../src/lab/scripts.js";
import type { TrafficReport } from "../../src/lab/traffic.js";

const cli = fileURLToPath(new URL("../../src/cli.ts", import.meta.url));

/** argv that runs the uplinkd CLI from sources. */
export function uplinkdArgv(...args: string[]): string[] {
  return [process.execPath, "--import", import.meta.resolve("tsx"), cli, ...args];
}

/** A unique lab prefix per test file and process: two test runs never collide. */
export function testPrefix(tag: string): string {
  return `t${tag}${(process.pid % 1000).toString(36)}`.slice(0, 8);
}

/** Bring up a lab, tweak its generated config, and return both. */
export async function labWithConfig(
  options: LabUpOptions,
  edit: (config: Record<string, unknown>) => void = () => undefined,
): Promise<Lab> {
  const lab = await labUp(options);
  const config = parse(await readFile(lab.configPath, "utf8")) as Record<string, unknown>;
  edit(config);
  await writeFile(lab.configPath, stringify(config));
  return lab;
}

/** A daemon process running in a lab's router namespace. */
export class LabDaemon {
  readonly output: string[] = [];
  private exited: Promise<number | null>;

  constructor(
    readonly lab: Lab,
    readonly child: ChildProcess,
  ) {
    const collect = (chunk: Buffer) => this.output.push(chunk.toString("utf8"));
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    this.exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  }

  /** The daemon's status, or undefined while its socket does not answer. */
  async status(): Promise<StatusDocument | undefined> {
    try {
      return (await controlRequest(
        this.lab.controlSocket,
        "GET",
        "/status",
        undefined,
        2000,
      )) as StatusDocument;
    } catch {
      return undefined;
    }
  }

  /**
   * Poll the status every 50 ms until `predicate` holds.
   * @throws when it does not within `timeoutMs` (the daemon's log is in the message).
   */
  async waitFor(
    predicate: (status: StatusDocument) => boolean,
    timeoutMs = 15_000,
    what = "condition",
  ): Promise<StatusDocument> {
    const deadline = Date.now() + timeoutMs;
    let last: StatusDocument | undefined;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) break;
      last = await this.status();
      if (last !== undefined && predicate(last)) return last;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(
      `daemon: ${what} not reached in ${timeoutMs} ms; last status ${JSON.stringify(last?.uplinks.map((u) => [u.name, u.state]))}\n${this.log()}`,
    );
  }

  /** Wait until every uplink is in one of `states`. */
  waitForStates(states: readonly string[], timeoutMs?: number): Promise<StatusDocument> {
    return this.waitFor(
      (s) => s.uplinks.every((u) => states.includes(u.state)),
      timeoutMs,
      `all uplinks ${states.join("|")}`,
    );
  }

  /** The daemon's output so far (last 60 lines). */
  log(): string {
    return this.output.join("").split("\n").slice(-60).join("\n");
  }

  /** Send a signal and wait for the process to end (SIGKILL after `timeoutMs`). */
  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 10_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** Start `uplinkd run` in the lab's router namespace with the lab's config. */
export function startDaemon(lab: Lab, ...extra: string[]): LabDaemon {
  const child = lab.spawn("rtr", uplinkdArgv("run", "-c", lab.configPath, ...extra), {
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new LabDaemon(lab, child);
}

/**
 * Open `count` TCP connections from the LAN client to the whoami host; each
 * asks `rounds` times which address it came from.
 */
export async function lanTraffic(
  lab: Lab,
  count: number,
  options: { rounds?: number; concurrency?: number; timeoutMs?: number; node?: string } = {},
): Promise<TrafficReport> {
  const argv = [
    ...labScriptArgv("traffic"),
    "whoami",
    "--host",
    "192.0.2.10",
    "--count",
    String(count),
    "--rounds",
    String(options.rounds ?? 2),
    "--concurrency",
    String(options.concurrency ?? 50),
    "--timeout",
    String(options.timeoutMs ?? 5000),
  ];
  const result = await lab.exec(options.node ?? "lan", argv, { timeoutMs: 120_000 });
  return JSON.parse(result.stdout) as TrafficReport;
}

/** Share of connections per uplink number, from the source addresses the echo host saw. */
export function sharesByUplink(report: TrafficReport, lab: Lab): Map<number, number> {
  const shares = new Map<number, number>();
  for (const [source, n] of Object.entries(report.bySource)) {
    const uplink = lab.uplinks.find((u) => source.startsWith(u.subnet.replace(/0\/24$/, "")));
    const key = uplink?.number ?? 0;
    shares.set(key, (shares.get(key) ?? 0) + n / report.ok);
  }
  return shares;
}

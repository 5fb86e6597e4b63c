/**
 * Running `uplinkd run` inside a lab's router namespace and watching it
 * through its control socket: shared by the demo, the benchmark and the
 * integration tests.
 */
import type { ChildProcess } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { controlRequest } from "../control/client.js";
import { runCommand } from "../process/run.js";
import type { StatusDocument } from "../control/api.js";
import { uplinkOfAddress6 } from "./ipv6.js";
import type { Lab } from "./lab.js";
import { labScriptArgv } from "./scripts.js";
import { labTimeScale } from "./netns.js";
import type { HoldLine, TrafficReport } from "./traffic.js";

/**
 * argv that runs the uplinkd CLI with the current Node: the built
 * `dist/cli.js`, or `src/cli.ts` under tsx when running from sources.
 */
export function uplinkdArgv(...args: string[]): string[] {
  const here = import.meta.url;
  if (here.endsWith(".ts")) {
    const cli = fileURLToPath(new URL("../cli.ts", here));
    return [process.execPath, "--import", import.meta.resolve("tsx"), cli, ...args];
  }
  return [process.execPath, fileURLToPath(new URL("../cli.js", here)), ...args];
}

/**
 * The status of the daemon listening on control socket `socket`, or
 * undefined while it does not answer (within 2 s times the lab's time scale).
 */
export async function statusAt(socket: string): Promise<StatusDocument | undefined> {
  try {
    const timeoutMs = Math.round(2000 * labTimeScale());
    return (await controlRequest(socket, "GET", "/status", undefined, timeoutMs)) as StatusDocument;
  } catch {
    return undefined;
  }
}

/** A daemon process running in a lab's router namespace. */
export class LabDaemon {
  /** Everything the daemon printed (JSON log lines and errors). */
  readonly output: string[] = [];
  private readonly exited: Promise<number | null>;

  constructor(
    readonly lab: Lab,
    readonly child: ChildProcess,
  ) {
    const collect = (chunk: Buffer) => this.output.push(chunk.toString("utf8"));
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    this.exited = new Promise((resolve) =>
      child.on("exit", (code) => {
        resolve(code);
      }),
    );
  }

  /** The daemon's status, or undefined while its socket does not answer. */
  status(): Promise<StatusDocument | undefined> {
    return statusAt(this.lab.controlSocket);
  }

  /**
   * Poll the status every `pollMs` (default 50 ms) until `predicate` holds,
   * for at most `timeoutMs` times the lab's time scale ({@link labTimeScale}:
   * longer in an emulated machine).
   * @returns the status that satisfied it.
   * @throws {Error} when it does not within `timeoutMs` or the daemon exits;
   *   the message holds the daemon's last log lines.
   */
  async waitFor(
    predicate: (status: StatusDocument) => boolean,
    timeoutMs = 15_000,
    what = "condition",
    pollMs = 50,
  ): Promise<StatusDocument> {
    const limitMs = Math.round(timeoutMs * labTimeScale());
    const deadline = Date.now() + limitMs;
    let last: StatusDocument | undefined;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) break;
      last = await this.status();
      if (last !== undefined && predicate(last)) return last;
      await new Promise((r) => setTimeout(r, pollMs));
    }
    const states = JSON.stringify(last?.uplinks.map((u) => [u.name, u.state]));
    throw new Error(
      `uplinkd: ${what} not reached in ${limitMs} ms; last states ${states}\n${this.log()}`,
    );
  }

  /** Wait until every uplink is in one of `states`. */
  waitForStates(states: readonly string[], timeoutMs?: number): Promise<StatusDocument> {
    return this.waitFor(
      (s) => s.uplinks.every((u) => states.includes(u.state)),
      timeoutMs,
      `every uplink ${states.join("|")}`,
    );
  }

  /** Wait until uplink `name` is in `state`. */
  waitForState(name: string, state: string, timeoutMs?: number): Promise<StatusDocument> {
    return this.waitFor(
      (s) => s.uplinks.find((u) => u.name === name)?.state === state,
      timeoutMs,
      `${name} ${state}`,
      20,
    );
  }

  /**
   * Wait until uplink `name`'s IPv6 (`uplinks[].ipv6` of the status) is in
   * `state`, and with `active` also takes new IPv6 connections (or, for a
   * state other than up, no longer does). Polls every 20 ms.
   * @throws {Error} after `timeoutMs` (default 15 s), with the daemon's log.
   */
  waitForState6(
    name: string,
    state: string,
    timeoutMs?: number,
    active?: boolean,
  ): Promise<StatusDocument> {
    return this.waitFor(
      (s) => {
        const v6 = s.uplinks.find((u) => u.name === name)?.ipv6;
        return v6 != null && v6.state === state && (active === undefined || v6.active === active);
      },
      timeoutMs,
      `${name} IPv6 ${state}${active === undefined ? "" : active ? " and active" : " and inactive"}`,
      20,
    );
  }

  /** The daemon's output so far (last `lines` lines). */
  log(lines = 60): string {
    return this.output.join("").split("\n").slice(-lines).join("\n");
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

/**
 * Start `uplinkd run -c CONFIG` in the lab's router namespace (the lab's
 * config by default).
 * @param options.env the daemon's environment (default: this process's),
 *   e.g. a PATH with stand-ins for kernel tools.
 */
export function startLabDaemon(
  lab: Lab,
  configPath = lab.configPath,
  options: { env?: NodeJS.ProcessEnv } = {},
): LabDaemon {
  const child = lab.spawn("rtr", uplinkdArgv("run", "-c", configPath), {
    stdio: ["ignore", "pipe", "pipe"],
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  return new LabDaemon(lab, child);
}

/**
 * A directory with stand-ins for `conntrack` and `nft` that hang (as
 * `sleep 3599 TAG`) on deletions (`conntrack -D`) and listings (`nft ...
 * list ...`, and the long-lived `nft -j -i` reader that the periodic
 * listings go through) while the file `hang` in it exists, and run the real tool
 * otherwise: for showing that hung kernel commands do not stall failover.
 * Put it first on the daemon's PATH.
 * @returns the directory, the marker file, and `remove()` (which also kills hung stand-ins).
 */
export async function hangingTools(): Promise<{
  dir: string;
  marker: string;
  remove: () => Promise<void>;
}> {
  const dir = await mkdtemp(join(tmpdir(), "uplinkd-hang-"));
  const marker = join(dir, "hang");
  const real = async (name: string) =>
    (await runCommand("sh", ["-c", `command -v ${name}`])).stdout.trim();
  const wrapper = (tool: string, words: readonly string[], tag: string) =>
    [
      "#!/bin/sh",
      `if [ -e ${marker} ]; then for a in "$@"; do case "$a" in ${words.join("|")}) exec sleep 3599 ${tag};; esac; done; fi`,
      `exec ${tool} "$@"`,
      "",
    ].join("\n");
  await writeFile(
    join(dir, "conntrack"),
    wrapper(await real("conntrack"), ["-D"], HANG_TAGS.conntrack),
  );
  await writeFile(join(dir, "nft"), wrapper(await real("nft"), ["list", "-i"], HANG_TAGS.nft));
  await chmod(join(dir, "conntrack"), 0o755);
  await chmod(join(dir, "nft"), 0o755);
  return {
    dir,
    marker,
    remove: async () => {
      await runCommand("pkill", ["-f", `sleep 3599 ${HANG_TAGS.prefix}`], { allowExitCodes: [1] });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The `sleep` arguments that tell the hung stand-ins apart. */
export const HANG_TAGS = { prefix: "0.70", conntrack: "0.701", nft: "0.702" } as const;

/**
 * Open `count` TCP connections from a lab node (the LAN client by default)
 * to the whoami host; each asks `rounds` times which address it came from.
 * @throws {LabError} when the traffic tool fails.
 */
export async function lanTraffic(
  lab: Lab,
  count: number,
  options: {
    rounds?: number;
    concurrency?: number;
    timeoutMs?: number;
    node?: string;
    /** The whoami host (default the internet's echo host 192.0.2.10). */
    host?: string;
  } = {},
): Promise<TrafficReport> {
  const argv = [
    ...labScriptArgv("traffic"),
    "whoami",
    "--host",
    options.host ?? "192.0.2.10",
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

/**
 * Share (0..1) of successful connections per uplink number, from the source
 * addresses the echo host saw: the router's address on the uplink's subnet,
 * or for a CGNAT uplink its ISP's core address (the second NAT). Unknown
 * sources count under 0.
 */
export function sharesByUplink(report: TrafficReport, lab: Lab): Map<number, number> {
  const shares = new Map<number, number>();
  for (const [source, n] of Object.entries(report.bySource)) {
    const uplink = lab.uplinks.find((u) =>
      u.kind === "cgnat"
        ? source === u.coreAddress
        : source.startsWith(u.subnet.replace(/0\/24$/, "")),
    );
    const key = uplink?.number ?? 0;
    shares.set(key, (shares.get(key) ?? 0) + n / Math.max(1, report.ok));
  }
  return shares;
}

/**
 * Share (0..1) of successful IPv6 connections per uplink number, from the
 * source addresses the echo host saw (the uplink's network space or its
 * delegation pool, see {@link uplinkOfAddress6}); other sources (a ULA
 * that was not translated) count under 0.
 */
export function sharesByUplink6(report: TrafficReport, lab: Lab): Map<number, number> {
  const shares = new Map<number, number>();
  for (const [source, n] of Object.entries(report.bySource)) {
    const key = uplinkOfAddress6(lab.uplinks, source) ?? 0;
    shares.set(key, (shares.get(key) ?? 0) + n / Math.max(1, report.ok));
  }
  return shares;
}

/**
 * A long-running traffic tool (`hold` or `probe` mode) in a lab node; its
 * JSON lines are collected as they come.
 */
export class TrafficProcess<Line> {
  /** Every line printed so far, parsed. */
  readonly lines: Line[] = [];
  readonly child: ChildProcess;
  /** Resolves with the exit code when the process ends. */
  readonly exited: Promise<number | null>;

  /**
   * @param node lab node to run in (`lan`, `rtr`, `net`, ...).
   * @param args the traffic tool's arguments, e.g. `["hold", "--host", "192.0.2.10"]`.
   */
  constructor(lab: Lab, node: string, args: readonly string[]) {
    this.child = lab.spawn(node, [...labScriptArgv("traffic"), ...args], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    this.exited = new Promise((resolve) =>
      this.child.on("exit", (code) => {
        resolve(code);
      }),
    );
    let buffer = "";
    this.child.stdout?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("utf8");
      const complete = buffer.split("\n");
      buffer = complete.pop() ?? "";
      for (const line of complete)
        if (line.trim() !== "") this.lines.push(JSON.parse(line) as Line);
    });
  }

  /** SIGTERM (SIGKILL after 5 s), wait for the end, and return every line. */
  async stop(): Promise<Line[]> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
      await this.exited;
      clearTimeout(timer);
    }
    return this.lines;
  }
}

/**
 * One long-lived whoami connection from the LAN client to the echo host,
 * asking every `intervalMs` (default 100); a question unanswered after
 * `timeoutMs` (default 1000) is reported as missed. Ends after `durationMs`
 * with a summary line. `host`: the echo host's address (default 192.0.2.10;
 * 2001:db8:ffff::10 for IPv6).
 */
export function holdConnection(
  lab: Lab,
  options: { durationMs: number; intervalMs?: number; timeoutMs?: number; host?: string },
): TrafficProcess<HoldLine> {
  return new TrafficProcess<HoldLine>(lab, "lan", [
    "hold",
    "--host",
    options.host ?? "192.0.2.10",
    "--interval",
    String(options.intervalMs ?? 100),
    "--timeout",
    String(options.timeoutMs ?? 1000),
    "--duration",
    String(options.durationMs),
  ]);
}

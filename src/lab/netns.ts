/**
 * Network namespace plumbing for the lab: running commands inside a
 * namespace, `ip -batch`, sysctls, and removing namespaces with their
 * processes. Every command names its namespace (`ip -n NS`, `ip netns exec
 * NS`, `tc -n NS`); nothing here changes the host's own namespace.
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { KernelCommandError } from "../errors.js";
import { LabError } from "./errors.js";
import { runCommand, type CommandResult } from "../process/run.js";

/** What a command run in a lab node printed, and how it ended. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code; null when the command was ended by a signal. */
  code: number | null;
  /** The signal that ended it, if any. */
  signal: NodeJS.Signals | null;
}

/**
 * Run a kernel tool for the lab, turning a failure into a LabError.
 * @param what what the lab was doing, for the message ("create namespaces").
 * @throws {LabError} naming `what`, the command line and the tool's message
 *   (the KernelCommandError is the cause).
 */
export async function labRun(
  what: string,
  file: string,
  args: readonly string[],
  options: { input?: string; allowExitCodes?: readonly number[] } = {},
): Promise<CommandResult> {
  try {
    return await runCommand(file, args, options);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new LabError(`${what}: ${message}`, { cause: error });
  }
}

/**
 * Run `ip -n NS -batch -` with `script` on stdin (or the host's `ip -batch -`
 * when `ns` is null, used only for `netns add|del`, which touch /run/netns
 * and not the host's network).
 * @throws {LabError} naming the failing batch line (ip stops at the first bad line).
 */
export async function ipBatch(what: string, ns: string | null, script: string): Promise<void> {
  if (script.trim() === "") return;
  const args = ns === null ? ["-batch", "-"] : ["-n", ns, "-batch", "-"];
  try {
    await runCommand("ip", args, { input: script });
  } catch (error) {
    let message = error instanceof Error ? error.message : String(error);
    if (error instanceof KernelCommandError) {
      const line = /Command failed -:(\d+)/.exec(error.stderr)?.[1];
      const text = line === undefined ? undefined : script.split("\n")[Number(line) - 1];
      if (text !== undefined) message += ` (batch line: ${text})`;
    }
    throw new LabError(`${what}: ${message}`, { cause: error });
  }
}

/**
 * Run `argv` inside namespace `ns` (`ip netns exec NS ...`) and collect its
 * output. A non-zero exit is not an error: it is returned in `code`.
 * @param options.timeoutMs kill the command (SIGKILL) after this many ms
 *   (times {@link labTimeScale}); default 60000.
 * @throws {LabError} when the command cannot be started or runs past the timeout.
 */
export function execIn(
  ns: string,
  argv: readonly string[],
  options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<ExecResult> {
  if (argv.length === 0) return Promise.reject(new LabError(`exec in ${ns}: no command given`));
  const timeoutMs = Math.round((options.timeoutMs ?? 60_000) * labTimeScale());
  const commandLine = ["ip", "netns", "exec", ns, ...argv].join(" ");
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", ns, ...argv], {
      stdio: ["pipe", "pipe", "pipe"],
      env: options.env ?? process.env,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(
        new LabError(`\`${commandLine}\` could not start: ${error.message}`, { cause: error }),
      );
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      if (timedOut) {
        reject(new LabError(`\`${commandLine}\` did not finish within ${timeoutMs} ms`));
      } else {
        resolve({ stdout, stderr, code, signal });
      }
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}

/**
 * Start `argv` inside namespace `ns` (`ip netns exec NS ...`, which execs
 * the command: the returned process's pid is the command's own).
 */
export function spawnIn(
  ns: string,
  argv: readonly string[],
  options: SpawnOptions = {},
): ChildProcess {
  if (argv.length === 0) throw new LabError(`spawn in ${ns}: no command given`);
  return spawn("ip", ["netns", "exec", ns, ...argv], options);
}

/**
 * Start `argv` in `ns` in the background, detached (a process group of its
 * own, not waited for: it outlives the caller, as the lab's daemons must),
 * stdin from /dev/null, stdout and stderr appended to `log`, with `env`
 * (default the caller's environment).
 *
 * @returns its pid (that of `ip netns exec`, which execs the program).
 * @throws {LabError} when it could not be started.
 */
export function startDetachedIn(
  ns: string,
  argv: readonly string[],
  log: string,
  env?: NodeJS.ProcessEnv,
): number {
  const fd = openSync(log, "a");
  try {
    const child = spawnIn(ns, argv, {
      detached: true,
      stdio: ["ignore", fd, fd],
      env: env ?? process.env,
    });
    child.on("error", () => undefined);
    child.unref();
    if (child.pid === undefined) throw new LabError(`could not start ${argv.join(" ")} in ${ns}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/**
 * Set sysctls inside `ns` (`ip netns exec NS sysctl -q -w k=v ...`).
 * @throws {LabError} naming the namespace and sysctl's message.
 */
export async function setSysctls(ns: string, settings: readonly string[]): Promise<void> {
  if (settings.length === 0) return;
  await labRun(`set sysctls in ${ns}`, "ip", [
    "netns",
    "exec",
    ns,
    "sysctl",
    "-q",
    "-w",
    ...settings,
  ]);
}

/** Names of all network namespaces in /run/netns (`ip netns list`). */
export async function listNamespaces(): Promise<string[]> {
  const { stdout } = await labRun("list namespaces", "ip", ["netns", "list"]);
  return stdout
    .split("\n")
    .map((line) => line.trim().split(/\s+/)[0] ?? "")
    .filter((name) => name !== "");
}

/** Pids of every process whose network namespace is `ns` (`ip netns pids NS`); [] if ns is gone. */
export async function namespacePids(ns: string): Promise<number[]> {
  try {
    const { stdout } = await runCommand("ip", ["netns", "pids", ns]);
    return stdout
      .split(/\s+/)
      .filter((s) => /^\d+$/.test(s))
      .map(Number);
  } catch {
    return [];
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * End every process in `ns`: SIGTERM, then SIGKILL to whatever is left
 * after `graceMs` (default 2000), waiting at most another 2000 ms.
 * @returns how many processes were found.
 * @throws {LabError} when processes survive SIGKILL.
 */
export async function killNamespaceProcesses(ns: string, graceMs = 2000): Promise<number> {
  const first = await namespacePids(ns);
  if (first.length === 0) return 0;
  for (const pid of first) signal(pid, "SIGTERM");
  const waitGone = async (ms: number): Promise<number[]> => {
    const deadline = Date.now() + ms;
    let left = await namespacePids(ns);
    while (left.length > 0 && Date.now() < deadline) {
      await sleep(25);
      left = await namespacePids(ns);
    }
    return left;
  };
  let left = await waitGone(graceMs);
  if (left.length > 0) {
    for (const pid of left) signal(pid, "SIGKILL");
    left = await waitGone(2000);
  }
  if (left.length > 0) {
    throw new LabError(`processes ${left.join(", ")} in ${ns} survived SIGKILL`);
  }
  return first.length;
}

/**
 * Factor by which the lab's waits are lengthened: the environment's
 * `UPLINKD_LAB_TIME_SCALE` (a number >= 1; default 1). scripts/vm.sh sets
 * it in emulated machines, where processes start several times slower.
 */
export function labTimeScale(): number {
  const value = Number(process.env.UPLINKD_LAB_TIME_SCALE ?? "1");
  return Number.isFinite(value) && value >= 1 ? value : 1;
}

/**
 * Wait until `check` returns a value other than undefined, polling every
 * `intervalMs` (default 50) for at most `timeoutMs` (times {@link labTimeScale}).
 * @throws {LabError} `what` did not happen within that time.
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined>,
  intervalMs = 50,
): Promise<T> {
  const limitMs = Math.round(timeoutMs * labTimeScale());
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) throw new LabError(`${what} did not happen within ${limitMs} ms`);
    await sleep(intervalMs);
  }
}

/**
 * Running kernel tools (ip, nft, conntrack) as child processes. No shell is
 * involved: arguments are passed as an array. Every command has a timeout:
 * a hung tool (a stuck netlink dump, a `conntrack` waiting on a lock) is
 * killed and reported instead of stalling whoever waits for it.
 */
import { spawn } from "node:child_process";
import { KernelCommandError, KernelCommandTimeoutError } from "../errors.js";

/** What a finished command printed. */
export interface CommandResult {
  stdout: string;
  stderr: string;
}

/**
 * Timeout of a command whose caller names none, ms. Generous on purpose: it
 * only bounds commands nobody thought about; the kernel adapter passes tighter
 * ones (see `KERNEL_TIMEOUTS` in ./linux.ts).
 */
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;

/** Options of {@link runCommand}. */
export interface RunOptions {
  /** Text written to the command's stdin (then closed); default none. */
  input?: string;
  /** Exit codes besides 0 that count as success (e.g. conntrack's 1 for "nothing matched"). */
  allowExitCodes?: readonly number[];
  /**
   * Longest the command may run, ms (> 0; default
   * {@link DEFAULT_COMMAND_TIMEOUT_MS}). On expiry the command's whole
   * process group gets SIGKILL.
   */
  timeoutMs?: number;
}

/**
 * Run `file args...`, optionally feeding `input` on stdin.
 *
 * The command runs in a process group of its own (it is its leader), so that
 * on timeout SIGKILL reaches it and whatever it started (a wrapper script's
 * children too); the promise then rejects at once, without waiting for
 * grandchildren that may still hold its output pipes.
 *
 * @returns stdout and stderr as UTF-8 text.
 * @throws {KernelCommandTimeoutError} when the command runs longer than
 *   `timeoutMs`; names the command line and the timeout.
 * @throws {KernelCommandError} when the command exits non-zero (and not in
 *   `allowExitCodes`), is killed by a signal, or cannot be started; the error
 *   names the command line and carries its stderr.
 * @throws {RangeError} when `timeoutMs` is not a positive number.
 */
export function runCommand(
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  const commandLine = [file, ...args].join(" ");
  const timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  if (!(timeoutMs > 0)) {
    return Promise.reject(new RangeError(`timeout of \`${commandLine}\` must be > 0 ms`));
  }
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      return true;
    };
    const timer = setTimeout(() => {
      if (!settle()) return;
      killGroup(child.pid);
      child.stdout.destroy();
      child.stderr.destroy();
      reject(
        new KernelCommandTimeoutError(commandLine, timeoutMs, Buffer.concat(err).toString("utf8")),
      );
    }, timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.on("error", (error) => {
      if (settle()) reject(new KernelCommandError(commandLine, null, error.message));
    });
    child.on("close", (code, signal) => {
      if (!settle()) return;
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      if (code === 0 || (code !== null && options.allowExitCodes?.includes(code))) {
        resolve({ stdout, stderr });
      } else {
        const said = stderr || stdout || (signal === null ? "" : `killed by ${signal}`);
        reject(new KernelCommandError(commandLine, code, said));
      }
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}

/** SIGKILL to the process group led by `pid` (the command and its children). */
function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

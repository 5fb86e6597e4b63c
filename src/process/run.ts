/**
 * Running programs as child processes: the kernel tools (ip, nft,
 * conntrack), dnsmasq's reload, the admin's hook scripts, the lab's helpers.
 * No shell is involved: arguments are passed as an array. Every run has a
 * timeout: a hung program (a stuck netlink dump, a `conntrack` waiting on a
 * lock, a hook script that never ends) is killed with its process group and
 * reported instead of stalling whoever waits for it.
 *
 * {@link runProcess} is the one place that spawns with a timeout; it reports
 * what happened and throws nothing. {@link runCommand} is it for kernel
 * tools: success or a {@link KernelCommandError}.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { systemClock, type Clock, type TimerHandle } from "../clock.js";
import { KernelCommandError, KernelCommandTimeoutError } from "../errors.js";

/** Options of {@link runProcess}. */
export interface ProcessOptions {
  /**
   * Longest the program may run, ms (> 0). Then its process group gets
   * SIGTERM and, `killGraceMs` later, SIGKILL (at once when `killGraceMs`
   * is 0).
   */
  timeoutMs: number;
  /** Text written to stdin (then closed); `null`: stdin is /dev/null. Default `""`. */
  input?: string | null;
  /** The environment; default the daemon's. */
  env?: NodeJS.ProcessEnv;
  /** Working directory; default the daemon's. */
  cwd?: string;
  /** ms between the timeout's SIGTERM and SIGKILL; default 0 (SIGKILL at once). */
  killGraceMs?: number;
  /**
   * After the program exits, ms to wait for its output to end (a process it
   * left behind may hold stdout open); default: until the output ends or
   * the timeout.
   */
  outputGraceMs?: number;
  /** Bytes of stdout, and as many of stderr, kept; default all. */
  outputLimitBytes?: number;
  /** Timers and durations; default the system clock. */
  clock?: Clock;
}

/** What a program did, as {@link runProcess} reports it. */
export interface ProcessOutcome {
  /** Exit status; null when killed by a signal, not started, or not ended. */
  exitCode: number | null;
  /** The signal that ended it (e.g. `SIGKILL`); null when it exited. */
  signal: NodeJS.Signals | null;
  /** stdout as UTF-8 (at most `outputLimitBytes`, then a `[N more bytes not kept]` line). */
  stdout: string;
  /** stderr, as stdout. */
  stderr: string;
  /** true when the timeout ended it. */
  timedOut: boolean;
  /** Why it could not be started (ENOENT, EMFILE, ...); undefined when it ran. */
  startError?: Error;
  /** ms from start to the end of its output (or to the timeout's kill), by the clock. */
  durationMs: number;
}

/**
 * Run `file args...` in a process group of its own (it is its leader), so
 * that a kill reaches it and whatever it started (a wrapper script's
 * children too). The outcome comes when its output ends, `outputGraceMs`
 * after it exits, or at the timeout's SIGKILL, whichever is first: never
 * later than `timeoutMs + killGraceMs`, and without waiting for
 * grandchildren that still hold its output pipes.
 *
 * @returns what it did; a start failure is reported in `startError`, never
 *   thrown.
 * @throws {RangeError} when `timeoutMs` is not a positive number.
 */
export function runProcess(
  file: string,
  args: readonly string[],
  options: ProcessOptions,
): Promise<ProcessOutcome> {
  const { timeoutMs } = options;
  if (!(timeoutMs > 0)) {
    return Promise.reject(
      new RangeError(`timeout of \`${[file, ...args].join(" ")}\` must be > 0 ms`),
    );
  }
  const clock = options.clock ?? systemClock;
  const killGraceMs = options.killGraceMs ?? 0;
  const input = options.input === undefined ? "" : options.input;
  const started = clock.now();
  const stdout = new OutputCapture(options.outputLimitBytes ?? Infinity);
  const stderr = new OutputCapture(options.outputLimitBytes ?? Infinity);
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        shell: false,
        stdio: [input === null ? "ignore" : "pipe", "pipe", "pipe"],
        detached: true,
        ...(options.env === undefined ? {} : { env: options.env }),
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      });
    } catch (error) {
      resolve({
        exitCode: null,
        signal: null,
        stdout: "",
        stderr: "",
        timedOut: false,
        startError: error instanceof Error ? error : new Error(String(error)),
        durationMs: 0,
      });
      return;
    }
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let startError: Error | undefined;
    let timedOut = false;
    let finished = false;
    const timers: TimerHandle[] = [];
    // Typed as always present, but absent after EMFILE/ENFILE (and stdin with "ignore").
    const pipes = child as Partial<Pick<ChildProcess, "stdin" | "stdout" | "stderr">>;

    const finish = (): void => {
      if (finished) return;
      finished = true;
      for (const timer of timers) clock.clearTimeout(timer);
      pipes.stdout?.destroy();
      pipes.stderr?.destroy();
      resolve({
        exitCode: exit?.code ?? null,
        signal: exit?.signal ?? null,
        stdout: stdout.text(),
        stderr: stderr.text(),
        timedOut,
        ...(startError === undefined ? {} : { startError }),
        durationMs: clock.now() - started,
      });
    };
    const killGroup = (signal: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        // The group is gone already: signal the process alone (it may be gone too).
        child.kill(signal);
      }
    };

    // First of all: a start failure (EMFILE, ENOENT) comes as 'error' on the next
    // tick, and for EMFILE/ENFILE Node returns without stdio pipes.
    child.on("error", (error) => {
      if (exit === undefined) startError = error;
      finish();
    });
    pipes.stdout?.on("data", (chunk: Buffer) => {
      stdout.add(chunk);
    });
    pipes.stderr?.on("data", (chunk: Buffer) => {
      stderr.add(chunk);
    });
    child.on("exit", (code, signal) => {
      exit = { code, signal };
      if (!timedOut && options.outputGraceMs !== undefined) {
        timers.push(clock.setTimeout(finish, options.outputGraceMs));
      }
    });
    child.on("close", (code: number | null, signal: NodeJS.Signals | null) => {
      exit ??= { code, signal };
      finish();
    });
    timers.push(
      clock.setTimeout(() => {
        if (finished) return;
        if (exit !== undefined) {
          // Exited in time; only its output (held by a process it left) is late.
          finish();
          return;
        }
        timedOut = true;
        if (killGraceMs <= 0) {
          killGroup("SIGKILL");
          finish();
          return;
        }
        killGroup("SIGTERM");
        timers.push(
          clock.setTimeout(() => {
            killGroup("SIGKILL");
            finish();
          }, killGraceMs),
        );
      }, timeoutMs),
    );
    pipes.stdin?.on("error", () => undefined);
    if (input !== null) pipes.stdin?.end(input);
  });
}

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
 * Run `file args...` ({@link runProcess}), optionally feeding `input` on
 * stdin; on timeout SIGKILL goes to its process group and the promise
 * rejects at once.
 *
 * @returns stdout and stderr as UTF-8 text.
 * @throws {KernelCommandTimeoutError} when the command runs longer than
 *   `timeoutMs`; names the command line and the timeout.
 * @throws {KernelCommandError} when the command exits non-zero (and not in
 *   `allowExitCodes`), is killed by a signal, or cannot be started; the error
 *   names the command line and carries its stderr.
 * @throws {RangeError} when `timeoutMs` is not a positive number.
 */
export async function runCommand(
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  const commandLine = [file, ...args].join(" ");
  const timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const outcome = await runProcess(file, args, { timeoutMs, input: options.input ?? "" });
  const { exitCode: code, signal, stdout, stderr } = outcome;
  if (outcome.startError !== undefined) {
    throw new KernelCommandError(commandLine, null, outcome.startError.message);
  }
  if (outcome.timedOut) throw new KernelCommandTimeoutError(commandLine, timeoutMs, stderr);
  if (code === 0 || (code !== null && options.allowExitCodes?.includes(code))) {
    return { stdout, stderr };
  }
  const said = stderr || stdout || (signal === null ? "" : `killed by ${signal}`);
  throw new KernelCommandError(commandLine, code, said);
}

/** Keeps the first `limit` bytes of a stream and counts the rest. */
class OutputCapture {
  readonly #limit: number;
  readonly #chunks: Buffer[] = [];
  #kept = 0;
  #dropped = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  add(chunk: Buffer): void {
    const room = this.#limit - this.#kept;
    if (room >= chunk.byteLength) {
      this.#chunks.push(chunk);
      this.#kept += chunk.byteLength;
      return;
    }
    if (room > 0) {
      this.#chunks.push(chunk.subarray(0, room));
      this.#kept += room;
    }
    this.#dropped += chunk.byteLength - Math.max(0, room);
  }

  text(): string {
    const text = Buffer.concat(this.#chunks).toString("utf8");
    return this.#dropped > 0 ? `${text}\n[${this.#dropped} more bytes not kept]` : text;
  }
}

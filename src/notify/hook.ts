/**
 * Hook scripts: a program run with the transition in environment variables,
 * never through a shell, killed when it overstays its timeout, its output
 * captured to the log.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../clock.js";
import { NotifyError, NotifyTimeoutError } from "./errors.js";
import type { HookConfig } from "../config/notify.js";
import { cleanText } from "../text.js";

/** After the timeout's SIGTERM, ms before the script's process group gets SIGKILL. */
export const KILL_GRACE_MS = 2000;

/**
 * After the script exits, ms to wait for its output to end; a process it
 * left behind may hold stdout open, and is not waited for longer.
 */
export const OUTPUT_GRACE_MS = 1000;

/** At most this many bytes of stdout, and as many of stderr, are kept for the log. */
export const OUTPUT_LIMIT_BYTES = 16 * 1024;

/** How a hook is named in logs and results: its `name`, else its program's path. */
export function hookTarget(hook: HookConfig): string {
  return hook.name ?? hook.command[0] ?? "(no command)";
}

/** What a finished script did. */
export interface HookOutcome {
  /** Exit status; null when killed by a signal. */
  exitCode: number | null;
  /** The signal that ended it (e.g. `SIGTERM`); null when it exited. */
  signal: NodeJS.Signals | null;
  /** The first OUTPUT_LIMIT_BYTES of stdout, UTF-8. */
  stdout: string;
  /** The first OUTPUT_LIMIT_BYTES of stderr, UTF-8. */
  stderr: string;
  /** ms from start to the end of its output. */
  durationMs: number;
}

/**
 * Runs `hook.command` (argv: program, then arguments, passed as they are;
 * `shell: false`, so nothing in the arguments or the environment is ever
 * interpreted) with the daemon's environment plus the hook's own variables
 * (`hook.env`, never logged) plus `env`, working directory
 * `/`, stdin from /dev/null, in a process group of its own. After
 * `hook.timeout` ms of `clock` time the group gets SIGTERM, and SIGKILL
 * {@link KILL_GRACE_MS} ms later. Its stdout and stderr (the first
 * {@link OUTPUT_LIMIT_BYTES} of each) are logged when it ends: at info
 * level after exit status 0, at warn level otherwise.
 *
 * @returns what the script did, when it exited with status 0.
 * @throws {NotifyError} `UPLINKD_ERR_NOTIFY` when the program cannot be
 *   started or exits non-zero or by a signal (its stderr's last line in the
 *   message); `NotifyTimeoutError` (`UPLINKD_ERR_NOTIFY_TIMEOUT`) after the
 *   timeout. Never retryable: a script runs once.
 */
export function runHook(
  hook: HookConfig,
  env: Readonly<Record<string, string>>,
  deps: { clock: Clock; log: Logger },
): Promise<HookOutcome> {
  const target = hookTarget(hook);
  const [file, ...args] = hook.command;
  const { clock, log } = deps;
  return new Promise((resolve, reject) => {
    if (file === undefined) {
      reject(new NotifyError("hook", target, "no command to run", { retryable: false }));
      return;
    }
    const started = clock.now();
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        shell: false,
        // The hook's own variables (config hooks[].env), then the notification's.
        env: { ...process.env, ...hookVariables(hook), ...env },
        cwd: "/",
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      });
    } catch (error) {
      reject(
        new NotifyError("hook", target, `cannot start ${file}: ${(error as Error).message}`, {
          retryable: false,
          cause: error,
        }),
      );
      return;
    }
    // First of all (start failures such as EMFILE come as 'error' on the next tick).
    child.on("error", (error) => {
      if (exit === undefined && child.pid === undefined) startError = error;
      finish();
    });
    const stdout = new OutputCapture(OUTPUT_LIMIT_BYTES);
    const stderr = new OutputCapture(OUTPUT_LIMIT_BYTES);
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout.add(chunk);
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr.add(chunk);
    });

    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let startError: Error | undefined;
    let timedOut = false;
    let finished = false;
    const timers: TimerHandle[] = [];

    const killGroup = (signal: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        // The group is gone already (or was never made): signal the process alone.
        child.kill(signal);
      }
    };

    const finish = (): void => {
      if (finished) return;
      finished = true;
      for (const timer of timers) clock.clearTimeout(timer);
      child.stdout?.destroy();
      child.stderr?.destroy();
      const outcome: HookOutcome = {
        exitCode: exit?.code ?? null,
        signal: exit?.signal ?? null,
        stdout: stdout.text(),
        stderr: stderr.text(),
        durationMs: Math.round(clock.now() - started),
      };
      const failed = startError !== undefined || timedOut || outcome.exitCode !== 0;
      if (startError === undefined) {
        log[failed ? "warn" : "info"](
          { channel: "hook", target, ...outcome },
          `hook ${target} ${describeEnd(outcome, timedOut)}`,
        );
      }
      if (startError !== undefined) {
        reject(
          new NotifyError("hook", target, `cannot start ${file}: ${startError.message}`, {
            retryable: false,
            cause: startError,
          }),
        );
      } else if (timedOut) {
        reject(new NotifyTimeoutError("hook", target, hook.timeout, "the script"));
      } else if (outcome.exitCode !== 0) {
        const last = lastLine(outcome.stderr);
        reject(
          new NotifyError(
            "hook",
            target,
            `${describeEnd(outcome, false)}${last ? `: ${last}` : ""}`,
            { retryable: false },
          ),
        );
      } else {
        resolve(outcome);
      }
    };

    child.on("exit", (code, signal) => {
      exit = { code, signal };
      if (!timedOut) timers.push(clock.setTimeout(finish, OUTPUT_GRACE_MS));
    });
    child.on("close", finish);
    timers.push(
      clock.setTimeout(() => {
        if (exit !== undefined) {
          finish();
          return;
        }
        timedOut = true;
        killGroup("SIGTERM");
        timers.push(
          clock.setTimeout(() => {
            killGroup("SIGKILL");
            finish();
          }, KILL_GRACE_MS),
        );
      }, hook.timeout),
    );
  });
}

/** A hook's own variables (config `hooks[].env`), secret or not, by name. */
function hookVariables(hook: HookConfig): Record<string, string> {
  return Object.fromEntries(Object.entries(hook.env).map(([name, entry]) => [name, entry.value]));
}

function describeEnd(outcome: HookOutcome, timedOut: boolean): string {
  const end =
    outcome.signal !== null
      ? `killed by ${outcome.signal}`
      : outcome.exitCode === null
        ? "did not exit"
        : `exited with status ${outcome.exitCode}`;
  return timedOut ? `timed out; ${end}` : end;
}

/** The last non-blank line of a script's output, cleaned (it goes into an error message). */
function lastLine(text: string): string {
  return cleanText(
    text
      .split("\n")
      .map((line) => cleanText(line).trim())
      .filter(Boolean)
      .at(-1) ?? "",
  );
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
    if (room > 0) {
      const part = chunk.subarray(0, room);
      this.#chunks.push(part);
      this.#kept += part.byteLength;
    }
    this.#dropped += Math.max(0, chunk.byteLength - Math.max(0, room));
  }

  text(): string {
    const text = Buffer.concat(this.#chunks).toString("utf8");
    return this.#dropped > 0 ? `${text}\n[${this.#dropped} more bytes not kept]` : text;
  }
}

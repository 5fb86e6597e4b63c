/**
 * Hook scripts: a program run with the transition in environment variables,
 * never through a shell, killed when it overstays its timeout, its output
 * captured to the log (through the process runner, ../process/run.ts).
 */
import type { Logger } from "pino";
import type { Clock } from "../clock.js";
import { runProcess } from "../process/run.js";
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
export async function runHook(
  hook: HookConfig,
  env: Readonly<Record<string, string>>,
  deps: { clock: Clock; log: Logger },
): Promise<HookOutcome> {
  const target = hookTarget(hook);
  const [file, ...args] = hook.command;
  if (file === undefined) {
    throw new NotifyError("hook", target, "no command to run", { retryable: false });
  }
  const run = await runProcess(file, args, {
    timeoutMs: hook.timeout,
    input: null,
    // The hook's own variables (config hooks[].env), then the notification's.
    env: { ...process.env, ...hookVariables(hook), ...env },
    cwd: "/",
    killGraceMs: KILL_GRACE_MS,
    outputGraceMs: OUTPUT_GRACE_MS,
    outputLimitBytes: OUTPUT_LIMIT_BYTES,
    clock: deps.clock,
  });
  if (run.startError !== undefined) {
    throw new NotifyError("hook", target, `cannot start ${file}: ${run.startError.message}`, {
      retryable: false,
      cause: run.startError,
    });
  }
  const outcome: HookOutcome = {
    exitCode: run.exitCode,
    signal: run.signal,
    stdout: run.stdout,
    stderr: run.stderr,
    durationMs: Math.round(run.durationMs),
  };
  const failed = run.timedOut || outcome.exitCode !== 0;
  deps.log[failed ? "warn" : "info"](
    { channel: "hook", target, ...outcome },
    `hook ${target} ${describeEnd(outcome, run.timedOut)}`,
  );
  if (run.timedOut) throw new NotifyTimeoutError("hook", target, hook.timeout, "the script");
  if (outcome.exitCode !== 0) {
    const last = lastLine(outcome.stderr);
    throw new NotifyError(
      "hook",
      target,
      `${describeEnd(outcome, false)}${last ? `: ${last}` : ""}`,
      { retryable: false },
    );
  }
  return outcome;
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

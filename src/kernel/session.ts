/**
 * A long-lived kernel tool fed one command per line on stdin, so that
 * periodic reads (the passive signal's nft counters, the verify's `ip -j`
 * and `nft -j` listings) cost a line written to a pipe instead of a process
 * started each time.
 *
 * Two tools speak such a protocol (tried with nft 1.0.6 and iproute2 6.1):
 *
 * - `nft -j -i`: each command's JSON on one stdout line, written as soon as
 *   the command is done; a failed command prints `Error: ...`, the command
 *   and a `^^^` marker line on stderr and nothing on stdout, and the
 *   process goes on. nft checks the ruleset generation before each command,
 *   so nothing it prints is stale.
 * - `ip -j -force -batch -`: each command's JSON array on one stdout line
 *   (`[]` when empty); a failed command prints the kernel's message and
 *   `Command failed -:N` on stderr, and with `-force` the process goes on.
 *
 * Commands run one at a time, in the order asked. A command that takes
 * longer than its timeout kills the process (the next command starts a new
 * one), as does an exit; the process is also replaced after `maxAgeMs`, so
 * that nothing a tool may cache (iproute2's interface names) outlives a
 * minute or so.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { KernelCommandError, KernelCommandTimeoutError } from "../errors.js";

/** Options of a {@link LineSession}. */
export interface LineSessionOptions {
  /** The tool, e.g. `nft`. */
  file: string;
  /** Its arguments, e.g. `["-j", "-i"]`. */
  args: readonly string[];
  /**
   * Whether the stderr text of a failed command is complete (e.g. ends with
   * iproute2's `Command failed -:N` line). Until then, or if this is absent,
   * the failure is reported once stderr has been quiet for `quietMs`.
   */
  failureDone?: (stderr: string) => boolean;
  /** Quiet time that ends a failure's stderr, ms; default 25. */
  quietMs?: number;
  /** The process is replaced after this long, ms (at the next command); default 60,000. */
  maxAgeMs?: number;
  /** The process ends after this long without a command, ms; default 30,000. */
  idleMs?: number;
}

interface Pending {
  command: string;
  resolve: (line: string) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * One long-lived tool process answering one line per command (see the
 * module's notes). Not reentrant: commands queue.
 */
export class LineSession {
  readonly #o: LineSessionOptions;
  #child: ChildProcessWithoutNullStreams | undefined;
  #startedAt = 0;
  #stdout = "";
  #stderr = "";
  #quiet: NodeJS.Timeout | undefined;
  #idle: NodeJS.Timeout | undefined;
  #pending: Pending | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(options: LineSessionOptions) {
    this.#o = options;
  }

  /**
   * Runs `command` (one line, no newline) and returns the one line it printed.
   * @throws {KernelCommandError} when the tool reports a failure (its stderr
   *   text, the command named as `FILE ARGS... <<< COMMAND`), exits, or
   *   cannot be started.
   * @throws {KernelCommandTimeoutError} when there is no answer within `timeoutMs`.
   */
  run(command: string, timeoutMs: number): Promise<string> {
    const next = this.#queue.then(() => this.#run(command, timeoutMs));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** Ends the process (it is started again by the next command). */
  close(): void {
    this.#closed = true;
    this.#stop();
  }

  #commandLine(command: string): string {
    return `${this.#o.file} ${this.#o.args.join(" ")} <<< ${command}`;
  }

  #run(command: string, timeoutMs: number): Promise<string> {
    this.#closed = false;
    if (this.#idle !== undefined) clearTimeout(this.#idle);
    if (this.#child !== undefined && Date.now() - this.#startedAt > (this.#o.maxAgeMs ?? 60_000)) {
      this.#stop();
    }
    const child = this.#child ?? this.#start();
    hold(child, true);
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(
          new KernelCommandTimeoutError(this.#commandLine(command), timeoutMs, this.#stderr),
        );
        this.#stop();
      }, timeoutMs);
      this.#pending = { command, resolve, reject, timer };
      this.#stdout = "";
      this.#stderr = "";
      child.stdin.write(`${command}\n`);
    }).finally(() => {
      // Between commands the process does not keep Node's event loop alive.
      if (this.#child !== undefined) hold(this.#child, false);
      if (this.#closed) return;
      this.#idle = setTimeout(() => {
        this.#stop();
      }, this.#o.idleMs ?? 30_000);
      this.#idle.unref();
    });
  }

  #start(): ChildProcessWithoutNullStreams {
    // A process group of its own, so that a kill reaches whatever it started.
    const child = spawn(this.#o.file, [...this.#o.args], {
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    this.#child = child;
    this.#startedAt = Date.now();
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      if (this.#child !== child) return;
      this.#stdout += chunk;
      const nl = this.#stdout.indexOf("\n");
      if (nl < 0) return;
      const line = this.#stdout.slice(0, nl);
      this.#stdout = this.#stdout.slice(nl + 1);
      const p = this.#pending;
      if (p === undefined) return;
      this.#settle();
      p.resolve(line);
    });
    child.stderr.on("data", (chunk: string) => {
      if (this.#child !== child || this.#pending === undefined) return;
      this.#stderr += chunk;
      if (this.#quiet !== undefined) clearTimeout(this.#quiet);
      const failed = (): void => {
        const p = this.#pending;
        if (p === undefined) return;
        this.#fail(new KernelCommandError(this.#commandLine(p.command), null, this.#stderr.trim()));
      };
      if (this.#o.failureDone?.(this.#stderr) === true) failed();
      else this.#quiet = setTimeout(failed, this.#o.quietMs ?? 25);
    });
    child.stdin.on("error", () => undefined);
    const gone = (error?: Error): void => {
      if (this.#child !== child) return;
      this.#child = undefined;
      const p = this.#pending;
      if (p !== undefined) {
        const said = error?.message ?? (this.#stderr.trim() || "the process ended");
        this.#fail(new KernelCommandError(this.#commandLine(p.command), null, said));
      }
    };
    child.on("error", gone);
    child.on("exit", () => {
      gone();
    });
    return child;
  }

  #settle(): void {
    if (this.#pending !== undefined) clearTimeout(this.#pending.timer);
    if (this.#quiet !== undefined) clearTimeout(this.#quiet);
    this.#pending = undefined;
    this.#quiet = undefined;
  }

  #fail(error: Error): void {
    const p = this.#pending;
    if (p === undefined) return;
    this.#settle();
    p.reject(error);
  }

  #stop(): void {
    if (this.#idle !== undefined) clearTimeout(this.#idle);
    this.#idle = undefined;
    const child = this.#child;
    this.#child = undefined;
    if (child === undefined) return;
    child.stdin.destroy();
    child.stdout.destroy();
    child.stderr.destroy();
    try {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
  }
}

/** Whether `child` and its pipes keep Node's event loop alive. */
function hold(child: ChildProcessWithoutNullStreams, on: boolean): void {
  for (const handle of [child, child.stdin, child.stdout, child.stderr] as {
    ref?: () => void;
    unref?: () => void;
  }[]) {
    if (on) handle.ref?.();
    else handle.unref?.();
  }
}

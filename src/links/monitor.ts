/**
 * A trigger for "something changed in links, addresses, routes or rules":
 * `ip -o monitor link address route rule`, one line per change. The lines
 * are not parsed (iproute2 6.1 prints text even with -j); the caller
 * re-reads the truth with `ip -j`.
 */
import { pino, type Logger } from "pino";
import { Backoff, type BackoffPolicy } from "../backoff.js";
import { systemClock, type Clock, type TimerHandle } from "../clock.js";
import { nodeSpawner, type ProcessSpawner, type SpawnedProcess } from "../process/spawn.js";

/** The command that watches the kernel. */
export const MONITOR_COMMAND = ["ip", "-o", "monitor", "link", "address", "route", "rule"] as const;

/**
 * Restart backoff of `ip monitor`, ms: 50 ms doubling to 1 s; a run of 10 s
 * starts again at 50 ms.
 */
export const MONITOR_BACKOFF: Readonly<BackoffPolicy> = Object.freeze({
  baseMs: 50,
  factor: 2,
  maxMs: 1000,
  resetAfterMs: 10_000,
});

/** Options of a {@link KernelMonitor}. */
export interface KernelMonitorOptions {
  /** Quiet time that ends a burst of changes, ms (default 20). */
  debounceMs?: number;
  /** Time for the debounce and the restart backoff (default: the real clock). */
  clock?: Clock;
  /** Starts `ip monitor` (default: a real child process). */
  spawner?: ProcessSpawner;
  /**
   * Where a dying `ip monitor` is reported (a warning each time, with the
   * exit code or signal, its last stderr line and the restart delay).
   * Default: a pino logger on stdout, as the daemon logs.
   */
  log?: Pick<Logger, "warn">;
  /** Overrides of {@link MONITOR_BACKOFF}. */
  backoff?: Partial<BackoffPolicy>;
}

/**
 * Watches the kernel and calls `onChange` at most once per `debounceMs`
 * burst. When `ip monitor` exits or cannot be started, the failure is
 * logged and it is started again after a backoff; `onChange` is called on
 * each exit and after each restart, since changes in between went unseen.
 */
export class KernelMonitor {
  readonly #onChange: () => void;
  readonly #debounceMs: number;
  readonly #clock: Clock;
  readonly #spawner: ProcessSpawner;
  readonly #backoff: Backoff;
  #log: Pick<Logger, "warn"> | undefined;
  #child: SpawnedProcess | undefined;
  #debounce: TimerHandle | undefined;
  #restart: TimerHandle | undefined;
  #startedAt = 0;
  #lastStderr = "";
  #running = false;

  /**
   * @param onChange called after a burst of changes settles; an exception
   *   it throws is logged, not passed on.
   */
  constructor(onChange: () => void, options: KernelMonitorOptions = {}) {
    this.#onChange = onChange;
    this.#debounceMs = options.debounceMs ?? 20;
    this.#clock = options.clock ?? systemClock;
    this.#spawner = options.spawner ?? nodeSpawner;
    this.#log = options.log;
    this.#backoff = new Backoff({ ...MONITOR_BACKOFF, ...options.backoff });
  }

  /** Whether an `ip monitor` process runs now. */
  get processRunning(): boolean {
    return this.#child !== undefined;
  }

  /** Start watching. Calling it while running does nothing. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#spawn();
  }

  /** Stop watching; no callback runs afterwards. */
  stop(): void {
    this.#running = false;
    this.#cancel(this.#debounce);
    this.#debounce = undefined;
    this.#cancel(this.#restart);
    this.#restart = undefined;
    const child = this.#child;
    this.#child = undefined;
    child?.kill("SIGTERM");
  }

  #spawn(): void {
    if (!this.#running) return;
    const [file, ...args] = MONITOR_COMMAND;
    let child: SpawnedProcess;
    try {
      child = this.#spawner(file, args);
    } catch (error) {
      // A spawner must report start failures through onExit; be safe anyway.
      this.#exited(
        undefined,
        null,
        null,
        error instanceof Error ? error : new Error(String(error)),
      );
      return;
    }
    this.#child = child;
    this.#startedAt = this.#clock.now();
    this.#lastStderr = "";
    child.onStdoutLine(() => {
      if (this.#child === child) this.#trigger();
    });
    child.onStderrLine((line) => {
      if (this.#child === child && line.trim() !== "") this.#lastStderr = line.trim();
    });
    child.onExit((code, signal, error) => {
      this.#exited(child, code, signal, error);
    });
  }

  #exited(
    child: SpawnedProcess | undefined,
    code: number | null,
    signal: string | null,
    error: Error | undefined,
  ): void {
    if (child !== undefined && this.#child !== child) return;
    this.#child = undefined;
    if (!this.#running) return;
    const ranMs = child === undefined ? 0 : this.#clock.now() - this.#startedAt;
    const delayMs = this.#backoff.next(ranMs);
    const how = error
      ? `could not start: ${error.message}`
      : signal !== null
        ? `was killed by ${signal}`
        : `exited with code ${code ?? "?"}`;
    const said = this.#lastStderr === "" ? "" : ` (${this.#lastStderr})`;
    this.#logger().warn(
      {
        command: MONITOR_COMMAND.join(" "),
        code,
        signal,
        ...(error ? { err: error } : {}),
        restartInMs: delayMs,
      },
      `\`${MONITOR_COMMAND.join(" ")}\` ${how}${said}; restarting in ${delayMs} ms`,
    );
    this.#restart = this.#clock.setTimeout(() => {
      this.#restart = undefined;
      this.#spawn();
      if (this.#child !== undefined) this.#trigger();
    }, delayMs);
    this.#trigger();
  }

  #trigger(): void {
    this.#cancel(this.#debounce);
    this.#debounce = this.#clock.setTimeout(() => {
      this.#debounce = undefined;
      if (!this.#running) return;
      try {
        this.#onChange();
      } catch (error) {
        this.#logger().warn({ err: error }, `link change handler failed: ${String(error)}`);
      }
    }, this.#debounceMs);
  }

  #cancel(handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.#clock.clearTimeout(handle);
  }

  #logger(): Pick<Logger, "warn"> {
    this.#log ??= pino({ base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
    return this.#log;
  }
}

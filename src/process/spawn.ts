/**
 * Long-running child processes (ping) as line streams: the one place that
 * spawns for the health checks. Injected into probers so unit tests feed
 * lines without processes.
 */
import { spawn, type ChildProcess } from "node:child_process";

/** A running child process seen as lines of text. */
export interface SpawnedProcess {
  /** Process id, undefined when it could not be started. */
  readonly pid: number | undefined;
  /** Calls `listener` with each complete stdout line (no trailing newline). */
  onStdoutLine(listener: (line: string) => void): void;
  /** Calls `listener` with each complete stderr line (no trailing newline). */
  onStderrLine(listener: (line: string) => void): void;
  /**
   * Calls `listener` once when the process is gone and its output has been
   * delivered: with its exit code, or the signal that ended it, or
   * `code = null, signal = null, error` when it could not be started.
   */
  onExit(listener: (code: number | null, signal: string | null, error?: Error) => void): void;
  /** Sends `signal` (default SIGTERM); does nothing once the process is gone. */
  kill(signal?: NodeJS.Signals): void;
}

/** Starts `file args...` (no shell). Must not throw: a failed start is reported through `onExit`. */
export type ProcessSpawner = (file: string, args: readonly string[]) => SpawnedProcess;

type LineListener = (line: string) => void;

/** Splits chunks into lines, keeping a partial last line until more comes or `flush`. */
class LineSplitter {
  #rest = "";
  readonly #listeners: LineListener[] = [];

  add(listener: LineListener): void {
    this.#listeners.push(listener);
  }

  push(chunk: string): void {
    const text = this.#rest + chunk;
    const lines = text.split("\n");
    this.#rest = lines.pop() ?? "";
    for (const line of lines) this.#emit(line);
  }

  flush(): void {
    if (this.#rest !== "") this.#emit(this.#rest);
    this.#rest = "";
  }

  #emit(line: string): void {
    const clean = line.endsWith("\r") ? line.slice(0, -1) : line;
    for (const listener of this.#listeners) listener(clean);
  }
}

/**
 * The real spawner: `child_process.spawn` with stdin ignored and stdout and
 * stderr piped; Node reaps the child, so no zombies are left once `onExit`
 * has been called.
 */
export const nodeSpawner: ProcessSpawner = (file, args) => {
  let child: ChildProcess;
  try {
    child = spawn(file, [...args], { stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    // spawn() throws at once for some failures (EAGAIN, bad arguments).
    return failedProcess(error instanceof Error ? error : new Error(String(error)));
  }
  const { stdout, stderr } = child;
  if (stdout === null || stderr === null) {
    return failedProcess(new Error(`\`${file}\` started without output pipes`));
  }
  const out = new LineSplitter();
  const err = new LineSplitter();
  const exitListeners: ((code: number | null, signal: string | null, error?: Error) => void)[] = [];
  let exited = false;
  let startError: Error | undefined;
  const finish = (code: number | null, signal: string | null): void => {
    if (exited) return;
    exited = true;
    out.flush();
    err.flush();
    for (const listener of exitListeners) listener(code, signal, startError);
  };
  stdout.setEncoding("utf8");
  stderr.setEncoding("utf8");
  stdout.on("data", (chunk: string) => {
    out.push(chunk);
  });
  stderr.on("data", (chunk: string) => {
    err.push(chunk);
  });
  child.on("error", (error) => {
    // Start failures (ENOENT, EACCES) come here; 'close' follows them.
    if (child.pid === undefined) startError = error;
  });
  child.on("close", (code, signal) => {
    finish(code, signal);
  });
  return {
    get pid() {
      return child.pid;
    },
    onStdoutLine(listener) {
      out.add(listener);
    },
    onStderrLine(listener) {
      err.add(listener);
    },
    onExit(listener) {
      exitListeners.push(listener);
    },
    kill(signal: NodeJS.Signals = "SIGTERM") {
      // A child that never started has no pid: Node would signal pid 0 (our whole process group).
      if (child.pid === undefined || exited) return;
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
};

/** A process that never started: reports `error` through `onExit` on the next tick. */
function failedProcess(error: Error): SpawnedProcess {
  const exitListeners: ((code: number | null, signal: string | null, error?: Error) => void)[] = [];
  setImmediate(() => {
    for (const listener of exitListeners) listener(null, null, error);
  });
  return {
    pid: undefined,
    onStdoutLine: () => undefined,
    onStderrLine: () => undefined,
    onExit(listener) {
      exitListeners.push(listener);
    },
    kill: () => undefined,
  };
}

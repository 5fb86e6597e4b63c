/**
 * The lab's traffic tool, run inside a lab node (usually `lan`) against the
 * echo host, to see which uplink carried each connection.
 *
 *     traffic.js [whoami] --host H [--port 7] [--count 100] [--concurrency 50]
 *                [--rounds 2] [--gap 0] [--timeout 5000] [--bind ADDR]
 *     traffic.js http --host H [--port 80] [--count 100] [--concurrency 50]
 *                [--timeout 5000] [--bind ADDR]
 *     traffic.js hold --host H [--port 7] [--interval 200] [--timeout 1000]
 *                [--duration 60000] [--bind ADDR]
 *
 * `whoami` opens COUNT TCP connections (at most CONCURRENCY at a time), asks
 * each one ROUNDS times who it is (GAP ms apart) and prints one JSON
 * {@link TrafficReport}. `http` does the same with one `GET /json` per
 * connection. `hold` keeps one connection and asks every INTERVAL ms,
 * printing one JSON {@link HoldLine} per answer or missed answer, then a
 * summary after DURATION ms (or when the connection breaks, exit 1).
 * Times are ms. Exit 2 on bad arguments.
 */
import { request } from "node:http";
import { connect } from "node:net";
import { parseArgs } from "node:util";
import { isMainModule } from "./scripts.js";

/** Result of `whoami` and `http` runs. */
export interface TrafficReport {
  mode: "whoami" | "http";
  /** Connections attempted. */
  connections: number;
  /** Connections that got every answer. */
  ok: number;
  failed: number;
  /** Connections by the client address the echo host saw (first answer). */
  bySource: Record<string, number>;
  /** Connections whose answers named more than one address. */
  inconsistent: number;
  /** Failed connections by error (`ECONNREFUSED`, `timeout`, ...). */
  errors: Record<string, number>;
  durationMs: number;
}

/** Options of a `whoami` or `http` run. */
export interface TrafficOptions {
  host: string;
  port: number;
  count: number;
  concurrency: number;
  /** Questions per connection (whoami only). */
  rounds: number;
  /** Pause between questions on one connection, ms. */
  gapMs: number;
  /** Whole-connection timeout, ms. */
  timeoutMs: number;
  /** Local address to bind (selects the source address, and so the route). */
  bind?: string;
}

/** One line printed by `hold`. */
export type HoldLine =
  | { event: "connected"; t: number; local: string }
  | { event: "answer"; t: number; seq: number; source: string; rttMs: number; late: boolean }
  | { event: "no-answer"; t: number; seq: number; waitedMs: number }
  | { event: "closed"; t: number; error: string }
  | {
      event: "summary";
      t: number;
      asked: number;
      answered: number;
      missed: number;
      sources: Record<string, number>;
    };

/** Options of a `hold` run. */
export interface HoldOptions {
  host: string;
  port: number;
  intervalMs: number;
  /** A question without answer after this is reported as `no-answer`, ms. */
  timeoutMs: number;
  /** Stop after this long, ms. */
  durationMs: number;
  bind?: string;
  /** Stop early (as if the duration had passed) when this aborts. */
  signal?: AbortSignal;
}

type Outcome = { ok: true; sources: string[] } | { ok: false; error: string; sources: string[] };

function errorName(error: unknown): string {
  if (error instanceof Error) return (error as NodeJS.ErrnoException).code ?? error.message;
  return String(error);
}

function whoamiConnection(o: TrafficOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const sources: string[] = [];
    let buffer = "";
    let done = false;
    const socket = connect({ host: o.host, port: o.port, localAddress: o.bind });
    const finish = (outcome: Outcome): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (outcome.ok) socket.end();
      else socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => {
      finish({ ok: false, error: "timeout", sources });
    }, o.timeoutMs);
    const ask = (): void => {
      if (!done) socket.write("who\n");
    };
    socket.setNoDelay(true);
    socket.on("connect", ask);
    socket.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("utf8");
      let nl = buffer.indexOf("\n");
      while (nl >= 0) {
        sources.push(buffer.slice(0, nl).trim());
        buffer = buffer.slice(nl + 1);
        nl = buffer.indexOf("\n");
        if (sources.length >= o.rounds) {
          finish({ ok: true, sources });
          return;
        }
        if (o.gapMs > 0) setTimeout(ask, o.gapMs);
        else ask();
      }
    });
    socket.on("error", (error) => {
      finish({ ok: false, error: errorName(error), sources });
    });
    socket.on("close", () => {
      finish({ ok: false, error: "closed", sources });
    });
  });
}

function httpConnection(o: TrafficOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (outcome: Outcome): void => {
      if (done) return;
      done = true;
      resolve(outcome);
    };
    const req = request(
      {
        host: o.host,
        port: o.port,
        path: "/json",
        localAddress: o.bind,
        agent: false,
        timeout: o.timeoutMs,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => {
          try {
            const parsed = JSON.parse(body) as { client?: unknown };
            if (typeof parsed.client !== "string") throw new Error("no client in answer");
            finish({ ok: true, sources: [parsed.client] });
          } catch {
            finish({ ok: false, error: `bad answer (HTTP ${res.statusCode ?? 0})`, sources: [] });
          }
        });
        res.on("error", (error) => {
          finish({ ok: false, error: errorName(error), sources: [] });
        });
      },
    );
    req.on("timeout", () => {
      req.destroy(new Error("timeout"));
    });
    req.on("error", (error) => {
      finish({ ok: false, error: errorName(error), sources: [] });
    });
    req.end();
  });
}

/**
 * Open `count` connections (`concurrency` at a time) and count who the echo
 * host saw. Never throws for network errors: they are counted in `errors`.
 */
export async function runTraffic(
  mode: "whoami" | "http",
  o: TrafficOptions,
): Promise<TrafficReport> {
  const started = performance.now();
  const report: TrafficReport = {
    mode,
    connections: o.count,
    ok: 0,
    failed: 0,
    bySource: {},
    inconsistent: 0,
    errors: {},
    durationMs: 0,
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < o.count) {
      next++;
      const outcome = await (mode === "whoami" ? whoamiConnection(o) : httpConnection(o));
      const first = outcome.sources[0];
      if (first !== undefined) report.bySource[first] = (report.bySource[first] ?? 0) + 1;
      if (new Set(outcome.sources).size > 1) report.inconsistent++;
      if (outcome.ok) {
        report.ok++;
      } else {
        report.failed++;
        report.errors[outcome.error] = (report.errors[outcome.error] ?? 0) + 1;
      }
    }
  };
  const workers = Math.max(1, Math.min(o.concurrency, o.count));
  await Promise.all(Array.from({ length: workers }, worker));
  report.durationMs = Math.round(performance.now() - started);
  return report;
}

/** One attempt of `probe` mode. */
export interface ProbeAttempt {
  /** Start of the attempt, epoch ms (wall clock, comparable across processes). */
  at: number;
  ok: boolean;
  /** Address the echo host saw; absent on failure. */
  source?: string;
  /** Why it failed (`timeout`, `ECONNRESET`, ...). */
  error?: string;
  /** Connect-and-answer time, ms. */
  ms: number;
}

/**
 * Start a new whoami connection every `intervalMs` (each with `timeoutMs`)
 * until `durationMs` passed or `signal` aborts, and emit every attempt when
 * it ends. Used to measure failover from the client's side.
 */
export async function probeLoop(
  o: TrafficOptions & { intervalMs: number; durationMs: number; signal?: AbortSignal },
  emit: (attempt: ProbeAttempt) => void,
): Promise<void> {
  const started = performance.now();
  const pending: Promise<void>[] = [];
  while (performance.now() - started < o.durationMs && o.signal?.aborted !== true) {
    const at = Date.now();
    const t0 = performance.now();
    pending.push(
      whoamiConnection({ ...o, rounds: 1 }).then((outcome) => {
        const ms = Math.round((performance.now() - t0) * 10) / 10;
        emit(
          outcome.ok
            ? { at, ok: true, source: outcome.sources[0] ?? "", ms }
            : { at, ok: false, error: outcome.error, ms },
        );
      }),
    );
    await new Promise((r) => setTimeout(r, o.intervalMs));
  }
  await Promise.all(pending);
}

/**
 * Keep one whoami connection for `durationMs`, asking every `intervalMs`,
 * and report each answer or missed answer through `emit`.
 * @returns true when the connection lasted the whole duration.
 */
export function hold(o: HoldOptions, emit: (line: HoldLine) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const started = performance.now();
    const t = (): number => Math.round(performance.now() - started);
    const sources: Record<string, number> = {};
    let asked = 0;
    let answered = 0;
    let missed = 0;
    /** Questions sent and not answered yet, oldest first (answers come in order). */
    const waiting: { seq: number; sentAt: number; reported: boolean }[] = [];
    let buffer = "";
    let connected = false;
    let done = false;
    const socket = connect({ host: o.host, port: o.port, localAddress: o.bind });
    const finish = (ok: boolean, error?: string): void => {
      if (done) return;
      done = true;
      clearInterval(ticker);
      clearTimeout(stopper);
      if (error !== undefined) emit({ event: "closed", t: t(), error });
      emit({ event: "summary", t: t(), asked, answered, missed, sources });
      if (ok) socket.end();
      else socket.destroy();
      resolve(ok);
    };
    const tick = (): void => {
      if (!connected || done) return;
      const now = performance.now();
      for (const q of waiting) {
        if (!q.reported && now - q.sentAt >= o.timeoutMs) {
          q.reported = true;
          missed++;
          emit({ event: "no-answer", t: t(), seq: q.seq, waitedMs: Math.round(now - q.sentAt) });
        }
      }
      // One question in flight at a time: a stalled path is reported, not flooded.
      if (waiting.length === 0) {
        asked++;
        waiting.push({ seq: asked, sentAt: now, reported: false });
        socket.write("who\n");
      }
    };
    const ticker = setInterval(tick, o.intervalMs);
    const stopper = setTimeout(() => {
      finish(true);
    }, o.durationMs);
    o.signal?.addEventListener("abort", () => {
      finish(true);
    });
    socket.setNoDelay(true);
    socket.on("connect", () => {
      connected = true;
      emit({ event: "connected", t: t(), local: `${socket.localAddress}:${socket.localPort}` });
      tick();
    });
    socket.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("utf8");
      let nl = buffer.indexOf("\n");
      while (nl >= 0) {
        const source = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        nl = buffer.indexOf("\n");
        const q = waiting.shift();
        if (q === undefined) continue;
        answered++;
        sources[source] = (sources[source] ?? 0) + 1;
        const rttMs = Math.round((performance.now() - q.sentAt) * 10) / 10;
        emit({ event: "answer", t: t(), seq: q.seq, source, rttMs, late: q.reported });
      }
    });
    socket.on("error", (error) => {
      finish(false, errorName(error));
    });
    socket.on("close", () => {
      finish(false, "closed");
    });
  });
}

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number >= 0`);
  return n;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      count: { type: "string" },
      concurrency: { type: "string" },
      rounds: { type: "string" },
      gap: { type: "string" },
      timeout: { type: "string" },
      interval: { type: "string" },
      duration: { type: "string" },
      bind: { type: "string" },
    },
  });
  const mode = positionals[0] ?? "whoami";
  if (mode !== "whoami" && mode !== "http" && mode !== "hold" && mode !== "probe") {
    throw new Error(`unknown mode ${mode}: use whoami, http, hold or probe`);
  }
  const host = values.host;
  if (host === undefined) throw new Error("--host is required");
  const port = positiveInt("port", values.port, mode === "http" ? 80 : 7);
  const stop = new AbortController();
  process.on("SIGTERM", () => {
    stop.abort();
  });
  process.on("SIGINT", () => {
    stop.abort();
  });
  if (mode === "probe") {
    await probeLoop(
      {
        host,
        port,
        bind: values.bind,
        count: 0,
        concurrency: 1,
        rounds: 1,
        gapMs: 0,
        timeoutMs: positiveInt("timeout", values.timeout, 1000),
        intervalMs: Math.max(1, positiveInt("interval", values.interval, 50)),
        durationMs: positiveInt("duration", values.duration, 60_000),
        signal: stop.signal,
      },
      (attempt) => process.stdout.write(`${JSON.stringify(attempt)}\n`),
    );
    return 0;
  }
  if (mode === "hold") {
    const ok = await hold(
      {
        host,
        signal: stop.signal,
        port,
        bind: values.bind,
        intervalMs: Math.max(1, positiveInt("interval", values.interval, 200)),
        timeoutMs: positiveInt("timeout", values.timeout, 1000),
        durationMs: positiveInt("duration", values.duration, 60_000),
      },
      (line) => process.stdout.write(`${JSON.stringify(line)}\n`),
    );
    return ok ? 0 : 1;
  }
  const report = await runTraffic(mode, {
    host,
    port,
    bind: values.bind,
    count: positiveInt("count", values.count, 100),
    concurrency: Math.max(1, positiveInt("concurrency", values.concurrency, 50)),
    rounds: Math.max(1, positiveInt("rounds", values.rounds, 2)),
    gapMs: positiveInt("gap", values.gap, 0),
    timeoutMs: positiveInt("timeout", values.timeout, 5000),
  });
  process.stdout.write(`${JSON.stringify(report)}\n`);
  return 0;
}

if (isMainModule(import.meta.url)) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`traffic: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 2;
    },
  );
}

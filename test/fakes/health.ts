/**
 * Test doubles for the health checks, driven by an injected clock: a
 * seeded random source and a fake iputils ping that prints exactly what the
 * real one prints (replies, "no answer yet", ICMP errors, start failures),
 * with a configurable per-target network (loss %, RTT, blackhole) and the
 * real ping's period drift. No process, no socket, no sleep.
 */
import type { Clock, TimerHandle } from "../../src/clock.js";
import type { ProcessSpawner, SpawnedProcess } from "../../src/process/spawn.js";

import { seededRandom } from "../../src/random.js";

export { seededRandom };

/** How the fake network treats echo requests to one target. */
export interface FakePath {
  /** Random loss in % (0..100). Default 0. */
  lossPct?: number;
  /** RTT in ms, or a function giving one per probe. Default 20. */
  rttMs?: number | (() => number);
  /** Every probe is lost (blackhole). */
  blackhole?: boolean;
  /** Every probe gets this ICMP error at once, e.g. `Destination Host Unreachable` (from `errorFrom`). */
  icmpError?: string;
  /** Source of the ICMP errors; default 100.64.0.1. */
  errorFrom?: string;
  /** ping cannot start: prints `ping: connect: <this>` and exits 2 (e.g. `Network is unreachable`). */
  connectError?: string;
}

/** One fake ping process, for assertions. */
export interface FakePingProcess {
  readonly args: readonly string[];
  readonly host: string;
  readonly mark: number | undefined;
  /** `-I` source address (IPv6 probes), if given. */
  readonly source: string | undefined;
  readonly intervalMs: number;
  /** Probes sent so far. */
  readonly sent: number;
  readonly alive: boolean;
  /** Signals received, in order. */
  readonly signals: readonly string[];
  /** Makes the process exit now with `code` (as if it crashed). */
  exit(code: number): void;
}

/** Options of a {@link FakePing}. */
export interface FakePingOptions {
  /** Seeded random source for loss decisions. */
  random?: () => number;
  /**
   * How much longer than -i the real period is, in % (iputils 20221126
   * measured ~2 %). Default 2.
   */
  driftPct?: number;
  /** Ignore SIGTERM (only SIGKILL ends the process). */
  ignoreSigterm?: boolean;
}

/** A fake iputils ping and the network behind it. */
export class FakePing {
  readonly paths = new Map<string, FakePath>();
  readonly processes: FakePingProcess[] = [];
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #driftPct: number;
  readonly #ignoreSigterm: boolean;

  constructor(clock: Clock, options: FakePingOptions = {}) {
    this.#clock = clock;
    this.#random = options.random ?? seededRandom(1);
    this.#driftPct = options.driftPct ?? 2;
    this.#ignoreSigterm = options.ignoreSigterm ?? false;
  }

  /** The spawner to inject into IcmpProber / UplinkMonitor. */
  readonly spawner: ProcessSpawner = (_file, args) => this.#spawn(args);

  /** Sets how probes to `host` fare from now on. */
  path(host: string, path: FakePath): void {
    this.paths.set(host, path);
  }

  /** Processes still running. */
  get alive(): FakePingProcess[] {
    return this.processes.filter((p) => p.alive);
  }

  #spawn(args: readonly string[]): SpawnedProcess {
    const clock = this.#clock;
    const host = args[args.length - 1] ?? "";
    const option = (flag: string): string | undefined => {
      const i = args.indexOf(flag);
      return i >= 0 ? args[i + 1] : undefined;
    };
    const intervalMs = Number(option("-i") ?? "1") * 1000;
    const markText = option("-m");
    const source = option("-I");
    const out: ((line: string) => void)[] = [];
    const err: ((line: string) => void)[] = [];
    const exits: ((code: number | null, signal: string | null) => void)[] = [];
    const timers = new Set<TimerHandle>();
    const answered = new Set<number>();
    const signals: string[] = [];
    let sent = 0;
    let alive = true;
    const later = (fn: () => void, delay: number): void => {
      const handle = clock.setTimeout(() => {
        timers.delete(handle);
        if (alive) fn();
      }, delay);
      timers.add(handle);
    };
    const stamp = (): string => `[${(clock.wall() / 1000).toFixed(6)}]`;
    const emit = (listeners: ((line: string) => void)[], line: string): void => {
      for (const listener of listeners) listener(line);
    };
    const finish = (code: number | null, signal: string | null): void => {
      if (!alive) return;
      alive = false;
      for (const handle of timers) clock.clearTimeout(handle);
      timers.clear();
      for (const listener of exits) listener(code, signal);
    };
    const send = (): void => {
      const path = this.paths.get(host) ?? {};
      if (sent > 0 && !answered.has(sent)) {
        emit(out, `${stamp()} no answer yet for icmp_seq=${sent % 65536}`);
      }
      sent++;
      const seq = sent;
      if (path.icmpError !== undefined) {
        const from = path.errorFrom ?? "100.64.0.1";
        const message = path.icmpError;
        later(() => {
          emit(out, `${stamp()} From ${from} icmp_seq=${seq % 65536} ${message}`);
        }, 1);
      } else if (!path.blackhole && this.#random() * 100 >= (path.lossPct ?? 0)) {
        const rtt = typeof path.rttMs === "function" ? path.rttMs() : (path.rttMs ?? 20);
        later(() => {
          answered.add(seq);
          emit(
            out,
            `${stamp()} 64 bytes from ${host}: icmp_seq=${seq % 65536} ttl=64 time=${rtt.toFixed(3)} ms`,
          );
        }, rtt);
      }
      later(send, intervalMs * (1 + this.#driftPct / 100));
    };
    const process: FakePingProcess = {
      args,
      host,
      mark: markText === undefined ? undefined : Number(markText),
      source,
      intervalMs,
      get sent() {
        return sent;
      },
      get alive() {
        return alive;
      },
      signals,
      exit: (code) => {
        finish(code, null);
      },
    };
    this.processes.push(process);
    later(() => {
      const path = this.paths.get(host) ?? {};
      if (path.connectError !== undefined) {
        emit(err, `ping: connect: ${path.connectError}`);
        finish(2, null);
        return;
      }
      emit(
        out,
        args.includes("-6")
          ? `PING ${host}(${host}) from ${source ?? "::"} : 56 data bytes`
          : `PING ${host} (${host}) 56(84) bytes of data.`,
      );
      send();
    }, 0);
    return {
      pid: 10_000 + this.processes.length,
      onStdoutLine: (listener) => out.push(listener),
      onStderrLine: (listener) => err.push(listener),
      onExit: (listener) => exits.push(listener),
      kill: (signal = "SIGTERM") => {
        if (!alive) return;
        signals.push(signal);
        if (signal === "SIGTERM" && this.#ignoreSigterm) return;
        finish(null, signal);
      },
    };
  }
}

/**
 * The shared shell of the on-demand probers that use Node sockets (TCP,
 * HTTP, DNS): one probe per round tick, bound to the uplink's source
 * address, each with its own timeout, all cancelled on stop.
 */
import { isIP } from "node:net";
import type { Clock } from "../clock.js";
import { HealthError } from "./errors.js";
import type { ProbeSink, ProbeSource, Prober } from "./prober.js";
import type { ProbeTimings } from "./window.js";

/** How one probe reports its outcome; only the first call counts. */
export interface ProbeReport {
  /** The probe succeeded now; RTT is measured from its send. */
  answered(timings?: ProbeTimings): void;
  /** The probe failed for sure now, e.g. `connect ECONNREFUSED 198.51.100.1:443`. */
  failed(reason: string): void;
  /** ms since the probe was sent. */
  elapsed(): number;
}

/** Options shared by the socket probers. */
export interface SocketProberOptions {
  /** A probe still running after this many ms is abandoned (the window counts it lost). */
  timeoutMs: number;
  /** `address`: the uplink's address of the target's family (IPv4 or global IPv6), the probes' source. */
  source: ProbeSource;
  clock: Clock;
}

/** Base of the TCP, HTTP and DNS probers. */
export abstract class SocketProber implements Prober {
  abstract readonly target: string;
  /** The target's address family: probes are sent only from a source address of this family. */
  abstract readonly family: 4 | 6;
  readonly schedule = "on-demand" as const;
  protected readonly clock: Clock;
  protected readonly timeoutMs: number;
  #address: string | undefined;
  #sink: ProbeSink | undefined;
  #running = false;
  readonly #inFlight = new Set<() => void>();

  constructor(options: SocketProberOptions) {
    this.clock = options.clock;
    this.timeoutMs = options.timeoutMs;
    this.#address = options.source.address;
  }

  /** Probes still running. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** @throws {HealthError} when called twice. */
  start(sink: ProbeSink): void {
    if (this.#running) throw new HealthError(`prober for ${this.target} already started`);
    this.#running = true;
    this.#sink = sink;
  }

  /**
   * Sends probe `seq` now from the uplink's address. Without an address of
   * the target's family the probe fails at once ("the uplink has no address
   * yet", "the uplink has no IPv6 address yet").
   */
  probe(seq: number): void {
    const sink = this.#sink;
    if (!this.#running || !sink) return;
    const sentAt = this.clock.now();
    sink.sent(seq, sentAt);
    const address = this.#address;
    if (address === undefined) {
      sink.failed(seq, sentAt, "the uplink has no address yet");
      return;
    }
    if (isIP(address) !== this.family) {
      sink.failed(seq, sentAt, `the uplink has no IPv${this.family} address yet`);
      return;
    }
    let done = false;
    let cancel: () => void = () => undefined;
    const finish = (): boolean => {
      if (done) return false;
      done = true;
      this.clock.clearTimeout(timer);
      this.#inFlight.delete(abort);
      return true;
    };
    const abort = (): void => {
      if (finish()) cancel();
    };
    const timer = this.clock.setTimeout(abort, this.timeoutMs);
    this.#inFlight.add(abort);
    const report: ProbeReport = {
      answered: (timings) => {
        if (!finish()) return;
        const now = this.clock.now();
        sink.answered(seq, now, now - sentAt, timings);
        cancel();
      },
      failed: (reason) => {
        if (!finish()) return;
        sink.failed(seq, this.clock.now(), reason);
        cancel();
      },
      elapsed: () => this.clock.now() - sentAt,
    };
    try {
      cancel = this.send(address, report);
    } catch (error) {
      report.failed(error instanceof Error ? error.message : String(error));
    }
  }

  /** Uses `source.address` for the next probes. */
  setSource(source: ProbeSource): void {
    this.#address = source.address;
  }

  nudge(): void {
    // Nothing waits: every tick probes anew.
  }

  /** Abandons the probes in flight and accepts no more. */
  stop(): Promise<void> {
    this.#running = false;
    for (const abort of [...this.#inFlight]) abort();
    return Promise.resolve();
  }

  /**
   * Starts one probe from `address`, reporting through `report`.
   *
   * @returns a function that abandons the probe and frees its resources
   *   (also called after the outcome was reported).
   */
  protected abstract send(address: string, report: ProbeReport): () => void;
}

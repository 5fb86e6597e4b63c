/**
 * ICMP probes with iputils ping: a parser for the lines of
 * `ping -n -D -O -i INTERVAL -W TIMEOUT -m MARK TARGET` and, for an IPv6
 * target, `ping -6 ... -m MARK -I SOURCE TARGET` (checked against iputils
 * 20221126), and {@link IcmpProber}, which keeps one such ping running per
 * (uplink, target).
 *
 * Formats (stdout unless noted; `-D` puts `[epoch.micros] ` in front):
 *
 *     PING 198.51.100.1 (198.51.100.1) 56(84) bytes of data.
 *     [1700000000.123456] 64 bytes from 198.51.100.1: icmp_seq=1 ttl=64 time=0.045 ms
 *     [1700000000.323456] no answer yet for icmp_seq=2
 *     [1700000000.523456] From 100.64.1.1 icmp_seq=3 Destination Host Unreachable
 *     ping: sendmsg: Network is unreachable              (stderr)
 *     ping: connect: Network is unreachable              (stderr; ping exits 2)
 *
 * IPv6 (`ping -6 -I 2001:db8:9::2 ...`, seen in a lab namespace):
 *
 *     PING 2001:db8:9::1(2001:db8:9::1) from 2001:db8:9::2 : 56 data bytes
 *     [1796221052.352643] 64 bytes from 2001:db8:9::1: icmp_seq=1 ttl=64 time=0.115 ms
 *     [1796221062.541565] From 2001:db8:9::1 icmp_seq=1 Destination unreachable: No route
 *     [1796221072.173900] From 2001:db8:9::2 icmp_seq=1 Destination unreachable: Address unreachable
 *     ping: bind icmp socket: Cannot assign requested address   (stderr; exits 2: -I address not ours)
 *
 * With no route to an IPv6 target (or an `unreachable` route) ping -6 prints
 * nothing but "no answer yet" lines; failed neighbour discovery gives
 * "Address unreachable" errors from our own address after ~3 s, in a burst.
 *
 * What iputils does (ping_common.c, and seen on this machine):
 * - probe n (1-based) carries icmp_seq n mod 65536;
 * - with -O, "no answer yet for icmp_seq=n" is printed when ping is about to
 *   send probe n+1 and n is unanswered, i.e. about one interval after n was
 *   sent; when the send is retried (full socket buffer, unresolved ARP) the
 *   same line repeats without a new probe;
 * - a failed send ("sendmsg: ...") still counts as a probe sent;
 * - ICMP errors may come late and in bursts (unresolved ARP: ~3 s);
 * - the real period is a little longer than -i (about 2 % here);
 * - ping fixes nothing at start but its route check: with no route it
 *   exits 2 at once ("connect: Network is unreachable").
 */
import { isIP, isIPv6 } from "node:net";
import { Backoff, type BackoffPolicy } from "../backoff.js";
import type { Clock, TimerHandle } from "../clock.js";
import { HealthError } from "./errors.js";
import { isLinkLocal6 } from "../net/ipv6.js";
import type { SpawnedProcess, ProcessSpawner } from "../process/spawn.js";
import type { ProbeSink, ProbeSource, Prober } from "./prober.js";

/** One parsed line of ping output. `timestamp`: the `-D` stamp in s since the epoch, or null. */
export type PingLine =
  | {
      kind: "reply";
      timestamp: number | null;
      from: string;
      /** icmp_seq as printed (16 bits, wraps at 65536). */
      seq: number;
      ttl: number | null;
      /** RTT in ms; null when ping printed none (truncated reply). */
      rttMs: number | null;
      duplicate: boolean;
    }
  | { kind: "no-answer"; timestamp: number | null; seq: number }
  | { kind: "icmp-error"; timestamp: number | null; from: string; seq: number; message: string }
  | { kind: "header"; target: string }
  | { kind: "error"; message: string }
  | { kind: "other"; text: string };

const STAMP = /^(?:\[(\d+(?:\.\d+)?)\]\s+)?/.source;
// An IPv4 or IPv6 address (or a name), maybe followed by ` (address)`; an
// IPv4 address may carry a trailing colon, which `cleanAddress` removes.
const ADDRESS = /([^\s()]+)(?: \([^)]*\))?/.source;
const REPLY = new RegExp(
  `${STAMP}\\d+ bytes from ${ADDRESS}: icmp_seq=(\\d+)(?: ttl=(\\d+))?(?: time=(\\d+(?:\\.\\d+)?) ms)?(.*)$`,
);
const NO_ANSWER = new RegExp(`${STAMP}no answer yet for icmp_seq=(\\d+)\\s*$`);
const ICMP_ERROR = new RegExp(`${STAMP}From ${ADDRESS}:? icmp_seq=(\\d+) (.+?)\\s*$`);
// IPv4: `PING 198.51.100.1 (198.51.100.1) 56(84) ...`; IPv6: `PING 2001:db8::1(2001:db8::1) from ...`.
const HEADER = /^PING ([^\s(]+)[ (]/;
const ERROR = /^ping: (.+?)\s*$/;

/**
 * Parses one line of `ping -n -D -O` output (stdout or stderr).
 *
 * @returns the line's meaning; `other` for anything else (statistics, blank).
 */
export function parsePingLine(line: string): PingLine {
  let m = REPLY.exec(line);
  if (m) {
    return {
      kind: "reply",
      timestamp: m[1] === undefined ? null : Number(m[1]),
      from: m[2] ?? "",
      seq: Number(m[3]),
      ttl: m[4] === undefined ? null : Number(m[4]),
      rttMs: m[5] === undefined ? null : Number(m[5]),
      duplicate: (m[6] ?? "").includes("(DUP!)"),
    };
  }
  m = NO_ANSWER.exec(line);
  if (m) {
    return {
      kind: "no-answer",
      timestamp: m[1] === undefined ? null : Number(m[1]),
      seq: Number(m[2]),
    };
  }
  m = ICMP_ERROR.exec(line);
  if (m) {
    return {
      kind: "icmp-error",
      timestamp: m[1] === undefined ? null : Number(m[1]),
      from: cleanAddress(m[2] ?? ""),
      seq: Number(m[3]),
      message: m[4] ?? "",
    };
  }
  m = HEADER.exec(line);
  if (m) return { kind: "header", target: m[1] ?? "" };
  m = ERROR.exec(line);
  if (m) return { kind: "error", message: m[1] ?? "" };
  return { kind: "other", text: line };
}

/** `198.51.100.1:` -> `198.51.100.1`; an IPv6 address ending in `::` keeps its colons. */
function cleanAddress(text: string): string {
  if (!text.endsWith(":") || isIP(text) !== 0) return text;
  const trimmed = text.slice(0, -1);
  return isIP(trimmed) !== 0 ? trimmed : text;
}

/**
 * Maps a 16-bit icmp_seq to the unbounded sequence number nearest to
 * `reference` (the highest one seen so far) with the same low 16 bits.
 */
export function unwrapSeq(raw: number, reference: number | undefined): number {
  if (reference === undefined) return raw;
  const diff = ((((raw - reference) % 65536) + 65536 + 32768) % 65536) - 32768;
  return reference + diff;
}

/**
 * The arguments of the long-running ping.
 *
 * @param intervalMs probe interval (ms), passed as `-i` in s (ms precision).
 * @param timeoutMs passed as `-W` in s; ping itself only uses it at exit,
 *   loss is decided on our side.
 * @param mark fwmark (`-m`, needs root or CAP_NET_ADMIN).
 * @param source source address (`-I ADDRESS`): given for IPv6 targets, where
 *   it must be the uplink's global address (the `from ADDR` rule and the
 *   ISP's return route need it; a link-local source is never routed back).
 *   An IPv6 `host` also adds `-6`.
 */
export function pingArgs(
  host: string,
  intervalMs: number,
  timeoutMs: number,
  mark: number,
  source?: string,
): string[] {
  const seconds = (value: number): string => String(Math.max(0.001, value / 1000));
  return [
    ...(isIPv6(host) ? ["-6"] : []),
    "-n",
    "-D",
    "-O",
    "-i",
    seconds(intervalMs),
    "-W",
    seconds(timeoutMs),
    "-m",
    String(mark),
    ...(source === undefined ? [] : ["-I", source]),
    host,
  ];
}

export { isLinkLocal6 };

/**
 * Restart backoff of the ping process, ms: 500 ms after an exit, doubling
 * per exit in a row up to 5 s; a run of 10 s starts again at 500 ms.
 */
export const PING_BACKOFF: Readonly<BackoffPolicy> = Object.freeze({
  baseMs: 500,
  factor: 2,
  maxMs: 5000,
  resetAfterMs: 10_000,
});

/** Options of an {@link IcmpProber}. */
export interface IcmpProberOptions {
  /** IPv4 or IPv6 address to ping. */
  host: string;
  /** Round interval in ms: ping's `-i`. */
  intervalMs: number;
  /** Probe timeout in ms. */
  timeoutMs: number;
  /**
   * The uplink's fwmark (`mark`) and, for an IPv6 target, its global IPv6
   * `address`; without them nothing is sent until `setSource` gives them.
   */
  source: ProbeSource;
  clock: Clock;
  spawner: ProcessSpawner;
  /** Path of iputils ping; default `ping`. */
  pingPath?: string;
  /** Overrides of {@link PING_BACKOFF}. */
  backoff?: Partial<BackoffPolicy>;
  /** ms between SIGTERM and SIGKILL on stop; default 2000. */
  killAfterMs?: number;
}

/**
 * ICMP echo prober: ONE long-running iputils ping per (uplink, target) with
 * the uplink's fwmark, its lines read as they come.
 *
 * Send times, dpinger-style on our monotonic clock (ping's own -D stamps are
 * wall-clock time and are not used):
 * - a reply for probe n stamps n as sent at `arrival - rtt` (ping measured
 *   the RTT; the line reaches us within a fraction of a ms);
 * - the first "no answer yet for n" stamps n as sent at `arrival - interval`
 *   (estimated: ping prints it when the next send is due), unless n is known;
 * - an ICMP error for n fails n at once (estimated send time when unknown).
 * Loss is decided by the window: an unanswered probe is lost once it is
 * older than the timeout, whatever ping prints. A probe that ping never
 * reports (ping stuck or gone) is simply absent, and the round tracker fails
 * the target's round at its deadline.
 *
 * Sequence numbers: 16-bit icmp_seq is unwrapped; each new ping process
 * continues after the previous one's numbers, with a gap of one.
 *
 * When ping exits (e.g. `connect: Network is unreachable` while the uplink
 * has no route), it is restarted after a backoff (500 ms doubling to 5 s,
 * reset by a 10 s run or by `nudge`). A change of fwmark restarts it. For
 * an IPv4 target a change of address does not (ping does not bind without
 * `-I`, the kernel picks the source per packet). An IPv6 target is pinged
 * with `-6 -I ADDRESS` from the uplink's global address: a link-local
 * source is never used (the ISP routes nothing back to it), nothing is sent
 * while there is no global address, and a new address (SLAAC renumbering)
 * restarts ping with it.
 */
export class IcmpProber implements Prober {
  readonly target: string;
  readonly schedule = "free-running" as const;
  readonly #o: IcmpProberOptions;
  readonly #backoff: Backoff;
  /** 6 for an IPv6 target (pinged from `#address`), else 4. */
  readonly family: 4 | 6;
  #mark: number | undefined;
  #address: string | undefined;
  #sink: ProbeSink | undefined;
  #process: SpawnedProcess | undefined;
  #processDone: Promise<void> | undefined;
  #startedAt = 0;
  #base = 0;
  #highestLocal: number | undefined;
  #highestGlobal = 0;
  #announced = 0;
  #lastError: string | undefined;
  #restartTimer: TimerHandle | undefined;
  #running = false;
  #killing = false;

  constructor(options: IcmpProberOptions) {
    this.#o = options;
    this.target = options.host;
    this.family = isIPv6(options.host) ? 6 : 4;
    this.#mark = options.source.mark;
    this.#address = this.#ownAddress(options.source);
    this.#backoff = new Backoff({ ...PING_BACKOFF, ...options.backoff });
  }

  /** Whether a ping process is running now. */
  get processRunning(): boolean {
    return this.#process !== undefined;
  }

  /**
   * Starts the ping process (or waits for a fwmark).
   *
   * @throws {HealthError} when called twice.
   */
  start(sink: ProbeSink): void {
    if (this.#running) throw new HealthError(`ICMP prober for ${this.target} already started`);
    this.#running = true;
    this.#sink = sink;
    this.#spawn();
  }

  probe(): void {
    // Free-running: ping sends on its own schedule.
  }

  setSource(source: ProbeSource): void {
    const address = this.#ownAddress(source);
    if (source.mark === this.#mark && address === this.#address) return;
    this.#mark = source.mark;
    this.#address = address;
    if (!this.#running) return;
    this.#backoff.reset();
    void this.#restartNow();
  }

  nudge(): void {
    if (!this.#running || this.#process) return;
    this.#backoff.reset();
    this.#cancelRestart();
    this.#spawn();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#cancelRestart();
    await this.#kill();
  }

  /**
   * The source address ping binds to: for an IPv6 target the source's
   * address when it is a global IPv6 one (not link-local fe80::/10, not
   * IPv4); for an IPv4 target none (ping picks it).
   */
  #ownAddress(source: ProbeSource): string | undefined {
    if (this.family === 4) return undefined;
    const address = source.address;
    if (address === undefined || !isIPv6(address) || isLinkLocal6(address)) return undefined;
    return address;
  }

  async #restartNow(): Promise<void> {
    this.#cancelRestart();
    await this.#kill();
    if (this.#running && !this.#process) this.#spawn();
  }

  #spawn(): void {
    const sink = this.#sink;
    if (!sink || !this.#running) return;
    if (this.#mark === undefined) {
      sink.note(`ICMP ${this.target}: waiting for the uplink's fwmark`);
      return;
    }
    if (this.family === 6 && this.#address === undefined) {
      sink.note(`ICMP ${this.target}: waiting for the uplink's global IPv6 address`);
      return;
    }
    const args = pingArgs(
      this.target,
      this.#o.intervalMs,
      this.#o.timeoutMs,
      this.#mark,
      this.family === 6 ? this.#address : undefined,
    );
    const child = this.#o.spawner(this.#o.pingPath ?? "ping", args);
    this.#process = child;
    this.#startedAt = this.#o.clock.now();
    this.#base = this.#highestGlobal > 0 ? this.#highestGlobal + 1 : 0;
    this.#highestLocal = undefined;
    this.#lastError = undefined;
    const onLine = (line: string): void => {
      if (this.#process === child) this.#line(line);
    };
    child.onStdoutLine(onLine);
    child.onStderrLine(onLine);
    this.#processDone = new Promise((resolve) => {
      child.onExit((code, signal, error) => {
        this.#exited(child, code, signal, error);
        resolve();
      });
    });
  }

  #line(line: string): void {
    const sink = this.#sink;
    if (!sink) return;
    const parsed = parsePingLine(line);
    const now = this.#o.clock.now();
    switch (parsed.kind) {
      case "reply": {
        const seq = this.#global(parsed.seq);
        if (parsed.rttMs === null) sink.answered(seq, now);
        else sink.answered(seq, now, parsed.rttMs);
        break;
      }
      case "no-answer": {
        const seq = this.#global(parsed.seq);
        if (seq > this.#announced) {
          this.#announced = seq;
          sink.sent(seq, now - this.#o.intervalMs, { estimated: true });
        }
        break;
      }
      case "icmp-error":
        sink.failed(this.#global(parsed.seq), now, `${parsed.message} from ${parsed.from}`);
        break;
      case "error":
        this.#lastError = parsed.message;
        sink.note(`ICMP ${this.target}: ping: ${parsed.message}`);
        break;
      case "header":
      case "other":
        break;
    }
  }

  /** Global sequence number of a local icmp_seq of the current process. */
  #global(raw: number): number {
    const local = unwrapSeq(raw, this.#highestLocal);
    if (this.#highestLocal === undefined || local > this.#highestLocal) this.#highestLocal = local;
    const seq = this.#base + local;
    if (seq > this.#highestGlobal) this.#highestGlobal = seq;
    return seq;
  }

  #exited(
    child: SpawnedProcess,
    code: number | null,
    signal: string | null,
    error: Error | undefined,
  ): void {
    if (this.#process !== child) return;
    this.#process = undefined;
    this.#processDone = undefined;
    if (!this.#running || this.#killing) return;
    const delay = this.#backoff.next(this.#o.clock.now() - this.#startedAt);
    const how = error
      ? `could not start: ${error.message}`
      : signal !== null
        ? `killed by ${signal}`
        : `exited with code ${code ?? "?"}`;
    const why = this.#lastError === undefined ? "" : ` (${this.#lastError})`;
    this.#sink?.note(`ICMP ${this.target}: ping ${how}${why}; restarting in ${delay} ms`);
    this.#restartTimer = this.#o.clock.setTimeout(() => {
      this.#restartTimer = undefined;
      this.#spawn();
    }, delay);
  }

  #cancelRestart(): void {
    if (this.#restartTimer !== undefined) {
      this.#o.clock.clearTimeout(this.#restartTimer);
      this.#restartTimer = undefined;
    }
  }

  /** Ends the current process: SIGTERM, then SIGKILL after `killAfterMs`. */
  async #kill(): Promise<void> {
    const child = this.#process;
    const done = this.#processDone;
    if (!child || !done) return;
    this.#killing = true;
    child.kill("SIGTERM");
    const killer = this.#o.clock.setTimeout(() => {
      child.kill("SIGKILL");
    }, this.#o.killAfterMs ?? 2000);
    try {
      await done;
    } finally {
      this.#o.clock.clearTimeout(killer);
      this.#killing = false;
    }
  }
}

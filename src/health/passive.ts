/**
 * A passive health signal from real traffic: per uplink, the share of new
 * TCP connections from the LAN that got no answer within a short grace
 * time, from three named nft counters per uplink (SYNs out, SYN-ACKs back,
 * and refusals back: a TCP RST or an ICMP destination unreachable, see
 * `passiveObjects` in src/dataplane/nft.ts) read with
 * `list counters` (a long-lived `nft -i`, see src/kernel/session.ts) every
 * `periodMs` while LAN connections come, and every `idlePeriodMs` while
 * none do: the cost follows neither the number of connections nor the size
 * of the conntrack table, and an idle LAN costs one read a second.
 *
 * When the share jumps on one uplink (at least `minConnections` new
 * connections in the window, `unansweredFailPct` or more unanswered) while
 * another uplink answers (some new connections, at most
 * `othersAnsweredMaxPct` unanswered), that uplink is *suspect*: the caller
 * probes it at once (a burst, see UplinkMonitor.burst). Passive evidence
 * never takes an uplink down by itself; only the burst's probes can. With
 * no LAN traffic nothing is ever suspect.
 *
 * Counting: an answer is a SYN-ACK or a refusal. A connection to a closed
 * port (RST) or to an unreachable host (ICMP) was answered through the
 * uplink: the uplink works, only unanswered SYNs make it suspect.
 * SYNs from the LAN include retransmitted ones (conntrack calls a
 * connection `new` until it sees a reply), so on a dead uplink the share
 * stays at 100 % while clients retry. The SYNs of the window
 * `[t - grace - window, t - grace]` are compared with the SYN-ACKs of
 * `[t - grace - window, t]`: each connection gets `grace` ms to be answered.
 */
import type { Clock, TimerHandle } from "../clock.js";
import type { Family } from "../kernel/types.js";

/** Cumulative counts of one uplink (nft counter packets). */
export interface PassiveCounts {
  /** SYNs of new TCP connections from the LAN through the uplink. */
  syn: number;
  /** SYN-ACKs that came back through it. */
  synAck: number;
  /** Refusals that came back through it: TCP RSTs and ICMP destination unreachables (0 when not read). */
  refused?: number;
}

/** Answers of cumulative counts: SYN-ACKs and refusals. */
function answers(c: PassiveCounts): number {
  return c.synAck + (c.refused ?? 0);
}

/** Tuning of the passive signal; every field has a default. */
export interface PassiveOptions {
  /** Window over which the share is computed, ms; default 500. */
  windowMs: number;
  /** Time a new connection gets to be answered, ms; default 250. */
  graceMs: number;
  /** New connections an uplink needs in the window to be judged; default 3. */
  minConnections: number;
  /** Share of unanswered new connections (%) that makes an uplink suspect; default 50. */
  unansweredFailPct: number;
  /** Another uplink "answers" when at most this share (%) of its new connections is unanswered; default 25. */
  othersAnsweredMaxPct: number;
  /** An uplink is suspect at most once per this many ms; default 2000. */
  cooldownMs: number;
}

/** The defaults of {@link PassiveOptions}. */
export const PASSIVE_DEFAULTS: Readonly<PassiveOptions> = Object.freeze({
  windowMs: 500,
  graceMs: 250,
  minConnections: 3,
  unansweredFailPct: 50,
  othersAnsweredMaxPct: 25,
  cooldownMs: 2000,
});

/** One uplink's share over the window. */
export interface PassiveShare {
  /** New connections (SYNs) in the window. */
  connections: number;
  /** Of those, unanswered, % (0..100); null without connections. */
  unansweredPct: number | null;
}

/** An uplink the caller should probe at once. */
export interface PassiveSuspect {
  uplink: string;
  share: PassiveShare;
  /** Human form: `6 of 6 new connections unanswered (100%) while isp2 answers`. */
  reason: string;
}

interface Sample {
  at: number;
  counts: ReadonlyMap<string, PassiveCounts>;
}

/** Decides suspects from counter samples. Pure: time comes with each sample. */
export class PassiveDetector {
  readonly options: PassiveOptions;
  #samples: Sample[] = [];
  readonly #lastSuspect = new Map<string, number>();

  constructor(options: Partial<PassiveOptions> = {}) {
    this.options = { ...PASSIVE_DEFAULTS, ...options };
  }

  /**
   * Takes the counters read at `at` (ms) and returns the uplinks that are
   * suspect now (each at most once per cooldown). A counter that went
   * backwards (the table was reloaded) forgets that uplink's history.
   */
  sample(at: number, counts: ReadonlyMap<string, PassiveCounts>): PassiveSuspect[] {
    const last = this.#samples[this.#samples.length - 1];
    if (last !== undefined) {
      for (const [uplink, now] of counts) {
        const before = last.counts.get(uplink);
        if (before !== undefined && (now.syn < before.syn || answers(now) < answers(before))) {
          this.#samples = [];
          break;
        }
      }
    }
    this.#samples.push({ at, counts: new Map(counts) });
    const keep = at - this.options.windowMs - this.options.graceMs - 1000;
    while ((this.#samples[1]?.at ?? Infinity) <= keep) this.#samples.shift();

    const shares = this.shares(at);
    const suspects: PassiveSuspect[] = [];
    for (const [uplink, share] of shares) {
      if (share.connections < this.options.minConnections) continue;
      if ((share.unansweredPct ?? 0) < this.options.unansweredFailPct) continue;
      const answering = [...shares].filter(
        ([other, s]) =>
          other !== uplink &&
          s.connections > 0 &&
          (s.unansweredPct ?? 100) <= this.options.othersAnsweredMaxPct,
      );
      if (answering.length === 0) continue;
      const since = this.#lastSuspect.get(uplink);
      if (since !== undefined && at - since < this.options.cooldownMs) continue;
      this.#lastSuspect.set(uplink, at);
      const unanswered = Math.round((share.connections * (share.unansweredPct ?? 0)) / 100);
      suspects.push({
        uplink,
        share,
        reason:
          `${unanswered} of ${share.connections} new connections unanswered ` +
          `(${Math.round(share.unansweredPct ?? 0)}%) while ${answering.map(([n]) => n).join(", ")} answer${answering.length === 1 ? "s" : ""}`,
      });
    }
    return suspects;
  }

  /** Each uplink's share as of `at` (ms), from the samples taken so far. */
  shares(at: number): Map<string, PassiveShare> {
    const out = new Map<string, PassiveShare>();
    const { windowMs, graceMs } = this.options;
    const start = this.#at(at - graceMs - windowMs);
    const sent = this.#at(at - graceMs);
    const now = this.#samples[this.#samples.length - 1];
    if (start === undefined || sent === undefined || now === undefined || start === sent) {
      return out;
    }
    for (const [uplink, c] of now.counts) {
      const a = start.counts.get(uplink);
      const b = sent.counts.get(uplink);
      if (a === undefined || b === undefined) continue;
      const connections = b.syn - a.syn;
      const answered = answers(c) - answers(a);
      out.set(uplink, {
        connections,
        unansweredPct:
          connections > 0 ? Math.max(0, Math.min(100, (1 - answered / connections) * 100)) : null,
      });
    }
    return out;
  }

  /** The latest sample taken at or before `t`, if any. */
  #at(t: number): Sample | undefined {
    let found: Sample | undefined;
    for (const s of this.#samples) {
      if (s.at > t) break;
      found = s;
    }
    return found;
  }
}

/** Options of a {@link PassiveWatcher}. */
/**
 * The name the passive signal watches an uplink's `family` under: the
 * uplink's own name for IPv4, `NAME/6` for IPv6 (uplink names have no `/`),
 * so that each family is judged on its own connections.
 */
export function passiveName(uplink: string, family: Family): string {
  return family === 6 ? `${uplink}/6` : uplink;
}

/** The uplink and family of a {@link passiveName}. */
export function parsePassiveName(name: string): { uplink: string; family: Family } {
  return name.endsWith("/6")
    ? { uplink: name.slice(0, -2), family: 6 }
    : { uplink: name, family: 4 };
}

export interface PassiveWatcherOptions {
  clock: Clock;
  /**
   * Reads the named counters (name -> packets), e.g. Kernel.nftCounters of
   * uplinkd's table.
   */
  readCounters: () => Promise<ReadonlyMap<string, number>>;
  /** The uplinks to watch now: name and the counter names of its SYNs, SYN-ACKs and refusals. */
  uplinks: () => readonly { name: string; syn: string; synAck: string; refused?: string }[];
  /** An uplink is suspect: probe it at once. */
  onSuspect: (suspect: PassiveSuspect) => void;
  /** A read failed (the next period tries again). */
  onError?: (error: unknown) => void;
  /** Period of the reads while new LAN connections come, ms; default 200. */
  periodMs?: number;
  /**
   * Period of the reads while the SYN counters stand still (no new LAN
   * connection to judge), ms; default 1000. The first read that sees them
   * move switches to `periodMs` until they have stood still for the
   * detector's window, grace time and 2 s more.
   */
  idlePeriodMs?: number;
  /** Detector tuning. */
  detector?: Partial<PassiveOptions>;
}

/**
 * Reads the counters every `periodMs` while SYNs come and every
 * `idlePeriodMs` while they do not (never two reads at once), and feeds a
 * {@link PassiveDetector}. `start`/`stop`; the constructor does nothing.
 */
export class PassiveWatcher {
  readonly detector: PassiveDetector;
  readonly #o: PassiveWatcherOptions;
  #timer: TimerHandle | undefined;
  #running = false;
  #reading = false;
  /** SYNs counted over every uplink at the last read. */
  #lastSyns: number | undefined;
  /** Reads come every `periodMs` until then (clock ms). */
  #busyUntil = Number.NEGATIVE_INFINITY;

  constructor(options: PassiveWatcherOptions) {
    this.#o = options;
    this.detector = new PassiveDetector(options.detector);
  }

  /** Starts the periodic reads. Idempotent. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule();
  }

  /** Stops them. */
  stop(): void {
    this.#running = false;
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** One read now (tests call it directly); resolves once the sample is taken. */
  async tick(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    try {
      const counters = await this.#o.readCounters();
      const counts = new Map<string, PassiveCounts>();
      let syns = 0;
      for (const u of this.#o.uplinks()) {
        const syn = counters.get(u.syn);
        const synAck = counters.get(u.synAck);
        const refused = u.refused === undefined ? 0 : (counters.get(u.refused) ?? 0);
        if (syn !== undefined && synAck !== undefined) {
          counts.set(u.name, { syn, synAck, refused });
        }
        syns += syn ?? 0;
      }
      const now = this.#o.clock.now();
      if (this.#lastSyns !== undefined && syns !== this.#lastSyns) {
        const { windowMs, graceMs } = this.detector.options;
        this.#busyUntil = now + windowMs + graceMs + 2000;
      }
      this.#lastSyns = syns;
      for (const suspect of this.detector.sample(now, counts)) {
        this.#o.onSuspect(suspect);
      }
    } catch (error) {
      this.#o.onError?.(error);
    } finally {
      this.#reading = false;
    }
  }

  /** The delay before the next read, ms: `periodMs` while SYNs come, else `idlePeriodMs`. */
  get periodNow(): number {
    return this.#o.clock.now() < this.#busyUntil
      ? (this.#o.periodMs ?? 200)
      : (this.#o.idlePeriodMs ?? 1000);
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = this.#o.clock.setTimeout(() => {
      void this.tick().finally(() => {
        this.#schedule();
      });
    }, this.periodNow);
  }
}

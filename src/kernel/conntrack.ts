/**
 * Conntrack entries per mark, kept up to date from conntrack events instead
 * of dumping the whole table on every request.
 *
 * One long-running `conntrack -E -e NEW,DESTROY -o extended,id` reports each
 * entry when the kernel confirms it (NEW: sent at confirm time, after the
 * prerouting/output chains set `ct mark`) and when it goes (DESTROY, with
 * the mark it had). One dump (`conntrack -L -o extended,id`) gives the
 * baseline when the event stream starts, again when the kernel dropped
 * events (conntrack prints "WARNING: We have hit ENOBUFS! We are losing
 * events." on stderr and goes on), and at a long period as insurance
 * against marks changed behind our back. Between dumps the cost follows
 * connection churn, not the size of the table.
 *
 * Events that arrive while a dump runs are held and merged by entry id once
 * the dump is complete, so an entry created or destroyed during the dump is
 * counted exactly once (see {@link ConntrackTally}).
 *
 * Output formats (conntrack-tools 1.4.7, seen on this machine's kernel):
 *
 *     [NEW] ipv4     2 tcp      6 120 SYN_SENT src=... [UNREPLIED] src=... mark=256 id=2978528666
 *     [DESTROY] ipv4     2 udp      17 29 src=... mark=512 id=2315376541 [USERSPACE] portid=...
 *     ipv4     2 tcp      6 3565 ESTABLISHED src=... [ASSURED] mark=512 use=1 id=2950126287   (-L)
 *     NOTICE: Netlink socket buffer size has been set to 16777216 bytes.   (stderr, with -b)
 *     WARNING: We have hit ENOBUFS! We are losing events.                  (stderr)
 *
 * Lost events (seen on this machine's kernel, 6.18): a burst of a few
 * hundred events within milliseconds (300 entries loaded with `conntrack
 * -R`, 3,000 new UDP flows from one sender in ~30 ms, the clean-up of an
 * uplink) gives ENOBUFS whatever the `-b` buffer (tried 200 KB to 256 MB);
 * 150 entries loaded at once or a steady stream do not. So bursts are
 * recounted, at most one dump per 10 times the last dump's duration.
 *
 * Only IPv4 entries are counted (`-f ipv4`), as `conntrack -D` in the clean-up.
 */
import type { Clock, TimerHandle } from "../clock.js";
import type { ProcessSpawner, SpawnedProcess } from "../process/spawn.js";

/** One line of conntrack's output, classified. */
export type ConntrackLine =
  /** An event (`-E`): an entry was confirmed (`new`) or removed (`destroy`). */
  | { kind: "new" | "destroy"; id: number | null; mark: number }
  /** A table entry (`-L`). */
  | { kind: "entry"; id: number | null; mark: number }
  /** The kernel dropped events: the counts are no longer exact. */
  | { kind: "overrun" }
  /** The explanation printed after a lost-events warning (nothing more to do). */
  | { kind: "overrun-hint" }
  /** The event socket is open (the NOTICE printed with `-b`). */
  | { kind: "listening" }
  /** Anything else (summaries, messages). */
  | { kind: "other"; text: string };

/** The unsigned integer after ` NAME=` in `line`, or null when absent. */
function field(line: string, name: string): number | null {
  const key = ` ${name}=`;
  const at = line.indexOf(key);
  if (at < 0) return null;
  let end = at + key.length;
  while (end < line.length && line.charCodeAt(end) >= 48 && line.charCodeAt(end) <= 57) end++;
  if (end === at + key.length) return null;
  return Number(line.slice(at + key.length, end));
}

/**
 * Classifies one line of `conntrack -E` or `conntrack -L` output (`-o
 * extended,id`), stdout or stderr. An entry without `mark=` (a kernel
 * without CONFIG_NF_CONNTRACK_MARK) has mark 0; one without `id=` has id
 * null.
 */
export function parseConntrackLine(line: string): ConntrackLine {
  const text = line.trimStart();
  if (text.startsWith("[NEW]") || text.startsWith("[DESTROY]")) {
    return {
      kind: text.startsWith("[NEW]") ? "new" : "destroy",
      id: field(text, "id"),
      mark: (field(text, "mark") ?? 0) >>> 0,
    };
  }
  if (/^ipv[46] /.test(text)) {
    return { kind: "entry", id: field(text, "id"), mark: (field(text, "mark") ?? 0) >>> 0 };
  }
  if (text.includes("hit ENOBUFS")) return { kind: "overrun" };
  // The two lines conntrack prints after the ENOBUFS warning.
  if (/^This message means that the current netlink|^Please, check --buffer-size/.test(text)) {
    return { kind: "overrun-hint" };
  }
  if (text.startsWith("NOTICE: Netlink socket buffer size")) return { kind: "listening" };
  return { kind: "other", text };
}

interface HeldEvent {
  kind: "new" | "destroy";
  id: number | null;
  mark: number;
}

function add(counts: Map<number, number>, mark: number, delta: number): void {
  const next = (counts.get(mark) ?? 0) + delta;
  if (next > 0) counts.set(mark, next);
  else counts.delete(mark);
}

/**
 * Counts of conntrack entries per raw (unmasked) mark, from a baseline dump
 * and the events after it. Pure: no processes, no clock.
 *
 * A recount (`beginRecount`, `dumpEntry` per entry, `endRecount`) replaces
 * the counts; events that come in meanwhile are held and merged by id at
 * the end: a NEW whose id the dump listed is not counted twice, a DESTROY
 * whose id neither the dump nor a held NEW had is not subtracted. The ids
 * of the dump are kept only while a recount runs.
 */
export class ConntrackTally {
  #counts = new Map<number, number>();
  #ready = false;
  #recount: { counts: Map<number, number>; ids: Set<number>; held: HeldEvent[] } | undefined;

  /** Whether a baseline has been taken (counts are known). */
  get ready(): boolean {
    return this.#ready;
  }

  /** Entries counted now (every mark); 0 before the first baseline. */
  get total(): number {
    let n = 0;
    for (const count of this.#counts.values()) n += count;
    return n;
  }

  /** Whether a recount is in progress. */
  get recounting(): boolean {
    return this.#recount !== undefined;
  }

  /** An event: an entry with `mark` (raw) was confirmed or removed. Ignored before the first baseline. */
  event(kind: "new" | "destroy", id: number | null, mark: number): void {
    if (this.#recount) {
      this.#recount.held.push({ kind, id, mark });
      return;
    }
    if (this.#ready) add(this.#counts, mark, kind === "new" ? 1 : -1);
  }

  /** Starts a recount; a recount already running is dropped. */
  beginRecount(): void {
    this.#recount = { counts: new Map(), ids: new Set(), held: [] };
  }

  /** One entry of the dump. Ignored when no recount runs. */
  dumpEntry(id: number | null, mark: number): void {
    const recount = this.#recount;
    if (!recount) return;
    add(recount.counts, mark, 1);
    if (id !== null) recount.ids.add(id);
  }

  /** The dump is complete: its counts, with the held events merged, become the counts. */
  endRecount(): void {
    const recount = this.#recount;
    if (!recount) return;
    this.#recount = undefined;
    const { counts, ids } = recount;
    const createdSince = new Set<number>();
    for (const e of recount.held) {
      if (e.id === null) {
        // Without ids nothing can be matched: apply as it comes.
        add(counts, e.mark, e.kind === "new" ? 1 : -1);
      } else if (e.kind === "new") {
        if (ids.has(e.id)) continue;
        createdSince.add(e.id);
        add(counts, e.mark, 1);
      } else if (ids.delete(e.id) || createdSince.delete(e.id)) {
        add(counts, e.mark, -1);
      }
    }
    this.#counts = counts;
    this.#ready = true;
  }

  /** The dump failed: the held events are applied to the old counts (if any). */
  abortRecount(): void {
    const recount = this.#recount;
    if (!recount) return;
    this.#recount = undefined;
    if (!this.#ready) return;
    for (const e of recount.held) add(this.#counts, e.mark, e.kind === "new" ? 1 : -1);
  }

  /**
   * Entries per mark under `mask`: `(mark & mask) -> entries`, every raw
   * mark summed into its masked value; null before the first baseline.
   */
  countsByMark(mask: number): Map<number, number> | null {
    if (!this.#ready) return null;
    const out = new Map<number, number>();
    for (const [mark, n] of this.#counts) add(out, (mark & mask) >>> 0, n);
    return out;
  }
}

/** Restart backoff of the event process, ms. */
export interface ConntrackBackoff {
  /** First delay after an exit; doubles per exit in a row. Default 500. */
  initialMs: number;
  /** Upper bound of the delay. Default 30000. */
  maxMs: number;
  /** A run at least this long resets the delay to `initialMs`. Default 60000. */
  stableMs: number;
}

/** A message for the daemon's log. */
export type ConntrackNote = (level: "info" | "warn", message: string) => void;

/** Options of a {@link ConntrackWatch}. */
export interface ConntrackWatchOptions {
  spawner: ProcessSpawner;
  clock: Clock;
  /** Path of conntrack-tools' `conntrack`; default `conntrack`. */
  conntrackPath?: string;
  /** Netlink receive buffer of the event socket (`-b`), bytes; default 8 MiB. */
  bufferBytes?: number;
  /** Recount this long after the last one even without lost events, ms; default 30 min. */
  recountEveryMs?: number;
  /**
   * At least this long between the starts of two dumps, ms; default 5000.
   * The gap grows to 10 times the last dump's duration, so that recounts
   * after lost events take at most about a tenth of the time even when
   * events are lost all the time (a dump of 250,000 entries takes ~2 s).
   */
  recountGapMs?: number;
  /** Wait this long after lost events before dumping (the burst may go on), ms; default 1000. */
  overrunDelayMs?: number;
  /** Take the event socket as open this long after the start if no NOTICE came, ms; default 1000. */
  listenTimeoutMs?: number;
  /** A dump still running after this is killed (and retried later), ms; default 60000. */
  dumpTimeoutMs?: number;
  /** ms between SIGTERM and SIGKILL on stop; default 2000. */
  killAfterMs?: number;
  backoff?: Partial<ConntrackBackoff>;
  /** Where restarts, lost events and failed dumps are reported. */
  onNote?: ConntrackNote;
}

/** Counters of a {@link ConntrackWatch}, for tests and the benchmark. */
export interface ConntrackWatchStats {
  /** Event processes started. */
  eventStarts: number;
  /** Dumps completed. */
  recounts: number;
  /** Dumps that failed or timed out. */
  failedRecounts: number;
  /** Lost-events warnings seen. */
  overruns: number;
  /** Events applied (NEW + DESTROY). */
  events: number;
}

/**
 * Keeps conntrack entries per mark from one long-running `conntrack -E`
 * and a dump at start, after lost events or a restart, and every
 * `recountEveryMs`. The event process is restarted when it exits (backoff
 * 500 ms doubling to 30 s, reset by a 60 s run), each exit reported to
 * `onNote`. Counts stay at their last value while the process is down.
 */
export class ConntrackWatch {
  readonly #o: ConntrackWatchOptions;
  readonly #backoff: ConntrackBackoff;
  readonly #tally = new ConntrackTally();
  readonly #stats: ConntrackWatchStats = {
    eventStarts: 0,
    recounts: 0,
    failedRecounts: 0,
    overruns: 0,
    events: 0,
  };
  #running = false;
  #events: SpawnedProcess | undefined;
  #eventsDone: Promise<void> | undefined;
  #eventsStartedAt = 0;
  #listening = false;
  #listenTimer: TimerHandle | undefined;
  #restartTimer: TimerHandle | undefined;
  #failures = 0;
  #lastEventError: string | undefined;
  #dump: SpawnedProcess | undefined;
  #dumpDone: Promise<void> | undefined;
  #dumpTimer: TimerHandle | undefined;
  #recountTimer: TimerHandle | undefined;
  #recountDueAt = 0;
  #recountAgain = false;
  #lastDumpAt = Number.NEGATIVE_INFINITY;
  /** How long the last completed dump took, ms. */
  #lastDumpMs = 0;
  #overrunNoted = false;

  constructor(options: ConntrackWatchOptions) {
    this.#o = options;
    this.#backoff = {
      initialMs: options.backoff?.initialMs ?? 500,
      maxMs: options.backoff?.maxMs ?? 30_000,
      stableMs: options.backoff?.stableMs ?? 60_000,
    };
  }

  /** Counters since the start (a copy). */
  get stats(): ConntrackWatchStats {
    return { ...this.#stats };
  }

  /** Whether the event process runs now. */
  get listening(): boolean {
    return this.#events !== undefined && this.#listening;
  }

  /** Starts the event process (the first dump follows once it listens). Idempotent. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#spawnEvents();
  }

  /**
   * Entries per mark under `mask`: `(mark & mask) -> entries`; null until the
   * first dump has completed. Never waits and never spawns.
   */
  countsByMark(mask: number): Map<number, number> | null {
    return this.#tally.countsByMark(mask);
  }

  /** Stops both processes (SIGTERM, then SIGKILL after `killAfterMs`) and every timer. */
  async stop(): Promise<void> {
    this.#running = false;
    for (const timer of [this.#listenTimer, this.#restartTimer, this.#recountTimer]) {
      if (timer !== undefined) this.#o.clock.clearTimeout(timer);
    }
    this.#listenTimer = this.#restartTimer = this.#recountTimer = undefined;
    await Promise.all([
      this.#kill(this.#events, this.#eventsDone),
      this.#kill(this.#dump, this.#dumpDone),
    ]);
  }

  #note(level: "info" | "warn", message: string): void {
    this.#o.onNote?.(level, message);
  }

  #spawnEvents(): void {
    if (!this.#running) return;
    const args = [
      "-E",
      "-f",
      "ipv4",
      "-e",
      "NEW,DESTROY",
      "-o",
      "extended,id",
      "-b",
      String(this.#o.bufferBytes ?? 8 * 1024 * 1024),
    ];
    const child = this.#o.spawner(this.#o.conntrackPath ?? "conntrack", args);
    this.#events = child;
    this.#eventsStartedAt = this.#o.clock.now();
    this.#listening = false;
    this.#lastEventError = undefined;
    this.#stats.eventStarts++;
    child.onStdoutLine((line) => {
      if (this.#events !== child) return;
      const parsed = parseConntrackLine(line);
      if (parsed.kind === "new" || parsed.kind === "destroy") {
        this.#stats.events++;
        this.#tally.event(parsed.kind, parsed.id, parsed.mark);
      }
    });
    child.onStderrLine((line) => {
      if (this.#events !== child) return;
      const parsed = parseConntrackLine(line);
      if (parsed.kind === "overrun") this.#overrun();
      else if (parsed.kind === "listening") this.#nowListening(child);
      else if (parsed.kind === "other" && parsed.text !== "" && !/have been shown/.test(line)) {
        this.#lastEventError = parsed.text;
      }
    });
    this.#listenTimer = this.#o.clock.setTimeout(() => {
      this.#listenTimer = undefined;
      this.#nowListening(child);
    }, this.#o.listenTimeoutMs ?? 1000);
    this.#eventsDone = new Promise((resolve) => {
      child.onExit((code, signal, error) => {
        this.#eventsExited(child, code, signal, error);
        resolve();
      });
    });
  }

  #nowListening(child: SpawnedProcess): void {
    if (this.#events !== child || this.#listening) return;
    this.#listening = true;
    if (this.#listenTimer !== undefined) {
      this.#o.clock.clearTimeout(this.#listenTimer);
      this.#listenTimer = undefined;
    }
    // A new event stream: events may have been missed since the last one.
    if (this.#recountTimer !== undefined) {
      this.#o.clock.clearTimeout(this.#recountTimer);
      this.#recountTimer = undefined;
    }
    this.#startDump();
  }

  #overrun(): void {
    this.#stats.overruns++;
    if (!this.#overrunNoted) {
      this.#overrunNoted = true;
      this.#note("warn", "conntrack events were lost (netlink buffer full); recounting entries");
    }
    this.#requestRecount(this.#o.overrunDelayMs ?? 1000);
  }

  #eventsExited(
    child: SpawnedProcess,
    code: number | null,
    signal: string | null,
    error: Error | undefined,
  ): void {
    if (this.#events !== child) return;
    this.#events = undefined;
    this.#eventsDone = undefined;
    this.#listening = false;
    if (this.#listenTimer !== undefined) {
      this.#o.clock.clearTimeout(this.#listenTimer);
      this.#listenTimer = undefined;
    }
    if (!this.#running) return;
    // Events held for a running dump are incomplete now: drop that dump.
    if (this.#dump) {
      this.#dump.kill("SIGKILL");
      this.#dump = undefined;
      this.#dumpDone = undefined;
      this.#tally.abortRecount();
    }
    const ranMs = this.#o.clock.now() - this.#eventsStartedAt;
    if (ranMs >= this.#backoff.stableMs) this.#failures = 0;
    const delay = Math.min(
      this.#backoff.maxMs,
      this.#backoff.initialMs * 2 ** Math.min(this.#failures, 30),
    );
    this.#failures++;
    const how = error
      ? `could not start: ${error.message}`
      : signal !== null
        ? `was killed by ${signal}`
        : `exited with code ${code ?? "?"}`;
    const why = this.#lastEventError === undefined ? "" : ` (${this.#lastEventError})`;
    this.#note("warn", `conntrack -E ${how}${why}; restarting in ${delay} ms`);
    this.#restartTimer = this.#o.clock.setTimeout(() => {
      this.#restartTimer = undefined;
      this.#spawnEvents();
    }, delay);
  }

  /**
   * Asks for a dump in `delayMs`, but not before `recountGapMs` (or 10
   * times the last dump's duration) after the start of the last one. An earlier request replaces
   * a later one; a dump running now is followed by another (the events it
   * held may be incomplete).
   */
  #requestRecount(delayMs: number): void {
    if (!this.#running) return;
    if (this.#dump) {
      this.#recountAgain = true;
      return;
    }
    const now = this.#o.clock.now();
    const gap = Math.max(this.#o.recountGapMs ?? 5000, 10 * this.#lastDumpMs);
    const due = Math.max(now + delayMs, this.#lastDumpAt + gap);
    if (this.#recountTimer !== undefined) {
      if (this.#recountDueAt <= due) return;
      this.#o.clock.clearTimeout(this.#recountTimer);
    }
    this.#recountDueAt = due;
    this.#recountTimer = this.#o.clock.setTimeout(() => {
      this.#recountTimer = undefined;
      this.#startDump();
    }, due - now);
  }

  #startDump(): void {
    if (!this.#running || !this.#listening || this.#dump) return;
    this.#recountAgain = false;
    this.#overrunNoted = false;
    this.#lastDumpAt = this.#o.clock.now();
    this.#tally.beginRecount();
    const child = this.#o.spawner(this.#o.conntrackPath ?? "conntrack", [
      "-L",
      "-f",
      "ipv4",
      "-o",
      "extended,id",
    ]);
    this.#dump = child;
    let lastStderr = "";
    let timedOut = false;
    let entries = 0;
    child.onStdoutLine((line) => {
      if (this.#dump !== child) return;
      const parsed = parseConntrackLine(line);
      if (parsed.kind === "entry") {
        entries++;
        this.#tally.dumpEntry(parsed.id, parsed.mark);
      }
    });
    child.onStderrLine((line) => {
      if (line.trim() !== "") lastStderr = line.trim();
    });
    const timeoutMs = this.#o.dumpTimeoutMs ?? 60_000;
    this.#dumpTimer = this.#o.clock.setTimeout(() => {
      this.#dumpTimer = undefined;
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    this.#dumpDone = new Promise((resolve) => {
      child.onExit((code, signal, error) => {
        if (this.#dumpTimer !== undefined) {
          this.#o.clock.clearTimeout(this.#dumpTimer);
          this.#dumpTimer = undefined;
        }
        if (this.#dump === child) {
          this.#dump = undefined;
          this.#dumpDone = undefined;
          this.#dumpExited(code, signal, error, { timedOut, timeoutMs, lastStderr, entries });
        }
        resolve();
      });
    });
  }

  #dumpExited(
    code: number | null,
    signal: string | null,
    error: Error | undefined,
    dump: { timedOut: boolean; timeoutMs: number; lastStderr: string; entries: number },
  ): void {
    const { timedOut, timeoutMs, lastStderr } = dump;
    if (code === 0 && !error) {
      this.#lastDumpMs = this.#o.clock.now() - this.#lastDumpAt;
      this.#tally.endRecount();
      this.#stats.recounts++;
      this.#note(
        "info",
        `conntrack entries counted: ${this.#tally.total} (dump of ${dump.entries} in ` +
          `${Math.round(this.#lastDumpMs)} ms, events during it merged)`,
      );
    } else {
      this.#tally.abortRecount();
      this.#stats.failedRecounts++;
      if (!this.#running) return;
      const how = error
        ? `could not start: ${error.message}`
        : timedOut
          ? `took longer than ${timeoutMs} ms and was killed`
          : signal !== null
            ? `was killed by ${signal}`
            : `exited with code ${code ?? "?"}${lastStderr === "" ? "" : ` (${lastStderr})`}`;
      this.#note("warn", `conntrack -L ${how}; connection counts kept from events`);
      this.#recountAgain = true;
    }
    if (!this.#running) return;
    if (this.#recountAgain) this.#requestRecount(0);
    else this.#requestRecount(this.#o.recountEveryMs ?? 30 * 60_000);
  }

  /** Ends a process: SIGTERM, then SIGKILL after `killAfterMs`. */
  async #kill(child: SpawnedProcess | undefined, done: Promise<void> | undefined): Promise<void> {
    if (!child || !done) return;
    child.kill("SIGTERM");
    const killer = this.#o.clock.setTimeout(() => {
      child.kill("SIGKILL");
    }, this.#o.killAfterMs ?? 2000);
    await done;
    this.#o.clock.clearTimeout(killer);
  }
}

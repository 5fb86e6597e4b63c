import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ManualClock } from "../fakes/clock.js";
import type { ProcessSpawner, SpawnedProcess } from "../../src/process/spawn.js";
import {
  ConntrackTally,
  ConntrackWatch,
  parseConntrackLine,
  type ConntrackWatchOptions,
} from "../../src/kernel/conntrack.js";

/** One scripted `conntrack` process: the test prints its lines and ends it. */
class FakeProcess {
  readonly out: ((line: string) => void)[] = [];
  readonly err: ((line: string) => void)[] = [];
  readonly exits: ((code: number | null, signal: string | null, error?: Error) => void)[] = [];
  readonly signals: string[] = [];
  alive = true;
  constructor(readonly args: readonly string[]) {}

  get mode(): "events" | "dump" {
    return this.args[0] === "-E" ? "events" : "dump";
  }
  stdout(...lines: string[]): void {
    for (const line of lines) for (const l of this.out) l(line);
  }
  stderr(...lines: string[]): void {
    for (const line of lines) for (const l of this.err) l(line);
  }
  exit(code: number | null, signal: string | null = null, error?: Error): void {
    if (!this.alive) return;
    this.alive = false;
    for (const l of this.exits) l(code, signal, error);
  }
}

class FakeConntrack {
  readonly processes: FakeProcess[] = [];
  readonly spawner: ProcessSpawner = (_file, args) => {
    const p = new FakeProcess(args);
    this.processes.push(p);
    const spawned: SpawnedProcess = {
      pid: 1000 + this.processes.length,
      onStdoutLine: (l) => p.out.push(l),
      onStderrLine: (l) => p.err.push(l),
      onExit: (l) => p.exits.push(l),
      kill: (signal = "SIGTERM") => {
        if (!p.alive) return;
        p.signals.push(signal);
        p.exit(null, signal);
      },
    };
    return spawned;
  };
  /** The running event process. */
  get events(): FakeProcess {
    const p = this.processes.filter((x) => x.mode === "events" && x.alive).at(-1);
    assert.ok(p, "an event process runs");
    return p;
  }
  /** The running dump. */
  get dump(): FakeProcess {
    const p = this.processes.filter((x) => x.mode === "dump" && x.alive).at(-1);
    assert.ok(p, "a dump runs");
    return p;
  }
  count(mode: "events" | "dump"): number {
    return this.processes.filter((x) => x.mode === mode).length;
  }
}

const LISTENING = "NOTICE: Netlink socket buffer size has been set to 16777216 bytes.";
const OVERRUN = "WARNING: We have hit ENOBUFS! We are losing events.";

function entry(id: number, mark: number): string {
  return `ipv4     2 tcp      6 3565 ESTABLISHED src=100.64.100.2 dst=198.51.100.80 sport=${id % 60000} dport=80 [UNREPLIED] src=198.51.100.80 dst=100.64.100.2 sport=80 dport=${id % 60000} mark=${mark} use=1 id=${id}`;
}
function created(id: number, mark: number): string {
  return `    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=100.64.100.2 dst=198.51.100.80 sport=40000 dport=80 [UNREPLIED] src=198.51.100.80 dst=100.64.100.2 sport=80 dport=40000 mark=${mark} id=${id}`;
}
function destroyed(id: number, mark: number): string {
  return `[DESTROY] ipv4     2 udp      17 29 src=100.64.100.2 dst=198.51.100.53 sport=5353 dport=53 src=198.51.100.53 dst=100.64.100.2 sport=53 dport=5353 mark=${mark} id=${id} [USERSPACE] portid=4080939346 progname=conntrack`;
}

function watch(extra: Partial<ConntrackWatchOptions> = {}): {
  clock: ManualClock;
  ct: FakeConntrack;
  w: ConntrackWatch;
  notes: string[];
} {
  const clock = new ManualClock();
  const ct = new FakeConntrack();
  const notes: string[] = [];
  const w = new ConntrackWatch({
    spawner: ct.spawner,
    clock,
    onNote: (level, message) => notes.push(`${level}: ${message}`),
    ...extra,
  });
  return { clock, ct, w, notes };
}

describe("conntrack output lines", () => {
  test("events, table entries, lost events and the listening notice are told apart", () => {
    assert.deepEqual(parseConntrackLine(created(7, 256)), { kind: "new", id: 7, mark: 256 });
    assert.deepEqual(parseConntrackLine(destroyed(8, 512)), { kind: "destroy", id: 8, mark: 512 });
    assert.deepEqual(parseConntrackLine(entry(2950126287, 4294967295)), {
      kind: "entry",
      id: 2950126287,
      mark: 4294967295,
    });
    assert.deepEqual(parseConntrackLine(OVERRUN), { kind: "overrun" });
    assert.deepEqual(parseConntrackLine(LISTENING), { kind: "listening" });
    assert.deepEqual(parseConntrackLine("Please, check --buffer-size in conntrack(8) manpage."), {
      kind: "overrun-hint",
    });
    assert.equal(
      parseConntrackLine("conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.")
        .kind,
      "other",
    );
  });

  test("portid= is not read as the entry id, and a missing mark is mark 0", () => {
    const line = "[DESTROY] ipv4     2 udp      17 29 src=1.2.3.4 [USERSPACE] portid=99 id=5";
    assert.deepEqual(parseConntrackLine(line), { kind: "destroy", id: 5, mark: 0 });
    const noId = "[NEW] ipv4     2 udp      17 29 src=1.2.3.4 mark=3 [USERSPACE] portid=99";
    assert.deepEqual(parseConntrackLine(noId), { kind: "new", id: null, mark: 3 });
  });
});

describe("conntrack tally", () => {
  test("counts are unknown before the first dump and events before it are ignored", () => {
    const t = new ConntrackTally();
    t.event("new", 1, 256);
    assert.equal(t.countsByMark(0xff00), null);
    t.beginRecount();
    t.dumpEntry(2, 256);
    t.endRecount();
    assert.deepEqual(t.countsByMark(0xff00), new Map([[256, 1]]));
  });

  test("events after the dump add and remove entries per masked mark", () => {
    const t = new ConntrackTally();
    t.beginRecount();
    t.dumpEntry(1, 0x100);
    t.dumpEntry(2, 0x10100); // another user's bit outside the mask
    t.dumpEntry(3, 0x200);
    t.endRecount();
    t.event("new", 4, 0x100);
    t.event("destroy", 3, 0x200);
    assert.deepEqual(t.countsByMark(0xff00), new Map([[0x100, 3]]));
    assert.deepEqual(
      t.countsByMark(0xffffffff),
      new Map([
        [0x100, 2],
        [0x10100, 1],
      ]),
    );
  });

  test("events during a dump are merged by id: nothing counted twice, nothing subtracted twice", () => {
    const t = new ConntrackTally();
    t.beginRecount();
    // 10 and 11 exist before the dump; 12 is created during it and listed;
    // 13 is created during it after the dump passed its slot; 11 goes
    // after the dump listed it; 14 is created and destroyed before the dump
    // reached it; 15 existed but went before the dump reached it.
    t.dumpEntry(10, 256);
    t.dumpEntry(11, 256);
    t.event("new", 12, 256);
    t.dumpEntry(12, 256);
    t.event("new", 13, 512);
    t.event("destroy", 11, 256);
    t.event("new", 14, 512);
    t.event("destroy", 14, 512);
    t.event("destroy", 15, 512);
    t.endRecount();
    // Present now: 10, 12 (mark 256) and 13 (mark 512).
    assert.deepEqual(
      t.countsByMark(0xff00),
      new Map([
        [256, 2],
        [512, 1],
      ]),
    );
  });

  test("a failed dump keeps the old counts and applies the events it held", () => {
    const t = new ConntrackTally();
    t.beginRecount();
    t.dumpEntry(1, 256);
    t.endRecount();
    t.beginRecount();
    t.dumpEntry(1, 256);
    t.event("new", 2, 256);
    t.abortRecount();
    assert.deepEqual(t.countsByMark(0xff00), new Map([[256, 2]]));
  });
});

describe("conntrack watch", () => {
  test("listens for NEW and DESTROY events first, then dumps once the socket is open", () => {
    const { clock, ct, w, notes } = watch();
    w.start();
    assert.deepEqual(ct.events.args, [
      "-E",
      "-f",
      "ipv4",
      "-e",
      "NEW,DESTROY",
      "-o",
      "extended,id",
      "-b",
      String(8 * 1024 * 1024),
    ]);
    assert.equal(ct.count("dump"), 0, "no dump before the event socket is open");
    ct.events.stderr(LISTENING);
    assert.deepEqual(ct.dump.args, ["-L", "-f", "ipv4", "-o", "extended,id"]);
    ct.dump.stdout(entry(1, 256), entry(2, 256), entry(3, 512));
    assert.equal(w.countsByMark(0xff00), null, "unknown until the dump is complete");
    clock.advance(40);
    ct.events.stdout(created(9, 512));
    ct.dump.exit(0);
    assert.deepEqual(notes, [
      "info: conntrack entries counted: 4 (dump of 3 in 40 ms, events during it merged)",
    ]);
    ct.events.stdout(destroyed(9, 512));
    assert.deepEqual(
      w.countsByMark(0xff00),
      new Map([
        [256, 2],
        [512, 1],
      ]),
    );
    ct.events.stdout(created(4, 512), destroyed(1, 256));
    assert.deepEqual(
      w.countsByMark(0xff00),
      new Map([
        [256, 1],
        [512, 2],
      ]),
    );
  });

  test("without the NOTICE line, the dump starts after listenTimeoutMs", () => {
    const { clock, ct, w } = watch({ listenTimeoutMs: 300 });
    w.start();
    clock.advance(299);
    assert.equal(ct.count("dump"), 0);
    clock.advance(1);
    assert.equal(ct.count("dump"), 1);
  });

  test("lost events bring a fresh dump after overrunDelayMs, at most one per recountGapMs", () => {
    const { clock, ct, w, notes } = watch({ overrunDelayMs: 1000, recountGapMs: 5000 });
    w.start();
    ct.events.stderr(LISTENING);
    ct.dump.stdout(entry(1, 256));
    ct.dump.exit(0);
    ct.events.stderr(OVERRUN, OVERRUN);
    assert.equal(notes.filter((n) => n.includes("lost")).length, 1, "one note per burst");
    clock.advance(4999);
    assert.equal(ct.count("dump"), 1, "not within the gap after the first dump");
    clock.advance(1);
    assert.equal(ct.count("dump"), 2);
    // The kernel lost the DESTROY of 1 and the NEW of 2: the dump tells.
    ct.dump.stdout(entry(2, 512));
    ct.dump.exit(0);
    assert.deepEqual(w.countsByMark(0xff00), new Map([[512, 1]]));
    assert.equal(w.stats.recounts, 2);
    assert.equal(w.stats.overruns, 2);
  });

  test("the gap between dumps grows to ten times the last dump's duration", () => {
    const { clock, ct, w } = watch({ recountGapMs: 5000, overrunDelayMs: 1000 });
    w.start();
    ct.events.stderr(LISTENING);
    clock.advance(2000); // a slow dump: 2 s
    ct.dump.exit(0);
    ct.events.stderr(OVERRUN);
    clock.advance(17_999);
    assert.equal(ct.count("dump"), 1, "not before 20 s after the start of the last dump");
    clock.advance(1);
    assert.equal(ct.count("dump"), 2);
  });

  test("lost events during a dump bring another dump after it", () => {
    const { clock, ct, w } = watch({ recountGapMs: 5000 });
    w.start();
    ct.events.stderr(LISTENING);
    ct.events.stderr(OVERRUN);
    ct.dump.exit(0);
    assert.equal(ct.count("dump"), 1);
    clock.advance(5000);
    assert.equal(ct.count("dump"), 2);
  });

  test("a dump is repeated every recountEveryMs without lost events", () => {
    const { clock, ct, w } = watch({ recountEveryMs: 60_000 });
    w.start();
    ct.events.stderr(LISTENING);
    ct.dump.exit(0);
    clock.advance(59_999);
    assert.equal(ct.count("dump"), 1);
    clock.advance(1);
    assert.equal(ct.count("dump"), 2);
  });

  test("an overrun is not held back by the long periodic recount", () => {
    const { clock, ct, w } = watch({ recountEveryMs: 60_000, recountGapMs: 5000 });
    w.start();
    ct.events.stderr(LISTENING);
    ct.dump.exit(0);
    clock.advance(10_000);
    ct.events.stderr(OVERRUN);
    clock.advance(1000);
    assert.equal(ct.count("dump"), 2);
  });

  test("a dying event process is logged and restarted with backoff, then recounted", () => {
    const { clock, ct, w, notes } = watch({
      backoff: { initialMs: 500, maxMs: 2000, stableMs: 60_000 },
      listenTimeoutMs: 100_000,
    });
    w.start();
    ct.events.stderr(LISTENING);
    ct.dump.stdout(entry(1, 256));
    ct.dump.exit(0);
    ct.events.stderr("conntrack v1.4.7 (conntrack-tools): Operation not permitted");
    ct.events.stderr(
      OVERRUN,
      "This message means that the current netlink socket buffer size is too small.",
      "Please, check --buffer-size in conntrack(8) manpage.",
    );
    ct.events.exit(1);
    assert.match(
      notes.at(-1) ?? "",
      /conntrack -E exited with code 1 \(.*Operation not permitted\); restarting in 500 ms/,
    );
    assert.deepEqual(w.countsByMark(0xff00), new Map([[256, 1]]), "last counts kept meanwhile");
    clock.advance(499);
    assert.equal(ct.count("events"), 1);
    clock.advance(1);
    assert.equal(ct.count("events"), 2);
    ct.events.exit(1);
    clock.advance(999);
    assert.equal(ct.count("events"), 2);
    clock.advance(1);
    assert.equal(ct.count("events"), 3);
    ct.events.exit(1);
    clock.advance(2000);
    ct.events.exit(1);
    assert.match(notes.at(-1) ?? "", /restarting in 2000 ms/, "capped at maxMs");
    clock.advance(2000);
    ct.events.stderr(LISTENING);
    assert.equal(ct.count("dump"), 2, "a new event stream is recounted at once");
  });

  test("a missing conntrack is reported, not thrown", () => {
    const { ct, w, notes } = watch();
    w.start();
    ct.events.exit(null, null, new Error("spawn conntrack ENOENT"));
    assert.match(notes.at(-1) ?? "", /conntrack -E could not start: spawn conntrack ENOENT/);
  });

  test("the event process dying during a dump drops that dump", () => {
    const { clock, ct, w } = watch({ backoff: { initialMs: 100 } });
    w.start();
    ct.events.stderr(LISTENING);
    const dump = ct.dump;
    dump.stdout(entry(1, 256));
    ct.events.exit(1);
    assert.equal(dump.alive, false);
    assert.deepEqual(dump.signals, ["SIGKILL"]);
    assert.equal(w.countsByMark(0xff00), null);
    clock.advance(100);
    ct.events.stderr(LISTENING);
    ct.dump.stdout(entry(1, 256), entry(2, 256));
    ct.dump.exit(0);
    assert.deepEqual(w.countsByMark(0xff00), new Map([[256, 2]]));
  });

  test("a failing or hanging dump is logged, the old counts stay, and it is retried", () => {
    const { clock, ct, w, notes } = watch({ dumpTimeoutMs: 10_000, recountGapMs: 5000 });
    w.start();
    ct.events.stderr(LISTENING);
    ct.dump.stdout(entry(1, 256));
    ct.dump.exit(0);
    ct.events.stderr(OVERRUN);
    clock.advance(5000);
    ct.dump.stderr("conntrack v1.4.7 (conntrack-tools): Operation failed: invalid parameters");
    ct.dump.exit(1);
    assert.match(notes.at(-1) ?? "", /conntrack -L exited with code 1 \(.*invalid parameters\)/);
    assert.deepEqual(w.countsByMark(0xff00), new Map([[256, 1]]));
    clock.advance(5000);
    const hanging = ct.dump;
    clock.advance(10_000);
    assert.equal(hanging.alive, false);
    assert.match(notes.at(-1) ?? "", /conntrack -L took longer than 10000 ms and was killed/);
    assert.equal(w.stats.failedRecounts, 2);
  });

  test("stop ends both processes and every timer", async () => {
    const { clock, ct, w } = watch();
    w.start();
    ct.events.stderr(LISTENING);
    const events = ct.events;
    const dump = ct.dump;
    await w.stop();
    assert.equal(events.alive, false);
    assert.equal(dump.alive, false);
    assert.equal(clock.pending, 0);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../fakes/clock.js";
import { FakePing } from "../fakes/health.js";
import {
  IcmpProber,
  isLinkLocal6,
  parsePingLine,
  pingArgs,
  unwrapSeq,
} from "../../src/health/ping.js";
import { nodeSpawner, type ProcessSpawner, type SpawnedProcess } from "../../src/process/spawn.js";
import type { ProbeSink } from "../../src/health/prober.js";
import { ProbeWindow } from "../../src/health/window.js";

describe("ping output parser (iputils 20221126, ping -n -D -O)", () => {
  it("parses a reply", () => {
    assert.deepEqual(
      parsePingLine(
        "[1795220394.644500] 64 bytes from 198.51.100.1: icmp_seq=1 ttl=64 time=0.075 ms",
      ),
      {
        kind: "reply",
        timestamp: 1795220394.6445,
        from: "198.51.100.1",
        seq: 1,
        ttl: 64,
        rttMs: 0.075,
        duplicate: false,
      },
    );
  });

  it("parses RTTs printed with fewer decimals, duplicates and replies without time", () => {
    const slow = parsePingLine("[1.5] 64 bytes from 1.2.3.4: icmp_seq=7 ttl=52 time=123 ms");
    assert.equal(slow.kind === "reply" && slow.rttMs, 123);
    const dup = parsePingLine("64 bytes from 1.2.3.4: icmp_seq=7 ttl=52 time=12.3 ms (DUP!)");
    assert.equal(dup.kind === "reply" && dup.duplicate, true);
    assert.equal(dup.kind === "reply" && dup.timestamp, null);
    const truncated = parsePingLine("[1.5] 8 bytes from 1.2.3.4: icmp_seq=3 ttl=52 (truncated)");
    assert.equal(truncated.kind === "reply" && truncated.rttMs, null);
  });

  it("parses 'no answer yet'", () => {
    assert.deepEqual(parsePingLine("[1795220395.871347] no answer yet for icmp_seq=6"), {
      kind: "no-answer",
      timestamp: 1795220395.871347,
      seq: 6,
    });
  });

  it("parses ICMP errors", () => {
    assert.deepEqual(
      parsePingLine(
        "[1795220431.863477] From 100.64.200.1 icmp_seq=1 Destination Host Unreachable",
      ),
      {
        kind: "icmp-error",
        timestamp: 1795220431.863477,
        from: "100.64.200.1",
        seq: 1,
        message: "Destination Host Unreachable",
      },
    );
    const withName = parsePingLine("From gw (100.64.0.1) icmp_seq=9 Packet filtered");
    assert.equal(withName.kind === "icmp-error" && withName.message, "Packet filtered");
  });

  it("parses ping's own errors and the header", () => {
    assert.deepEqual(parsePingLine("ping: sendmsg: Network is unreachable"), {
      kind: "error",
      message: "sendmsg: Network is unreachable",
    });
    assert.deepEqual(parsePingLine("ping: connect: No route to host"), {
      kind: "error",
      message: "connect: No route to host",
    });
    assert.deepEqual(parsePingLine("PING 198.51.100.1 (198.51.100.1) 56(84) bytes of data."), {
      kind: "header",
      target: "198.51.100.1",
    });
  });

  it("leaves statistics and blank lines as 'other'", () => {
    for (const line of [
      "",
      "--- 127.0.0.1 ping statistics ---",
      "3 packets transmitted, 3 received, 0% packet loss, time 405ms",
      "rtt min/avg/max/mdev = 0.036/0.038/0.041/0.002 ms",
    ]) {
      assert.equal(parsePingLine(line).kind, "other", line);
    }
  });

  it("unwraps the 16-bit icmp_seq around 65535", () => {
    assert.equal(unwrapSeq(7, undefined), 7);
    assert.equal(unwrapSeq(65535, 65534), 65535);
    assert.equal(unwrapSeq(0, 65535), 65536);
    assert.equal(unwrapSeq(3, 65535), 65539);
    assert.equal(unwrapSeq(65535, 65537), 65535, "a late reply from before the wrap");
  });

  it("builds the long-running ping command with the uplink's fwmark", () => {
    assert.deepEqual(pingArgs("198.51.100.1", 200, 500, 256), [
      "-n",
      "-D",
      "-O",
      "-i",
      "0.2",
      "-W",
      "0.5",
      "-m",
      "256",
      "198.51.100.1",
    ]);
  });
});

/** A spawner whose processes are fed by the test. */
function scripted() {
  const processes: {
    args: readonly string[];
    out: (line: string) => void;
    err: (line: string) => void;
    exit: (code: number | null, signal?: string | null) => void;
    alive: () => boolean;
    signals: string[];
  }[] = [];
  const spawner: ProcessSpawner = (_file, args): SpawnedProcess => {
    const outs: ((line: string) => void)[] = [];
    const errs: ((line: string) => void)[] = [];
    const exits: ((code: number | null, signal: string | null) => void)[] = [];
    let alive = true;
    const signals: string[] = [];
    const exit = (code: number | null, signal: string | null = null): void => {
      if (!alive) return;
      alive = false;
      for (const listener of exits) listener(code, signal);
    };
    processes.push({
      args,
      out: (line) => {
        for (const l of outs) l(line);
      },
      err: (line) => {
        for (const l of errs) l(line);
      },
      exit,
      alive: () => alive,
      signals,
    });
    return {
      pid: processes.length,
      onStdoutLine: (l) => {
        outs.push(l);
      },
      onStderrLine: (l) => {
        errs.push(l);
      },
      onExit: (l) => {
        exits.push(l);
      },
      kill: (signal = "SIGTERM") => {
        signals.push(signal);
        exit(null, signal);
      },
    };
  };
  return { spawner, processes };
}

function windowSink(window: ProbeWindow, notes: string[] = []): ProbeSink {
  return {
    sent: (seq, at, options) => void window.sent(seq, at, options),
    answered: (seq, at, rtt) => {
      window.answered(seq, at, rtt);
    },
    failed: (seq, at, reason) => {
      window.failed(seq, at, reason);
    },
    note: (message) => notes.push(message),
  };
}

function setup(mark: number | null = 256) {
  const clock = new ManualClock();
  const { spawner, processes } = scripted();
  const window = new ProbeWindow({ size: 100, timeoutMs: 500 });
  const notes: string[] = [];
  const prober = new IcmpProber({
    host: "198.51.100.1",
    intervalMs: 200,
    timeoutMs: 500,
    source: mark === null ? {} : { mark },
    clock,
    spawner,
  });
  prober.start(windowSink(window, notes));
  const current = () => {
    const p = processes.at(-1);
    assert.ok(p, "a ping process was started");
    return p;
  };
  return { clock, processes, window, notes, prober, current };
}

describe("ICMP prober (one long-running ping per uplink and target)", () => {
  it("runs one ping with the uplink's fwmark", () => {
    const { processes } = setup(0x100);
    assert.equal(processes.length, 1);
    assert.deepEqual(processes[0]?.args.slice(-3), ["-m", "256", "198.51.100.1"]);
  });

  it("stamps a replied probe as sent at arrival minus ping's RTT", () => {
    const { clock, current, window } = setup();
    clock.advance(1000);
    current().out("[1700000001.000000] 64 bytes from 198.51.100.1: icmp_seq=1 ttl=64 time=12.5 ms");
    const record = window.get(1);
    assert.ok(record);
    assert.equal(record.sentAt, 987.5);
    assert.equal(record.rttMs, 12.5);
  });

  it("records a probe without answer as in flight, sent one interval before 'no answer yet'", () => {
    const { clock, current, window } = setup();
    clock.advance(1000);
    current().out("[1700000001.000000] no answer yet for icmp_seq=4");
    current().out("[1700000001.003000] no answer yet for icmp_seq=4"); // a retried send repeats it
    const record = window.get(4);
    assert.ok(record);
    assert.equal(record.sentAt, 800);
    assert.equal(record.estimated, true);
    assert.equal(window.stats(1000).inFlight, 1, "not lost before the timeout");
    assert.equal(window.stats(1300).lost, 1, "lost once older than the timeout");
  });

  it("fails a probe at once on an ICMP error", () => {
    const { clock, current, window } = setup();
    clock.advance(100);
    current().out("[1.0] From 100.64.0.1 icmp_seq=1 Destination Host Unreachable");
    assert.equal(window.stats(100).lost, 1);
    assert.equal(window.stats(100).lastError, "Destination Host Unreachable from 100.64.0.1");
  });

  it("restarts ping after it exits, with a doubling backoff up to 5 s", () => {
    const { clock, processes, current, notes } = setup();
    current().err("ping: connect: Network is unreachable");
    current().exit(2);
    assert.match(
      notes.at(-1) ?? "",
      /ping exited with code 2 \(connect: Network is unreachable\); restarting in 500 ms/,
    );
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      const before = processes.length;
      const from = clock.now();
      while (processes.length === before && clock.now() - from <= 60_000) clock.advance(1);
      assert.ok(processes.length > before, `no restart within 60 s after exit ${i + 1}`);
      delays.push(clock.now() - from);
      current().exit(2);
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 5000, 5000]);
  });

  it("a run of 10 s resets the backoff", () => {
    const { clock, processes, current } = setup();
    current().exit(2);
    clock.advance(500);
    current().exit(2);
    clock.advance(1000);
    assert.equal(processes.length, 3);
    clock.advance(10_000);
    current().exit(1);
    clock.advance(499);
    assert.equal(processes.length, 3);
    clock.advance(1);
    assert.equal(processes.length, 4);
  });

  it("notes a ping killed by a signal and restarts it", () => {
    const { clock, processes, current, notes } = setup();
    current().exit(null, "SIGKILL");
    assert.match(notes.at(-1) ?? "", /ping killed by SIGKILL; restarting in 500 ms/);
    clock.advance(500);
    assert.equal(processes.length, 2);
  });

  it("with a real spawner, a ping that cannot start is noted and retried, not thrown", async () => {
    const clock = new ManualClock();
    const notes: string[] = [];
    const prober = new IcmpProber({
      host: "198.51.100.1",
      intervalMs: 200,
      timeoutMs: 500,
      source: { mark: 1 },
      clock,
      spawner: nodeSpawner,
      pingPath: "/nonexistent/uplinkd-test-ping",
    });
    prober.start(windowSink(new ProbeWindow({ size: 10, timeoutMs: 500 }), notes));
    // The start failure arrives as a child_process 'error' event.
    for (let i = 0; i < 200 && notes.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.match(
      notes[0] ?? "",
      /ping could not start: spawn \/nonexistent\/uplinkd-test-ping ENOENT; restarting in 500 ms/,
    );
    assert.equal(prober.processRunning, false);
    clock.advance(500);
    assert.equal(prober.processRunning, true, "a new ping was started after the backoff");
    await prober.stop();
  });

  it("continues sequence numbers after a restart, with a gap", () => {
    const { clock, current, window } = setup();
    current().out("[1.0] 64 bytes from 198.51.100.1: icmp_seq=1 ttl=64 time=1 ms");
    current().out("[1.2] 64 bytes from 198.51.100.1: icmp_seq=2 ttl=64 time=1 ms");
    current().exit(1);
    clock.advance(500);
    current().out("[2.0] 64 bytes from 198.51.100.1: icmp_seq=1 ttl=64 time=1 ms");
    assert.deepEqual(
      window.records().map((r) => r.seq),
      [1, 2, 4],
    );
  });

  it("nudge restarts a waiting ping at once", () => {
    const { processes, current, prober } = setup();
    current().exit(2);
    assert.equal(processes.length, 1);
    prober.nudge();
    assert.equal(processes.length, 2);
  });

  it("a new fwmark restarts ping with it; the same one does nothing", async () => {
    const { processes, prober } = setup(256);
    prober.setSource({ mark: 256, address: "100.64.1.2" });
    assert.equal(processes.length, 1);
    prober.setSource({ mark: 512 });
    await new Promise(setImmediate);
    assert.equal(processes.length, 2);
    assert.equal(processes[0]?.alive(), false);
    assert.deepEqual(processes[1]?.args.slice(-3), ["-m", "512", "198.51.100.1"]);
  });

  it("without a fwmark nothing is sent until one is given", async () => {
    const { processes, prober, notes } = setup(null);
    assert.equal(processes.length, 0);
    assert.match(notes[0] ?? "", /waiting for the uplink's fwmark/);
    prober.setSource({ mark: 256 });
    await new Promise(setImmediate);
    assert.equal(processes.length, 1);
  });

  it("stop ends ping with SIGTERM and does not restart it", async () => {
    const { clock, processes, current, prober } = setup();
    await prober.stop();
    assert.deepEqual(current().signals, ["SIGTERM"]);
    assert.equal(current().alive(), false);
    clock.advance(60_000);
    assert.equal(processes.length, 1);
  });

  it("stop escalates to SIGKILL when ping ignores SIGTERM", async () => {
    const clock = new ManualClock();
    const fake = new FakePing(clock, { ignoreSigterm: true });
    const prober = new IcmpProber({
      host: "198.51.100.1",
      intervalMs: 200,
      timeoutMs: 500,
      source: { mark: 1 },
      clock,
      spawner: fake.spawner,
    });
    prober.start(windowSink(new ProbeWindow({ size: 10, timeoutMs: 500 })));
    clock.advance(10);
    const stopped = prober.stop();
    assert.equal(fake.alive.length, 1);
    clock.advance(2000);
    await stopped;
    assert.equal(fake.alive.length, 0);
    assert.deepEqual(fake.processes[0]?.signals, ["SIGTERM", "SIGKILL"]);
  });

  it("feeds the window from a fake ping with loss, one probe per interval", () => {
    const clock = new ManualClock();
    const fake = new FakePing(clock, { driftPct: 0 });
    fake.path("198.51.100.1", { rttMs: 10 });
    const window = new ProbeWindow({ size: 100, timeoutMs: 500 });
    const prober = new IcmpProber({
      host: "198.51.100.1",
      intervalMs: 200,
      timeoutMs: 500,
      source: { mark: 1 },
      clock,
      spawner: fake.spawner,
    });
    prober.start(windowSink(window));
    clock.advance(1990);
    fake.path("198.51.100.1", { blackhole: true });
    clock.advance(2000);
    const stats = window.stats(clock.now());
    assert.equal(stats.received, 10);
    assert.equal(stats.lost, 8, "probes sent at 2000..3400 ms are older than 500 ms at 3990");
    assert.equal(stats.inFlight, 1, "the probe sent at 3600 is in flight (3800 not reported yet)");
    assert.equal(stats.rttMs, 10);
  });
});

describe("ping output parser, IPv6 (iputils 20221126, ping -6 -n -D -O -I SOURCE)", () => {
  // Lines printed by the real ping -6 in a scratch namespace with 2001:db8:9::2/64.
  it("parses the header, which has no space before the parenthesis", () => {
    assert.deepEqual(
      parsePingLine("PING 2001:db8:9::1(2001:db8:9::1) from 2001:db8:9::2 : 56 data bytes"),
      { kind: "header", target: "2001:db8:9::1" },
    );
  });

  it("parses a reply from an IPv6 address", () => {
    assert.deepEqual(
      parsePingLine(
        "[1796221052.352643] 64 bytes from 2001:db8:9::1: icmp_seq=1 ttl=64 time=0.115 ms",
      ),
      {
        kind: "reply",
        timestamp: 1796221052.352643,
        from: "2001:db8:9::1",
        seq: 1,
        ttl: 64,
        rttMs: 0.115,
        duplicate: false,
      },
    );
    const loopback = parsePingLine("[1.5] 64 bytes from ::1: icmp_seq=3 ttl=64 time=0.058 ms");
    assert.equal(loopback.kind === "reply" && loopback.from, "::1");
  });

  it("parses ICMPv6 errors from a router and from our own address", () => {
    assert.deepEqual(
      parsePingLine(
        "[1796221062.541565] From 2001:db8:9::1 icmp_seq=1 Destination unreachable: No route",
      ),
      {
        kind: "icmp-error",
        timestamp: 1796221062.541565,
        from: "2001:db8:9::1",
        seq: 1,
        message: "Destination unreachable: No route",
      },
    );
    const own = parsePingLine(
      "[1796221072.174006] From 2001:db8:9::2 icmp_seq=2 Destination unreachable: Address unreachable",
    );
    assert.equal(own.kind === "icmp-error" && own.from, "2001:db8:9::2");
    assert.equal(
      own.kind === "icmp-error" && own.message,
      "Destination unreachable: Address unreachable",
    );
    const anycast = parsePingLine("From 2001:db8:: icmp_seq=4 Destination unreachable: No route");
    assert.equal(
      anycast.kind === "icmp-error" && anycast.from,
      "2001:db8::",
      "keeps a trailing ::",
    );
    const ipv4Colon = parsePingLine("From 100.64.0.1: icmp_seq=5 Packet filtered");
    assert.equal(ipv4Colon.kind === "icmp-error" && ipv4Colon.from, "100.64.0.1");
  });

  it("parses 'no answer yet' and a bind error", () => {
    assert.deepEqual(parsePingLine("[1796221060.165791] no answer yet for icmp_seq=1"), {
      kind: "no-answer",
      timestamp: 1796221060.165791,
      seq: 1,
    });
    assert.deepEqual(parsePingLine("ping: bind icmp socket: Cannot assign requested address"), {
      kind: "error",
      message: "bind icmp socket: Cannot assign requested address",
    });
  });

  it("builds ping -6 with the uplink's fwmark and its global address as source", () => {
    assert.deepEqual(pingArgs("2001:db8:ffff::1", 200, 500, 256, "2001:db8:1::2"), [
      "-6",
      "-n",
      "-D",
      "-O",
      "-i",
      "0.2",
      "-W",
      "0.5",
      "-m",
      "256",
      "-I",
      "2001:db8:1::2",
      "2001:db8:ffff::1",
    ]);
  });

  it("tells link-local IPv6 addresses (fe80::/10)", () => {
    assert.equal(isLinkLocal6("fe80::1"), true);
    assert.equal(isLinkLocal6("FEBF::1"), true);
    assert.equal(isLinkLocal6("fec0::1"), false);
    assert.equal(isLinkLocal6("2001:db8::1"), false);
  });
});

describe("ICMP prober, IPv6 target (ping -6 from the uplink's global address)", () => {
  function setup6(source: { mark?: number; address?: string }) {
    const clock = new ManualClock();
    const { spawner, processes } = scripted();
    const window = new ProbeWindow({ size: 100, timeoutMs: 500 });
    const notes: string[] = [];
    const prober = new IcmpProber({
      host: "2001:db8:ffff::1",
      intervalMs: 200,
      timeoutMs: 500,
      source,
      clock,
      spawner,
    });
    prober.start(windowSink(window, notes));
    return { clock, processes, window, notes, prober };
  }

  it("pings with -6, the fwmark and -I ADDRESS", () => {
    const { processes, prober } = setup6({ mark: 0x200, address: "2001:db8:1::2" });
    assert.equal(prober.family, 6);
    assert.equal(processes.length, 1);
    const args = processes[0]?.args ?? [];
    assert.equal(args[0], "-6");
    assert.deepEqual(args.slice(-5), ["-m", "512", "-I", "2001:db8:1::2", "2001:db8:ffff::1"]);
  });

  it("sends nothing while the uplink has no global IPv6 address, and starts when it gets one", async () => {
    const { processes, notes, prober } = setup6({ mark: 0x200 });
    assert.equal(processes.length, 0);
    assert.match(notes.at(-1) ?? "", /waiting for the uplink's global IPv6 address/);
    prober.setSource({ mark: 0x200, address: "2001:db8:1::2" });
    await new Promise(setImmediate);
    assert.equal(processes.length, 1);
    assert.ok(processes[0]?.args.includes("2001:db8:1::2"));
  });

  it("never uses a link-local or an IPv4 address as the source", () => {
    const { processes, prober } = setup6({ mark: 0x200, address: "fe80::1" });
    assert.equal(processes.length, 0, "link-local: waits");
    prober.setSource({ mark: 0x200, address: "100.64.1.2" });
    assert.equal(processes.length, 0, "IPv4: waits");
  });

  it("follows a new global address (SLAAC renumbering) by restarting ping with it", async () => {
    const { processes, prober, window, clock } = setup6({ mark: 0x200, address: "2001:db8:1::2" });
    processes[0]?.out("[1.0] 64 bytes from 2001:db8:ffff::1: icmp_seq=1 ttl=64 time=1.0 ms");
    prober.setSource({ mark: 0x200, address: "2001:db8:1::2" });
    assert.equal(processes.length, 1, "the same address changes nothing");
    prober.setSource({ mark: 0x200, address: "2001:db8:1:0:abcd::9" });
    await new Promise(setImmediate);
    assert.equal(processes.length, 2);
    assert.equal(processes[0]?.alive(), false, "the old ping was stopped");
    const second = processes[1];
    assert.ok(second);
    assert.deepEqual(second.args.slice(-3), ["-I", "2001:db8:1:0:abcd::9", "2001:db8:ffff::1"]);
    clock.advance(10);
    second.out("[1.2] 64 bytes from 2001:db8:ffff::1: icmp_seq=1 ttl=64 time=1.0 ms");
    assert.equal(window.stats(clock.now()).received, 2, "replies of both processes counted");
  });

  it("stops ping when the address goes away and waits for a new one", async () => {
    const { processes, prober, notes } = setup6({ mark: 0x200, address: "2001:db8:1::2" });
    prober.setSource({ mark: 0x200 });
    await new Promise(setImmediate);
    assert.equal(processes[0]?.alive(), false);
    assert.equal(processes.length, 1);
    assert.match(notes.at(-1) ?? "", /waiting for the uplink's global IPv6 address/);
  });

  it("an IPv4 target ignores address changes (no -I, no restart)", () => {
    const { processes, prober } = setup(0x100);
    prober.setSource({ mark: 0x100, address: "100.64.1.7" });
    assert.equal(processes.length, 1);
    assert.ok(!processes[0]?.args.includes("-I"));
    assert.ok(!processes[0]?.args.includes("-6"));
  });
});

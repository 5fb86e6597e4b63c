import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../fakes/clock.js";
import { nodeSpawner, type ProcessSpawner, type SpawnedProcess } from "../../src/process/spawn.js";
import { KernelMonitor, MONITOR_COMMAND } from "../../src/links/monitor.js";

interface FakeChild {
  args: readonly string[];
  line(text: string): void;
  stderr(text: string): void;
  exit(code: number | null, signal?: string | null, error?: Error): void;
  signals: string[];
}

/** A spawner whose children print and exit when the test says so. */
function fakeSpawner(): { spawner: ProcessSpawner; children: FakeChild[] } {
  const children: FakeChild[] = [];
  const spawner: ProcessSpawner = (file, args): SpawnedProcess => {
    const outs: ((line: string) => void)[] = [];
    const errs: ((line: string) => void)[] = [];
    const exits: ((code: number | null, signal: string | null, error?: Error) => void)[] = [];
    let alive = true;
    const exit = (code: number | null, signal: string | null = null, error?: Error): void => {
      if (!alive) return;
      alive = false;
      for (const listener of exits) listener(code, signal, error);
    };
    const signals: string[] = [];
    children.push({
      args: [file, ...args],
      line: (text) => {
        for (const l of outs) l(text);
      },
      stderr: (text) => {
        for (const l of errs) l(text);
      },
      exit,
      signals,
    });
    return {
      pid: children.length,
      onStdoutLine: (l) => void outs.push(l),
      onStderrLine: (l) => void errs.push(l),
      onExit: (l) => void exits.push(l),
      kill: (signal = "SIGTERM") => {
        signals.push(signal);
        exit(null, signal);
      },
    };
  };
  return { spawner, children };
}

/** A logger that keeps the warnings' messages. */
function recordingLog(): { warn: (obj: unknown, message?: string) => void; messages: string[] } {
  const messages: string[] = [];
  return {
    messages,
    warn: (_obj: unknown, message?: string) => {
      messages.push(message ?? "");
    },
  };
}

function setup() {
  const clock = new ManualClock();
  const { spawner, children } = fakeSpawner();
  const log = recordingLog();
  let changes = 0;
  const monitor = new KernelMonitor(
    () => {
      changes++;
    },
    { clock, spawner, log },
  );
  monitor.start();
  const current = (): FakeChild => {
    const child = children.at(-1);
    assert.ok(child, "ip monitor was started");
    return child;
  };
  return { clock, children, log, monitor, current, changes: () => changes };
}

describe("kernel monitor (ip -o monitor)", () => {
  it("runs ip -o monitor link address route rule", () => {
    const { current } = setup();
    assert.deepEqual(current().args, [...MONITOR_COMMAND]);
    assert.deepEqual(MONITOR_COMMAND, ["ip", "-o", "monitor", "link", "address", "route", "rule"]);
  });

  it("calls back once per burst of changes, after 20 ms of quiet", () => {
    const { clock, current, changes } = setup();
    current().line("3: wan1 inet 100.64.1.2/24 ...");
    clock.advance(10);
    current().line("Deleted 3: wan1 ...");
    clock.advance(19);
    assert.equal(changes(), 0);
    clock.advance(1);
    assert.equal(changes(), 1);
  });

  it("logs an exit with its code and stderr, and restarts with a doubling backoff up to 1 s", () => {
    const { clock, children, current, log } = setup();
    current().stderr("Cannot open netlink socket: Too many open files");
    current().exit(1);
    assert.match(
      log.messages.at(-1) ?? "",
      /^`ip -o monitor link address route rule` exited with code 1 \(Cannot open netlink socket: Too many open files\); restarting in 50 ms$/,
    );
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      const before = children.length;
      const from = clock.now();
      while (children.length === before) clock.advance(1);
      delays.push(clock.now() - from);
      current().exit(1);
    }
    assert.deepEqual(delays, [50, 100, 200, 400, 800, 1000, 1000]);
  });

  it("re-reads after a restart: changes while it was down went unseen", () => {
    const { clock, current, changes } = setup();
    current().exit(1);
    clock.advance(20);
    assert.equal(changes(), 1, "the exit triggers a re-read");
    clock.advance(50);
    clock.advance(20);
    assert.equal(changes(), 2, "the restart triggers another");
  });

  it("a run of 10 s starts the backoff again", () => {
    const { clock, log, current } = setup();
    current().exit(1);
    clock.advance(50);
    current().exit(1);
    assert.match(log.messages.at(-1) ?? "", /restarting in 100 ms/);
    clock.advance(100);
    clock.advance(10_000);
    current().exit(1);
    assert.match(log.messages.at(-1) ?? "", /restarting in 50 ms/);
  });

  it("logs a start failure and a kill by a signal, and keeps trying", () => {
    const { clock, children, log, current } = setup();
    current().exit(null, null, Object.assign(new Error("spawn ip ENOENT"), { code: "ENOENT" }));
    assert.match(
      log.messages.at(-1) ?? "",
      /could not start: spawn ip ENOENT; restarting in 50 ms/,
    );
    clock.advance(50);
    assert.equal(children.length, 2);
    current().exit(null, "SIGKILL");
    assert.match(log.messages.at(-1) ?? "", /was killed by SIGKILL; restarting in 100 ms/);
    clock.advance(100);
    assert.equal(children.length, 3);
  });

  it("survives a spawner that throws", () => {
    const clock = new ManualClock();
    const log = recordingLog();
    let calls = 0;
    const monitor = new KernelMonitor(() => undefined, {
      clock,
      log,
      spawner: () => {
        calls++;
        throw new Error("EAGAIN");
      },
    });
    monitor.start();
    assert.match(log.messages.at(-1) ?? "", /could not start: EAGAIN; restarting in 50 ms/);
    clock.advance(50);
    assert.equal(calls, 2);
    monitor.stop();
    clock.advance(10_000);
    assert.equal(calls, 2);
  });

  it("logs a failing change handler instead of throwing", () => {
    const clock = new ManualClock();
    const { spawner, children } = fakeSpawner();
    const log = recordingLog();
    const monitor = new KernelMonitor(
      () => {
        throw new Error("queue closed");
      },
      { clock, spawner, log },
    );
    monitor.start();
    children[0]?.line("change");
    assert.doesNotThrow(() => {
      clock.advance(20);
    });
    assert.match(log.messages.at(-1) ?? "", /link change handler failed: Error: queue closed/);
  });

  it("stop ends ip monitor with SIGTERM; no restart and no callback follow", () => {
    const { clock, children, log, monitor, current, changes } = setup();
    current().line("change");
    monitor.stop();
    assert.deepEqual(children[0]?.signals, ["SIGTERM"]);
    clock.advance(60_000);
    assert.equal(children.length, 1);
    assert.equal(changes(), 0);
    assert.deepEqual(log.messages, []);
    assert.equal(monitor.processRunning, false);
  });

  it("with a real spawner, a missing ip binary is logged and retried, not thrown", async () => {
    const clock = new ManualClock();
    const log = recordingLog();
    const monitor = new KernelMonitor(() => undefined, {
      clock,
      log,
      spawner: (_file, args) => nodeSpawner("/nonexistent/uplinkd-test-ip", args),
    });
    monitor.start();
    // The start failure arrives as a child_process 'error' event.
    for (let i = 0; i < 200 && log.messages.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    monitor.stop();
    assert.match(
      log.messages[0] ?? "",
      /could not start: spawn \/nonexistent\/uplinkd-test-ip ENOENT/,
    );
  });
});

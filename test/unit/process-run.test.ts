/**
 * The process runner (src/process/run.ts): what runProcess reports besides
 * runCommand's cases (test/unit/kernel-exec.test.ts): kept output, the
 * SIGTERM-then-SIGKILL timeout, output held by a process left behind, stdin
 * from /dev/null and a start failure. Real short-lived processes.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { runProcess } from "../../src/process/run.js";
import { running } from "./processes.js";

describe("runProcess", () => {
  it("keeps the first outputLimitBytes of stdout and says how many more came", async () => {
    const outcome = await runProcess("head", ["-c", "100000", "/dev/zero"], {
      timeoutMs: 10_000,
      outputLimitBytes: 1000,
    });
    assert.equal(outcome.exitCode, 0);
    const [kept, note] = outcome.stdout.split("\n");
    assert.equal(kept?.length, 1000);
    assert.equal(note, "[99000 more bytes not kept]");
  });

  it("at the timeout sends SIGTERM, and SIGKILL after the grace to a program that ignores it", async () => {
    const polite = await runProcess("sleep", ["30"], { timeoutMs: 100, killGraceMs: 2000 });
    assert.equal(polite.timedOut, true);
    assert.equal(polite.signal, "SIGTERM");
    // The shell and its sleep both ignore SIGTERM (an ignored signal stays ignored across exec).
    const stubborn = await runProcess("sh", ["-c", "trap '' TERM; sleep 30 & echo $!; wait"], {
      timeoutMs: 100,
      killGraceMs: 300,
    });
    assert.equal(stubborn.timedOut, true);
    const sleeper = Number(stubborn.stdout.trim());
    assert.ok(sleeper > 0, stubborn.stdout);
    // SIGKILL went to the group: the sleep is gone (or a zombie) within 2 s.
    for (let i = 0; i < 20 && running(sleeper); i++) await sleep(100);
    assert.equal(running(sleeper), false, "the sleep outlived SIGKILL");
  });

  it("reports an exit outputGraceMs after it, though a process it left holds stdout", async () => {
    const outcome = await runProcess("sh", ["-c", "sleep 2 & echo started"], {
      timeoutMs: 10_000,
      outputGraceMs: 100,
    });
    assert.equal(outcome.timedOut, false);
    assert.equal(outcome.exitCode, 0);
    assert.equal(outcome.stdout, "started\n");
    assert.ok(outcome.durationMs < 2000, `waited ${outcome.durationMs} ms for the left process`);
  });

  it("gives /dev/null as stdin with input null, and the environment and directory asked", async () => {
    const outcome = await runProcess("sh", ["-c", 'cat; echo "$HOOK_VALUE $(pwd)"'], {
      timeoutMs: 10_000,
      input: null,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOOK_VALUE: "x" },
      cwd: "/",
    });
    assert.equal(outcome.exitCode, 0);
    assert.equal(outcome.stdout, "x /\n");
  });

  it("reports a program that cannot start in startError, without throwing", async () => {
    const outcome = await runProcess("/nonexistent/uplinkd-test-program", [], { timeoutMs: 1000 });
    assert.match(outcome.startError?.message ?? "", /ENOENT/);
    assert.equal(outcome.exitCode, null);
    assert.equal(outcome.timedOut, false);
  });
});

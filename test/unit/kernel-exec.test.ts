import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { KernelCommandError, KernelCommandTimeoutError } from "../../src/errors.js";
import { runCommand } from "../../src/process/run.js";
import { running } from "./processes.js";

describe("runCommand", () => {
  it("returns what a normal command prints, well within its timeout", async () => {
    const result = await runCommand("sh", ["-c", "echo out; echo err >&2"], { timeoutMs: 5000 });
    assert.deepEqual(result, { stdout: "out\n", stderr: "err\n" });
  });

  it("feeds stdin and accepts allowed exit codes", async () => {
    const result = await runCommand("sh", ["-c", "cat; exit 1"], {
      input: "hello",
      allowExitCodes: [1],
      timeoutMs: 5000,
    });
    assert.equal(result.stdout, "hello");
  });

  it("rejects a non-zero exit with the command line and its stderr", async () => {
    const error = await runCommand("sh", ["-c", "echo nope >&2; exit 3"]).then(
      () => assert.fail("should have failed"),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof KernelCommandError);
    assert.ok(!(error instanceof KernelCommandTimeoutError));
    assert.equal(error.code, "UPLINKD_ERR_KERNEL_COMMAND");
    assert.equal(error.exitCode, 3);
    assert.match(error.message, /`sh -c echo nope >&2; exit 3` failed \(exit 3\): nope/);
  });

  it("kills a hung command at its timeout and names the command and the timeout", async () => {
    const started = performance.now();
    const error = await runCommand("sleep", ["30"], { timeoutMs: 150 }).then(
      () => assert.fail("should have timed out"),
      (caught: unknown) => caught,
    );
    const tookMs = performance.now() - started;
    assert.ok(error instanceof KernelCommandTimeoutError);
    assert.ok(error instanceof KernelCommandError, "a timeout is a failed kernel command too");
    assert.equal(error.code, "UPLINKD_ERR_KERNEL_COMMAND_TIMEOUT");
    assert.equal(error.command, "sleep 30");
    assert.equal(error.timeoutMs, 150);
    assert.match(error.message, /`sleep 30` did not finish within 150 ms and was killed/);
    // Not before its timeout (a timer may fire a millisecond early on the clock read here).
    assert.ok(tookMs >= 149 && tookMs < 5000, `rejected after ${tookMs} ms`);
  });

  it("kills the whole child: a wrapper script and the process it started", async () => {
    // A stand-in for a hung `conntrack` wrapper: the script starts `sleep`
    // (which inherits the output pipes) and waits for it.
    const dir = await mkdtemp(join(tmpdir(), "uplinkd-exec-"));
    try {
      const pidFile = join(dir, "sleep.pid");
      const script = join(dir, "hang");
      await writeFile(script, `#!/bin/sh\nsleep 30 &\necho $! > ${pidFile}\nwait\n`);
      await chmod(script, 0o755);
      const error = await runCommand(script, [], { timeoutMs: 300 }).then(
        () => assert.fail("should have timed out"),
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof KernelCommandTimeoutError);
      const sleepPid = Number((await readFile(pidFile, "utf8")).trim());
      assert.ok(sleepPid > 0);
      // SIGKILL is queued at once; the kernel needs a moment to end the process.
      for (let i = 0; i < 100 && running(sleepPid); i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.equal(running(sleepPid), false, "the script's child survived the timeout");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("reports a command that cannot start", async () => {
    const error = await runCommand("/nonexistent/uplinkd-no-such-tool", ["x"]).then(
      () => assert.fail("should have failed"),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof KernelCommandError);
    assert.match(error.message, /uplinkd-no-such-tool x.*ENOENT/);
  });

  it("refuses a timeout that is not positive", async () => {
    await assert.rejects(runCommand("true", [], { timeoutMs: 0 }), RangeError);
  });
});

describe("starting a command when the daemon is out of file descriptors", () => {
  it("rejects with the command line instead of crashing the process (EMFILE)", async () => {
    // A child Node process with a file limit of 256 fills its table, then runs a command
    // through runCommand and through the probes' spawner; an unhandled 'error' would kill it.
    const script = `
      import { openSync } from "node:fs";
      import { runCommand } from "./src/process/run.ts";
      import { nodeSpawner } from "./src/process/spawn.ts";
      const held = [];
      try { for (;;) held.push(openSync("/dev/null", "r")); } catch (error) {
        if (error.code !== "EMFILE") throw error;
      }
      const fromRun = await runCommand("true", [], { timeoutMs: 5000 }).then(
        () => "started", (error) => error.name + ": " + error.message);
      const fromSpawner = await new Promise((resolve) =>
        nodeSpawner("true", []).onExit((code, signal, error) => resolve(String(error?.message))));
      console.log(JSON.stringify({ held: held.length, fromRun, fromSpawner }));
    `;
    const result = await runCommand(
      "prlimit",
      [
        "--nofile=256",
        "--",
        process.execPath,
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        script,
      ],
      { timeoutMs: 30_000 },
    );
    const seen = JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "{}") as {
      held: number;
      fromRun: string;
      fromSpawner: string;
    };
    assert.ok(seen.held > 100, `the child filled its file table (${seen.held} files)`);
    assert.match(seen.fromRun, /^KernelCommandError: .*true.*EMFILE/);
    assert.match(seen.fromSpawner, /EMFILE/);
  });
});

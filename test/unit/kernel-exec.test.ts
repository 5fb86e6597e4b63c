import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { KernelCommandError, KernelCommandTimeoutError } from "../../src/errors.js";
import { runCommand } from "../../src/process/run.js";

/**
 * Whether a process with this pid still runs: it exists and is not a zombie
 * (a killed orphan stays a zombie until its new parent reaps it, which some
 * container inits never do). State from /proc/PID/stat (proc(5)).
 */
async function running(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

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
      for (let i = 0; i < 100 && (await running(sleepPid)); i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.equal(await running(sleepPid), false, "the script's child survived the timeout");
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

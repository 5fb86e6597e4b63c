import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { KernelCommandError, KernelCommandTimeoutError } from "../../src/errors.js";
import { LineSession } from "../../src/kernel/session.js";

// A stand-in for `ip -batch -`: one line of JSON per command, iproute2's
// failure lines on stderr for `fail`, no answer for `hang`, an exit for `quit`;
// each start is appended to a file, so a test can count processes.
let dir = "";
let tool = "";
let starts = "";

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "uplinkd-session-"));
  tool = join(dir, "tool");
  starts = join(dir, "starts");
  await writeFile(
    tool,
    [
      "#!/bin/sh",
      `echo start >> ${starts}`,
      "n=0",
      "while read -r line; do",
      "  n=$((n+1))",
      '  case "$line" in',
      '    fail) echo "Cannot find device" >&2; echo "Command failed -:$n" >&2 ;;',
      "    hang) sleep 30 ;;",
      "    quit) exit 3 ;;",
      '    *) echo "[\\"$line\\",$n]" ;;',
      "  esac",
      "done",
      "",
    ].join("\n"),
  );
  await chmod(tool, 0o755);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function startCount(): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  try {
    return (await readFile(starts, "utf8")).split("\n").filter(Boolean).length;
  } catch {
    return 0;
  }
}

function session(): LineSession {
  return new LineSession({
    file: tool,
    args: ["-j"],
    failureDone: (stderr) => /Command failed -:\d+/.test(stderr),
  });
}

describe("a long-lived line session", () => {
  it("answers commands in order from one process", async () => {
    const s = session();
    const before = await startCount();
    const answers = await Promise.all(["a", "b", "c"].map((c) => s.run(c, 2000)));
    assert.deepEqual(answers, ['["a",1]', '["b",2]', '["c",3]']);
    assert.equal((await startCount()) - before, 1);
    s.close();
  });

  it("a failed command rejects with the tool's message and the process goes on", async () => {
    const s = session();
    await assert.rejects(s.run("fail", 2000), (error: unknown) => {
      assert.ok(error instanceof KernelCommandError);
      assert.match(error.message, /Cannot find device/);
      assert.match(error.command, /-j <<< fail$/);
      return true;
    });
    assert.equal(await s.run("next", 2000), '["next",2]');
    s.close();
  });

  it("a hung command times out, and the next command gets a new process", async () => {
    const s = session();
    const before = await startCount();
    await assert.rejects(s.run("hang", 100), KernelCommandTimeoutError);
    assert.equal(await s.run("after", 2000), '["after",1]');
    assert.equal((await startCount()) - before, 2);
    s.close();
  });

  it("an exit rejects the command it was running; the next one starts the tool again", async () => {
    const s = session();
    await assert.rejects(s.run("quit", 2000), KernelCommandError);
    assert.equal(await s.run("again", 2000), '["again",1]');
    s.close();
  });
});

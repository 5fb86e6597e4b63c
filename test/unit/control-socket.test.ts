import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Command } from "commander";
import { DEFAULT_SOCKET, locateSocket, registerControlCommands } from "../../src/control/cli.js";

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "uplinkd-socket-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs `uplinkd ARGS` of the control commands in-process; restores the exit code. */
async function run(args: string[]): Promise<{ error?: Error; exitCode: number; stderr: string }> {
  const program = new Command("uplinkd").exitOverride();
  registerControlCommands(program);
  const saved = process.exitCode;
  const write = process.stderr.write.bind(process.stderr);
  let stderr = "";
  process.stderr.write = (chunk: string) => {
    stderr += chunk;
    return true;
  };
  try {
    await program.parseAsync(args, { from: "user" });
    return { exitCode: Number(process.exitCode ?? 0), stderr };
  } catch (error) {
    return { error: error as Error, exitCode: Number(process.exitCode ?? 0), stderr };
  } finally {
    process.stderr.write = write;
    process.exitCode = saved;
  }
}

describe("finding the daemon's control socket", () => {
  it("--socket, then control.socket of the config, even from a file with YAML errors", async (t) => {
    const dir = await tempDir(t);
    const good = join(dir, "good.yaml");
    await writeFile(good, "lan: [lan0]\ncontrol:\n  socket: /run/x/a.sock\n");
    assert.deepEqual(await locateSocket({ socket: "/s" }), { socket: "/s", how: "--socket" });
    assert.deepEqual(await locateSocket({ config: good }), {
      socket: "/run/x/a.sock",
      how: `control.socket of ${good}`,
    });
    const broken = join(dir, "broken.yaml");
    await writeFile(
      broken,
      "lan: [lan0]\nuplinks:\n  - name: a\n\tinterface: wan1\ncontrol:\n  socket: /run/x/b.sock\n",
    );
    const found = await locateSocket({ config: broken });
    assert.equal(found.socket, "/run/x/b.sock");
    assert.match(found.how, /YAML errors; this key could be read/);
  });

  it("a config without the key, or unreadable YAML, falls back to the default and says so", async (t) => {
    const dir = await tempDir(t);
    const plain = join(dir, "plain.yaml");
    await writeFile(plain, "lan: [lan0]\n");
    assert.deepEqual(await locateSocket({ config: plain }), {
      socket: DEFAULT_SOCKET,
      how: `the default: ${plain} has no control.socket`,
    });
    const garbage = join(dir, "garbage.yaml");
    await writeFile(garbage, "lan: [lan0\n  : : :\n");
    const found = await locateSocket({ config: garbage });
    assert.equal(found.socket, DEFAULT_SOCKET);
    assert.match(found.how, /cannot be parsed and no control\.socket could be read/);
  });

  it("no daemon: the error names the socket, how it was found and what to do", async (t) => {
    const dir = await tempDir(t);
    const socket = join(dir, "none.sock");
    const result = await run(["status", "-s", socket]);
    assert.match(
      result.error?.message ?? "",
      new RegExp(
        `^no daemon at ${socket} \\(--socket\\): is it running\\? use -s PATH or -c CONFIG$`,
      ),
    );
  });

  it("reload -c FILE refuses when the daemon runs another file, and reloads nothing", async (t) => {
    const dir = await tempDir(t);
    const socket = join(dir, "d.sock");
    const own = join(dir, "own.yaml");
    const other = join(dir, "other.yaml");
    await writeFile(own, `lan: [lan0]\ncontrol:\n  socket: ${socket}\n`);
    await writeFile(other, `lan: [lan1]\ncontrol:\n  socket: ${socket}\n`);
    const seen: string[] = [];
    const server = createServer((req, res) => {
      seen.push(`${req.method ?? ""} ${req.url ?? ""}`);
      res.setHeader("content-type", "application/json");
      res.end(
        req.url === "/status"
          ? JSON.stringify({ config: own })
          : JSON.stringify({ ok: true, config: own, uplinks: [], changes: [] }),
      );
    });
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    t.after(
      () =>
        new Promise<void>((resolve) =>
          server.close(() => {
            resolve();
          }),
        ),
    );

    const refused = await run(["reload", "-c", other]);
    assert.equal(refused.exitCode, 2);
    assert.match(refused.stderr, new RegExp(`the daemon runs ${own}, not ${other}`));
    assert.deepEqual(seen, ["GET /status"]);

    const done = await run(["reload", "-c", own]);
    assert.equal(done.exitCode, 0, done.stderr);
    assert.deepEqual(seen, ["GET /status", "GET /status", "POST /reload"]);
  });
});

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, test, type TestContext } from "node:test";
import { Command } from "commander";
import { EXIT_CONFIG_INVALID, registerCheckCommand } from "../../src/config/cli.js";
import { DEFAULT_CONFIG_PATH } from "../../src/config/load.js";

// private_targets: true: the default health targets are documentation addresses, which
// check warns about anywhere else (see the warning tests below); gateway6:
// none: IPv4-only uplinks, so no warning about unmonitored IPv6.
const VALID =
  "private_targets: true\nlan: [lan0]\nuplinks:\n  - { name: isp1, interface: wan1, gateway6: none }\n  - { name: isp2, interface: wan2, gateway6: none }\n";
const INVALID =
  "lan: [lan0]\nuplinks:\n  - name: isp1\n    interface: wan1\n    weight: 0\n    gatway: auto\n";

/**
 * Runs `uplinkd check ARGS` in-process, in a program set up like src/cli.ts
 * (help after usage errors), and returns what it printed and the exit code
 * it left; restores `process.exitCode` so the test run is not affected.
 */
async function check(args: string[]) {
  let stdout = "";
  let stderr = "";
  const program = new Command("uplinkd")
    .showHelpAfterError()
    .configureOutput({ writeOut: (s) => (stdout += s), writeErr: (s) => (stderr += s) });
  registerCheckCommand(program);
  const before = process.exitCode;
  try {
    await program.parseAsync(["check", ...args], { from: "user" });
    return { stdout, stderr, exitCode: process.exitCode ?? 0 };
  } finally {
    process.exitCode = before;
  }
}

async function tempFile(t: TestContext, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "uplinkd-check-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "uplinkd.yaml");
  await writeFile(file, text);
  return file;
}

describe("uplinkd check", () => {
  test("a valid config: exactly `FILE: ok (N uplinks)` on stdout, exit 0", async (t) => {
    const file = await tempFile(t, VALID);
    assert.deepEqual(await check(["-c", file]), {
      stdout: `${file}: ok (2 uplinks)\n`,
      stderr: "",
      exitCode: 0,
    });
  });

  test("an invalid config: one FILE:LINE:COL: path: message line per problem on stderr, exit 2", async (t) => {
    const file = await tempFile(t, INVALID);
    assert.deepEqual(await check(["--config", file]), {
      stdout: "",
      stderr: [
        `${file}:5:13: uplinks.0.weight: must be at least 1`,
        `${file}:6:5: uplinks.0.gatway: unknown key "gatway"; did you mean "gateway"?`,
        "",
      ].join("\n"),
      exitCode: 2,
    });
    assert.equal(EXIT_CONFIG_INVALID, 2);
  });

  test("a missing file: one line at 1:1 on stderr, exit 2", async () => {
    const file = join(tmpdir(), "uplinkd-no-such-dir", "uplinkd.yaml");
    assert.deepEqual(await check(["-c", file]), {
      stdout: "",
      stderr: `${file}:1:1: cannot read the config: no such file\n`,
      exitCode: 2,
    });
  });

  test("-c defaults to /etc/uplinkd/uplinkd.yaml", () => {
    const command = registerCheckCommand(new Command("uplinkd"));
    const option = command.options.find((o) => o.long === "--config");
    assert.equal(option?.defaultValue, DEFAULT_CONFIG_PATH);
  });

  test("as a process: stdout and stderr kept apart, exit status 0 and 2", async (t) => {
    // A throwaway entry point outside the repository, like src/cli.ts wires it.
    const dir = await mkdtemp(join(tmpdir(), "uplinkd-check-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const cli = pathToFileURL(fileURLToPath(new URL("../../src/config/cli.ts", import.meta.url)));
    const entry = join(dir, "entry.mts");
    await writeFile(
      entry,
      [
        `import { Command } from ${JSON.stringify(import.meta.resolve("commander"))};`,
        `import { registerCheckCommand } from ${JSON.stringify(cli.href)};`,
        `const program = new Command("uplinkd").showHelpAfterError();`,
        `registerCheckCommand(program);`,
        `await program.parseAsync(process.argv);`,
      ].join("\n"),
    );
    const good = join(dir, "good.yaml");
    const bad = join(dir, "bad.yaml");
    await writeFile(good, VALID);
    await writeFile(bad, INVALID);
    const run = (file: string) =>
      spawnSync(process.execPath, ["--import", "tsx", entry, "check", "-c", file], {
        cwd: fileURLToPath(new URL("../..", import.meta.url)),
        encoding: "utf8",
        timeout: 30_000,
      });

    const ok = run(good);
    assert.deepEqual([ok.status, ok.stdout, ok.stderr], [0, `${good}: ok (2 uplinks)\n`, ""]);

    const failed = run(bad);
    assert.equal(failed.status, 2);
    assert.equal(failed.stdout, "");
    assert.deepEqual(failed.stderr.trimEnd().split("\n"), [
      `${bad}:5:13: uplinks.0.weight: must be at least 1`,
      `${bad}:6:5: uplinks.0.gatway: unknown key "gatway"; did you mean "gateway"?`,
    ]);
  });
});

describe("uplinkd check warnings", () => {
  test("a documentation target on a config without private_targets: true: a warning line on stderr, still exit 0", async (t) => {
    const file = await tempFile(
      t,
      "lan: [lan0]\nuplinks:\n  - { name: isp1, interface: wan1, gateway6: none }\nhealth:\n  targets: [9.9.9.9, 192.0.2.7]\n",
    );
    const result = await check(["-c", file]);
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout, `${file}: ok (1 uplinks)\n`);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1);
    assert.match(
      lines[0] ?? "",
      new RegExp(
        `^${file}:5:22: health\\.targets\\.1: warning: 192\\.0\\.2\\.7 is a documentation address`,
      ),
    );
    assert.match(lines[0] ?? "", /uplink isp1/);
  });

  test("targets left to the default are blamed as a default", async (t) => {
    const file = await tempFile(t, VALID.replace("private_targets: true\n", ""));
    const result = await check(["-c", file]);
    assert.equal(result.exitCode, 0);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 2, result.stderr);
    for (const line of lines)
      assert.match(line, /warning: .*uplinks isp1, isp2.*\(not in the file: a default\)$/);
  });

  test("an invalid config with a lab-only target: errors only, exit 2", async (t) => {
    const file = await tempFile(t, INVALID + "health: { targets: [10.1.1.1] }\n");
    const result = await check(["-c", file]);
    assert.equal(result.exitCode, 2);
    assert.doesNotMatch(result.stderr, /warning/);
  });
});

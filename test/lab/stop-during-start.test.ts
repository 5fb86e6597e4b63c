/**
 * `uplinkd run` stopped while it is still starting: `systemctl stop` right
 * after `systemctl start` (or `apt remove` of a package whose service just
 * started) sends SIGTERM between the first kernel changes and the end of
 * the start. The daemon must finish starting, then stop cleanly and remove
 * what it made, not die with the kernel state half made.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { runCommand } from "../../src/process/run.js";
import { startLabDaemon } from "../../src/lab/daemon.js";
import { testLab } from "./helpers.js";

test("SIGTERM right after the first kernel changes of the start: exit 0, no nft table, rules or routes left", async (t) => {
  const lab = await testLab(t, { uplinks: 2, iperf3Servers: 0 });
  const daemon = startLabDaemon(lab);
  t.after(async () => {
    await daemon.stop("SIGKILL");
  });
  // Signal the moment the start's first apply is logged, before "uplinkd started".
  const signalled = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`no "applied kernel changes (start)" within 20 s:\n${daemon.log()}`));
    }, 20_000);
    let seen = "";
    daemon.child.stdout?.on("data", (chunk: Buffer) => {
      seen += chunk.toString("utf8");
      if (/applied kernel changes \(start\)/.test(seen)) {
        clearTimeout(timer);
        daemon.child.kill("SIGTERM");
        resolve();
      }
    });
  });
  await signalled;
  const code = await daemon.stop("SIGTERM", 15_000);
  assert.equal(code, 0, `exit code ${String(code)}:\n${daemon.log()}`);
  assert.match(daemon.log(), /kernel state removed/);

  const rtr = lab.namespace("rtr");
  const tables = await runCommand("ip", ["netns", "exec", rtr, "nft", "list", "tables"]);
  assert.doesNotMatch(tables.stdout, /\buplinkd\b/, "nft table left");
  const rules = await runCommand("ip", ["-n", rtr, "rule", "show"]);
  assert.doesNotMatch(rules.stdout, /proto 73/, `rules left:\n${rules.stdout}`);
  for (const table of ["101", "102"]) {
    const routes = await runCommand("ip", ["-n", rtr, "route", "show", "table", table]);
    assert.equal(routes.stdout.trim(), "", `routes left in table ${table}`);
  }
});

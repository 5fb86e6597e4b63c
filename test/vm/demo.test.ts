/**
 * `uplinkd demo` on this kernel (run in the VM, `npm run test:vm`): the
 * narrated run (traffic, blackhole, failover, recovery, carrier loss, an
 * IPv6-only blackhole) finishes, exits 0, and removes its lab.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { runCommand } from "../../src/process/run.js";
import { fileURLToPath } from "node:url";
import { labExists } from "../../src/lab/lab.js";

it("uplinkd demo runs to the end and leaves no lab behind", async (t) => {
  const cli = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
  const result = await runCommand(process.execPath, [cli, "demo", "--prefix", "vmdemo"], {
    timeoutMs: 900_000,
  });
  t.diagnostic(result.stdout.trim().split("\n").slice(-6).join("\n"));
  assert.match(result.stdout, /== /);
  assert.equal(await labExists("vmdemo"), false);
});

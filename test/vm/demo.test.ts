/**
 * `uplinkd demo` on this kernel (run in the VM, `npm run test:vm`): the
 * narrated run (traffic, blackhole, failover, recovery, carrier loss, an
 * IPv6-only blackhole) finishes, exits 0, and removes its lab.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { runCommand } from "../../src/kernel/exec.js";
import { uplinkdArgv } from "../lab/harness.js";
import { labExists } from "../../src/lab/lab.js";

it("uplinkd demo runs to the end and leaves no lab behind", async (t) => {
  const [node, ...args] = uplinkdArgv("demo", "--prefix", "vmdemo");
  const result = await runCommand(node ?? process.execPath, args, { timeoutMs: 600_000 });
  t.diagnostic(result.stdout.trim().split("\n").slice(-6).join("\n"));
  assert.match(result.stdout, /== /);
  assert.equal(await labExists("vmdemo"), false);
});

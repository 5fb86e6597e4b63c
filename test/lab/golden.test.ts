/**
 * The unit tests' golden nft scripts (test/unit/golden) are what the
 * renderer writes for their configs; here the kernel's own nft checks each
 * one (`nft -c -f`, which parses and validates against the kernel without
 * committing) in a scratch namespace, so a golden can never pin a script the
 * kernel would refuse.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const GOLDEN = fileURLToPath(new URL("../unit/golden/", import.meta.url));
const NS = `ulgold-${String(process.pid)}`;

describe("golden nft scripts", () => {
  before(async () => {
    await run("ip", ["netns", "add", NS]);
  });
  after(async () => {
    await run("ip", ["netns", "del", NS]).catch(() => undefined);
  });

  it("the kernel accepts every golden script", async () => {
    const files = (await readdir(GOLDEN)).filter((f) => f.endsWith(".nft"));
    assert.ok(files.length >= 3, `golden scripts found: ${files.join(", ")}`);
    for (const file of files) {
      await assert.doesNotReject(
        run("ip", ["netns", "exec", NS, "nft", "-c", "-f", `${GOLDEN}${file}`], {
          timeout: 10_000,
        }),
        `nft -c -f ${file}`,
      );
    }
  });
});

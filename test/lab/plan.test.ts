/**
 * `uplinkd plan` against a running daemon on the real kernel: a lab with
 * three uplinks, the daemon in the router namespace, `plan` run there with
 * the lab's config (whose control socket is the daemon's). Plan builds the
 * desired state from the daemon's health and load (`GET /inputs`), so after
 * a failover with nothing else changed it has nothing to propose; a changed
 * config it does show, without undoing the failover. With no daemon it says
 * it assumes every uplink healthy.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import type { Lab } from "../../src/lab/lab.js";
import { labWithConfig, startDaemon, testPrefix, uplinkdArgv, type LabDaemon } from "./harness.js";

const NO_CHANGES = "no changes: the kernel holds the desired state";

/** The line saying plan used the daemon at `socket`, whose states include `state` (e.g. `isp1 down`). */
function basisLine(socket: string, state: string): RegExp {
  const escaped = socket.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  return new RegExp(
    `^health and load: from the daemon at ${escaped}: (.*, )?${state}(, .*)?; load`,
  );
}

/** `uplinkd plan -c CONFIG` in the router namespace; its stdout lines (exit 0 asserted). */
async function plan(lab: Lab, configPath = lab.configPath): Promise<string[]> {
  const result = await lab.exec("rtr", uplinkdArgv("plan", "-c", configPath), {
    timeoutMs: 30_000,
  });
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.trimEnd().split("\n");
}

describe("plan with a running daemon", () => {
  let lab: Lab;
  let daemon: LabDaemon | undefined;
  let socket = "";

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("plan"), uplinks: 3 }, (config) => {
      socket = (config.control as { socket: string }).socket;
    });
  });

  after(async () => {
    await daemon?.stop();
    await lab.down();
  });

  it("plans no change after a blackhole failover of isp1, and shows a config change without undoing it", async () => {
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
    const before = await plan(lab);
    assert.deepEqual(before.slice(1), [NO_CHANGES], before.join("\n"));
    assert.match(before[0] ?? "", basisLine(socket, "isp1 up"));

    await lab.fault("isp1", "blackhole");
    try {
      await daemon.waitFor(
        (s) => s.uplinks.some((u) => u.name === "isp1" && u.state === "down" && !u.active),
        10_000,
        "isp1 down and inactive",
        20,
      );
      const failedOver = await plan(lab);
      assert.deepEqual(failedOver.slice(1), [NO_CHANGES], failedOver.join("\n"));
      assert.match(failedOver[0] ?? "", basisLine(socket, "isp1 down"));

      // The config changes (isp2 weighs 3): plan shows the new balance of isp2 and isp3 only.
      const config = parse(await readFile(lab.configPath, "utf8")) as {
        uplinks: { name: string; weight: number }[];
      };
      const isp2 = config.uplinks.find((u) => u.name === "isp2");
      assert.ok(isp2 !== undefined);
      isp2.weight = 3;
      const changed = `${lab.configPath}.weight.yaml`;
      await writeFile(changed, stringify(config));
      const proposed = await plan(lab, changed);
      assert.ok(!proposed.includes(NO_CHANGES), proposed.join("\n"));
      assert.ok(
        proposed.includes(
          "nft: map balance_default = { 0-7499 : goto uplink_2, 7500-9999 : goto uplink_3 }",
        ),
        proposed.join("\n"),
      );
      assert.ok(
        !proposed.some((line) => /uplink_1\b/.test(line) && line.startsWith("nft: map balance")),
        `plan puts isp1 back: ${proposed.join("\n")}`,
      );
    } finally {
      await lab.heal("isp1");
    }
  });

  it("without a daemon says it assumes every uplink healthy", async () => {
    await daemon?.stop();
    daemon = undefined;
    const lines = await plan(lab);
    assert.equal(
      lines[0],
      `health and load: no daemon at ${socket} (ENOENT); assuming every uplink healthy and no load`,
    );
  });
});

/**
 * The dashboard during a failover, in headless Chromium: three uplinks, the
 * third a tier-2 backup. Before: every card up, the policies panel shows
 * the default policy over isp1 and isp2, no banner. During: isp1 and isp2
 * blackholed, the cards show them down without an RTT, and a banner says
 * the default policy runs on its tier-2 backup. A screenshot of each is
 * saved under test-output/; UPLINKD_UPDATE_DOCS=1 also copies them to
 * docs/img/ (docs/operations.md shows them).
 */
import assert from "node:assert/strict";
import { copyFile, mkdir, stat } from "node:fs/promises";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Lab } from "../../src/lab/lab.js";
import { labWithConfig, startDaemon, testPrefix, type LabDaemon } from "./harness.js";

const READ = "dashboard-read-0123456789abcdef";
const LISTEN = "100.64.100.1:9102";
const OUT = fileURLToPath(new URL("../../test-output/", import.meta.url));
const DOCS = fileURLToPath(new URL("../../docs/img/", import.meta.url));
const SHOTS = ["dashboard-before.png", "dashboard-failover.png"] as const;

describe("the dashboard before and during a failover to a tier-2 backup", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("df"), uplinks: 3 }, (c) => {
      const uplinks = c.uplinks as Record<string, unknown>[];
      const third = uplinks[2];
      assert.ok(third !== undefined);
      third.tier = 2;
      c.control = {
        ...(c.control as object),
        listen: LISTEN,
        tokens: [{ name: "dashboard", token: READ, access: "read" }],
      };
    });
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"], 30_000);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("shows no banner before; down cards without RTT and a tier-2 banner during", async (t) => {
    await mkdir(OUT, { recursive: true });
    const probe = lab.spawn(
      "lan",
      [
        process.execPath,
        "--import",
        import.meta.resolve("tsx"),
        fileURLToPath(new URL("./dashboard-probe.ts", import.meta.url)),
        `http://${LISTEN}/`,
        READ,
        `${OUT}dashboard-unused.png`,
        "3",
      ],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    const lines: Record<string, unknown>[] = [];
    const stderr: string[] = [];
    probe.stderr?.on("data", (c: Buffer) => stderr.push(c.toString("utf8")));
    if (probe.stdout !== null) {
      createInterface({ input: probe.stdout }).on("line", (line) => {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      });
    }
    /** Waits for the probe's n-th line of `event` (bounded). */
    const waitFor = async (event: string, n: number, what: string): Promise<void> => {
      const deadline = Date.now() + 30_000;
      while (lines.filter((l) => l.event === event).length < n) {
        if (Date.now() > deadline) {
          throw new Error(`${what}: not within 30 s\n${stderr.join("")}\n${JSON.stringify(lines)}`);
        }
        await sleep(100);
      }
    };
    const send = (command: Record<string, unknown>) => {
      probe.stdin?.write(JSON.stringify(command) + "\n");
    };
    try {
      await waitFor("ready", 1, "dashboard ready");
      send({ selector: '.policies li[data-policy="default"][data-mode="normal"]' });
      await waitFor("seen", 1, "the default policy in the panel");
      await sleep(3000); // a few chart points
      send({ screenshot: true, path: `${OUT}${SHOTS[0]}` });
      await waitFor("screenshot", 1, "screenshot before");

      await lab.fault("isp1", "blackhole");
      await lab.fault("isp2", "blackhole");
      await daemon.waitForState("isp1", "down", 20_000);
      await daemon.waitForState("isp2", "down", 20_000);
      send({ selector: "#banner p", text: "tier-2 backup" });
      await waitFor("seen", 2, "the tier-2 banner");
      send({ selector: '.uplink[data-uplink="isp1"][data-state="down"] .rtt', text: "–" });
      await waitFor("seen", 3, "no RTT on the dead isp1");
      await sleep(2000);
      send({ screenshot: true, path: `${OUT}${SHOTS[1]}` });
      await waitFor("screenshot", 2, "screenshot during the failover");
      const errors = lines.filter((l) => l.event === "page-error");
      assert.deepEqual(errors, [], "the page logged errors");
      for (const shot of SHOTS) {
        const size = (await stat(`${OUT}${shot}`)).size;
        t.diagnostic(`${shot}: ${size} bytes`);
        assert.ok(size > 10_000);
        if (process.env.UPLINKD_UPDATE_DOCS === "1") {
          await mkdir(DOCS, { recursive: true });
          await copyFile(`${OUT}${shot}`, `${DOCS}${shot}`);
        }
      }
    } finally {
      probe.kill();
      await lab.heal("isp1");
      await lab.heal("isp2");
    }
  });
});

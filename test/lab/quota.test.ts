/**
 * Data quotas on the real kernel: isp2 has a quota (both uplinks tier 1).
 * Its usage grows with the traffic it carries (interface counters); once
 * `uplinkd quota isp2 --set` puts it over the limit, it is on standby: new
 * connections go to isp1 only, and to isp2 again when isp1 is down.
 * `--reset` brings it back; the usage is saved in `state_dir`.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Lab } from "../../src/lab/lab.js";
import {
  labWithConfig,
  lanTraffic,
  sharesByUplink,
  startDaemon,
  testPrefix,
  uplinkdArgv,
  type LabDaemon,
} from "./harness.js";

let lab: Lab;
let daemon: LabDaemon;
let stateDir: string;

before(async () => {
  lab = await labWithConfig({ prefix: testPrefix("qu"), uplinks: 2 }, (config) => {
    const uplinks = config.uplinks as Record<string, unknown>[];
    const isp2 = uplinks.find((u) => u.name === "isp2");
    assert.ok(isp2 !== undefined);
    isp2.quota = { limit: "1GB", period: "monthly", reset_day: 15, when_exceeded: "standby" };
  });
  stateDir = join(lab.stateDir, "uplinkd-state");
  const text = await readFile(lab.configPath, "utf8");
  await writeFile(lab.configPath, `${text}state_dir: ${stateDir}\n`);
  daemon = startDaemon(lab);
  await daemon.waitForStates(["up"], 30_000);
});

after(async () => {
  await (daemon as LabDaemon | undefined)?.stop();
  await (lab as Lab | undefined)?.down();
});

async function quotaCli(...args: string[]): Promise<string> {
  const r = await lab.exec(
    "rtr",
    uplinkdArgv("quota", "isp2", ...args, "--socket", lab.controlSocket),
  );
  assert.equal(r.code, 0, `uplinkd quota: ${r.stderr}`);
  return r.stdout;
}

describe("a data quota", () => {
  it("counts the uplink's traffic, holds it back when exceeded, and saves the usage", async () => {
    const first = await daemon.waitFor((s) => s.uplinks.some((u) => u.quota != null));
    assert.equal(first.uplinks.find((u) => u.name === "isp1")?.quota, null);
    const before = first.uplinks.find((u) => u.name === "isp2")?.quota?.used_bytes ?? 0;

    const report = await lanTraffic(lab, 60, { rounds: 1, concurrency: 10 });
    assert.ok((sharesByUplink(report, lab).get(2) ?? 0) > 0, "isp2 carried some connections");
    const counted = await daemon.waitFor(
      (s) => (s.uplinks.find((u) => u.name === "isp2")?.quota?.used_bytes ?? 0) > before + 1000,
      10_000,
      "isp2's usage grows",
    );
    const q = counted.uplinks.find((u) => u.name === "isp2")?.quota;
    assert.equal(q?.limit_bytes, 1_000_000_000);
    assert.equal(q.exceeded, false);

    assert.match(await quotaCli("--set", "2GB"), /isp2: exceeded: /);
    await daemon.waitFor((s) => s.uplinks.find((u) => u.name === "isp2")?.quota?.exceeded === true);
    await daemon.waitFor((s) => s.uplinks.find((u) => u.name === "isp2")?.active === false);
    const held = await lanTraffic(lab, 40, { rounds: 1, concurrency: 10 });
    assert.equal(held.failed, 0);
    assert.deepEqual(
      [...sharesByUplink(held, lab).keys()],
      [1],
      "standby: isp1 takes every new connection",
    );

    await lab.fault("isp1", "blackhole");
    try {
      await daemon.waitFor(
        (s) => s.uplinks.find((u) => u.name === "isp2")?.active === true,
        15_000,
        "isp2 takes new connections while isp1 is down",
      );
      const standby = await lanTraffic(lab, 20, { rounds: 1, concurrency: 10 });
      assert.equal(standby.failed, 0);
      assert.deepEqual([...sharesByUplink(standby, lab).keys()], [2]);
    } finally {
      await lab.heal("isp1");
    }
    await daemon.waitForState("isp1", "up", 20_000);

    assert.match(await quotaCli("--reset"), /isp2: 0% of /);
    await daemon.waitFor(
      (s) =>
        s.uplinks.find((u) => u.name === "isp2")?.quota?.exceeded === false &&
        s.uplinks.find((u) => u.name === "isp2")?.active === true,
    );
    await daemon.stop();
    const saved = JSON.parse(await readFile(join(stateDir, "usage.json"), "utf8")) as {
      uplinks: Record<string, { used: number }>;
    };
    assert.ok(saved.uplinks.isp2 !== undefined, "usage.json holds isp2");
    assert.ok(saved.uplinks.isp2.used < 1_000_000_000, "the reset usage was saved");
  });
});

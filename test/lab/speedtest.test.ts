/**
 * Speed tests on the real kernel: ISPs limited to 10 and 40 Mbit/s (tbf,
 * `lab fault UPLINK rate=...`), the echo host in the lab's internet as the
 * speed-test endpoint (`GET /bytes`, `POST /upload`). With `bandwidth:
 * auto` the daemon measures both uplinks at start; the figures are within
 * 10 % of the limits and least-used shares new connections as with the
 * configured figures (20/80). `uplinkd speedtest isp1` measures through
 * isp1 alone, counts its bytes against isp1's quota, keeps the result in
 * `state_dir`, and is refused once that quota is used up.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { StatusDocument } from "../../src/control/api.js";
import type { Lab } from "../../src/lab/lab.js";
import type { SpeedtestResult } from "../../src/speedtest/state.js";
import {
  labWithConfig,
  lanTraffic,
  sharesByUplink,
  startDaemon,
  testPrefix,
  uplinkdArgv,
  type LabDaemon,
} from "./harness.js";

/** isp2's share of new connections in the default policy's effective weights, %. */
function isp2Share(status: StatusDocument): number {
  const choice = status.policies.default;
  if (choice?.kind !== "balance") return Number.NaN;
  const total = choice.members.reduce((sum, m) => sum + m.weight, 0);
  const isp2 = choice.members.find((m) => m.uplink === "isp2")?.weight ?? 0;
  return (100 * isp2) / total;
}

/** Whether `measured` (bits/s) is within 10 % of `limit`. */
function within10(measured: number | null | undefined, limit: number): boolean {
  return measured != null && Math.abs(measured - limit) <= 0.1 * limit;
}

const mbit = (bps: number | null | undefined): string =>
  bps == null ? "-" : `${(bps / 1e6).toFixed(2)} Mbit/s`;

let lab: Lab;
let daemon: LabDaemon;
let stateDir: string;

before(async () => {
  lab = await labWithConfig({ prefix: testPrefix("st"), uplinks: 2 }, (config) => {
    const uplinks = config.uplinks as Record<string, unknown>[];
    const [isp1, isp2] = uplinks;
    assert.ok(isp1 !== undefined && isp2 !== undefined);
    isp1.bandwidth = "auto";
    isp1.quota = { limit: "10GB", period: "monthly", reset_day: 1 };
    isp2.bandwidth = { down: "auto", up: "auto" };
    config.policies = { default: { balance: "least-used" } };
    config.speedtest = {
      download_url: "http://192.0.2.10/bytes?n=1073741824",
      upload_url: "http://192.0.2.10/upload",
      duration: "3s",
      streams: 4,
    };
  });
  stateDir = join(lab.stateDir, "uplinkd-state");
  const text = await readFile(lab.configPath, "utf8");
  await writeFile(lab.configPath, `${text}state_dir: ${stateDir}\n`);
  await lab.fault("isp1", "rate=10mbit");
  await lab.fault("isp2", "rate=40mbit");
  daemon = startDaemon(lab);
  await daemon.waitForStates(["up"], 30_000);
});

after(async () => {
  await (daemon as LabDaemon | undefined)?.stop();
  await (lab as Lab | undefined)?.down();
});

async function speedtestCli(
  uplink: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return lab.exec("rtr", uplinkdArgv("speedtest", uplink, "--json", "--socket", lab.controlSocket));
}

describe("bandwidth: auto", () => {
  it("measures both uplinks at start within 10 % of their limits; least-used shares 20/80 as with configured figures", async (t) => {
    const measured = await daemon.waitFor(
      (s) => s.uplinks.every((u) => u.bandwidth?.source === "speedtest" && u.bandwidth.up !== null),
      40_000,
      "both uplinks measured",
    );
    const b = (name: string) => measured.uplinks.find((u) => u.name === name)?.bandwidth;
    t.diagnostic(
      `isp1 ${mbit(b("isp1")?.down)} down ${mbit(b("isp1")?.up)} up; isp2 ${mbit(b("isp2")?.down)} down ${mbit(b("isp2")?.up)} up`,
    );
    assert.ok(within10(b("isp1")?.down, 10e6), `isp1 down ${mbit(b("isp1")?.down)}`);
    assert.ok(within10(b("isp1")?.up, 10e6), `isp1 up ${mbit(b("isp1")?.up)}`);
    assert.ok(within10(b("isp2")?.down, 40e6), `isp2 down ${mbit(b("isp2")?.down)}`);
    assert.ok(within10(b("isp2")?.up, 40e6), `isp2 up ${mbit(b("isp2")?.up)}`);
    assert.ok(b("isp1")?.measured_at != null);

    const idle = await daemon.waitFor(
      (s) => Math.abs(isp2Share(s) - 80) < 5,
      15_000,
      "idle weights from the measured capacities",
    );
    t.diagnostic(`idle: isp2 ${isp2Share(idle).toFixed(1)} % of new connections`);
    const quiet = await lanTraffic(lab, 300);
    assert.equal(quiet.failed, 0, JSON.stringify(quiet.errors));
    const quietIsp2 = sharesByUplink(quiet, lab).get(2) ?? 0;
    assert.ok(quietIsp2 > 0.68 && quietIsp2 < 0.92, `isp2 carried ${quietIsp2} of 300 when idle`);

    const saved = JSON.parse(await readFile(join(stateDir, "speedtest.json"), "utf8")) as {
      uplinks: Record<string, SpeedtestResult>;
    };
    assert.deepEqual(Object.keys(saved.uplinks).sort(), ["isp1", "isp2"]);
  });
});

describe("uplinkd speedtest", () => {
  it("measures through the uplink alone, counts its bytes against the quota, and is refused once the quota is used up", async (t) => {
    const before = (await daemon.status())?.uplinks.find((u) => u.name === "isp1")?.quota;
    assert.ok(before != null);
    const r = await speedtestCli("isp1");
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as SpeedtestResult;
    t.diagnostic(
      `isp1: ${mbit(result.down)} down, ${mbit(result.up)} up; RTT idle ${result.rtt_idle_ms} ms, during download ${result.rtt_down_ms} ms, during upload ${result.rtt_up_ms} ms; ${result.bytes_down + result.bytes_up} bytes`,
    );
    assert.equal(result.uplink, "isp1");
    assert.ok(within10(result.down, 10e6), `down ${mbit(result.down)}`);
    assert.ok(within10(result.up, 10e6), `up ${mbit(result.up)}`);
    // tbf queues up to 100 ms: the RTT under load shows it (bufferbloat).
    assert.ok(result.rtt_down_ms !== null && result.rtt_down_ms > 10, `RTT ${result.rtt_down_ms}`);
    assert.ok(result.bytes_down > 1e6 && result.bytes_up > 1e6);

    const after = (await daemon.status())?.uplinks.find((u) => u.name === "isp1")?.quota;
    assert.ok(
      (after?.used_bytes ?? 0) - before.used_bytes >= result.bytes_down + result.bytes_up,
      `quota grew by ${(after?.used_bytes ?? 0) - before.used_bytes}, the test moved ${result.bytes_down + result.bytes_up}`,
    );

    const set = await lab.exec(
      "rtr",
      uplinkdArgv("quota", "isp1", "--set", "20GB", "--socket", lab.controlSocket),
    );
    assert.equal(set.code, 0, set.stderr);
    const refused = await speedtestCli("isp1");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /isp1 is not tested: its quota is used up/);
    const reset = await lab.exec(
      "rtr",
      uplinkdArgv("quota", "isp1", "--reset", "--socket", lab.controlSocket),
    );
    assert.equal(reset.code, 0, reset.stderr);
  });
});

/**
 * The daemon's /metrics as Prometheus reads it: a running daemon in a lab
 * with two uplinks, one of them blackholed (down: no RTT, a transition, a
 * policy member without a share), scraped on its control socket and fed to
 * `promtool check metrics` (Debian's prometheus package), which must find
 * nothing to complain about. The same output is checked for the series
 * that must read 0 or NaN instead of vanishing, and for no HA series
 * without `ha:`.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type { Lab } from "../../src/lab/lab.js";
import { labWithConfig, startDaemon, testPrefix, type LabDaemon } from "./harness.js";

describe("metrics pass promtool check metrics", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("me"), uplinks: 2 });
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"], 30_000);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  /** GET /metrics on the daemon's control socket, from the router's namespace. */
  async function scrape(): Promise<string> {
    const result = await lab.exec("rtr", [
      "curl",
      "-sS",
      "--fail",
      "-m",
      "10",
      "--unix-socket",
      lab.controlSocket,
      "http://localhost/metrics",
    ]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout;
  }

  function promtool(text: string): { code: number | null; output: string } {
    const result = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    assert.equal(result.error, undefined, "promtool missing: scripts/setup.sh installs prometheus");
    return { code: result.status, output: `${result.stdout}${result.stderr}` };
  }

  it("with every uplink up, and with one down, promtool exits 0", async (t) => {
    const healthy = await scrape();
    const first = promtool(healthy);
    assert.equal(first.code, 0, `promtool (all up):\n${first.output}`);
    t.diagnostic(`all up: ${healthy.split("\n").length} lines, promtool exit 0`);

    await lab.fault("isp2", "blackhole");
    try {
      // Down in status comes first; the share follows once the kernel holds the new map.
      await daemon.waitFor(
        (s) => s.uplinks.some((u) => u.name === "isp2" && u.state === "down" && !u.active),
        20_000,
        "isp2 down and out of the map",
      );
      const text = await scrape();
      const result = promtool(text);
      assert.equal(result.code, 0, `promtool (isp2 down):\n${result.output}`);
      t.diagnostic(`isp2 down: ${text.split("\n").length} lines, promtool exit 0`);
      // A down uplink keeps its RTT series (the window's mean, NaN once nothing answered in it);
      // its share of the default policy reads 0.
      assert.match(text, /^uplinkd_uplink_rtt_seconds\{uplink="isp2"\} (NaN|[0-9.e-]+)$/im);
      assert.match(text, /^uplinkd_policy_share_ratio\{policy="default",uplink="isp2"\} 0$/m);
      assert.match(text, /^uplinkd_policy_share_ratio\{policy="default",uplink="isp1"\} 1$/m);
      assert.match(text, /^uplinkd_transitions_total\{uplink="isp2",from="up",to="down"\} 1$/m);
      assert.match(text, /^uplinkd_transitions_total\{uplink="isp1",from="up",to="down"\} 0$/m);
      assert.match(
        text,
        /^uplinkd_uplink_throughput_bytes_per_second\{uplink="isp1",direction="down"\} /m,
      );
      assert.doesNotMatch(text, /uplinkd_ha_/);
      assert.doesNotMatch(text, /^# TYPE \S+_total gauge$/m);
    } finally {
      await lab.heal("isp2");
    }
  });
});

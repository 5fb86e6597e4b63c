/**
 * The passive health signal on the real kernel: nft counters of new LAN
 * connections (SYNs) and their answers (SYN-ACKs) per uplink in uplinkd's
 * table, read by the daemon every 200 ms. With LAN traffic flowing, a
 * blackhole on one uplink makes its new connections go unanswered while
 * the other's are answered: the daemon probes that uplink at once (a burst)
 * and the burst's failed probes take it down, long before its slow regular
 * rounds would. With no LAN traffic nothing is suspect and detection is
 * the probes' alone.
 *
 * Probes are slow on purpose (every 1 s, timeout auto, down 3: about 2 s
 * or more to detect a blackhole) so the two paths are told apart; the bench
 * measures times, the bounds here are generous.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Lab } from "../../src/lab/lab.js";
import { labScriptArgv } from "../../src/lab/scripts.js";
import { LAB_HEALTH_TARGETS6 } from "../../src/lab/config.js";
import { LAB_HOSTS, LAB_HOSTS6 } from "../../src/lab/topology.js";
import { labWithConfig, startDaemon, testPrefix, type LabDaemon } from "./harness.js";
import {
  assertPassiveBurst,
  events,
  lanConnections,
  passiveLines,
  transitionAfter,
} from "./helpers.js";

describe("the passive signal from LAN connections", () => {
  let lab: Lab;
  let daemon: LabDaemon;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("pa"), uplinks: 2 }, (config) => {
      const health = config.health as Record<string, unknown>;
      health.interval = "1s";
      health.timeout = "auto";
      health.down = 3;
      // The lab's config is dual-stack: IPv6 targets beside the IPv4 ones.
      for (const target of LAB_HEALTH_TARGETS6) {
        assert.ok((health.targets as string[]).includes(target), `lab config lacks ${target}`);
      }
    });
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"], 30_000);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("with LAN traffic a blackhole is confirmed by a probe burst, faster than by the rounds alone; without traffic nothing is suspect", async (t) => {
    // Without traffic: the probes alone find the blackhole; the passive signal stays silent.
    const quietFrom = Date.now();
    await lab.fault("isp2", "blackhole");
    const quiet = await transitionAfter(lab, "isp2", "down", quietFrom, 15_000);
    assert.ok(quiet, "isp2 never went down without traffic");
    const quietMs = Date.parse(quiet.time) - quietFrom;
    t.diagnostic(`no traffic: isp2 down ${quietMs} ms after the blackhole: ${quiet.reason}`);
    assert.doesNotMatch(quiet.reason, /burst/);
    assert.deepEqual(passiveLines(daemon), []);
    await lab.heal("isp2");
    assert.ok(
      await transitionAfter(lab, "isp2", "up", quietFrom, 20_000),
      "isp2 did not come back",
    );

    // With LAN traffic on both uplinks.
    const traffic = lanConnections(lab, 30_000);
    try {
      await sleep(3000);
      const from = Date.now();
      await lab.fault("isp1", "blackhole");
      const down = await transitionAfter(lab, "isp1", "down", from, 15_000);
      assert.ok(down, "isp1 never went down with traffic");
      const busyMs = Date.parse(down.time) - from;
      t.diagnostic(`with traffic: isp1 down ${busyMs} ms after the blackhole: ${down.reason}`);
      t.diagnostic(passiveLines(daemon).join("\n"));
      assertPassiveBurst(daemon, down, "isp1", "isp2");
      assert.ok(busyMs < quietMs, `with traffic ${busyMs} ms, without ${quietMs} ms`);
    } finally {
      traffic.kill("SIGTERM");
      await lab.heal("isp1");
    }
  });

  it("IPv6 is judged on its own connections: an IPv6-only blackhole with IPv6 LAN traffic is confirmed by an IPv6 burst; IPv4 stays up", async (t) => {
    // isp1 comes back from the first case's blackhole (both families) before this one starts:
    // a recovery landing during this case would read as an IPv4 change.
    await daemon.waitForState("isp1", "up", 30_000);
    await daemon.waitForState6("isp1", "up", 30_000);
    const traffic = lanConnections(lab, 30_000, LAB_HOSTS6.echo);
    try {
      await sleep(3000);
      const from = Date.now();
      await lab.fault("isp1", "blackhole6");
      const down = await transitionAfter(lab, "isp1", "down", from, 15_000, 6);
      assert.ok(down, "isp1's IPv6 never went down with IPv6 traffic");
      const downMs = Date.parse(down.time) - from;
      t.diagnostic(
        `with IPv6 traffic: isp1 IPv6 down ${downMs} ms after blackhole6: ${down.reason}`,
      );
      // Rounds alone need three failed 1 s rounds (the first case measures ~6 s without traffic).
      assert.ok(downMs < 2500, `isp1's IPv6 went down only after ${downMs} ms`);
      assert.ok(
        passiveLines(daemon).some((l) => l.includes("isp1") && l.includes("IPv6")),
        "no IPv6 passive signal for isp1",
      );
      const v4 = (await events(lab)).filter(
        (e) => e.uplink === "isp1" && e.family === 4 && Date.parse(e.time) >= from,
      );
      assert.deepEqual(v4, [], "isp1's IPv4 changed state on an IPv6-only blackhole");
    } finally {
      traffic.kill("SIGTERM");
      await lab.heal("isp1");
    }
  });
});

describe("connections refused through one uplink (a closed port)", () => {
  let lab: Lab;
  let daemon: LabDaemon;
  /** A port nothing listens on at the echo host: its kernel answers each SYN with a RST. */
  const CLOSED_PORT = 9;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("pr"), uplinks: 2 }, (config) => {
      const health = config.health as Record<string, unknown>;
      health.interval = "1s";
      health.timeout = "auto";
      health.down = 3;
      // The closed port only through isp1; everything else over both.
      config.policies = { via_isp1: { members: [{ uplink: "isp1" }] } };
      config.rules = [{ proto: "tcp", dst_port: CLOSED_PORT, policy: "via_isp1" }];
    });
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"], 30_000);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  /** The router's passive counters of uplink `id` (IPv4): SYNs, SYN-ACKs, refusals. */
  async function counters(id: number): Promise<{ syn: number; synAck: number; refused: number }> {
    const read = async (name: string) => {
      const r = await lab.exec("rtr", ["nft", "list", "counter", "inet", "uplinkd", name]);
      assert.equal(r.code, 0, r.stderr);
      return Number(/packets (\d+)/.exec(r.stdout)?.[1] ?? NaN);
    };
    return {
      syn: await read(`passive_syn_${id}`),
      synAck: await read(`passive_synack_${id}`),
      refused: await read(`passive_refused_${id}`),
    };
  }

  it("RSTs answer the SYNs: no passive suspicion, no probe burst, isp1 stays up", async (t) => {
    const from = Date.now();
    const before1 = await counters(1);
    // Answered connections on both uplinks, and refused ones on isp1 only, for 8 s.
    const answered = lanConnections(lab, 8000);
    const refused = lab.spawn(
      "lan",
      [
        ...labScriptArgv("traffic"),
        "probe",
        "--host",
        LAB_HOSTS.echo,
        "--port",
        String(CLOSED_PORT),
        "--interval",
        "20",
        "--timeout",
        "1000",
        "--duration",
        "8000",
      ],
      { stdio: "ignore" },
    );
    try {
      await Promise.all(
        [answered, refused].map((child) => new Promise((resolve) => child.once("exit", resolve))),
      );
    } finally {
      answered.kill("SIGTERM");
      refused.kill("SIGTERM");
    }
    // Past the detector's window and grace time.
    await sleep(1500);
    const after1 = await counters(1);
    const syns = after1.syn - before1.syn;
    const rsts = after1.refused - before1.refused;
    t.diagnostic(
      `isp1: ${syns} SYNs, ${after1.synAck - before1.synAck} SYN-ACKs, ${rsts} refusals (RST) in 8 s`,
    );
    // The refused connections did go through isp1 and were counted as refusals.
    assert.ok(rsts >= 100, `only ${rsts} refusals counted on isp1`);
    assert.deepEqual(passiveLines(daemon), [], "a refused connection made an uplink suspect");
    const changes = (await events(lab)).filter(
      (e) => e.uplink === "isp1" && Date.parse(e.time) >= from,
    );
    assert.deepEqual(changes, [], "isp1 changed state");
    assert.doesNotMatch(daemon.log(400), /burst/);
  });
});

/**
 * Steering by domain name and the passive signal on the stock kernel (run
 * in the VM, `npm run test:vm`; they also pass on the host): one lab with
 * two uplinks, probes every 2 s (so that a blackhole takes the rounds
 * alone 6 s or more), and a rule that sends `video.lab.test` and the names
 * below it to isp2. What the kernel does in both: dnsmasq adds each
 * resolved address to the rule's nft set (with a timeout), and the daemon
 * reads the counters of new LAN connections and their answers per uplink
 * from its table. Then a reload into the sub-second profile (probes every
 * 50 ms, `timeout: auto`): a blackhole takes isp2 down and the heal brings
 * it back (times and any other transition are printed, not asserted: this
 * runs under emulation).
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { parse, stringify } from "yaml";
import type { ReloadResult } from "../../src/control/api.js";
import { controlRequest } from "../../src/control/client.js";
import type { Lab } from "../../src/lab/lab.js";
import { labTimeScale } from "../../src/lab/netns.js";
import { LAB_DNS_DOMAINS } from "../../src/lab/resolver.js";
import { labWithConfig, testPrefix, type LabDaemon } from "../lab/harness.js";
import {
  assertPassiveBurst,
  events,
  lanConnections,
  passiveLines,
  setElements,
  startEchoHost,
  transitionAfter,
  viaHttp,
} from "../lab/helpers.js";
import { defaultHealth, startBuiltDaemon, VM_STATE_TIMEOUT_MS, waitUplink } from "./vm-helpers.js";

const VIDEO = LAB_DNS_DOMAINS["video.lab.test"] ?? { ipv4: "" };

describe("domain steering and the passive signal on this kernel", () => {
  let lab: Lab;
  let daemon: LabDaemon;
  let videoEcho: ChildProcess | undefined;

  before(async () => {
    lab = await labWithConfig(
      { prefix: testPrefix("vms"), uplinks: 2, iperf3Servers: 0 },
      (config) => {
        defaultHealth(config);
        (config.health as Record<string, unknown>).interval = "2s";
        Object.assign(config, {
          policies: { only2: { members: [{ uplink: "isp2" }] } },
          rules: [{ name: "video", dst_domain: ["video.lab.test"], policy: "only2" }],
        });
      },
    );
    videoEcho = await startEchoHost(lab, "net", VIDEO.ipv4);
    daemon = startBuiltDaemon(lab);
    await daemon.waitFor(
      (s) => s.uplinks.every((u) => u.state === "up" && u.active),
      VM_STATE_TIMEOUT_MS,
      "both uplinks up and active",
    );
  });

  after(async () => {
    videoEcho?.kill();
    await daemon.stop();
    await lab.down();
  });

  it("sends the names of a domain rule by its policy: dnsmasq fills the rule's nft set", async () => {
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      seen.push(await viaHttp(lab, i % 2 === 0 ? "video.lab.test" : `cdn${i}.video.lab.test`, 30));
    }
    assert.deepEqual([...new Set(seen)], ["100.64.2.2"], `every GET via isp2: ${seen.join(" ")}`);
    const elements = (await setElements(lab, "dom_0_4")) ?? "";
    assert.match(
      elements,
      new RegExp(`${VIDEO.ipv4.replaceAll(".", "\\.")}\\b[^,}]*expires`),
      elements,
    );
  });

  it("confirms a blackhole with a probe burst when LAN connections to it go unanswered", async (t) => {
    const traffic = lanConnections(lab, 120_000);
    try {
      // The traffic tool starts (seconds under emulation) and the counters move.
      await sleep(5000 * Math.min(labTimeScale(), 2));
      const from = Date.now();
      await lab.fault("isp1", "blackhole");
      const down = await transitionAfter(lab, "isp1", "down", from, 30_000 * labTimeScale());
      assert.ok(down, "isp1 never went down");
      t.diagnostic(
        `isp1 down ${Date.parse(down.time) - from} ms after the blackhole: ${down.reason}`,
      );
      t.diagnostic(passiveLines(daemon).join("\n"));
      assertPassiveBurst(daemon, down, "isp1", "isp2");
    } finally {
      traffic.kill("SIGTERM");
      await lab.heal("isp1");
    }
  });

  it("runs the sub-second profile after a reload: a blackhole takes isp2 down, and it comes back", async (t) => {
    await waitUplink(daemon, "isp1", (u) => u.state === "up" && u.active, "up, active");
    const config = parse(await readFile(lab.configPath, "utf8")) as Record<string, unknown>;
    Object.assign(config.health as Record<string, unknown>, {
      interval: "50ms",
      timeout: "auto",
      down: 3,
    });
    await writeFile(lab.configPath, stringify(config));
    const reloaded = (await controlRequest(
      lab.controlSocket,
      "POST",
      "/reload",
      undefined,
      30_000 * labTimeScale(),
    )) as ReloadResult;
    assert.deepEqual(
      reloaded.changes.filter((c) => c.startsWith("health.")).sort(),
      ["health.interval: 2000 -> 50", 'health.timeout: 1000 -> "auto"'],
      JSON.stringify(reloaded.changes),
    );
    const reloadedAt = Date.now();
    await daemon.waitFor(
      (s) => s.uplinks.every((u) => u.state === "up" && u.active),
      VM_STATE_TIMEOUT_MS,
      "both uplinks up with 50 ms probes",
    );
    const faultAt = Date.now();
    await lab.fault("isp2", "blackhole");
    let healAt = Date.now();
    try {
      const down = await transitionAfter(lab, "isp2", "down", faultAt, 30_000 * labTimeScale());
      assert.ok(down, "isp2 never went down");
      t.diagnostic(
        `isp2 down ${Date.parse(down.time) - faultAt} ms after the blackhole: ${down.reason}`,
      );
    } finally {
      healAt = Date.now();
      await lab.heal("isp2");
    }
    const up = await transitionAfter(lab, "isp2", "up", healAt, 30_000 * labTimeScale());
    assert.ok(up, "isp2 did not come back");
    t.diagnostic(`isp2 up ${Date.parse(up.time) - healAt} ms after the heal`);
    const others = (await events(lab)).filter(
      (e) =>
        Date.parse(e.time) >= reloadedAt && (e.uplink === "isp1" || Date.parse(e.time) < faultAt),
    );
    t.diagnostic(
      `other transitions since the reload: ${JSON.stringify(others.map((e) => [e.uplink, e.to, e.reason]))}`,
    );
  });
});

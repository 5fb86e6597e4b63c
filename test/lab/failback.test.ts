/**
 * Failback on the real kernel. isp1 is tier 1, isp2 tier 2. The `default`
 * policy is redefined with only `failback: move` and a delay (it keeps its
 * default members: every uplink with its own tier); the `stay` policy has
 * the same members with `failback: keep` and takes UDP to port 5002.
 *
 * isp1 is blackholed, so new flows start on isp2: a UDP flow with a fixed
 * 5-tuple to port 5001 (default), one to port 5002 (stay), and a TCP
 * connection (default). When isp1 is back and the delay has passed, the
 * default policy's flows move to isp1 (the UDP flow within 1 s after the
 * delay, not before it: the delay counts from when the router gives isp1
 * new connections again), the TCP connection's entry on isp2 is gone, and
 * the stay policy's UDP flow is still on isp2.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { StatusDocument } from "../../src/control/api.js";
import type { Lab } from "../../src/lab/lab.js";
import { startUdpFlow, uplinkOfAddress4, type UdpFlow } from "./helpers.js";
import {
  holdConnection,
  labWithConfig,
  startDaemon,
  testPrefix,
  type LabDaemon,
} from "./harness.js";

const DELAY_MS = 2_000;
const MARK_MASK = 0xff00;
const POLICY_MASK = 0xff0000;
/** The default policy is the first: its connmark bits under the default policy_mark_mask. */
const DEFAULT_POLICY_MARK = 0x10000;

let lab: Lab;
let daemon: LabDaemon;
const children: ChildProcess[] = [];

before(async () => {
  lab = await labWithConfig({ prefix: testPrefix("fb"), uplinks: 2 }, (config) => {
    const uplinks = config.uplinks as Record<string, unknown>[];
    const isp2 = uplinks.find((u) => u.name === "isp2");
    assert.ok(isp2 !== undefined);
    isp2.tier = 2;
    config.policies = {
      default: { failback: "move", failback_delay: `${DELAY_MS}ms` },
      stay: {
        members: [
          { uplink: "isp1", tier: 1 },
          { uplink: "isp2", tier: 2 },
        ],
        failback: "keep",
      },
    };
    config.rules = [{ name: "udp-5002", proto: "udp", dst_port: 5002, policy: "stay" }];
  });
  // A UDP echo in the internet that answers with the source address it saw.
  children.push(
    lab.spawn("net", [
      process.execPath,
      "-e",
      `const d = require("node:dgram");
       for (const port of [5001, 5002]) {
         const s = d.createSocket("udp4");
         s.on("message", (m, r) => s.send(r.address, r.port, r.address));
         s.bind(port, "192.0.2.10");
       }`,
    ]),
  );
  daemon = startDaemon(lab);
  await daemon.waitForStates(["up"], 30_000);
});

after(async () => {
  for (const c of children) c.kill("SIGKILL");
  await (daemon as LabDaemon | undefined)?.stop();
  await (lab as Lab | undefined)?.down();
});

/** Conntrack entries in the router matching `args` and carrying `mark/mask`. */
async function entries(args: string[], mark: number, mask: number): Promise<number> {
  const r = await lab.exec("rtr", [
    "conntrack",
    "-L",
    "-f",
    "ipv4",
    ...args,
    "-m",
    `${mark}/${mask}`,
  ]);
  assert.ok(r.code === 0 || r.code === 1, `conntrack -L: ${r.stderr}`);
  return r.stdout.split("\n").filter((l) => /^(tcp|udp)/.test(l)).length;
}

function members(status: StatusDocument, policy: string): string[] {
  const choice = status.policies[policy];
  return choice?.kind === "balance" ? choice.members.map((m) => m.uplink) : [];
}

/** A UDP flow from the LAN, one datagram every 200 ms (ended in `after`). */
function flow(sourcePort: number, port: number): UdpFlow {
  const started = startUdpFlow(lab, "lan", sourcePort, port, 200);
  children.push(started.child);
  return started;
}

describe("failback: move", () => {
  it("moves the policy's UDP flow and TCP connection back to tier 1 after the delay; a keep policy's flow stays", async (t) => {
    const first = await daemon.waitFor((s) => members(s, "default").length > 0);
    assert.deepEqual(members(first, "default"), ["isp1"], "default keeps its members: isp1 first");
    const isp2Mark = Number(first.uplinks.find((u) => u.name === "isp2")?.mark);

    await lab.fault("isp1", "blackhole");
    const failed = await daemon.waitFor(
      (s) => members(s, "default").join() === "isp2" && members(s, "stay").join() === "isp2",
      15_000,
      "isp2 takes the new connections",
    );
    assert.equal(failed.uplinks.find((u) => u.name === "isp1")?.state, "down");

    const moving = flow(40_001, 5001);
    const staying = flow(40_002, 5002);
    const hold = holdConnection(lab, { durationMs: 90_000, intervalMs: 200, timeoutMs: 2000 });
    try {
      const deadline = Date.now() + 10_000;
      while (
        moving.answers.length === 0 ||
        staying.answers.length === 0 ||
        !hold.lines.some((l) => l.event === "answer")
      ) {
        assert.ok(
          Date.now() < deadline,
          `the flows got no answers on isp2: udp 5001 ${moving.answers.length}, udp 5002 ${staying.answers.length}, tcp ${JSON.stringify(hold.lines.slice(0, 2))}`,
        );
        await sleep(100);
      }
      assert.equal(uplinkOfAddress4(lab, moving.answers[0]?.source ?? ""), "isp2");
      assert.equal(uplinkOfAddress4(lab, staying.answers[0]?.source ?? ""), "isp2");
      // The default policy's entries carry its mark, the stay policy's do not.
      assert.equal(
        await entries(
          ["-p", "udp", "--dport", "5001"],
          isp2Mark | DEFAULT_POLICY_MARK,
          MARK_MASK | POLICY_MASK,
        ),
        1,
      );
      assert.ok(
        (await entries(
          ["-p", "tcp", "--dport", "7"],
          isp2Mark | DEFAULT_POLICY_MARK,
          MARK_MASK | POLICY_MASK,
        )) >= 1,
      );
      assert.equal(
        await entries(["-p", "udp", "--dport", "5002"], isp2Mark, MARK_MASK | POLICY_MASK),
        1,
      );

      await lab.heal("isp1");
      // The delay counts from when the router gives tier 1 new connections
      // again (the policy's choice in status follows what the kernel holds).
      await daemon.waitFor(
        (s) => members(s, "default").join() === "isp1",
        20_000,
        "isp1 takes new connections again",
        20,
      );
      const usableAt = Date.now();
      await sleep(DELAY_MS + 3_000);

      const onIsp1 = moving.answers.find((a) => uplinkOfAddress4(lab, a.source) === "isp1");
      assert.ok(onIsp1 !== undefined, `the UDP flow stayed on isp2:\n${daemon.log(40)}`);
      const after = onIsp1.t - (usableAt + DELAY_MS);
      t.diagnostic(`the UDP flow's first answer via isp1 came ${after} ms after the delay ended`);
      assert.ok(after <= 1_000, `the UDP flow moved ${after} ms after the delay`);
      assert.ok(after >= -300, `the UDP flow moved ${-after} ms before the delay ended`);
      const last = moving.answers.at(-1);
      assert.equal(uplinkOfAddress4(lab, last?.source ?? ""), "isp1", "the UDP flow stays on isp1");

      assert.equal(
        await entries(["-p", "tcp", "--dport", "7"], isp2Mark, MARK_MASK),
        0,
        "the TCP connection has no entry on isp2 any more",
      );
      const kept = staying.answers.filter((a) => a.t > usableAt + DELAY_MS + 1_000);
      assert.ok(kept.length >= 5, `the stay policy's flow got ${kept.length} answers`);
      assert.ok(
        kept.every((a) => uplinkOfAddress4(lab, a.source) === "isp2"),
        "the stay policy's UDP flow stays on isp2",
      );
      const log = daemon.output.join("");
      const line = log
        .split("\n")
        .find((l) => l.includes('"event":"failback"') && l.includes('"family":4'));
      assert.ok(line !== undefined, `no failback in the log:\n${daemon.log(40)}`);
      const event = JSON.parse(line) as {
        policy: string;
        cleared: Record<string, number>;
        total: number;
      };
      assert.equal(event.policy, "default");
      assert.ok((event.cleared.isp2 ?? 0) >= 2, `cleared ${JSON.stringify(event.cleared)}`);
    } finally {
      await hold.stop();
    }
  });
});

/**
 * A probe-target outage on every uplink: the internet's ping targets stop
 * answering (an nft rule in the `net` namespace drops ICMP to them) while
 * everything else still flows. Every uplink goes down by its probes with
 * its link up; uplinkd must keep forwarding over the last resort, say so in
 * status (`reason`), and keep every long-lived connection: clearing them
 * would re-balance half of them onto the other uplink, where their source
 * address is wrong and they die.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Lab } from "../../src/lab/lab.js";
import type { HoldLine } from "../../src/lab/traffic.js";
import { LAB_HOSTS, LAB_HOSTS6 } from "../../src/lab/topology.js";
import type { TrafficProcess } from "../../src/lab/daemon.js";
import {
  holdConnection,
  labWithConfig,
  lanTraffic,
  sharesByUplink,
  startDaemon,
  testPrefix,
  type LabDaemon,
} from "./harness.js";

const CONNECTIONS = 8;

let lab: Lab;
let daemon: LabDaemon;

before(async () => {
  lab = await labWithConfig({ prefix: testPrefix("to"), uplinks: 2 });
  daemon = startDaemon(lab);
  await daemon.waitForStates(["up"], 30_000);
});

after(async () => {
  await (daemon as LabDaemon | undefined)?.stop();
  await (lab as Lab | undefined)?.down();
});

/** Drop ICMP to the ping targets of both families in the internet namespace (nothing else). */
async function targetOutage(): Promise<void> {
  const script = [
    "table inet outage {",
    "  chain input {",
    "    type filter hook input priority 0; policy accept;",
    `    ip daddr { ${LAB_HOSTS.pingTargets.join(", ")} } meta l4proto icmp drop`,
    `    ip6 daddr { ${LAB_HOSTS6.pingTargets.join(", ")} } meta l4proto ipv6-icmp drop`,
    "  }",
    "}",
  ].join("\n");
  const r = await lab.exec("net", ["nft", "-f", "-"], { input: script });
  assert.equal(r.code, 0, `nft: ${r.stderr}`);
}

/** The uplink numbers whose address a hold connection's answers came from. */
function answerUplinks(lines: readonly HoldLine[]): Set<number> {
  const out = new Set<number>();
  for (const l of lines) {
    if (l.event !== "answer") continue;
    const u = lab.uplinks.find((x) => l.source.startsWith(x.subnet.replace(/0\/24$/, "")));
    out.add(u?.number ?? 0);
  }
  return out;
}

describe("a probe-target outage on every uplink", () => {
  it("keeps 8 of 8 long-lived connections, and new connections still go out", async () => {
    const holds: TrafficProcess<HoldLine>[] = [];
    try {
      for (let i = 0; i < CONNECTIONS; i++) {
        holds.push(holdConnection(lab, { durationMs: 60_000, intervalMs: 200, timeoutMs: 2000 }));
      }
      const deadline = Date.now() + 30_000;
      while (holds.some((h) => !h.lines.some((l) => l.event === "answer"))) {
        assert.ok(
          Date.now() < deadline,
          `not every connection got an answer: ${JSON.stringify(holds.map((h) => h.lines.slice(0, 2)))}`,
        );
        await sleep(100);
      }
      const spread = new Set(holds.flatMap((h) => [...answerUplinks(h.lines)]));
      await targetOutage();
      const down = await daemon.waitFor(
        (s) => s.uplinks.every((u) => u.state === "down"),
        20_000,
        "every uplink down",
      );
      assert.ok(
        down.uplinks.every((u) => u.carrier),
        "links stay up",
      );
      const withReason = await daemon.waitFor(
        (s) => typeof s.reason === "string" && s.reason.includes("last resort"),
        5_000,
        "status reason about the last resort",
      );
      assert.match(withReason.reason ?? "", /every uplink is down by its probes/);
      // Long enough for a clean-up to have happened, and for its victims to notice.
      await sleep(5_000);
      const seen = holds.map((h) => h.lines.length);
      const report = await lanTraffic(lab, 20, { rounds: 1, concurrency: 10 });
      assert.equal(report.failed, 0, `new connections failed: ${JSON.stringify(report.errors)}`);
      assert.equal(report.ok, 20);
      await sleep(2_000);
      const lines = await Promise.all(holds.map((h) => h.stop()));
      let kept = 0;
      const problems: string[] = [];
      for (const [i, l] of lines.entries()) {
        const closed = l.find((x) => x.event === "closed");
        const late = l.slice(seen[i]).filter((x) => x.event === "answer").length;
        const uplinks = answerUplinks(l);
        if (closed === undefined && late > 0 && uplinks.size === 1) kept++;
        else {
          problems.push(
            `#${i}: ${closed === undefined ? "open" : `closed (${closed.error})`}, ${late} answers after the outage, uplinks ${[...uplinks].join("+")}`,
          );
        }
      }
      assert.equal(kept, CONNECTIONS, `kept ${kept} of ${CONNECTIONS}: ${problems.join("; ")}`);
      assert.ok(spread.size === 2, `the connections used uplinks ${[...spread].join(", ")} only`);
      assert.ok(sharesByUplink(report, lab).size >= 1);
      const log = daemon.output.join("");
      const said = log.split("\n").filter((x) => x.includes("every uplink is down by its probes"));
      assert.equal(said.length, 1, `said ${said.length} times in the log`);
      assert.ok(!/cleared \d+ conntrack entries of isp\d \(failed\)/.test(log), "no clean-up");
    } finally {
      await Promise.all(holds.map((h) => h.stop()));
    }
  });
});

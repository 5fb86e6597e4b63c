/**
 * Tunnels on the real kernel, without WireGuard (this machine's kernel has
 * none; the WireGuard test is test/vm/tunnel.test.ts): the router's own UDP
 * flow with a fixed 5-tuple, from the router namespace to a UDP echo in the
 * internet that answers with the source address it saw, is the tunnel
 * `site` over policy `site` (isp2 first, isp1 backup, failback: move after
 * 2 s). The echo's answers tell which uplink carried each datagram.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { StatusDocument } from "../../src/control/api.js";
import type { Lab } from "../../src/lab/lab.js";
import { startUdpFlow, uplinkOfAddress4, type UdpFlow } from "./helpers.js";
import { labWithConfig, startDaemon, testPrefix, type LabDaemon } from "./harness.js";

const DELAY_MS = 2_000;
const PORT = 5003;
const SOURCE_PORT = 40_003;

let lab: Lab;
let daemon: LabDaemon;
const children: ChildProcess[] = [];

before(async () => {
  lab = await labWithConfig({ prefix: testPrefix("tun"), uplinks: 2 }, (config) => {
    config.policies = {
      site: {
        members: [
          { uplink: "isp2", tier: 1 },
          { uplink: "isp1", tier: 2 },
        ],
        failback: "move",
        failback_delay: `${DELAY_MS}ms`,
      },
    };
    config.tunnels = [{ name: "site", endpoint: `192.0.2.10:${PORT}`, policy: "site" }];
  });
  children.push(
    lab.spawn("net", [
      process.execPath,
      "-e",
      `const s = require("node:dgram").createSocket("udp4");
       s.on("message", (m, r) => s.send(r.address, r.port, r.address));
       s.bind(${PORT}, "192.0.2.10");`,
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

/** The router's own UDP flow: one datagram every 100 ms from a fixed port (ended in `after`). */
function routerFlow(): UdpFlow {
  const started = startUdpFlow(lab, "rtr", SOURCE_PORT, PORT, 100);
  children.push(started.child);
  return started;
}

function tunnelUplink(status: StatusDocument): string | null | undefined {
  return status.tunnels?.find((t) => t.name === "site")?.uplink;
}

/** Wait until an answer after `since` came through `uplink`; its time. */
async function answeredVia(
  flow: { answers: { t: number; source: string }[] },
  uplink: string,
  since: number,
  limitMs: number,
): Promise<number> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const hit = flow.answers.find((a) => a.t > since && uplinkOfAddress4(lab, a.source) === uplink);
    if (hit !== undefined) return hit.t;
    assert.ok(
      Date.now() < deadline,
      `no answer via ${uplink} in ${limitMs} ms; last ${JSON.stringify(flow.answers.at(-1))}\n${daemon.log(30)}`,
    );
    await sleep(50);
  }
}

describe("a tunnel of the router steered by its policy (the router's own UDP flow)", () => {
  it("runs on isp2, moves to isp1 when isp2 is declared down, and back after the failback delay", async (t) => {
    await daemon.waitFor((s) => tunnelUplink(s) === "isp2", 10_000, "tunnel site on isp2");
    const flow = routerFlow();
    await answeredVia(flow, "isp2", 0, 10_000);
    const conntrack = await lab.exec("rtr", [
      "conntrack",
      "-L",
      "-p",
      "udp",
      "--dport",
      String(PORT),
    ]);
    assert.match(conntrack.stdout, /dst=100\.64\.2\.2 /, "masqueraded to isp2's address");

    await lab.fault("isp2", "blackhole");
    const down = await daemon.waitFor(
      (s) => s.uplinks.find((u) => u.name === "isp2")?.state === "down",
      15_000,
      "isp2 down",
      20,
    );
    const declared = Date.parse(down.uplinks.find((u) => u.name === "isp2")?.since ?? "");
    const moved = await answeredVia(flow, "isp1", declared, 5_000);
    t.diagnostic(`isp2 declared down; the flow answered via isp1 ${moved - declared} ms later`);
    assert.ok(
      moved - declared <= 3_000,
      `moved ${moved - declared} ms after isp2 was declared down`,
    );
    assert.equal(tunnelUplink(await daemon.waitFor(() => true)), "isp1");

    await lab.heal("isp2");
    const up = await daemon.waitFor(
      (s) => {
        const isp2 = s.uplinks.find((u) => u.name === "isp2");
        return isp2?.state === "up" && isp2.active;
      },
      20_000,
      "isp2 up and active",
      20,
    );
    const upAt = Date.now();
    const back = await answeredVia(flow, "isp2", upAt, DELAY_MS + 5_000);
    t.diagnostic(
      `isp2 up; the flow answered via isp2 again ${back - upAt} ms later (delay ${DELAY_MS} ms)`,
    );
    assert.ok(back - upAt >= DELAY_MS - 300, `back on isp2 ${back - upAt} ms after isp2 was up`);
    assert.equal(
      tunnelUplink(await daemon.waitFor((s) => tunnelUplink(s) === "isp2", 5_000)),
      "isp2",
    );
    assert.ok(up.tunnels !== undefined);
    const log = daemon.output.join("");
    assert.match(
      log,
      /tunnel site \(udp 192\.0\.2\.10:5003\): isp2 -> isp1: isp2 is not usable; cleared 1 conntrack entries/,
    );
    assert.match(
      log,
      /tunnel site \(udp 192\.0\.2\.10:5003\): isp1 -> isp2: failback to tier 1; cleared [01] conntrack entries/,
    );
  });
});

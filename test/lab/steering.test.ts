/**
 * Traffic steering on the real kernel: rules, rule order, sticky sessions,
 * per-ISP destinations, port forwards and last resorts, checked with real
 * TCP and UDP traffic whose uplink the echo hosts and ISP counters report.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type { Lab } from "../../src/lab/lab.js";
import { labScriptArgv } from "../../src/lab/scripts.js";
import type { TrafficReport } from "../../src/lab/traffic.js";
import { labWithConfig, startDaemon, testPrefix, uplinkdArgv, type LabDaemon } from "./harness.js";
import { startEchoHost } from "./helpers.js";

/** LAN client addresses (the lab gives the client 100.64.100.2; the test adds the others). */
const CLIENTS = ["100.64.100.2", "100.64.100.3", "100.64.100.4", "100.64.100.5"];
/** Sources of the sticky rule: 100.64.100.8/29. */
const STICKY = Array.from({ length: 8 }, (_, i) => `100.64.100.${8 + i}`);
/** A second echo host in the internet, pinned to isp3 by the config. */
const PINNED_HOST = "203.0.113.1";

interface Run {
  host: string;
  port?: number;
  count?: number;
  bind?: string;
  mode?: "whoami" | "http";
  node?: string;
  timeoutMs?: number;
}

async function traffic(lab: Lab, run: Run): Promise<TrafficReport> {
  const argv = [
    ...labScriptArgv("traffic"),
    run.mode ?? "whoami",
    "--host",
    run.host,
    "--count",
    String(run.count ?? 60),
    "--timeout",
    String(run.timeoutMs ?? 3000),
  ];
  if (run.port !== undefined) argv.push("--port", String(run.port));
  if (run.bind !== undefined) argv.push("--bind", run.bind);
  const result = await lab.exec(run.node ?? "lan", argv, { timeoutMs: 60_000 });
  return JSON.parse(result.stdout) as TrafficReport;
}

/** The uplink numbers that carried a report's connections (from the sources the echo host saw). */
function uplinksOf(report: TrafficReport): number[] {
  return Object.keys(report.bySource)
    .map((source) => Number(/^100\.64\.(\d+)\.\d+$/.exec(source)?.[1] ?? 0))
    .sort();
}

/** A UDP echo in the internet: answers each datagram on port 9 with the sender's address. */
const UDP_ECHO = `for (const a of ["192.0.2.10", "192.0.2.53"]) {
  const s = require("dgram").createSocket("udp4");
  s.on("message", (m, r) => s.send(r.address, r.port, r.address));
  s.bind(9, a);
}`;

/** Send one UDP datagram from the LAN client and return the source address the echo saw. */
async function udpWho(lab: Lab, host: string, bind = "0.0.0.0"): Promise<string> {
  const script = `const s = require("dgram").createSocket("udp4");
s.on("message", (m) => { console.log(m.toString()); process.exit(0); });
s.bind({ address: ${JSON.stringify(bind)} }, () => s.send("who", 9, ${JSON.stringify(host)}));
setTimeout(() => process.exit(3), 3000);`;
  const result = await lab.exec("lan", [process.execPath, "-e", script], { timeoutMs: 10_000 });
  return result.stdout.trim();
}

describe("traffic steering", () => {
  let lab: Lab;
  let daemon: LabDaemon;
  const helpers: ChildProcess[] = [];

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("steer"), uplinks: 3 }, (config) => {
      const uplinks = config.uplinks as Record<string, unknown>[];
      Object.assign(uplinks[0] ?? {}, {
        forwards: [{ proto: "tcp", port: 8080, to: "100.64.100.2", to_port: 7 }],
        route_options: { initcwnd: 20, mtu: 1400 },
      });
      Object.assign(uplinks[1] ?? {}, {
        forwards: [{ proto: "tcp", port: 8080, to: "100.64.100.2", to_port: 7 }],
      });
      Object.assign(uplinks[2] ?? {}, { dns: ["192.0.2.53"], pinned: [`${PINNED_HOST}/32`] });
      Object.assign(config, {
        sets: { second_clients: ["100.64.100.3/32"] },
        policies: {
          only1: { members: [{ uplink: "isp1" }] },
          only2: { members: [{ uplink: "isp2" }], last_resort: "unreachable" },
          only3: { members: [{ uplink: "isp3" }] },
          all3: {
            members: [{ uplink: "isp1" }, { uplink: "isp2" }, { uplink: "isp3" }],
          },
        },
        rules: [
          // Order: the first two overlap; the first wins for 100.64.100.4.
          { name: "client 4 via isp3", src: "100.64.100.4", policy: "only3" },
          { name: "clients 4-5 via isp1", src: ["100.64.100.4/31"], policy: "only1" },
          { name: "set", src: "@second_clients", policy: "only2" },
          { name: "http", proto: "tcp", dst_port: 80, policy: "only3" },
          { name: "dscp ef", dscp: "ef", policy: "only3" },
          { name: "iif", iif: "lan0", proto: "udp", policy: "only1" },
          { name: "pinned host wants isp2", dst: PINNED_HOST, policy: "only2" },
          {
            name: "sticky",
            src: "100.64.100.8/29",
            proto: "tcp",
            policy: "all3",
            sticky: { by: "src", timeout: "5m" },
          },
          { name: "everything else from .2 via isp2", src: "100.64.100.2", policy: "only2" },
        ],
      });
    });
    for (const address of [...CLIENTS.slice(1), ...STICKY]) {
      await lab.exec("lan", ["ip", "addr", "add", `${address}/24`, "dev", "eth0"]);
    }
    const udpEcho = lab.spawn("net", [process.execPath, "-e", UDP_ECHO], { stdio: "ignore" });
    helpers.push(udpEcho);
    helpers.push(
      ...(await Promise.all([
        startEchoHost(lab, "net", PINNED_HOST, ["--http-port", "8081"]),
        startEchoHost(lab, "lan", "100.64.100.2", ["--http-port", "8082"]),
      ])),
    );
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
  });

  after(async () => {
    for (const child of helpers) child.kill();
    await daemon.stop();
    await lab.down();
  });

  it("sends a source prefix, a named set and a port to their policies", async () => {
    const fromSet = await traffic(lab, { host: "192.0.2.10", bind: "100.64.100.3" });
    assert.deepEqual(uplinksOf(fromSet), [2], JSON.stringify(fromSet.bySource));
    const http = await traffic(lab, { host: "192.0.2.10", mode: "http", bind: "100.64.100.5" });
    assert.equal(http.failed, 0, JSON.stringify(http.errors));
    assert.deepEqual(uplinksOf(http), [1], "clients .4/.5 go via isp1 before the http rule");
    const httpOther = await traffic(lab, {
      host: "192.0.2.10",
      mode: "http",
      bind: "100.64.100.3",
    });
    assert.deepEqual(uplinksOf(httpOther), [2], "the set rule comes before the http rule");
  });

  it("lets the first matching rule win", async () => {
    const four = await traffic(lab, { host: "192.0.2.10", bind: "100.64.100.4" });
    assert.deepEqual(uplinksOf(four), [3], JSON.stringify(four.bySource));
    const five = await traffic(lab, { host: "192.0.2.10", bind: "100.64.100.5" });
    assert.deepEqual(uplinksOf(five), [1], JSON.stringify(five.bySource));
  });

  it("matches DSCP, and UDP from the LAN interface", async () => {
    const nft = [
      "table inet labdscp {",
      "  chain out {",
      "    type filter hook output priority mangle;",
      "    ip daddr 192.0.2.10 tcp dport 7 ip saddr 100.64.100.2 ip dscp set ef",
      "  }",
      "}",
      "",
    ].join("\n");
    const loaded = await lab.exec("lan", ["nft", "-f", "-"], { input: nft });
    assert.equal(loaded.code, 0, loaded.stderr);
    try {
      const ef = await traffic(lab, { host: "192.0.2.10" });
      assert.deepEqual(uplinksOf(ef), [3], JSON.stringify(ef.bySource));
    } finally {
      await lab.exec("lan", ["nft", "delete", "table", "inet", "labdscp"]);
    }
    const plain = await traffic(lab, { host: "192.0.2.10" });
    assert.deepEqual(uplinksOf(plain), [2], "without DSCP, client .2 falls to its own rule");
    assert.equal(await udpWho(lab, "192.0.2.10"), "100.64.1.2", "UDP from lan0 goes via isp1");
  });

  it("keeps the DNS server and pinned destinations on their uplink whatever the rules say", async () => {
    const pinned = await traffic(lab, { host: PINNED_HOST, bind: "100.64.100.3" });
    assert.equal(pinned.failed, 0, JSON.stringify(pinned.errors));
    assert.deepEqual(uplinksOf(pinned), [3], JSON.stringify(pinned.bySource));
    assert.equal(
      await udpWho(lab, "192.0.2.53"),
      "100.64.3.2",
      "isp3's DNS server is reached via isp3",
    );
    const answer = await lab.exec("lan", ["busybox", "nslookup", "echo.lab.test", "192.0.2.53"]);
    assert.match(answer.stdout, /192\.0\.2\.10/, answer.stdout + answer.stderr);
  });

  it("keeps each sticky source on one uplink over 1,000 connections, and spreads the sources", async () => {
    const reports = await Promise.all(
      STICKY.map((bind) => traffic(lab, { host: "192.0.2.10", bind, count: 125 })),
    );
    const used = new Set<number>();
    for (const [i, report] of reports.entries()) {
      assert.equal(report.failed, 0, JSON.stringify(report.errors));
      assert.equal(
        uplinksOf(report).length,
        1,
        `${STICKY[i] ?? ""}: ${JSON.stringify(report.bySource)}`,
      );
      for (const u of uplinksOf(report)) used.add(u);
    }
    assert.ok(used.size > 1, `8 sticky sources all landed on uplink ${[...used].join()}`);
  });

  it("publishes one port forward on two uplinks at once, replies leaving by the uplink they came in on", async () => {
    const [via1, via2] = await Promise.all([
      traffic(lab, { node: "net", host: "100.64.1.2", port: 8080, count: 100 }),
      traffic(lab, { node: "net", host: "100.64.2.2", port: 8080, count: 100 }),
    ]);
    assert.equal(via1.ok, 100, JSON.stringify(via1.errors));
    assert.equal(via2.ok, 100, JSON.stringify(via2.errors));
    for (const u of lab.uplinks) {
      assert.equal(
        (await lab.ispCounters(u.number)).spoofed.packets,
        0,
        `${u.name} dropped replies`,
      );
    }
  });

  it("passes route options to the uplink's routes", async () => {
    const routes = await lab.exec("rtr", ["ip", "route", "show", "table", "101"]);
    assert.match(routes.stdout, /mtu 1400/);
    assert.match(routes.stdout, /initcwnd 20/);
  });

  it("shows the rules in plan as the kernel will hold them", async () => {
    const plan = await lab.exec("rtr", uplinkdArgv("plan", "-c", lab.configPath, "--json"));
    const parsed = JSON.parse(plan.stdout) as { empty: boolean; nftScript: string };
    assert.equal(parsed.empty, true, "nothing to change after the daemon applied");
    assert.match(parsed.nftScript, /chain steer \{/);
    assert.match(parsed.nftScript, /100\.64\.100\.3 : goto policy_only2/, "the set rule");
    assert.match(
      parsed.nftScript,
      /meta l4proto tcp th dport 80 goto policy_only3/,
      "the http rule",
    );
  });

  it("applies the last resort of a policy whose only uplink is down", async () => {
    await lab.fault("isp2", "blackhole");
    try {
      // Down in status comes first; the reject follows once the kernel holds the new state.
      await daemon.waitFor(
        (s) => s.uplinks.some((u) => u.name === "isp2" && u.state === "down" && !u.active),
        10_000,
        "isp2 down and out of the map",
      );
      const report = await traffic(lab, { host: "192.0.2.10", bind: "100.64.100.3", count: 5 });
      assert.equal(report.ok, 0);
      // The kernel rate-limits ICMP errors per destination, so some SYNs of a burst go unanswered.
      assert.ok(
        (report.errors.ENETUNREACH ?? 0) >= 1,
        `rejected with net unreachable: ${JSON.stringify(report.errors)}`,
      );
    } finally {
      await lab.heal("isp2");
      await daemon.waitForState("isp2", "up", 15_000);
    }
  });
});

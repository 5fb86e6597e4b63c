/**
 * The lab on the real kernel (run as root): topology, test hosts, ISP
 * anti-spoofing and counters, faults, DHCP, teardown, and the host's own
 * network left alone. Every test builds its own lab with a unique prefix
 * and removes it afterwards, also when it fails.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { Command } from "commander";
import { parse as parseYaml } from "yaml";
import { configSchema } from "../../src/config/schema.js";
import { LabError } from "../../src/errors.js";
import { runCommand } from "../../src/kernel/exec.js";
import { registerLabCommands } from "../../src/lab/cli.js";
import { labDown, labUp, openLab } from "../../src/lab/lab.js";
import { listNamespaces, namespacePids } from "../../src/lab/netns.js";
import {
  eventually,
  hostNetworkSnapshot,
  iperf,
  linkFlags,
  ping,
  routeBySource,
  testLab,
  traffic,
  uniquePrefix,
} from "./helpers.js";

const hostBefore = await hostNetworkSnapshot();

test("lab up builds 3 uplinks and the echo host sees each uplink's router address", async (t) => {
  const started = performance.now();
  const lab = await testLab(t, { uplinks: 3 });
  const upMs = performance.now() - started;
  t.diagnostic(`lab up with 3 uplinks took ${Math.round(upMs)} ms`);
  assert.ok(upMs < 5000, `lab up took ${upMs} ms`);

  const names = await listNamespaces();
  for (const node of ["lan", "rtr", "net", "isp1", "isp2", "isp3"]) {
    assert.ok(names.includes(`${lab.prefix}-${node}`), `namespace ${lab.prefix}-${node}`);
  }
  // The router's main table has no default route for static uplinks.
  const main = await lab.exec("rtr", ["ip", "-4", "route", "show", "default"]);
  assert.equal(main.stdout.trim(), "");

  await routeBySource(lab);
  for (const u of lab.uplinks) {
    assert.equal(await lab.routerAddress(u.number), `100.64.${u.number}.2`);
    const whoami = await traffic(lab, "rtr", [
      "--host",
      "192.0.2.10",
      "--bind",
      u.routerAddress,
      "--count",
      "10",
      "--rounds",
      "3",
    ]);
    assert.deepEqual(whoami.bySource, { [u.routerAddress]: 10 });
    assert.equal(whoami.ok, 10);
    assert.equal(whoami.inconsistent, 0);
    const http = await traffic(lab, "rtr", [
      "http",
      "--host",
      "192.0.2.10",
      "--bind",
      u.routerAddress,
      "--count",
      "2",
    ]);
    assert.deepEqual(http.bySource, { [u.routerAddress]: 2 });
    for (const target of ["198.51.100.1", "203.0.113.1"]) {
      const p = await ping(lab, "rtr", target, { count: 2, args: ["-I", u.routerAddress] });
      assert.equal(p.received, 2, `ping ${target} via ${u.name}`);
    }
  }

  // GET / answers with the client address alone; DNS answers for echo.lab.test.
  const script = `
    const http = require("node:http");
    const { Resolver } = require("node:dns").promises;
    http.get({ host: "192.0.2.10", path: "/", localAddress: "100.64.2.2" }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", async () => {
        const r = new Resolver();
        r.setLocalAddress("100.64.2.2");
        r.setServers(["192.0.2.53"]);
        console.log(JSON.stringify({ body, dns: await r.resolve4("echo.lab.test") }));
      });
    });`;
  const r = await lab.exec("rtr", [process.execPath, "-e", script]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { body: "100.64.2.2\n", dns: ["192.0.2.10"] });

  // The internet reaches the router's uplink addresses (for inbound tests).
  const inbound = await ping(lab, "net", "100.64.3.2", { count: 1 });
  assert.equal(inbound.received, 1, "answered through the source rule");
  const toIsp = await ping(lab, "net", "100.64.3.1", { count: 1 });
  assert.equal(toIsp.received, 1);
});

test("each ISP counts what crosses it and drops sources outside its customer subnet", async (t) => {
  const lab = await testLab(t, { uplinks: 2 });
  await routeBySource(lab);
  const before1 = await lab.ispCounters("isp1");
  const p = await ping(lab, "rtr", "198.51.100.1", { count: 5, args: ["-I", "100.64.1.2"] });
  assert.equal(p.received, 5);
  const after1 = await lab.ispCounters("isp1");
  assert.ok(after1.up.packets - before1.up.packets >= 5, JSON.stringify(after1));
  assert.ok(after1.down.packets - before1.down.packets >= 5, JSON.stringify(after1));
  assert.ok(after1.up.bytes > before1.up.bytes);
  assert.equal((await lab.ispCounters(2)).up.packets, 0);

  // uplink 1's address sent through ISP 2: dropped there, counted as spoofed.
  await lab.exec("rtr", [
    "ip",
    "route",
    "add",
    "203.0.113.1/32",
    "via",
    "100.64.2.1",
    "src",
    "100.64.1.2",
  ]);
  const spoofed = await ping(lab, "rtr", "203.0.113.1", { count: 3 });
  assert.equal(spoofed.received, 0);
  const c2 = await lab.ispCounters(2);
  assert.equal(c2.spoofed.packets, 3);
  assert.equal(c2.up.packets, 0);

  // The LAN client's own address (no masquerade) is dropped by the ISP too.
  await lab.exec("rtr", ["ip", "route", "add", "default", "via", "100.64.1.1"]);
  const lan = await ping(lab, "lan", "198.51.100.1", { count: 2 });
  assert.equal(lan.received, 0);
  assert.equal((await lab.ispCounters(1)).spoofed.packets, 2);
});

test("lab up writes a daemon config that passes the schema", async (t) => {
  const lab = await testLab(t, {
    uplinks: 3,
    dhcp: ["isp3"],
    weights: [3, 2, 1],
    tiers: [1, 1, 2],
  });
  assert.ok(lab.configPath.startsWith(lab.stateDir));
  const config = configSchema.parse(parseYaml(await readFile(lab.configPath, "utf8")));
  assert.deepEqual(config.lan, ["lan0"]);
  assert.deepEqual(
    config.uplinks.map((u) => [u.name, u.interface, u.gateway, u.weight, u.tier]),
    [
      ["isp1", "wan1", "100.64.1.1", 3, 1],
      ["isp2", "wan2", "100.64.2.1", 2, 1],
      ["isp3", "wan3", "auto", 1, 2],
    ],
  );
  assert.deepEqual(config.health.targets, ["198.51.100.1", "203.0.113.1"]);
  assert.equal(config.control.socket, lab.controlSocket);
  assert.ok(lab.controlSocket.startsWith(`${lab.stateDir}/`));
});

test("two labs with different prefixes run side by side; down removes only its own", async (t) => {
  const [a, b] = await Promise.all([testLab(t, { uplinks: 2 }), testLab(t, { uplinks: 1 })]);
  assert.notEqual(a.prefix, b.prefix);
  assert.notEqual(a.controlSocket, b.controlSocket);
  for (const lab of [a, b]) {
    await routeBySource(lab);
    const w = await traffic(lab, "rtr", [
      "--host",
      "192.0.2.10",
      "--bind",
      "100.64.1.2",
      "--count",
      "3",
    ]);
    assert.deepEqual(w.bySource, { "100.64.1.2": 3 });
  }
  await a.down();
  const names = await listNamespaces();
  assert.ok(!names.some((n) => n.startsWith(`${a.prefix}-`)));
  assert.ok(names.includes(`${b.prefix}-rtr`));
  assert.equal((await ping(b, "rtr", "100.64.1.1", { count: 1 })).received, 1);
});

test("lab down leaves no namespace, process or state directory", async (t) => {
  const prefix = uniquePrefix();
  const lab = await labUp({ prefix, uplinks: 2, dhcp: [2] });
  t.after(async () => {
    await labDown(prefix);
  });
  // A process the caller started (as the daemon would be) goes too.
  const sleeper = lab.spawn("rtr", ["sleep", "60"], { stdio: "ignore" });
  const exited = new Promise((resolve) => sleeper.once("exit", resolve));
  const pids = [...lab.processes.map((p) => p.pid), sleeper.pid ?? -1];
  assert.ok((await namespacePids(lab.namespace("rtr"))).includes(sleeper.pid ?? -1));

  const report = await lab.down();
  assert.equal(report.namespaces.length, 5);
  assert.ok(report.processes >= pids.length, `ended ${report.processes} of ${pids.length}`);
  await exited;
  assert.ok(!(await listNamespaces()).some((n) => n.startsWith(`${prefix}-`)));
  assert.ok(!existsSync(lab.stateDir));
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  assert.ok(await eventually(() => Promise.resolve(pids.every((pid) => !alive(pid)))), "all gone");
  await assert.rejects(openLab(prefix), LabError);
  // A second down finds nothing and is not an error.
  assert.deepEqual((await labDown(prefix)).namespaces, []);
});

test("carrier fault: the router's wan loses carrier; heal brings it back", async (t) => {
  const lab = await testLab(t, { uplinks: 2 });
  await lab.fault("isp1", "carrier");
  await lab.fault("isp1", "carrier"); // idempotent
  assert.ok(
    await eventually(async () => {
      const flags = await linkFlags(lab, "rtr", "wan1");
      return flags.includes("NO-CARRIER") && !flags.includes("LOWER_UP");
    }),
    "wan1 has no carrier",
  );
  assert.ok((await linkFlags(lab, "rtr", "wan2")).includes("LOWER_UP"), "wan2 is untouched");
  const status = await lab.status();
  assert.equal(status.uplinks[0]?.carrier, false);
  assert.deepEqual(status.uplinks[0].faults, ["carrier"]);

  await lab.heal("isp1");
  assert.ok(
    await eventually(async () => (await linkFlags(lab, "rtr", "wan1")).includes("LOWER_UP")),
    "wan1 has carrier again",
  );
  assert.ok(
    await eventually(
      async () => (await ping(lab, "rtr", "100.64.1.1", { count: 1 })).received === 1,
    ),
  );
});

test("blackhole fault: the gateway answers, nothing behind it does; heal restores", async (t) => {
  const lab = await testLab(t, { uplinks: 2 });
  await routeBySource(lab);
  await lab.fault(2, "blackhole");
  await lab.fault(2, "blackhole");
  assert.equal((await ping(lab, "rtr", "100.64.2.1", { count: 2 })).received, 2);
  const through = await ping(lab, "rtr", "198.51.100.1", { count: 3, args: ["-I", "100.64.2.2"] });
  assert.equal(through.received, 0);
  const other = await ping(lab, "rtr", "198.51.100.1", { count: 2, args: ["-I", "100.64.1.2"] });
  assert.equal(other.received, 2, "uplink 1 is not affected");
  // Inbound is black-holed too.
  assert.equal((await ping(lab, "net", "100.64.2.1", { count: 1 })).received, 1);
  const w = await traffic(lab, "rtr", [
    "--host",
    "192.0.2.10",
    "--bind",
    "100.64.2.2",
    "--count",
    "2",
    "--timeout",
    "500",
  ]);
  assert.equal(w.failed, 2);

  await lab.heal("isp2");
  const healed = await ping(lab, "rtr", "198.51.100.1", { count: 2, args: ["-I", "100.64.2.2"] });
  assert.equal(healed.received, 2);
});

test("loss=30 loses about 30% of pings through the ISP; heal restores", async (t) => {
  const lab = await testLab(t, { uplinks: 1 });
  await routeBySource(lab);
  await lab.fault("isp1", "loss=30");
  const lossy = await ping(lab, "rtr", "198.51.100.1", {
    count: 200,
    intervalS: 0.01,
    args: ["-I", "100.64.1.2"],
  });
  t.diagnostic(`loss=30: ${lossy.lossPercent.toFixed(1)}% of ${lossy.sent} pings lost`);
  assert.ok(lossy.lossPercent >= 15 && lossy.lossPercent <= 45, `${lossy.lossPercent}% lost`);
  // The gateway itself is not lossy (only forwarded packets are).
  assert.equal((await ping(lab, "rtr", "100.64.1.1", { count: 20, intervalS: 0.01 })).received, 20);
  assert.deepEqual(await lab.faults(1), { loss: 30 });

  await lab.heal(1);
  const clean = await ping(lab, "rtr", "198.51.100.1", {
    count: 50,
    intervalS: 0.01,
    args: ["-I", "100.64.1.2"],
  });
  assert.equal(clean.received, 50);
});

test("rate=1mbit limits throughput through the ISP; faults combine; heal removes them", async (t) => {
  const lab = await testLab(t, { uplinks: 1 });
  await routeBySource(lab);
  const free = await iperf(lab, "rtr", "100.64.1.2");
  await lab.fault("isp1", "rate=1mbit");
  const limited = await iperf(lab, "rtr", "100.64.1.2");
  t.diagnostic(
    `iperf3 through isp1: ${Math.round(free / 1e6)} Mbit/s free, ${(limited / 1e6).toFixed(2)} Mbit/s at rate=1mbit`,
  );
  assert.ok(free > 20e6, `unlimited: ${free} bit/s`);
  assert.ok(limited > 0.2e6 && limited < 1.5e6, `limited: ${limited} bit/s`);

  await lab.fault("isp1", "loss=10");
  await lab.fault("isp1", "rate=2mbit");
  assert.deepEqual(await lab.faults("isp1"), { rate: "2mbit", loss: 10 });
  const qdiscs = await lab.exec("isp1", ["tc", "qdisc", "show"]);
  assert.match(qdiscs.stdout, /tbf .* dev cust root .*rate 2Mbit/);
  assert.match(qdiscs.stdout, /tbf .* dev core root .*rate 2Mbit/);
  await assert.rejects(lab.fault("isp1", "dhcp-change"), LabError);
  await assert.rejects(lab.fault("isp1", "loss=200"), LabError);
  await assert.rejects(lab.fault("isp9", "carrier"), LabError);

  await lab.heal("isp1");
  assert.deepEqual(await lab.faults("isp1"), {});
  assert.doesNotMatch((await lab.exec("isp1", ["tc", "qdisc", "show"])).stdout, /tbf/);
  const after = await iperf(lab, "rtr", "100.64.1.2");
  assert.ok(after > 20e6, `healed: ${after} bit/s`);
});

test("a DHCP uplink gets an address and a default route; dhcp-change changes the address", async (t) => {
  const lab = await testLab(t, { uplinks: 2, dhcp: [2] });
  assert.equal(await lab.routerAddress(2), "100.64.2.2");
  const routes = await lab.exec("rtr", ["ip", "-4", "route", "show", "default"]);
  assert.equal(routes.stdout.trim(), "default via 100.64.2.1 dev wan2 metric 102");
  assert.equal(
    (await ping(lab, "rtr", "198.51.100.1", { count: 2, args: ["-I", "100.64.2.2"] })).received,
    2,
  );

  // Another process sees the same lab through its state file.
  const other = await openLab(lab.prefix);
  await other.fault("isp2", "dhcp-change");
  assert.deepEqual(await lab.routerAddresses(2), ["100.64.2.3/24"]);
  const after = await lab.exec("rtr", ["ip", "-4", "route", "show", "default"]);
  assert.equal(after.stdout.trim(), "default via 100.64.2.1 dev wan2 metric 102");
  assert.equal(
    (await ping(lab, "rtr", "198.51.100.1", { count: 2, args: ["-I", "100.64.2.3"] })).received,
    2,
  );
  const status = await lab.status();
  assert.ok(
    status.processes.every((p) => p.alive),
    JSON.stringify(status.processes),
  );
});

test("lab commands: fault, heal and status through the command line", async (t) => {
  const lab = await testLab(t, { uplinks: 2 });
  const run = async (...args: string[]): Promise<string> => {
    const program = new Command().exitOverride();
    registerLabCommands(program);
    let out = "";
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = (chunk: string | Uint8Array): boolean => {
      out += String(chunk);
      return true;
    };
    try {
      await program.parseAsync(["node", "uplinkd", "lab", ...args, "--prefix", lab.prefix]);
    } finally {
      process.stdout.write = write;
    }
    return out;
  };
  assert.match(await run("fault", "2", "blackhole", "loss=20"), /faults now: blackhole loss=20/);
  assert.deepEqual(await lab.faults(2), { blackhole: true, loss: 20 });
  const status = JSON.parse(await run("status", "--json")) as { uplinks: { faults: string[] }[] };
  assert.deepEqual(status.uplinks[1]?.faults, ["blackhole", "loss=20"]);
  assert.match(await run("status"), /isp2 +wan2 +100\.64\.2\.2\/24 .*blackhole,loss=20/);
  await run("heal", "isp2");
  assert.deepEqual(await lab.faults(2), {});
});

test("the host's own network namespace is unchanged by the lab", async () => {
  const hostAfter = await hostNetworkSnapshot();
  assert.deepEqual(hostAfter, hostBefore);
  const leftovers = (await listNamespaces()).filter((n) => n.startsWith(`lt${process.pid}x`));
  assert.deepEqual(leftovers, []);
  const { stdout } = await runCommand("ip", ["netns", "list"]);
  assert.doesNotMatch(stdout, new RegExp(`^lt${process.pid}x`, "m"));
});

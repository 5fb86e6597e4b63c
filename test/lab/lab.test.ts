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
import { LabError } from "../../src/lab/errors.js";
import { runCommand } from "../../src/process/run.js";
import { registerLabCommands } from "../../src/lab/cli.js";
import { labDown, labUp, openLab, type Lab } from "../../src/lab/lab.js";
import { listNamespaces, namespacePids } from "../../src/lab/netns.js";
import { LAB_HOSTS6, LAN6 } from "../../src/lab/topology.js";
import {
  connectionsByUplink6,
  eventually,
  hostNetworkSnapshot,
  iperf,
  linkFlags,
  ping,
  routeBySource,
  routeBySource6,
  testLab,
  traffic,
  traffic6,
  uniquePrefix,
  uplinkOfAddress6,
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
    config.uplinks.map((u) => [
      u.name,
      u.interface,
      u.gateway,
      u.gateway6,
      u.prefix6,
      u.prefix6_file,
      u.weight,
      u.tier,
    ]),
    [
      ["isp1", "wan1", "100.64.1.1", "auto", undefined, undefined, 3, 1],
      ["isp2", "wan2", "100.64.2.1", "auto", undefined, undefined, 2, 1],
      ["isp3", "wan3", "auto", "auto", undefined, undefined, 1, 2],
    ],
  );
  // Dual-stack: each family is judged by its own targets.
  assert.deepEqual(config.health.targets, [
    "198.51.100.1",
    "203.0.113.1",
    "2001:db8:ffff::1",
    "2001:db8:ffff::2",
  ]);
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
  assert.match(
    await run("fault", "isp1", "blackhole6"),
    /faults now: blackhole6; router address 100\.64\.1\.2; IPv6 address 2001:db8:1::2 via fe80::1\n/,
  );
  assert.match(await run("status"), /isp1 +wan1 .* 2001:db8:1::2\/64 +fe80::1 +- +yes +blackhole6/);
});

/** The router's route to `target` from `source` (`ip -6 route get`): the device it leaves by. */
async function routeDev6(lab: Lab, target: string, source: string): Promise<string | undefined> {
  const r = await lab.exec("rtr", ["ip", "-6", "-j", "route", "get", target, "from", source]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { dev?: string }[])[0]?.dev;
}

test("dual-stack: each uplink gets a SLAAC address and an RA default route; IPv6 hosts answer via each ISP", async (t) => {
  const lab = await testLab(t, { uplinks: 3 });
  for (const u of lab.uplinks) {
    assert.ok(u.ipv6 !== undefined);
    assert.equal(await lab.routerAddress6(u.number), `2001:db8:${u.number}::2`);
    assert.deepEqual(await lab.raGateways(u.number), ["fe80::1"]);
  }
  // The RA default routes are in the main table, one per uplink, proto ra.
  const defaults = await lab.exec("rtr", ["ip", "-6", "-j", "route", "show", "default"]);
  const routes = JSON.parse(defaults.stdout) as {
    dev?: string;
    gateway?: string;
    protocol?: string;
  }[];
  assert.deepEqual(
    routes.map((r) => `${r.dev ?? ""} ${r.gateway ?? ""} ${r.protocol ?? ""}`).sort(),
    ["wan1 fe80::1 ra", "wan2 fe80::1 ra", "wan3 fe80::1 ra"],
  );

  await routeBySource6(lab);
  for (const u of lab.uplinks) {
    const source = `2001:db8:${u.number}::2`;
    assert.equal(await routeDev6(lab, LAB_HOSTS6.echo, source), u.routerInterface);
    for (const target of LAB_HOSTS6.pingTargets) {
      const p = await ping(lab, "rtr", target, { count: 2, args: ["-6", "-I", source] });
      assert.equal(p.received, 2, `ping ${target} via ${u.name}`);
    }
    const whoami = await traffic6(lab, { node: "rtr", bind: source, count: 10 });
    assert.deepEqual(whoami.bySource, { [source]: 10 }, JSON.stringify(whoami));
    assert.deepEqual([...connectionsByUplink6(lab, whoami)], [[u.number, 10]]);
    assert.ok((await lab.ispCounters(u.number)).up.packets >= 10, `${u.name} carried it`);
  }
  // HTTP on IPv6, and the DNS server answers AAAA on its IPv6 address.
  const http = await lab.exec("rtr", [
    "curl",
    "-s",
    "--max-time",
    "3",
    "--interface",
    "2001:db8:2::2",
    `http://[${LAB_HOSTS6.echo}]/`,
  ]);
  assert.equal(http.stdout.trim(), "2001:db8:2::2");
  const aaaa = await lab.exec("net", [
    "busybox",
    "nslookup",
    "-type=AAAA",
    "echo.lab.test",
    LAB_HOSTS6.dns,
  ]);
  assert.match(aaaa.stdout, /2001:db8:ffff::10/, aaaa.stdout + aaaa.stderr);

  // The LAN: ULA addresses, the router's LAN address answers; a ULA source
  // is not routed by any ISP (BCP38 drops it, counted as spoofed).
  assert.equal((await ping(lab, "lan", LAN6.routerAddress, { count: 2 })).received, 2);
  const spoofedBefore = (await lab.ispCounters(1)).spoofed.packets;
  await lab.exec("rtr", ["ip", "-6", "rule", "add", "from", LAN6.subnet, "lookup", "201"]);
  const lan = await ping(lab, "lan", LAB_HOSTS6.pingTargets[0], { count: 2 });
  assert.equal(lan.received, 0);
  assert.equal((await lab.ispCounters(1)).spoofed.packets - spoofedBefore, 2);
  // With a masquerade on the router (by hand here), the LAN client's IPv6
  // connections reach the echo host, which sees the uplink's address.
  await lab.exec("rtr", ["nft", "-f", "-"], {
    input:
      "table ip6 handnat {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n" +
      '\t\toifname "wan1" masquerade\n\t}\n}\n',
  });
  const fromLan = await traffic6(lab, { count: 20 });
  assert.deepEqual(fromLan.bySource, { "2001:db8:1::2": 20 }, JSON.stringify(fromLan));
  assert.deepEqual([...connectionsByUplink6(lab, fromLan)], [[1, 20]]);
  // The address-to-uplink mapping the IPv6 tests use.
  assert.equal(uplinkOfAddress6(lab, "2001:db8:3:7::2"), 3);
  assert.equal(uplinkOfAddress6(lab, "2001:db8:1002:100::1"), 2);
  assert.equal(uplinkOfAddress6(lab, "fd00:1::100"), 0);
});

test("blackhole6 stops IPv6 only, blackhole4 IPv4 only, blackhole both; heal restores", async (t) => {
  const lab = await testLab(t, { uplinks: 2 });
  await routeBySource(lab);
  await routeBySource6(lab);
  const v4 = async (): Promise<number> =>
    (await ping(lab, "rtr", "198.51.100.1", { count: 2, args: ["-I", "100.64.1.2"] })).received;
  const v6 = async (): Promise<number> =>
    (
      await ping(lab, "rtr", LAB_HOSTS6.pingTargets[0], {
        count: 2,
        args: ["-6", "-I", "2001:db8:1::2"],
      })
    ).received;
  assert.deepEqual([await v4(), await v6()], [2, 2]);

  await lab.fault(1, "blackhole6");
  assert.deepEqual([await v4(), await v6()], [2, 0], "blackhole6: IPv4 works, IPv6 does not");
  // The ISP's router still answers on IPv6 and still sends router advertisements.
  assert.equal(
    (await ping(lab, "rtr", "2001:db8:1::1", { count: 2, args: ["-6", "-I", "2001:db8:1::2"] }))
      .received,
    2,
  );
  const w6 = await traffic6(lab, { node: "rtr", bind: "2001:db8:1::2", count: 2, timeoutMs: 500 });
  assert.equal(w6.failed, 2);
  const w6other = await traffic6(lab, { node: "rtr", bind: "2001:db8:2::2", count: 2 });
  assert.equal(w6other.ok, 2, "uplink 2 is not affected");
  assert.deepEqual(await lab.faults(1), { blackhole6: true });

  await lab.heal(1);
  assert.deepEqual([await v4(), await v6()], [2, 2]);
  await lab.fault(1, "blackhole4");
  assert.deepEqual([await v4(), await v6()], [0, 2], "blackhole4: IPv6 works, IPv4 does not");
  await lab.fault(1, "blackhole");
  assert.deepEqual([await v4(), await v6()], [0, 0], "blackhole: neither");
  await lab.heal(1);
  assert.deepEqual([await v4(), await v6()], [2, 2]);

  // A carrier fault drops both; after heal IPv6 works again (the ISP's
  // link-local address and routes through `cust` are put back).
  await lab.fault(1, "carrier");
  assert.deepEqual([await v4(), await v6()], [0, 0]);
  await lab.heal(1);
  assert.ok(await eventually(async () => (await v6()) > 0, 10_000), "IPv6 back after carrier heal");
  assert.deepEqual(await lab.raGateways(1), ["fe80::1"]);
});

test("ra-change moves the router's RA default route to a new router; renumber gives a new SLAAC address", async (t) => {
  const lab = await testLab(t, { uplinks: 2 });
  await lab.fault(1, "ra-change");
  assert.deepEqual(await lab.raGateways(1), ["fe80::1:1"], "the old router is gone at once");
  assert.deepEqual(await lab.raGateways(2), ["fe80::1"], "uplink 2 unchanged");
  await routeBySource6(lab, { 1: "fe80::1:1" });
  const via = await ping(lab, "rtr", LAB_HOSTS6.pingTargets[1], {
    count: 2,
    args: ["-6", "-I", "2001:db8:1::2"],
  });
  assert.equal(via.received, 2, "the new router forwards");
  await lab.fault(1, "ra-change");
  assert.deepEqual(await lab.raGateways(1), ["fe80::1:2"]);

  await lab.fault(2, "renumber");
  assert.equal(await lab.uplinkNetwork6(2), "2001:db8:2:1::/64");
  assert.deepEqual(
    await lab.raGateways(2),
    ["fe80::1"],
    "the same router announces the new network",
  );
  assert.equal(await lab.routerAddress6(2), "2001:db8:2:1::2");
  assert.deepEqual(await lab.routerAddresses6(2), [
    "2001:db8:2:1::2/64",
    "2001:db8:2::2/64 (deprecated)",
  ]);
  const fresh = await traffic6(lab, { node: "rtr", bind: "2001:db8:2:1::2", count: 4 });
  assert.deepEqual(fresh.bySource, { "2001:db8:2:1::2": 4 });
  // The old network is no longer routed by the ISP.
  const stale = await traffic6(lab, {
    node: "rtr",
    bind: "2001:db8:2::2",
    count: 2,
    timeoutMs: 500,
  });
  assert.equal(stale.failed, 2);
  const status = await lab.status();
  assert.deepEqual(status.uplinks[1]?.addresses6, await lab.routerAddresses6(2));
});

test("prefix delegation: each uplink gets its prefix (route and file); traffic from it uses that ISP; renumber delegates the next", async (t) => {
  const lab = await testLab(t, { uplinks: 2, pd: true });
  const routes = async (): Promise<string[]> => {
    const r = await lab.exec("rtr", [
      "ip",
      "-6",
      "-j",
      "route",
      "show",
      "type",
      "unreachable",
      "proto",
      "dhcp",
    ]);
    return (JSON.parse(r.stdout) as { dst?: string }[]).map((x) => x.dst ?? "").sort();
  };
  for (const u of lab.uplinks) {
    assert.equal(await lab.delegatedPrefix(u.number), u.ipv6?.delegatedPrefix);
    assert.equal(
      (await readFile(lab.delegatedPrefixFile(u.number), "utf8")).trim(),
      `2001:db8:${1000 + u.number}::/56`,
    );
  }
  assert.deepEqual(await routes(), ["2001:db8:1001::/56", "2001:db8:1002::/56"]);

  // An address from isp2's prefix on the router: the ISP routes it back.
  await routeBySource6(lab);
  await lab.exec("rtr", ["ip", "addr", "add", "2001:db8:1002::1/128", "dev", "lo"]);
  const w = await traffic6(lab, { node: "rtr", bind: "2001:db8:1002::1", count: 5 });
  assert.deepEqual(w.bySource, { "2001:db8:1002::1": 5 }, JSON.stringify(w));
  assert.deepEqual([...connectionsByUplink6(lab, w)], [[2, 5]]);

  await lab.fault(2, "renumber");
  assert.equal(await lab.delegatedPrefix(2), "2001:db8:1002:100::/56");
  assert.deepEqual(await routes(), ["2001:db8:1001::/56", "2001:db8:1002:100::/56"]);
  assert.equal(await lab.delegatedPrefix(1), "2001:db8:1001::/56", "uplink 1 keeps its prefix");
  const status = await lab.status();
  assert.equal(status.uplinks[1]?.delegatedPrefix, "2001:db8:1002:100::/56");
});

test("the host's own network namespace is unchanged by the lab", async () => {
  const hostAfter = await hostNetworkSnapshot();
  assert.deepEqual(hostAfter, hostBefore);
  const leftovers = (await listNamespaces()).filter((n) => n.startsWith(`lt${process.pid}x`));
  assert.deepEqual(leftovers, []);
  const { stdout } = await runCommand("ip", ["netns", "list"]);
  assert.doesNotMatch(stdout, new RegExp(`^lt${process.pid}x`, "m"));
});

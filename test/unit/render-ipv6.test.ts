import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { configSchema } from "../../src/config/schema.js";
import { Dataplane } from "../../src/dataplane/apply.js";
import { ipCommands, diffIp, routeCommand, ruleCommand } from "../../src/dataplane/diff.js";
import { renderDesired, type Surroundings } from "../../src/dataplane/render.js";
import { buildViews } from "../../src/dataplane/views.js";
import type { Family } from "../../src/kernel/types.js";
import type { UplinkLink } from "../../src/links/observe.js";
import type { UplinkState } from "../../src/uplink-health.js";
import { FakeKernel } from "../fakes/kernel.js";

const config = configSchema.parse({
  lan: ["lan0"],
  uplinks: [
    {
      name: "isp1",
      interface: "wan1",
      weight: 3,
      prefix6: "2001:db8:1100::/56",
      pinned: ["2001:db8:aaaa::/48"],
      forwards: [{ port: 2222, to: "fd00:1::100", to_port: 22 }],
    },
    { name: "isp2", interface: "wan2", weight: 2, gateway6: "2001:db8:2::1" },
    { name: "isp3", interface: "wan3", weight: 1 },
    { name: "lte", interface: "wwan0", gateway6: "none", tier: 2 },
  ],
  sets: { office: ["192.0.2.0/24", "2001:db8:beef::/48"] },
  rules: [
    { dst: ["198.51.100.0/24", "2001:db8:ffff::/64"], policy: "main" },
    { src: "@office", dscp: "ef", policy: "default", sticky: { by: "src" } },
    { proto: "icmp", policy: "blackhole" },
  ],
  // Targets of both families: each uplink's IPv6 is judged by its own probes.
  health: { targets: ["198.51.100.1", "2001:db8:ffff::1"] },
});

function up(n: number, v6?: { gateway?: string }): UplinkLink {
  return {
    present: true,
    up: true,
    carrier: true,
    pointToPoint: false,
    address: `100.64.${n}.2`,
    addressSource: "primary",
    network: `100.64.${n}.0/24`,
    gateway: `100.64.${n}.1`,
    ...(v6 === undefined
      ? {}
      : {
          ipv6: {
            address: `2001:db8:${n}::2`,
            ...(v6.gateway === undefined ? {} : { gateway: v6.gateway }),
            ...(n === 1 ? { prefix: "2001:db8:1100::/56" } : {}),
          },
        }),
  };
}

const links = new Map<string, UplinkLink>([
  ["isp1", up(1, { gateway: "fe80::1:1" })],
  ["isp2", up(2, { gateway: "2001:db8:2::1" })],
  ["isp3", up(3, { gateway: "fe80::3:1" })],
  ["lte", up(4)],
]);

const surroundings: Surroundings = {
  lanAddress: "192.168.1.1",
  lanAddress6: "fd00:1::1",
  localNetworks: ["192.168.1.0/24"],
  localNetworks6: ["fd00:1::/64", "fe80::/64"],
  lanNetworks6: ["fd00:1::/64"],
};

function desired(state: (name: string, family: Family) => UplinkState = () => "up") {
  return renderDesired(config, buildViews(config, links, state), surroundings);
}

const golden = new URL("./golden/dual-stack.nft", import.meta.url);

describe("rendering IPv6 beside IPv4", () => {
  it("renders the dual-stack nft table as in the golden file", async () => {
    const script = desired().nftScript;
    if (process.env.UPDATE_GOLDEN === "1") await writeFile(golden, script);
    assert.equal(script, await readFile(golden, "utf8"));
  });

  it("each family has its own balance map, chosen by that family's health", () => {
    const down6 = desired((name, family) => (family === 6 && name === "isp1" ? "down" : "up"));
    assert.deepEqual(down6.maps.balance_default, [
      "0-4999 : goto uplink_1",
      "5000-8332 : goto uplink_2",
      "8333-9999 : goto uplink_3",
    ]);
    assert.deepEqual(down6.maps.balance6_default, [
      "0-6666 : goto uplink_2",
      "6667-9999 : goto uplink_3",
    ]);
    assert.deepEqual(down6.maps.active6_default, ["0x200", "0x300"]);
    assert.deepEqual(down6.maps.active_default, ["0x100", "0x200", "0x300"]);
  });

  it("an uplink without IPv6 targets follows its IPv4 health and link for IPv6", () => {
    const v4only = configSchema.parse({ ...config, health: { targets: ["198.51.100.1"] } });
    const views = (state: (name: string, family: Family) => UplinkState, l = links) =>
      buildViews(v4only, l, state);
    const usable6 = (vs: ReturnType<typeof buildViews>) =>
      vs.filter((v) => v.ipv6?.usability === "good").map((v) => v.name);
    // IPv6 monitors do not exist: whatever their state, IPv4 decides.
    assert.deepEqual(usable6(views((_, f) => (f === 6 ? "down" : "up"))), ["isp1", "isp2", "isp3"]);
    assert.deepEqual(usable6(views((name, f) => (f === 4 && name === "isp1" ? "down" : "up"))), [
      "isp2",
      "isp3",
    ]);
    const noRoute4 = new Map(links);
    const isp2: UplinkLink = { ...up(2, { gateway: "2001:db8:2::1" }) };
    delete isp2.gateway;
    noRoute4.set("isp2", isp2);
    assert.deepEqual(usable6(views(() => "up", noRoute4)), ["isp1", "isp3"]);
  });

  it("an uplink without IPv6 (gateway6: none) is never an IPv6 choice, even as the last one of tier 2", () => {
    const onlyLte = desired((name) => (name === "lte" ? "up" : "down"));
    assert.deepEqual(onlyLte.maps.balance_default, ["0-9999 : goto uplink_4"]);
    assert.ok(!onlyLte.maps.balance6_default?.some((e) => e.includes("uplink_4")));
  });

  it("IPv6 addresses, pinned prefixes, local and LAN networks go to their own sets", () => {
    const { maps } = desired();
    assert.deepEqual(maps.uplink_addresses6, ["2001:db8:1::2", "2001:db8:2::2", "2001:db8:3::2"]);
    assert.deepEqual(maps.pinned6, ["2001:db8:aaaa::/48 : goto uplink_1"]);
    assert.deepEqual(maps.pinned, []);
    assert.deepEqual(maps.local_networks6, ["fd00:1::/64", "fe80::/64"]);
    assert.deepEqual(maps.lan_networks6, ["fd00:1::/64"]);
  });

  it("per uplink an IPv6 table: default via gateway6 dev IF, unreachable default; main default from the LAN address", () => {
    const routes = desired()
      .routes.filter((r) => r.family === 6)
      .map((r) => routeCommand("replace", r));
    assert.deepEqual(routes, [
      "-6 route replace default via fe80::1:1 dev wan1 table 101 proto 73 metric 1024",
      "-6 route replace unreachable default table 101 proto 73 metric 4294967295",
      "-6 route replace default via 2001:db8:2::1 dev wan2 table 102 proto 73 metric 1024",
      "-6 route replace unreachable default table 102 proto 73 metric 4294967295",
      "-6 route replace default via fe80::3:1 dev wan3 table 103 proto 73 metric 1024",
      "-6 route replace unreachable default table 103 proto 73 metric 4294967295",
      "-6 route replace unreachable default table 104 proto 73 metric 4294967295",
      "-6 route replace default via fe80::1:1 dev wan1 src fd00:1::1 table 254 proto 73 metric 512",
    ]);
  });

  it("ip -6 rules: suppress main, fwmark per uplink, unreachable, from the address, from the prefix", () => {
    const rules = desired()
      .rules.filter((r) => r.family === 6)
      .map((r) => ruleCommand("add", r));
    assert.deepEqual(rules, [
      "-6 rule add priority 1000 lookup 254 suppress_prefixlength 0 protocol 73",
      "-6 rule add priority 1001 fwmark 0x100/0xff00 lookup 101 protocol 73",
      "-6 rule add priority 1002 fwmark 0x200/0xff00 lookup 102 protocol 73",
      "-6 rule add priority 1003 fwmark 0x300/0xff00 lookup 103 protocol 73",
      "-6 rule add priority 1004 fwmark 0x400/0xff00 lookup 104 protocol 73",
      "-6 rule add priority 1255 fwmark 0xff00/0xff00 unreachable protocol 73",
      "-6 rule add priority 1301 from 2001:db8:1::2 lookup 101 protocol 73",
      "-6 rule add priority 1302 from 2001:db8:2::2 lookup 102 protocol 73",
      "-6 rule add priority 1303 from 2001:db8:3::2 lookup 103 protocol 73",
      "-6 rule add priority 1401 from 2001:db8:1100::/56 lookup 101 protocol 73",
    ]);
  });

  it("an IPv6 route and an IPv4 route with the same table, destination and metric are two routes", () => {
    const { routes, rules } = desired();
    const changes = diffIp({ routes, rules }, { routes: [], rules: [] }, 73);
    assert.equal(changes.routeReplace.length, routes.length);
    assert.equal(changes.ruleAdd.length, rules.length);
    const same = diffIp({ routes, rules }, { routes, rules }, 73);
    assert.deepEqual(ipCommands(same), []);
  });

  it("a new RA router changes only that uplink's IPv6 route; a renumbered prefix only its rule and the table's NAT line", () => {
    const before = desired();
    const moved = new Map(links);
    moved.set("isp1", {
      ...up(1, { gateway: "fe80::1:2" }),
      ipv6: { address: "2001:db8:1::2", gateway: "fe80::1:2", prefix: "2001:db8:1200::/56" },
    });
    const after = renderDesired(
      config,
      buildViews(config, moved, () => "up"),
      surroundings,
    );
    assert.deepEqual(ipCommands(diffIp(after, before, 73)), [
      "-6 route replace default via fe80::1:2 dev wan1 table 101 proto 73 metric 1024",
      "-6 route replace default via fe80::1:2 dev wan1 src fd00:1::1 table 254 proto 73 metric 512",
      "-6 rule add priority 1401 from 2001:db8:1200::/56 lookup 101 protocol 73",
      "-6 rule del priority 1401 from 2001:db8:1100::/56 lookup 101 protocol 73",
    ]);
    assert.match(
      after.nftScript,
      /oifname "wan1" ip6 saddr @lan_networks6 snat ip6 prefix to 2001:db8:1200::\/56/,
    );
    assert.notEqual(after.nftHash, before.nftHash);
  });
});

describe("applying IPv6 with the dataplane", () => {
  it("applies, verifies, and on stop removes every IPv6 route and rule as well", async () => {
    const kernel = new FakeKernel();
    const foreign = {
      family: 6 as const,
      table: 254,
      type: "unicast" as const,
      dst: "default",
      gateway: "fe80::1:1",
      dev: "wan1",
      metric: 1024,
      protocol: 9,
      options: {},
    };
    kernel.routes.push(foreign);
    const dataplane = new Dataplane(kernel, { table: "uplinkd", protocol: 73 });
    const state = desired();
    const views = buildViews(config, links, () => "up");
    const plan = await dataplane.apply(state, views);
    assert.ok(plan.ipCommands.some((c) => c.startsWith("-6 rule add priority 1401")));
    assert.equal(kernel.routes.filter((r) => r.family === 6 && r.protocol === 73).length, 8);
    assert.equal(kernel.rules.filter((r) => r.family === 6).length, 10);
    const again = await dataplane.plan(state, views);
    assert.deepEqual(again.ipCommands, []);
    await dataplane.removeAll();
    assert.deepEqual(kernel.routes, [foreign], "the RA route stays; every route of uplinkd goes");
    assert.deepEqual(kernel.rules, []);
  });
});

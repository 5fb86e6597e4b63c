import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { parseLinks, parseRoutes, parseRules } from "../../src/kernel/linux.js";
import {
  lanAddress6,
  lanNetworks6,
  localNetworks,
  localNetworks6,
  observeUplinks,
} from "../../src/links/observe.js";

// Printed by iproute2 6.1 on Linux 6.18 (`ip -j addr show`, `ip -N -6 -j route show table
// all`, `ip -N -6 -j rule show`) in a namespace with a SLAAC uplink and a ULA LAN.
const ADDR = JSON.stringify([
  {
    ifindex: 3,
    ifname: "wan1",
    flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
    addr_info: [
      { family: "inet", local: "100.64.1.2", prefixlen: 24, scope: "global" },
      {
        family: "inet6",
        local: "2001:db8:1::3",
        prefixlen: 64,
        scope: "global",
        nodad: true,
        deprecated: true,
        valid_life_time: 4294967295,
        preferred_life_time: 0,
      },
      {
        family: "inet6",
        local: "2001:db8:1:0:aaaa::9",
        prefixlen: 64,
        scope: "global",
        temporary: true,
        dynamic: true,
      },
      {
        family: "inet6",
        local: "2001:db8:1:0:ac60:87ff:fe58:ab92",
        prefixlen: 64,
        scope: "global",
        dynamic: true,
        mngtmpaddr: true,
        valid_life_time: 86400,
        preferred_life_time: 14400,
      },
      { family: "inet6", local: "fe80::ac60:87ff:fe58:ab92", prefixlen: 64, scope: "link" },
    ],
  },
  {
    ifindex: 4,
    ifname: "wan2",
    flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
    addr_info: [
      { family: "inet", local: "100.64.2.2", prefixlen: 24, scope: "global" },
      {
        family: "inet6",
        local: "2001:db8:2::2",
        prefixlen: 64,
        scope: "global",
        tentative: true,
      },
      { family: "inet6", local: "fe80::2", prefixlen: 64, scope: "link" },
    ],
  },
  {
    ifindex: 5,
    ifname: "lan0",
    flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
    addr_info: [
      { family: "inet", local: "192.168.1.1", prefixlen: 24, scope: "global" },
      { family: "inet6", local: "fd00:1::1", prefixlen: 64, scope: "global" },
      { family: "inet6", local: "fe80::1", prefixlen: 64, scope: "link" },
    ],
  },
]);

const ROUTES6 = JSON.stringify([
  { dst: "2001:db8:1::/64", dev: "wan1", protocol: "2", metric: 256, flags: [], pref: "medium" },
  { dst: "fd00:1::/64", dev: "lan0", protocol: "2", metric: 256, flags: [], pref: "medium" },
  { dst: "fe80::/64", dev: "wan1", protocol: "2", metric: 256, flags: [], pref: "medium" },
  {
    dst: "default",
    gateway: "fe80::1:1",
    dev: "wan1",
    protocol: "9",
    metric: 1024,
    flags: [],
    pref: "medium",
  },
  {
    dst: "default",
    gateway: "fe80::9",
    dev: "wan1",
    protocol: "9",
    metric: 2048,
    flags: [],
    pref: "medium",
  },
  {
    dst: "default",
    gateway: "fe80::7",
    dev: "wan2",
    protocol: "73",
    metric: 512,
    flags: [],
    pref: "medium",
  },
  {
    type: "7",
    dst: "default",
    dev: "lo",
    table: "101",
    protocol: "73",
    metric: 4294967295,
    flags: [],
    pref: "medium",
  },
  {
    type: "2",
    dst: "2001:db8:1::3",
    dev: "wan1",
    table: "255",
    protocol: "2",
    metric: 0,
    flags: [],
  },
  { type: "5", dst: "ff00::/8", dev: "wan1", table: "255", protocol: "2", metric: 256, flags: [] },
]);

const RULES6 = JSON.stringify([
  { priority: 0, src: "all", table: "255" },
  { priority: 1001, src: "all", fwmark: "0x100", fwmask: "0xff00", table: "101" },
  { priority: 1255, src: "all", fwmark: "0xff00", fwmask: "0xff00", action: "7" },
  { priority: 1301, src: "2001:db8:1::2", table: "101", protocol: "73" },
  { priority: 1401, src: "2001:db8:1000::", srclen: 56, table: "101" },
  { priority: 32766, src: "all", table: "254" },
]);

const config = parseConfig(
  [
    "private_targets: true",
    "lan: [lan0]",
    "uplinks:",
    "  - { name: isp1, interface: wan1, prefix6: 2001:db8:1000::/56 }",
    "  - { name: isp2, interface: wan2, gateway6: 'fe80::2:1' }",
    "  - { name: isp3, interface: wan3, gateway6: none }",
  ].join("\n"),
  "t.yaml",
);

describe("reading IPv6 from the kernel", () => {
  test("addresses keep their flags; link-local addresses are scope link", () => {
    const wan1 = parseLinks(ADDR)[0];
    assert.deepEqual(
      wan1?.addresses6?.map((a) => [a.address, a.scope, a.deprecated, a.temporary]),
      [
        ["2001:db8:1::3", "global", true, false],
        ["2001:db8:1:0:aaaa::9", "global", false, true],
        ["2001:db8:1:0:ac60:87ff:fe58:ab92", "global", false, false],
        ["fe80::ac60:87ff:fe58:ab92", "link", false, false],
      ],
    );
    assert.deepEqual(wan1.addresses, [{ address: "100.64.1.2", prefixlen: 24 }]);
  });

  test("IPv6 routes carry family 6; an unreachable route's `dev lo` is no device", () => {
    const routes = parseRoutes(ROUTES6, 6);
    assert.ok(routes.every((r) => r.family === 6));
    assert.deepEqual(
      routes.find((r) => r.table === 101),
      {
        family: 6,
        table: 101,
        type: "unreachable",
        dst: "default",
        metric: 4294967295,
        protocol: 73,
        options: {},
      },
    );
    assert.equal(routes[3]?.gateway, "fe80::1:1");
    assert.equal(routes[3].protocol, 9);
  });

  test("IPv6 rules: a /128 source is written bare, a prefix with its length", () => {
    const rules = parseRules(RULES6, 6);
    assert.ok(rules.every((r) => r.family === 6));
    assert.deepEqual(
      rules.filter((r) => r.priority > 1000 && r.priority < 32000),
      [
        { family: 6, priority: 1001, protocol: 0, table: 101, fwmark: 0x100, fwmask: 0xff00 },
        {
          family: 6,
          priority: 1255,
          protocol: 0,
          action: "unreachable",
          fwmark: 0xff00,
          fwmask: 0xff00,
        },
        { family: 6, priority: 1301, protocol: 73, table: 101, from: "2001:db8:1::2" },
        { family: 6, priority: 1401, protocol: 0, table: 101, from: "2001:db8:1000::/56" },
      ],
    );
  });
});

describe("observing each uplink's IPv6", () => {
  const links = parseLinks(ADDR);
  const routes = parseRoutes(ROUTES6, 6);

  test("auto: the stable global address and the RA router of lowest metric; the static prefix6", () => {
    const observed = observeUplinks(config, links, routes, 73);
    assert.deepEqual(observed.get("isp1")?.ipv6, {
      address: "2001:db8:1:0:ac60:87ff:fe58:ab92",
      gateway: "fe80::1:1",
      prefix: "2001:db8:1000::/56",
    });
  });

  test("a configured gateway6 wins; a tentative address is not used yet; uplinkd's own routes never count", () => {
    const observed = observeUplinks(config, links, routes, 73);
    assert.deepEqual(observed.get("isp2")?.ipv6, { gateway: "fe80::2:1" });
  });

  test("gateway6: none has no ipv6, nor has a missing interface", () => {
    const observed = observeUplinks(config, links, routes, 73);
    assert.equal(observed.get("isp3")?.ipv6, undefined);
  });

  test("prefix6: auto takes the learned prefix once known", () => {
    const auto = parseConfig(
      "private_targets: true\nlan: [lan0]\nuplinks:\n  - { name: isp1, interface: wan1, prefix6: auto }\n",
      "t.yaml",
    );
    assert.deepEqual(observeUplinks(auto, links, routes, 73).get("isp1")?.ipv6?.prefix, undefined);
    const learned = new Map([["isp1", "2001:db8:1001::/56"]]);
    assert.deepEqual(observeUplinks(auto, links, routes, 73, learned).get("isp1")?.ipv6, {
      address: "2001:db8:1:0:ac60:87ff:fe58:ab92",
      gateway: "fe80::1:1",
      prefix: "2001:db8:1001::/56",
    });
  });

  test("an IPv6 default route does not become the IPv4 gateway", () => {
    const observed = observeUplinks(config, links, routes, 73);
    assert.equal(observed.get("isp1")?.gateway, undefined);
    assert.equal(observed.get("isp1")?.address, "100.64.1.2");
  });

  test("surroundings: the LAN's IPv6 networks and address, the main table's IPv6 networks", () => {
    assert.deepEqual(lanNetworks6(config, links), ["fd00:1::/64"]);
    assert.equal(lanAddress6(config, links), "fd00:1::1");
    assert.deepEqual(localNetworks6(routes, 73), ["2001:db8:1::/64", "fd00:1::/64", "fe80::/64"]);
    assert.deepEqual(localNetworks(routes, 73), []);
  });
});

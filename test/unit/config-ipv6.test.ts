import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError } from "../../src/errors.js";
import {
  canonicalAddress6,
  disjointPrefixes6,
  formatAddress6,
  inPrefix6,
  parseAddress6,
} from "../../src/net/ipv6.js";
import { prefixesOverlap } from "../../src/config/steering.js";

const FILE = "uplinkd.yaml";

function config(...lines: string[]) {
  return parseConfig(["private_targets: true", "lan: [lan0]", ...lines].join("\n") + "\n", FILE);
}

/** The `FILE:LINE:COL: path: message` lines of a config that must be refused. */
function problems(...lines: string[]): string[] {
  try {
    config(...lines);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message.split("\n");
  }
  assert.fail("the config was accepted");
}

describe("IPv6 addresses as values", () => {
  test("parse and print canonical text as inet_ntop does (RFC 5952)", () => {
    assert.equal(canonicalAddress6("2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
    assert.equal(canonicalAddress6("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
    assert.equal(canonicalAddress6("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
    assert.equal(canonicalAddress6("2001:db8:1:1:1:1:0:1"), "2001:db8:1:1:1:1:0:1");
    assert.equal(canonicalAddress6("::"), "::");
    assert.equal(canonicalAddress6("fe80::"), "fe80::");
    assert.equal(formatAddress6(parseAddress6("::ffff:192.0.2.1") ?? 0n), "::ffff:c000:201");
    assert.equal(parseAddress6("fe80::1%wan1"), undefined);
    assert.equal(parseAddress6("192.0.2.1"), undefined);
  });

  test("prefixes: inside, overlap, and disjoint sets as nft interval sets need them", () => {
    assert.ok(inPrefix6("2001:db8:1::5", "2001:db8:1::/64"));
    assert.ok(!inPrefix6("2001:db8:2::5", "2001:db8:1::/64"));
    assert.ok(prefixesOverlap("2001:db8::/32", "2001:db8:ffff::/64"));
    assert.ok(!prefixesOverlap("2001:db8:1::/48", "2001:db8:2::/48"));
    assert.ok(!prefixesOverlap("2001:db8::/32", "192.0.2.0/24"), "families never overlap");
    assert.deepEqual(
      disjointPrefixes6(["2001:db8:ffff::/64", "2001:db8::/32", "fd00::1", "2001:DB8::/32"]),
      ["2001:db8::/32", "fd00::1"],
    );
  });
});

describe("config: IPv6 fields", () => {
  test("gateway6 defaults to auto; prefix6 and IPv6 targets, sets, rules, pinned, dns and forwards are accepted", () => {
    const c = config(
      "uplinks:",
      "  - name: isp1",
      "    interface: wan1",
      "    gateway6: fe80::1",
      "    prefix6: 2001:db8:1000::/56",
      "    dns: [192.0.2.53, 2001:db8:ffff::53]",
      "    pinned: [2001:db8:aaaa::/48]",
      "    forwards: [{ port: 22, to: fd00:1::100 }]",
      "  - name: isp2",
      "    interface: wan2",
      "    prefix6: auto",
      "  - name: lte",
      "    interface: wwan0",
      "    gateway6: none",
      "health:",
      "  targets: [198.51.100.1, 2001:db8:ffff::1]",
      "sets:",
      "  office: [192.0.2.0/24, 2001:db8:beef::/48]",
      "rules:",
      "  - { src: '@office', policy: default }",
      "  - { dst: 2001:db8:ffff::/64, policy: main }",
    );
    assert.deepEqual(
      c.uplinks.map((u) => [u.gateway6, u.prefix6]),
      [
        ["fe80::1", "2001:db8:1000::/56"],
        ["auto", "auto"],
        ["none", undefined],
      ],
    );
    assert.deepEqual(c.health.targets, ["198.51.100.1", "2001:db8:ffff::1"]);
    assert.equal(c.dataplane.main_metric6, 512);
  });

  test("a gateway6 that is not an IPv6 address names the line and the choices", () => {
    assert.deepEqual(
      problems("uplinks:", "  - name: isp1", "    interface: wan1", "    gateway6: 192.0.2.1"),
      [`${FILE}:6:15: uplinks.0.gateway6: must be "auto", "none" or an IPv6 address`],
    );
  });

  test("a multicast gateway6 is refused; a link-local one is fine", () => {
    assert.deepEqual(
      problems("uplinks:", "  - name: isp1", "    interface: wan1", "    gateway6: ff02::2"),
      [
        `${FILE}:6:15: uplinks.0.gateway6: ff02::2 is a multicast address, not a router; give the ISP router's address (a link-local fe80:: address is fine) or "auto"`,
      ],
    );
    assert.equal(
      config("uplinks:", "  - name: isp1", "    interface: wan1", "    gateway6: fe80::1")
        .uplinks[0]?.gateway6,
      "fe80::1",
    );
  });

  test("a prefix6 that is not a prefix: no length, host bits, too long", () => {
    const at = (value: string) =>
      problems("uplinks:", "  - name: isp1", "    interface: wan1", `    prefix6: ${value}`);
    assert.deepEqual(at("2001:db8:1000::1"), [
      `${FILE}:6:14: uplinks.0.prefix6: must be "auto" or an IPv6 prefix such as 2001:db8:1000::/56`,
    ]);
    assert.deepEqual(at("2001:db8:1000::1/56"), [
      `${FILE}:6:14: uplinks.0.prefix6: "2001:db8:1000::1/56" has host bits set; the prefix is 2001:db8:1000::/56`,
    ]);
    assert.match(at("2001:db8:1000::/80")[0] ?? "", /\/80 is longer than \/64/);
    assert.match(at("192.0.2.0/24")[0] ?? "", /is not an IPv6 prefix/);
  });

  test("an IPv6 target on an uplink with gateway6: none, and prefix6 without IPv6", () => {
    assert.deepEqual(
      problems(
        "uplinks:",
        "  - name: isp1",
        "    interface: wan1",
        "    gateway6: none",
        "    prefix6: 2001:db8:1000::/56",
        "    health:",
        "      targets: [198.51.100.1, 2001:db8:ffff::1]",
      ),
      [
        `${FILE}:7:14: uplinks.0.prefix6: uplink "isp1" has gateway6: none (no IPv6), so its prefix6 would never be used; remove one of them`,
        `${FILE}:9:31: uplinks.0.health.targets.1: 2001:db8:ffff::1 is an IPv6 target, but uplink "isp1" has gateway6: none (no IPv6); remove the target or set gateway6`,
      ],
    );
  });

  test("each family needs `reliability` targets of its own", () => {
    const lines = problems(
      "uplinks:",
      "  - { name: isp1, interface: wan1 }",
      "health:",
      "  targets: [198.51.100.1, 203.0.113.1, 2001:db8:ffff::1]",
      "  reliability: 2",
    );
    assert.equal(lines.length, 1);
    assert.match(
      lines[0] ?? "",
      /health\.targets: health\.targets lists 1 IPv6 target, fewer than the 2/,
    );
  });

  test("two uplinks with overlapping prefix6, an IPv6 pinned prefix on two uplinks", () => {
    const lines = problems(
      "uplinks:",
      "  - { name: isp1, interface: wan1, prefix6: 2001:db8:1000::/48, pinned: [2001:db8:aa::/48] }",
      "  - { name: isp2, interface: wan2, prefix6: 2001:db8:1000::/56, pinned: [2001:db8:aa:1::/64] }",
    );
    assert.equal(lines.length, 2);
    assert.match(
      lines[1] ?? "",
      /uplinks\.1\.pinned\.0: 2001:db8:aa:1::\/64 overlaps 2001:db8:aa::\/48/,
    );
    assert.match(
      lines[0] ?? "",
      /uplinks\.1\.prefix6: 2001:db8:1000::\/56 overlaps 2001:db8:1000::\/48/,
    );
  });

  test("rules: IPv6 host bits are refused", () => {
    assert.deepEqual(
      problems(
        "uplinks:",
        "  - { name: isp1, interface: wan1 }",
        "rules:",
        "  - { src: 2001:db8::1/32, policy: main }",
      ),
      [
        `${FILE}:6:12: rules.0.src.0: "2001:db8::1/32" has host bits set; the network is 2001:db8::/32`,
      ],
    );
  });

  test("rules: src and dst of two families (directly or through a set) never match", () => {
    assert.deepEqual(
      problems(
        "uplinks:",
        "  - { name: isp1, interface: wan1 }",
        "sets:",
        "  v6only: [2001:db8::/32]",
        "rules:",
        "  - { src: 192.0.2.0/24, dst: '@v6only', policy: main }",
      ),
      [
        `${FILE}:8:31: rules.0.dst: src holds only IPv4 and dst only IPv6 addresses: no connection has both, so the rule never matches`,
      ],
    );
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { PUBLIC_TARGETS, configWarnings, labOnlyAddress } from "../../src/config/warnings.js";

function warningsOf(yaml: string) {
  return configWarnings(parseConfig(yaml, "test.yaml")).map((w) => ({
    path: w.path.join("."),
    message: w.message,
  }));
}

// IPv4-only uplinks (gateway6: none): no warning about unmonitored IPv6.
const UPLINKS =
  "lan: [lan0]\nuplinks:\n  - { name: isp1, interface: wan1, gateway6: none }\n  - { name: isp2, interface: wan2, gateway6: none }\n";

describe("labOnlyAddress", () => {
  test("documentation, private, shared, ULA, loopback, link-local and benchmarking addresses are lab-only", () => {
    for (const address of [
      "192.0.2.1",
      "198.51.100.1",
      "203.0.113.254",
      "10.0.0.1",
      "172.31.255.1",
      "192.168.1.1",
      "100.64.0.1",
      "100.127.255.254",
      "127.0.0.1",
      "169.254.1.1",
      "198.19.0.1",
      "2001:db8::1",
      "3fff::1",
      "fd00::1",
      "fe80::1",
      "::1",
    ]) {
      assert.ok(labOnlyAddress(address), address);
    }
  });

  test("public addresses beyond the ISP are not, including the ranges' neighbours", () => {
    for (const address of [
      ...PUBLIC_TARGETS,
      "172.32.0.1",
      "100.128.0.1",
      "192.0.3.1",
      "2606:4700:4700::1111",
    ]) {
      assert.equal(labOnlyAddress(address), undefined, address);
    }
  });

  test("the kind is named", () => {
    assert.match(
      labOnlyAddress("198.51.100.1") ?? "",
      /documentation address \(TEST-NET-2, RFC 5737\)/,
    );
    assert.match(labOnlyAddress("192.168.0.1") ?? "", /private address \(RFC 1918\)/);
  });
});

describe("configWarnings", () => {
  test("public targets: no warning", () => {
    assert.deepEqual(
      warningsOf(`${UPLINKS}health: { targets: [1.1.1.1, 9.9.9.9, 8.8.8.8] }\n`),
      [],
    );
  });

  test("a shared documentation target is blamed once, at health.targets, naming every uplink", () => {
    const warnings = warningsOf(`${UPLINKS}health: { targets: [1.1.1.1, 203.0.113.1] }\n`);
    const [warning, ...more] = warnings;
    assert.ok(warning);
    assert.equal(more.length, 0);
    assert.equal(warning.path, "health.targets.1");
    assert.match(
      warning.message,
      /^203\.0\.113\.1 is a documentation address .*uplinks isp1, isp2/,
    );
    assert.match(warning.message, /private_targets: true/);
  });

  test("private_targets: true: no warnings, whatever the targets", () => {
    assert.deepEqual(
      warningsOf(
        `private_targets: true\n${UPLINKS}health: { targets: [198.51.100.1, 10.0.0.1] }\n`,
      ),
      [],
    );
  });

  test("an uplink's own targets are blamed at the uplink", () => {
    const warnings = warningsOf(
      "lan: [lan0]\nuplinks:\n  - { name: isp1, interface: wan1 }\n" +
        "  - { name: lte, interface: wwan0, gateway6: none, health: { targets: [8.8.8.8, 192.168.8.1] } }\n" +
        "health: { targets: [1.1.1.1, 2606:4700:4700::1111] }\n",
    );
    assert.deepEqual(
      warnings.map((w) => w.path),
      ["uplinks.1.health.targets.1"],
    );
    assert.match(warnings[0]?.message ?? "", /private address .*uplink lte/);
  });

  test("TCP, DNS and HTTP probes with lab-only addresses are blamed at their host, server and url", () => {
    const warnings = warningsOf(
      `${UPLINKS}health:\n  targets: [1.1.1.1]\n  probes:\n` +
        "    - { type: tcp, host: 10.1.2.3, port: 443 }\n" +
        "    - { type: dns, server: 192.0.2.53, name: example.org }\n" +
        "    - { type: http, url: 'http://198.51.100.80/health' }\n" +
        "    - { type: http, url: 'https://example.org/' }\n",
    );
    assert.deepEqual(
      warnings.map((w) => w.path),
      ["health.probes.0.host", "health.probes.1.server", "health.probes.2.url"],
    );
  });

  test("an uplink that may get IPv6 but has no IPv6 target is warned at the targets it uses, even in a lab", () => {
    const yaml =
      "lan: [lan0]\nuplinks:\n  - { name: isp1, interface: wan1 }\n" +
      "  - { name: isp2, interface: wan2, health: { targets: [9.9.9.9] } }\n" +
      "  - { name: isp3, interface: wan3, gateway6: none }\n" +
      "health:\n  targets: [1.1.1.1, 8.8.8.8]\n";
    const warnings = warningsOf(yaml);
    assert.deepEqual(
      warnings.map((w) => w.path),
      ["health.targets", "uplinks.1.health.targets"],
    );
    assert.match(
      warnings[0]?.message ?? "",
      /^no IPv6 target: the IPv6 of uplink isp1 is not monitored and follows IPv4/,
    );
    assert.match(warnings[0]?.message ?? "", /gateway6: none/);
    assert.match(warnings[1]?.message ?? "", /uplink isp2 /);
    assert.deepEqual(
      warningsOf(`private_targets: true\n${yaml}`).map((w) => w.path),
      ["health.targets", "uplinks.1.health.targets"],
    );
    assert.deepEqual(
      warningsOf(yaml.replace("[1.1.1.1, 8.8.8.8]", "[1.1.1.1, 2620:fe::fe]")).map((w) => w.path),
      ["uplinks.1.health.targets"],
    );
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError, formatConfigIssue } from "../../src/errors.js";

const BASE = [
  "lan: [lan0]",
  "uplinks:",
  "  - name: isp1",
  "    interface: wan1",
  "  - name: isp2",
  "    interface: wan2",
];

function errorsOf(...lines: string[]): string[] {
  try {
    parseConfig([...BASE, ...lines].join("\n") + "\n", "steer.yaml");
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map(formatConfigIssue);
    throw error;
  }
  return [];
}

describe("steering config errors, each at FILE:LINE:COL", () => {
  it("a rule naming an unknown policy", () => {
    assert.deepEqual(errorsOf("rules:", "  - dst: 192.0.2.0/24", "    policy: cheap"), [
      'steer.yaml:9:13: rules.0.policy: unknown policy "cheap" (one of: default, main, unreachable, blackhole)',
    ]);
  });

  it("a policy naming an unknown uplink, and one listed twice", () => {
    assert.deepEqual(
      errorsOf(
        "policies:",
        "  web:",
        "    members:",
        "      - uplink: isp9",
        "      - uplink: isp1",
        "      - uplink: isp1",
      ),
      [
        'steer.yaml:10:17: policies.web.members.0.uplink: unknown uplink "isp9" (uplinks: isp1, isp2)',
        'steer.yaml:12:17: policies.web.members.2.uplink: uplink "isp1" is already a member',
      ],
    );
  });

  it("invalid prefixes and ports", () => {
    const errors = errorsOf(
      "rules:",
      "  - dst: 192.0.2.1/24",
      "    policy: main",
      "  - src: 300.1.1.1",
      "    policy: main",
      "  - proto: tcp",
      "    dst_port: 70000",
      "    policy: main",
    );
    assert.equal(errors.length, 3, errors.join("\n"));
    assert.match(
      errors[0] ?? "",
      /^steer\.yaml:8:10: rules\.0\.dst\.0: .*host bits set; the network is 192\.0\.2\.0\/24/,
    );
    assert.match(
      errors[1] ?? "",
      /^steer\.yaml:10:10: rules\.1\.src\.0: "300\.1\.1\.1" is not an IPv4 or IPv6 address/,
    );
    assert.match(
      errors[2] ?? "",
      /^steer\.yaml:13:15: rules\.2\.dst_port\.0: must be at most 65535/,
    );
    assert.deepEqual(errorsOf("rules:", "  - dst_port: 80", "    policy: main"), [
      "steer.yaml:8:15: rules.0.dst_port: ports need proto tcp or udp (or both: proto: [tcp, udp])",
    ]);
  });

  it("an unknown set, sticky without a policy, and a router policy that does not exist", () => {
    const errors = errorsOf(
      "router_policy: fast",
      "rules:",
      "  - src: '@office'",
      "    policy: main",
      "    sticky: { by: src }",
    );
    assert.deepEqual(errors, [
      'steer.yaml:7:16: router_policy: unknown policy "fast" (policies: default)',
      'steer.yaml:9:10: rules.0.src: unknown set "office" (sets: none)',
      "steer.yaml:11:13: rules.0.sticky: sticky needs a policy that balances over uplinks, not main, unreachable or blackhole",
    ]);
  });

  it("a destination pinned to two uplinks", () => {
    const errors = errorsOf("policies: {}").length;
    assert.equal(errors, 0);
    const lines = [
      "lan: [lan0]",
      "uplinks:",
      "  - name: isp1",
      "    interface: wan1",
      "    pinned: [10.0.0.0/8]",
      "  - name: isp2",
      "    interface: wan2",
      "    dns: [10.1.2.3]",
    ];
    assert.throws(
      () => parseConfig(lines.join("\n") + "\n", "pin.yaml"),
      (error: ConfigError) =>
        formatConfigIssue(
          error.issues[0] ?? { file: "", line: 0, col: 0, path: "", message: "" },
        ) ===
        'pin.yaml:8:11: uplinks.1.dns.0: 10.1.2.3 overlaps 10.0.0.0/8 of uplink "isp1": a destination can be pinned to one uplink only',
    );
  });

  it("a duplicate policy name is a YAML duplicate key", () => {
    const errors = errorsOf(
      "policies:",
      "  web: { members: [{ uplink: isp1 }] }",
      "  web: { members: [{ uplink: isp2 }] }",
    );
    assert.equal(errors.length, 1);
    assert.match(errors[0] ?? "", /^steer\.yaml:9:3: /);
  });

  it("accepts every rule kind together", () => {
    assert.deepEqual(
      errorsOf(
        "sets:",
        "  banks: [203.0.113.0/24, 198.51.100.7]",
        "policies:",
        "  cheap: { members: [{ uplink: isp2, weight: 3 }, { uplink: isp1, tier: 2 }], last_resort: unreachable }",
        "rules:",
        "  - { src: 100.64.100.0/25, dst: '@banks', proto: tcp, dst_port: [443, '8000-8080'], policy: cheap, sticky: { by: src-dst, timeout: 30m } }",
        "  - { iif: lan0, dscp: [ef, 10], proto: [tcp, udp], src_port: 5060, policy: default }",
        "  - { dst: 192.0.2.0/24, policy: blackhole }",
      ),
      [],
    );
  });
});

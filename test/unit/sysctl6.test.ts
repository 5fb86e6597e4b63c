import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { acceptRaWarnings } from "../../src/config/sysctl6.js";

const config = parseConfig(
  [
    "private_targets: true",
    "lan: [lan0]",
    "uplinks:",
    "  - { name: isp1, interface: wan1 }",
    "  - { name: isp2, interface: wan2 }",
    "  - { name: isp3, interface: wan3, gateway6: 'fe80::1' }",
    "  - { name: isp4, interface: wan4 }",
    "  - { name: isp5, interface: wan5 }",
  ].join("\n"),
  "t.yaml",
);

const sysctls: Record<string, string> = {
  "/proc/sys/net/ipv6/conf/wan1/forwarding": "1\n",
  "/proc/sys/net/ipv6/conf/wan1/accept_ra": "2\n",
  "/proc/sys/net/ipv6/conf/wan2/forwarding": "1\n",
  "/proc/sys/net/ipv6/conf/wan2/accept_ra": "1\n",
  "/proc/sys/net/ipv6/conf/wan3/forwarding": "1\n",
  "/proc/sys/net/ipv6/conf/wan3/accept_ra": "0\n",
  "/proc/sys/net/ipv6/conf/wan4/forwarding": "0\n",
  "/proc/sys/net/ipv6/conf/wan4/accept_ra": "1\n",
};

describe("accept_ra on uplinks with forwarding on", () => {
  test("warns for gateway6: auto with accept_ra other than 2 while forwarding; not for a configured gateway6, a host, or a missing interface", async () => {
    const warnings = await acceptRaWarnings(config, (path) => Promise.resolve(sysctls[path]));
    assert.deepEqual(
      warnings.map((w) => w.uplink),
      ["isp2"],
    );
    assert.match(
      warnings[0]?.message ?? "",
      /^net\.ipv6\.conf\.wan2\.accept_ra is 1 while forwarding is on: .* set it to 2 \(sysctl -w net\.ipv6\.conf\.wan2\.accept_ra=2\)/,
    );
  });
});

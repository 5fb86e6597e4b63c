import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";
import { parseTunnelEndpoint } from "../../src/config/tunnels.js";
import {
  deleteTunnelFlow,
  tunnelFlow,
  tunnelUplink,
  TunnelWatcher,
} from "../../src/controller/tunnels.js";
import { FakeKernel } from "../fakes/kernel.js";
import { renderNft, tunnelLine } from "../../src/dataplane/nft.js";
import type { ConntrackFlow } from "../../src/controller/tunnels.js";
import type { UplinkState } from "../../src/uplink-health.js";
import { formatTunnels } from "../../src/control/format.js";
import type { StatusDocument } from "../../src/control/api.js";
import { ConfigError, formatConfigIssue } from "../../src/errors.js";
import { numberedLink, policyWorld } from "../fakes/links.js";

const silent = pino({ level: "silent" });

const BASE = [
  "lan: [lan0]",
  "uplinks:",
  "  - { name: fibre, interface: wan1, gateway: 100.64.1.1 }",
  "  - { name: lte, interface: wan2, gateway: 100.64.2.1 }",
  "policies:",
  "  site:",
  "    members: [{ uplink: fibre }, { uplink: lte, tier: 2 }]",
  "    failback: move",
  "    failback_delay: 30s",
];

function errorsOf(...lines: string[]): string[] {
  try {
    parseConfig([...BASE, ...lines].join("\n") + "\n", "wg.yaml");
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map(formatConfigIssue);
    throw error;
  }
  return [];
}

/** What is wrong with an endpoint ("" when it parses). */
function problemOf(text: string): string {
  const parsed = parseTunnelEndpoint(text);
  return typeof parsed === "string" ? parsed : "";
}

function config(...lines: string[]): Config {
  return parseConfig([...BASE, ...lines].join("\n") + "\n", "wg.yaml");
}

describe("tunnels config", () => {
  it("takes ADDRESS:PORT, [IPv6]:PORT and a bare address; udp by default", () => {
    const c = config(
      "tunnels:",
      "  - { name: office, endpoint: 203.0.113.7:51820, policy: site }",
      "  - { name: office6, endpoint: '[2001:db8::7]:51820', policy: site }",
      "  - { name: ipsec, endpoint: 198.51.100.9, protocol: udp, policy: default }",
      "  - { name: vpn, endpoint: 198.51.100.10:443, protocol: tcp, policy: site }",
    );
    assert.deepEqual(
      c.tunnels.map((t) => [t.name, t.endpoint, t.protocol, t.policy]),
      [
        ["office", "203.0.113.7:51820", "udp", "site"],
        ["office6", "[2001:db8::7]:51820", "udp", "site"],
        ["ipsec", "198.51.100.9", "udp", "default"],
        ["vpn", "198.51.100.10:443", "tcp", "site"],
      ],
    );
    assert.deepEqual(config().tunnels, []);
  });

  it("parses endpoints, and says what is wrong with a host name, a bad port or a bad address", () => {
    assert.deepEqual(parseTunnelEndpoint("203.0.113.7:51820"), {
      address: "203.0.113.7",
      family: 4,
      port: 51820,
    });
    assert.deepEqual(parseTunnelEndpoint("2001:DB8:0::7"), { address: "2001:db8::7", family: 6 });
    assert.deepEqual(parseTunnelEndpoint("[2001:db8::7]:1"), {
      address: "2001:db8::7",
      family: 6,
      port: 1,
    });
    assert.match(problemOf("vpn.example.net:51820"), /host names are not resolved/);
    assert.match(problemOf("203.0.113.7:0"), /port "0" is not 1\.\.65535/);
    assert.match(problemOf("203.0.113.7:70000"), /port "70000"/);
    assert.match(problemOf("[fe80::1%eth0]:5"), /no IPv6 address/);
    assert.match(problemOf(""), /must be ADDRESS or ADDRESS:PORT/);
  });

  it("errors name FILE:LINE:COL and the key: an endpoint by host name, an unknown policy, a duplicate name, a bad protocol", () => {
    assert.deepEqual(
      errorsOf(
        "tunnels:",
        "  - name: office",
        "    endpoint: vpn.example.net:51820",
        "    policy: nowhere",
        "  - name: office",
        "    endpoint: 203.0.113.7",
        "    protocol: icmp",
        "    policy: site",
      ),
      [
        'wg.yaml:12:15: tunnels.0.endpoint: must be ADDRESS or ADDRESS:PORT (192.0.2.7:51820, [2001:db8::7]:51820): "vpn.example.net" is not an address (host names are not resolved: give the address)',
        'wg.yaml:16:15: tunnels.1.protocol: must be one of "udp", "tcp"',
      ],
    );
    assert.deepEqual(
      errorsOf(
        "tunnels:",
        "  - { name: office, endpoint: 203.0.113.7:51820, policy: nowhere }",
        "  - { name: office, endpoint: 203.0.113.8:51820, policy: site }",
      ),
      [
        'wg.yaml:11:58: tunnels.0.policy: unknown policy "nowhere" (policies: default, site)',
        'wg.yaml:12:13: tunnels.1.name: duplicate tunnel name "office"',
      ],
    );
  });
});

const links = new Map([
  ["fibre", numberedLink(1)],
  ["lte", numberedLink(2)],
]);

function world(config: Config, states: Record<string, UplinkState>) {
  return policyWorld(config, links, states);
}

const TUNNELS = [
  "tunnels:",
  "  - { name: office, endpoint: 203.0.113.7:51820, policy: site }",
  "  - { name: office6, endpoint: '[2001:db8::7]:51820', protocol: udp, policy: site }",
  "  - { name: vpn, endpoint: 198.51.100.10, protocol: tcp, policy: default }",
];

describe("tunnels in the output chain", () => {
  it("send a tunnel's new flow to its policy, after the restore of known flows and before the uplink-address exemption", () => {
    const c = config(...TUNNELS);
    const { views } = world(c, {});
    const nft = renderNft(c, views, {});
    const output = /chain output \{\n([^}]*)\}/.exec(nft)?.[1] ?? "";
    const lines = output.split("\n").map((l) => l.trim());
    assert.deepEqual(lines.slice(1, 6), [
      "meta mark & 0xff00 vmap @restore",
      "ct mark & 0xff00 vmap @restore",
      'ip daddr 203.0.113.7 udp dport 51820 goto policy_site comment "tunnel office"',
      'ip6 daddr 2001:db8::7 udp dport 51820 goto policy_site comment "tunnel office6"',
      'ip daddr 198.51.100.10 meta l4proto tcp goto policy_default comment "tunnel vpn"',
    ]);
    assert.equal(lines[6], "ip saddr @uplink_addresses return");
    // The policy chain records `failback: move` policies in the connection's mark.
    assert.match(nft, /chain policy_site \{\n\t\tct mark set ct mark & 0xff00ffff \| 0x/);
  });

  it("drop a new flow from a tunnel's peer to the router, before new flows from an uplink are marked with it", () => {
    const c = config(...TUNNELS);
    const nft = renderNft(c, world(c, {}).views, {});
    const prerouting = /chain prerouting \{\n([^}]*)\}/.exec(nft)?.[1] ?? "";
    const lines = prerouting.split("\n").map((l) => l.trim());
    assert.deepEqual(lines.slice(2, 6), [
      'ct state new fib daddr type local ip saddr 203.0.113.7 udp sport 51820 drop comment "tunnel office: the router starts it"',
      'ct state new fib daddr type local ip6 saddr 2001:db8::7 udp sport 51820 drop comment "tunnel office6: the router starts it"',
      'ct state new fib daddr type local ip saddr 198.51.100.10 meta l4proto tcp drop comment "tunnel vpn: the router starts it"',
      "ct state new iifname vmap @inbound",
    ]);
  });

  it("renders no tunnel line without tunnels", () => {
    const c = config();
    const nft = renderNft(c, world(c, {}).views, {});
    assert.doesNotMatch(nft, /tunnel /);
  });

  it("a tunnel's flow for conntrack", () => {
    const c = config(...TUNNELS);
    assert.deepEqual(c.tunnels.map(tunnelFlow), [
      { family: 4, protocol: "udp", dst: "203.0.113.7", dport: 51820 },
      { family: 6, protocol: "udp", dst: "2001:db8::7", dport: 51820 },
      { family: 4, protocol: "tcp", dst: "198.51.100.10" },
    ]);
    assert.equal(
      tunnelLine(c.tunnels[0] ?? assert.fail("no tunnel")),
      'ip daddr 203.0.113.7 udp dport 51820 goto policy_site comment "tunnel office"',
    );
  });
});

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

function watcher() {
  const cleared: ConntrackFlow[] = [];
  const w = new TunnelWatcher({
    log: silent,
    wall: () => Date.parse("2026-12-07T12:00:00Z"),
    clearFlow: (flow) => {
      cleared.push(flow);
      return Promise.resolve(1);
    },
  });
  return { w, cleared };
}

const OFFICE = { family: 4, protocol: "udp", dst: "203.0.113.7", dport: 51820 };

describe("the tunnel watcher", () => {
  const c = config("tunnels:", "  - { name: office, endpoint: 203.0.113.7:51820, policy: site }");
  const step = (w: TunnelWatcher, states: Record<string, UplinkState>) => {
    const { views, choices, choices6 } = world(c, states);
    w.update(c, views, choices, choices6);
  };

  it("clears the tunnel's flow once at start, then follows a failover at once", async () => {
    const { w, cleared } = watcher();
    step(w, {});
    await settle();
    assert.deepEqual(cleared, [OFFICE]);
    assert.equal(w.status(c)[0]?.uplink, "fibre");
    step(w, {});
    step(w, { lte: "down" });
    await settle();
    assert.equal(cleared.length, 1, "no change on the tunnel's uplink: nothing cleared");
    step(w, { fibre: "down" });
    await settle();
    assert.deepEqual(cleared, [OFFICE, OFFICE]);
    assert.deepEqual(w.status(c), [
      {
        name: "office",
        endpoint: "203.0.113.7:51820",
        protocol: "udp",
        policy: "site",
        uplink: "lte",
        moved: "2026-12-07T12:00:00.000Z",
      },
    ]);
  });

  it("leaves the way back to the policy's failback: stays on the backup until the failback of its policy", async () => {
    const { w, cleared } = watcher();
    step(w, {});
    step(w, { fibre: "down" });
    step(w, {});
    await settle();
    assert.equal(cleared.length, 2, "a better tier back: the tunnel waits for the failback");
    assert.equal(w.status(c)[0]?.uplink, "lte");
    w.failback({ time: "", policy: "default", family: 4, tier: 1, cleared: {}, total: 0 });
    assert.equal(w.status(c)[0]?.uplink, "lte", "another policy's failback");
    w.failback({ time: "", policy: "site", family: 4, tier: 1, cleared: { lte: 1 }, total: 1 });
    await settle();
    assert.equal(w.status(c)[0]?.uplink, "fibre");
    assert.equal(cleared.length, 3);
  });

  it("the uplink of a choice: best tier, then weight; none for a last resort that does not balance", () => {
    assert.equal(
      tunnelUplink({
        kind: "balance",
        members: [
          { uplink: "a", weight: 1, tier: 2 },
          { uplink: "b", weight: 1, tier: 1 },
          { uplink: "c", weight: 3, tier: 1 },
        ],
      }),
      "c",
    );
    assert.equal(tunnelUplink({ kind: "unreachable" }), undefined);
    assert.equal(tunnelUplink(undefined), undefined);
  });

  it("deletes a tunnel's flow both ways, whatever its mark", async () => {
    const kernel = new FakeKernel();
    await deleteTunnelFlow(kernel, OFFICE as ConntrackFlow);
    await deleteTunnelFlow(kernel, { family: 4, protocol: "tcp", dst: "198.51.100.10" });
    assert.deepEqual(
      kernel.calls.filter((c) => c.startsWith("conntrack")),
      [
        "conntrack -D -f ipv4 -d 203.0.113.7 -p udp --dport 51820 -m 0/0",
        "conntrack -D -f ipv4 -s 203.0.113.7 -p udp --sport 51820 -m 0/0",
        "conntrack -D -f ipv4 -d 198.51.100.10 -p tcp -m 0/0",
        "conntrack -D -f ipv4 -s 198.51.100.10 -p tcp -m 0/0",
      ],
    );
  });

  it("status lists each tunnel with its uplink", () => {
    const text = formatTunnels({
      tunnels: [
        {
          name: "office",
          endpoint: "203.0.113.7:51820",
          protocol: "udp",
          policy: "site",
          uplink: "lte",
          moved: null,
        },
      ],
    } as unknown as StatusDocument);
    assert.match(text, /TUNNEL +ENDPOINT +PROTO +POLICY +UPLINK/);
    assert.match(text, /office +203\.0\.113\.7:51820 +udp +site +lte/);
    assert.equal(formatTunnels({ tunnels: [] } as unknown as StatusDocument), "");
  });
});

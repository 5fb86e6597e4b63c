/** `uplinkd status --json`: every uplink keeps its IPv4 fields and gains `ipv6`. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { UplinkView } from "../../src/dataplane/render.js";
import type { UplinkLink } from "../../src/links/observe.js";
import type { StatusDocument, UplinkStatus } from "../../src/control/api.js";
import { buildStatus, type StatusParts } from "../../src/control/status.js";
import { formatIpv6 } from "../../src/control/format.js";
import type { HealthSnapshot } from "../../src/uplink-health.js";

function view(name: string, id: number): UplinkView {
  const v: UplinkView = {
    name,
    id,
    mark: id << 8,
    mask: 0xff00,
    table: 100 + id,
    interface: `wan${id}`,
    weight: 1,
    tier: 1,
    address: `100.64.${id}.2`,
    gateway: `100.64.${id}.1`,
    linkUp: true,
    pointToPoint: false,
    usability: "good",
  };
  return v;
}

function link(id: number, ipv6?: { address?: string; gateway?: string; prefix?: string }) {
  return Object.assign(
    {
      present: true,
      up: true,
      carrier: true,
      pointToPoint: false,
      address: `100.64.${id}.2`,
    } as UplinkLink,
    ipv6 === undefined ? {} : { ipv6 },
  );
}

const up4: HealthSnapshot = {
  state: "up",
  since: Date.parse("2026-11-21T00:00:00Z"),
  loss: 0,
  rtt: 0.2,
  jitter: 0.01,
  reason: "first round passed",
};
const down6: HealthSnapshot = {
  state: "down",
  since: Date.parse("2026-11-21T00:01:00Z"),
  loss: 100,
  recentLoss: 100,
  rtt: null,
  jitter: null,
  reason: "3 rounds failed",
};

function parts(overrides: Partial<StatusParts> = {}): StatusParts {
  return {
    configPath: "/etc/uplinkd/uplinkd.yaml",
    startedAt: Date.parse("2026-11-21T00:00:00Z"),
    views: [view("isp1", 1), view("isp2", 2), view("isp3", 3)],
    links: new Map([
      [
        "isp1",
        link(1, { address: "2001:db8:1::2", gateway: "fe80::1", prefix: "2001:db8:1001::/56" }),
      ],
      ["isp2", link(2, { address: "2001:db8:2::2", gateway: "fe80::2" })],
      ["isp3", link(3)],
    ]),
    health: () => up4,
    health6: (name) => (name === "isp1" ? down6 : name === "isp2" ? up4 : undefined),
    choices: {
      default: {
        kind: "balance",
        members: [
          { uplink: "isp1", weight: 1, tier: 1 },
          { uplink: "isp2", weight: 1, tier: 1 },
          { uplink: "isp3", weight: 1, tier: 1 },
        ],
      },
    },
    lastApply: null,
    traffic: { connections: () => null, bytes: () => null },
    throughput: () => undefined,
    ...overrides,
  };
}

/** Uplink `i` of a status document (asserted present). */
function row(doc: StatusDocument, i: number): UplinkStatus {
  const u = doc.uplinks[i];
  assert.ok(u, `no uplink ${String(i)}`);
  return u;
}

describe("status document: ipv6 per uplink", () => {
  it("keeps the IPv4 fields and adds ipv6 with state, activity, address, gateway, prefix, loss, RTT, jitter", () => {
    const doc = buildStatus(parts());
    const [isp1, isp2, isp3] = doc.uplinks;
    assert.ok(isp1 && isp2 && isp3);
    assert.equal(isp1.state, "up", "the uplink's state stays its IPv4 state");
    assert.equal(isp1.address, "100.64.1.2");
    assert.deepEqual(isp1.ipv6, {
      state: "down",
      since: "2026-11-21T00:01:00.000Z",
      active: false,
      address: "2001:db8:1::2",
      gateway: "fe80::1",
      prefix: "2001:db8:1001::/56",
      loss: 100,
      recentLoss: 100,
      rtt: null,
      jitter: null,
      reason: "3 rounds failed",
    });
    assert.equal(isp2.ipv6?.state, "up");
    assert.equal(isp2.ipv6.active, true);
    assert.equal(isp2.ipv6.prefix, null);
    assert.equal(isp3.ipv6, null, "no IPv6 monitor and no IPv6 address: null");
  });

  it("an uplink with an IPv6 address but no IPv6 targets shows IPv6 as unmonitored, following IPv4", () => {
    const doc = buildStatus(parts({ health6: () => undefined }));
    const v6 = row(doc, 1).ipv6;
    assert.ok(v6);
    assert.equal(v6.state, "unmonitored");
    assert.equal(v6.reason, `no IPv6 targets: follows IPv4, which is ${row(doc, 1).state}`);
    assert.deepEqual([v6.loss, v6.rtt, v6.jitter], [null, null, null]);
    assert.match(formatIpv6(doc), /isp2 +unmonitored \(follows IPv4\)/);
  });

  it("IPv6 without a global address is not active", () => {
    const waiting = buildStatus(
      parts({
        links: new Map([["isp2", link(2, { gateway: "fe80::2" })]]),
        health6: () => ({ ...up4, state: "down", reason: "no global IPv6 address" }),
      }),
    );
    const v6 = row(waiting, 1).ipv6;
    assert.ok(v6);
    assert.equal(v6.address, null);
    assert.equal(v6.active, false);
  });

  it("IPv6 is active where the applied IPv6 choices give the uplink new connections, apart from IPv4", () => {
    // As applied: IPv4 balances over all three; IPv6 over isp2 only (isp1's IPv6 is
    // down, isp3 has none), and a member of weight 0 gets no new connections.
    const doc = buildStatus(
      parts({
        choices6: {
          default: {
            kind: "balance",
            members: [
              { uplink: "isp2", weight: 1, tier: 1 },
              { uplink: "isp3", weight: 0, tier: 1 },
            ],
          },
        },
      }),
    );
    assert.deepEqual(
      doc.uplinks.map((u) => [u.name, u.active, u.ipv6?.active ?? null]),
      [
        ["isp1", true, false],
        ["isp2", true, true],
        ["isp3", true, null],
      ],
    );
    const none = buildStatus(parts({ choices6: { default: { kind: "unreachable" } } }));
    assert.deepEqual(
      none.uplinks.map((u) => u.ipv6?.active ?? null),
      [false, false, null],
    );
  });
});

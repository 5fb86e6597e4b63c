import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { describeUplink } from "../../src/config/cli.js";
import { configSchema } from "../../src/config/schema.js";
import { formatStatus } from "../../src/control/format.js";
import { routeCommand, ruleCommand } from "../../src/dataplane/diff.js";
import { renderDesired } from "../../src/dataplane/render.js";
import { buildViews } from "../../src/dataplane/views.js";
import type { LinkState, Route } from "../../src/kernel/types.js";
import { LabError } from "../../src/lab/errors.js";
import { renderLabConfig } from "../../src/lab/config.js";
import {
  planLab,
  renderIspBatch,
  renderIspRuleset,
  renderNetRoutesBatch,
  renderP2pIspBatch,
  renderP2pRouterBatch,
  renderRouterBatch,
  type UplinkPlan,
} from "../../src/lab/topology.js";
import { observeUplinks } from "../../src/links/observe.js";
import { parse } from "yaml";
import type { UplinkStatus } from "../../src/control/api.js";
import { uplinkStatus } from "../fakes/status.js";

const PROTO = 73;

function link(name: string, addresses: LinkState["addresses"], pointToPoint = false): LinkState {
  return { name, index: 1, up: true, carrier: true, pointToPoint, addresses };
}

function configOf(uplinks: Record<string, unknown>[], extra: Record<string, unknown> = {}) {
  return configSchema.parse({ lan: ["lan0"], uplinks, ...extra });
}

/** Observe, build views (every uplink up) and render, as the daemon does. */
function render(
  config: ReturnType<typeof configOf>,
  links: LinkState[],
  routes: Route[] = [],
  lanAddress = "100.64.100.1",
) {
  const observed = observeUplinks(config, links, routes, PROTO);
  const views = buildViews(config, observed, () => "up");
  const desired = renderDesired(config, views, { lanAddress });
  return {
    observed,
    views,
    desired,
    routes: desired.routes.filter((r) => r.family !== 6).map((r) => routeCommand("replace", r)),
    rules: desired.rules.filter((r) => r.family !== 6).map((r) => ruleCommand("add", r)),
  };
}

const wan1 = link("wan1", [{ address: "100.64.1.2", prefixlen: 24 }]);
const isp1 = { name: "isp1", interface: "wan1", gateway: "100.64.1.1" };

describe("point-to-point uplinks without a gateway", () => {
  it("gateway: none routes default dev IF in the uplink's table and in main, and masquerades", () => {
    const config = configOf([
      { name: "lte", interface: "wwan0", gateway: "none" },
      { ...isp1, tier: 2 },
    ]);
    const { observed, views, routes, desired } = render(config, [
      link("wwan0", [{ address: "198.51.100.77", prefixlen: 30 }]),
      wan1,
    ]);
    assert.equal(observed.get("lte")?.gateway, undefined);
    assert.equal(views[0]?.usability, "good");
    assert.deepEqual(routes.slice(0, 2), [
      "route replace default dev wwan0 table 101 proto 73 metric 0",
      "route replace unreachable default table 101 proto 73 metric 4294967295",
    ]);
    assert.equal(
      routes.at(-1),
      "route replace default dev wwan0 src 100.64.100.1 table 254 proto 73 metric 4096",
    );
    assert.deepEqual(desired.maps.balance_default, ["0-9999 : goto uplink_1"]);
    assert.match(desired.nftScript, /meta nfproto ipv4 oifname "wwan0" masquerade/);
  });

  it("gateway: none without an address waits: no route, not balanced", () => {
    const config = configOf([{ name: "lte", interface: "wwan0", gateway: "none" }, isp1]);
    const { views, routes, desired } = render(config, [link("wwan0", []), wan1]);
    assert.equal(views[0]?.usability, "bad");
    assert.ok(!routes.some((r) => r.includes("dev wwan0")));
    assert.deepEqual(desired.maps.balance_default, ["0-9999 : goto uplink_2"]);
  });

  it("auto on a POINTOPOINT link without a peer or a learned route finds no gateway and routes dev IF", () => {
    const config = configOf([{ name: "tun", interface: "tun0", gateway: "auto" }, isp1]);
    const { observed, routes, desired } = render(config, [
      link("tun0", [{ address: "198.51.100.6", prefixlen: 32 }], true),
      wan1,
    ]);
    assert.equal(observed.get("tun")?.gateway, undefined);
    assert.equal(routes[0], "route replace default dev tun0 table 101 proto 73 metric 0");
    assert.equal(
      routes.at(-1),
      "route replace default dev tun0 src 100.64.100.1 table 254 proto 73 metric 4096",
    );
    assert.deepEqual(desired.maps.balance_default, [
      "0-4999 : goto uplink_1",
      "5000-9999 : goto uplink_2",
    ]);
  });

  it("auto on a POINTOPOINT link with a peer reports the peer as gateway, routes dev IF", () => {
    const config = configOf([{ name: "dsl", interface: "ppp0", gateway: "auto" }]);
    const { observed, routes } = render(config, [
      link("ppp0", [{ address: "203.0.113.9", prefixlen: 32, peer: "203.0.113.1/32" }], true),
    ]);
    assert.equal(observed.get("dsl")?.gateway, "203.0.113.1");
    assert.equal(routes[0], "route replace default dev ppp0 table 101 proto 73 metric 0");
  });

  it("a learned route of uplinkd's own protocol is not taken as the gateway", () => {
    const config = configOf([{ name: "lte", interface: "wwan0", gateway: "auto" }]);
    const own: Route = {
      table: 101,
      type: "unicast",
      dst: "default",
      gateway: "198.51.100.1",
      dev: "wwan0",
      metric: 0,
      protocol: PROTO,
      options: {},
    };
    const { observed } = render(
      config,
      [link("wwan0", [{ address: "198.51.100.77", prefixlen: 30 }])],
      [own],
    );
    assert.equal(observed.get("lte")?.gateway, undefined);
  });
});

describe("several addresses on one interface", () => {
  const addresses = [
    { address: "100.64.2.2", prefixlen: 24 },
    { address: "100.64.2.9", prefixlen: 24 },
  ];

  it("without address: the primary (first) address, masquerade, no route src", () => {
    const config = configOf([{ name: "isp2", interface: "wan2", gateway: "100.64.2.1" }]);
    const { observed, routes, rules, desired } = render(config, [link("wan2", addresses)]);
    assert.equal(observed.get("isp2")?.address, "100.64.2.2");
    assert.equal(observed.get("isp2")?.addressSource, "primary");
    assert.equal(
      routes[0],
      "route replace default via 100.64.2.1 dev wan2 table 101 proto 73 metric 0",
    );
    assert.ok(rules.some((r) => r.startsWith("rule add priority 1301 from 100.64.2.2 lookup 101")));
    assert.match(desired.nftScript, /oifname "wan2" masquerade/);
  });

  it("address: picks it: SNAT to it, rule from it, route src it (probes leave from it)", () => {
    const config = configOf([
      { name: "isp2", interface: "wan2", gateway: "100.64.2.1", address: "100.64.2.9" },
    ]);
    const { observed, routes, rules, desired } = render(config, [link("wan2", addresses)]);
    assert.equal(observed.get("isp2")?.address, "100.64.2.9");
    assert.equal(observed.get("isp2")?.addressSource, "configured");
    assert.equal(observed.get("isp2")?.network, "100.64.2.0/24");
    assert.equal(
      routes[0],
      "route replace default via 100.64.2.1 dev wan2 src 100.64.2.9 table 101 proto 73 metric 0",
    );
    // The main table's default keeps the LAN address as source (unbound sockets are balanced).
    assert.equal(
      routes.at(-1),
      "route replace default via 100.64.2.1 dev wan2 src 100.64.100.1 table 254 proto 73 metric 4096",
    );
    assert.ok(rules.some((r) => r.startsWith("rule add priority 1301 from 100.64.2.9 lookup 101")));
    assert.ok(!rules.some((r) => r.includes("from 100.64.2.2")));
    assert.match(desired.nftScript, /oifname "wan2" snat ip to 100\.64\.2\.9/);
    assert.deepEqual(desired.maps.uplink_addresses, ["100.64.2.9"]);
  });

  it("snat: still wins over address: for NAT", () => {
    const config = configOf([
      {
        name: "isp2",
        interface: "wan2",
        gateway: "100.64.2.1",
        address: "100.64.2.9",
        snat: "100.64.2.2",
      },
    ]);
    const { desired } = render(config, [link("wan2", addresses)]);
    assert.match(desired.nftScript, /oifname "wan2" snat ip to 100\.64\.2\.2/);
  });

  it("a configured address not on the interface: the uplink waits (no address, no route, not balanced)", () => {
    const config = configOf([
      { name: "isp1", interface: "wan1", gateway: "100.64.1.1" },
      { name: "isp2", interface: "wan2", gateway: "100.64.2.1", address: "100.64.2.50" },
    ]);
    const { observed, views, routes, rules, desired } = render(config, [
      wan1,
      link("wan2", addresses),
    ]);
    const isp2 = observed.get("isp2");
    assert.equal(isp2?.address, undefined);
    assert.equal(isp2?.missingAddress, "100.64.2.50");
    assert.equal(views[1]?.usability, "bad");
    assert.ok(!routes.some((r) => r.includes("dev wan2")));
    assert.ok(!rules.some((r) => r.includes("100.64.2.")));
    assert.deepEqual(desired.maps.balance_default, ["0-9999 : goto uplink_1"]);
  });

  it("a missing interface with a configured address reports the address it waits for", () => {
    const config = configOf([{ name: "isp2", interface: "wan2", address: "100.64.2.50" }]);
    const observed = observeUplinks(config, [], [], PROTO);
    assert.deepEqual(observed.get("isp2"), {
      present: false,
      up: false,
      carrier: false,
      pointToPoint: false,
      missingAddress: "100.64.2.50",
      problem:
        "uplinks.0.interface: no interface wan2 on this router (interfaces: none); fix the name, or bring the interface up first",
    });
  });

  it("check --verbose and status say which address an uplink uses", () => {
    const config = configOf([
      { name: "isp1", interface: "wan1", gateway: "100.64.1.1" },
      { name: "isp2", interface: "wan2", address: "100.64.2.9" },
      { name: "lte", interface: "wwan0", gateway: "none" },
    ]);
    const [a, b, c] = config.uplinks.map(describeUplink);
    assert.equal(
      a,
      "isp1 on wan1: gateway 100.64.1.1; source address: the primary address of wan1; masquerade",
    );
    assert.match(
      b ?? "",
      /source address 100\.64\.2\.9 \(address:, SNAT to it; waits until wan2 has it\)/,
    );
    assert.match(c ?? "", /no gateway: default dev wwan0/);
    const row = (overrides: Partial<UplinkStatus>): UplinkStatus =>
      uplinkStatus("isp2", {
        since: "2026-01-01T00:00:00.000Z",
        id: 2,
        mark: "0x200",
        table: 102,
        address: null,
        gateway: "100.64.2.1",
        ...overrides,
      });
    const text = formatStatus(
      {
        version: "0.1.0",
        pid: 1,
        config: "x",
        startedAt: "2026-01-01T00:00:00.000Z",
        uplinks: [
          row({ address: "100.64.2.9", addressSource: "configured" }),
          row({ name: "isp3", address: null, waitingForAddress: "100.64.3.9" }),
          row({ name: "isp4", address: "100.64.4.2", addressSource: "primary" }),
        ],
        policies: {},
        lastApply: null,
        domains: [],
      },
      Date.parse("2026-01-01T00:01:00.000Z"),
    );
    assert.match(text, /100\.64\.2\.9 \(configured\)/);
    assert.match(text, /- \(waiting for 100\.64\.3\.9\)/);
    assert.match(text, /100\.64\.4\.2 +100\.64\.2\.1/);
  });
});

describe("CGNAT and private upstream networks", () => {
  it("an uplink with a private address is balanced like any other; its pinned prefixes go to it", () => {
    const config = configOf([
      isp1,
      { name: "isp3", interface: "wan3", gateway: "10.3.1.1", pinned: ["10.3.0.0/16"] },
    ]);
    const { views, desired, rules } = render(config, [
      wan1,
      link("wan3", [{ address: "10.3.1.2", prefixlen: 24 }]),
    ]);
    assert.equal(views[1]?.usability, "good");
    assert.deepEqual(desired.maps.balance_default, [
      "0-4999 : goto uplink_1",
      "5000-9999 : goto uplink_2",
    ]);
    assert.deepEqual(desired.maps.pinned, ["10.3.0.0/16 : goto uplink_2"]);
    assert.ok(rules.some((r) => r.startsWith("rule add priority 1302 from 10.3.1.2 lookup 102")));
    assert.match(desired.nftScript, /oifname "wan3" masquerade/);
  });
});

describe("the lab's point-to-point and CGNAT uplinks (plans and scripts)", () => {
  it("plans a p2p uplink as a TUN pair without a gateway and a CGNAT one in 10.I", () => {
    const plan = planLab({ prefix: "k", uplinks: 3, p2p: [2], cgnat: [3] });
    const at = (i: number): UplinkPlan => {
      const u = plan.uplinks[i];
      assert.ok(u !== undefined);
      return u;
    };
    const [isp1p, isp2p, isp3p] = [at(0), at(1), at(2)];
    assert.equal(isp1p.kind, "ethernet");
    assert.equal(isp2p.kind, "p2p");
    assert.deepEqual(
      [isp3p.kind, isp3p.routerAddress, isp3p.gateway, isp3p.upstream],
      ["cgnat", "10.3.1.2", "10.3.1.1", { network: "10.3.0.0/16", host: "10.3.0.53" }],
    );
    const router = renderRouterBatch(plan);
    assert.ok(!router.includes("wan2"), router);
    assert.match(router, /addr add 10\.3\.1\.2\/24 dev wan3/);
    assert.equal(
      renderP2pRouterBatch(isp2p),
      "addr add 100.64.2.2/32 dev wan2\nlink set wan2 up\nlink set p2p2 netns k-isp2\n",
    );
    assert.equal(
      renderP2pIspBatch(isp2p),
      "link set p2p2 name cust\naddr add 100.64.2.1 peer 100.64.2.0/24 dev cust\nlink set cust up\n",
    );
    assert.ok(!renderIspBatch(isp2p).includes("cust"));
    assert.match(renderIspBatch(isp3p), /addr add 10\.3\.0\.53\/32 dev lo/);
    assert.match(renderIspRuleset(isp3p), /oifname "core" masquerade/);
    assert.ok(!renderIspRuleset(isp1p).includes("masquerade"));
    assert.ok(!renderNetRoutesBatch(plan).includes("10.3."));
  });

  it("writes gateway: none for p2p and pins a CGNAT ISP's upstream network", () => {
    const plan = planLab({ prefix: "k", uplinks: 3, p2p: [2], cgnat: [3] });
    const config = configSchema.parse(parse(renderLabConfig(plan, "/tmp/s.sock", "/tmp/c.yaml")));
    assert.deepEqual(
      config.uplinks.map((u) => [u.gateway, u.pinned]),
      [
        ["100.64.1.1", []],
        ["none", []],
        ["10.3.1.1", ["10.3.0.0/16"]],
      ],
    );
  });

  it("refuses an uplink that is two kinds at once", () => {
    assert.throws(() => planLab({ prefix: "k", uplinks: 2, dhcp: [2], p2p: [2] }), LabError);
    assert.throws(() => planLab({ prefix: "k", uplinks: 2, p2p: [1], cgnat: [1] }), LabError);
  });
});

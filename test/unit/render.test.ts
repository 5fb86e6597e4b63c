import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { configSchema } from "../../src/config/schema.js";
import {
  canonicalElement,
  diffIp,
  diffNft,
  ipCommands,
  routeCommand,
  ruleCommand,
  summariseNft,
} from "../../src/dataplane/diff.js";
import { renderDesired, renderMapUpdate, type UplinkView } from "../../src/dataplane/render.js";
import { buildViews } from "../../src/dataplane/views.js";
import type { UplinkLink } from "../../src/links/observe.js";
import { upLink } from "../fakes/links.js";

const config = configSchema.parse({
  lan: ["lan0"],
  uplinks: [
    { name: "isp1", interface: "wan1", gateway: "100.64.1.1", weight: 3 },
    { name: "isp2", interface: "wan2", gateway: "auto", weight: 2 },
    { name: "lte", interface: "wwan0", gateway: "100.64.3.1", tier: 2, snat: "100.64.3.2" },
  ],
});

const links = new Map<string, UplinkLink>([
  ["isp1", upLink("100.64.1.2", "100.64.1.1")],
  ["isp2", upLink("100.64.2.2", "100.64.2.1")],
  ["lte", upLink("100.64.3.2", "100.64.3.1")],
]);

function views(usable: (name: string) => boolean = () => true): UplinkView[] {
  return buildViews(config, links, (name) => (usable(name) ? "up" : "down"));
}

const golden = new URL("./golden/three-uplinks.nft", import.meta.url);

describe("rendering the desired state", () => {
  it("renders the nft table as in the golden file", async () => {
    const script = renderDesired(config, views()).nftScript;
    if (process.env.UPDATE_GOLDEN === "1") await writeFile(golden, script);
    assert.equal(script, await readFile(golden, "utf8"));
  });

  it("balances tier 1 by weight 3:2 and leaves tier 2 out", () => {
    const { maps } = renderDesired(config, views());
    assert.deepEqual(maps.balance_default, ["0-5999 : goto uplink_1", "6000-9999 : goto uplink_2"]);
  });

  it("moves every new connection to tier 2 when tier 1 is down", () => {
    const { maps } = renderDesired(
      config,
      views((name) => name === "lte"),
    );
    assert.deepEqual(maps.balance_default, ["0-9999 : goto uplink_3"]);
  });

  it("gives each uplink a table with its default and an unreachable catch-all", () => {
    const routes = renderDesired(config, views())
      .routes.filter((r) => r.family !== 6)
      .map((r) => routeCommand("replace", r));
    assert.deepEqual(routes, [
      "route replace default via 100.64.1.1 dev wan1 table 101 proto 73 metric 0",
      "route replace unreachable default table 101 proto 73 metric 4294967295",
      "route replace default via 100.64.2.1 dev wan2 table 102 proto 73 metric 0",
      "route replace unreachable default table 102 proto 73 metric 4294967295",
      "route replace default via 100.64.3.1 dev wwan0 table 103 proto 73 metric 0",
      "route replace unreachable default table 103 proto 73 metric 4294967295",
      "route replace default via 100.64.1.1 dev wan1 table 254 proto 73 metric 4096",
    ]);
  });

  it("keeps the ip rules in the order of the design: suppress, fwmark, unreachable, from", () => {
    const rules = renderDesired(config, views())
      .rules.filter((r) => r.family !== 6)
      .map((r) => ruleCommand("add", r));
    assert.deepEqual(rules, [
      "rule add priority 1000 lookup 254 suppress_prefixlength 0 protocol 73",
      "rule add priority 1001 fwmark 0x100/0xff00 lookup 101 protocol 73",
      "rule add priority 1002 fwmark 0x200/0xff00 lookup 102 protocol 73",
      "rule add priority 1003 fwmark 0x300/0xff00 lookup 103 protocol 73",
      "rule add priority 1255 fwmark 0xff00/0xff00 unreachable protocol 73",
      "rule add priority 1301 from 100.64.1.2 lookup 101 protocol 73",
      "rule add priority 1302 from 100.64.2.2 lookup 102 protocol 73",
      "rule add priority 1303 from 100.64.3.2 lookup 103 protocol 73",
    ]);
  });

  it("drops an uplink's default route when its link is down, keeping the catch-all", () => {
    const down = new Map(links);
    down.set("isp2", { ...upLink("100.64.2.2", "100.64.2.1"), up: false, carrier: false });
    const routes = renderDesired(
      config,
      buildViews(config, down, () => "up"),
    ).routes;
    assert.ok(!routes.some((r) => r.table === 102 && r.type === "unicast"));
    assert.ok(routes.some((r) => r.table === 102 && r.type === "unreachable"));
  });

  it("changes only the structure hash when the structure changes, not on failover", () => {
    const a = renderDesired(config, views());
    const b = renderDesired(
      config,
      views((n) => n !== "isp1"),
    );
    assert.equal(a.nftHash, b.nftHash);
    const other = configSchema.parse({ ...config, lan: ["lan0", "lan1"] });
    assert.notEqual(
      renderDesired(
        other,
        buildViews(other, links, () => "up"),
      ).nftHash,
      a.nftHash,
    );
  });

  it("renders a failover as a flush and refill of the changed map only", () => {
    assert.equal(
      renderMapUpdate("uplinkd", { balance_default: ["0-9999 : goto uplink_2"] }),
      "flush map inet uplinkd balance_default\nadd element inet uplinkd balance_default { 0-9999 : goto uplink_2 }\n",
    );
  });
});

describe("diffing against the kernel", () => {
  const desired = renderDesired(config, views());

  it("adds everything to an empty kernel, additions before deletions", () => {
    const foreign = {
      table: 254,
      type: "unicast" as const,
      dst: "default",
      gateway: "100.64.9.1",
      dev: "eth9",
      metric: 0,
      protocol: 16,
      options: {},
    };
    const stale = { ...foreign, table: 109, protocol: 73 };
    const changes = diffIp(desired, { routes: [foreign, stale], rules: [] }, 73);
    assert.equal(changes.routeReplace.length, desired.routes.length);
    assert.deepEqual(
      changes.routeDelete,
      [stale],
      "only routes with uplinkd's protocol are removed",
    );
    const commands = ipCommands(changes);
    assert.equal(commands.at(-1), "route del default table 109 proto 73 metric 0");
  });

  it("finds nothing to do when the kernel holds the desired state", () => {
    const changes = diffIp(desired, { routes: desired.routes, rules: desired.rules }, 73);
    assert.deepEqual(ipCommands(changes), []);
  });

  it("replaces a route whose gateway changed (DHCP)", () => {
    const moved = desired.routes.map((r) =>
      r.gateway === "100.64.2.1" ? { ...r, gateway: "100.64.2.254" } : r,
    );
    const changes = diffIp(desired, { routes: moved, rules: desired.rules }, 73);
    assert.deepEqual(ipCommands(changes), [
      "route replace default via 100.64.2.1 dev wan2 table 102 proto 73 metric 0",
    ]);
  });

  it("reads nft's JSON elements (as nft 1.0.6 prints them) in the same form as rendered ones", () => {
    // Element shapes copied from `nft -j list table` output on this kernel.
    const json = {
      nftables: [
        { set: { name: "structure", elem: [Number.parseInt(desired.nftHash, 16)] } },
        { chain: { name: "prerouting" } },
        {
          map: {
            name: "balance_default",
            elem: [
              [{ range: [0, 5999] }, { goto: { target: "uplink_1" } }],
              [{ range: [6000, 9999] }, { goto: { target: "uplink_2" } }],
            ],
          },
        },
        { map: { name: "restore", elem: [[256, { goto: { target: "uplink_1" } }]] } },
        { map: { name: "inbound", elem: [["wan1", { goto: { target: "uplink_1" } }]] } },
        {
          map: {
            name: "pinned",
            elem: [
              [{ prefix: { addr: "10.0.0.0", len: 8 } }, { goto: { target: "uplink_1" } }],
              ["192.0.2.25", { accept: null }],
            ],
          },
        },
        {
          set: {
            name: "local_networks",
            elem: ["10.0.0.1", { prefix: { addr: "100.64.1.0", len: 24 } }],
          },
        },
        { set: { name: "active_default", elem: [256, 512] } },
      ],
    };
    const summary = summariseNft(json);
    assert.equal(summary.hash, desired.nftHash);
    const want = {
      balance_default: ["0-5999 : goto uplink_1", "6000-9999 : goto uplink_2"],
      restore: ["0x100 : goto uplink_1"],
      inbound: ['"wan1" : goto uplink_1'],
      pinned: ["10.0.0.0/8 : goto uplink_1", "192.0.2.25 : accept"],
      local_networks: ["10.0.0.1", "100.64.1.0/24"],
      active_default: ["0x100", "0x200"],
    };
    const diff = diffNft({ hash: desired.nftHash, chains: ["prerouting"], maps: want }, summary);
    assert.deepEqual(diff, { reload: [], maps: {}, differences: [] });
    const failover = diffNft(
      {
        hash: desired.nftHash,
        chains: ["prerouting"],
        maps: { ...want, balance_default: ["0-9999 : goto uplink_2"] },
      },
      summary,
    );
    assert.deepEqual(failover.reload, []);
    assert.deepEqual(failover.maps, { balance_default: ["0-9999 : goto uplink_2"] });
    assert.equal(failover.differences.length, 1);
    assert.equal(canonicalElement("0x100 : goto uplink_1"), "256 : goto uplink_1");
  });

  it("asks for a reload when the table is missing or has another structure", () => {
    const diff = diffNft({ hash: "abc", chains: [], maps: {} }, null);
    assert.equal(diff.reload.length, 1);
    const other = diffNft(
      { hash: "abc", chains: [], maps: {} },
      { hash: "def", chains: new Set(), maps: new Map(), domainSets: new Set<string>() },
    );
    assert.match(other.reload[0] ?? "", /structure changed/);
  });
});

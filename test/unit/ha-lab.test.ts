/**
 * The HA lab's configs and wiring (src/lab/ha.ts), without namespaces: the
 * two routers' uplinkd configs validate, differ only where a pair's may,
 * and make the pair dual-stack.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { parseConfig } from "../../src/config/load.js";
import { renderKeepalived, renderRadvd } from "../../src/ha/render.js";
import {
  haClientSource6,
  haUplinkPrefix6,
  renderHaNodeConfig,
  renderHaRouterBatch,
  renderHaSwitchBatch,
} from "../../src/lab/ha.js";
import { planLab } from "../../src/lab/topology.js";

const plan = planLab({ prefix: "u", uplinks: 2 });
const text = (name: "a" | "b", advertMs?: number) =>
  renderHaNodeConfig(plan, "/run/uplinkd-lab/u", name, advertMs);

describe("the HA lab's router configs", () => {
  it("give both routers the same uplinks, IPv6 included (gateway6, prefix6 on the first)", () => {
    const a = parse(text("a")) as { uplinks: unknown[] };
    const b = parse(text("b")) as { uplinks: unknown[] };
    assert.deepEqual(a.uplinks, b.uplinks);
    const uplinks = parseConfig(text("a"), "a.yaml").uplinks;
    assert.deepEqual(
      uplinks.map((u) => [u.name, u.gateway6, u.prefix6]),
      [
        ["isp1", "fe80::1", "2001:db8:1001::/56"],
        ["isp2", "fe80::1", undefined],
      ],
    );
    assert.deepEqual(
      plan.uplinks.map((u) => haUplinkPrefix6(u)),
      ["2001:db8:1001::/56", undefined],
    );
    assert.deepEqual(
      plan.uplinks.map((u) => haClientSource6(u)),
      ["2001:db8:1001::100", "2001:db8:2::10"],
    );
  });

  it("have virtual addresses of both families and radvd on the LAN, adverts every 100 ms by default", () => {
    const config = parseConfig(text("b"), "b.yaml");
    const ha = config.ha;
    assert.ok(ha !== undefined);
    assert.deepEqual(ha.virtual_addresses, {
      lan0: ["100.64.100.1/24", "fd00:1::1/64", "fe80::1/64"],
      wan1: ["100.64.1.10/24", "2001:db8:1::10/64"],
      wan2: ["100.64.2.10/24", "2001:db8:2::10/64"],
    });
    assert.equal(ha.advert_interval, 100);
    assert.equal(ha.radvd.pid_file, "/run/uplinkd-lab/u/ha-b/radvd.pid");
    const keepalived = renderKeepalived(config, "b.yaml");
    assert.match(keepalived, /vrrp_instance uplinkd_lan0_6 \{/);
    assert.match(keepalived, /advert_int 0.1\n/);
    assert.match(renderRadvd(config, "b.yaml") ?? "", /AdvRASrcAddress \{\n\t\tfe80::1;/);
    assert.match(renderKeepalived(parseConfig(text("a", 1000), "a.yaml"), "a"), /advert_int 1\n/);
  });

  it("wire each router's own IPv6 addresses and a switch without multicast snooping", () => {
    const a = renderHaRouterBatch(plan, "a");
    assert.match(a, /addr add fd00:1::11\/64 dev lan0\n/);
    assert.match(a, /addr add 2001:db8:2::2\/64 dev wan2\n/);
    assert.match(renderHaRouterBatch(plan, "b"), /addr add 2001:db8:1::3\/64 dev wan1\n/);
    assert.match(renderHaSwitchBatch(plan), /link add brlan type bridge mcast_snooping 0\n/);
  });
});

/**
 * The lab's IPv6 as data: addresses per uplink and generation, the batches
 * and rulesets that build it, per-family faults, the RA and DHCPv6 configs,
 * and mapping an address the echo host saw back to its uplink.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { labUplinkIpv6Config } from "../../src/lab/config.js";
import { addFault, describeFaults, parseFault, renderFaultChain } from "../../src/lab/faults.js";
import {
  addressKind6,
  dhclientArgv,
  renderKeaConfig,
  renderRadvdConfig,
  uplinkOfAddress6,
} from "../../src/lab/ipv6.js";
import {
  delegatedPrefix6,
  ispLinkLocal6,
  namespaceSysctls,
  planLab,
  renderIspBatch,
  renderIspRuleset,
  renderLanBatch,
  renderNetBatch,
  renderNetRoutesBatch,
  renderRouterBatch,
  uplinkNetwork6,
} from "../../src/lab/topology.js";

const plan = planLab({ prefix: "t6", uplinks: 3, p2p: [3] });
const [isp1, isp2, isp3] = plan.uplinks;

describe("lab IPv6 addresses", () => {
  it("gives each ethernet uplink an IPv6 plan and a point-to-point uplink none", () => {
    assert.deepEqual(isp1?.ipv6, {
      network: "2001:db8:1::/64",
      routerAddress: "2001:db8:1::2",
      routerLinkLocal: "fe80::ff:fe00:2",
      ispAddress: "2001:db8:1::1",
      gateway: "fe80::1",
      customerSpace: "2001:db8:1::/48",
      delegationPool: "2001:db8:1001::/48",
      delegatedPrefix: "2001:db8:1001::/56",
      coreAddress: "2001:db8:fe:1::1",
      netAddress: "2001:db8:fe:1::2",
    });
    assert.equal(isp3?.ipv6, undefined);
    assert.equal(
      planLab({ prefix: "t6", uplinks: 2, cgnat: [2] }).uplinks[1]?.ipv6?.network,
      "2001:db8:2::/64",
    );
  });

  it("numbers renumbered networks, delegated prefixes and ra-change routers by generation", () => {
    assert.equal(uplinkNetwork6(2, 0), "2001:db8:2::/64");
    assert.equal(uplinkNetwork6(2, 1), "2001:db8:2:1::/64");
    assert.equal(uplinkNetwork6(12, 26), "2001:db8:12:1a::/64");
    assert.equal(delegatedPrefix6(2, 0), "2001:db8:1002::/56");
    assert.equal(delegatedPrefix6(2, 1), "2001:db8:1002:100::/56");
    assert.equal(delegatedPrefix6(2, 255), "2001:db8:1002:ff00::/56");
    assert.equal(ispLinkLocal6(0), "fe80::1");
    assert.equal(ispLinkLocal6(17), "fe80::1:11");
  });

  it("maps an address the echo host saw to its uplink by uplink space or delegation pool", () => {
    const u = plan.uplinks;
    assert.equal(uplinkOfAddress6(u, "2001:db8:2::2"), 2);
    assert.equal(uplinkOfAddress6(u, "2001:db8:2:1::2"), 2, "after a renumbering");
    assert.equal(uplinkOfAddress6(u, "2001:0db8:0001:0000:0000:0000:0000:0002"), 1);
    assert.equal(uplinkOfAddress6(u, "2001:db8:1001:ff::5"), 1);
    assert.deepEqual(addressKind6(u, "2001:db8:1002::1"), { uplink: 2, space: "delegated" });
    assert.deepEqual(addressKind6(u, "2001:db8:1::2"), { uplink: 1, space: "uplink" });
    for (const other of [
      "fd00:1::100",
      "fe80::2",
      "2001:db8:ffff::10",
      "100.64.1.2",
      "2001:db8:3::2",
    ]) {
      assert.equal(uplinkOfAddress6(u, other), undefined, other);
    }
  });
});

describe("lab IPv6 topology", () => {
  it("turns IPv6 on with DAD off, forwarding where routed, accept_ra=2 on the router after forwarding", () => {
    const sysctls = namespaceSysctls(plan);
    const rtr = sysctls.get("t6-rtr") ?? [];
    assert.ok(!rtr.some((s) => s.includes("disable_ipv6=1")));
    assert.ok(rtr.includes("net.ipv6.conf.default.accept_dad=0"));
    const fwd = rtr.indexOf("net.ipv6.conf.all.forwarding=1");
    const ra = rtr.indexOf("net.ipv6.conf.default.accept_ra=2");
    assert.ok(fwd >= 0 && ra > fwd, rtr.join(" "));
    assert.ok((sysctls.get("t6-isp1") ?? []).includes("net.ipv6.conf.default.keep_addr_on_down=1"));
    assert.ok((sysctls.get("t6-lan") ?? []).includes("net.ipv6.conf.default.accept_ra=0"));
  });

  it("builds the router's uplinks with a fixed MAC and SLAAC token, the LAN with ULA addresses", () => {
    const router = renderRouterBatch(plan);
    assert.match(router, /link add wan1 address 02:00:00:00:00:02 type veth/);
    assert.match(router, /token set ::2 dev wan1\n/);
    assert.doesNotMatch(router, /token set ::2 dev wan3/, "point-to-point: no IPv6");
    assert.match(router, /addr add fd00:1::1\/64 dev lan0/);
    const lan = renderLanBatch();
    assert.match(lan, /addr add fd00:1::100\/64 dev eth0/);
    assert.match(lan, /route add default via fd00:1::1\n/);
  });

  it("gives ISPs their link-local, global and core addresses and routes the pool to the router", () => {
    const isp = renderIspBatch(isp1 ?? assert.fail());
    for (const line of [
      "link set cust addrgenmode none",
      "addr add fe80::1/64 dev cust",
      "addr add 2001:db8:1::1/64 dev cust",
      "addr add 2001:db8:fe:1::1/64 dev core",
      "route add default via 2001:db8:fe:1::2",
      "route replace 2001:db8:1001::/48 via fe80::ff:fe00:2 dev cust",
    ]) {
      assert.ok(isp.split("\n").includes(line), `${line} in:\n${isp}`);
    }
    assert.doesNotMatch(renderIspBatch(isp3 ?? assert.fail()), /2001:db8/);
  });

  it("puts the IPv6 test hosts in the internet and routes each ISP's spaces back to it", () => {
    const net = renderNetBatch(plan);
    for (const a of [
      "2001:db8:ffff::1",
      "2001:db8:ffff::2",
      "2001:db8:ffff::10",
      "2001:db8:ffff::53",
    ]) {
      assert.match(net, new RegExp(`addr add ${a}/128 dev lo`));
    }
    const routes = renderNetRoutesBatch(plan);
    assert.match(routes, /route add 2001:db8:2::\/48 via 2001:db8:fe:2::1/);
    assert.match(routes, /route add 2001:db8:1002::\/48 via 2001:db8:fe:2::1/);
    assert.doesNotMatch(routes, /2001:db8:3::/);
  });

  it("drops IPv6 from outside the customer space and pool at the ISP; a CGNAT ISP masquerades IPv4 only", () => {
    assert.match(
      renderIspRuleset(isp2 ?? assert.fail()),
      /iifname "cust" ip6 saddr != \{ 2001:db8:2::\/48, 2001:db8:1002::\/48 \} counter name "spoofed" drop/,
    );
    assert.match(
      renderIspRuleset(isp3 ?? assert.fail()),
      /iifname "cust" meta nfproto ipv6 counter name "spoofed" drop/,
    );
    const cgnat = planLab({ prefix: "t6", uplinks: 1, cgnat: [1] }).uplinks[0] ?? assert.fail();
    assert.match(renderIspRuleset(cgnat), /meta nfproto ipv4 oifname "core" masquerade/);
  });
});

describe("lab faults per family", () => {
  it("parses blackhole4, blackhole6 and the IPv6 events", () => {
    for (const kind of ["blackhole4", "blackhole6", "ra-change", "renumber"]) {
      assert.deepEqual(parseFault(kind), { kind });
    }
    assert.throws(() => parseFault("blackhole5"), /blackhole4, blackhole6/);
  });

  it("drops one family with meta nfproto, both with blackhole; events change no state", () => {
    const six = addFault({}, { kind: "blackhole6" });
    assert.deepEqual(six, { blackhole6: true });
    assert.match(
      renderFaultChain(six),
      /flush chain inet lab faults\n(?:.*dly.*\n)?add rule inet lab faults meta nfproto ipv6 counter drop\n$/,
    );
    assert.equal(renderFaultChain(six).match(/counter drop/g)?.length, 1);
    const both = addFault(addFault(six, { kind: "blackhole4" }), { kind: "loss", percent: 30 });
    assert.deepEqual(describeFaults(both), ["blackhole4", "blackhole6", "loss=30"]);
    assert.match(
      renderFaultChain(both),
      /meta nfproto ipv4 counter drop\n.*meta nfproto ipv6 counter drop\n.*numgen/s,
    );
    const all = addFault(both, { kind: "blackhole" });
    assert.doesNotMatch(renderFaultChain(all), /nfproto/, "blackhole covers both");
    assert.deepEqual(addFault(six, { kind: "renumber" }), six);
    assert.deepEqual(addFault(six, { kind: "ra-change" }), six);
  });
});

describe("lab IPv6 services", () => {
  it("announces the uplink network and deprecates earlier ones", () => {
    const conf = renderRadvdConfig("2001:db8:1:1::/64", ["2001:db8:1::/64"]);
    assert.match(conf, /^interface cust \{$/m);
    assert.match(conf, /prefix 2001:db8:1:1::\/64 \{[^}]*AdvPreferredLifetime 14400;/);
    assert.match(conf, /prefix 2001:db8:1::\/64 \{[^}]*AdvPreferredLifetime 0;/);
    assert.match(conf, /AdvDefaultLifetime 600;/);
  });

  it("delegates exactly one prefix from kea and keeps every file in the state directory", () => {
    const u = isp2 ?? assert.fail();
    const kea = JSON.parse(renderKeaConfig("/run/x", u, "2001:db8:1002:100::/56")) as {
      Dhcp6: {
        subnet6: { subnet: string; interface: string; "pd-pools": Record<string, unknown>[] }[];
        "lease-database": { name: string };
        "data-directory": string;
      };
    };
    const subnet = kea.Dhcp6.subnet6.at(0);
    assert.deepEqual(subnet?.["pd-pools"], [
      { prefix: "2001:db8:1002:100::", "prefix-len": 56, "delegated-len": 56 },
    ]);
    assert.equal(subnet.interface, "cust");
    assert.equal(kea.Dhcp6["lease-database"].name, "/run/x/kea-isp2.leases");
    assert.equal(kea.Dhcp6["data-directory"], "/run/x");
    const client = dhclientArgv("/run/x", u);
    assert.deepEqual(client.slice(0, 4), ["dhclient", "-6", "-P", "-d"]);
    assert.equal(client.at(-1), "wan2");
    for (const flag of ["-cf", "-lf", "-df", "-pf", "-sf"]) {
      assert.match(client[client.indexOf(flag) + 1] ?? "", /^\/run\/x\//, flag);
    }
  });

  it("says which IPv6 fields the lab config gets", () => {
    const u1 = isp1 ?? assert.fail();
    assert.deepEqual(labUplinkIpv6Config(u1, true, "/run/x"), {
      gateway6: "auto",
      prefix6: "auto",
      prefix6_file: "/run/x/dhcp6-wan1.prefix",
    });
    assert.deepEqual(labUplinkIpv6Config(u1, false, "/run/x"), { gateway6: "auto" });
    assert.deepEqual(labUplinkIpv6Config(isp3 ?? assert.fail(), true, "/run/x"), {
      gateway6: "none",
    });
  });
});

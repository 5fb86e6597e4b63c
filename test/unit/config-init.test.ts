import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  InitError,
  planInit,
  readLeaseInterfaces,
  renderInitConfig,
  type IpLink,
  type MachineFacts,
} from "../../src/config/init.js";
import { parseConfig } from "../../src/config/load.js";
import { PUBLIC_TARGETS, PUBLIC_TARGETS6, configWarnings } from "../../src/config/warnings.js";

function link(
  ifindex: number,
  ifname: string,
  addresses: string[],
  extra: Partial<IpLink> = {},
): IpLink {
  return {
    ifindex,
    ifname,
    link_type: "ether",
    flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
    addr_info: addresses.map((a) => {
      const [local = "", bits = "24", dynamic] = a.split(/[/ ]/);
      return {
        family: "inet",
        local,
        prefixlen: Number(bits),
        ...(dynamic === "dynamic" ? { dynamic: true } : {}),
      };
    }),
    ...extra,
  };
}

/** A router: static fibre, DHCP cable, PPPoE DSL, a bridged LAN, Docker, a veth, a VPN. */
const ROUTER: MachineFacts = {
  links: [
    link(1, "lo", ["127.0.0.1/8"], { link_type: "loopback", flags: ["LOOPBACK", "UP"] }),
    link(2, "eth1", ["192.0.2.2/24"]),
    link(3, "eth2", ["198.51.100.20/24 dynamic"]),
    link(4, "ppp0", ["203.0.113.9/32"], { link_type: "ppp", flags: ["POINTOPOINT", "UP"] }),
    link(5, "eth3", [], { master: "br-lan" }),
    link(6, "br-lan", ["192.168.1.1/24"]),
    link(7, "docker0", ["172.17.0.1/16"]),
    link(8, "veth1234", []),
    link(9, "wg0", ["10.8.0.1/24"], { link_type: "none" }),
  ],
  routes: [
    { dst: "default", gateway: "198.51.100.1", dev: "eth2", protocol: "dhcp", metric: 200 },
    { dst: "default", gateway: "192.0.2.1", dev: "eth1", protocol: "static", metric: 100 },
    { dst: "192.168.1.0/24", dev: "br-lan", protocol: "kernel" },
  ],
  leases: [],
};

describe("uplinkd init: planInit", () => {
  test("uplinks are the interfaces with a default route, a dynamic address or PPP, by metric", () => {
    const plan = planInit(ROUTER);
    assert.deepEqual(
      plan.uplinks.map((u) => [u.name, u.interface, u.gateway]),
      [
        ["eth1", "eth1", "192.0.2.1"],
        ["eth2", "eth2", "auto"],
        ["ppp0", "ppp0", "auto"],
      ],
    );
    assert.match(
      plan.uplinks[0]?.why ?? "",
      /default via 192\.0\.2\.1 \(proto static, metric 100\)/,
    );
    assert.match(plan.uplinks[1]?.why ?? "", /dynamic address 198\.51\.100\.20\/24/);
  });

  test("the LAN is the bridge with a private address; container bridges, veths and VPNs are left out", () => {
    const plan = planInit(ROUTER);
    assert.deepEqual(
      plan.lan.map((l) => l.interface),
      ["br-lan"],
    );
    assert.deepEqual(
      plan.skipped.map((s) => s.interface),
      ["docker0", "veth1234", "wg0"],
    );
  });

  test("a DHCP lease file makes an interface an uplink with gateway auto, even without a default route", () => {
    const facts: MachineFacts = {
      links: [link(2, "wan0", ["100.64.9.2/24"]), link(3, "lan0", ["192.168.0.1/24"])],
      routes: [],
      leases: ["wan0"],
    };
    assert.deepEqual(planInit(facts).uplinks, [
      { name: "wan0", interface: "wan0", gateway: "auto", why: "a DHCP lease" },
    ]);
  });

  test("--uplink and --lan choose instead of guessing", () => {
    const plan = planInit(ROUTER, { uplinks: ["eth2"], lan: ["eth3", "wg0"] });
    assert.deepEqual(
      plan.uplinks.map((u) => u.interface),
      ["eth2"],
    );
    assert.deepEqual(
      plan.lan.map((l) => l.interface),
      ["eth3", "wg0"],
    );
  });

  test("no uplink, no LAN, or an unknown interface: an InitError naming the interfaces seen", () => {
    const lanOnly: MachineFacts = {
      links: [link(2, "lan0", ["192.168.0.1/24"])],
      routes: [],
      leases: [],
    };
    assert.throws(
      () => planInit(lanOnly),
      (e) => e instanceof InitError && /found no uplink.*lan0/.test(e.message),
    );
    const wanOnly: MachineFacts = {
      links: [link(2, "wan0", ["192.0.2.2/24"])],
      routes: [{ dst: "default", gateway: "192.0.2.1", dev: "wan0" }],
      leases: [],
    };
    assert.throws(
      () => planInit(wanOnly),
      (e) => e instanceof InitError && /no LAN interface.*--lan/.test(e.message),
    );
    assert.throws(() => planInit(ROUTER, { lan: ["eth9"] }), /no interface eth9/);
  });
});

describe("uplinkd init: renderInitConfig", () => {
  test("a valid, commented config with public anycast targets and no lab-only address", () => {
    const text = renderInitConfig(planInit(ROUTER));
    const config = parseConfig(text, "init.yaml");
    assert.deepEqual(config.lan, ["br-lan"]);
    assert.deepEqual(
      config.uplinks.map((u) => [u.name, u.gateway]),
      [
        ["eth1", "192.0.2.1"],
        ["eth2", "auto"],
        ["ppp0", "auto"],
      ],
    );
    assert.deepEqual(config.health.targets, [...PUBLIC_TARGETS]);
    assert.equal(config.private_targets, undefined);
    assert.deepEqual(configWarnings(config), []);
    assert.match(text, /^# uplinkd config written by `uplinkd init`/);
    assert.match(text, /# {3}docker0: a container or VM bridge/);
    assert.match(text, / {2}# eth1: default via 192\.0\.2\.1/);
  });

  test("an uplink with a global IPv6 address: IPv6 targets too; an uplink without one gets gateway6: none", () => {
    const withIpv6: MachineFacts = {
      ...ROUTER,
      links: ROUTER.links.map((l) =>
        l.ifname === "eth2"
          ? {
              ...l,
              addr_info: [
                ...(l.addr_info ?? []),
                { family: "inet6", local: "2001:db8:2::20", prefixlen: 64, dynamic: true },
                { family: "inet6", local: "fe80::2", prefixlen: 64 },
              ],
            }
          : l.ifname === "eth1"
            ? {
                ...l,
                addr_info: [
                  ...(l.addr_info ?? []),
                  { family: "inet6", local: "fe80::1", prefixlen: 64 },
                ],
              }
            : l,
      ),
    };
    const text = renderInitConfig(planInit(withIpv6));
    const config = parseConfig(text, "init.yaml");
    assert.deepEqual(config.health.targets, [...PUBLIC_TARGETS, ...PUBLIC_TARGETS6]);
    assert.deepEqual(
      config.uplinks.map((u) => [u.name, u.gateway6]),
      [
        ["eth1", "none"],
        ["eth2", "auto"],
        ["ppp0", "none"],
      ],
    );
    assert.match(text, /# eth2: .*IPv6 2001:db8:2::20/);
    assert.deepEqual(configWarnings(config), []);
  });

  test("one uplink: the config says failover needs another", () => {
    const text = renderInitConfig(planInit(ROUTER, { uplinks: ["eth1"] }));
    assert.match(text, /Only one uplink was found/);
  });
});

describe("uplinkd init: readLeaseInterfaces", () => {
  test("dhclient, systemd-networkd, NetworkManager and dhcpcd lease files name their interfaces", async (t) => {
    const root = await mkdtemp(join(tmpdir(), "uplinkd-init-"));
    t.after(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, "var/lib/dhcp"), { recursive: true });
    await writeFile(
      join(root, "var/lib/dhcp/dhclient.leases"),
      'lease {\n  interface "eth1";\n}\n',
    );
    await mkdir(join(root, "run/systemd/netif/leases"), { recursive: true });
    await writeFile(join(root, "run/systemd/netif/leases/3"), "ADDRESS=198.51.100.20\n");
    await mkdir(join(root, "var/lib/NetworkManager"), { recursive: true });
    await writeFile(join(root, "var/lib/NetworkManager/internal-4f1e-9a2b-wwan-0.lease"), "");
    await mkdir(join(root, "var/lib/dhcpcd"), { recursive: true });
    await writeFile(join(root, "var/lib/dhcpcd/eth4.lease"), "");
    await writeFile(join(root, "var/lib/dhcpcd/gone0.lease"), "");
    const indexes = new Map([
      [2, "eth1"],
      [3, "eth2"],
      [4, "wwan-0"],
      [5, "eth4"],
    ]);
    assert.deepEqual(await readLeaseInterfaces(indexes, root), ["eth1", "eth2", "eth4", "wwan-0"]);
  });

  test("no lease directories: none", async (t) => {
    const root = await mkdtemp(join(tmpdir(), "uplinkd-init-"));
    t.after(() => rm(root, { recursive: true, force: true }));
    assert.deepEqual(await readLeaseInterfaces(new Map([[2, "eth1"]]), root), []);
  });
});

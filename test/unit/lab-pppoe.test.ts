/**
 * The lab's PPPoE uplinks as data: the plan (interfaces, no IPv6), the
 * router batch (a bare veth, no address), the addresses and peers of each
 * session generation, and the argv of pppoe-server and the router's pppd.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseFault } from "../../src/lab/faults.js";
import {
  pppoeAddress,
  pppoePeer,
  pppoeServerArgv,
  renderIspPppOptions,
  routerPppdArgv,
} from "../../src/lab/pppoe.js";
import { planLab, renderIspBatch, renderRouterBatch } from "../../src/lab/topology.js";

const plan = planLab({ prefix: "t", uplinks: 2, pppoe: [2] });
const u = plan.uplinks[1];

test("a PPPoE uplink is ppp2 over wan2, IPv4 only", () => {
  assert.ok(u !== undefined);
  assert.equal(u.kind, "pppoe");
  assert.equal(u.routerInterface, "ppp2");
  assert.equal(u.linkInterface, "wan2");
  assert.equal(u.ipv6, undefined);
  assert.equal(plan.uplinks[0]?.routerInterface, "wan1");
});

test("the router batch makes a bare veth wan2 (no address) and the ISP brings custeth up", () => {
  assert.ok(u !== undefined);
  const batch = renderRouterBatch(plan);
  assert.match(
    batch,
    /^link add wan2 address 02:00:00:00:00:02 type veth peer name custeth netns t-isp2$/m,
  );
  assert.match(batch, /^link set wan2 up$/m);
  assert.doesNotMatch(batch, /dev wan2/);
  const isp = renderIspBatch(u);
  assert.match(isp, /^link set custeth up$/m);
  assert.doesNotMatch(isp, /dev cust\b/);
});

test("each session generation has a new address and a new peer in the customer subnet", () => {
  assert.deepEqual(
    [0, 1, 2, 3].map((g) => [pppoeAddress(2, g), pppoePeer(2, g)]),
    [
      ["100.64.2.2", "100.64.2.1"],
      ["100.64.2.3", "100.64.2.254"],
      ["100.64.2.4", "100.64.2.253"],
      ["100.64.2.5", "100.64.2.252"],
    ],
  );
});

test("pppoe-server hands out the generation's address with its peer; pppd dials on wan2 as ppp2", () => {
  assert.ok(u !== undefined);
  const server = pppoeServerArgv(u, "/run/x/pppoe-isp2.options", 1);
  assert.deepEqual(server.slice(server.indexOf("-L"), server.indexOf("-L") + 4), [
    "-L",
    "100.64.2.254",
    "-R",
    "100.64.2.3",
  ]);
  assert.ok(server.includes("custeth"));
  const pppd = routerPppdArgv(u, "/usr/lib/pppd/2.4.9/rp-pppoe.so");
  assert.deepEqual(pppd.slice(0, 6), [
    "pppd",
    "plugin",
    "/usr/lib/pppd/2.4.9/rp-pppoe.so",
    "wan2",
    "ifname",
    "ppp2",
  ]);
  for (const option of ["nodefaultroute", "noipdefault", "persist", "nodetach"]) {
    assert.ok(pppd.includes(option), option);
  }
  assert.match(renderIspPppOptions(), /^ifname cust$/m);
});

test("pppoe-drop is an event fault", () => {
  assert.deepEqual(parseFault("pppoe-drop"), { kind: "pppoe-drop" });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { configSchema } from "../../src/config/schema.js";
import type { LinkState } from "../../src/kernel/types.js";
import { ProblemTracker, kernelProblems, problemReason } from "../../src/links/problems.js";
import { observeUplinks } from "../../src/links/observe.js";

function link(name: string, addresses: string[], pointToPoint = false): LinkState {
  return {
    name,
    index: 1,
    up: true,
    carrier: true,
    pointToPoint,
    addresses: addresses.map((a) => {
      const [address = "", bits = "24"] = a.split("/");
      return { address, prefixlen: Number(bits) };
    }),
  };
}

const LINKS = [
  link("lo", ["127.0.0.1/8"]),
  link("lan0", ["192.168.1.1/24"]),
  link("wan1", ["100.80.2.2/24"]),
  link("wan2", ["100.64.2.2/24", "100.64.20.2/24"]),
  link("ppp0", ["203.0.113.9/32"], true),
  link("wan4", []),
];

function configOf(uplinks: Record<string, unknown>[], lan = ["lan0"]) {
  return configSchema.parse({ private_targets: true, lan, uplinks });
}

describe("a config against the kernel's interfaces", () => {
  it("a gateway outside every subnet of its interface is named with the key and the subnets", () => {
    const config = configOf([
      { name: "isp1", interface: "wan1", gateway: "100.80.9.1" },
      { name: "isp2", interface: "wan2", gateway: "100.64.20.1" },
    ]);
    const problems = kernelProblems(config, LINKS);
    assert.equal(problems.length, 1);
    const [problem] = problems;
    assert.ok(problem !== undefined);
    assert.deepEqual(problem.path, ["uplinks", 0, "gateway"]);
    assert.equal(problem.uplink, "isp1");
    assert.match(
      problemReason(problem),
      /^uplinks\.0\.gateway: gateway 100\.80\.9\.1 is not on-link for wan1 \(its subnets: 100\.80\.2\.0\/24\).*inside 100\.80\.2\.0\/24, or "auto"/,
    );
  });

  it("a missing uplink or LAN interface is named with the interfaces there are", () => {
    const config = configOf([{ name: "isp9", interface: "wan9" }], ["lan0", "lan9"]);
    const problems = kernelProblems(config, LINKS);
    assert.deepEqual(
      problems.map((p) => p.path.join(".")),
      ["lan.1", "uplinks.0.interface"],
    );
    assert.match(
      problems[1]?.message ?? "",
      /no interface wan9 .*interfaces: lan0, wan1, wan2, ppp0, wan4\)/,
    );
  });

  it("an absent configured address is a problem; point-to-point links, auto, none and address-less interfaces are not", () => {
    const config = configOf([
      { name: "a", interface: "wan2", address: "100.64.2.77" },
      { name: "b", interface: "ppp0", gateway: "198.51.100.1" },
      { name: "c", interface: "wan1", gateway: "auto" },
      { name: "d", interface: "wan1", gateway: "none" },
      { name: "e", interface: "wan4", gateway: "100.64.4.1" },
    ]);
    const problems = kernelProblems(config, LINKS);
    assert.deepEqual(
      problems.map((p) => [p.uplink, p.path.join(".")]),
      [["a", "uplinks.0.address"]],
    );
    assert.match(problems[0]?.message ?? "", /it has 100\.64\.2\.2\/24, 100\.64\.20\.2\/24/);
  });

  it("observation: an off-link gateway is no gateway, and the problem is on the link", () => {
    const config = configOf([{ name: "isp1", interface: "wan1", gateway: "100.80.9.1" }]);
    const observed = observeUplinks(config, LINKS, [], 73).get("isp1");
    assert.equal(observed?.gateway, undefined);
    assert.match(observed?.problem ?? "", /^uplinks\.0\.gateway: /);
  });
});

describe("ProblemTracker", () => {
  it("reports a problem when it appears, changes and clears, with its start time", () => {
    const tracker = new ProblemTracker();
    assert.deepEqual(tracker.update(new Map([["isp1", {}]]), 1000), []);
    assert.deepEqual(tracker.update(new Map([["isp1", { problem: "p1" }]]), 2000), [
      { uplink: "isp1", problem: "p1", previous: undefined },
    ]);
    assert.deepEqual(tracker.update(new Map([["isp1", { problem: "p1" }]]), 3000), []);
    assert.deepEqual(tracker.get("isp1"), { reason: "p1", since: 2000 });
    assert.deepEqual(tracker.update(new Map([["isp1", { problem: "p2" }]]), 4000), [
      { uplink: "isp1", problem: "p2", previous: "p1" },
    ]);
    assert.deepEqual(tracker.update(new Map([["isp1", {}]]), 5000), [
      { uplink: "isp1", problem: undefined, previous: "p2" },
    ]);
    assert.equal(tracker.get("isp1"), undefined);
    tracker.update(new Map([["isp1", { problem: "p3" }]]), 6000);
    assert.deepEqual(
      tracker.update(new Map(), 7000),
      [],
      "an uplink removed by a reload is forgotten",
    );
    assert.equal(tracker.get("isp1"), undefined);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";
import { staleUplinks, type UplinkSummary } from "../../src/controller/cleanup.js";
import { Controller, type ControllerInputs } from "../../src/controller/controller.js";
import { buildViews } from "../../src/dataplane/views.js";
import { KernelCommandError } from "../../src/errors.js";
import { ManualClock } from "../fakes/clock.js";
import type { UplinkState } from "../../src/uplink-health.js";
import { FakeKernel } from "../fakes/kernel.js";
import { numberedLink } from "../fakes/links.js";

const YAML = `
lan: [lan0]
uplinks:
  - { name: isp1, interface: wan1, gateway: 100.64.1.1 }
  - { name: isp2, interface: wan2, gateway: 100.64.2.1 }
  - { name: isp3, interface: wan3, gateway: 100.64.3.1, tier: 2 }
`;

const silent = pino({ level: "silent" });

/** A controller on a fake kernel, with uplink states the test sets. */
function setup(yaml = YAML) {
  const kernel = new FakeKernel();
  const clock = new ManualClock();
  const world = {
    config: parseConfig(yaml, "test.yaml"),
    states: new Map<string, UplinkState>(),
    /** Uplinks in maintenance: their view says disabled, their health does not. */
    maintenance: new Set<string>(),
    links: new Map([
      ["isp1", numberedLink(1)],
      ["isp2", numberedLink(2)],
      ["isp3", numberedLink(3)],
    ]),
  };
  const inputsFor = (config: Config): ControllerInputs => {
    const state = (name: string) => world.states.get(name) ?? "up";
    const views = buildViews(config, world.links, (n) =>
      world.maintenance.has(n) ? "disabled" : state(n),
    );
    const health = buildViews(config, world.links, state);
    return {
      config,
      views,
      surroundings: { lanAddress: "192.0.2.1", localNetworks: [] },
      failed: new Set(health.filter((v) => v.usability === "bad").map((v) => v.name)),
    };
  };
  const controller = new Controller({
    kernel,
    log: silent,
    clock,
    inputs: () => inputsFor(world.config),
    verifyIntervalMs: 10_000,
    retryDelayMs: (attempt) => 100 * 2 ** (attempt - 1),
  });
  return { kernel, clock, world, controller, inputsFor };
}

/** Let queued promise callbacks run (no time passes). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

const writes = (calls: readonly string[]) => calls.filter((c) => !c.startsWith("read-"));

describe("controller", () => {
  it("start reads the kernel, loads the whole table, adds routes and rules, and verifies", async () => {
    const { kernel, controller } = setup();
    await controller.start();
    const calls = kernel.since(0);
    assert.equal(calls.indexOf("nft table uplinkd") > calls.indexOf("read-nft"), true);
    assert.ok(calls.some((c) => c.startsWith("ip route replace default via 100.64.1.1")));
    assert.ok(calls.some((c) => c.startsWith("ip rule add priority 1000 lookup 254")));
    // The verify after the writes read everything again.
    assert.equal(calls.filter((c) => c === "read-nft").length, 2);
    assert.equal(controller.lastApply?.ok, true);
    assert.deepEqual(kernel.tables.get("uplinkd")?.maps.get("balance_default"), [
      "0-4999 : goto uplink_1",
      "5000-9999 : goto uplink_2",
    ]);
    await controller.stop(parseConfig(YAML, "t"), false);
  });

  it("a verify with nothing to change only reads", async () => {
    const { kernel, controller } = setup();
    await controller.start();
    const from = kernel.calls.length;
    await controller.request("verify");
    assert.deepEqual(writes(kernel.since(from)), []);
    assert.ok(kernel.since(from).includes("read-nft"));
    await controller.stop(parseConfig(YAML, "t"), false);
  });

  it("a transition writes the changed maps first, without reading, then clears the uplink's connections", async () => {
    const { kernel, world, controller } = setup();
    await controller.start();
    kernel.conntrack = [0x100, 0x100, 0x200, 0x300];
    const from = kernel.calls.length;
    world.states.set("isp1", "down");
    await controller.request("transition");
    await controller.cleaner.idle();
    const calls = kernel.since(from);
    assert.equal(calls[0], "nft maps balance_default,active_default");
    assert.ok(calls.includes("conntrack -D 0x100/0xff00"));
    assert.deepEqual(kernel.conntrack, [0x200, 0x300]);
    assert.deepEqual(kernel.tables.get("uplinkd")?.maps.get("balance_default"), [
      "0-9999 : goto uplink_2",
    ]);
    // The main default route moved to isp2 (the router policy's first choice).
    assert.ok(calls.some((c) => c.startsWith("ip route replace default via 100.64.2.1")));
    await controller.idle();
    await controller.stop(parseConfig(YAML, "t"), false);
  });

  it("a link change (full path) clears the connections of an uplink that lost its carrier", async () => {
    const { kernel, world, controller } = setup();
    await controller.start();
    kernel.conntrack = [0x200, 0x100];
    const isp2 = world.links.get("isp2");
    assert.ok(isp2);
    world.links.set("isp2", { ...isp2, carrier: false });
    await controller.request("links");
    await controller.cleaner.idle();
    assert.deepEqual(kernel.conntrack, [0x100]);
    await controller.stop(parseConfig(YAML, "t"), false);
  });

  it("maintenance without drain keeps the uplink's connections; drain deletes them", async () => {
    const { kernel, world, controller } = setup();
    await controller.start();
    kernel.conntrack = [0x100, 0x200];
    world.maintenance.add("isp1");
    await controller.request("maintenance");
    await controller.cleaner.idle();
    assert.deepEqual(kernel.conntrack, [0x100, 0x200]);
    assert.deepEqual(kernel.tables.get("uplinkd")?.maps.get("balance_default"), [
      "0-9999 : goto uplink_2",
    ]);
    const drained = await controller.drain({ name: "isp1", mark: 0x100, mask: 0xff00 });
    assert.equal(drained, 1);
    assert.deepEqual(kernel.conntrack, [0x200]);
    await controller.stop(parseConfig(YAML, "t"), false);
  });

  it("a dead uplink that leaves every policy when another comes back has its connections cleared", async () => {
    const { kernel, world, controller } = setup();
    await controller.start();
    // Every uplink down: the default policy's last resort (all) balances over all of them.
    for (const name of ["isp1", "isp2", "isp3"]) world.states.set(name, "down");
    await controller.request("transition");
    await controller.cleaner.idle();
    kernel.conntrack = [0x100, 0x200, 0x300];
    world.states.set("isp2", "up");
    await controller.request("transition");
    await controller.cleaner.idle();
    assert.deepEqual(kernel.conntrack, [0x200]);
    await controller.stop(parseConfig(YAML, "t"), false);
  });

  it("urgent work preempts a verify whose kernel read hangs", async () => {
    const { kernel, world, controller } = setup();
    await controller.start();
    kernel.hold("read-nft");
    const verify = controller.request("verify");
    await settle();
    assert.equal(kernel.held.length, 1);
    world.states.set("isp1", "down");
    await controller.request("transition");
    assert.deepEqual(kernel.tables.get("uplinkd")?.maps.get("balance_default"), [
      "0-9999 : goto uplink_2",
    ]);
    kernel.releaseAll();
    await verify;
    await controller.idle();
    await controller.stop(parseConfig(YAML, "t"), false);
  });

  it("while a change is being written, the policies still show the last committed state", async () => {
    const { kernel, world, controller } = setup();
    await controller.start();
    const before = controller.choices;
    assert.deepEqual(Object.keys(before), ["default"]);
    kernel.hold("nft");
    world.states.set("isp1", "down");
    const transition = controller.request("transition");
    await settle();
    assert.equal(kernel.held.length, 1);
    assert.deepEqual(controller.choices, before);
    kernel.releaseAll();
    await transition;
    assert.notDeepEqual(controller.choices, before);
    await controller.idle();
    await controller.stop(parseConfig(YAML, "t"), false);
  });

  it("a hung conntrack deletion does not hold back the next transition", async () => {
    const { kernel, world, controller } = setup();
    await controller.start();
    kernel.hold("conntrack-delete");
    world.states.set("isp1", "down");
    await controller.request("transition");
    await settle();
    assert.equal(kernel.held.length, 1);
    world.states.set("isp1", "up");
    world.states.set("isp2", "down");
    await controller.request("transition");
    assert.deepEqual(kernel.tables.get("uplinkd")?.maps.get("balance_default"), [
      "0-9999 : goto uplink_1",
    ]);
    kernel.releaseAll();
    await controller.cleaner.idle();
    await controller.idle();
    await controller.stop(parseConfig(YAML, "t"), false);
  });

  for (const op of ["nft", "ip"] as const) {
    it(`a failed ${op} command fails the request, keeps the old maps, and is retried after a backoff`, async () => {
      const { kernel, world, clock, controller } = setup();
      await controller.start();
      kernel.failNext(op);
      world.states.set("isp1", "down");
      await assert.rejects(controller.request("transition"), KernelCommandError);
      const failed = controller.lastApply;
      assert.equal(failed?.ok, false);
      assert.match(failed.error ?? "", new RegExp(`fake ${op} failure`));
      if (op === "nft") {
        assert.deepEqual(kernel.tables.get("uplinkd")?.maps.get("balance_default"), [
          "0-4999 : goto uplink_1",
          "5000-9999 : goto uplink_2",
        ]);
      }
      const from = kernel.calls.length;
      clock.advance(99);
      await settle();
      assert.deepEqual(kernel.since(from), [], "no retry before the backoff");
      clock.advance(1);
      await settle();
      await controller.idle();
      assert.ok(kernel.since(from).includes("read-nft"), "the retry is a full reconcile");
      assert.deepEqual(controller.lastApply, { at: controller.lastApply?.at, ok: true });
      assert.deepEqual(kernel.tables.get("uplinkd")?.maps.get("balance_default"), [
        "0-9999 : goto uplink_2",
      ]);
      await controller.stop(parseConfig(YAML, "t"), false);
    });
  }

  it("a failed kernel read fails a verify and is retried", async () => {
    const { kernel, clock, controller } = setup();
    await controller.start();
    kernel.failNext("read-rules");
    await assert.rejects(controller.request("verify"), /fake read-rules failure/);
    clock.advance(100);
    await settle();
    await controller.idle();
    assert.equal(controller.lastApply?.ok, true);
    await controller.stop(parseConfig(YAML, "t"), false);
  });

  it("a failed conntrack deletion is retried after a backoff", async () => {
    const { kernel, world, clock, controller } = setup();
    await controller.start();
    kernel.conntrack = [0x100];
    kernel.failNext("conntrack-delete");
    world.states.set("isp1", "down");
    await controller.request("transition");
    await settle();
    assert.deepEqual(kernel.conntrack, [0x100]);
    clock.advance(100);
    await controller.cleaner.idle();
    assert.deepEqual(kernel.conntrack, []);
    await controller.stop(parseConfig(YAML, "t"), false);
  });

  it("a reload the kernel refuses puts the previous state back and rethrows", async () => {
    const { kernel, world, controller, inputsFor } = setup();
    await controller.start();
    const before = structuredClone({ routes: kernel.routes, rules: kernel.rules });
    // isp1's weight (a map) and isp2's route options (a route): the maps go in, the route fails.
    const next = parseConfig(
      YAML.replace("100.64.1.1 }", "100.64.1.1, weight: 5 }").replace(
        "100.64.2.1 }",
        "100.64.2.1, route_options: { initcwnd: 10 } }",
      ),
      "t",
    );
    kernel.failNext("ip");
    await assert.rejects(
      controller.exclusive(() => controller.applyCandidate(inputsFor(next))),
      /fake ip failure/,
    );
    assert.deepEqual(kernel.tables.get("uplinkd")?.maps.get("balance_default"), [
      "0-4999 : goto uplink_1",
      "5000-9999 : goto uplink_2",
    ]);
    assert.deepEqual(
      { routes: kernel.routes, rules: kernel.rules },
      before,
      "routes and rules as before",
    );
    assert.equal(world.config.uplinks[0]?.weight, 1);
    await controller.stop(world.config, false);
  });

  it("a reload that renames the table and changes the protocol removes the old objects", async () => {
    const { kernel, world, controller, inputsFor } = setup();
    await controller.start();
    const next = parseConfig(`${YAML}dataplane: { table: multiwan, route_protocol: 74 }\n`, "t");
    await controller.exclusive(async () => {
      await controller.applyCandidate(inputsFor(next));
      world.config = next;
    });
    assert.deepEqual([...kernel.tables.keys()], ["multiwan"]);
    assert.ok(kernel.routes.length > 0);
    assert.ok(kernel.routes.every((r) => r.protocol === 74));
    assert.ok(kernel.rules.every((r) => r.protocol === 74));
    await controller.stop(world.config, true);
    assert.deepEqual([...kernel.tables.keys()], []);
    assert.deepEqual(kernel.routes, []);
    assert.deepEqual(kernel.rules, []);
  });

  it("a reload that changes the mark mask, table base and rule priority leaves nothing of the old ones", async () => {
    const { kernel, world, controller, inputsFor } = setup();
    await controller.start();
    kernel.conntrack = [0x100, 0x200];
    const next = parseConfig(
      `${YAML}dataplane: { mark_mask: 0xf0000, table_base: 200, rule_priority: 2000 }\n`,
      "t",
    );
    await controller.exclusive(async () => {
      await controller.applyCandidate(inputsFor(next));
      world.config = next;
    });
    await controller.cleaner.idle();
    assert.ok(
      kernel.rules.every((r) => r.priority >= 2000),
      JSON.stringify(kernel.rules),
    );
    assert.ok(kernel.routes.every((r) => r.table === 254 || r.table > 200));
    assert.ok(kernel.rules.some((r) => r.fwmark === 0x10000 && r.fwmask === 0xf0000));
    // Entries with the old marks lead nowhere now: cleared.
    assert.deepEqual(kernel.conntrack, []);
    await controller.stop(world.config, false);
  });
});

describe("staleUplinks", () => {
  const up = (name: string, mark: number, over: Partial<UplinkSummary> = {}): UplinkSummary => ({
    name,
    mark,
    mask: 0xff00,
    failed: false,
    active: true,
    ...over,
  });

  it("nothing is stale before the first apply", () => {
    assert.deepEqual(staleUplinks(undefined, [up("isp1", 0x100, { failed: true })]), []);
  });

  it("an uplink that failed is stale; one that stays failed is not again", () => {
    const before = [up("isp1", 0x100), up("isp2", 0x200)];
    const after = [up("isp1", 0x100, { failed: true, active: false }), up("isp2", 0x200)];
    assert.deepEqual(
      staleUplinks(before, after).map((s) => [s.name, s.why]),
      [["isp1", "failed"]],
    );
    assert.deepEqual(staleUplinks(after, after), []);
  });

  it("a failed uplink that leaves every policy is stale", () => {
    const before = [up("isp1", 0x100, { failed: true, active: true })];
    const after = [up("isp1", 0x100, { failed: true, active: false })];
    assert.deepEqual(
      staleUplinks(before, after).map((s) => s.why),
      ["left every policy while failed"],
    );
  });

  it("maintenance alone (inactive, not failed) is not stale", () => {
    const before = [up("isp1", 0x100)];
    const after = [up("isp1", 0x100, { active: false })];
    assert.deepEqual(staleUplinks(before, after), []);
  });

  it("with IPv6 judged apart, a failed IPv6 clears only IPv6 entries and a failed IPv4 only IPv4 ones", () => {
    const both = { failed6: false, active6: true };
    const before = [up("isp1", 0x100, both), up("isp2", 0x200, both)];
    const v6down = [up("isp1", 0x100, { failed6: true, active6: false }), up("isp2", 0x200, both)];
    assert.deepEqual(
      staleUplinks(before, v6down).map((s) => [s.name, s.why, s.family]),
      [["isp1", "IPv6 failed", 6]],
    );
    assert.deepEqual(staleUplinks(v6down, v6down), []);
    const v4down = [
      up("isp1", 0x100, { ...both, failed: true, active: false }),
      up("isp2", 0x200, both),
    ];
    assert.deepEqual(
      staleUplinks(before, v4down).map((s) => [s.name, s.why, s.family]),
      [["isp1", "failed", 4]],
    );
    const carrier = [
      up("isp1", 0x100, { failed: true, active: false, failed6: true, active6: false }),
      up("isp2", 0x200, both),
    ];
    assert.deepEqual(
      staleUplinks(before, carrier).map((s) => [s.why, s.family]),
      [
        ["failed", 4],
        ["IPv6 failed", 6],
      ],
    );
  });

  it("without failed6, a failed uplink clears both families (no family given)", () => {
    const before = [up("isp1", 0x100)];
    const after = [up("isp1", 0x100, { failed: true })];
    assert.equal(staleUplinks(before, after)[0]?.family, undefined);
  });

  it("a removed uplink or a changed mark is stale by its old mark", () => {
    const before = [up("isp1", 0x100), up("isp2", 0x200)];
    const after = [up("isp2", 0x300)];
    assert.deepEqual(
      staleUplinks(before, after).map((s) => [s.name, s.mark, s.why]),
      [
        ["isp1", 0x100, "removed"],
        ["isp2", 0x200, "mark changed"],
      ],
    );
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";
import {
  staleUplinks,
  type StaleUplink,
  type UplinkSummary,
} from "../../src/controller/cleanup.js";
import { hasAlternative } from "../../src/controller/controller.js";
import { FailbackWatcher, usableTier, type FailbackEvent } from "../../src/controller/failback.js";
import type { UplinkView } from "../../src/dataplane/render.js";
import { renderNft } from "../../src/dataplane/nft.js";
import type { UplinkState } from "../../src/uplink-health.js";
import { ManualClock } from "../fakes/clock.js";
import { numberedLink, policyWorld } from "../fakes/links.js";

const silent = pino({ level: "silent" });

const YAML = `
lan: [lan0]
uplinks:
  - { name: fibre, interface: wan1, gateway: 100.64.1.1 }
  - { name: lte, interface: wan2, gateway: 100.64.2.1, tier: 2 }
policies:
  default: { failback: move, failback_delay: 30s }
  voip:
    members: [{ uplink: fibre }, { uplink: lte, tier: 2 }]
    failback: keep
rules:
  - { dst_port: 5060, proto: udp, policy: voip }
`;

const links = new Map([
  ["fibre", numberedLink(1)],
  ["lte", numberedLink(2)],
]);

function world(config: Config, states: Record<string, UplinkState>) {
  return policyWorld(config, links, states);
}

/** A watcher whose clean-ups are recorded; each deletes `deleted` entries. */
function watcher(deleted = 3) {
  const clock = new ManualClock();
  const cleared: StaleUplink[] = [];
  const events: FailbackEvent[] = [];
  const w = new FailbackWatcher({
    clock,
    log: silent,
    clear: (stale) => {
      cleared.push(stale);
      return Promise.resolve(deleted);
    },
    onFailback: (e) => events.push(e),
  });
  return { clock, cleared, events, w };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe("failback config", () => {
  it("redefining default with only failback keeps its members and the top-level last resort", () => {
    const config = parseConfig(YAML, "t.yaml");
    assert.equal(config.policies.default?.failback, "move");
    assert.equal(config.policies.default.failback_delay, 30_000);
    assert.equal(config.policies.default.members, undefined);
    const all = world(config, { fibre: "down", lte: "down" });
    // Top-level last_resort (all): both uplinks, not "main".
    assert.deepEqual(
      all.choices.default?.kind === "balance" && all.choices.default.members.map((m) => m.uplink),
      ["fibre", "lte"],
    );
    const one = world(config, { fibre: "down" });
    assert.deepEqual(
      one.choices.default?.kind === "balance" && one.choices.default.members.map((m) => m.uplink),
      ["lte"],
    );
  });

  it("a move policy marks its connections with its bits; a keep policy does not", () => {
    const config = parseConfig(YAML, "t.yaml");
    const { views } = world(config, {});
    const nft = renderNft(config, views, {});
    const policyDefault = /chain policy_default \{\n([^}]*)\}/.exec(nft)?.[1] ?? "";
    const policyVoip = /chain policy_voip \{\n([^}]*)\}/.exec(nft)?.[1] ?? "";
    assert.match(policyDefault, /ct mark set ct mark & 0xff00ffff \| 0x10000/);
    assert.doesNotMatch(policyVoip, /ct mark set/);
  });

  it("a policy mark mask that overlaps the uplink marks is refused", () => {
    assert.throws(
      () => parseConfig(`${YAML}dataplane: { policy_mark_mask: "0xff000" }\n`, "t.yaml"),
      /policy_mark_mask: 0xff000 shares bits with dataplane.mark_mask/,
    );
  });
});

describe("FailbackWatcher", () => {
  const config = parseConfig(YAML, "t.yaml");

  it("clears the policy's entries on worse tiers once the better tier stayed usable for the delay", async () => {
    const { clock, cleared, events, w } = watcher();
    const down = world(config, { fibre: "down" });
    w.update(config, down.views, down.choices, down.choices6);
    const back = world(config, {});
    w.update(config, back.views, back.choices, back.choices6);
    clock.advance(29_999);
    await settle();
    assert.equal(cleared.length, 0, "nothing before the delay");
    clock.advance(1);
    await settle();
    // IPv4 only: the uplinks have no IPv6 here (no usable tier).
    assert.deepEqual(
      cleared.map((c) => [c.name, c.mark.toString(16), c.mask.toString(16), c.family]),
      [["lte", "10200", "ffff00", 4]],
    );
    assert.equal(events.length, 1);
    assert.deepEqual(
      {
        policy: events[0]?.policy,
        tier: events[0]?.tier,
        cleared: events[0]?.cleared,
        total: events[0]?.total,
      },
      { policy: "default", tier: 1, cleared: { lte: 3 }, total: 3 },
    );
  });

  it("is called off when the better tier fails again within the delay", async () => {
    const { clock, cleared, w } = watcher();
    const down = world(config, { fibre: "down" });
    const back = world(config, {});
    w.update(config, down.views, down.choices, down.choices6);
    w.update(config, back.views, back.choices, back.choices6);
    clock.advance(10_000);
    w.update(config, down.views, down.choices, down.choices6);
    clock.advance(60_000);
    await settle();
    assert.equal(cleared.length, 0);
    // Back again: the delay counts from now.
    w.update(config, back.views, back.choices, back.choices6);
    clock.advance(29_000);
    await settle();
    assert.equal(cleared.length, 0);
    clock.advance(1_000);
    await settle();
    assert.equal(cleared.length, 1);
  });

  it("does nothing at the first look, nor for keep policies, nor when no tier got better", async () => {
    const { clock, cleared, w } = watcher();
    const up = world(config, {});
    w.update(config, up.views, up.choices, up.choices6);
    w.update(config, up.views, up.choices, up.choices6);
    const lteDown = world(config, { lte: "down" });
    w.update(config, lteDown.views, lteDown.choices, lteDown.choices6);
    clock.advance(120_000);
    await settle();
    assert.deepEqual(cleared, []);
  });

  it("a last resort over failed members has no usable tier", () => {
    const all = world(config, { fibre: "down", lte: "down" });
    assert.equal(usableTier(all.choices.default, all.views, 4), undefined);
    const lte = world(config, { fibre: "down" });
    assert.equal(usableTier(lte.choices.default, lte.views, 4), 2);
  });
});

describe("no clearing without an alternative", () => {
  const summary = (
    name: string,
    mark: number,
    over: Partial<UplinkSummary> = {},
  ): UplinkSummary => ({
    name,
    mark,
    mask: 0xff00,
    failed: false,
    active: true,
    alternative: true,
    ...over,
  });

  it("every uplink failed: nothing is cleared; cleared once another uplink is usable again", () => {
    const before = [summary("isp1", 0x100), summary("isp2", 0x200)];
    const allDown = [
      summary("isp1", 0x100, { failed: true, alternative: false }),
      summary("isp2", 0x200, { failed: true, alternative: false }),
    ];
    assert.deepEqual(staleUplinks(before, allDown), []);
    const isp1Back = [
      summary("isp1", 0x100, { alternative: false }),
      summary("isp2", 0x200, { failed: true, active: false }),
    ];
    assert.deepEqual(
      staleUplinks(allDown, isp1Back).map((s) => [s.name, s.why]),
      [["isp2", "failed; an alternative is usable now"]],
    );
  });

  it("one uplink failed with another usable: cleared at once", () => {
    const before = [summary("isp1", 0x100), summary("isp2", 0x200)];
    const after = [summary("isp1", 0x100, { failed: true, active: false }), summary("isp2", 0x200)];
    assert.deepEqual(
      staleUplinks(before, after).map((s) => [s.name, s.why]),
      [["isp1", "failed"]],
    );
  });

  it("an alternative is another unfailed uplink a policy of the uplink gives new connections", () => {
    const config = parseConfig(YAML, "t.yaml");
    const views: UplinkView[] = world(config, {}).views;
    const lteOnly = world(config, { fibre: "down" });
    assert.equal(
      hasAlternative({ config, views }, lteOnly.choices, "fibre", new Set(["fibre"])),
      true,
    );
    const none = world(config, { fibre: "down", lte: "down" });
    const failed = new Set(["fibre", "lte"]);
    assert.equal(hasAlternative({ config, views }, none.choices, "fibre", failed), false);
    assert.equal(hasAlternative({ config, views }, none.choices, "lte", failed), false);
  });
});

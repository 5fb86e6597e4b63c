import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BALANCE_MODULUS,
  balanceSlices,
  choose,
  type PolicyMember,
} from "../../src/policy/select.js";

const members: PolicyMember[] = [
  { uplink: "isp1", weight: 3, tier: 1 },
  { uplink: "isp2", weight: 2, tier: 1 },
  { uplink: "isp3", weight: 1, tier: 1 },
  { uplink: "lte", weight: 5, tier: 2 },
];
const all = () => true;
const good = () => "good" as const;

describe("policy choice", () => {
  it("balances over the usable members of tier 1 only", () => {
    const choice = choose(members, good, all, "all");
    assert.deepEqual(choice.kind === "balance" ? choice.members.map((m) => m.uplink) : [], [
      "isp1",
      "isp2",
      "isp3",
    ]);
  });

  it("leaves out an unusable tier-1 member and keeps the others", () => {
    const choice = choose(members, (u) => (u !== "isp2" ? "good" : "bad"), all, "all");
    assert.deepEqual(choice.kind === "balance" ? choice.members.map((m) => m.uplink) : [], [
      "isp1",
      "isp3",
    ]);
  });

  it("uses tier 2 only when every tier-1 member is unusable", () => {
    const choice = choose(members, (u) => (u === "lte" ? "good" : "bad"), all, "all");
    assert.deepEqual(choice.kind === "balance" ? choice.members.map((m) => m.uplink) : [], ["lte"]);
  });

  it("falls back to every routable member with last resort 'all'", () => {
    const choice = choose(
      members,
      () => "bad",
      (u) => u !== "isp3",
      "all",
    );
    assert.deepEqual(choice.kind === "balance" ? choice.members.map((m) => m.uplink) : [], [
      "isp1",
      "isp2",
      "lte",
    ]);
  });

  it("answers main, unreachable or blackhole as configured when nothing is usable", () => {
    assert.deepEqual(
      choose(members, () => "bad", all, "unreachable"),
      { kind: "unreachable" },
    );
    assert.deepEqual(
      choose(members, () => "bad", all, "blackhole"),
      { kind: "blackhole" },
    );
    assert.deepEqual(
      choose(members, () => "bad", all, "main"),
      { kind: "main" },
    );
  });
});

describe("balance slices", () => {
  it("splits the random range 3:2:1 into contiguous slices", () => {
    assert.deepEqual(balanceSlices(members.slice(0, 3)), [
      { from: 0, to: 4999, uplink: "isp1" },
      { from: 5000, to: 8332, uplink: "isp2" },
      { from: 8333, to: 9999, uplink: "isp3" },
    ]);
  });

  it("gives each member a share within 1/modulus of its weight's share", () => {
    const weights = [7, 13, 1, 1000, 3];
    const slices = balanceSlices(
      weights.map((weight, i) => ({ uplink: `u${i}`, weight, tier: 1 })),
    );
    const total = weights.reduce((a, b) => a + b, 0);
    let next = 0;
    for (const [i, slice] of slices.entries()) {
      assert.equal(slice.from, next, "slices are contiguous");
      next = slice.to + 1;
      const share = (slice.to - slice.from + 1) / BALANCE_MODULUS;
      assert.ok(Math.abs(share - (weights[i] ?? 0) / total) <= 1 / BALANCE_MODULUS);
    }
    assert.equal(next, BALANCE_MODULUS, "the whole range is covered");
  });

  it("gives no slices for no members", () => {
    assert.deepEqual(balanceSlices([]), []);
  });
});

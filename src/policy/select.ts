/**
 * Which uplinks a policy may give new connections now: tiers, weights, and
 * the last resort when none is usable. Pure functions.
 */

/** One member of a policy: an uplink with its weight and tier in that policy. */
export interface PolicyMember {
  uplink: string;
  /** Relative share of new connections, >= 1. */
  weight: number;
  /** 1 = first choice; tier n+1 is used only when every member of tiers <= n is unusable. */
  tier: number;
}

/**
 * What a policy does when none of its members is usable:
 * - `all`: keep balancing over every member whose kernel route exists (a
 *   health check that is wrong must not cut the site off);
 * - `main`: leave new connections to the main routing table (not balanced);
 * - `unreachable`: new connections are rejected (ICMP net unreachable);
 * - `blackhole`: new connections are dropped silently.
 */
export type LastResort = "all" | "main" | "unreachable" | "blackhole";

/** How usable an uplink is for new connections now. */
export type Usability = "good" | "degraded" | "bad";

/**
 * Whether degraded members get new connections: `avoid` only when no member
 * of the policy is good; `keep` like good ones.
 */
export type DegradedMode = "avoid" | "keep";

/** The outcome of a policy decision. */
export type PolicyChoice =
  | { kind: "balance"; members: PolicyMember[] }
  | { kind: "main" }
  | { kind: "unreachable" }
  | { kind: "blackhole" };

function lowestTier(
  members: readonly PolicyMember[],
  pick: (m: PolicyMember) => boolean,
): PolicyMember[] {
  const tiers = [...new Set(members.map((m) => m.tier))].sort((a, b) => a - b);
  for (const tier of tiers) {
    const active = members.filter((m) => m.tier === tier && pick(m));
    if (active.length > 0) return active;
  }
  return [];
}

/**
 * Members that get new connections now: the good members of the lowest tier
 * that has any (with `keep`, degraded ones count as good); with `avoid`,
 * when no member is good, the degraded members of the lowest tier that has
 * any; else the last resort.
 *
 * @param members the policy's members (any order).
 * @param usability how usable each uplink is now.
 * @param routable whether an uplink has a kernel route at all (for `all`).
 */
export function choose(
  members: readonly PolicyMember[],
  usability: (uplink: string) => Usability,
  routable: (uplink: string) => boolean,
  lastResort: LastResort,
  degraded: DegradedMode = "avoid",
): PolicyChoice {
  const good = lowestTier(members, (m) => {
    const u = usability(m.uplink);
    return u === "good" || (degraded === "keep" && u === "degraded");
  });
  if (good.length > 0) return { kind: "balance", members: good };
  const fallback = lowestTier(members, (m) => usability(m.uplink) === "degraded");
  if (fallback.length > 0) return { kind: "balance", members: fallback };
  if (lastResort === "all") {
    return { kind: "balance", members: members.filter((m) => routable(m.uplink)) };
  }
  return { kind: lastResort };
}

/** One slice of the balancing range: random values from..to (inclusive) go to `uplink`. */
export interface BalanceSlice {
  from: number;
  to: number;
  uplink: string;
}

/** Size of the random range new connections are spread over (`numgen random mod N`). */
export const BALANCE_MODULUS = 10_000;

/**
 * Split 0..modulus-1 into contiguous slices proportional to the members'
 * weights (the error of each share is below 1/modulus). Members keep their
 * order; a member whose slice would be empty gets none.
 *
 * @param members members with weights >= 1; an empty list gives no slices.
 * @param modulus the range size, default {@link BALANCE_MODULUS}.
 */
export function balanceSlices(
  members: readonly PolicyMember[],
  modulus = BALANCE_MODULUS,
): BalanceSlice[] {
  const total = members.reduce((sum, m) => sum + m.weight, 0);
  const slices: BalanceSlice[] = [];
  let cumulative = 0;
  let start = 0;
  for (const member of members) {
    cumulative += member.weight;
    const end = Math.round((modulus * cumulative) / total);
    if (end > start) slices.push({ from: start, to: end - 1, uplink: member.uplink });
    start = end;
  }
  return slices;
}

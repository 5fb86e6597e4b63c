/**
 * The health score uplinkd writes to keepalived's track file
 * (`ha.track_file`). keepalived adds it to the VRRP priority (track_file
 * weight 1), so the router whose uplinks are better wins the election:
 *
 * - no usable uplink: {@link HA_FAULT_SCORE}, below -253, which puts every
 *   VRRP instance tracking the file into FAULT (keepalived.conf(5), "Track
 *   files"): a router without any uplink never stays master, whatever the
 *   peer's state, and takes over again as soon as one uplink works;
 * - otherwise {@link HA_SCORE_BASE} plus {@link HA_SCORE_STEP} per usable
 *   uplink of the best configured tier (at most {@link HA_SCORE_MAX_UPLINKS}
 *   counted).
 *
 * Steps are larger than any difference of `ha.priority` (1..20), so the
 * configured priority only decides between routers whose uplinks are
 * equally good. Highest result: 20 + 30 + 20 * 10 = 250, within keepalived's
 * priority range 1..254.
 */
import { HA_SCORE_STEP } from "../config/ha.js";
import type { Usability } from "../policy/select.js";

export { HA_SCORE_STEP } from "../config/ha.js";

/** Score of a router with a usable uplink, none of them in the best tier. */
export const HA_SCORE_BASE: number = 30;

/** Best-tier uplinks counted at most (so the sum stays within 254). */
export const HA_SCORE_MAX_UPLINKS = 10;

/** Score when no uplink is usable: below -253, so keepalived puts the instances into FAULT. */
export const HA_FAULT_SCORE: number = -254;

/** What the score looks at of one uplink. */
export interface ScoredUplink {
  /** Configured tier (1 is best). */
  tier: number;
  /** `good` and `degraded` count as usable, `bad` does not. */
  usability: Usability;
}

/**
 * The health score of this router.
 * @param uplinks every configured uplink (the best tier is the lowest tier
 *   configured, usable or not).
 * @returns {@link HA_FAULT_SCORE} when none is usable, else
 *   `HA_SCORE_BASE + HA_SCORE_STEP * min(usable best-tier uplinks, 10)`.
 */
export function healthScore(uplinks: readonly ScoredUplink[]): number {
  const usable = uplinks.filter((u) => u.usability !== "bad");
  if (usable.length === 0) return HA_FAULT_SCORE;
  const bestTier = Math.min(...uplinks.map((u) => u.tier));
  const best = usable.filter((u) => u.tier === bestTier).length;
  return HA_SCORE_BASE + HA_SCORE_STEP * Math.min(best, HA_SCORE_MAX_UPLINKS);
}

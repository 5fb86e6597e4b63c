/**
 * Failback (`policies.NAME.failback: move`): once a better tier of a policy
 * is usable again and has stayed usable for `failback_delay`, the
 * connections that this policy placed on members of worse tiers are
 * cleared (conntrack), so their next packet is balanced afresh and takes
 * the better tier. Only that policy's connections go: each `move` policy
 * records itself in the connection's ct mark (`dataplane.policy_mark_mask`,
 * see {@link policyMarks}), and the deletion matches the uplink's mark and
 * the policy's mark together (`conntrack -D -m MARK/MASK`).
 *
 * Each family is followed apart (IPv4 and IPv6 health differ).
 */
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../clock.js";
import type { Config } from "../config/schema.js";
import { policyMembers, policyNames } from "../dataplane/nft.js";
import { usabilityIn, type UplinkView } from "../dataplane/views.js";
import { policyMarks } from "../config/slots.js";
import type { Family } from "../kernel/types.js";
import type { PolicyChoice } from "../policy/select.js";
import type { StaleUplink } from "./cleanup.js";

/** One failback: what it cleared. */
export interface FailbackEvent {
  /** ISO time. */
  time: string;
  policy: string;
  family: Family;
  /** The tier that took the connections back. */
  tier: number;
  /** Conntrack entries deleted per worse-tier uplink. */
  cleared: Record<string, number>;
  /** Their sum. */
  total: number;
}

/** Options of a {@link FailbackWatcher}. */
export interface FailbackOptions {
  clock: Clock;
  log: Logger;
  /** Deletes the entries of one mark/mask (the controller's clean-up lane); resolves with the count. */
  clear: (stale: StaleUplink) => Promise<number>;
  /** Called after each failback (after its deletions ended). Must not throw. */
  onFailback: (event: FailbackEvent) => void;
}

/** What the watcher saw of one policy in one family at the last commit. */
interface Seen {
  /** The best tier with a usable member in the choice; undefined when none. */
  tier: number | undefined;
  /** A failback waiting for its delay: the tier that became usable, and its timer. */
  pending?: { tier: number; timer: TimerHandle };
}

/**
 * The best (lowest) tier among the members a policy gives new connections
 * that is usable in `family` (good or degraded, not bad): a last resort
 * that balances over failed members has no usable tier.
 * @returns undefined when no chosen member is usable (or the policy does not balance).
 */
export function usableTier(
  choice: PolicyChoice | undefined,
  views: readonly UplinkView[],
  family: Family,
): number | undefined {
  if (choice?.kind !== "balance") return undefined;
  let best: number | undefined;
  for (const member of choice.members) {
    const view = views.find((v) => v.name === member.uplink);
    if (member.weight <= 0 || view === undefined || usabilityIn(view, family) === "bad") continue;
    if (best === undefined || member.tier < best) best = member.tier;
  }
  return best;
}

/**
 * Follows each `failback: move` policy's usable tier from commit to commit
 * and clears its worse-tier connections after the delay. The constructor
 * starts nothing; {@link update} after each commit.
 */
export class FailbackWatcher {
  readonly #options: FailbackOptions;
  /** `policy/family` -> what was seen. */
  readonly #seen = new Map<string, Seen>();
  #last:
    | {
        config: Config;
        views: readonly UplinkView[];
        choices: Record<Family, Record<string, PolicyChoice>>;
      }
    | undefined;
  #stopped = false;

  constructor(options: FailbackOptions) {
    this.#options = options;
  }

  /**
   * The kernel now holds the state of `config` and `views` with these
   * choices: start, keep or cancel the wait of each `move` policy.
   */
  update(
    config: Config,
    views: readonly UplinkView[],
    choices: Record<string, PolicyChoice>,
    choices6: Record<string, PolicyChoice>,
  ): void {
    if (this.#stopped) return;
    this.#last = { config, views, choices: { 4: choices, 6: choices6 } };
    const moving = new Set(
      policyNames(config).filter((p) => config.policies[p]?.failback === "move"),
    );
    for (const [key, seen] of this.#seen) {
      if (!moving.has(key.slice(0, key.lastIndexOf("/")))) {
        this.#cancel(seen);
        this.#seen.delete(key);
      }
    }
    for (const policy of moving) {
      const delayMs = config.policies[policy]?.failback_delay ?? 0;
      for (const family of [4, 6] as const) {
        const key = `${policy}/${family}`;
        const tier = usableTier((family === 6 ? choices6 : choices)[policy], views, family);
        const seen = this.#seen.get(key);
        if (seen === undefined) {
          // The first look (start, or a policy new to `move`): nothing moved back yet.
          this.#seen.set(key, { tier });
          continue;
        }
        if (seen.pending !== undefined && (tier === undefined || tier > seen.pending.tier)) {
          // The better tier is gone again before its delay ended.
          this.#options.log.info(
            { policy, family },
            `failback of policy ${policy} (IPv${family}) called off: tier ${seen.pending.tier} is not usable any more`,
          );
          this.#cancel(seen);
        }
        const improved =
          tier !== undefined &&
          (seen.tier === undefined || tier < seen.tier) &&
          seen.pending === undefined;
        seen.tier = tier;
        if (!improved) continue;
        if (delayMs > 0) {
          this.#options.log.info(
            { policy, family, tier, delayMs },
            `policy ${policy} (IPv${family}): tier ${tier} usable again; its connections on worse tiers move back in ${delayMs} ms`,
          );
        }
        seen.pending = {
          tier,
          timer: this.#options.clock.setTimeout(() => {
            seen.pending = undefined;
            void this.#failback(policy, family, tier);
          }, delayMs),
        };
      }
    }
  }

  #cancel(seen: Seen): void {
    if (seen.pending !== undefined) this.#options.clock.clearTimeout(seen.pending.timer);
    seen.pending = undefined;
  }

  /** The delay ended: clear the policy's entries on members worse than the usable tier now. */
  async #failback(policy: string, family: Family, waited: number): Promise<void> {
    const last = this.#last;
    if (last === undefined || this.#stopped) return;
    const { config, views } = last;
    const tier = usableTier(last.choices[family][policy], views, family);
    if (tier === undefined || tier > waited) return;
    const policyMark = policyMarks(config, policyNames(config)).get(policy);
    if (policyMark === undefined) return;
    const worse = policyMembers(config, views, policy).filter((m) => m.tier > tier);
    const cleared: Record<string, number> = {};
    for (const member of worse) {
      const view = views.find((v) => v.name === member.uplink);
      if (view === undefined) continue;
      try {
        cleared[member.uplink] = await this.#options.clear({
          name: member.uplink,
          mark: (view.mark | policyMark) >>> 0,
          mask: (view.mask | config.dataplane.policy_mark_mask) >>> 0,
          why: `failback of policy ${policy} to tier ${tier}`,
          family,
        });
      } catch {
        // The clean-up lane logged it; the others still go.
        cleared[member.uplink] = 0;
      }
    }
    const total = Object.values(cleared).reduce((a, b) => a + b, 0);
    const event: FailbackEvent = {
      time: new Date(this.#options.clock.wall()).toISOString(),
      policy,
      family,
      tier,
      cleared,
      total,
    };
    this.#options.log.info(
      { event: "failback", policy, family, tier, cleared, total },
      `failback of policy ${policy} (IPv${family}) to tier ${tier}: cleared ${total} connections on ${Object.keys(cleared).join(", ") || "no worse tier"}`,
    );
    this.#options.onFailback(event);
  }

  /** No more failbacks; waits are cancelled. */
  stop(): void {
    this.#stopped = true;
    for (const seen of this.#seen.values()) this.#cancel(seen);
  }
}

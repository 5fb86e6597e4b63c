/**
 * Rules with a `schedule`: the kernel switches them itself (nft `meta day`
 * and `meta hour` in uplinkd's table, see policy/schedule.ts), so no timer
 * has to fire for new connections to follow the rule in force. The
 * {@link ScheduleWatcher} fires only for what the kernel cannot do:
 * - when the UTC offset of the schedules' time zone changes (daylight
 *   saving time), it asks for the table to be rendered again with the new
 *   offset (until then, windows are off by the change: by the timer's
 *   lateness, milliseconds);
 * - at the window edges of a rule with `on_change: clear`, it clears the
 *   rule's established connections (`conntrack -D` by the rule's match),
 *   so their next packet follows the rules in force.
 * It also says which schedule rules are in force now (status, plan).
 */
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../clock.js";
import type { Config } from "../config/schema.js";
import { uplinkSlots } from "../config/slots.js";
import type { RuleConfig } from "../config/steering.js";
import type { ConntrackFilter, Family, Kernel, Neighbour } from "../kernel/types.js";
import { familyOf } from "../net/ipv6.js";
import { inWindows, nextEdge, nextOffsetChange, zoneOffsetMinutes } from "../policy/schedule.js";

/** A schedule rule and whether it applies now, for status and plan. */
export interface ScheduleRuleStatus {
  /** Position in `rules`, 0-based. */
  index: number;
  /** The rule's name; null without one. */
  name: string | null;
  /** Its target (a policy, main, unreachable, blackhole). */
  policy: string;
  /** Inside one of its windows now: the rule applies to new connections. */
  inForce: boolean;
  /** ISO time of its next window edge (at the offset in force now). */
  until: string;
  /** `keep` or `clear` (see `rules[].on_change`). */
  onChange: "keep" | "clear";
}

/**
 * Which schedule rules of `config` are in force at `atMs`.
 * @param atMs epoch ms.
 */
export function scheduleStatus(config: Config, atMs: number): ScheduleRuleStatus[] {
  const offset = zoneOffsetMinutes(config.time_zone, atMs);
  return config.rules.flatMap((rule, index) =>
    rule.schedule === undefined
      ? []
      : [
          {
            index,
            name: rule.name ?? null,
            policy: rule.policy,
            inForce: inWindows(rule.schedule, atMs, offset),
            until: new Date(nextEdge(rule.schedule, atMs, offset)).toISOString(),
            onChange: rule.on_change,
          },
        ],
  );
}

/** The rule's address prefixes in `key`, sets expanded. */
function prefixesOf(config: Config, items: readonly string[] | undefined): string[] | undefined {
  if (items === undefined) return undefined;
  return [
    ...new Set(items.flatMap((i) => (i.startsWith("@") ? (config.sets[i.slice(1)] ?? []) : [i]))),
  ];
}

/**
 * The conntrack filters that select the established connections of `rule`
 * (`on_change: clear`): its sources (`src`, or the addresses `src_mac`
 * holds now in the neighbour table of a LAN interface), destinations,
 * protocols and ports, for each uplink's mark (connections uplinkd placed
 * on an uplink: not those to the router itself or left to the main table).
 * Sources and destinations pair within one family.
 */
export function clearFilters(
  config: Config,
  rule: RuleConfig,
  neighbours: readonly Neighbour[],
): ConntrackFilter[] {
  const mac = rule.src_mac;
  const sources =
    mac === undefined
      ? prefixesOf(config, rule.src)
      : neighbours
          .filter(
            (n) => n.lladdr !== undefined && mac.includes(n.lladdr) && config.lan.includes(n.dev),
          )
          .map((n) => n.address);
  const dsts = prefixesOf(config, rule.dst);
  // A MAC that holds no address now has no connections to clear.
  if (sources !== undefined && sources.length === 0) return [];
  const pairs: { family: Family; src?: string; dst?: string }[] = [];
  for (const family of [4, 6] as const) {
    const own = (list: string[] | undefined) =>
      list === undefined ? [undefined] : list.filter((p) => familyOf(p) === family);
    for (const src of own(sources)) {
      for (const dst of own(dsts)) {
        pairs.push({
          family,
          ...(src === undefined ? {} : { src }),
          ...(dst === undefined ? {} : { dst }),
        });
      }
    }
  }
  const protos: (string | number | undefined)[] = rule.proto ?? [undefined];
  const ports = (list: readonly (number | string)[] | undefined): (number | undefined)[] =>
    list === undefined ? [undefined] : list.map(Number);
  const filters: ConntrackFilter[] = [];
  for (const slot of uplinkSlots(config)) {
    for (const pair of pairs) {
      for (const proto of protos) {
        for (const sport of ports(rule.src_port)) {
          for (const dport of ports(rule.dst_port)) {
            filters.push({
              ...pair,
              ...(proto === undefined ? {} : { proto }),
              ...(sport === undefined ? {} : { sport }),
              ...(dport === undefined ? {} : { dport }),
              mark: slot.mark,
              mask: slot.mask,
            });
          }
        }
      }
    }
  }
  return filters;
}

/** Options of a {@link ScheduleWatcher}. */
export interface ScheduleWatcherOptions {
  clock: Clock;
  log: Logger;
  config: () => Config;
  kernel: Pick<Kernel, "conntrackDeleteMatching" | "readNeighbours">;
  /** The time zone's UTC offset changed: render the table again. */
  onOffsetChange: () => void;
  /** Longest wait between two looks, ms (default 60 s): bounds the effect of a jump of the wall clock. */
  maxWaitMs?: number;
  /** Most `conntrack -D` runs for one rule at one edge (default 256); the rest is logged and skipped. */
  maxDeletions?: number;
}

/**
 * Follows the schedules in time (see the module comment): one timer, set
 * for the next edge of an `on_change: clear` rule, the next change of the
 * time zone's offset, or `maxWaitMs`, whichever comes first.
 */
export class ScheduleWatcher {
  readonly #options: ScheduleWatcherOptions;
  #timer: TimerHandle | undefined;
  #offset: number | undefined;
  /** Rule key (name, else `#index`) -> in force at the last look (on_change: clear rules only). */
  #inForce = new Map<string, boolean>();
  #clearing: Promise<void> = Promise.resolve();
  #stopped = true;

  constructor(options: ScheduleWatcherOptions) {
    this.#options = options;
  }

  /** The offset (minutes east of UTC) the table was last rendered with, as this watcher knows it. */
  get offset(): number | undefined {
    return this.#offset;
  }

  /**
   * Starts, or after a reload restarts, following the config's schedules.
   * A reload that changes whether an `on_change: clear` rule is in force
   * (its windows moved past now) counts as an edge of that rule: rules are
   * known across reloads by name, else by position.
   */
  start(): void {
    this.#stopped = false;
    this.#offset = undefined;
    this.#look();
  }

  /** Stops the timer; a clean-up under way runs to its end. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Resolves when the clean-ups started so far have ended. */
  idle(): Promise<void> {
    return this.#clearing;
  }

  #look(): void {
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#stopped) return;
    const config = this.#options.config();
    const scheduled = config.rules.some((r) => r.schedule !== undefined);
    if (!scheduled) return;
    const now = this.#options.clock.wall();
    const offset = zoneOffsetMinutes(config.time_zone, now);
    if (this.#offset !== undefined && offset !== this.#offset) {
      this.#options.log.info(
        { from: this.#offset, to: offset, timeZone: config.time_zone ?? "local" },
        `the schedules' time zone moved from UTC${formatOffset(this.#offset)} to UTC${formatOffset(offset)}: rendering the rules again`,
      );
      this.#options.onOffsetChange();
    }
    this.#offset = offset;
    const maxWait = this.#options.maxWaitMs ?? 60_000;
    let next = now + maxWait;
    const seen = new Map<string, boolean>();
    config.rules.forEach((rule, index) => {
      if (rule.schedule === undefined || rule.on_change !== "clear") return;
      const key = rule.name ?? `#${index}`;
      const inForce = inWindows(rule.schedule, now, offset);
      const before = this.#inForce.get(key);
      seen.set(key, inForce);
      if (before !== undefined && before !== inForce) this.#clear(config, rule, index, inForce);
      next = Math.min(next, nextEdge(rule.schedule, now, offset));
    });
    this.#inForce = seen;
    const change = nextOffsetChange(config.time_zone, now, next - now);
    if (change !== undefined) next = Math.min(next, change);
    // A little after the edge, so that the look there sees the new side.
    this.#timer = this.#options.clock.setTimeout(
      () => {
        this.#look();
      },
      next - now + 20,
    );
  }

  #clear(config: Config, rule: RuleConfig, index: number, inForce: boolean): void {
    const label = rule.name === undefined ? `rule ${index}` : `rule "${rule.name}"`;
    const work = async () => {
      const { kernel, log } = this.#options;
      const neighbours = rule.src_mac === undefined ? [] : await kernel.readNeighbours();
      const filters = clearFilters(config, rule, neighbours);
      const max = this.#options.maxDeletions ?? 256;
      let deleted = 0;
      for (const filter of filters.slice(0, max))
        deleted += await kernel.conntrackDeleteMatching(filter);
      if (filters.length > max) {
        log.warn(
          { rule: index, filters: filters.length },
          `${label}: ${filters.length} conntrack selections, only the first ${max} cleared`,
        );
      }
      log.info(
        { rule: index, deleted, inForce },
        `${label} ${inForce ? "came into force" : "went out of force"}: cleared ${deleted} of its established connections`,
      );
    };
    this.#clearing = this.#clearing.then(work).catch((error: unknown) => {
      this.#options.log.error(
        { err: error, rule: index },
        `${label}: clearing its connections failed: ${String(error)}`,
      );
    });
  }
}

/** `+01:00`, `-04:00`. */
function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

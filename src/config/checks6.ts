/**
 * Cross-field checks of a config's IPv6 parts: `gateway6`, `prefix6`,
 * IPv6 health targets, and rules whose addresses cannot match one packet.
 * Each problem names the path of the value to blame.
 */
import type { ConfigProblem } from "./source.js";
import { uplinkHealth, type Config } from "./schema.js";
import type { ConfigPath } from "./source.js";
import {
  familyOf,
  formatPrefix6,
  hasHostBits6,
  isMulticast6,
  parseAddress6,
  parsePrefix6,
} from "../net/ipv6.js";
import { prefixesOverlap } from "./steering.js";

/** Longest `prefix6` accepted: NPTv6 keeps each LAN host's 64-bit interface identifier. */
export const MAX_PREFIX6_LENGTH = 64;

/** Every IPv6 problem of a config that passed the schema; empty when there is none. */
export function checkIpv6(config: Config): ConfigProblem[] {
  return [...checkUplinks6(config), ...checkTargets6(config), ...checkRuleFamilies(config)];
}

/**
 * What is wrong with a static `prefix6` text, or undefined. Exported for
 * the links part, which reads the same field.
 */
export function prefix6Problem(text: string): string | undefined {
  const parsed = parsePrefix6(text);
  if (familyOf(text) !== 6 || parsed === undefined) {
    return `"${text}" is not an IPv6 prefix; write the network and its length, e.g. 2001:db8:1000::/56`;
  }
  if (hasHostBits6(text)) {
    return `"${text}" has host bits set; the prefix is ${formatPrefix6(parsed)}`;
  }
  if (parsed[1] > MAX_PREFIX6_LENGTH) {
    return `/${parsed[1]} is longer than /${MAX_PREFIX6_LENGTH}: prefix translation (NPTv6) needs a /64 or a shorter prefix, so each LAN host keeps its interface identifier`;
  }
  if (parsed[1] === 0) return "::/0 is every address, not a prefix the ISP routes to this router";
  return undefined;
}

function checkUplinks6(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const prefixes: { prefix: string; uplink: number }[] = [];
  config.uplinks.forEach((uplink, i) => {
    const gateway6 = uplink.gateway6;
    if (gateway6 !== "auto" && gateway6 !== "none") {
      const value = parseAddress6(gateway6);
      let why: string | undefined;
      if (value === 0n) why = "the unspecified address :: is not a router";
      else if (value === 1n) why = "::1 is this router's own loopback address";
      else if (isMulticast6(gateway6)) why = `${gateway6} is a multicast address, not a router`;
      if (why !== undefined) {
        problems.push({
          path: ["uplinks", i, "gateway6"],
          message: `${why}; give the ISP router's address (a link-local fe80:: address is fine) or "auto"`,
        });
      }
    }
    const prefix6 = uplink.prefix6;
    if (prefix6 !== undefined && gateway6 === "none") {
      problems.push({
        path: ["uplinks", i, "prefix6"],
        message: `uplink "${uplink.name}" has gateway6: none (no IPv6), so its prefix6 would never be used; remove one of them`,
      });
    }
    if (uplink.prefix6_file !== undefined && prefix6 !== "auto") {
      problems.push({
        path: ["uplinks", i, "prefix6_file"],
        message: `prefix6_file is read only with prefix6: auto (uplink "${uplink.name}" has ${prefix6 === undefined ? "no prefix6" : `prefix6: ${prefix6}`})`,
      });
    }
    if (prefix6 !== undefined && prefix6 !== "auto") {
      const problem = prefix6Problem(prefix6);
      if (problem !== undefined) {
        problems.push({ path: ["uplinks", i, "prefix6"], message: problem });
        return;
      }
      const clash = prefixes.find((p) => prefixesOverlap(p.prefix, prefix6));
      if (clash !== undefined) {
        problems.push({
          path: ["uplinks", i, "prefix6"],
          message: `${prefix6} overlaps ${clash.prefix} of uplink "${config.uplinks[clash.uplink]?.name ?? ""}": each ISP routes its own prefix`,
        });
      }
      prefixes.push({ prefix: prefix6, uplink: i });
    }
  });
  return problems;
}

/**
 * IPv6 targets need IPv6 on the uplink, and each family's targets must be
 * at least `reliability` (each family is judged by its own targets).
 */
function checkTargets6(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  config.uplinks.forEach((uplink, i) => {
    const own = uplink.health?.targets;
    if (own !== undefined && uplink.gateway6 === "none") {
      own.forEach((target, j) => {
        if (familyOf(target) !== 6) return;
        problems.push({
          path: ["uplinks", i, "health", "targets", j],
          message: `${target} is an IPv6 target, but uplink "${uplink.name}" has gateway6: none (no IPv6); remove the target or set gateway6`,
        });
      });
    }
  });
  const blame = (
    path: ConfigPath,
    targets: readonly string[],
    reliability: number,
    who: string,
  ) => {
    for (const family of [4, 6] as const) {
      const count = targets.filter((t) => familyOf(t) === family).length;
      if (count === 0 || count >= reliability) continue;
      problems.push({
        path,
        message: `${who} lists ${count} IPv${family} target${count === 1 ? "" : "s"}, fewer than the ${reliability} that must answer (reliability): IPv${family} is judged by its IPv${family} targets alone; add IPv${family} targets or lower reliability`,
      });
    }
  };
  const top = config.health;
  if (top.reliability <= top.targets.length) {
    blame(["health", "targets"], top.targets, top.reliability, "health.targets");
  }
  config.uplinks.forEach((uplink, i) => {
    if (uplink.health?.targets === undefined && uplink.health?.reliability === undefined) return;
    const effective = uplinkHealth(config, uplink);
    if (effective.reliability > effective.targets.length) return;
    const path: ConfigPath =
      uplink.health.targets !== undefined
        ? ["uplinks", i, "health", "targets"]
        : ["uplinks", i, "health", "reliability"];
    blame(path, effective.targets, effective.reliability, `uplink "${uplink.name}"`);
  });
  return problems;
}

/** The families a rule's address list can match (its own prefixes, or its sets' prefixes). */
export function familiesOf(config: Config, items: readonly string[]): Set<4 | 6> {
  const families = new Set<4 | 6>();
  for (const item of items) {
    const prefixes = item.startsWith("@") ? (config.sets[item.slice(1)] ?? []) : [item];
    for (const p of prefixes) {
      const family = familyOf(p);
      if (family !== undefined) families.add(family);
    }
  }
  return families;
}

/** A rule whose `src` holds only one family and `dst` only the other never matches. */
function checkRuleFamilies(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  config.rules.forEach((rule, i) => {
    if (rule.src === undefined || rule.dst === undefined) return;
    const src = familiesOf(config, rule.src);
    const dst = familiesOf(config, rule.dst);
    if (src.size === 0 || dst.size === 0) return;
    if ([...src].some((f) => dst.has(f))) return;
    const name = (set: Set<4 | 6>) => [...set].map((f) => `IPv${f}`).join(" and ");
    problems.push({
      path: ["rules", i, "dst"],
      message: `src holds only ${name(src)} and dst only ${name(dst)} addresses: no connection has both, so the rule never matches`,
    });
  });
  return problems;
}

/**
 * Checks of a config that the schema cannot make value by value: names,
 * interfaces and ids that must be unique, ids that must fit the mark mask,
 * routing tables the kernel reserves, reliability against the number of
 * targets. Each problem names the path of the value to blame, so the caller
 * can locate it in the file.
 */
import { hex, maxPolicyId, maxUplinkId } from "./slots.js";
import {
  DEFAULT_TIMEOUT_MAX_MS,
  DEFAULT_TIMEOUT_MIN_MS,
  uplinkHealth,
  uplinkId,
  type Config,
  type HealthConfig,
} from "./schema.js";
import type { ConfigPath, ConfigProblem } from "./source.js";
import { RULE_TARGETS, prefixesOverlap, type RuleConfig } from "./steering.js";
import { checkIpv6 } from "./checks6.js";
import { checkHa } from "./ha.js";

export type { ConfigProblem } from "./source.js";

/** Largest routing table number: table ids are 32-bit. */
export const MAX_ROUTING_TABLE = 0xffffffff;

/** Routing tables the kernel reserves (rt_tables): uplinkd must not use them. */
export const RESERVED_ROUTING_TABLES: ReadonlyMap<number, string> = new Map([
  [0, "unspec"],
  [253, "default"],
  [254, "main"],
  [255, "local"],
]);

/**
 * Every cross-field problem of a config that passed the schema, in no
 * particular order; empty when the config can be used.
 */
export function checkConfig(config: Config): ConfigProblem[] {
  return [
    ...checkInterfaces(config),
    ...checkNames(config),
    ...checkIds(config),
    ...checkPolicyMarks(config),
    ...checkHealth(config),
    ...checkSteering(config),
    ...checkIpv6(config),
    ...checkHa(config),
  ];
}

/**
 * Policies name known uplinks; rules name known policies and sets; ports
 * come with tcp or udp; an uplink's pinned destinations and DNS servers do
 * not overlap another uplink's.
 */
function checkSteering(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const uplinks = new Set(config.uplinks.map((u) => u.name));
  const known = [...uplinks].join(", ");
  for (const [name, policy] of Object.entries(config.policies)) {
    const seen = new Set<string>();
    (policy.members ?? []).forEach((member, i) => {
      const path = ["policies", name, "members", i, "uplink"];
      if (!uplinks.has(member.uplink)) {
        problems.push({ path, message: `unknown uplink "${member.uplink}" (uplinks: ${known})` });
      } else if (seen.has(member.uplink)) {
        problems.push({ path, message: `uplink "${member.uplink}" is already a member` });
      }
      seen.add(member.uplink);
    });
  }
  config.uplinks.forEach((uplink, i) => {
    for (const direction of uplink.bandwidth?.auto ?? []) {
      const key = direction === "down" ? "download_url" : "upload_url";
      if (config.speedtest?.[key] === undefined) {
        problems.push({
          path: ["uplinks", i, "bandwidth"],
          message: `bandwidth ${direction}: auto needs speedtest.${key} (the endpoint the ${direction === "down" ? "download" : "upload"} is measured against)`,
        });
      }
    }
  });
  for (const [name, policy] of Object.entries(config.policies)) {
    if (policy.balance === "weight") continue;
    const members = policy.members?.map((m) => m.uplink) ?? [...uplinks];
    const without = members.filter(
      (m) => uplinks.has(m) && config.uplinks.find((u) => u.name === m)?.bandwidth === undefined,
    );
    if (without.length > 0) {
      problems.push({
        path: ["policies", name, "balance"],
        message: `balance ${policy.balance} needs the bandwidth of every member; set uplinks[].bandwidth for ${without.join(", ")}`,
      });
    }
  }
  const policies = new Set(["default", ...Object.keys(config.policies)]);
  const targets = [...policies, ...RULE_TARGETS].join(", ");
  if (!policies.has(config.router_policy)) {
    problems.push({
      path: ["router_policy"],
      message: `unknown policy "${config.router_policy}" (policies: ${[...policies].join(", ")})`,
    });
  }
  const tunnelNames = new Set<string>();
  config.tunnels.forEach((tunnel, i) => {
    if (tunnelNames.has(tunnel.name)) {
      problems.push({
        path: ["tunnels", i, "name"],
        message: `duplicate tunnel name "${tunnel.name}"`,
      });
    }
    tunnelNames.add(tunnel.name);
    if (!policies.has(tunnel.policy)) {
      problems.push({
        path: ["tunnels", i, "policy"],
        message: `unknown policy "${tunnel.policy}" (policies: ${[...policies].join(", ")})`,
      });
    }
  });
  config.rules.forEach((rule, i) => {
    const isPolicy = policies.has(rule.policy);
    if (!isPolicy && !(RULE_TARGETS as readonly string[]).includes(rule.policy)) {
      problems.push({
        path: ["rules", i, "policy"],
        message: `unknown policy "${rule.policy}" (one of: ${targets})`,
      });
    }
    if (rule.sticky !== undefined && !isPolicy) {
      problems.push({
        path: ["rules", i, "sticky"],
        message:
          "sticky needs a policy that balances over uplinks, not main, unreachable or blackhole",
      });
    }
    for (const key of ["src", "dst"] as const) {
      (rule[key] ?? []).forEach((match, j) => {
        if (match.startsWith("@") && !(match.slice(1) in config.sets)) {
          problems.push({
            path: ["rules", i, key, ...(rule[key]?.length === 1 ? [] : [j])],
            message: `unknown set "${match.slice(1)}" (sets: ${Object.keys(config.sets).join(", ") || "none"})`,
          });
        }
      });
    }
    if (rule.dst_domain !== undefined && config.dns?.dnsmasq?.nftset_file === undefined) {
      problems.push({
        path: ["rules", i, "dst_domain"],
        message:
          "dst_domain needs dns.dnsmasq.nftset_file: dnsmasq fills the rule's set from the nftset= lines uplinkd writes there",
      });
    }
    const hasPorts = rule.src_port !== undefined || rule.dst_port !== undefined;
    const portless = (rule.proto ?? []).filter((p) => p !== "tcp" && p !== "udp");
    if (hasPorts && (rule.proto === undefined || portless.length > 0)) {
      problems.push({
        path: ["rules", i, rule.src_port === undefined ? "dst_port" : "src_port"],
        message: "ports need proto tcp or udp (or both: proto: [tcp, udp])",
      });
    }
    problems.push(...checkOnChange(rule, i));
    (rule.iif ?? []).forEach((name, j) => {
      if (!config.lan.includes(name)) {
        problems.push({
          path: ["rules", i, "iif", ...(rule.iif?.length === 1 ? [] : [j])],
          message: `"${name}" is not a LAN interface (lan: ${config.lan.join(", ")}); rules steer LAN traffic`,
        });
      }
    });
  });
  if (
    config.dns?.dnsmasq?.servers_file !== undefined &&
    config.uplinks.every((u) => u.dns.length === 0)
  ) {
    problems.push({
      path: ["dns", "dnsmasq", "servers_file"],
      message:
        "no uplink has dns servers, so dnsmasq would get none: give each uplink its ISP's resolvers (uplinks[].dns)",
    });
  }
  const owners: { prefix: string; uplink: number; path: ConfigPath }[] = [];
  config.uplinks.forEach((uplink, i) => {
    const mine = [
      ...uplink.dns.map((p, j) => ({ prefix: p, path: ["uplinks", i, "dns", j] as ConfigPath })),
      ...uplink.pinned.map((p, j) => ({
        prefix: p,
        path: ["uplinks", i, "pinned", j] as ConfigPath,
      })),
    ];
    for (const entry of mine) {
      const clash = owners.find((o) => o.uplink !== i && prefixesOverlap(o.prefix, entry.prefix));
      if (clash !== undefined) {
        problems.push({
          path: entry.path,
          message: `${entry.prefix} overlaps ${clash.prefix} of uplink "${nameAt(config, clash.uplink)}": a destination can be pinned to one uplink only`,
        });
      }
    }
    owners.push(...mine.map((m) => ({ ...m, uplink: i })));
  });
  return problems;
}

/** LAN interfaces listed once and not used as an uplink; one uplink per interface. */
function checkInterfaces(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const uplinkOf = new Map<string, number>();
  config.uplinks.forEach((uplink, i) => {
    const first = uplinkOf.get(uplink.interface);
    if (first === undefined) {
      uplinkOf.set(uplink.interface, i);
      return;
    }
    problems.push({
      path: ["uplinks", i, "interface"],
      message: `interface "${uplink.interface}" is already the interface of uplink "${nameAt(config, first)}" (uplinks.${first})`,
    });
  });
  const seen = new Set<string>();
  config.lan.forEach((name, j) => {
    if (seen.has(name)) {
      problems.push({ path: ["lan", j], message: `"${name}" is listed twice` });
      return;
    }
    seen.add(name);
    const uplink = uplinkOf.get(name);
    if (uplink !== undefined) {
      problems.push({
        path: ["lan", j],
        message: `"${name}" is also the interface of uplink "${nameAt(config, uplink)}" (uplinks.${uplink}.interface); an interface is LAN or uplink, not both`,
      });
    }
  });
  return problems;
}

/** Uplink names are unique: they name nft chains, metrics and log lines. */
function checkNames(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const first = new Map<string, number>();
  config.uplinks.forEach((uplink, i) => {
    const earlier = first.get(uplink.name);
    if (earlier === undefined) first.set(uplink.name, i);
    else {
      problems.push({
        path: ["uplinks", i, "name"],
        message: `uplink name "${uplink.name}" is already used by uplinks.${earlier}`,
      });
    }
  });
  return problems;
}

/**
 * The mark mask is usable; uplink ids (explicit, or the 1-based position)
 * are unique, fit in the mask, and give routing tables the kernel does not
 * reserve.
 */
function checkIds(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const mask = config.dataplane.mark_mask >>> 0;
  const maskPath = ["dataplane", "mark_mask"];
  let maxId: number | undefined;
  if (mask === 0) {
    problems.push({
      path: maskPath,
      message: "must not be 0: uplinkd needs mark bits for its uplinks (e.g. 0xff00)",
    });
  } else if (!isOneRunOfBits(mask)) {
    problems.push({
      path: maskPath,
      message: `must be one run of consecutive bits such as 0xff00 or 0xf00, not ${hex(mask)}`,
    });
  } else if (maxUplinkId(mask) < 1) {
    problems.push({
      path: maskPath,
      message: `${hex(mask)} is too narrow to hold any uplink id; use more bits (e.g. 0xff00)`,
    });
  } else {
    maxId = maxUplinkId(mask);
  }

  const ids = config.uplinks.map((uplink, i) => uplinkId(uplink, i));
  config.uplinks.forEach((uplink, i) => {
    const id = uplinkId(uplink, i);
    const explicit = uplink.id !== undefined;
    const idPath: ConfigPath = explicit ? ["uplinks", i, "id"] : ["uplinks", i];
    const how = explicit ? `id ${id}` : `id ${id} (its position)`;

    if (explicit) {
      // Blame an explicit id: against an earlier explicit id, or any position.
      const other = ids.findIndex(
        (otherId, j) => j !== i && otherId === id && (config.uplinks[j]?.id === undefined || j < i),
      );
      if (other !== -1) {
        const byPosition = config.uplinks[other]?.id === undefined ? ", by its position" : "";
        problems.push({
          path: idPath,
          message: `id ${id} is already the id of uplink "${nameAt(config, other)}" (uplinks.${other}${byPosition}); every uplink needs its own id`,
        });
      }
    }

    if (maxId !== undefined && id > maxId) {
      problems.push({
        path: idPath,
        message: `uplink "${uplink.name}" has ${how}, which does not fit in dataplane.mark_mask ${hex(mask)} (ids 1 to ${maxId}); widen the mask`,
      });
    }

    const table = config.dataplane.table_base + id;
    const reserved = RESERVED_ROUTING_TABLES.get(table);
    if (reserved !== undefined || table > MAX_ROUTING_TABLE) {
      const why =
        reserved !== undefined
          ? `which the kernel reserves ("${reserved}")`
          : `beyond the largest table ${MAX_ROUTING_TABLE}`;
      problems.push({
        path: explicit ? idPath : ["dataplane", "table_base"],
        message: `uplink "${uplink.name}" with ${how} would use routing table ${table} (dataplane.table_base ${config.dataplane.table_base} + id), ${why}; choose another id or table_base`,
      });
    }
  });
  return problems;
}

/**
 * With a policy that has `failback: move`, `dataplane.policy_mark_mask` is
 * one run of bits, apart from `mark_mask`, and wide enough for every policy.
 */
function checkPolicyMarks(config: Config): ConfigProblem[] {
  const moving = Object.entries(config.policies).filter(([, p]) => p.failback === "move");
  if (moving.length === 0) return [];
  const mask = config.dataplane.policy_mark_mask >>> 0;
  const path = ["dataplane", "policy_mark_mask"];
  const policies = new Set(["default", ...Object.keys(config.policies)]).size;
  if (mask === 0 || !isOneRunOfBits(mask)) {
    return [
      { path, message: `must be one run of consecutive bits such as 0xff0000, not ${hex(mask)}` },
    ];
  }
  if ((mask & (config.dataplane.mark_mask >>> 0)) !== 0) {
    return [
      {
        path,
        message: `${hex(mask)} shares bits with dataplane.mark_mask ${hex(config.dataplane.mark_mask)}; policies with failback: move need bits of their own`,
      },
    ];
  }
  if (maxPolicyId(mask) < policies) {
    return [
      {
        path,
        message: `${hex(mask)} holds ${maxPolicyId(mask)} policies but ${policies} are defined (with default); widen the mask`,
      },
    ];
  }
  return [];
}

/**
 * With `timeout: auto`, the floor (`timeout_min`, default 50ms, at most the
 * ceiling's default) must not be above the ceiling (`timeout_max`, default
 * 1s), for the top level and each uplink's merged settings; the problem is
 * reported at the key the config sets.
 */
function checkAutoTimeout(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const check = (path: ConfigPath, health: HealthConfig, own: Partial<HealthConfig>): void => {
    if (health.timeout !== "auto") return;
    const max = health.timeout_max ?? DEFAULT_TIMEOUT_MAX_MS;
    const min = health.timeout_min ?? Math.min(DEFAULT_TIMEOUT_MIN_MS, max);
    if (min <= max) return;
    const key = own.timeout_min !== undefined ? "timeout_min" : "timeout_max";
    problems.push({
      path: [...path, key],
      message: `timeout_min (${min}ms) is above timeout_max (${max}ms): the RTT-aware timeout needs floor <= ceiling`,
    });
  };
  check(["health"], config.health, config.health);
  config.uplinks.forEach((uplink, i) => {
    const own = uplink.health;
    if (
      own?.timeout === undefined &&
      own?.timeout_min === undefined &&
      own?.timeout_max === undefined
    ) {
      return;
    }
    check(["uplinks", i, "health"], uplinkHealth(config, uplink), own);
  });
  return problems;
}

/** Targets listed once; reliability at most the number of targets (top level and per uplink). */
function checkHealth(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [...checkAutoTimeout(config)];
  problems.push(...duplicateTargets(config.health.targets, ["health", "targets"]));
  const { targets, reliability } = config.health;
  if (reliability > targets.length) {
    problems.push({
      path: ["health", "reliability"],
      message: `${reliability} targets must answer, but health.targets lists only ${targets.length}`,
    });
  }
  config.uplinks.forEach((uplink, i) => {
    const own = uplink.health;
    if (own?.targets !== undefined) {
      problems.push(...duplicateTargets(own.targets, ["uplinks", i, "health", "targets"]));
    }
    // An uplink that overrides neither inherits the top-level verdict above.
    const effective = uplinkHealth(config, uplink);
    if (effective.reliability <= effective.targets.length) return;
    if (own?.reliability !== undefined) {
      problems.push({
        path: ["uplinks", i, "health", "reliability"],
        message: `${effective.reliability} targets must answer, but uplink "${uplink.name}" probes only ${effective.targets.length}`,
      });
    } else if (own?.targets !== undefined) {
      problems.push({
        path: ["uplinks", i, "health", "targets"],
        message: `lists ${count(effective.targets.length, "target")}, fewer than the ${effective.reliability} that must answer (health.reliability); add targets or set this uplink's health.reliability`,
      });
    }
  });
  return problems;
}

function duplicateTargets(targets: readonly string[], path: ConfigPath): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  targets.forEach((target, k) => {
    if (targets.indexOf(target) !== k) {
      problems.push({ path: [...path, k], message: `${target} is listed twice` });
    }
  });
  return problems;
}

/** True when the set bits of `mask` (non-zero) are one consecutive run, like 0xff00. */
function isOneRunOfBits(mask: number): boolean {
  const lowest = (mask & -mask) >>> 0;
  const filled = (mask + lowest) >>> 0;
  // Adding the lowest bit carries through a single run and leaves no bit of it.
  return (filled & mask) === 0;
}

/** `1 target`, `2 targets`. */
function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function nameAt(config: Config, index: number): string {
  return config.uplinks[index]?.name ?? `#${index}`;
}

/**
 * `on_change: clear` needs a schedule (it acts at window edges) and a match
 * conntrack can select entries by: addresses (`src`, `dst`, or `src_mac`
 * through the neighbour table), with `proto` and single ports; conntrack
 * records no interface, DSCP or DNS name, and takes one port per deletion.
 */
function checkOnChange(rule: RuleConfig, i: number): ConfigProblem[] {
  if (rule.on_change !== "clear") return [];
  const path = ["rules", i, "on_change"];
  if (rule.schedule === undefined) {
    return [{ path, message: "on_change acts at the edges of the rule's schedule; add schedule" }];
  }
  const unselectable = (["iif", "dscp", "dst_domain", "sticky"] as const).filter(
    (key) => rule[key] !== undefined,
  );
  if (unselectable.length > 0) {
    return [
      {
        path,
        message: `on_change: clear selects connections with conntrack, which cannot select by ${unselectable.join(", ")}; leave ${unselectable.length === 1 ? "it" : "them"} out or use on_change: keep`,
      },
    ];
  }
  if (rule.src === undefined && rule.dst === undefined && rule.src_mac === undefined) {
    return [
      {
        path,
        message:
          "on_change: clear needs src, dst or src_mac: conntrack selects the connections to clear by address",
      },
    ];
  }
  const ranges = [...(rule.src_port ?? []), ...(rule.dst_port ?? [])].filter(
    (p) => typeof p === "string" && p.includes("-"),
  );
  if (ranges.length > 0) {
    return [
      {
        path,
        message: `on_change: clear takes single ports (conntrack deletes by one port at a time), not ${ranges.join(", ")}`,
      },
    ];
  }
  return [];
}

/**
 * Config pieces for traffic steering: policies, rules, named address sets,
 * per-uplink destinations, port forwards and route options.
 */
import { isIPv4, isIPv6 } from "node:net";
import { z } from "zod";
import { duration } from "./duration.js";
import { interfaceName, safeName } from "./names.js";
import { macAddress, windowSchema } from "./schedule.js";
import { familyOf, formatPrefix6, hasHostBits6, parsePrefix6, prefixRange6 } from "../net/ipv6.js";
import { formatPrefix, hasHostBits4, parsePrefix, prefixRange } from "../net/ipv4.js";

/** Names that end up in nft object names: letters, digits and `_` only. */
export const nftName = z
  .string()
  .regex(
    /^[a-zA-Z][a-zA-Z0-9_]{0,23}$/,
    "must start with a letter and hold only letters, digits and '_' (at most 24)",
  );

export { parsePrefix, prefixRange, formatPrefix };

/** True when two prefixes (IPv4 or IPv6) share an address; prefixes of two families never do. */
export function prefixesOverlap(a: string, b: string): boolean {
  const family = familyOf(a);
  if (family !== familyOf(b)) return false;
  if (family === 6) {
    const r6a = prefixRange6(a);
    const r6b = prefixRange6(b);
    if (r6a === undefined || r6b === undefined) return false;
    return r6a[0] <= r6b[1] && r6b[0] <= r6a[1];
  }
  const ra = prefixRange(a);
  const rb = prefixRange(b);
  if (ra === undefined || rb === undefined) return false;
  return ra[0] <= rb[1] && rb[0] <= ra[1];
}

/** Problems of a prefix text (IPv4 or IPv6): not a prefix, or host bits set. */
export function prefixProblem(text: string): string | undefined {
  if (familyOf(text) === 6) {
    const parsed6 = parsePrefix6(text);
    if (parsed6 === undefined) {
      return `"${text}" is not an IPv6 address or prefix (2001:db8::1 or 2001:db8::/48)`;
    }
    if (hasHostBits6(text)) {
      return `"${text}" has host bits set; the network is ${formatPrefix6(parsed6)}`;
    }
    return undefined;
  }
  const parsed = parsePrefix(text);
  if (parsed === undefined)
    return `"${text}" is not an IPv4 or IPv6 address or prefix (a.b.c.d, a.b.c.d/n, 2001:db8::/48)`;
  if (hasHostBits4(text))
    return `"${text}" has host bits set; the network is ${formatPrefix(parsed)}`;
  return undefined;
}

/** An IPv4 or IPv6 address or prefix (`192.0.2.0/24`, `2001:db8::/48`); host bits must be zero. */
export const prefix = z.string().superRefine((text, ctx) => {
  const problem = prefixProblem(text);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});

/** An address, a prefix, or `@name` of a set in `sets`. */
export const addressMatch = z.string().superRefine((text, ctx) => {
  const problem = text.startsWith("@")
    ? /^@[a-zA-Z][a-zA-Z0-9_]{0,23}$/.test(text)
      ? undefined
      : `"${text}" is not a set reference (@ and the set's name)`
    : prefixProblem(text);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});

/**
 * A DNS name for `dst_domain` (`example.com`): labels of letters, digits and
 * `-` (not at either end), 1..63 characters each, at most 253 in all, no
 * trailing dot. Read in lower case. It matches itself and every name below
 * it, as dnsmasq's `--nftset=/NAME/...` does.
 */
export const domainName = z
  .string()
  .max(253, "a DNS name has at most 253 characters")
  .regex(
    /^(?!-)[a-zA-Z0-9-]{1,63}(?<!-)(\.(?!-)[a-zA-Z0-9-]{1,63}(?<!-))*$/,
    "must be a DNS name such as example.com (letters, digits, '-' and dots; no trailing dot)",
  )
  .transform((name) => name.toLowerCase());

/** A port 1..65535, or a range `"1000-2000"`. */
export const portSpec = z.union([
  z.number().int().min(1).max(65535),
  z
    .string()
    .regex(/^\d{1,5}(-\d{1,5})?$/, 'must be a port (80) or a range ("1000-2000")')
    .refine((text) => {
      const [low = 0, high = low] = text.split("-").map(Number);
      return low >= 1 && high <= 65535 && low <= high;
    }, "ports are 1..65535 and a range goes from low to high"),
]);

/** DSCP names (RFC 2474/2597/3246/5865) and their values. */
export const DSCP_NAMES: Readonly<Record<string, number>> = {
  cs0: 0,
  cs1: 8,
  cs2: 16,
  cs3: 24,
  cs4: 32,
  cs5: 40,
  cs6: 48,
  cs7: 56,
  af11: 10,
  af12: 12,
  af13: 14,
  af21: 18,
  af22: 20,
  af23: 22,
  af31: 26,
  af32: 28,
  af33: 30,
  af41: 34,
  af42: 36,
  af43: 38,
  ef: 46,
  va: 44,
  le: 1,
};

/** One value or a list of them, always read as a list (`dst: 192.0.2.0/24` or `dst: [a, b]`). */
const oneOrMany = <T extends z.ZodType>(item: T) =>
  z.preprocess(
    (value): unknown[] => (Array.isArray(value) ? (value as unknown[]) : [value]),
    z.array(item).min(1),
  );

/** A policy member: an uplink with its weight and tier in this policy. */
export const policyMemberSchema = z
  .object({
    uplink: z.string().min(1),
    weight: z.number().int().min(1).max(1000).default(1),
    tier: z.number().int().min(1).max(16).default(1),
  })
  .strict();

/**
 * A policy: which uplinks may carry its connections. `last_resort` applies
 * when none is usable: `all` keeps balancing over every member that has a
 * route, `main` leaves the connection to the main table (not balanced),
 * `unreachable` rejects it, `blackhole` drops it. `degraded`: `avoid` gives
 * degraded members new connections only when no member is up; `keep` treats
 * them like up ones.
 */
export const policySchema = z
  .object({
    members: z
      .array(policyMemberSchema)
      .min(1)
      .optional()
      .describe("the uplinks of this policy; default: every uplink with its own weight and tier"),
    balance: z
      .enum(["weight", "least-used", "spillover"])
      .default("weight")
      .describe(
        "weight: static weights; least-used: the most spare capacity (bandwidth minus measured throughput) gets most new connections; spillover: fill members in order up to `threshold`, then the next",
      ),
    threshold: z
      .number()
      .min(1)
      .max(100)
      .default(80)
      .describe("spillover: utilisation (%) at which a member counts as full"),
    last_resort: z
      .enum(["all", "main", "unreachable", "blackhole"])
      .optional()
      .describe(
        "when no member is usable: all, main, unreachable or blackhole; default main, and for 'default' the top-level last_resort",
      ),
    degraded: z.enum(["avoid", "keep"]).default("avoid"),
    failback: z
      .enum(["keep", "move"])
      .default("keep")
      .describe(
        "keep: connections stay on the worse-tier uplink they started on; move: once a better tier is usable again (for failback_delay), this policy's connections on worse tiers are cleared so their next packet takes the better tier",
      ),
    failback_delay: duration
      .prefault("0s")
      .describe(
        "with failback: move, how long a better tier must stay usable before connections move back (0s: at once)",
      ),
  })
  .strict();

/** Where a rule sends a connection: a policy, or `main`, `unreachable`, `blackhole`. */
export const RULE_TARGETS = ["main", "unreachable", "blackhole"] as const;

/** One steering rule; first match wins. All given matches must hold. */
export const ruleSchema = z
  .object({
    name: safeName(64, { spaces: true })
      .optional()
      .describe("the rule's name in the nft comment, plan and logs"),
    src: oneOrMany(addressMatch).optional(),
    src_mac: oneOrMany(macAddress)
      .optional()
      .describe(
        "LAN devices by Ethernet address (aa:bb:cc:dd:ee:ff, any case): their connections whatever IPv4 or IPv6 address they hold",
      ),
    dst: oneOrMany(addressMatch).optional(),
    dst_domain: oneOrMany(domainName)
      .optional()
      .describe(
        "DNS names (each with its subdomains) whose addresses the LAN's dnsmasq puts in this rule's set (dns.dnsmasq)",
      ),
    proto: oneOrMany(
      z.union([z.enum(["tcp", "udp", "icmp"]), z.number().int().min(0).max(255)]),
    ).optional(),
    src_port: oneOrMany(portSpec).optional(),
    dst_port: oneOrMany(portSpec).optional(),
    iif: oneOrMany(interfaceName).optional(),
    dscp: oneOrMany(
      z.union([
        z.number().int().min(0).max(63),
        z
          .string()
          .refine((s) => s in DSCP_NAMES, "must be 0..63 or a DSCP name (ef, af41, cs1, ...)"),
      ]),
    ).optional(),
    policy: z.string().min(1).describe("a policy name, or main, unreachable, blackhole"),
    sticky: z
      .object({
        by: z.enum(["src", "src-dst"]).default("src"),
        timeout: duration
          .pipe(z.number().positive("must be more than 0ms"))
          .prefault("10m")
          .describe("how long a source stays on its uplink after its last new connection"),
      })
      .strict()
      .optional(),
    schedule: z
      .array(windowSchema)
      .min(1)
      .optional()
      .describe(
        "weekly windows ({ days, from, to }, local time or time_zone) in which the rule applies; outside them it is skipped",
      ),
    on_change: z
      .enum(["keep", "clear"])
      .default("keep")
      .describe(
        "with schedule, at each window edge: keep: established connections stay where they are; clear: the rule's established connections are cleared so their next packet follows the rules in force",
      ),
  })
  .strict();

/** A port forward (DNAT) arriving on one uplink. */
export const forwardSchema = z
  .object({
    proto: z.enum(["tcp", "udp"]).default("tcp"),
    port: portSpec,
    to: z
      .string()
      .refine(
        (s) => isIPv4(s) || (isIPv6(s) && !s.includes("%")),
        "must be an IPv4 or IPv6 address of a LAN host",
      ),
    to_port: z.number().int().min(1).max(65535).optional(),
  })
  .strict();

/** Route metrics passed to the uplink's routes (ip-route(8)). */
export const routeOptionsSchema = z
  .object({
    initcwnd: z.number().int().min(1).max(1024).optional(),
    initrwnd: z.number().int().min(1).max(1024).optional(),
    mtu: z.number().int().min(68).max(65535).optional(),
    advmss: z.number().int().min(1).max(65535).optional(),
  })
  .strict();

/** A validated rule. */
export type RuleConfig = z.output<typeof ruleSchema>;
/** A validated policy. */
export type PolicyConfig = z.output<typeof policySchema>;
/** A validated port forward. */
export type ForwardConfig = z.output<typeof forwardSchema>;

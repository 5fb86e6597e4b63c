/**
 * The one schema of uplinkd's YAML config: types, defaults and validation.
 * The JSON Schema for editors (`schema/uplinkd.schema.json`) is generated
 * from it by `npm run schema`.
 */
import { isIPv4 } from "node:net";
import { z } from "zod";
import { parseDuration } from "./duration.js";

/** Linux interface names: 1..15 bytes, no slash, no whitespace (IFNAMSIZ - 1). */
export const interfaceName = z
  .string()
  .regex(
    /^[^\s/:]{1,15}$/,
    "must be a Linux interface name (1 to 15 characters, no '/', ':' or spaces)",
  );

/** An IPv4 address in dotted-quad form. */
export const ipv4 = z.string().refine((s) => isIPv4(s), { message: "must be an IPv4 address" });

/** A duration (`200ms`, `5s`, `1m`) or a number of ms; parsed to ms. */
export const duration = z
  .union([z.number().nonnegative(), z.string()])
  .transform((value, ctx) => {
    if (typeof value === "number") return value;
    try {
      return parseDuration(value);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
      return z.NEVER;
    }
  })
  .meta({ description: "duration: 200ms, 5s, 1m, or a number of ms" });

/** Names of uplinks and policies: used in nft chain names and log lines. */
export const objectName = z
  .string()
  .regex(
    /^[a-zA-Z][a-zA-Z0-9_-]{0,23}$/,
    "must start with a letter and hold only letters, digits, '_' and '-' (at most 24)",
  );

/** Health check settings; `health` at the top sets the defaults of every uplink. */
export const healthSchema = z
  .object({
    targets: z
      .array(ipv4)
      .min(1)
      .default(["198.51.100.1", "203.0.113.1"])
      .describe("ICMP echo targets probed through each uplink"),
    interval: duration.default(500).describe("time between probe rounds"),
    timeout: duration.default(1000).describe("a probe without an answer after this is lost"),
    down: z.number().int().min(1).max(100).default(3).describe("failed rounds in a row -> down"),
    up: z.number().int().min(1).max(1000).default(5).describe("good rounds in a row -> up"),
    reliability: z
      .number()
      .int()
      .min(1)
      .default(1)
      .describe("targets that must answer for a round to pass"),
  })
  .strict();

/** One uplink: an interface towards one ISP. */
export const uplinkSchema = z
  .object({
    name: objectName,
    interface: interfaceName,
    gateway: z
      .union([z.literal("auto"), ipv4])
      .default("auto")
      .describe('gateway address, or "auto" to learn it from the kernel (DHCP, PPP)'),
    weight: z.number().int().min(1).max(1000).default(1),
    tier: z.number().int().min(1).max(16).default(1),
    id: z
      .number()
      .int()
      .min(1)
      .max(254)
      .optional()
      .describe("fixes the uplink's fwmark and routing table; default: its position (1-based)"),
    snat: ipv4.optional().describe("SNAT to this address instead of masquerade"),
    health: healthSchema.partial().optional(),
  })
  .strict();

/** Kernel resources uplinkd owns: marks, tables, rule priorities. */
export const dataplaneSchema = z
  .object({
    table: z
      .string()
      .regex(/^[a-zA-Z][a-zA-Z0-9_]{0,30}$/)
      .default("uplinkd")
      .describe("name of the nft table (family inet) owned by uplinkd"),
    mark_mask: z
      .union([z.number().int(), z.string().regex(/^0x[0-9a-fA-F]{1,8}$/)])
      .transform((v) => (typeof v === "number" ? v : Number.parseInt(v, 16)))
      .default(0xff00)
      .describe("fwmark/connmark bits uplinkd may use; other bits are left alone"),
    table_base: z
      .number()
      .int()
      .min(1)
      .max(0xfffffff0)
      .default(100)
      .describe("routing table of uplink id i is table_base + i"),
    rule_priority: z
      .number()
      .int()
      .min(1)
      .max(32000)
      .default(1000)
      .describe("first ip rule priority uplinkd uses (it uses up to rule_priority + 600)"),
    route_protocol: z
      .number()
      .int()
      .min(5)
      .max(255)
      .default(73)
      .describe("rtnetlink protocol number tagging uplinkd's routes and rules"),
    main_metric: z
      .number()
      .int()
      .min(0)
      .default(4096)
      .describe("metric of the default route uplinkd keeps in the main table"),
    on_stop: z
      .enum(["remove", "keep"])
      .default("remove")
      .describe("on SIGTERM: remove every rule, route and nft table uplinkd owns, or keep them"),
  })
  .strict();

/** The whole config file. */
export const configSchema = z
  .object({
    lan: z.array(interfaceName).min(1).describe("interfaces whose new connections are balanced"),
    uplinks: z.array(uplinkSchema).min(1),
    health: healthSchema.default(healthSchema.parse({})),
    dataplane: dataplaneSchema.default(dataplaneSchema.parse({})),
    control: z
      .object({
        socket: z.string().min(1).default("/run/uplinkd/uplinkd.sock"),
      })
      .strict()
      .default({ socket: "/run/uplinkd/uplinkd.sock" }),
  })
  .strict();

/** A validated config with every default filled in (durations in ms). */
export type Config = z.output<typeof configSchema>;
/** One uplink of a validated config. */
export type UplinkConfig = z.output<typeof uplinkSchema>;
/** Health settings with every default filled in. */
export type HealthConfig = z.output<typeof healthSchema>;
/** Kernel resource settings with every default filled in. */
export type DataplaneConfig = z.output<typeof dataplaneSchema>;

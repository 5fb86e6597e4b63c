/**
 * The one schema of uplinkd's YAML config: types, defaults and validation.
 * The JSON Schema for editors (`schema/uplinkd.schema.json`) is generated
 * from it by `npm run schema`.
 *
 * Defaults a user could write are given as `prefault` (the text form,
 * parsed like the user's own), so the JSON Schema shows them as written:
 * `interval: "500ms"`, `mark_mask: "0xff00"`.
 *
 * Checks that need more than one value (duplicate names, ids against the
 * mark mask, reliability against the number of targets) live in
 * `checks.ts`; `loadConfig` runs both and locates every problem in the file.
 */
import { z } from "zod";
import { LOG_LEVELS } from "../log-level.js";
import { optional } from "../optional.js";
import { duration } from "./duration.js";
import { notifySchema } from "./notify.js";
import { haSchema } from "./ha.js";
import { quotaSchema } from "./quota.js";
import { bandwidthSchema, speedtestSchema } from "./speedtest.js";
import {
  forwardSchema,
  nftName,
  policySchema,
  prefix,
  routeOptionsSchema,
  ruleSchema,
} from "./steering.js";

import { interfaceName, safeName, safePath } from "./names.js";
import { tunnelSchema } from "./tunnels.js";
import { timeZone } from "./schedule.js";

export { interfaceName } from "./names.js";

export { duration } from "./duration.js";

/** Floor of `timeout: auto` when `timeout_min` is not set, ms. */
export const DEFAULT_TIMEOUT_MIN_MS = 50;

/** Ceiling of `timeout: auto` when `timeout_max` is not set, ms (RFC 6298's initial RTO). */
export const DEFAULT_TIMEOUT_MAX_MS = 1000;

/** An IPv4 address in dotted-quad form (no leading zeros). */
export const ipv4 = z.ipv4({ error: "must be an IPv4 address (e.g. 192.0.2.1)" });

/** An IPv6 address (`2001:db8::1`, `fe80::1`), without a zone. */
export const ipv6 = z.ipv6({ error: "must be an IPv6 address (e.g. 2001:db8::1)" });

/** An IPv4 or IPv6 address. */
export const ipAddress = z.union([z.ipv4(), z.ipv6()], {
  error: "must be an IPv4 or IPv6 address (e.g. 192.0.2.1, 2001:db8::1)",
});

/** Shortest probe interval accepted, in ms: below it probing becomes a flood. */
export const MIN_PROBE_INTERVAL_MS = 10;

/** Names of uplinks and policies: used in nft chain names and log lines. */
export const objectName = z
  .string()
  .regex(
    /^[a-zA-Z][a-zA-Z0-9_-]{0,23}$/,
    "must start with a letter and hold only letters, digits, '_' and '-' (at most 24)",
  );

/**
 * The health fields without defaults, shared by `health` (which adds the
 * defaults) and each uplink's `health` override (which must not: a field the
 * uplink leaves out comes from the top-level `health`).
 */
const healthFields = {
  targets: z
    .array(ipAddress)
    .min(1)
    .describe(
      "ICMP echo targets probed through each uplink (IPv4 and IPv6: each family is judged by its own targets); pick hosts beyond the ISP, not its gateway",
    ),
  interval: duration
    .pipe(z.number().min(MIN_PROBE_INTERVAL_MS, `must be at least ${MIN_PROBE_INTERVAL_MS}ms`))
    .describe("time between probe rounds (200ms, 1s, or a number of ms; at least 10ms)"),
  timeout: z
    .union([z.literal("auto"), duration.pipe(z.number().positive("must be more than 0ms"))])
    .describe(
      "a probe without an answer after this is lost (500ms, 1s, or a number of ms), or auto: follows the measured RTT (RFC 6298: SRTT + 4 RTTVAR) between timeout_min and timeout_max",
    ),
  timeout_min: duration
    .pipe(z.number().positive("must be more than 0ms"))
    .describe("with timeout: auto, the lowest timeout (default 50ms)"),
  timeout_max: duration
    .pipe(z.number().positive("must be more than 0ms"))
    .describe(
      "with timeout: auto, the highest timeout and the one before the first answer (default 1s)",
    ),
  down: z
    .number()
    .int()
    .min(1)
    .max(100)
    .describe("failed rounds in a row after which the uplink is down"),
  up: z
    .number()
    .int()
    .min(1)
    .max(1000)
    .describe("good rounds in a row after which a down uplink is up again"),
  reliability: z
    .number()
    .int()
    .min(1)
    .describe("targets that must answer for a round to pass (at most the number of targets)"),
  loss_fail: z
    .number()
    .min(0)
    .max(100)
    .describe("loss (%) at or above which an up uplink becomes degraded"),
  loss_recover: z
    .number()
    .min(0)
    .max(100)
    .describe("loss (%) below which a degraded uplink is up again"),
  rtt_fail: duration
    .pipe(z.number().positive("must be more than 0ms"))
    .describe("mean RTT at or above which an up uplink becomes degraded (default: timeout/2)"),
  rtt_recover: duration
    .pipe(z.number().nonnegative())
    .describe("mean RTT below which a degraded uplink is up again (default: timeout/4)"),
  flap: z
    .object({
      count: z.number().int().min(0).default(3).describe("downs that start a hold; 0: no damping"),
      period: duration.prefault("5m").describe("the downs must fall within this time"),
      hold: duration.prefault("60s").describe("how long the uplink then stays down"),
    })
    .strict()
    .describe(
      "flap damping: an uplink that goes down `count` times within `period` stays down for `hold`",
    ),
  probes: z
    .array(
      z.discriminatedUnion("type", [
        z
          .object({ type: z.literal("tcp"), host: ipv4, port: z.number().int().min(1).max(65535) })
          .strict(),
        z
          .object({
            type: z.literal("http"),
            url: z.string().regex(/^https?:\/\//, "must start with http:// or https://"),
            expect_status: z.array(z.number().int().min(100).max(599)).min(1).optional(),
          })
          .strict(),
        z
          .object({
            type: z.literal("dns"),
            server: ipv4,
            name: z
              .string()
              .regex(/^[A-Za-z0-9_.-]{1,253}$/, "must be a DNS name such as example.com"),
            expect: z.array(ipv4).min(1).optional(),
          })
          .strict(),
      ]),
    )
    .describe("TCP connect, HTTP(S) GET and DNS probes, in addition to the ICMP targets"),
};

/** Health check settings; `health` at the top sets the defaults of every uplink. */
export const healthSchema = z
  .object({
    targets: healthFields.targets.default(["198.51.100.1", "203.0.113.1"]),
    interval: healthFields.interval.prefault("500ms"),
    timeout: healthFields.timeout.prefault("1s"),
    timeout_min: healthFields.timeout_min.optional(),
    timeout_max: healthFields.timeout_max.optional(),
    down: healthFields.down.default(3),
    up: healthFields.up.default(5),
    reliability: healthFields.reliability.default(1),
    loss_fail: healthFields.loss_fail.default(20),
    loss_recover: healthFields.loss_recover.default(10),
    rtt_fail: healthFields.rtt_fail.optional(),
    rtt_recover: healthFields.rtt_recover.optional(),
    flap: healthFields.flap.prefault({}),
    probes: healthFields.probes.default([]),
    passive: z
      .boolean()
      .default(true)
      .describe(
        "watch new LAN connections per uplink (nft counters of SYNs and SYN-ACKs); when one uplink stops answering while others answer, probe it at once",
      ),
  })
  .strict();

/**
 * One uplink's `health`: any field of the top-level `health`; a field left
 * out is taken from there (see `uplinkHealth`).
 */
export const healthOverrideSchema = z
  .object({
    targets: healthFields.targets.optional(),
    interval: healthFields.interval.optional(),
    timeout: healthFields.timeout.optional(),
    timeout_min: healthFields.timeout_min.optional(),
    timeout_max: healthFields.timeout_max.optional(),
    down: healthFields.down.optional(),
    up: healthFields.up.optional(),
    reliability: healthFields.reliability.optional(),
    loss_fail: healthFields.loss_fail.optional(),
    loss_recover: healthFields.loss_recover.optional(),
    rtt_fail: healthFields.rtt_fail.optional(),
    rtt_recover: healthFields.rtt_recover.optional(),
    flap: healthFields.flap.optional(),
    probes: healthFields.probes.optional(),
  })
  .strict()
  .describe("this uplink's health settings; fields left out come from the top-level health");

/** One uplink: an interface towards one ISP. */
export const uplinkSchema = z
  .object({
    name: objectName.describe("the uplink's name in logs, status and metrics"),
    interface: interfaceName.describe("the interface towards the ISP, e.g. wan1, ppp0, wwan0"),
    gateway: z
      .union([z.literal("auto"), z.literal("none"), ipv4], {
        error: 'must be "auto", "none" or an IPv4 address',
      })
      .default("auto")
      .describe(
        'gateway address; "auto" to learn it from the kernel (DHCP, PPP; on a point-to-point link without one, none); "none": routes go straight out of the interface (raw-IP LTE, tunnels)',
      ),
    gateway6: z
      .union(
        [
          z.literal("auto"),
          z.literal("none"),
          z.ipv6({ error: 'must be "auto", "none" or an IPv6 address' }),
        ],
        { error: 'must be "auto", "none" or an IPv6 address' },
      )
      .default("auto")
      .describe(
        'IPv6 gateway; "auto": the default router that router advertisements announce on the interface (usually fe80::...); "none": this uplink has no IPv6. A link-local address is fine: it is used with the interface',
      ),
    prefix6: z
      .union(
        [
          z.literal("auto"),
          z
            .string()
            .regex(
              /^[0-9a-fA-F:.]+\/\d{1,3}$/,
              'must be "auto" or an IPv6 prefix such as 2001:db8:1000::/56',
            ),
        ],
        {
          error: 'must be "auto" or an IPv6 prefix such as 2001:db8:1000::/56',
        },
      )
      .optional()
      .describe(
        'an IPv6 prefix the ISP routes to this router (static, or "auto": learned from DHCPv6 prefix delegation); LAN sources are translated into it (NPTv6) when leaving by this uplink, else masqueraded',
      ),
    prefix6_file: safePath
      .optional()
      .describe(
        "for prefix6: auto, a file whose first word is the delegated prefix, written by the DHCPv6-PD client's hook script (e.g. /run/uplinkd/prefix6-wan1); without it, the client's `unreachable PREFIX proto dhcp` route is used when only one uplink has prefix6: auto",
      ),
    address: ipv4
      .optional()
      .describe(
        "the uplink's source address when its interface has several: masquerade becomes SNAT to it, rules and probes use it; default the interface's primary address",
      ),
    weight: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(1)
      .describe("share of new connections relative to the other uplinks of its tier"),
    tier: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(1)
      .describe(
        "1 is used first; tier n+1 carries traffic only when every uplink of tier n is down",
      ),
    id: z
      .number()
      .int()
      .min(1)
      .max(254)
      .optional()
      .describe("fixes the uplink's fwmark and routing table; default: its position (1-based)"),
    snat: ipv4
      .optional()
      .describe("SNAT to this address instead of masquerade (or of the SNAT to `address`)"),
    health: healthOverrideSchema.optional(),
    dns: z
      .array(ipAddress)
      .default([])
      .describe("this ISP's DNS servers: traffic to them always leaves by this uplink"),
    pinned: z
      .array(prefix)
      .default([])
      .describe(
        "destinations that always leave by this uplink (an SMTP relay, a network behind the ISP)",
      ),
    route_options: routeOptionsSchema
      .optional()
      .describe("route metrics for this uplink's routes: initcwnd, initrwnd, mtu, advmss"),
    forwards: z
      .array(forwardSchema)
      .default([])
      .describe("port forwards (DNAT) for connections arriving on this uplink"),
    bandwidth: bandwidthSchema.optional(),
    quota: quotaSchema.optional(),
  })
  .strict();

/** Kernel resources uplinkd owns: marks, tables, rule priorities. */
export const dataplaneSchema = z
  .object({
    table: z
      .string()
      .regex(
        /^[a-zA-Z][a-zA-Z0-9_]{0,30}$/,
        "must start with a letter and hold only letters, digits and '_' (at most 31)",
      )
      .default("uplinkd")
      .describe("name of the nft table (family inet) owned by uplinkd"),
    mark_mask: z
      .union(
        [
          z.number().int().min(0).max(0xffffffff),
          z.string().regex(/^0x[0-9a-fA-F]{1,8}$/, "must be a hex number such as 0xff00"),
        ],
        { error: "must be a 32-bit mask such as 0xff00" },
      )
      .transform((v) => (typeof v === "number" ? v : Number.parseInt(v, 16)))
      .prefault("0xff00")
      .describe(
        "fwmark/connmark bits uplinkd may use, one run of bits (e.g. 0xff00); other bits are left alone",
      ),
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
    main_metric6: z
      .number()
      .int()
      .min(1)
      .max(1023)
      .default(512)
      .describe(
        "metric of the IPv6 default route uplinkd keeps in the main table; below the 1024 of router advertisement routes, so the router's own unbound sockets take the LAN source and get balanced",
      ),
    policy_mark_mask: z
      .union(
        [
          z.number().int().min(0).max(0xffffffff),
          z.string().regex(/^0x[0-9a-fA-F]{1,8}$/, "must be a hex number such as 0xff0000"),
        ],
        { error: "must be a 32-bit mask such as 0xff0000" },
      )
      .transform((v) => (typeof v === "number" ? v : Number.parseInt(v, 16)))
      .prefault("0xff0000")
      .describe(
        "connmark bits that record which policy placed a connection (policies with failback: move only), one run of bits apart from mark_mask",
      ),
    on_stop: z
      .enum(["remove", "keep"])
      .default("remove")
      .describe("on SIGTERM: remove every rule, route and nft table uplinkd owns, or keep them"),
  })
  .strict();

/** The control API. */
export const controlSchema = z
  .object({
    socket: safePath
      .default("/run/uplinkd/uplinkd.sock")
      .describe("Unix socket of the control API (uplinkd status, the dashboard)"),
    listen: z
      .string()
      .regex(
        /^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/,
        "must be ADDRESS:PORT, e.g. 127.0.0.1:9101 or [::1]:9101",
      )
      .refine(
        (v) => {
          const port = Number(v.slice(v.lastIndexOf(":") + 1));
          const host = v.slice(0, v.lastIndexOf(":")).replace(/^\[|\]$/g, "");
          return (
            port >= 1 &&
            port <= 65535 &&
            (z.ipv4().safeParse(host).success || z.ipv6().safeParse(host).success)
          );
        },
        { error: "must be ADDRESS:PORT with a valid address and a port from 1 to 65535" },
      )
      .optional()
      .describe(
        "TCP address:port for the dashboard, /metrics and the API (e.g. 127.0.0.1:9101); none when absent; an address other than loopback needs tokens",
      ),
    tokens: z
      .array(
        z
          .object({
            name: safeName(64).optional().describe("who uses it, for the log"),
            token: z
              .string()
              .regex(
                /^[\x21-\x7e]{16,}$/,
                "must be at least 16 printable characters without spaces (e.g. openssl rand -hex 24)",
              )
              .meta({ secret: true })
              .describe("the bearer token (Authorization: Bearer TOKEN)"),
            access: z
              .enum(["read", "write"])
              .default("read")
              .describe("read: GET endpoints; write: GET and POST (disable, enable, reload)"),
          })
          .strict(),
      )
      .default([])
      .describe("bearer tokens of the TCP listener (the Unix socket needs none: it is root only)"),
    max_connections: z
      .number()
      .int()
      .min(1)
      .max(65_535)
      .default(256)
      .describe(
        "open connections per listener (socket, TCP); one more is answered 503 and closed, so clients cannot use up the daemon's files; lowered to what the file limit leaves (ulimit -n less 256, shared by the listeners)",
      ),
    max_streams: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(32)
      .describe(
        "event streams (GET /events/stream, the dashboard) per listener; one more gets 503",
      ),
    stream_buffer: z
      .number()
      .int()
      .min(4096)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024)
      .describe(
        "bytes an event stream may leave unsent (a reader that does not keep up); beyond it the stream is closed",
      ),
    refused_log_interval: duration
      .pipe(z.number().min(1000, "must be at least 1s"))
      .prefault("60s")
      .describe(
        "refused requests (bad token, limits) are logged once per client address per interval, with a count of the rest",
      ),
  })
  .strict()
  .superRefine((control, ctx) => {
    if (control.listen === undefined || control.tokens.length > 0) return;
    const host = control.listen.slice(0, control.listen.lastIndexOf(":")).replace(/^\[|\]$/g, "");
    if (!/^127\./.test(host) && host !== "::1") {
      ctx.addIssue({
        code: "custom",
        path: ["listen"],
        message: `${host} is not a loopback address: add control.tokens, or listen on 127.0.0.1`,
      });
    }
  });

/**
 * The LAN's dnsmasq, which uplinkd feeds: `nftset=` lines for the
 * `dst_domain` rules, and `server=` lines that follow the uplinks' health.
 */
export const dnsmasqSchema = z
  .object({
    nftset_file: safePath
      .optional()
      .describe(
        "file uplinkd writes with the nftset= lines of the dst_domain rules; put it in dnsmasq's conf-dir (e.g. /etc/dnsmasq.d/uplinkd-nftset.conf)",
      ),
    servers_file: safePath
      .optional()
      .describe(
        "file uplinkd writes with server= lines: the DNS servers of the healthy uplinks; name it in dnsmasq's servers-file= option",
      ),
    reload: z
      .array(z.string().min(1))
      .min(1)
      .default(["systemctl", "restart", "dnsmasq"])
      .describe(
        "command (an argument list, no shell) run after the nftset file changed; dnsmasq reads nftset= lines only when it starts",
      ),
    pid_file: safePath
      .default("/run/dnsmasq/dnsmasq.pid")
      .describe(
        "dnsmasq's pid file: uplinkd sends SIGHUP to that pid after the servers file changed",
      ),
    set_timeout: duration
      .pipe(z.number().min(1000, "must be at least 1s"))
      .prefault("1h")
      .describe(
        "how long an address dnsmasq put in a domain set stays there; longer than the names' TTLs and the clients' caches",
      ),
  })
  .strict();

/** DNS integration. */
export const dnsSchema = z
  .object({
    dnsmasq: dnsmasqSchema.optional(),
  })
  .strict();

/** The daemon's log. */
export const logSchema = z
  .object({
    level: z
      .enum(LOG_LEVELS)
      .default("info")
      .describe(
        "the lowest level logged: fatal, error, warn, info, debug (adds the full config at start and each kernel command), trace or silent; uplinkd run --log-level overrides it",
      ),
  })
  .strict()
  .describe(
    "the daemon's log: text on a terminal, JSON lines otherwise (journald, a pipe, a file)",
  );

/** The whole config file. */
export const configSchema = z
  .object({
    private_targets: z
      .boolean()
      .optional()
      .describe(
        "true when health targets in documentation, private, shared or unique-local ranges are meant (a test network such as uplinkd's lab, or a monitoring host inside the ISP): check does not warn about them",
      ),
    lan: z.array(interfaceName).min(1).describe("interfaces whose new connections are balanced"),
    uplinks: z.array(uplinkSchema).min(1).describe("the internet uplinks, one per ISP"),
    health: healthSchema.prefault({}),
    dataplane: dataplaneSchema.prefault({}),
    control: controlSchema.prefault({}),
    // Lazy: notify/schema.ts imports this module (for `duration`), so either may load first.
    notify: z.lazy(() => notifySchema).optional(),
    dns: dnsSchema
      .optional()
      .describe("the LAN's DNS resolver (dnsmasq): domain steering and servers that follow health"),
    sets: z
      .record(nftName, z.array(prefix).min(1))
      .default({})
      .describe("named sets of addresses and prefixes, used in rules as @name"),
    policies: z
      .record(nftName, policySchema)
      .default({})
      .describe(
        "named sets of uplinks with weights and tiers; 'default' (every uplink) may be redefined",
      ),
    rules: z
      .array(ruleSchema)
      .default([])
      .describe("steering rules for new LAN connections; the first that matches decides"),
    tunnels: z
      .array(tunnelSchema)
      .default([])
      .describe(
        "the router's own VPN endpoints, each steered by a policy; when its uplink changes the tunnel's flow is cleared, so the peer sees the new address at once",
      ),
    time_zone: timeZone
      .optional()
      .describe(
        "IANA time zone (Europe/Berlin) of the rules' schedules; default the router's local time zone",
      ),
    router_policy: z
      .string()
      .default("default")
      .describe("the policy the router's own connections follow"),
    last_resort: z
      .enum(["all", "unreachable", "blackhole"])
      .default("all")
      .describe(
        "when no uplink of the default policy is usable: keep using all, reject, or drop new connections",
      ),
    ha: haSchema.optional(),
    speedtest: speedtestSchema.optional(),
    log: logSchema.prefault({}),
    state_dir: z
      .string()
      .min(1)
      .default("/var/lib/uplinkd")
      .describe(
        "directory where uplinkd keeps state across restarts (quota usage, speed test results)",
      ),
  })
  .strict()
  .meta({
    title: "uplinkd configuration",
    description: "uplinkd's config file, by default /etc/uplinkd/uplinkd.yaml",
  });

/** A validated config with every default filled in (durations in ms). */
export type Config = z.output<typeof configSchema>;
/** One uplink of a validated config. */
export type UplinkConfig = z.output<typeof uplinkSchema>;
/** Health settings with every default filled in. */
export type HealthConfig = z.output<typeof healthSchema>;
/** dnsmasq settings with every default filled in (set_timeout in ms). */
export type DnsmasqConfig = z.output<typeof dnsmasqSchema>;
/** A quota of an uplink, with every default filled in (limit in bytes). */
export type QuotaConfig = z.output<typeof quotaSchema>;
/** The `speedtest` section with every default filled in (durations in ms). */
export type { SpeedtestConfig, BandwidthConfig, Direction } from "./speedtest.js";
/** Kernel resource settings with every default filled in. */
export type DataplaneConfig = z.output<typeof dataplaneSchema>;

/**
 * The health settings an uplink runs with: its own `health` fields, the rest
 * from the top-level `health` (durations in ms).
 */
export function uplinkHealth(config: Config, uplink: UplinkConfig): HealthConfig {
  const own = uplink.health ?? {};
  return {
    targets: own.targets ?? config.health.targets,
    interval: own.interval ?? config.health.interval,
    timeout: own.timeout ?? config.health.timeout,
    ...optional("timeout_min", own.timeout_min ?? config.health.timeout_min),
    ...optional("timeout_max", own.timeout_max ?? config.health.timeout_max),
    down: own.down ?? config.health.down,
    up: own.up ?? config.health.up,
    reliability: own.reliability ?? config.health.reliability,
    loss_fail: own.loss_fail ?? config.health.loss_fail,
    loss_recover: own.loss_recover ?? config.health.loss_recover,
    ...optional("rtt_fail", own.rtt_fail ?? config.health.rtt_fail),
    ...optional("rtt_recover", own.rtt_recover ?? config.health.rtt_recover),
    flap: own.flap ?? config.health.flap,
    probes: own.probes ?? config.health.probes,
    passive: config.health.passive,
  };
}

/** The id of the uplink at `index` (0-based) in `config.uplinks`: its `id`, else its 1-based position. */
export function uplinkId(uplink: UplinkConfig, index: number): number {
  return uplink.id ?? index + 1;
}

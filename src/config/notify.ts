/**
 * The `notify` part of the config: where uplink transitions are reported
 * (email over SMTP, webhooks, hook scripts) and how bursts are coalesced.
 * Mounted at the top-level key `notify` of the config schema; `{}` (or no
 * `notify` key at all) is valid and configures no channel.
 *
 * Durations accept `200ms`, `2s`, `1m` or a number of ms and come out in ms.
 */
import { z } from "zod";
import { duration, formatDuration } from "./duration.js";
import { safePath } from "./names.js";

/** Longest coalescing window accepted, in ms (10 min): longer would hide an outage. */
export const MAX_COALESCE_MS = 600_000;

/** Most retries accepted for one message on one channel. */
export const MAX_RETRIES = 10;

/** A duration (as `duration`) bounded to `1..maxMs` ms. */
function positiveDuration(maxMs: number) {
  return duration.pipe(
    z
      .number()
      .positive("must be more than 0ms")
      .max(maxMs, `must be at most ${formatDuration(maxMs)}`),
  );
}

/** An email address as an SMTP envelope takes it: `local@domain`, no display name. */
const emailAddress = z
  .string()
  .regex(/^[^\s@<>",;]+@[^\s@<>",;]+$/, "must be an email address such as ops@example.net");

/** `From:`: an address, or a display name and an address (`uplinkd <router@example.net>`). */
const fromAddress = z
  .string()
  .regex(
    /^(?:[^\s@<>",;]+@[^\s@<>",;]+|[^<>\r\n]*<[^\s@<>",;]+@[^\s@<>",;]+>)$/,
    "must be an email address, optionally with a name: router@example.net or uplinkd <router@example.net>",
  );

/** Email over SMTP. */
export const emailSchema = z
  .object({
    host: z
      .string()
      .min(1)
      .describe("SMTP server (relay or submission server) host name or address"),
    port: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe("SMTP port; default 587 for starttls, 465 for tls, 25 for none"),
    security: z
      .enum(["starttls", "tls", "none"])
      .default("starttls")
      .describe(
        "starttls: plain connection upgraded with STARTTLS, which is required; tls: TLS from the first byte (port 465); none: no encryption (a relay on the router itself)",
      ),
    username: z.string().min(1).optional().describe("SMTP AUTH user name"),
    password: z
      .string()
      .min(1)
      .optional()
      .meta({ secret: true })
      .describe("SMTP AUTH password; prefer password_file when the config is readable by others"),
    password_file: safePath
      .optional()
      .describe(
        "file holding the SMTP AUTH password (trailing newline ignored), read at each send",
      ),
    tls_verify: z
      .boolean()
      .default(true)
      .describe("verify the server's certificate and name; turn off only for a relay you trust"),
    ca_file: safePath
      .optional()
      .describe(
        "PEM file of the CA (or self-signed certificate) the server's certificate must chain to",
      ),
    from: fromAddress.describe("the From: header and envelope sender"),
    to: z.array(emailAddress).min(1).describe("recipients"),
    subject_prefix: z
      .string()
      .regex(/^[^\p{Cc}\p{Cf}\u2028\u2029]*$/u, "must be one line without control characters")
      .max(100)
      .default("[uplinkd]")
      .describe('put before every subject, e.g. "[uplinkd] isp1 down"'),
    timeout: positiveDuration(300_000)
      .prefault("30s")
      .describe("one delivery attempt (connect, TLS, AUTH, DATA) must finish within this"),
    retries: z
      .number()
      .int()
      .min(0)
      .max(MAX_RETRIES)
      .default(2)
      .describe("further attempts after a failed one (not after a permanent 5xx rejection)"),
    backoff: positiveDuration(300_000)
      .prefault("5s")
      .describe("wait before the first retry; doubled before each further one"),
  })
  .strict()
  .superRefine((email, ctx) => {
    if (email.password !== undefined && email.password_file !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["password_file"],
        message: "give password or password_file, not both",
      });
    }
    const hasPassword = email.password !== undefined || email.password_file !== undefined;
    if (hasPassword && email.username === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["username"],
        message: "a password needs a username",
      });
    }
    if (email.username !== undefined && !hasPassword) {
      ctx.addIssue({
        code: "custom",
        path: ["password"],
        message: "a username needs password or password_file",
      });
    }
  });

/** An HTTP header name (RFC 9110 token). */
const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "must be an HTTP header name such as Authorization");

/** A channel's label in logs and notify-test output (1..64 characters); `fallback` names the default. */
function channelLabel(fallback: string) {
  return z
    .string()
    .min(1)
    .max(64)
    .regex(/^[^\p{Cc}\p{Cf}\u2028\u2029]*$/u, "must hold no control or format characters")
    .optional()
    .describe(`label in logs and notify-test output; default: ${fallback}`);
}

/** A webhook: the notification as a JSON POST. */
export const webhookSchema = z
  .object({
    name: channelLabel("the URL's origin"),
    url: z
      .url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })
      .meta({ secret: true })
      .describe("where the JSON is POSTed; only its origin is ever logged"),
    headers: z
      .record(
        headerName,
        z
          .string()
          .regex(/^[^\r\n\0]*$/, "must be one line")
          .meta({ secret: true }),
      )
      .default({})
      .describe("extra request headers, e.g. Authorization: Bearer ..."),
    timeout: positiveDuration(120_000)
      .prefault("5s")
      .describe("one attempt (connect, send, response) must finish within this"),
    retries: z
      .number()
      .int()
      .min(0)
      .max(MAX_RETRIES)
      .default(3)
      .describe(
        "further attempts after a network error, a timeout, 408, 429 or 5xx (not after other answers)",
      ),
    backoff: positiveDuration(300_000)
      .prefault("1s")
      .describe("wait before the first retry; doubled before each further one"),
  })
  .strict();

/**
 * Variables every hook gets from the notification itself (see
 * `hookEnvironment` in notify/message.ts); `hooks[].env` cannot set them.
 */
export const HOOK_NOTIFICATION_VARIABLES: readonly string[] = [
  "EVENT",
  "UPLINK",
  "FAMILY",
  "INTERFACE",
  "STATE",
  "PREVIOUS_STATE",
  "REASON",
  "TIMESTAMP",
  "LOSS",
  "RTT",
  "EVENTS_JSON",
  "EVENT_COUNT",
  "NODE",
  "ROLE",
  "PREVIOUS_ROLE",
  "QUOTA_STEP",
  "QUOTA_USED_BYTES",
  "QUOTA_LIMIT_BYTES",
  "QUOTA_PERIOD_END",
];

/** An environment variable's name, as a shell would take it. */
const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "must be a variable name: letters, digits and _")
  .refine((name) => !HOOK_NOTIFICATION_VARIABLES.includes(name), {
    message: "is set by the notification itself; choose another name",
  });

/** An environment variable's value: any text without a NUL byte (an environment cannot hold one). */
const envText = z
  .string()
  .max(4096)
  .regex(/^[^\0]*$/, "must not hold a NUL byte");

/**
 * One `hooks[].env` entry: a value, or `{ value, secret: true }` for a
 * value never printed (the reload diff says `(changed)`). Always comes out
 * as `{ value, secret }`.
 */
const hookEnvValue = z
  .union([
    envText.transform((value) => ({ value, secret: false })),
    z
      .object({
        value: envText.describe("the value"),
        secret: z
          .boolean()
          .default(false)
          .describe(
            "true: a secret (an API key): never printed, only `(changed)` in a reload diff",
          ),
      })
      .strict(),
  ])
  .meta({ secret: "when secret: true" });

/** A hook script: run without a shell, with the transition in environment variables. */
export const hookSchema = z
  .object({
    name: channelLabel("the program's path"),
    command: z
      .array(z.string().regex(/^[^\0]*$/, "must not hold a NUL byte"))
      .min(1)
      .refine((argv) => argv[0]?.startsWith("/") === true, {
        message: "the program must be an absolute path, e.g. /usr/local/bin/on-uplink-change",
      })
      .describe("program and arguments, run as given: no shell, no word splitting, no expansion"),
    run: z
      .enum(["transition", "burst"])
      .default("transition")
      .describe(
        "transition: once per transition, at once, in order; burst: once per coalesced burst, when the email and webhooks go",
      ),
    timeout: positiveDuration(600_000)
      .prefault("10s")
      .describe("after this the script's process group gets SIGTERM, 2s later SIGKILL"),
    env: z
      .record(envName, hookEnvValue)
      .default({})
      .describe(
        "extra environment variables: NAME: value, or NAME: { value: ..., secret: true } for a secret never printed",
      ),
  })
  .strict();

/** The `notify` section. */
export const notifySchema = z
  .object({
    coalesce: duration
      .pipe(z.number().max(MAX_COALESCE_MS, `must be at most ${formatDuration(MAX_COALESCE_MS)}`))
      .prefault("2s")
      .describe(
        "the first transition opens a window of this length; every transition in it goes into one message (0: only transitions reported together share one)",
      ),
    states: z
      .array(z.enum(["init", "up", "degraded", "down", "disabled"]))
      .min(1)
      .default(["up", "degraded", "down", "disabled"])
      .describe("notify about transitions into these states"),
    email: emailSchema.optional(),
    webhooks: z.array(webhookSchema).default([]),
    hooks: z.array(hookSchema).default([]),
  })
  .strict()
  .describe("notifications on uplink transitions: email, webhooks, hook scripts");

/** The `notify` section with every default filled in (durations in ms). */
export type NotifyConfig = z.output<typeof notifySchema>;
/** Email settings with defaults filled in (durations in ms). */
export type EmailConfig = z.output<typeof emailSchema>;
/** One webhook with defaults filled in (durations in ms). */
export type WebhookConfig = z.output<typeof webhookSchema>;
/** One hook script with defaults filled in (durations in ms). */
export type HookConfig = z.output<typeof hookSchema>;

/**
 * What a notification says, as pure functions of the transitions: the
 * email subject and text, the webhook's JSON body, a hook script's
 * environment. No I/O here; the channels send what these return.
 */
import type { Family } from "../kernel/types.js";
import type { HaRoleChange } from "../ha/part.js";
import type { QuotaAlert } from "../quota/meter.js";
import type { Transition, UplinkState } from "../uplink-health.js";
import { cleanText } from "../text.js";

/** A transition as notified: the health event plus the uplink's interface. */
export interface NotifiedTransition extends Transition {
  /** The uplink's interface (e.g. `wan1`); null when unknown. */
  interface: string | null;
}

/**
 * One uplink's state now, as the body's "Uplinks now" list shows it. The
 * daemon's `UplinkStatus` (from `uplinkd status --json`) fits this shape.
 */
export interface NotifyUplinkStatus {
  name: string;
  interface?: string | null;
  state: UplinkState;
  /** Loss %, 0..100; null when unknown. */
  loss: number | null;
  /** Mean RTT, ms; null when unknown. */
  rtt: number | null;
  /** The uplink's IPv6 state (as in `uplinkd status --json`); null or absent without IPv6. */
  ipv6?: { state: UplinkState | "unmonitored"; loss: number | null; rtt: number | null } | null;
}

/** Everything one message is made of. */
export interface Notification {
  /**
   * `transitions`: a burst of one or more transitions; `test`: `uplinkd
   * notify-test`; `role`: this router of an HA pair changed its VRRP role.
   */
  kind: "transitions" | "test" | "role" | "quota";
  /** The router's host name. */
  host: string;
  /** ISO time the message was composed. */
  time: string;
  /** In the order they happened; empty for a test. */
  transitions: readonly NotifiedTransition[];
  /** Transitions of the burst left out because it was too long (0 normally). */
  omitted: number;
  /** Every uplink's state when the message was composed; null when not provided. */
  uplinks: readonly NotifyUplinkStatus[] | null;
  /** The role change of a `role` message (config `ha`); absent otherwise. */
  role?: HaRoleChange;
  /** The quota step of a `quota` message (config `uplinks[].quota`); absent otherwise. */
  quota?: QuotaAlert;
}

/** `IPv4` or `IPv6`. */
function familyName(family: Family): string {
  return family === 6 ? "IPv6" : "IPv4";
}

/**
 * The subject without prefix: `isp1 IPv4 down` (or `isp1 IPv6 down`) for
 * one transition, `3 uplink changes` for a burst, `test notification` for a
 * test.
 */
export function summary(notification: Notification): string {
  if (notification.kind === "test") return "test notification";
  if (notification.kind === "role" && notification.role !== undefined) {
    return `router ${notification.role.node} ${notification.role.to}`;
  }
  if (notification.kind === "quota" && notification.quota !== undefined) {
    const q = notification.quota;
    return q.step === "exceeded"
      ? `${q.uplink} quota exceeded`
      : `${q.uplink} quota ${q.step}% used`;
  }
  const count = notification.transitions.length + notification.omitted;
  const only = notification.transitions[0];
  if (count === 1 && only !== undefined) {
    return `${only.uplink} ${familyName(only.family)} ${only.to}`;
  }
  return `${count} uplink changes`;
}

/**
 * The email subject: `prefix summary`, e.g. `[uplinkd] isp1 down`; without
 * a prefix, the summary alone. Cleaned as {@link cleanText}: line breaks
 * and other control characters become spaces, escape sequences go.
 */
export function emailSubject(notification: Notification, prefix: string): string {
  const subject = prefix ? `${prefix} ${summary(notification)}` : summary(notification);
  return cleanText(subject);
}

/** Loss as text: `12.5%`, or `unknown`. */
export function formatLoss(loss: number | null): string {
  return loss === null ? "unknown" : `${round1(loss)}%`;
}

/** RTT as text: `8.1 ms`, or `unknown`. */
export function formatRtt(rtt: number | null): string {
  return rtt === null ? "unknown" : `${round1(rtt)} ms`;
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

function uplinkLabel(name: string, iface: string | null | undefined): string {
  return iface ? `${name} (${iface})` : name;
}

/**
 * The plain-text body (lines end with `\n`): a headline, each transition
 * with time, family (IPv4/IPv6), from → to, reason, loss and RTT, then the
 * state of every uplink when known (IPv6 on a line of its own), then the
 * sending host. Each line is cleaned as {@link cleanText}: a reason text
 * (it may quote a probe's answer) cannot add lines, carriage returns or
 * escape sequences to the mail.
 */
export function textBody(notification: Notification): string {
  const lines: string[] = [];
  if (notification.kind === "test") {
    lines.push(
      `Test notification from uplinkd on ${notification.host} (uplinkd notify-test).`,
      "Nothing changed; this only shows that notifications arrive.",
    );
  } else if (notification.quota !== undefined) {
    const q = notification.quota;
    lines.push(
      `${summary(notification)} on ${notification.host}`,
      "",
      `${notification.time}  uplink ${q.uplink}: ${q.usedBytes} of ${q.limitBytes} bytes used (${round1(q.percent)}%); the period ends ${q.periodEnd}`,
    );
  } else if (notification.role !== undefined) {
    const r = notification.role;
    lines.push(
      `${summary(notification)} on ${notification.host}`,
      "",
      `${r.time}  router ${r.node} (HA pair): ${r.from} → ${r.to}` +
        (r.priority === null ? "" : ` (VRRP priority ${r.priority})`),
    );
  } else {
    lines.push(`${summary(notification)} on ${notification.host}`);
    for (const t of notification.transitions) {
      lines.push(
        "",
        `${t.time}  ${uplinkLabel(t.uplink, t.interface)} ${familyName(t.family)}: ${t.from} → ${t.to}`,
        `  reason: ${t.reason || "(none given)"}`,
        `  loss: ${formatLoss(t.loss)}, RTT: ${formatRtt(t.rtt)}`,
      );
    }
    if (notification.omitted > 0) {
      const more = notification.omitted;
      lines.push("", `(${more} more transition${more === 1 ? "" : "s"} not listed)`);
    }
  }
  if (notification.uplinks !== null) {
    lines.push("", "Uplinks now:");
    if (notification.uplinks.length === 0) lines.push("  (none)");
    for (const u of notification.uplinks) {
      const ipv6 = u.ipv6 ?? null;
      lines.push(
        `  ${uplinkLabel(u.name, u.interface)}: ${ipv6 === null ? "" : "IPv4 "}${u.state}, loss ${formatLoss(u.loss)}, RTT ${formatRtt(u.rtt)}`,
      );
      if (ipv6 !== null) {
        lines.push(
          `  ${" ".repeat(uplinkLabel(u.name, u.interface).length)}  IPv6 ${ipv6.state}, loss ${formatLoss(ipv6.loss)}, RTT ${formatRtt(ipv6.rtt)}`,
        );
      }
    }
  }
  lines.push("", `-- uplinkd on ${notification.host}, ${notification.time}`);
  return `${lines.map(cleanText).join("\n")}\n`;
}

/** The JSON body POSTed to every webhook. Loss in %, RTT in ms, times ISO. */
export interface WebhookPayload {
  /** `transitions` or `test`. */
  type: Notification["kind"];
  host: string;
  /** ISO time the message was composed. */
  time: string;
  /** The subject without prefix: `isp1 down`, `3 uplink changes`, `test notification`. */
  summary: string;
  transitions: {
    time: string;
    uplink: string;
    /** 4: the uplink's IPv4 state changed; 6: its IPv6 state. */
    family: Family;
    interface: string | null;
    from: UplinkState;
    to: UplinkState;
    reason: string;
    loss: number | null;
    rtt: number | null;
  }[];
  /** Transitions left out of an overlong burst. */
  omitted: number;
  /** `role` messages: the router's VRRP role change (config `ha`); absent otherwise. */
  role?: HaRoleChange;
  /** `quota` messages: the uplink, the step (a warn %, or `exceeded`), bytes used and allowed; absent otherwise. */
  quota?: QuotaAlert;
  /** Every uplink now; null when not provided. */
  uplinks:
    | {
        name: string;
        interface: string | null;
        state: UplinkState;
        loss: number | null;
        rtt: number | null;
        /** The uplink's IPv6 state; null without IPv6. */
        ipv6: {
          state: UplinkState | "unmonitored";
          loss: number | null;
          rtt: number | null;
        } | null;
      }[]
    | null;
}

/**
 * The webhook body of a notification (see {@link WebhookPayload}). The
 * host and each transition's reason, uplink and interface are cleaned as
 * {@link cleanText} (JSON escapes C0 controls, not ANSI text, C1 or U+202E).
 */
export function webhookPayload(notification: Notification): WebhookPayload {
  return {
    type: notification.kind,
    host: cleanText(notification.host),
    time: notification.time,
    summary: cleanText(summary(notification)),
    transitions: notification.transitions.map(transitionJson),
    omitted: notification.omitted,
    ...(notification.role === undefined ? {} : { role: notification.role }),
    ...(notification.quota === undefined ? {} : { quota: notification.quota }),
    uplinks:
      notification.uplinks === null
        ? null
        : notification.uplinks.map((u) => ({
            name: u.name,
            interface: u.interface ?? null,
            state: u.state,
            loss: u.loss,
            rtt: u.rtt,
            ipv6:
              u.ipv6 === undefined || u.ipv6 === null
                ? null
                : { state: u.ipv6.state, loss: u.ipv6.loss, rtt: u.ipv6.rtt },
          })),
  };
}

function transitionJson(t: NotifiedTransition): WebhookPayload["transitions"][number] {
  return {
    time: t.time,
    uplink: cleanText(t.uplink),
    family: t.family,
    interface: t.interface === null ? null : cleanText(t.interface),
    from: t.from,
    to: t.to,
    reason: cleanText(t.reason),
    loss: t.loss,
    rtt: t.rtt,
  };
}

/** Why a hook script runs: one transition, one burst, or `uplinkd notify-test`. */
export type HookEvent = "transition" | "burst" | "test" | "role" | "quota";

/**
 * The variables a hook script gets (on top of the daemon's environment):
 *
 * - `EVENT`: `transition`, `burst` or `test`.
 * - `UPLINK`, `FAMILY` (`4` or `6`: which of the uplink's states changed),
 *   `INTERFACE`, `STATE`, `PREVIOUS_STATE`, `REASON`,
 *   `TIMESTAMP` (ISO), `LOSS` (%, e.g. `12.5`), `RTT` (ms, e.g. `8.1`):
 *   the transition, or for a burst its last one; empty when unknown, and all
 *   empty for a test.
 * - `EVENTS_JSON`: a JSON array of every transition of the run (one for
 *   `transition`, all for `burst`, none for `test`), each as in
 *   {@link WebhookPayload}.
 * - `EVENT_COUNT`: the number of transitions (including any omitted).
 * - `role` (config `ha`): `NODE`, `ROLE`, `PREVIOUS_ROLE` (master, backup,
 *   fault, stopped, unknown) and `TIMESTAMP`; the transition variables empty.
 * - `quota`: `UPLINK`, `QUOTA_STEP` (a warn percentage, or `exceeded`),
 *   `QUOTA_USED_BYTES`, `QUOTA_LIMIT_BYTES`, `QUOTA_PERIOD_END` (ISO).
 *
 * Every value is cleaned as {@link cleanText} (a reason text may quote a
 * probe's answer): no NUL (which an environment cannot hold), line break,
 * other control character or escape sequence reaches the script.
 * `EVENTS_JSON` is JSON of cleaned transitions.
 */
export function hookEnvironment(
  event: HookEvent,
  transitions: readonly NotifiedTransition[],
  omitted = 0,
  role?: HaRoleChange,
  quota?: QuotaAlert,
): Record<string, string> {
  const last = transitions.at(-1);
  const env: Record<string, string> = {
    EVENT: event,
    UPLINK: last?.uplink ?? "",
    FAMILY: last === undefined ? "" : String(last.family),
    INTERFACE: last?.interface ?? "",
    STATE: last?.to ?? "",
    PREVIOUS_STATE: last?.from ?? "",
    REASON: last?.reason ?? "",
    TIMESTAMP: role?.time ?? last?.time ?? "",
    LOSS: last?.loss == null ? "" : String(round1(last.loss)),
    RTT: last?.rtt == null ? "" : String(round1(last.rtt)),
    EVENTS_JSON: JSON.stringify(transitions.map(transitionJson)),
    EVENT_COUNT: String(transitions.length + omitted),
    ...(role === undefined ? {} : { NODE: role.node, ROLE: role.to, PREVIOUS_ROLE: role.from }),
    ...(quota === undefined
      ? {}
      : {
          UPLINK: quota.uplink,
          QUOTA_STEP: String(quota.step),
          QUOTA_USED_BYTES: String(quota.usedBytes),
          QUOTA_LIMIT_BYTES: String(quota.limitBytes),
          QUOTA_PERIOD_END: quota.periodEnd,
        }),
  };
  for (const key of Object.keys(env)) {
    if (key !== "EVENTS_JSON") env[key] = cleanText(env[key] ?? "");
  }
  return env;
}

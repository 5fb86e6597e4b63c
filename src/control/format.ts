/**
 * Human-readable forms of what the control API returns.
 */
import type { QuotaStatus } from "../quota/meter.js";
import type { BandwidthStatus, SpeedtestResult } from "../speedtest/state.js";
import { formatBytes as formatQuotaBytes } from "../config/quota.js";
import type { HaRoleChange } from "../ha/part.js";
import { formatRate } from "../config/rate.js";
import { shares } from "../policy/load.js";
import type { Transition } from "../uplink-health.js";
import type { ScheduleRuleStatus } from "../controller/schedule.js";
import type { MaintenanceResult, ReloadResult, StatusDocument } from "./api.js";
import { cleanText } from "../text.js";

/** A time in ms with two decimals below 10 ms (lab links answer in 0.05 ms), else one. */
function ms(value: number): string {
  return value < 10 ? value.toFixed(2) : value.toFixed(1);
}

/** A byte count in IEC units: `512B`, `1.5KiB`, `20.3GiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value}B` : `${value.toFixed(value < 10 ? 2 : 1)}${units[unit] ?? ""}`;
}

/** A duration in ms as `45s`, `5m12s`, `3h04m`, `2d05h`. */
export function formatAge(msAgo: number): string {
  const s = Math.max(0, Math.floor(msAgo / 1000));
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d${pad(Math.floor((s % 86_400) / 3600))}h`;
}

/** An ISO time as `2026-11-21 00:33:18Z`. */
function when(iso: string): string {
  return iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/**
 * Columns padded to their widest cell, two spaces apart. Every cell is
 * cleaned first ({@link cleanText}): a reason or name with a line break or
 * an escape sequence stays in its cell.
 */
function table(header: string[], dirty: string[][]): string {
  const rows = dirty.map((row) => row.map(cleanText));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

/** The ADDRESS cell: the address, `(configured)` when it is the uplink's `address`, or what it waits for. */
function addressText(u: StatusDocument["uplinks"][number]): string {
  if (u.address === null) {
    const waiting = u.waitingForAddress ?? null;
    return waiting === null ? "-" : `- (waiting for ${waiting})`;
  }
  return u.addressSource === "configured" ? `${u.address} (configured)` : u.address;
}

/**
 * The status table of `uplinkd status`: one row per uplink with its state,
 * since when (and for how long), loss, RTT, jitter, weight, tier, whether it
 * takes new connections, connections now, bytes received and sent on its
 * interface, address (marked `(configured)` when it is the uplink's
 * `address`) and gateway. `-` marks what is not known. Then, when the
 * config has `dst_domain` rules, one row per domain set: its rule, family,
 * number of addresses, and names. The main table is the uplinks' IPv4; when
 * an uplink has IPv6, an IPv6 section follows (see {@link formatIpv6}).
 *
 * @param now epoch ms the ages are computed against.
 */
export function formatStatus(status: StatusDocument, now = Date.now()): string {
  const header = [
    "UPLINK",
    "IFACE",
    "STATE",
    "SINCE",
    "FOR",
    "LOSS",
    "RTT",
    "JITTER",
    "W",
    "TIER",
    "ACTIVE",
    "CONNS",
    "RX",
    "TX",
    "DOWN/UP",
    "ADDRESS",
    "GATEWAY",
  ];
  const rows = status.uplinks.map((u) => [
    u.name,
    u.interface,
    u.state,
    when(u.since),
    formatAge(now - Date.parse(u.since)),
    u.loss === null ? "-" : `${u.loss.toFixed(1)}%`,
    u.rtt === null ? "-" : `${ms(u.rtt)}ms`,
    u.jitter === null ? "-" : `${ms(u.jitter)}ms`,
    String(u.weight),
    String(u.tier),
    u.active ? "yes" : "no",
    u.connections === null ? "-" : String(u.connections),
    u.rxBytes === null ? "-" : formatBytes(u.rxBytes),
    u.txBytes === null ? "-" : formatBytes(u.txBytes),
    u.throughput === null ? "-" : `${formatRate(u.throughput.down)}/${formatRate(u.throughput.up)}`,
    addressText(u),
    u.gateway ?? "-",
  ]);
  // The QUOTA column only when some uplink has a quota.
  if (status.uplinks.some((u) => u.quota != null)) {
    header.push("QUOTA");
    status.uplinks.forEach((u, i) => rows[i]?.push(u.quota == null ? "-" : formatQuota(u.quota)));
  }
  // The CAPACITY column only when some uplink has a bandwidth: `10mbit/2mbit`, `(test)` when measured.
  if (status.uplinks.some((u) => u.bandwidth != null)) {
    header.push("CAPACITY");
    status.uplinks.forEach((u, i) => rows[i]?.push(formatCapacity(u.bandwidth ?? null)));
  }
  const domains = status.domains;
  const sets = domains.map((d) => [
    d.set,
    d.ruleName ?? `#${d.rule}`,
    `IPv${d.family}`,
    d.elements === null ? "-" : String(d.elements),
    d.domains.join(" "),
  ]);
  const domainTable =
    domains.length === 0
      ? ""
      : `\n${table(["DOMAIN SET", "RULE", "FAMILY", "ADDRESSES", "NAMES"], sets)}`;
  return (
    table(header, rows) +
    (status.reason == null ? "" : `\nlast resort: ${cleanText(status.reason)}\n`) +
    formatIpv6(status, now) +
    formatPolicies(status) +
    formatSchedules(status.schedules ?? [])
      .map((line) => `${cleanText(line)}\n`)
      .join("") +
    domainTable +
    formatTunnels(status) +
    formatHa(status)
  );
}

/**
 * The tunnels (config `tunnels`), one row each: name, endpoint, protocol,
 * policy and the uplink its flow is steered to now (`-`: none); empty
 * without tunnels.
 */
export function formatTunnels(status: StatusDocument): string {
  const tunnels = status.tunnels ?? [];
  if (tunnels.length === 0) return "";
  return `\n${table(
    ["TUNNEL", "ENDPOINT", "PROTO", "POLICY", "UPLINK"],
    tunnels.map((t) => [
      cleanText(t.name),
      cleanText(t.endpoint),
      t.protocol,
      cleanText(t.policy),
      t.uplink === null ? "-" : cleanText(t.uplink),
    ]),
  )}`;
}

/**
 * An uplink's quota for the table: `62% of 20GiB, resets 15 Dec`, or
 * `exceeded: 21GiB of 20GiB, resets 15 Dec`. The reset day is the period's
 * end in local time.
 */
export function formatQuota(quota: QuotaStatus): string {
  const end = new Date(quota.period_end);
  const resets = `resets ${end.getDate()} ${end.toLocaleString("en-GB", { month: "short" })}`;
  const limit = formatQuotaBytes(quota.limit_bytes);
  if (quota.exceeded)
    return `exceeded: ${formatQuotaBytes(quota.used_bytes)} of ${limit}, ${resets}`;
  const percent = Math.floor((quota.used_bytes / quota.limit_bytes) * 100);
  return `${percent}% of ${limit}, ${resets}`;
}

/** Width the IPv6 section keeps to (its detail lines wrap there). */
const IPV6_WIDTH = 80;

/**
 * The IPv6 section of the status table, empty when no uplink has IPv6: one
 * row per uplink with IPv6 (state, for how long, loss, RTT, jitter, whether
 * it takes new IPv6 connections), under it an indented line with its global
 * address, `via` gateway, `prefix` and, unless it is up, the reason, wrapped
 * at 80 columns (IPv6 addresses are long, so they get a line of their own
 * instead of widening the columns). Uplinks without IPv6 are left out.
 *
 * @param now epoch ms the ages are computed against.
 */
export function formatIpv6(status: StatusDocument, now = Date.now()): string {
  const lines: string[] = [];
  const rows: string[][] = [];
  const details: string[][] = [];
  for (const u of status.uplinks) {
    const v6 = u.ipv6;
    if (v6 === null) continue;
    rows.push([
      u.name,
      v6.state === "unmonitored" ? "unmonitored (follows IPv4)" : v6.state,
      formatAge(now - Date.parse(v6.since)),
      v6.loss === null ? "-" : `${v6.loss.toFixed(1)}%`,
      v6.rtt === null ? "-" : `${ms(v6.rtt)}ms`,
      v6.jitter === null ? "-" : `${ms(v6.jitter)}ms`,
      v6.active ? "yes" : "no",
    ]);
    details.push([
      v6.address ?? "no global address",
      ...(v6.gateway === null ? [] : [`via ${v6.gateway}`]),
      ...(v6.prefix === null ? [] : [`prefix ${v6.prefix}`]),
      ...(v6.state === "up" || v6.reason === "" ? [] : [`(${cleanText(v6.reason)})`]),
    ]);
  }
  if (rows.length === 0) return "";
  const header = ["UPLINK", "IPv6", "FOR", "LOSS", "RTT", "JITTER", "ACTIVE"];
  const [head = "", ...body] = table(header, rows).trimEnd().split("\n");
  lines.push(head);
  body.forEach((row, i) => {
    lines.push(row, ...wrap(details[i] ?? [], "  ", IPV6_WIDTH));
  });
  return `\n${lines.join("\n")}\n`;
}

/**
 * `pieces` joined by two spaces into lines of at most `width` after
 * `indent`; a piece too long for a line of its own is broken at its spaces
 * (a single word longer than a line stays whole).
 */
function wrap(pieces: readonly string[], indent: string, width: number): string[] {
  const room = width - indent.length;
  const lines: string[] = [];
  let line = "";
  const add = (text: string, gap: string): void => {
    if (line !== "" && line.length + gap.length + text.length > room) {
      lines.push(indent + line);
      line = "";
    }
    line = line === "" ? text : `${line}${gap}${text}`;
  };
  for (const piece of pieces) {
    if (piece.length <= room) {
      add(piece, "  ");
      continue;
    }
    piece.split(" ").forEach((word, i) => {
      add(word, i === 0 ? "  " : " ");
    });
  }
  if (line !== "") lines.push(indent + line);
  return lines;
}

/**
 * With `ha`: one line with this router's VRRP role, since when, its
 * priority and health score, and the peer's role as far as known
 * (`ha: router a master since 14:02:03 (priority 20 + score 70); peer b unknown`).
 */
export function formatHa(status: StatusDocument): string {
  const ha = status.ha;
  if (ha === undefined || ha === null) return "";
  const since = ha.since === null ? "" : ` since ${when(ha.since)}`;
  const score = ha.score === null ? "no score yet" : `score ${ha.score}`;
  const peerScore = ha.peer.score === null ? "" : ` (score ${ha.peer.score})`;
  return `ha: router ${ha.node} ${ha.role}${since} (priority ${ha.priority}, ${score}); peer ${ha.peer.name} ${ha.peer.role}${peerScore}\n`;
}

/**
 * One line per policy: where its new connections go now, as shares of the
 * effective weights (`policy default: isp1 20%, isp2 80%`), or its last resort.
 */
function formatPolicies(status: StatusDocument): string {
  return Object.entries(status.policies)
    .map(([name, choice]) => {
      if (choice.kind !== "balance") return `policy ${name}: ${choice.kind}\n`;
      const parts = [...shares(choice.members)]
        .filter(([, pct]) => pct > 0)
        .map(([uplink, pct]) => `${uplink} ${Math.round(pct)}%`);
      return `policy ${name}: ${parts.length === 0 ? "none" : parts.join(", ")}\n`;
    })
    .join("");
}

/**
 * One line per schedule rule: whether it applies to new connections now and
 * when its next window edge comes (`rule "backup": not in force (policy
 * blackhole) until 2026-12-08 17:00:00Z`); none without schedule rules.
 */
export function formatSchedules(schedules: readonly ScheduleRuleStatus[]): string[] {
  return schedules.map((s) => {
    const label = s.name === null ? `rule #${s.index}` : `rule "${s.name}"`;
    const clear = s.onChange === "clear" ? ", on_change: clear" : "";
    return `schedule ${label}: ${s.inForce ? "in force" : "not in force"} (policy ${s.policy}${clear}) until ${when(s.until)}`;
  });
}

/**
 * With `ha`: the role changes of `uplinkd events`, oldest first, one line
 * each (`2026-12-02 14:30:23Z  ha router a: backup -> master (priority 90)`);
 * empty without any.
 */
export function formatRoleEvents(roles: readonly HaRoleChange[]): string {
  return roles
    .map(
      (r) =>
        `${when(r.time)}  ha router ${r.node}: ${r.from} -> ${r.to}` +
        (r.priority === null ? "" : ` (priority ${r.priority})`) +
        "\n",
    )
    .join("");
}

/**
 * The transitions of `uplinkd events`, oldest first: time, uplink, family
 * (`IPv4`/`IPv6`: which of its states changed), `from -> to`, loss and RTT
 * at the time, and the reason.
 */
export function formatEvents(events: readonly Transition[]): string {
  if (events.length === 0) return "no transitions yet\n";
  const rows = events.map((e) => [
    when(e.time),
    e.uplink,
    e.family === 6 ? "IPv6" : "IPv4",
    `${e.from} -> ${e.to}`,
    e.loss === null ? "-" : `${e.loss.toFixed(1)}%`,
    e.rtt === null ? "-" : `${ms(e.rtt)}ms`,
    e.reason,
  ]);
  return table(["TIME", "UPLINK", "FAMILY", "TRANSITION", "LOSS", "RTT", "REASON"], rows);
}

/** One line for `uplinkd disable` / `enable`. */
export function formatMaintenance(result: MaintenanceResult, action: "disable" | "enable"): string {
  const drained = result.drained > 0 ? `; ${result.drained} connections drained` : "";
  if (!result.changed) {
    return action === "disable"
      ? `${result.uplink} was already disabled${drained}\n`
      : `${result.uplink} was not disabled (${result.state})\n`;
  }
  return `${result.uplink}: ${result.state}${drained}\n`;
}

/** What `uplinkd reload` prints: the file and each change. */
export function formatReload(result: ReloadResult): string {
  if (result.changes.length === 0) return `${result.config}: reloaded, no changes\n`;
  return (
    `${result.config}: reloaded, ${result.changes.length} change${result.changes.length === 1 ? "" : "s"}:\n` +
    result.changes.map((c) => `  ${cleanText(c)}\n`).join("")
  );
}

/** Mbit/s with one decimal, or `-` when not measured. */
function mbitOrDash(bitsPerSecond: number | null): string {
  return bitsPerSecond === null ? "-" : `${(bitsPerSecond / 1e6).toFixed(1)} Mbit/s`;
}

/** RTT in ms with one decimal, or `-`. */
function msOrDash(ms: number | null): string {
  return ms === null ? "-" : `${ms.toFixed(1)} ms`;
}

/**
 * A speed test result for `uplinkd speedtest UPLINK`:
 *
 *     isp1: down 9.6 Mbit/s, up 9.5 Mbit/s (4 streams, 10 s each way)
 *     RTT: idle 1.2 ms, during download 95.0 ms, during upload 88.1 ms
 *     used 24.3MiB (12.0MiB down, 12.3MiB up)
 */
export function formatSpeedtest(result: SpeedtestResult): string {
  const seconds = Number((result.duration_ms / 1000).toFixed(1));
  return [
    `${result.uplink}: down ${mbitOrDash(result.down)}, up ${mbitOrDash(result.up)} (${result.streams} streams, ${seconds} s each way)`,
    `RTT: idle ${msOrDash(result.rtt_idle_ms)}, during download ${msOrDash(result.rtt_down_ms)}, during upload ${msOrDash(result.rtt_up_ms)}`,
    `used ${formatQuotaBytes(result.bytes_down + result.bytes_up)} (${formatQuotaBytes(result.bytes_down)} down, ${formatQuotaBytes(result.bytes_up)} up)`,
    "",
  ].join("\n");
}

/** An uplink's capacity for the status table: `40mbit/10mbit`, `9.6mbit/-` plus ` (test)` when measured; `-` without one. */
export function formatCapacity(bandwidth: BandwidthStatus | null): string {
  if (bandwidth === null) return "-";
  const rate = (value: number | null): string => (value === null ? "-" : formatRate(value));
  const text = `${rate(bandwidth.down)}/${rate(bandwidth.up)}`;
  return bandwidth.source === "speedtest" ? `${text} (test)` : text;
}

/**
 * Human-readable forms of what the control API returns.
 */
import type { StatusDocument } from "../daemon.js";

/** A time in ms with two decimals below 10 ms (lab links answer in 0.05 ms), else one. */
function ms(value: number): string {
  return value < 10 ? value.toFixed(2) : value.toFixed(1);
}

/** The status table of `uplinkd status`: one row per uplink. */
export function formatStatus(status: StatusDocument): string {
  const header = [
    "UPLINK",
    "IFACE",
    "STATE",
    "SINCE",
    "LOSS",
    "RTT",
    "JITTER",
    "W",
    "TIER",
    "ACTIVE",
    "ADDRESS",
    "GATEWAY",
  ];
  const rows = status.uplinks.map((u) => [
    u.name,
    u.interface,
    u.state,
    u.since.replace("T", " ").replace(/\.\d+Z$/, "Z"),
    u.loss === null ? "-" : `${u.loss.toFixed(1)}%`,
    u.rtt === null ? "-" : `${ms(u.rtt)}ms`,
    u.jitter === null ? "-" : `${ms(u.jitter)}ms`,
    String(u.weight),
    String(u.tier),
    u.active ? "yes" : "no",
    u.address ?? "-",
    u.gateway ?? "-",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

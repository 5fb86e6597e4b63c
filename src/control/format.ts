/**
 * Human-readable forms of what the control API returns.
 */
import type { StatusDocument } from "../daemon.js";

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
    u.rtt === null ? "-" : `${u.rtt.toFixed(1)}ms`,
    u.jitter === null ? "-" : `${u.jitter.toFixed(1)}ms`,
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

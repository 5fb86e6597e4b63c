/**
 * A status row for tests of the CLI, the API and notifications: uplink
 * `name` up on `wanN`, no loss, RTT 0.25 ms, 12 connections, no IPv6,
 * with `overrides` on top.
 */
import type { UplinkStatus } from "../../src/control/api.js";

export function uplinkStatus(name: string, overrides: Partial<UplinkStatus> = {}): UplinkStatus {
  return {
    name,
    interface: name.replace("isp", "wan"),
    state: "up",
    since: "2026-11-21T00:00:00.000Z",
    active: true,
    weight: 1,
    tier: 1,
    id: 1,
    mark: "0x100",
    table: 101,
    address: "100.64.1.2",
    gateway: "100.64.1.1",
    carrier: true,
    loss: 0,
    recentLoss: 0,
    rtt: 0.25,
    jitter: 0.05,
    reason: "5 good rounds",
    connections: 12,
    rxBytes: 1536,
    txBytes: 2048,
    throughput: { down: 8000, up: 4000 },
    ipv6: null,
    ...overrides,
  };
}

/**
 * Maintenance (`uplinkd disable UPLINK`): the operator takes an uplink out
 * of service. Its health checks go on; while it is in maintenance, its state
 * is `disabled`, whatever they find.
 */
import type { HealthSnapshot, UplinkHealth } from "../uplink-health.js";

/** An uplink's maintenance: since when (epoch ms) and why. */
export interface Maintenance {
  since: number;
  reason: string;
}

/** An uplink's health as the daemon sees it, with maintenance applied. */
export interface MaintainedHealth extends UplinkHealth {
  /** What the health checks found, maintenance ignored. */
  healthSnapshot(): HealthSnapshot;
}

/**
 * Wraps an uplink's health monitor: `snapshot()` says `disabled` (with the
 * maintenance's time and reason) while `maintenance()` returns one.
 */
export function withMaintenance(
  health: UplinkHealth,
  maintenance: () => Maintenance | undefined,
): MaintainedHealth {
  return {
    start: () => {
      health.start();
    },
    stop: () => {
      health.stop();
    },
    setCarrier: (carrier) => {
      health.setCarrier(carrier);
    },
    setAddress: (address) => {
      health.setAddress(address);
    },
    burst: (reason) => {
      if (maintenance() === undefined) health.burst?.(reason);
    },
    healthSnapshot: () => health.snapshot(),
    snapshot: () => {
      const snapshot = health.snapshot();
      const m = maintenance();
      if (m === undefined) return snapshot;
      return { ...snapshot, state: "disabled", since: m.since, reason: m.reason };
    },
  };
}

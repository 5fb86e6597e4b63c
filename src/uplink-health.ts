/**
 * What the daemon needs from health monitoring, per uplink: its state, the
 * measured loss/RTT/jitter, transitions, and the inputs the daemon feeds
 * (carrier, address changes).
 */
import type { Logger } from "pino";
import type { HealthConfig, UplinkConfig } from "./config/schema.js";
import type { Family } from "./kernel/types.js";

/** States of an uplink (the contract of `uplinkd status --json`). */
export type UplinkState = "init" | "up" | "degraded" | "down" | "disabled";

/** One state change of an uplink's IPv4 or IPv6 health. */
export interface Transition {
  /** ISO time. */
  time: string;
  uplink: string;
  /** Which family's state changed: 4 (the uplink's IPv4 state, as before IPv6) or 6. */
  family: Family;
  from: UplinkState;
  to: UplinkState;
  /** Why: which targets failed, loss and RTT measured, carrier, hold. */
  reason: string;
  /** Loss over the window, % (0..100), at the transition; null if unknown. */
  loss: number | null;
  /** Mean RTT, ms; null if unknown. */
  rtt: number | null;
}

/** An uplink's health now. */
export interface HealthSnapshot {
  state: UplinkState;
  /** Epoch ms of the last transition (or start). */
  since: number;
  /** Loss %, 0..100; null before any probe resolved. */
  loss: number | null;
  /** Loss %, 0..100, over the last few resolved rounds (see the monitor's RECENT_ROUNDS); absent or null when unknown. */
  recentLoss?: number | null;
  /** Mean RTT, ms. */
  rtt: number | null;
  /** RTT standard deviation, ms. */
  jitter: number | null;
  /** Reason of the last transition. */
  reason: string;
}

/** Health monitoring of one uplink. */
export interface UplinkHealth {
  start(): void;
  stop(): void;
  snapshot(): HealthSnapshot;
  /** Carrier of the uplink's interface changed (from the kernel monitor). */
  setCarrier(carrier: boolean): void;
  /**
   * The uplink's address of the monitor's family changed (DHCP, PPP; SLAAC
   * for IPv6); undefined when it has none (an IPv6 monitor then waits, down
   * with the reason "no global IPv6 address").
   */
  setAddress(address: string | undefined): void;
  /**
   * Probe the uplink at once to confirm a suspicion (the passive signal);
   * never takes it down without failed probes. Optional: monitors without
   * it ignore suspicions.
   */
  burst?(reason: string): void;
}

/** What the daemon passes to create an uplink's monitor. */
export interface UplinkHealthOptions {
  uplink: UplinkConfig;
  /** Health settings with the uplink's own overrides merged. */
  health: HealthConfig;
  /** The uplink's fwmark (probes carry it). */
  mark: number;
  /**
   * The family this monitor judges (default 4): `health` then holds only
   * that family's targets and probes (`healthOf`), and `address` is the
   * uplink's address of that family (its global IPv6 address for 6).
   */
  family?: Family;
  address: string | undefined;
  carrier: boolean;
  log: Logger;
  onTransition: (transition: Transition) => void;
}

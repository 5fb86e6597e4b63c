/**
 * Health checks: probes through one uplink each -> per-target windows ->
 * rounds -> per-uplink state machine. The daemon needs `createUplinkHealth`
 * (or `UplinkMonitor` with `resolveHealthSettings`); the rest is for tests,
 * the lab and tools.
 */
export { createUplinkHealth, type UplinkHealthExtras } from "./adapter.js";
export { HealthError } from "./errors.js";
export {
  familyName,
  hasIpv6Health,
  healthOf,
  ipv6Of,
  probeFamily,
  sourceAddressOf,
  targetsOf,
} from "./family.js";
export { HealthSupervisor } from "./supervisor.js";
export {
  UplinkStateMachine,
  type MachineSnapshot,
  type StateMachineOptions,
  type StateChange,
  type UplinkState,
} from "./machine.js";
export {
  UplinkMonitor,
  createProber,
  type ProberContext,
  type TargetSnapshot,
  type UplinkMonitorOptions,
  type UplinkSnapshot,
} from "./monitor.js";
export {
  defaultWindowSize,
  resolveHealthSettings,
  resolveTuning,
  type FlapDamping,
  type HealthSettings,
  type HealthTuning,
  type HealthTuningInput,
  type QualityThresholds,
} from "./options.js";
export {
  IcmpProber,
  isLinkLocal6,
  parsePingLine,
  pingArgs,
  unwrapSeq,
  type PingLine,
} from "./ping.js";
export { nodeSpawner, type ProcessSpawner, type SpawnedProcess } from "../process/spawn.js";
export {
  targetName,
  type ProbeSink,
  type ProbeSource,
  type ProbeSpec,
  type Prober,
} from "./prober.js";
export { RoundTracker, type RoundResult, type TargetRoundResult } from "./rounds.js";
export { uplinkStats, roundFailProbability, requiredFailedRounds } from "./stats.js";
export type { TargetStats, UplinkStats } from "./stats.js";
export { TcpProber } from "./tcp.js";
export { HttpProber } from "./http.js";
export { DnsProber } from "./dns.js";
export { ProbeWindow, type ProbeRecord, type WindowStats, type ProbeTimings } from "./window.js";

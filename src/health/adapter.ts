/**
 * The daemon's view of health (`UplinkHealth` in src/uplink-health.ts) on
 * top of {@link UplinkMonitor}: what `DaemonOptions.createHealth` expects.
 *
 *     new Daemon({ ..., createHealth: (o) => createUplinkHealth(o) });
 */
import type { ProbeSpec } from "./prober.js";
import type { HealthTuningInput } from "./options.js";
import { resolveHealthSettings } from "./options.js";
import { UplinkMonitor, type UplinkMonitorOptions } from "./monitor.js";
import type {
  HealthSnapshot,
  Transition as DaemonTransition,
  UplinkHealth,
  UplinkHealthOptions,
} from "../uplink-health.js";

/** Settings the config schema does not carry yet, and test hooks. */
export interface UplinkHealthExtras {
  /** Quality thresholds, flap damping, window... (defaults: see `resolveTuning`). */
  tuning?: HealthTuningInput;
  /** TCP/HTTP/DNS probes in addition to the ICMP targets. */
  probes?: readonly ProbeSpec[];
  /** Clock, spawner, prober factory (tests, lab). */
  monitor?: Pick<UplinkMonitorOptions, "clock" | "spawner" | "createProber">;
}

/**
 * Creates the health monitor of one uplink and one family in the daemon's
 * shape: its probes carry `options.mark`, TCP/HTTP/DNS probes bind to
 * `options.address` (and ICMPv6 probes use it as ping's source);
 * transitions are passed on with ISO times and `options.family`; prober
 * notes (ping exited, waiting for a mark) are logged as warnings.
 *
 * An IPv6 monitor (`family: 6`) treats "no global IPv6 address" like a lost
 * carrier: it is down with that reason until an address comes, then
 * recovers after `up` passed rounds; a changed address (SLAAC renumbering)
 * only moves its probes to the new source.
 *
 * @throws {HealthError} when the health settings or a probe are invalid.
 */
export function createUplinkHealth(
  options: UplinkHealthOptions,
  extras: UplinkHealthExtras = {},
): UplinkHealth {
  const { log } = options;
  const mark = options.mark;
  const family = options.family ?? 4;
  const who = family === 6 ? `${options.uplink.name} (IPv6)` : options.uplink.name;
  const monitor = new UplinkMonitor({
    uplink: options.uplink.name,
    family,
    settings: resolveHealthSettings(
      options.health,
      { ...configuredTuning(options.health), ...extras.tuning },
      [...configuredProbes(options.health), ...(extras.probes ?? [])],
    ),
    source: { mark, ...(options.address === undefined ? {} : { address: options.address }) },
    ...extras.monitor,
    onTransition: (t) => {
      const transition: DaemonTransition = {
        time: new Date(t.time).toISOString(),
        uplink: t.uplink,
        family,
        from: t.from,
        to: t.to,
        reason: t.reason,
        loss: t.stats.lossPct,
        rtt: t.stats.rttMs,
      };
      options.onTransition(transition);
    },
    onNote: (message) => {
      log.warn({ uplink: options.uplink.name, family }, `${who}: ${message}`);
    },
    onError: (error) => {
      log.error({ err: error, uplink: options.uplink.name, family }, "health listener failed");
    },
  });
  let carrier = options.carrier;
  let address = options.address;
  /** The path exists: carrier, and for IPv6 a global address to probe from. */
  const usable = (): boolean => carrier && (family === 4 || address !== undefined);
  const whyNot = (): string => (carrier ? "no global IPv6 address" : "carrier lost");
  return {
    start() {
      if (!usable()) monitor.carrier(false, whyNot());
      monitor.start();
    },
    stop() {
      monitor.stop().catch((error: unknown) => {
        log.error(
          { err: error, uplink: options.uplink.name, family },
          "stopping health probes failed",
        );
      });
    },
    snapshot(): HealthSnapshot {
      const s = monitor.snapshot();
      return {
        state: s.state,
        since: s.since,
        loss: s.lossPct,
        recentLoss: s.recentLossPct,
        rtt: s.rttMs,
        jitter: s.jitterMs,
        reason: s.reason,
      };
    },
    setCarrier(up: boolean) {
      if (up === carrier) return;
      const was = usable();
      carrier = up;
      if (usable() !== was) monitor.carrier(usable(), whyNot());
    },
    setAddress(next: string | undefined) {
      const was = usable();
      address = next;
      monitor.setSource({ mark, ...(next === undefined ? {} : { address: next }) });
      if (family === 6 && usable() !== was) monitor.carrier(usable(), whyNot());
    },
    burst(reason: string) {
      monitor.burst(reason).catch((error: unknown) => {
        log.error({ err: error, uplink: options.uplink.name }, "probe burst failed");
      });
    },
  };
}

/** The tuning the config sets: loss/RTT thresholds and flap damping. */
function configuredTuning(health: UplinkHealthOptions["health"]): HealthTuningInput {
  return {
    quality: {
      lossFailPct: health.loss_fail,
      lossRecoverPct: health.loss_recover,
      ...(health.rtt_fail === undefined ? {} : { rttFailMs: health.rtt_fail }),
      ...(health.rtt_recover === undefined ? {} : { rttRecoverMs: health.rtt_recover }),
    },
    flap: { count: health.flap.count, periodMs: health.flap.period, holdMs: health.flap.hold },
  };
}

/** The TCP/HTTP/DNS probes the config sets, as probe specs. */
function configuredProbes(health: UplinkHealthOptions["health"]): ProbeSpec[] {
  return health.probes.map((probe): ProbeSpec => {
    if (probe.type === "tcp") return { type: "tcp", host: probe.host, port: probe.port };
    if (probe.type === "http") {
      return {
        type: "http",
        url: probe.url,
        ...(probe.expect_status === undefined ? {} : { expectStatus: probe.expect_status }),
      };
    }
    return {
      type: "dns",
      server: probe.server,
      name: probe.name,
      ...(probe.expect === undefined ? {} : { expect: probe.expect }),
    };
  });
}

/**
 * The one interface every probe kind implements (ICMP, TCP connect, HTTP(S)
 * GET, DNS query), and the shapes of probe definitions. A prober probes one
 * target through one uplink, whatever the uplink's state, and reports each
 * probe to a {@link ProbeSink} (in practice the target's ProbeWindow).
 */
import type { ProbeTimings } from "./window.js";

/** How an uplink's probes leave the router. */
export interface ProbeSource {
  /**
   * fwmark put on probe sockets (`ping -m`, SO_MARK): selects the uplink's
   * routing table through uplinkd's `fwmark M_i/mask lookup T_i` rule.
   * Required by ICMP probes.
   */
  mark?: number;
  /**
   * The uplink's own address of the probes' family (IPv4, or its global
   * IPv6 address for the IPv6 monitor): TCP/HTTP/DNS probes bind to it
   * (`localAddress`, `Resolver#setLocalAddress`) and leave through the
   * `from ADDR_i lookup T_i` rule; ICMP probes to an IPv6 target use it as
   * ping's `-I` source. Required by TCP/HTTP/DNS probes and IPv6 ICMP probes.
   */
  address?: string;
}

/** Where a prober reports its probes. Times are ms on the monitor's monotonic clock. */
export interface ProbeSink {
  /** Probe `seq` left at `at` (`estimated`: the time was inferred, not measured). */
  sent(seq: number, at: number, options?: { estimated?: boolean }): void;
  /**
   * Probe `seq` was answered at `at`; `rttMs` when the prober measured it
   * itself (else `at - sent`); `timings` per phase when known (HTTP).
   */
  answered(seq: number, at: number, rttMs?: number, timings?: ProbeTimings): void;
  /** Probe `seq` failed for sure at `at` (e.g. ICMP unreachable, ECONNREFUSED, HTTP 503). */
  failed(seq: number, at: number, reason: string): void;
  /** Something about the prober itself (process exited, restarted, cannot probe). */
  note(message: string): void;
}

/**
 * - `on-demand`: the monitor calls `probe(seq)` at each round tick, with the
 *   round number as `seq` (TCP, HTTP, DNS).
 * - `free-running`: the prober sends on its own schedule at the round interval
 *   and reports what it sent (ICMP: one long-running `ping` per target).
 */
export type ProbeSchedule = "on-demand" | "free-running";

/** A prober for one target through one uplink. Constructors do nothing; `start` begins. */
export interface Prober {
  /** Display name of the target, used in stats and reasons (`198.51.100.1`, `tcp:198.51.100.1:443`). */
  readonly target: string;
  readonly schedule: ProbeSchedule;
  /** Begins probing (free-running) or accepting `probe` calls (on-demand). */
  start(sink: ProbeSink): void;
  /** Sends probe `seq` now (on-demand probers; free-running ones ignore it). */
  probe(seq: number): void;
  /** The uplink's fwmark or address changed (DHCP, PPP): use the new one from now on. */
  setSource(source: ProbeSource): void;
  /** The path may work again (carrier back): retry at once instead of waiting for a backoff. */
  nudge(): void;
  /** Stops probing and releases sockets and processes; resolves when all are gone. */
  stop(): Promise<void>;
}

/** ICMP echo through the uplink's fwmark (iputils ping; `ping -6 -I SOURCE` for IPv6). */
export interface IcmpProbeSpec {
  type: "icmp";
  /** IPv4 or IPv6 address to ping. */
  host: string;
}

/** TCP connect to host:port; success when the connection is established. */
export interface TcpProbeSpec {
  type: "tcp";
  host: string;
  /** 1..65535 */
  port: number;
}

/** HTTP(S) GET; success when the status is one of `expectStatus`. */
export interface HttpProbeSpec {
  type: "http";
  /** `http://...` or `https://...`; an IP literal avoids a DNS lookup outside the uplink. */
  url: string;
  /** Accepted status codes; default 200..399. */
  expectStatus?: readonly number[];
}

/** DNS A query to `server` for `name`; success on an answer (containing `expect` when given). */
export interface DnsProbeSpec {
  type: "dns";
  /** Address of the DNS server (IPv4 or IPv6, optionally with a port: `[IPv6]:53`). */
  server: string;
  /** Name to resolve (A record). */
  name: string;
  /** When given, at least one of these addresses must be in the answer. */
  expect?: readonly string[];
}

/** One probe definition: what to probe and how. */
export type ProbeSpec = IcmpProbeSpec | TcpProbeSpec | HttpProbeSpec | DnsProbeSpec;

/** The target name a spec is shown under (stats, reasons, snapshots). */
export function targetName(spec: ProbeSpec): string {
  switch (spec.type) {
    case "icmp":
      return spec.host;
    case "tcp":
      return `tcp:${spec.host}:${spec.port}`;
    case "http":
      return spec.url;
    case "dns":
      return `dns:${spec.server}/${spec.name}`;
  }
}

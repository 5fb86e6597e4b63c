/** TCP connect probes: success when the handshake completes through the uplink. */
import { connect, isIPv6 } from "node:net";
import type { SocketProberOptions, ProbeReport } from "./socket-prober.js";
import { SocketProber } from "./socket-prober.js";

/** Options of a {@link TcpProber}. */
export interface TcpProberOptions extends SocketProberOptions {
  /** IPv4 or IPv6 address to connect to (from the uplink's address of that family). */
  host: string;
  /** TCP port, 1..65535. */
  port: number;
}

/**
 * Connects to host:port from the uplink's address (`localAddress`, so the
 * `from ADDR lookup T_i` rule routes it through the uplink), then closes.
 * A refused connection is a failure (`connect ECONNREFUSED ...`).
 */
export class TcpProber extends SocketProber {
  readonly target: string;
  readonly family: 4 | 6;
  readonly #host: string;
  readonly #port: number;

  constructor(options: TcpProberOptions) {
    super(options);
    this.#host = options.host;
    this.#port = options.port;
    this.family = isIPv6(options.host) ? 6 : 4;
    this.target = `tcp:${options.host}:${options.port}`;
  }

  protected send(address: string, report: ProbeReport): () => void {
    const socket = connect({
      host: this.#host,
      port: this.#port,
      localAddress: address,
      family: this.family,
    });
    socket.once("connect", () => {
      report.answered({ connectMs: report.elapsed() });
    });
    socket.once("error", (error) => {
      report.failed(error.message);
    });
    return () => socket.destroy();
  }
}

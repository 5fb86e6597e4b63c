/** TCP connect probes: success when the handshake completes through the uplink. */
import { connect } from "node:net";
import type { SocketProberOptions, ProbeReport } from "./socket-prober.js";
import { SocketProber } from "./socket-prober.js";

/** Options of a {@link TcpProber}. */
export interface TcpProberOptions extends SocketProberOptions {
  /** IPv4 address to connect to. */
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
  readonly #host: string;
  readonly #port: number;

  constructor(options: TcpProberOptions) {
    super(options);
    this.#host = options.host;
    this.#port = options.port;
    this.target = `tcp:${options.host}:${options.port}`;
  }

  protected send(address: string, report: ProbeReport): () => void {
    const socket = connect({
      host: this.#host,
      port: this.#port,
      localAddress: address,
      family: 4,
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

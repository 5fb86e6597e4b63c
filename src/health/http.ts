/** HTTP(S) GET probes: success on an expected status, with per-phase timings. */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { HealthError } from "./errors.js";
import type { SocketProberOptions, ProbeReport } from "./socket-prober.js";
import { SocketProber } from "./socket-prober.js";
import type { ProbeTimings } from "./window.js";

/** Options of an {@link HttpProber}. */
export interface HttpProberOptions extends SocketProberOptions {
  /** `http://` or `https://` URL; an IP literal host avoids a DNS lookup outside the uplink. */
  url: string;
  /** Accepted status codes; default 200..399. */
  expectStatus?: readonly number[];
}

/**
 * GETs the URL from the uplink's address with a fresh connection
 * (`Connection: close`, no agent). The probe's RTT is the time to the
 * response's status line; the timings record connect, TLS and first byte.
 * A status outside `expectStatus` is a failure (`HTTP 503`).
 */
export class HttpProber extends SocketProber {
  readonly target: string;
  /** 6 when the URL's host is an IPv6 literal (`http://[2001:db8::1]/`), else 4. */
  readonly family: 4 | 6;
  readonly #url: URL;
  readonly #expect: readonly number[] | undefined;

  /** @throws {HealthError} when the URL is not http(s). */
  constructor(options: HttpProberOptions) {
    super(options);
    let url: URL;
    try {
      url = new URL(options.url);
    } catch (error) {
      throw new HealthError(`HTTP probe URL "${options.url}" is not a URL`, { cause: error });
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new HealthError(`HTTP probe URL "${options.url}" must start with http:// or https://`);
    }
    this.#url = url;
    this.family = url.hostname.startsWith("[") ? 6 : 4;
    this.#expect = options.expectStatus;
    this.target = options.url;
  }

  protected send(address: string, report: ProbeReport): () => void {
    const request = this.#url.protocol === "https:" ? httpsRequest : httpRequest;
    const timings: ProbeTimings = {};
    const req = request(this.#url, {
      method: "GET",
      localAddress: address,
      family: this.family,
      agent: false,
      headers: { "user-agent": "uplinkd-health-probe", connection: "close" },
    });
    req.once("socket", (socket) => {
      socket.once("connect", () => {
        timings.connectMs = report.elapsed();
      });
      socket.once("secureConnect", () => {
        timings.tlsMs = report.elapsed();
      });
    });
    req.once("response", (res) => {
      timings.firstByteMs = report.elapsed();
      const status = res.statusCode ?? 0;
      res.resume();
      const ok = this.#expect ? this.#expect.includes(status) : status >= 200 && status < 400;
      if (ok) report.answered(timings);
      else report.failed(`HTTP ${status}`);
    });
    req.once("error", (error) => {
      report.failed(error.message);
    });
    req.end();
    return () => req.destroy();
  }
}

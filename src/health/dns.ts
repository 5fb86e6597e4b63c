/** DNS probes: an A (or AAAA) query to a given server, sent from the uplink's address. */
import { Resolver } from "node:dns/promises";
import { isIPv6 } from "node:net";
import type { SocketProberOptions, ProbeReport } from "./socket-prober.js";
import { SocketProber } from "./socket-prober.js";

/** Options of a {@link DnsProber}. */
export interface DnsProberOptions extends SocketProberOptions {
  /** DNS server: `IPv4`, `IPv4:port`, `IPv6` or `[IPv6]:port`. */
  server: string;
  /** Name to resolve (A record). */
  name: string;
  /** When given, one of these addresses must be in the answer (IPv6 ones: an AAAA query). */
  expect?: readonly string[];
}

import { dnsServerFamily } from "../config/families.js";

export { dnsServerFamily };

/**
 * Resolves `name` (A; AAAA when `expect` holds IPv6 addresses) at `server`
 * with a fresh `Resolver` per probe (`setLocalAddress` to the uplink's
 * address of the server's family, one try, the probe timeout).
 * Failures carry the resolver's code (`ETIMEOUT`, `ENOTFOUND`, `ECONNREFUSED`)
 * or the unexpected answer.
 */
export class DnsProber extends SocketProber {
  readonly target: string;
  readonly family: 4 | 6;
  readonly #server: string;
  readonly #name: string;
  readonly #expect: readonly string[] | undefined;

  constructor(options: DnsProberOptions) {
    super(options);
    this.#server = options.server;
    this.family = dnsServerFamily(options.server);
    this.#name = options.name;
    this.#expect = options.expect;
    this.target = `dns:${options.server}/${options.name}`;
  }

  protected send(address: string, report: ProbeReport): () => void {
    const resolver = new Resolver({ timeout: Math.max(1, Math.round(this.timeoutMs)), tries: 1 });
    resolver.setServers([this.#server]);
    if (this.family === 6) resolver.setLocalAddress("0.0.0.0", address);
    else resolver.setLocalAddress(address);
    const aaaa = this.#expect?.some((a) => isIPv6(a)) ?? false;
    (aaaa ? resolver.resolve6(this.#name) : resolver.resolve4(this.#name)).then(
      (addresses) => {
        const expect = this.#expect;
        if (expect && !addresses.some((a) => expect.includes(a))) {
          report.failed(`answer ${addresses.join(", ") || "(empty)"} lacks ${expect.join(" or ")}`);
        } else {
          report.answered();
        }
      },
      (error: unknown) => {
        const code = (error as { code?: unknown }).code;
        report.failed(typeof code === "string" ? code : String(error));
      },
    );
    return () => {
      resolver.cancel();
    };
  }
}

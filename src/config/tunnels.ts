/**
 * The `tunnels` section: the router's own VPN endpoints (WireGuard,
 * OpenVPN, IPsec NAT-T, ...), each steered by a policy. An endpoint is an
 * address with an optional port: `192.0.2.7:51820`, `[2001:db8::7]:51820`,
 * `192.0.2.7` (every port of that protocol). Host names are not resolved:
 * the address is what the kernel matches, and a name that resolves to
 * another address later would silently leave the tunnel unsteered.
 */
import { isIPv4, isIPv6 } from "node:net";
import { z } from "zod";
import { canonicalAddress6 } from "../net/ipv6.js";
import { nftName } from "./steering.js";

/** A tunnel endpoint, parsed: its address (IPv6 in canonical form), family and port (absent: every port). */
export interface TunnelEndpoint {
  address: string;
  family: 4 | 6;
  port?: number;
}

/**
 * Parse `ADDRESS`, `ADDRESS:PORT` (IPv4) or `[ADDRESS]:PORT` / `ADDRESS` (IPv6).
 * @returns the endpoint, or a message saying what is wrong.
 */
export function parseTunnelEndpoint(text: string): TunnelEndpoint | string {
  const port = (digits: string): number | undefined => {
    if (!/^[0-9]{1,5}$/.test(digits)) return undefined;
    const n = Number(digits);
    return n >= 1 && n <= 65535 ? n : undefined;
  };
  const usage = "must be ADDRESS or ADDRESS:PORT (192.0.2.7:51820, [2001:db8::7]:51820)";
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (bracketed !== null) {
    const [, address = "", digits] = bracketed;
    if (!isIPv6(address) || address.includes("%"))
      return `${usage}: "${address}" is no IPv6 address`;
    if (digits === undefined) return { address: canonicalAddress6(address), family: 6 };
    const p = port(digits);
    if (p === undefined) return `${usage}: port "${digits}" is not 1..65535`;
    return { address: canonicalAddress6(address), family: 6, port: p };
  }
  if (isIPv6(text) && !text.includes("%")) return { address: canonicalAddress6(text), family: 6 };
  if (isIPv4(text)) return { address: text, family: 4 };
  const colon = text.lastIndexOf(":");
  if (colon > 0 && !text.slice(0, colon).includes(":")) {
    const host = text.slice(0, colon);
    const p = port(text.slice(colon + 1));
    if (!isIPv4(host)) {
      return `${usage}: "${host}" is not an address (host names are not resolved: give the address)`;
    }
    if (p === undefined) return `${usage}: port "${text.slice(colon + 1)}" is not 1..65535`;
    return { address: host, family: 4, port: p };
  }
  return `${usage} (host names are not resolved: give the address)`;
}

/** One tunnel endpoint of the router, steered by a policy. */
export const tunnelSchema = z
  .object({
    name: nftName.describe("the tunnel's name in status, logs and the nft comment"),
    endpoint: z
      .string()
      .superRefine((text, ctx) => {
        const parsed = parseTunnelEndpoint(text);
        if (typeof parsed === "string") ctx.addIssue({ code: "custom", message: parsed });
      })
      .describe(
        "the peer: ADDRESS:PORT, [IPv6]:PORT, or ADDRESS for every port (an address: host names are not resolved)",
      ),
    protocol: z
      .enum(["udp", "tcp"])
      .default("udp")
      .describe("the tunnel's transport: udp (WireGuard, IPsec NAT-T, OpenVPN) or tcp"),
    policy: z
      .string()
      .min(1)
      .describe(
        "the policy whose uplinks carry the tunnel (failover, and failback with failback: move)",
      ),
  })
  .strict();

/** A validated tunnel. */
export type TunnelConfig = z.output<typeof tunnelSchema>;

/** The parsed endpoint of a validated tunnel. */
export function tunnelEndpoint(tunnel: TunnelConfig): TunnelEndpoint {
  const parsed = parseTunnelEndpoint(tunnel.endpoint);
  if (typeof parsed === "string") throw new Error(`tunnel ${tunnel.name}: ${parsed}`);
  return parsed;
}

/**
 * Bearer tokens of the TCP listener. The Unix socket needs none: its mode
 * (0600) lets only root in.
 *
 * Over TCP, GET and HEAD need read access, every other method write access.
 * With no token configured (allowed only on a loopback address, see the
 * config schema) reads are open and writes refused: a loopback port is open
 * to every local user, not only root.
 */
import { createHash, timingSafeEqual } from "node:crypto";

/** What a token allows: `read` (GET) or `write` (GET and POST). */
export type Access = "read" | "write";

/** One configured token (config `control.tokens[]`). */
export interface TokenConfig {
  name?: string | undefined;
  token: string;
  access: Access;
}

/** The outcome of {@link authorize}. */
export type AuthResult =
  | { ok: true; /** The token's name, or "anonymous". */ who: string }
  | { ok: false; status: 401 | 403; message: string };

/** The access a request method needs: GET and HEAD read, everything else write. */
export function requiredAccess(method: string): Access {
  return method === "GET" || method === "HEAD" ? "read" : "write";
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/**
 * Decides a TCP request. Tokens are compared in constant time (as SHA-256
 * digests), every configured token each time.
 *
 * @param authorization the request's `Authorization` header, if any.
 * @param needed the access the request needs (see {@link requiredAccess}).
 * @param tokens the configured tokens now.
 * @returns ok, or 401 (no or unknown token) / 403 (a read token asking to write).
 */
export function authorize(
  authorization: string | undefined,
  needed: Access,
  tokens: readonly TokenConfig[],
): AuthResult {
  const presented = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "")?.[1];
  if (tokens.length === 0) {
    if (needed === "read") return { ok: true, who: "anonymous" };
    return {
      ok: false,
      status: 401,
      message: "writes over TCP need a token with access: write (config control.tokens)",
    };
  }
  if (presented === undefined) {
    return {
      ok: false,
      status: 401,
      message: "missing bearer token (Authorization: Bearer TOKEN)",
    };
  }
  const wanted = digest(presented);
  let match: TokenConfig | undefined;
  for (const token of tokens) {
    if (timingSafeEqual(digest(token.token), wanted) && match === undefined) match = token;
  }
  if (match === undefined) return { ok: false, status: 401, message: "invalid bearer token" };
  const who = match.name ?? "token";
  if (needed === "write" && match.access !== "write") {
    return { ok: false, status: 403, message: `token ${who} is read-only` };
  }
  return { ok: true, who };
}

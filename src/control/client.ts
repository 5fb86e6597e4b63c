/**
 * Talking to a running daemon over its control socket (HTTP + JSON on a
 * Unix socket).
 */
import { request } from "node:http";
import { ControlError } from "../errors.js";

/**
 * Send one request to the daemon.
 *
 * @param socketPath the control socket (config `control.socket`).
 * @param method HTTP method.
 * @param path e.g. `/status`.
 * @param body JSON-serialisable request body, if any.
 * @param timeoutMs give up after this many ms (default 5000).
 * @returns the parsed JSON answer.
 * @throws {ControlError} when the socket cannot be reached, the request times
 *   out, or the daemon answers with a status >= 400 (its `error` message,
 *   `status` and `remoteCode`; a refused config: only its FILE:LINE:COL lines).
 */
export function controlRequest(
  socketPath: string,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
  timeoutMs = 5000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath,
        method,
        path,
        timeout: timeoutMs,
        headers: payload === undefined ? {} : { "content-type": "application/json" },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown;
          try {
            parsed = text === "" ? null : JSON.parse(text);
          } catch {
            parsed = text;
          }
          const status = res.statusCode ?? 500;
          if (status >= 400) {
            const body = typeof parsed === "object" && parsed !== null ? parsed : {};
            const message = "error" in body ? String(body.error) : text;
            const remoteCode = "code" in body ? String(body.code) : undefined;
            // A refused config is reported as its FILE:LINE:COL lines alone.
            const shown =
              remoteCode === "UPLINKD_ERR_CONFIG"
                ? message
                : `${method} ${path}: ${status} ${message}`;
            reject(new ControlError(shown, { status, remoteCode }));
          } else resolve(parsed);
        });
      },
    );
    req.on("timeout", () => {
      req.destroy(new Error(`no answer within ${timeoutMs} ms`));
    });
    req.on("error", (error) => {
      reject(
        new ControlError(`cannot reach uplinkd at ${socketPath}: ${error.message}`, {
          cause: error,
        }),
      );
    });
    req.end(payload);
  });
}

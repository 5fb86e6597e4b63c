/**
 * The control API: HTTP + JSON on a Unix socket (mode 0600: root only),
 * served with hono. The CLI (`uplinkd status`, ...) is its client.
 */
import { mkdir, rm, chmod } from "node:fs/promises";
import { dirname } from "node:path";
import type { Server } from "node:http";
import { createAdaptorServer } from "@hono/node-server";
import { Hono } from "hono";
import { UplinkdError } from "../errors.js";

/** What the daemon offers to the control API. */
export interface ControlHandlers {
  /** The status document (see `uplinkd status --json`). */
  status(): unknown;
  /** Recent transitions, newest last. */
  events(): unknown;
  /** Reload the config file; resolves with a summary or rejects with a ConfigError. */
  reload(): Promise<unknown>;
}

/** Build the HTTP app (also used by tests without a socket). */
export function controlApp(handlers: ControlHandlers): Hono {
  const app = new Hono();
  app.get("/status", (c) => c.json(handlers.status() as object));
  app.get("/events", (c) => c.json(handlers.events() as object));
  app.post("/reload", async (c) => c.json((await handlers.reload()) as object));
  app.onError((error, c) => {
    const code = error instanceof UplinkdError ? error.code : "UPLINKD_ERR_INTERNAL";
    const status = code === "UPLINKD_ERR_CONFIG" ? 422 : 500;
    return c.json({ error: error.message, code }, status);
  });
  return app;
}

/**
 * Serve the control API on a Unix socket.
 *
 * @param socketPath created with mode 0600 (its directory 0755 if missing);
 *   a stale socket file from an earlier run is replaced.
 * @returns the listening server.
 * @throws when the socket cannot be created.
 */
export async function startControlServer(
  socketPath: string,
  handlers: ControlHandlers,
): Promise<Server> {
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await rm(socketPath, { force: true });
  const app = controlApp(handlers);
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });
  await chmod(socketPath, 0o600);
  return server;
}

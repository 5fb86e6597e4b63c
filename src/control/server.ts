/**
 * The control API: HTTP + JSON, served with hono on a Unix socket (mode
 * 0600: root only; the CLI's way in) and, when configured, on a TCP address
 * for the dashboard and Prometheus (bearer tokens, see auth.ts). Endpoints
 * and answers: see api.ts.
 */
import { mkdir, rm, chmod } from "node:fs/promises";
import { dirname } from "node:path";
import type { Server } from "node:http";
import { createAdaptorServer } from "@hono/node-server";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import type { StatusDocument } from "./api.js";
import { UplinkdError } from "../errors.js";
import type {
  DisableOptions,
  EventsDocument,
  HistoryDocument,
  InputsDocument,
  MaintenanceResult,
  ReloadResult,
  StreamEvent,
} from "./api.js";
import { authorize, requiredAccess, type TokenConfig } from "./auth.js";
import { DASHBOARD_HEADERS, dashboardFile, isDashboardPath } from "./dashboard.js";

/** What the daemon offers to the control API. */
export interface ControlHandlers {
  /** The status document, traffic (connections, bytes) refreshed. */
  status(): Promise<StatusDocument>;
  /** The most recent `limit` transitions, oldest first. */
  events(limit: number): EventsDocument;
  /** Health samples for the dashboard's charts. */
  history(): HistoryDocument;
  /** Each uplink's health and the load: what the desired state is built from (`uplinkd plan`). */
  inputs(): InputsDocument;
  /** Re-read the config file; rejects with a ConfigError when it is refused. */
  reload(): Promise<ReloadResult>;
  /** Maintenance: no new connections; rejects with UnknownUplinkError. */
  disable(uplink: string, options: DisableOptions): Promise<MaintenanceResult>;
  /** End maintenance; rejects with UnknownUplinkError. */
  enable(uplink: string): Promise<MaintenanceResult>;
  /** Prometheus text. */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** Live events for `/events/stream`; returns the unsubscribe function. */
  subscribe(listener: (event: StreamEvent) => void): () => void;
}

/** Options of {@link controlApp}. */
export interface ControlAppOptions {
  /**
   * The tokens now (TCP). Absent: every request is allowed (the Unix
   * socket, whose file mode is the guard).
   */
  tokens?: () => readonly TokenConfig[];
  /** Called for each refused request (for the log). */
  onDenied?: (info: { method: string; path: string; status: number; message: string }) => void;
  /** Called for each allowed write (for the log). */
  onWrite?: (info: { method: string; path: string; who: string }) => void;
  /** Keep-alive comment interval on event streams, ms (default 15 000). */
  keepAliveMs?: number;
  /**
   * Largest request body read, bytes (default {@link MAX_BODY_BYTES}); a
   * larger one is refused with 413 before it is read to the end.
   */
  maxBodyBytes?: number;
}

/**
 * Largest request body the control API reads, bytes. Its only body is
 * `POST /uplinks/NAME/disable`'s `{"drain": true, "reason": "..."}` (a reason
 * of at most 200 characters), so 16 KiB leaves room and no more.
 */
export const MAX_BODY_BYTES = 16 * 1024;

const HTTP_STATUS: Record<string, 404 | 422> = {
  UPLINKD_ERR_CONFIG: 422,
  UPLINKD_ERR_UNKNOWN_UPLINK: 404,
};

const disableBody = z
  .object({ drain: z.boolean().default(false), reason: z.string().max(200).optional() })
  .strict();

/** A Host header that names an IP address or localhost (not a DNS name that could be rebound). */
function isAddressHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  const name = host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.split(":")[0];
  return (
    name === "localhost" || z.ipv4().safeParse(name).success || z.ipv6().safeParse(name).success
  );
}

async function jsonBody(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Build the HTTP app (tests use it without a socket: `app.request(...)`).
 * Every error is answered as JSON `{ error, code }`: 4xx for bad requests
 * (413 `UPLINKD_ERR_BODY_TOO_LARGE` for a body above `maxBodyBytes`), 500
 * only for a failure of the daemon itself.
 */
export function controlApp(handlers: ControlHandlers, options: ControlAppOptions = {}): Hono {
  const app = new Hono();
  const { tokens } = options;

  if (tokens !== undefined) {
    app.use("*", async (c, next) => {
      const path = c.req.path;
      const method = c.req.method;
      const configured = tokens();
      const deny = (status: 401 | 403 | 421, message: string) => {
        options.onDenied?.({ method, path, status, message });
        if (status === 401) c.header("www-authenticate", 'Bearer realm="uplinkd"');
        return c.json({ error: message, code: "UPLINKD_ERR_UNAUTHORIZED" }, status);
      };
      // Without tokens reads are open: refuse names a rebinding DNS could point here.
      if (configured.length === 0 && !isAddressHost(c.req.header("host"))) {
        return deny(421, "use an IP address (e.g. 127.0.0.1:9101) to reach uplinkd");
      }
      if ((method === "GET" || method === "HEAD") && isDashboardPath(path)) return next();
      const result = authorize(c.req.header("authorization"), requiredAccess(method), configured);
      if (!result.ok) return deny(result.status, result.message);
      if (requiredAccess(method) === "write") options.onWrite?.({ method, path, who: result.who });
      return next();
    });
  }

  const maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
  app.use(
    "*",
    bodyLimit({
      maxSize: maxBodyBytes,
      onError: (c) =>
        c.json(
          {
            error: `request body larger than ${maxBodyBytes} bytes`,
            code: "UPLINKD_ERR_BODY_TOO_LARGE",
          },
          413,
        ),
    }),
  );

  app.get("/status", async (c) => c.json(await handlers.status()));
  app.get("/events", (c) => {
    const limit = Number(c.req.query("limit") ?? 100);
    const n = Number.isInteger(limit) && limit > 0 ? Math.min(limit, 10_000) : 100;
    return c.json(handlers.events(n));
  });
  app.get("/history", (c) => c.json(handlers.history()));
  app.get("/inputs", (c) => c.json(handlers.inputs()));
  app.get("/metrics", async (c) => {
    const { contentType, text } = await handlers.metrics();
    return c.body(text, 200, { "content-type": contentType });
  });
  app.get("/events/stream", (c) => {
    c.header("cache-control", "no-cache");
    c.header("x-accel-buffering", "no");
    // hono answers HEAD with the GET handler and drops the body unread: a
    // stream started here would never learn that nobody reads it.
    if (c.req.method === "HEAD") return c.body(null, 200, { "content-type": "text/event-stream" });
    return streamSSE(
      c,
      async (stream) => {
        // Listen for the client's hang-up before anything is awaited: a client
        // that leaves while the first status is assembled must still end the
        // subscription and the keep-alive timer.
        const closed = new Promise<void>((resolve) => {
          stream.onAbort(resolve);
        });
        let chain: Promise<void> = Promise.resolve();
        const send = (write: () => Promise<void>) => {
          chain = chain.then(write).catch(() => undefined);
        };
        const unsubscribe = handlers.subscribe((event) => {
          send(() => stream.writeSSE({ event: event.type, data: JSON.stringify(event.data) }));
        });
        const keepAlive = setInterval(() => {
          send(() => stream.write(": keep-alive\n\n").then(() => undefined));
        }, options.keepAliveMs ?? 15_000);
        try {
          const status = await handlers.status();
          send(() => stream.writeSSE({ event: "status", data: JSON.stringify(status) }));
          await closed;
        } finally {
          clearInterval(keepAlive);
          unsubscribe();
        }
      },
      // A failed status ends the stream with an `error` event holding its message.
      () => Promise.resolve(),
    );
  });
  app.post("/reload", async (c) => c.json(await handlers.reload()));
  app.post("/uplinks/:name/disable", async (c) => {
    const body = disableBody.safeParse(await jsonBody(c));
    if (!body.success) {
      return c.json(
        { error: 'body must be {"drain": true|false, "reason": "..."}', code: "UPLINKD_ERR_USAGE" },
        400,
      );
    }
    return c.json(await handlers.disable(c.req.param("name"), body.data));
  });
  app.post("/uplinks/:name/enable", async (c) =>
    c.json(await handlers.enable(c.req.param("name"))),
  );
  app.get("*", async (c, next) => {
    const file = await dashboardFile(c.req.path);
    if (file === undefined) return next();
    return c.body(new Uint8Array(file.body), 200, {
      ...DASHBOARD_HEADERS,
      "content-type": file.type,
    });
  });
  app.notFound((c) =>
    c.json(
      { error: `no such endpoint: ${c.req.method} ${c.req.path}`, code: "UPLINKD_ERR_NOT_FOUND" },
      404,
    ),
  );
  app.onError((error, c) => {
    const code = error instanceof UplinkdError ? error.code : "UPLINKD_ERR_INTERNAL";
    return c.json({ error: error.message, code }, HTTP_STATUS[code] ?? 500);
  });
  return app;
}

async function listen(server: Server, ...args: [string] | [number, string]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    const done = () => {
      server.off("error", reject);
      resolve();
    };
    if (args.length === 1) server.listen(args[0], done);
    else server.listen(args[0], args[1], done);
  });
}

/**
 * Serve the control API on a Unix socket, without tokens.
 *
 * @param socketPath created with mode 0600 (its directory 0755 if missing);
 *   a stale socket file from an earlier run is replaced.
 * @returns the listening server.
 * @throws when the socket cannot be created.
 */
export async function startControlServer(
  socketPath: string,
  handlers: ControlHandlers,
  options: Omit<ControlAppOptions, "tokens"> = {},
): Promise<Server> {
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await rm(socketPath, { force: true });
  const app = controlApp(handlers, options);
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  await listen(server, socketPath);
  await chmod(socketPath, 0o600);
  return server;
}

/**
 * Parse `control.listen`: `127.0.0.1:9101`, `[::1]:9101`.
 * @throws {Error} for another shape (the config schema refuses those first).
 */
export function parseListen(listen: string): { host: string; port: number } {
  const at = listen.lastIndexOf(":");
  const host = listen.slice(0, at).replace(/^\[|\]$/g, "");
  const port = Number(listen.slice(at + 1));
  if (at < 0 || host === "" || !Number.isInteger(port)) {
    throw new Error(`control.listen ${JSON.stringify(listen)} is not ADDRESS:PORT`);
  }
  return { host, port };
}

/**
 * Serve the control API on TCP, with bearer tokens (see auth.ts).
 *
 * @param listenAddress `ADDRESS:PORT` (config `control.listen`).
 * @returns the listening server.
 * @throws when the address cannot be bound (EADDRINUSE, EADDRNOTAVAIL).
 */
export async function startTcpListener(
  listenAddress: string,
  handlers: ControlHandlers,
  options: ControlAppOptions & { tokens: () => readonly TokenConfig[] },
): Promise<Server> {
  const { host, port } = parseListen(listenAddress);
  const app = controlApp(handlers, options);
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  await listen(server, port, host);
  return server;
}

/** Close a server and end its open connections (event streams never end on their own). */
export async function closeServer(server: Server): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => {
      resolve();
    });
    server.closeAllConnections();
  });
}

/**
 * The control API: HTTP + JSON, served with hono on a Unix socket (mode
 * 0600: root only; the CLI's way in) and, when configured, on a TCP address
 * for the dashboard and Prometheus (bearer tokens, see auth.ts). Endpoints
 * and answers: see api.ts.
 */
import { chmod, lstat, mkdir, rm } from "node:fs/promises";
import { dirname } from "node:path";
import type { Server } from "node:http";
import type { Socket } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import type { StatusDocument } from "./api.js";
import type { QuotaStatus } from "../quota/meter.js";
import type { SpeedtestResult } from "../speedtest/state.js";
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
  /**
   * Set an uplink's quota usage in this period, bytes (0: reset); rejects
   * with UnknownUplinkError or NoQuotaError.
   */
  setQuota?(uplink: string, bytes: number): Promise<QuotaStatus>;
  /** Speed-test an uplink; rejects with UnknownUplinkError or SpeedtestError (409). */
  speedtest?(uplink: string): Promise<SpeedtestResult>;
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
  onDenied?: (info: {
    method: string;
    path: string;
    status: number;
    message: string;
    /** The client's address, or `unix` on the control socket. */
    source: string;
  }) => void;
  /** Called for each allowed write (for the log). */
  onWrite?: (info: { method: string; path: string; who: string }) => void;
  /** Keep-alive comment interval on event streams, ms (default 15 000). */
  keepAliveMs?: number;
  /**
   * Largest request body read, bytes (default {@link MAX_BODY_BYTES}); a
   * larger one is refused with 413 before it is read to the end.
   */
  maxBodyBytes?: number;
  /** The limits now (read at each connection and stream); default DEFAULT_CONTROL_LIMITS. */
  limits?: () => ControlLimits;
  /** A stream or connection refused at its limit, or a slow reader dropped. */
  onLimit?: (info: { what: "connection" | "stream" | "slow reader"; limit: number }) => void;
  /**
   * An error of the listening server after it started (a failed accept,
   * e.g. EMFILE); without this option it is ignored. Never fatal: the
   * server keeps listening.
   */
  onServerError?: (error: Error) => void;
}

/**
 * Per-listener limits that keep one client (or thousands) from taking the
 * daemon's files, memory or event loop.
 */
export interface ControlLimits {
  /** Open connections at once; one more is answered 503 and closed. */
  maxConnections: number;
  /** Event streams (`GET /events/stream`) at once; one more is answered 503. */
  maxStreams: number;
  /** Unsent bytes one stream may queue; a reader slower than that is dropped. */
  streamBufferBytes: number;
}

/**
 * Files the daemon keeps for itself, whatever its control clients do:
 * probes, the long-lived `ip monitor` and `nft -i` sessions, and the pipes
 * of the kernel commands it spawns (three each) during a failover.
 */
export const RESERVED_FILES = 256;

/**
 * The most connections one of `listeners` control listeners may hold
 * under a limit of `fileLimit` open files: what is left after
 * {@link RESERVED_FILES}, shared by the listeners, at least 16. A
 * `control.max_connections` above it is lowered to it, so that clients can
 * never take the files a failover's `nft` and `ip` need (EMFILE).
 * @param fileLimit the soft RLIMIT_NOFILE (`ulimit -n`); undefined: unlimited.
 * @returns connections per listener; Infinity when `fileLimit` is undefined.
 */
export function connectionBudget(fileLimit: number | undefined, listeners: number): number {
  if (fileLimit === undefined) return Infinity;
  return Math.max(16, Math.floor((fileLimit - RESERVED_FILES) / Math.max(1, listeners)));
}

/** Defaults of {@link ControlLimits} (as the config's `control` section). */
export const DEFAULT_CONTROL_LIMITS: Readonly<ControlLimits> = Object.freeze({
  maxConnections: 256,
  maxStreams: 32,
  streamBufferBytes: 1024 * 1024,
});

/**
 * Largest request body the control API reads, bytes. Its only body is
 * `POST /uplinks/NAME/disable`'s `{"drain": true, "reason": "..."}` (a reason
 * of at most 200 characters), so 16 KiB leaves room and no more.
 */
export const MAX_BODY_BYTES = 16 * 1024;

const HTTP_STATUS: Record<string, 404 | 409 | 422> = {
  UPLINKD_ERR_CONFIG: 422,
  UPLINKD_ERR_SPEEDTEST: 409,
  UPLINKD_ERR_UNKNOWN_UPLINK: 404,
  UPLINKD_ERR_NO_QUOTA: 404,
};

const quotaBody = z.object({ used_bytes: z.number().int().nonnegative() }).strict();

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

/** Longest wait for a request's headers, ms: an idle connection is closed after it. */
export const HEADERS_TIMEOUT_MS = 10_000;

/**
 * Bound the server's open connections to `limits().maxConnections`: one
 * more gets a 503 and is closed at once, so its file descriptor is freed
 * (an idle client cannot fill the daemon's file table, which `spawn nft`
 * needs). Connections that send no request are closed after
 * {@link HEADERS_TIMEOUT_MS}.
 */
function limitConnections(
  server: Server,
  options: Pick<ControlAppOptions, "limits" | "onLimit" | "onServerError">,
): void {
  let open = 0;
  // A failed accept (EMFILE) is emitted as 'error' on the server: never let it end the daemon.
  server.on("error", (error: Error) => {
    if (server.listening) options.onServerError?.(error);
  });
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = 60_000;
  server.on("connection", (socket: Socket) => {
    const max = (options.limits?.() ?? DEFAULT_CONTROL_LIMITS).maxConnections;
    if (open >= max) {
      options.onLimit?.({ what: "connection", limit: max });
      const body = JSON.stringify({
        error: `too many connections (${max}); try again later`,
        code: "UPLINKD_ERR_BUSY",
      });
      socket.on("error", () => undefined);
      socket.end(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\n" +
          `connection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      socket.destroySoon();
      return;
    }
    open += 1;
    socket.once("close", () => {
      open -= 1;
    });
  });
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
        const remote = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)
          ?.incoming?.socket?.remoteAddress;
        options.onDenied?.({ method, path, status, message, source: remote ?? "unix" });
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
  let streams = 0;
  app.get("/events/stream", (c) => {
    c.header("cache-control", "no-cache");
    c.header("x-accel-buffering", "no");
    // hono answers HEAD with the GET handler and drops the body unread: a
    // stream started here would never learn that nobody reads it.
    if (c.req.method === "HEAD") return c.body(null, 200, { "content-type": "text/event-stream" });
    const limits = options.limits?.() ?? DEFAULT_CONTROL_LIMITS;
    if (streams >= limits.maxStreams) {
      options.onLimit?.({ what: "stream", limit: limits.maxStreams });
      return c.json(
        {
          error: `too many event streams (${limits.maxStreams}); try again later`,
          code: "UPLINKD_ERR_BUSY",
        },
        503,
        { "retry-after": "5" },
      );
    }
    streams += 1;
    return streamSSE(
      c,
      async (stream) => {
        // Listen for the client's hang-up before anything is awaited: a client
        // that leaves while the first status is assembled must still end the
        // subscription and the keep-alive timer.
        const closed = new Promise<void>((resolve) => {
          stream.onAbort(resolve);
        });
        // Writes wait for the socket to drain; what a slow reader leaves unsent
        // queues here, counted, and past the limit the reader is dropped.
        let chain: Promise<void> = Promise.resolve();
        let pending = 0;
        let dropped = false;
        const send = (bytes: number, write: () => Promise<unknown>) => {
          if (dropped) return;
          pending += bytes;
          if (pending > limits.streamBufferBytes) {
            dropped = true;
            options.onLimit?.({ what: "slow reader", limit: limits.streamBufferBytes });
            (c.env as { outgoing?: { destroy(): void } } | undefined)?.outgoing?.destroy();
            stream.abort();
            return;
          }
          chain = chain
            .then(write)
            .catch(() => undefined)
            .then(() => {
              pending -= bytes;
            });
        };
        const sse = (event: string, data: string) => {
          send(Buffer.byteLength(data) + event.length + 16, () => stream.writeSSE({ event, data }));
        };
        const unsubscribe = handlers.subscribe((event) => {
          sse(event.type, JSON.stringify(event.data));
        });
        const keepAlive = setInterval(() => {
          send(16, () => stream.write(": keep-alive\n\n"));
        }, options.keepAliveMs ?? 15_000);
        try {
          const status = await handlers.status();
          sse("status", JSON.stringify(status));
          await closed;
        } finally {
          clearInterval(keepAlive);
          unsubscribe();
          streams -= 1;
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
  app.post("/uplinks/:name/quota", async (c) => {
    const body = quotaBody.safeParse(await jsonBody(c));
    if (!body.success) {
      return c.json(
        { error: 'body must be {"used_bytes": BYTES}', code: "UPLINKD_ERR_USAGE" },
        400,
      );
    }
    if (handlers.setQuota === undefined) {
      return c.json({ error: "this daemon keeps no quotas", code: "UPLINKD_ERR_NOT_FOUND" }, 404);
    }
    return c.json(await handlers.setQuota(c.req.param("name"), body.data.used_bytes));
  });
  app.post("/uplinks/:name/speedtest", async (c) => {
    if (handlers.speedtest === undefined) {
      return c.json(
        { error: "this daemon runs no speed tests", code: "UPLINKD_ERR_NOT_FOUND" },
        404,
      );
    }
    return c.json(await handlers.speedtest(c.req.param("name")));
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
  // Only a socket (an old daemon's) is removed; never a file, directory or link someone named.
  const existing = await lstat(socketPath).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  });
  if (existing !== undefined) {
    if (!existing.isSocket()) {
      throw new UplinkdError(
        "UPLINKD_ERR_SOCKET_PATH",
        `control.socket ${socketPath} exists and is not a socket; refusing to replace it (choose another path or remove it)`,
      );
    }
    await rm(socketPath, { force: true });
  }
  const app = controlApp(handlers, options);
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  limitConnections(server, options);
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
  limitConnections(server, options);
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

/**
 * The lab's echo host, run by `lab up` inside the `net` namespace: it tells
 * each client the address it saw, so a test knows which uplink (and which
 * masquerade address) carried a connection.
 *
 * - HTTP (default port 80): `GET /` -> the client address and a newline
 *   (text/plain); `GET /json` -> `{"client":"100.64.1.2","port":40112}`;
 *   `GET /bytes?n=N` -> N bytes (a bulk transfer of that size);
 *   `POST /upload` -> reads and discards the body, then answers
 *   `{"bytes":N}` (with `/bytes`, the lab's speed-test endpoints).
 * - whoami (default TCP port 7): for every line received, the client address
 *   and a newline; one connection can ask many times.
 *
 * Usage: `host.js [--address 192.0.2.10]... [--http-port 80] [--whoami-port 7]`
 * (`--address` may be given more than once, e.g. an IPv4 and an IPv6
 * address: the same services listen on each; IPv6 clients are reported as
 * the kernel gives them, `2001:db8:1::2`).
 * Prints `ready` on stdout once all listen; errors go to stderr.
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from "node:http";
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from "node:net";
import { parseArgs } from "node:util";
import { isMainModule } from "./scripts.js";

/** Longest whoami line accepted (bytes); a longer one closes the connection. */
const MAX_LINE = 1024;

/** Where the echo host listens. */
export interface EchoHostOptions {
  /** One address, or several (the same services listen on each). */
  address: string | readonly string[];
  /** TCP port of the HTTP echo. */
  httpPort: number;
  /** TCP port of the line-based whoami. */
  whoamiPort: number;
}

/** A running echo host. */
export interface EchoHost {
  /** HTTP echo on the first address. */
  http: HttpServer;
  /** whoami on the first address. */
  whoami: TcpServer;
  /** One HTTP and one whoami server per address, in the order given. */
  servers: { address: string; http: HttpServer; whoami: TcpServer }[];
  /** Stop listening and drop open connections. */
  close(): Promise<void>;
}

/** The client's address as text, without an IPv4-mapped `::ffff:` prefix. */
function clientAddress(socket: Socket): string {
  const a = socket.remoteAddress ?? "unknown";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

function handleWhoami(socket: Socket): void {
  const who = `${clientAddress(socket)}\n`;
  let pending = 0;
  socket.setNoDelay(true);
  socket.on("data", (chunk: Buffer) => {
    let lines = 0;
    for (const byte of chunk) {
      if (byte === 0x0a) {
        lines++;
        pending = 0;
      } else {
        pending++;
      }
    }
    if (pending > MAX_LINE) {
      socket.destroy();
      return;
    }
    if (lines > 0) socket.write(who.repeat(lines));
  });
  socket.on("error", () => undefined);
}

function listen(server: HttpServer | TcpServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/** Largest body `GET /bytes?n=N` sends: 1 GiB. */
const MAX_BYTES = 2 ** 30;
const CHUNK = Buffer.alloc(64 * 1024);

/** `GET /bytes?n=N`: N zero bytes (a bulk transfer), written as the client reads them. */
function sendBytes(res: ServerResponse, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > MAX_BYTES) {
    res.writeHead(400, { "content-type": "text/plain" }).end(`n must be 0..${MAX_BYTES}\n`);
    return;
  }
  res.writeHead(200, {
    "content-type": "application/octet-stream",
    "content-length": n,
    "x-client": clientAddress(res.req.socket),
  });
  let left = n;
  const write = (): void => {
    while (left > 0) {
      const size = Math.min(left, CHUNK.length);
      left -= size;
      if (!res.write(size === CHUNK.length ? CHUNK : CHUNK.subarray(0, size))) {
        res.once("drain", write);
        return;
      }
    }
    res.end();
  };
  write();
}

/** `POST /upload`: the body is read and discarded; the answer counts it. */
function receiveUpload(req: IncomingMessage, res: ServerResponse): void {
  let bytes = 0;
  req.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
  });
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json" }).end(`{"bytes":${bytes}}\n`);
  });
  req.on("error", () => undefined);
}

/** The HTTP echo's request handler (see the module comment). */
function handleHttp(req: IncomingMessage, res: ServerResponse): void {
  const client = clientAddress(req.socket);
  const path = (req.url ?? "/").split("?")[0];
  if (req.method === "GET" && path === "/") {
    res.writeHead(200, { "content-type": "text/plain" }).end(`${client}\n`);
  } else if (req.method === "GET" && path === "/bytes") {
    sendBytes(res, Number(new URLSearchParams((req.url ?? "").split("?")[1]).get("n")));
  } else if (req.method === "POST" && path === "/upload") {
    receiveUpload(req, res);
  } else if (req.method === "GET" && path === "/json") {
    const body = JSON.stringify({ client, port: req.socket.remotePort ?? 0 });
    res.writeHead(200, { "content-type": "application/json" }).end(`${body}\n`);
  } else {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  }
}

/**
 * Start the echo host.
 * @throws the listen error (EADDRNOTAVAIL when the address is not local, EADDRINUSE).
 */
export async function startEchoHost(options: EchoHostOptions): Promise<EchoHost> {
  const addresses = typeof options.address === "string" ? [options.address] : [...options.address];
  if (addresses.length === 0) throw new Error("echo host: no address to listen on");
  const open = new Set<Socket>();
  const servers: EchoHost["servers"] = [];
  const closeAll = async (): Promise<void> => {
    for (const socket of open) socket.destroy();
    await Promise.all(
      servers.flatMap((s) => {
        s.http.closeAllConnections();
        return [
          new Promise((r) => s.http.close(r)),
          new Promise((r) => {
            s.whoami.close(r);
          }),
        ];
      }),
    );
  };
  try {
    for (const address of addresses) {
      const http = createHttpServer(handleHttp);
      http.keepAliveTimeout = 5000;
      const whoami = createTcpServer((socket) => {
        open.add(socket);
        socket.on("close", () => open.delete(socket));
        handleWhoami(socket);
      });
      servers.push({ address, http, whoami });
      await listen(http, options.httpPort, address);
      await listen(whoami, options.whoamiPort, address);
    }
  } catch (error) {
    await closeAll().catch(() => undefined);
    throw error;
  }
  const first = servers[0];
  if (first === undefined) throw new Error("echo host: no server");
  return { http: first.http, whoami: first.whoami, servers, close: closeAll };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      address: { type: "string", multiple: true, default: ["192.0.2.10"] },
      "http-port": { type: "string", default: "80" },
      "whoami-port": { type: "string", default: "7" },
    },
  });
  const host = await startEchoHost({
    address: values.address,
    httpPort: Number(values["http-port"]),
    whoamiPort: Number(values["whoami-port"]),
  });
  process.stdout.on("error", () => undefined);
  process.stdout.write("ready\n");
  const stop = (): void => {
    setTimeout(() => process.exit(0), 1000).unref();
    void host.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (isMainModule(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`echo host: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}

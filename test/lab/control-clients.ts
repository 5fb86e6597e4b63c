/**
 * Many clients of the daemon's TCP listener at once, for hardening.test.ts.
 * Run it inside a lab namespace (`ip netns exec P-lan node ...
 * control-clients.ts ...`), so it only reaches the lab.
 *
 *     control-clients.ts idle HOST PORT COUNT [REOPEN_MS]
 *     control-clients.ts stream HOST PORT COUNT TOKEN
 *
 * `idle`: COUNT connections that never send a request; one the daemon
 * closes (a 503 beyond its limit, or its header timeout) is opened again
 * after REOPEN_MS (default 250; 0: never), so the pressure lasts.
 * `stream`: COUNT connections that each ask for `GET /events/stream` with
 * the bearer TOKEN, read the first chunk of the answer (its status line)
 * and then never read again.
 *
 * Prints one JSON line when every first attempt has connected or failed,
 * `{"event":"opened","connected":N,"failed":N,"statuses":{"503":N,...}}`,
 * then the same counts every second as `{"event":"stats",...}` with `open`
 * (sockets open now). SIGTERM or SIGINT destroy every socket and exit 0.
 * Connections are opened at most 200 at a time (no connect storm).
 */
import { connect, type Socket } from "node:net";

const [mode, host, portText, countText, extra] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
if (
  (mode !== "idle" && mode !== "stream") ||
  host === undefined ||
  !Number.isInteger(port) ||
  !Number.isInteger(count) ||
  (mode === "stream" && extra === undefined)
) {
  process.stderr.write(
    "usage: control-clients.ts idle HOST PORT COUNT [REOPEN_MS] | stream HOST PORT COUNT TOKEN\n",
  );
  process.exit(2);
}
const reopenMs = mode === "idle" ? Number(extra ?? 250) : 0;

const sockets = new Set<Socket>();
const statuses: Record<string, number> = {};
let connected = 0;
let failed = 0;
let reopened = 0;
let stopping = false;

function emit(event: string): void {
  process.stdout.write(
    JSON.stringify({ event, connected, failed, reopened, open: sockets.size, statuses }) + "\n",
  );
}

/** Open one connection; resolves once it is connected or has failed. */
function open(): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    sockets.add(socket);
    let done = false;
    const settle = () => {
      if (done) return;
      done = true;
      resolve();
    };
    socket.on("connect", () => {
      connected += 1;
      settle();
      if (mode === "stream") {
        socket.write(
          `GET /events/stream HTTP/1.1\r\nHost: ${host}:${port}\r\nAuthorization: Bearer ${extra}\r\nAccept: text/event-stream\r\n\r\n`,
        );
      }
    });
    socket.once("data", (chunk: Buffer) => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(chunk.toString("latin1"))?.[1] ?? "other";
      statuses[status] = (statuses[status] ?? 0) + 1;
      // A stream client stops reading here: what the daemon sends next piles up.
      if (mode === "stream") socket.pause();
      else socket.resume();
    });
    socket.on("error", () => {
      if (!done) failed += 1;
      settle();
    });
    socket.on("close", () => {
      sockets.delete(socket);
      settle();
      if (!stopping && mode === "idle" && reopenMs > 0) {
        setTimeout(() => {
          if (stopping) return;
          reopened += 1;
          void open();
        }, reopenMs);
      }
    });
  });
}

async function main(): Promise<void> {
  const batch = 200;
  for (let i = 0; i < count; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, count - i) }, () => open()));
  }
  emit("opened");
  setInterval(() => {
    emit("stats");
  }, 1000);
}

function stop(): void {
  stopping = true;
  for (const socket of sockets) socket.destroy();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
void main();

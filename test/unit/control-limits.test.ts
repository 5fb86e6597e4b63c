/**
 * Limits of the control listeners: connections, event streams, a stream's
 * unsent bytes, and refused requests logged once per source per interval.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { StreamEvent } from "../../src/control/api.js";
import { RefusalLog, type RefusalLine } from "../../src/control/refusals.js";
import { openFilesLimit, parseOpenFilesLimit } from "../../src/process/limits.js";
import {
  closeServer,
  connectionBudget,
  RESERVED_FILES,
  startControlServer,
  type ControlHandlers,
  type ControlLimits,
} from "../../src/control/server.js";
import { ManualClock } from "../fakes/clock.js";

function handlers(listeners: Set<(event: StreamEvent) => void>): ControlHandlers {
  return {
    status: () => Promise.resolve({ uplinks: [] } as never),
    events: () => ({ events: [] }),
    history: () => ({ intervalMs: 1000, samples: [] }),
    inputs: () => ({}) as never,
    reload: () => Promise.reject(new Error("not here")),
    disable: () => Promise.reject(new Error("not here")),
    enable: () => Promise.reject(new Error("not here")),
    metrics: () => Promise.resolve({ contentType: "text/plain", text: "" }),
    subscribe: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** A raw connection to the socket; `text()` is everything received so far. */
async function open(path: string, request?: string) {
  const socket: Socket = connect(path);
  let received = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    received += chunk;
  });
  const closed = new Promise<void>((resolve) => {
    socket.once("close", () => {
      resolve();
    });
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  if (request !== undefined) socket.write(request);
  return { socket, text: () => received, closed };
}

const until = async (what: string, ok: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

async function withServer(
  limits: ControlLimits,
  run: (
    path: string,
    seen: string[],
    listeners: Set<(event: StreamEvent) => void>,
  ) => Promise<void>,
) {
  const dir = await mkdtemp(join(tmpdir(), "uplinkd-limits-"));
  const path = join(dir, "uplinkd.sock");
  const listeners = new Set<(event: StreamEvent) => void>();
  const seen: string[] = [];
  const server = await startControlServer(path, handlers(listeners), {
    limits: () => limits,
    onLimit: (info) => seen.push(`${info.what} ${info.limit}`),
  });
  try {
    await run(path, seen, listeners);
  } finally {
    await closeServer(server);
    await rm(dir, { recursive: true, force: true });
  }
}

const STREAM = "GET /events/stream HTTP/1.1\r\nhost: x\r\n\r\n";

describe("control listener limits", () => {
  test("one connection over max_connections is answered 503 and closed; the others stay", async () => {
    await withServer(
      { maxConnections: 3, maxStreams: 8, streamBufferBytes: 1 << 20 },
      async (path, seen) => {
        const idle = await Promise.all([open(path), open(path), open(path)]);
        const extra = await open(path);
        await extra.closed;
        assert.match(extra.text(), /^HTTP\/1\.1 503 Service Unavailable\r\n/);
        assert.match(extra.text(), /too many connections \(3\)/);
        assert.deepEqual(seen, ["connection 3"]);
        idle[0].socket.destroy();
        await idle[0].closed;
        const again = await open(
          path,
          "GET /events HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        await again.closed;
        assert.match(again.text(), /^HTTP\/1\.1 200 OK/);
        for (const c of idle) c.socket.destroy();
      },
    );
  });

  test("one event stream over max_streams gets 503; a closed stream frees its slot", async () => {
    await withServer(
      { maxConnections: 16, maxStreams: 2, streamBufferBytes: 1 << 20 },
      async (path, seen, listeners) => {
        const a = await open(path, STREAM);
        const b = await open(path, STREAM);
        await until("two subscribers", () => listeners.size === 2);
        const c = await open(path, STREAM);
        await until("the 503", () => c.text().includes("\r\n\r\n"));
        assert.match(c.text(), /^HTTP\/1\.1 503/);
        assert.match(c.text(), /too many event streams \(2\)/);
        assert.deepEqual(seen, ["stream 2"]);
        a.socket.destroy();
        await until("the subscription ended", () => listeners.size === 1);
        const d = await open(path, STREAM);
        await until("a new subscriber", () => listeners.size === 2);
        // The subscription can be registered before its answer's head arrives.
        await until("the new stream's answer", () => d.text().includes("\r\n\r\n"));
        assert.match(d.text(), /^HTTP\/1\.1 200/);
        for (const s of [b, c, d]) s.socket.destroy();
      },
    );
  });

  test("a reader that does not keep up is dropped once its unsent bytes pass stream_buffer", async () => {
    await withServer(
      { maxConnections: 16, maxStreams: 4, streamBufferBytes: 64 * 1024 },
      async (path, seen, listeners) => {
        const slow = await open(path, STREAM);
        await until("a subscriber", () => listeners.size === 1);
        slow.socket.pause(); // reads nothing more: the kernel buffers fill, then ours
        const big = "x".repeat(16 * 1024);
        for (let i = 0; i < 2000 && listeners.size > 0; i++) {
          for (const listener of listeners) listener({ type: "log", data: { big, i } } as never);
          await new Promise((resolve) => setImmediate(resolve));
        }
        await until("the slow reader dropped", () => listeners.size === 0);
        assert.deepEqual(seen, [`slow reader ${64 * 1024}`]);
        slow.socket.destroy();
      },
    );
  });
});

describe("the file limit", () => {
  test("is read from /proc/PID/limits (soft value; unlimited gives none)", () => {
    const limits = [
      "Limit                     Soft Limit           Hard Limit           Units     ",
      "Max processes             63451                63451                processes ",
      "Max open files            1024                 524288               files     ",
      "",
    ].join("\n");
    assert.equal(parseOpenFilesLimit(limits), 1024);
    assert.equal(
      parseOpenFilesLimit(
        "Max open files            unlimited            unlimited            files\n",
      ),
      undefined,
    );
    assert.equal(parseOpenFilesLimit(""), undefined);
    assert.ok((openFilesLimit() ?? 1) > 0);
  });

  test("leaves each listener what is left after the daemon's own files, at least 16", () => {
    assert.equal(RESERVED_FILES, 256);
    assert.equal(connectionBudget(1024, 2), 384);
    assert.equal(connectionBudget(1024, 1), 768);
    assert.equal(connectionBudget(300, 2), 22);
    assert.equal(connectionBudget(100, 2), 16);
    assert.equal(connectionBudget(undefined, 2), Infinity);
  });

  test("an accept error after the server listens is reported, not thrown", async () => {
    const dir = await mkdtemp(join(tmpdir(), "uplinkd-limits-"));
    const errors: string[] = [];
    const server = await startControlServer(join(dir, "uplinkd.sock"), handlers(new Set()), {
      onServerError: (error) => errors.push(error.message),
    });
    try {
      // What net.Server does when accept(2) fails (EMFILE): without a listener this throws.
      server.emit("error", Object.assign(new Error("accept EMFILE"), { code: "EMFILE" }));
      assert.deepEqual(errors, ["accept EMFILE"]);
      assert.ok(server.listening);
    } finally {
      await closeServer(server);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("refused requests in the log", () => {
  test("one line per source per interval, the next line carrying the count", () => {
    const clock = new ManualClock();
    const lines: RefusalLine[] = [];
    const log = new RefusalLog(
      () => 60_000,
      clock,
      (line) => lines.push(line),
    );
    const refusal = (source: string) => ({
      source,
      method: "GET",
      path: "/status",
      status: 401,
      message: "no token",
    });
    for (let i = 0; i < 20_000; i++) log.note(refusal("192.0.2.7"));
    log.note(refusal("192.0.2.8"));
    assert.deepEqual(
      lines.map((l) => `${l.source} ${l.suppressed}`),
      ["192.0.2.7 0", "192.0.2.8 0"],
    );
    clock.advance(59_999);
    log.note(refusal("192.0.2.7"));
    assert.equal(lines.length, 2);
    clock.advance(1);
    log.note(refusal("192.0.2.7"));
    assert.deepEqual(
      lines.map((l) => `${l.source} ${l.suppressed}`),
      ["192.0.2.7 0", "192.0.2.8 0", "192.0.2.7 20000"],
    );
  });
});

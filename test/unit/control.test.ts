/**
 * The control API without a daemon: tokens, endpoints, errors, the
 * dashboard's files, and the pieces behind status (traffic, maintenance,
 * formatting, reload changes).
 */
import assert from "node:assert/strict";
import { uplinkStatus } from "../fakes/status.js";
import { spawnSync } from "node:child_process";
import { channel } from "node:diagnostics_channel";
import { mkdtemp, rm } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import type { DisableOptions, StreamEvent } from "../../src/control/api.js";
import { authorize, requiredAccess, type TokenConfig } from "../../src/control/auth.js";
import { configChanges } from "../../src/control/changes.js";
import { formatBytes, formatEvents, formatStatus } from "../../src/control/format.js";
import { withMaintenance } from "../../src/health/maintenance.js";
import {
  MAX_BODY_BYTES,
  closeServer,
  controlApp,
  parseListen,
  startControlServer,
  type ControlHandlers,
} from "../../src/control/server.js";
import { TrafficSampler, parseProcNetDev } from "../../src/control/traffic.js";
import type { ConntrackCounts } from "../../src/kernel/types.js";
import type { StatusDocument, UplinkStatus } from "../../src/control/api.js";
import { ConfigError, UnknownUplinkError } from "../../src/errors.js";
import type { HealthSnapshot, Transition, UplinkHealth } from "../../src/uplink-health.js";

const READ = "read-token-0123456789abcdef";
const WRITE = "write-token-0123456789abcdef";
const TOKENS: TokenConfig[] = [
  { name: "grafana", token: READ, access: "read" },
  { name: "ops", token: WRITE, access: "write" },
];

const uplink = uplinkStatus;

function statusDoc(uplinks: UplinkStatus[] = [uplink("isp1"), uplink("isp2")]): StatusDocument {
  return {
    version: "0.1.0",
    pid: 1,
    config: "/etc/uplinkd/uplinkd.yaml",
    startedAt: "2026-11-21T00:00:00.000Z",
    uplinks,
    policies: {},
    lastApply: null,
    domains: [],
  };
}

/** Handlers that record every call that would change something. */
function fakeHandlers() {
  const calls: string[] = [];
  const disabled = new Set<string>();
  const handlers: ControlHandlers = {
    status: () =>
      Promise.resolve(
        statusDoc([
          uplink("isp1", disabled.has("isp1") ? { state: "disabled" } : {}),
          uplink("isp2"),
        ]),
      ),
    events: () => ({ events: [] }),
    history: () => ({ intervalMs: 1000, samples: [] }),
    inputs: () => ({
      uplinks: {
        isp1: { "4": { state: disabled.has("isp1") ? "disabled" : "down", probed: "down" } },
        isp2: { "4": { state: "up", probed: "up" }, "6": { state: "down", probed: "down" } },
      },
      load: { throughput: { isp2: { down: 1000, up: 10 } }, full: ["isp2"] },
    }),
    reload: () => {
      calls.push("reload");
      return Promise.resolve({ ok: true, config: "x.yaml", uplinks: ["isp1"], changes: [] });
    },
    disable: (name: string, options: DisableOptions) => {
      if (name !== "isp1" && name !== "isp2") {
        return Promise.reject(new UnknownUplinkError(name, ["isp1", "isp2"]));
      }
      calls.push(`disable ${name} drain=${String(options.drain)}`);
      disabled.add(name);
      // A drain reports how many entries it deleted; the API must pass the count on.
      const drained = options.drain ? 3 : 0;
      return Promise.resolve({ uplink: name, state: "disabled", changed: true, drained });
    },
    enable: (name: string) => {
      calls.push(`enable ${name}`);
      disabled.delete(name);
      return Promise.resolve({ uplink: name, state: "up", changed: true, drained: 0 });
    },
    metrics: () => Promise.resolve({ contentType: "text/plain", text: "uplinkd_up 1\n" }),
    subscribe: () => () => undefined,
  };
  return { handlers, calls, disabled };
}

/**
 * Reads a stream until `marker` has arrived; fails when the stream ends
 * first or `marker` is not within the first `maxChunks` chunks.
 */
async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  marker: string,
  maxChunks = 20,
): Promise<string> {
  let text = "";
  for (let chunk = 0; chunk < maxChunks && !text.includes(marker); chunk++) {
    const { done, value } = await reader.read();
    if (done) assert.fail(`the stream ended before ${JSON.stringify(marker)}; got ${text}`);
    text += value;
  }
  assert.ok(text.includes(marker), `no ${JSON.stringify(marker)} in ${maxChunks} chunks: ${text}`);
  return text;
}

const tcp = (tokens: TokenConfig[]) => ({ tokens: () => tokens });
const bearer = (token: string) => ({ authorization: `Bearer ${token}`, host: "127.0.0.1:9101" });

describe("control API over TCP with tokens", () => {
  test("a GET without a token gets 401 with a Bearer challenge", async () => {
    const { handlers } = fakeHandlers();
    const app = controlApp(handlers, tcp(TOKENS));
    const res = await app.request("/status", { headers: { host: "127.0.0.1:9101" } });
    assert.equal(res.status, 401);
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
    assert.equal(((await res.json()) as { code: string }).code, "UPLINKD_ERR_UNAUTHORIZED");
  });

  test("a wrong token gets 401 on GET and on POST, and nothing changes", async () => {
    const { handlers, calls, disabled } = fakeHandlers();
    const app = controlApp(handlers, tcp(TOKENS));
    for (const [method, path] of [
      ["GET", "/status"],
      ["GET", "/metrics"],
      ["GET", "/events/stream"],
      ["POST", "/uplinks/isp1/disable"],
      ["POST", "/reload"],
    ] as const) {
      const res = await app.request(path, { method, headers: bearer("wrong-token-0123456789") });
      assert.equal(res.status, 401, `${method} ${path}`);
    }
    const noToken = await app.request("/uplinks/isp1/disable", {
      method: "POST",
      headers: { host: "127.0.0.1:9101" },
    });
    assert.equal(noToken.status, 401);
    assert.deepEqual(calls, []);
    assert.equal(disabled.size, 0);
  });

  test("a read-only token reads but cannot POST (403), and nothing changes", async () => {
    const { handlers, calls } = fakeHandlers();
    const app = controlApp(handlers, tcp(TOKENS));
    const status = await app.request("/status", { headers: bearer(READ) });
    assert.equal(status.status, 200);
    const body = (await status.json()) as StatusDocument;
    assert.equal(body.uplinks[0]?.state, "up");
    for (const path of ["/uplinks/isp1/disable", "/uplinks/isp1/enable", "/reload"]) {
      const res = await app.request(path, { method: "POST", headers: bearer(READ) });
      assert.equal(res.status, 403, path);
    }
    assert.deepEqual(calls, []);
    const after = (await (
      await app.request("/status", { headers: bearer(READ) })
    ).json()) as StatusDocument;
    assert.equal(after.uplinks[0]?.state, "up");
  });

  test("a write token disables, drains and enables", async () => {
    const { handlers, calls } = fakeHandlers();
    const app = controlApp(handlers, tcp(TOKENS));
    const res = await app.request("/uplinks/isp1/disable", {
      method: "POST",
      headers: { ...bearer(WRITE), "content-type": "application/json" },
      body: JSON.stringify({ drain: true }),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {
      uplink: "isp1",
      state: "disabled",
      changed: true,
      drained: 3,
    });
    const status = (await (
      await app.request("/status", { headers: bearer(WRITE) })
    ).json()) as StatusDocument;
    assert.equal(status.uplinks[0]?.state, "disabled");
    assert.equal(
      (await app.request("/uplinks/isp1/enable", { method: "POST", headers: bearer(WRITE) }))
        .status,
      200,
    );
    assert.deepEqual(calls, ["disable isp1 drain=true", "enable isp1"]);
  });

  test("the dashboard's files need no token (they hold no data) and carry a CSP", async () => {
    const { handlers } = fakeHandlers();
    const app = controlApp(handlers, tcp(TOKENS));
    const page = await app.request("/", { headers: { host: "192.0.2.1:9101" } });
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /text\/html/);
    assert.match(page.headers.get("content-security-policy") ?? "", /script-src 'self'/);
    assert.match(await page.text(), /<script src="\/dashboard\/app\.js"/);
    for (const path of [
      "/dashboard/app.js",
      "/dashboard/style.css",
      "/dashboard/vendor/uPlot.iife.min.js",
      "/dashboard/vendor/uPlot.min.css",
    ]) {
      const res = await app.request(path, { headers: { host: "192.0.2.1:9101" } });
      assert.equal(res.status, 200, path);
      assert.ok((await res.text()).length > 100, path);
    }
  });
});

describe("control API over TCP without tokens (loopback only)", () => {
  test("reads are open, writes are refused with 401", async () => {
    const { handlers, calls } = fakeHandlers();
    const app = controlApp(handlers, tcp([]));
    const headers = { host: "127.0.0.1:9101" };
    assert.equal((await app.request("/status", { headers })).status, 200);
    assert.equal((await app.request("/reload", { method: "POST", headers })).status, 401);
    assert.deepEqual(calls, []);
  });

  test("a Host header with a DNS name is refused (DNS rebinding)", async () => {
    const { handlers } = fakeHandlers();
    const app = controlApp(handlers, tcp([]));
    const res = await app.request("/status", { headers: { host: "attacker.example:9101" } });
    assert.equal(res.status, 421);
    const local = await app.request("/status", { headers: { host: "localhost:9101" } });
    assert.equal(local.status, 200);
  });
});

describe("control API on the Unix socket (no tokens: the socket is root only)", () => {
  test("POST works without a token", async () => {
    const { handlers, calls } = fakeHandlers();
    const app = controlApp(handlers);
    assert.equal((await app.request("/reload", { method: "POST" })).status, 200);
    assert.deepEqual(calls, ["reload"]);
  });

  test("GET /inputs answers each uplink's health per family and the load", async () => {
    const { handlers } = fakeHandlers();
    const app = controlApp(handlers);
    await app.request("/uplinks/isp1/disable", { method: "POST" });
    const res = await app.request("/inputs");
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {
      uplinks: {
        isp1: { "4": { state: "disabled", probed: "down" } },
        isp2: { "4": { state: "up", probed: "up" }, "6": { state: "down", probed: "down" } },
      },
      load: { throughput: { isp2: { down: 1000, up: 10 } }, full: ["isp2"] },
    });
  });

  test("an unknown uplink is 404 with its code; a bad body is 400", async () => {
    const { handlers } = fakeHandlers();
    const app = controlApp(handlers);
    const res = await app.request("/uplinks/isp9/disable", { method: "POST" });
    assert.equal(res.status, 404);
    const body = (await res.json()) as { code: string; error: string };
    assert.equal(body.code, "UPLINKD_ERR_UNKNOWN_UPLINK");
    assert.match(body.error, /isp9.*isp1, isp2/);
    const bad = await app.request("/uplinks/isp1/disable", { method: "POST", body: "{drain" });
    assert.equal(bad.status, 400);
  });

  test("a refused reload is 422 with the FILE:LINE:COL lines", async () => {
    const { handlers } = fakeHandlers();
    handlers.reload = () =>
      Promise.reject(
        new ConfigError([
          {
            file: "u.yaml",
            line: 4,
            col: 13,
            path: "uplinks.0.weight",
            message: "must be a number",
          },
        ]),
      );
    const res = await controlApp(handlers).request("/reload", { method: "POST" });
    assert.equal(res.status, 422);
    assert.deepEqual(await res.json(), {
      error: "u.yaml:4:13: uplinks.0.weight: must be a number",
      code: "UPLINKD_ERR_CONFIG",
    });
  });

  test("a body above the limit is refused with 413 and never reaches the daemon", async () => {
    const { handlers, calls } = fakeHandlers();
    const app = controlApp(handlers);
    const reason = "x".repeat(MAX_BODY_BYTES);
    const res = await app.request("/uplinks/isp1/disable", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ drain: true, reason }),
    });
    assert.equal(res.status, 413);
    assert.deepEqual(await res.json(), {
      error: `request body larger than ${MAX_BODY_BYTES} bytes`,
      code: "UPLINKD_ERR_BODY_TOO_LARGE",
    });
    assert.deepEqual(calls, []);
    const small = await app.request("/uplinks/isp1/disable", {
      method: "POST",
      body: JSON.stringify({ drain: true, reason: "fibre works" }),
    });
    assert.equal(small.status, 200);
    assert.deepEqual(calls, ["disable isp1 drain=true"]);
  });

  test("on the socket, 1 MiB sent chunked or with its length is refused with 413", async () => {
    const dir = await mkdtemp(join(tmpdir(), "uplinkd-control-"));
    const socketPath = join(dir, "uplinkd.sock");
    const { handlers, calls } = fakeHandlers();
    const server = await startControlServer(socketPath, handlers);
    /** POSTs `size` bytes in 64 KiB writes; resolves with the status and the answer. */
    const post = (size: number, chunked: boolean) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest({
          socketPath,
          agent: false,
          method: "POST",
          path: "/uplinks/isp1/disable",
          headers: chunked ? { "transfer-encoding": "chunked" } : { "content-length": size },
        });
        req.on("response", (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => (body += chunk));
          res.on("end", () => {
            resolve({ status: res.statusCode ?? 0, body });
          });
        });
        // The server may close the connection before the client has written everything.
        req.on("error", (error: NodeJS.ErrnoException) => {
          if (error.code !== "EPIPE" && error.code !== "ECONNRESET") reject(error);
        });
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        for (let sent = 0; sent < size; sent += chunk.length) req.write(chunk);
        req.end();
      });
    try {
      for (const chunked of [true, false]) {
        const answer = await post(1024 * 1024, chunked);
        assert.equal(answer.status, 413, `chunked: ${String(chunked)}`);
        assert.equal(
          (JSON.parse(answer.body) as { code: string }).code,
          "UPLINKD_ERR_BODY_TOO_LARGE",
        );
      }
      assert.deepEqual(calls, []);
    } finally {
      await closeServer(server);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("an unknown path is 404", async () => {
    const { handlers } = fakeHandlers();
    assert.equal((await controlApp(handlers).request("/nope")).status, 404);
  });

  test("the event stream starts with the status and forwards transitions", async () => {
    const { handlers } = fakeHandlers();
    let listener: ((event: StreamEvent) => void) | undefined;
    handlers.subscribe = (l) => {
      listener = l;
      return () => {
        listener = undefined;
      };
    };
    const controller = new AbortController();
    const res = await controlApp(handlers).request("/events/stream", {
      signal: controller.signal,
    });
    assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
    const reader = res.body?.pipeThrough(new TextDecoderStream()).getReader();
    assert.ok(reader !== undefined);
    let text = await readUntil(reader, "event: status");
    const transition: Transition = {
      time: "2026-11-21T00:00:01.000Z",
      uplink: "isp1",
      family: 4,
      from: "up",
      to: "down",
      reason: "3 failed rounds",
      loss: 100,
      rtt: null,
    };
    listener?.({ type: "transition", data: transition });
    text += await readUntil(reader, "event: transition");
    assert.match(
      text,
      /event: transition\ndata: \{"time":"2026-11-21T00:00:01.000Z","uplink":"isp1"/,
    );
    await reader.cancel();
    controller.abort();
  });
});

describe("event stream clean-up", () => {
  /** Handlers whose status waits for `release`, counting open subscriptions. */
  function slowStatus() {
    const { handlers } = fakeHandlers();
    let open = 0;
    let release: (() => void) | undefined;
    let fail: ((error: Error) => void) | undefined;
    const ready = statusDoc();
    handlers.status = () =>
      new Promise((resolve, reject) => {
        release = () => {
          resolve(ready);
        };
        fail = reject;
      });
    handlers.subscribe = () => {
      open += 1;
      return () => {
        open -= 1;
      };
    };
    return {
      handlers,
      open: () => open,
      release: () => release?.(),
      fail: (error: Error) => fail?.(error),
    };
  }

  /** Lets pending promise callbacks and I/O callbacks run, a bounded number of turns. */
  async function settle(until: () => boolean): Promise<void> {
    for (let turn = 0; turn < 100 && !until(); turn++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  test("a client that leaves before the first status ends its subscription", async () => {
    const slow = slowStatus();
    const res = await controlApp(slow.handlers).request("/events/stream");
    assert.equal(slow.open(), 1);
    await res.body?.cancel();
    slow.release();
    await settle(() => slow.open() === 0);
    assert.equal(slow.open(), 0, "the subscription outlived the client");
  });

  test("HEAD on the event stream answers its headers and subscribes to nothing", async () => {
    const slow = slowStatus();
    const res = await controlApp(slow.handlers).request("/events/stream", { method: "HEAD" });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
    assert.equal(res.body, null);
    slow.release();
    await settle(() => slow.open() === 0);
    assert.equal(slow.open(), 0, "a HEAD request left a subscription behind");
  });

  test("a status that fails ends the stream with an error event and the subscription", async () => {
    const slow = slowStatus();
    const res = await controlApp(slow.handlers).request("/events/stream");
    slow.fail(new Error("conntrack: timed out"));
    const text = await res.text();
    assert.match(text, /event: error\ndata: conntrack: timed out/);
    assert.equal(slow.open(), 0, "the subscription outlived the stream");
  });
});

describe("tokens", () => {
  test("GET and HEAD need read access, everything else write", () => {
    assert.equal(requiredAccess("GET"), "read");
    assert.equal(requiredAccess("HEAD"), "read");
    assert.equal(requiredAccess("POST"), "write");
    assert.equal(requiredAccess("DELETE"), "write");
  });

  test("a write token may read; a read token may not write", () => {
    assert.deepEqual(authorize(`Bearer ${WRITE}`, "read", TOKENS), { ok: true, who: "ops" });
    assert.deepEqual(authorize(`bearer ${READ}`, "read", TOKENS), { ok: true, who: "grafana" });
    assert.deepEqual(authorize(`Bearer ${READ}`, "write", TOKENS), {
      ok: false,
      status: 403,
      message: "token grafana is read-only",
    });
    assert.deepEqual(authorize("Basic dXNlcjpwYXNz", "read", TOKENS), {
      ok: false,
      status: 401,
      message: "missing bearer token (Authorization: Bearer TOKEN)",
    });
  });
});

describe("control config", () => {
  const base = "lan: [lan0]\nuplinks:\n  - { name: isp1, interface: wan1, gateway: 100.64.1.1 }\n";

  test("control.listen defaults to none and tokens to an empty list", () => {
    const config = parseConfig(base, "u.yaml");
    assert.equal(config.control.listen, undefined);
    assert.deepEqual(config.control.tokens, []);
  });

  test("a non-loopback listen address without tokens is refused at control.listen", () => {
    const text = `${base}control:\n  listen: 192.0.2.1:9101\n`;
    assert.throws(
      () => parseConfig(text, "u.yaml"),
      (error: unknown) =>
        error instanceof ConfigError &&
        /^u\.yaml:5:11: control\.listen: 192\.0\.2\.1 is not a loopback address/.test(
          error.message,
        ),
    );
  });

  test("with a token it is accepted; short tokens and bad addresses are not", () => {
    const ok = `${base}control:\n  listen: 0.0.0.0:9101\n  tokens:\n    - { token: ${WRITE}, access: write }\n`;
    assert.equal(parseConfig(ok, "u.yaml").control.tokens[0]?.access, "write");
    const short = `${base}control:\n  listen: 0.0.0.0:9101\n  tokens:\n    - { token: short }\n`;
    assert.throws(() => parseConfig(short, "u.yaml"), /at least 16 printable characters/);
    const port = `${base}control:\n  listen: 127.0.0.1:70000\n`;
    assert.throws(() => parseConfig(port, "u.yaml"), /port from 1 to 65535/);
    assert.throws(
      () => parseConfig(`${base}control:\n  listen: "localhost:9101"\n`, "u.yaml"),
      /ADDRESS:PORT/,
    );
  });

  test("notify is mounted: channels parse, and a misspelt key gets a suggestion at its line", () => {
    const ok = `${base}notify:\n  webhooks:\n    - url: https://hooks.example.net/uplinkd\n`;
    assert.equal(
      parseConfig(ok, "u.yaml").notify?.webhooks[0]?.url,
      "https://hooks.example.net/uplinkd",
    );
    assert.equal(parseConfig(base, "u.yaml").notify, undefined);
    assert.throws(
      () => parseConfig(`${base}notify:\n  webhoks: []\n`, "u.yaml"),
      /u\.yaml:5:3: notify(\.webhoks)?: unknown key "webhoks"; did you mean "webhooks"\?/,
    );
  });

  test("listen addresses parse with IPv4 and bracketed IPv6", () => {
    assert.deepEqual(parseListen("127.0.0.1:9101"), { host: "127.0.0.1", port: 9101 });
    assert.deepEqual(parseListen("[::1]:9101"), { host: "::1", port: 9101 });
  });
});

describe("traffic counters", () => {
  const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3697      35    0    0    0     0          0         0     3697      35    0    0    0     0       0          0
  wan1: 123456789 1000    0    0    0     0          0         0   987654     900    0    0    0     0       0          0
`;

  test("/proc/net/dev gives received and transmitted bytes per interface", () => {
    const bytes = parseProcNetDev(NET_DEV);
    assert.deepEqual(bytes.get("wan1"), { rx: 123456789, tx: 987654 });
    assert.deepEqual(bytes.get("lo"), { rx: 3697, tx: 3697 });
  });

  /** A conntrack watcher whose counts the test sets. */
  function fakeWatch(): {
    kernel: { watchConntrack: () => ConntrackCounts };
    state: { counts: Map<number, number> | null; started: number; stopped: number };
  } {
    const state = {
      counts: null as Map<number, number> | null,
      started: 0,
      stopped: 0,
    };
    const watcher: ConntrackCounts = {
      start: () => {
        state.started++;
      },
      stop: () => {
        state.stopped++;
        return Promise.resolve();
      },
      countsByMark: (mask) => {
        if (state.counts === null) return null;
        const out = new Map<number, number>();
        for (const [m, n] of state.counts)
          out.set((m & mask) >>> 0, (out.get((m & mask) >>> 0) ?? 0) + n);
        return out;
      },
    };
    return { kernel: { watchConntrack: () => watcher }, state };
  }

  test("connections come from the conntrack watcher at once, masked with the refresh's mask", async () => {
    const { kernel, state } = fakeWatch();
    let reads = 0;
    const sampler = new TrafficSampler(kernel, {
      now: () => 0,
      readNetDev: () => {
        reads++;
        return Promise.resolve(NET_DEV);
      },
    });
    sampler.start();
    assert.equal(state.started, 1);
    assert.equal(sampler.connections(0x100), null, "no mask before a refresh");
    await sampler.refresh(0xff00);
    assert.equal(sampler.connections(0x100), null, "no count before the watcher's first dump");
    state.counts = new Map([
      [0x100, 7],
      [0x10100, 2],
    ]);
    assert.equal(sampler.connections(0x100), 9, "read live, without another refresh");
    assert.equal(sampler.connections(0x200), 0);
    assert.equal(reads, 1);
    await sampler.stop();
    assert.equal(state.stopped, 1);
  });

  test("interface bytes are read at most once per second, whoever asks", async () => {
    let now = 0;
    let reads = 0;
    const sampler = new TrafficSampler(fakeWatch().kernel, {
      now: () => now,
      readNetDev: () => {
        reads++;
        return Promise.resolve(NET_DEV);
      },
    });
    assert.equal(sampler.bytes("wan1"), null);
    await Promise.all([sampler.refresh(0xff00), sampler.refresh(0xff00)]);
    assert.equal(reads, 1);
    assert.equal(sampler.bytes("wan1")?.rx, 123456789);
    now = 999;
    await sampler.refresh(0xff00);
    assert.equal(reads, 1);
    now = 1000;
    await sampler.refresh(0xff00);
    assert.equal(reads, 2);
  });

  test("a failing /proc/net/dev read keeps the last sample and reports the error", async () => {
    let now = 0;
    let fail = false;
    const errors: unknown[] = [];
    const sampler = new TrafficSampler(fakeWatch().kernel, {
      now: () => now,
      readNetDev: () =>
        fail ? Promise.reject(new Error("/proc/net/dev: EACCES")) : Promise.resolve(NET_DEV),
      onError: (e) => errors.push(e),
    });
    await sampler.refresh(0xff00);
    fail = true;
    now = 5000;
    await sampler.refresh(0xff00);
    assert.equal(sampler.bytes("wan1")?.tx, 987654);
    assert.equal(errors.length, 1);
  });
});

describe("maintenance", () => {
  test("a disabled uplink's snapshot says disabled, with the operator's reason", () => {
    const snapshot: HealthSnapshot = {
      state: "up",
      since: 1,
      loss: 0,
      rtt: 1,
      jitter: 0,
      reason: "5 good rounds",
    };
    const health: UplinkHealth = {
      start: () => undefined,
      stop: () => undefined,
      snapshot: () => snapshot,
      setCarrier: () => undefined,
      setAddress: () => undefined,
    };
    const operator: { maintenance?: { since: number; reason: string } } = {};
    const wrapped = withMaintenance(health, () => operator.maintenance);
    assert.equal(wrapped.snapshot().state, "up");
    operator.maintenance = { since: 42, reason: "ISP works on the line" };
    assert.deepEqual(wrapped.snapshot(), {
      ...snapshot,
      state: "disabled",
      since: 42,
      reason: "ISP works on the line",
    });
    assert.equal(wrapped.healthSnapshot().state, "up");
  });
});

describe("status and events text", () => {
  test("the status table has one row per uplink with connections and bytes", () => {
    const text = formatStatus(
      statusDoc([uplink("isp1"), uplink("isp2", { state: "down", connections: null, rtt: null })]),
      Date.parse("2026-11-21T00:05:12.000Z"),
    );
    const [header, isp1, isp2] = text.trimEnd().split("\n");
    assert.match(
      header ?? "",
      /^UPLINK +IFACE +STATE +SINCE +FOR +LOSS +RTT +JITTER +W +TIER +ACTIVE +CONNS +RX +TX/,
    );
    assert.match(
      isp1 ?? "",
      /^isp1 +wan1 +up +2026-11-21 00:00:00Z +5m12s +0\.0% +0\.25ms +0\.05ms +1 +1 +yes +12 +1\.50KiB +2\.00KiB/,
    );
    assert.match(isp2 ?? "", /^isp2 +wan2 +down .* 0\.0% +- +0\.05ms .* yes +- +1\.50KiB/);
  });

  test("bytes are shown in IEC units", () => {
    assert.equal(formatBytes(512), "512B");
    assert.equal(formatBytes(1536), "1.50KiB");
    assert.equal(formatBytes(20 * 1024 ** 3), "20.0GiB");
  });

  test("events list time, uplink, transition and reason", () => {
    const text = formatEvents([
      {
        time: "2026-11-21T00:00:01.000Z",
        uplink: "isp1",
        family: 4,
        from: "up",
        to: "down",
        reason: "3 failed rounds: 198.51.100.1 no answer",
        loss: 100,
        rtt: null,
      },
    ]);
    assert.match(text, /2026-11-21 00:00:01Z +isp1 +IPv4 +up -> down +100\.0% +- +3 failed rounds/);
    const v6 = formatEvents([
      {
        time: "2026-11-21T00:00:02.000Z",
        uplink: "isp2",
        family: 6,
        from: "up",
        to: "down",
        reason: "no global IPv6 address",
        loss: null,
        rtt: null,
      },
    ]);
    assert.match(v6, /^TIME +UPLINK +FAMILY +TRANSITION/);
    assert.match(v6, /isp2 +IPv6 +up -> down +- +- +no global IPv6 address/);
  });

  test("the status table shows each uplink's IPv6 in a section of its own, within 80 columns", () => {
    const isp1v6 = {
      state: "up" as const,
      since: "2026-11-21T00:04:00.000Z",
      active: true,
      address: "2001:db8:1:0:a8c1:abff:fe12:3456",
      gateway: "fe80::a8c1:abff:fe12:3401",
      prefix: "2001:db8:1001::/56",
      loss: 0,
      recentLoss: 0,
      rtt: 0.31,
      jitter: 0.02,
      reason: "5 good rounds",
    };
    const isp2v6 = {
      ...isp1v6,
      state: "down" as const,
      active: false,
      address: null,
      gateway: null,
      prefix: null,
      loss: null,
      recentLoss: null,
      rtt: null,
      jitter: null,
      reason: "no global IPv6 address",
    };
    const text = formatStatus(
      statusDoc([
        uplink("isp1", { ipv6: isp1v6 }),
        uplink("isp2", { ipv6: isp2v6 }),
        uplink("isp3", { ipv6: null }),
      ]),
      Date.parse("2026-11-21T00:05:12.000Z"),
    );
    const lines = text.split("\n");
    const start = lines.findIndex((l) => l.startsWith("UPLINK  IPv6"));
    assert.ok(start > 0, text);
    const section = lines.slice(start, start + 5);
    assert.match(section[0] ?? "", /^UPLINK +IPv6 +FOR +LOSS +RTT +JITTER +ACTIVE$/);
    assert.match(section[1] ?? "", /^isp1 +up +1m12s +0\.0% +0\.31ms +0\.02ms +yes$/);
    assert.equal(section[2], "  2001:db8:1:0:a8c1:abff:fe12:3456  via fe80::a8c1:abff:fe12:3401");
    assert.equal(section[3], "  prefix 2001:db8:1001::/56");
    assert.equal(section[4], "isp2    down  1m12s  -     -       -       no");
    assert.ok(lines.includes("  no global address  (no global IPv6 address)"));
    const long = formatStatus(
      statusDoc([
        uplink("isp1", {
          ipv6: {
            ...isp2v6,
            reason:
              "3 rounds failed: 2001:db8:ffff::1 lost 3/3, 2001:db8:ffff::2 lost 3/3, tcp:[2001:db8:ffff::10]:80 lost 3/3",
          },
        }),
      ]),
      Date.parse("2026-11-21T00:05:12.000Z"),
    );
    const longLines = long
      .split("\n")
      .slice(long.split("\n").findIndex((l) => l.startsWith("UPLINK  IPv6")));
    for (const line of longLines) assert.ok(line.length <= 80, line);
    assert.match(long, /\(3 rounds failed: [^\n]*\n {2}\S[^\n]*lost 3\/3\)$/m, "the reason wraps");
    assert.ok(!section.some((l) => l.startsWith("isp3")), "isp3 has no IPv6");
    for (const line of lines.slice(start)) assert.ok(line.length <= 80, line);
  });

  test("the status table has no IPv6 section when no uplink has IPv6", () => {
    const text = formatStatus(statusDoc(), Date.parse("2026-11-21T00:05:12.000Z"));
    assert.doesNotMatch(text, /IPv6/);
  });
});

describe("reload changes", () => {
  test("named lists are compared by name; token values are never shown", () => {
    const before = {
      uplinks: [
        { name: "isp1", weight: 1 },
        { name: "isp2", weight: 1 },
      ],
      control: { tokens: [{ token: "secret-aaaaaaaaaaaaaaaa", access: "read" }] },
    };
    const after = {
      uplinks: [
        { name: "isp1", weight: 3 },
        { name: "isp3", weight: 1 },
      ],
      control: { tokens: [{ token: "secret-bbbbbbbbbbbbbbbb", access: "read" }] },
    };
    const changes = configChanges(before, after);
    assert.deepEqual(changes, [
      "uplinks.isp2: removed",
      "uplinks.isp1.weight: 1 -> 3",
      "uplinks.isp3: added",
      "control.tokens: changed",
    ]);
    assert.ok(!changes.join("").includes("secret"));
    assert.deepEqual(configChanges(before, before), []);
  });
});

describe("metrics", () => {
  test("the text format has state, loss, RTT, connections, bytes, transitions, probes and process series", async () => {
    const { Metrics } = await import("../../src/control/metrics.js");
    const metrics = new Metrics({
      status: () =>
        Promise.resolve({
          ...statusDoc([
            uplink("isp1"),
            uplink("isp2", { state: "down", loss: 100, rtt: null, jitter: null, active: false }),
          ]),
          policies: {
            default: {
              kind: "balance",
              members: [
                { uplink: "isp1", weight: 3, tier: 1 },
                { uplink: "isp3", weight: 1, tier: 1 },
              ],
            },
            backup: { kind: "unreachable" },
          },
        }),
    });
    metrics.start();
    metrics.transition({
      time: "2026-11-21T00:00:01.000Z",
      uplink: "isp2",
      family: 4,
      from: "up",
      to: "down",
      reason: "3 failed rounds",
      loss: 100,
      rtt: null,
    });
    channel("uplinkd:health:round").publish({
      uplink: "isp2",
      round: {
        outcome: "failed",
        targets: [
          { target: "198.51.100.1", status: "failed" },
          { target: "203.0.113.1", status: "answered" },
        ],
      },
    });
    const text = await metrics.render();
    metrics.stop();
    const expected = [
      'uplinkd_uplink_state{uplink="isp1",state="up"} 1',
      'uplinkd_uplink_state{uplink="isp1",state="down"} 0',
      'uplinkd_uplink_state{uplink="isp2",state="down"} 1',
      'uplinkd_uplink_active{uplink="isp2"} 0',
      'uplinkd_uplink_loss_ratio{uplink="isp2"} 1',
      'uplinkd_uplink_rtt_seconds{uplink="isp1"} 0.00025',
      'uplinkd_uplink_jitter_seconds{uplink="isp1"} 0.00005',
      'uplinkd_uplink_connections{uplink="isp1"} 12',
      'uplinkd_uplink_throughput_bytes_per_second{uplink="isp1",direction="down"} 1000',
      'uplinkd_uplink_throughput_bytes_per_second{uplink="isp1",direction="up"} 500',
      'uplinkd_policy_share_ratio{policy="default",uplink="isp1"} 0.75',
      'uplinkd_policy_share_ratio{policy="default",uplink="isp3"} 0.25',
      'uplinkd_interface_receive_bytes_total{uplink="isp1",interface="wan1"} 1536',
      'uplinkd_interface_transmit_bytes_total{uplink="isp1",interface="wan1"} 2048',
      'uplinkd_transitions_total{uplink="isp2",from="up",to="down"} 1',
      'uplinkd_probes_sent_total{uplink="isp2",target="198.51.100.1"} 1',
      'uplinkd_probes_lost_total{uplink="isp2",target="198.51.100.1"} 1',
      'uplinkd_probe_rounds_total{uplink="isp2",outcome="failed"} 1',
      "# TYPE uplinkd_uplink_state gauge",
      "# TYPE uplinkd_transitions_total counter",
      "# TYPE process_cpu_seconds_total counter",
    ];
    for (const line of expected) assert.ok(text.includes(line), `missing: ${line}\n${text}`);
    // Unknown values read NaN, not a misleading 0, and the series stays.
    // (prom-client writes "Nan"; Prometheus parses NaN in any case.)
    assert.match(text, /uplinkd_uplink_rtt_seconds\{uplink="isp2"\} NaN$/im);
    // Counters read 0 before their first count, so increase() sees the first.
    assert.ok(
      text.includes('uplinkd_probes_lost_total{uplink="isp2",target="203.0.113.1"} 0'),
      text,
    );
    assert.ok(text.includes('uplinkd_transitions_total{uplink="isp1",from="up",to="down"} 0'));
    assert.ok(text.includes('uplinkd_probe_rounds_total{uplink="isp2",outcome="passed"} 0'));
    // No HA series without `ha`; no gauge named like a counter.
    assert.ok(!text.includes("uplinkd_ha_"), "no HA series without ha");
    assert.ok(!/# TYPE \S+_total gauge/.test(text), "no _total gauge");
  });

  test("a policy member without a share reads 0; HA series come with ha; promtool check metrics passes", async () => {
    const { Metrics } = await import("../../src/control/metrics.js");
    let ha: StatusDocument["ha"] = null;
    const metrics = new Metrics({
      status: () =>
        Promise.resolve({
          ...statusDoc([
            uplink("isp1"),
            uplink("isp2", { state: "down", loss: 100, rtt: null, jitter: null, active: false }),
          ]),
          policies: {
            default: { kind: "balance", members: [{ uplink: "isp1", weight: 1, tier: 1 }] },
          },
          ha,
        }),
      policyMembers: () => ({ default: ["isp1", "isp2"] }),
    });
    const without = await metrics.render();
    assert.ok(without.includes('uplinkd_policy_share_ratio{policy="default",uplink="isp2"} 0'));
    assert.ok(without.includes('uplinkd_policy_share_ratio{policy="default",uplink="isp1"} 1'));
    assert.ok(!without.includes("uplinkd_ha_"));
    ha = { node: "r1", role: "master", score: 10 } as StatusDocument["ha"];
    const withHa = await metrics.render();
    assert.ok(withHa.includes('uplinkd_ha_role{node="r1",role="master"} 1'), withHa);
    for (const text of [without, withHa]) {
      const result = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
      assert.equal(result.status, 0, `promtool:\n${result.stdout}${result.stderr}`);
    }
  });

  test('IPv6 series carry family="6"; the IPv4 series keep their labels', async () => {
    const { Metrics } = await import("../../src/control/metrics.js");
    const ipv6 = {
      state: "down" as const,
      since: "2026-11-21T00:04:00.000Z",
      active: false,
      address: "2001:db8:1::2",
      gateway: "fe80::1",
      prefix: null,
      loss: 100,
      recentLoss: 100,
      rtt: null,
      jitter: null,
      reason: "3 failed rounds",
    };
    const metrics = new Metrics({
      status: () => Promise.resolve(statusDoc([uplink("isp1", { ipv6 }), uplink("isp2")])),
      processMetrics: false,
    });
    metrics.start();
    metrics.transition({
      time: "2026-11-21T00:04:00.000Z",
      uplink: "isp1",
      family: 6,
      from: "up",
      to: "down",
      reason: "3 failed rounds",
      loss: 100,
      rtt: null,
    });
    channel("uplinkd:health:round").publish({
      uplink: "isp1",
      family: 6,
      round: { outcome: "failed", targets: [{ target: "2001:db8:ffff::1", status: "failed" }] },
    });
    const text = await metrics.render();
    metrics.stop();
    for (const line of [
      'uplinkd_uplink_state{uplink="isp1",state="up"} 1',
      'uplinkd_uplink_state{uplink="isp1",state="down",family="6"} 1',
      'uplinkd_uplink_state{uplink="isp1",state="up",family="6"} 0',
      'uplinkd_uplink_active{uplink="isp1"} 1',
      'uplinkd_uplink_active{uplink="isp1",family="6"} 0',
      'uplinkd_uplink_loss_ratio{uplink="isp1",family="6"} 1',
      'uplinkd_uplink_rtt_seconds{uplink="isp1"} 0.00025',
      'uplinkd_transitions_total{uplink="isp1",from="up",to="down",family="6"} 1',
      'uplinkd_probes_lost_total{uplink="isp1",target="2001:db8:ffff::1",family="6"} 1',
      'uplinkd_probe_rounds_total{uplink="isp1",outcome="failed",family="6"} 1',
    ]) {
      assert.ok(text.includes(line), `missing: ${line}\n${text}`);
    }
    assert.ok(!text.includes('uplink="isp2",state="up",family'), "isp2 has no IPv6 series");
    assert.ok(!text.includes('family="4"'), "IPv4 series have no family label");
  });

  test("every read of the registry shows the status at that moment; an uplink gone is gone", async () => {
    const { Metrics } = await import("../../src/control/metrics.js");
    let now = statusDoc([uplink("isp1"), uplink("isp2", { connections: 7 })]);
    const metrics = new Metrics({ status: () => Promise.resolve(now), processMetrics: false });
    const first = await metrics.registry.metrics();
    assert.match(first, /uplinkd_uplink_connections\{uplink="isp2"\} 7/);
    now = statusDoc([uplink("isp1", { state: "down", active: false, connections: 0 })]);
    const second = await metrics.registry.metrics();
    assert.match(second, /uplinkd_uplink_state\{uplink="isp1",state="down"\} 1/);
    assert.match(second, /uplinkd_uplink_active\{uplink="isp1"\} 0/);
    assert.match(second, /uplinkd_uplink_connections\{uplink="isp1"\} 0/);
    assert.doesNotMatch(second, /uplink="isp2"/);
  });

  test("two scrapes at once each get every series, with the status asked once per scrape", async () => {
    const { Metrics } = await import("../../src/control/metrics.js");
    const pending: ((doc: StatusDocument) => void)[] = [];
    const metrics = new Metrics({
      status: () => new Promise((resolve) => pending.push(resolve)),
      processMetrics: false,
    });
    const a = metrics.render();
    const b = metrics.render();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(pending.length, 2, "one status per scrape");
    // The second scrape's status arrives first, then the first's.
    pending[1]?.(statusDoc([uplink("isp1", { connections: 2 })]));
    await new Promise((resolve) => setImmediate(resolve));
    pending[0]?.(statusDoc([uplink("isp1", { connections: 1 })]));
    for (const text of await Promise.all([a, b])) {
      assert.match(text, /uplinkd_uplink_state\{uplink="isp1",state="up"\} 1/);
      assert.match(text, /uplinkd_uplink_connections\{uplink="isp1"\} [12]/);
      assert.match(
        text,
        /uplinkd_interface_receive_bytes_total\{uplink="isp1",interface="wan1"\} 1536/,
      );
    }
  });
});

describe("secrets in the reload diff", () => {
  test("a changed password, webhook URL or Authorization header shows as (changed), never its value", () => {
    const before = {
      notify: {
        email: { host: "smtp.example.net", password: "old-pass-1" },
        webhooks: [
          {
            url: "https://hooks.example.net/T000/old-token",
            headers: { Authorization: "Bearer old-bearer" },
          },
        ],
      },
    };
    const after = {
      notify: {
        email: { host: "smtp2.example.net", password: "new-pass-2" },
        webhooks: [
          {
            url: "https://hooks.example.net/T000/new-token",
            headers: { Authorization: "Bearer new-bearer" },
          },
        ],
      },
    };
    const lines = configChanges(before, after);
    const text = lines.join("\n");
    for (const secret of [
      "pass-1",
      "pass-2",
      "old-token",
      "new-token",
      "old-bearer",
      "new-bearer",
    ]) {
      assert.ok(!text.includes(secret), `${secret} printed: ${text}`);
    }
    assert.ok(lines.includes("notify.email.password: (changed)"), text);
    assert.ok(lines.includes('notify.email.host: "smtp.example.net" -> "smtp2.example.net"'), text);
    assert.ok(/notify\.webhooks/.test(text), "the webhook change is reported");
    // An added webhook is printed with its secrets masked.
    const added = configChanges({ notify: { webhooks: [] } }, after).join("\n");
    assert.doesNotMatch(added, /new-token|new-bearer/);
    assert.match(added, /\*\*\*/);
  });

  test("a hook's environment entry marked secret shows as (changed), never its value; others are printed", () => {
    const hooks = (key: string, site: string, secret = true) => ({
      notify: {
        hooks: [
          {
            name: "pager",
            command: ["/usr/local/bin/page"],
            env: { SITE: { value: site, secret: false }, PAGER_KEY: { value: key, secret } },
          },
        ],
      },
    });
    const lines = configChanges(hooks("old-key-1", "north"), hooks("new-key-2", "south"));
    const text = lines.join("\n");
    assert.doesNotMatch(text, /old-key-1|new-key-2/);
    assert.ok(lines.includes("notify.hooks.pager.env.PAGER_KEY.value: (changed)"), text);
    assert.ok(lines.includes('notify.hooks.pager.env.SITE.value: "north" -> "south"'), text);
    // Turning the mark off prints neither the old nor the new value.
    const unmarked = configChanges(hooks("old-key-1", "north"), hooks("new-key-2", "north", false));
    assert.doesNotMatch(unmarked.join("\n"), /old-key-1|new-key-2/);
    // An added hook is printed with its secret masked.
    const added = configChanges({ notify: { hooks: [] } }, hooks("new-key-2", "north")).join("\n");
    assert.doesNotMatch(added, /new-key-2/);
    assert.match(added, /\*\*\*/);
  });

  test("redactSecrets masks every secret of one config", async () => {
    const { redactSecrets } = await import("../../src/config/secrets.js");
    const config = {
      control: { tokens: [{ token: "tok-0123456789abcdef", access: "read" }] },
      notify: {
        email: { password: "pw-1" },
        webhooks: [{ url: "https://h.example.net/T/x", headers: { Authorization: "Bearer b" } }],
        hooks: [{ command: ["/bin/true"], env: { K: { value: "v-secret", secret: true } } }],
      },
    };
    const text = JSON.stringify(redactSecrets(config));
    assert.doesNotMatch(text, /tok-0123|pw-1|h\.example|Bearer b|v-secret/);
    assert.match(JSON.stringify(config), /v-secret/, "the input is not modified");
  });

  test("the secret paths are the fields the schema marks secret", async () => {
    const { SECRET_FIELDS } = await import("../../src/config/secrets.js");
    const { configJsonSchema } = await import("../../src/config/json-schema.js");
    const found: string[] = [];
    const walk = (node: unknown, path: string[]) => {
      if (typeof node !== "object" || node === null) return;
      const n = node as Record<string, unknown>;
      if (n.secret === true) found.push(path.join("."));
      for (const [key, value] of Object.entries(n.properties ?? {})) walk(value, [...path, key]);
      if (n.items !== undefined) walk(n.items, [...path, "*"]);
      if (typeof n.additionalProperties === "object") walk(n.additionalProperties, [...path, "*"]);
      for (const k of ["anyOf", "oneOf", "allOf"]) {
        for (const branch of (n[k] as unknown[] | undefined) ?? []) walk(branch, path);
      }
    };
    walk(configJsonSchema(), []);
    assert.deepEqual(found.sort(), SECRET_FIELDS.map((p) => p.join(".")).sort());
  });
});

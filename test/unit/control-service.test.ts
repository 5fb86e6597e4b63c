/**
 * The control service on a real Unix socket (in a temporary directory) with
 * a fake daemon: the socket's mode, the event stream, and a stop that does
 * not wait for open streams.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/load.js";
import type { HistoryDocument } from "../../src/control/api.js";
import { controlRequest } from "../../src/control/client.js";
import { ControlService, type ControlSource } from "../../src/control/service.js";
import type { StatusDocument } from "../../src/control/api.js";
import type { Transition } from "../../src/uplink-health.js";
import { uplinkStatus } from "../fakes/status.js";

const CONFIG_TEXT =
  "lan: [lan0]\nuplinks:\n  - { name: isp1, interface: wan1, gateway: 100.64.1.1 }\n";

function fakeSource(socket: string): ControlSource & { transitions: Transition[] } {
  const config = parseConfig(CONFIG_TEXT, "u.yaml");
  config.control.socket = socket;
  const transitions: Transition[] = [];
  const status: StatusDocument = {
    version: "0.1.0",
    pid: process.pid,
    config: "u.yaml",
    startedAt: new Date(0).toISOString(),
    uplinks: [
      uplinkStatus("isp1", {
        state: "degraded",
        since: new Date(0).toISOString(),
        loss: 25,
        recentLoss: 25,
        rtt: 12.5,
        jitter: 0.5,
        reason: "loss 25% >= 20%",
        connections: 3,
        rxBytes: 1000,
        txBytes: 2000,
        throughput: null,
      }),
    ],
    policies: {},
    lastApply: null,
    domains: [],
  };
  return {
    transitions,
    config: () => config,
    status: () => status,
    refreshTraffic: () => Promise.resolve(),
    events: () => transitions,
    inputs: () => ({
      uplinks: { isp1: { "4": { state: "disabled" as const, probed: "down" as const } } },
      load: null,
    }),
    reload: () => Promise.resolve({ ok: true, config: "u.yaml", uplinks: ["isp1"], changes: [] }),
    disable: (uplink) => Promise.resolve({ uplink, state: "disabled", changed: true, drained: 0 }),
    enable: (uplink) => Promise.resolve({ uplink, state: "up", changed: true, drained: 0 }),
  };
}

describe("the control service on a Unix socket", () => {
  let dir = "";
  let socket = "";
  let service: ControlService;
  let source: ReturnType<typeof fakeSource>;
  let startedAt = 0;
  let startedBy = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "uplinkd-control-"));
    socket = join(dir, "run", "uplinkd.sock");
    source = fakeSource(socket);
    // No tick during these tests: the history holds exactly the sample taken by start().
    service = new ControlService(source, pino({ level: "silent" }), { tickMs: 3_600_000 });
    startedAt = Date.now();
    await service.start();
    startedBy = Date.now();
  });

  after(async () => {
    await service.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("the socket is mode 0600 and answers the CLI's requests", async () => {
    assert.equal((await stat(socket)).mode & 0o777, 0o600);
    const status = (await controlRequest(socket, "GET", "/status")) as StatusDocument;
    assert.equal(status.pid, process.pid);
    const history = (await controlRequest(socket, "GET", "/history")) as HistoryDocument;
    assert.equal(history.intervalMs, 3_600_000);
    const [sample, ...more] = history.samples;
    assert.deepEqual(more, [], "one sample, taken at start");
    assert.ok(sample !== undefined && sample.t >= startedAt && sample.t <= startedBy);
    assert.deepEqual(sample.uplinks, [
      { name: "isp1", state: "degraded", rtt: 12.5, loss: 25, recentLoss: 25 },
    ]);
  });

  test("a transition reaches an open event stream at once", async () => {
    const text: string[] = [];
    const transition: Transition = {
      time: new Date().toISOString(),
      uplink: "isp1",
      family: 4,
      from: "up",
      to: "down",
      reason: "carrier lost",
      loss: null,
      rtt: null,
    };
    await new Promise<void>((resolve, reject) => {
      const req = request({ socketPath: socket, path: "/events/stream" }, (res) => {
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text.push(chunk);
          const all = text.join("");
          if (all.includes("event: status") && !all.includes("event: transition")) {
            service.transition(transition);
          }
          if (all.includes("event: transition")) {
            req.destroy();
            resolve();
          } else if (text.length >= 20) {
            req.destroy();
            reject(new Error(`no transition in 20 chunks: ${all}`));
          }
        });
        res.on("end", () => {
          reject(new Error(`the stream ended before the transition: ${text.join("")}`));
        });
      });
      req.on("error", reject);
      req.end();
    });
    assert.match(text.join(""), /event: transition\ndata: .*"reason":"carrier lost"/);
  });

  test("stop closes the socket even while a stream is open", async () => {
    const open = new Promise<void>((resolve) => {
      const req = request({ socketPath: socket, path: "/events/stream" }, (res) => {
        res.once("data", () => {
          resolve();
        });
      });
      req.on("error", () => undefined);
      req.end();
    });
    await open;
    const started = Date.now();
    await service.stop();
    assert.ok(Date.now() - started < 1000, "stop waited for the stream");
    await assert.rejects(controlRequest(socket, "GET", "/status", undefined, 500), /cannot reach/);
    service = new ControlService(source, pino({ level: "silent" }));
    await service.start();
  });
});

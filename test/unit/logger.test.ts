/**
 * The daemon's log: JSON lines a strict parser accepts (one `time` key), text
 * lines with level names and 24-hour times, a short start line (the config
 * only at debug, its secrets masked), the config's `log.level` (the CLI's
 * level wins) and no "stopped" line for a start that never happened.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { Logger } from "pino";
import { loadConfig } from "../../src/config/load.js";
import { Daemon } from "../../src/daemon.js";
import type { LinkState } from "../../src/kernel/types.js";
import type { LogLevel } from "../../src/log-level.js";
import { createLogger, setLogLevel } from "../../src/logger.js";
import type {
  HealthSnapshot,
  UplinkHealth,
  UplinkHealthOptions,
  UplinkState,
} from "../../src/uplink-health.js";
import { ManualClock } from "../fakes/clock.js";
import { FakeKernel } from "../fakes/kernel.js";

/** A stream that keeps what is written, split into lines. */
class Lines extends Writable {
  readonly text: string[] = [];
  isTTY = false;
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.text.push(...chunk.toString().split("\n").filter(Boolean));
    done();
  }
}

/** A health monitor whose state the test sets. */
class FakeHealth implements UplinkHealth {
  state: UplinkState = "up";
  constructor(readonly options: UplinkHealthOptions) {}
  start(): void {}
  stop(): void {}
  snapshot(): HealthSnapshot {
    return { state: this.state, since: 0, loss: 0, rtt: 1, jitter: 0, reason: "" };
  }
  setCarrier(): void {}
  setAddress(): void {}
  go(to: UplinkState): void {
    const from = this.state;
    this.state = to;
    this.options.onTransition({
      time: "2026-01-02T03:04:05.000Z",
      uplink: this.options.uplink.name,
      family: 4,
      from,
      to,
      reason: "3 failed rounds",
      loss: 100,
      rtt: null,
    });
  }
}

function wan(n: number): LinkState {
  return {
    name: `wan${n}`,
    index: n + 10,
    up: true,
    carrier: true,
    pointToPoint: false,
    addresses: [{ address: `100.64.${n}.2`, prefixlen: 24 }],
  };
}

const LAN: LinkState = {
  name: "lan0",
  index: 2,
  up: true,
  carrier: true,
  pointToPoint: false,
  addresses: [{ address: "192.0.2.1", prefixlen: 24 }],
};

/** Occurrences of `"key":` at the top level of one JSON line. */
function topLevelKeys(line: string, key: string): number {
  let depth = 0;
  let count = 0;
  let inString = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      if (depth === 1 && line.startsWith(`"${key}":`, i)) count++;
      inString = true;
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
  }
  return count;
}

describe("daemon log", () => {
  let dir: string;
  let configPath: string;
  let out: Lines;
  let log: Logger;
  let health: Map<string, FakeHealth>;
  let daemon: Daemon | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "uplinkd-log-"));
    configPath = join(dir, "uplinkd.yaml");
    out = new Lines();
    health = new Map();
    daemon = undefined;
  });

  afterEach(async () => {
    await daemon?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** A daemon on a fake kernel whose log goes to `out` (JSON unless `format`). */
  async function start(
    yamlExtra = "",
    options: { level?: LogLevel; followConfig?: boolean; format?: "text" | "json" } = {},
  ): Promise<Daemon> {
    await writeFile(
      configPath,
      `lan: [lan0]
uplinks:
  - { name: isp1, interface: wan1, gateway: 100.64.1.1 }
  - { name: isp2, interface: wan2, gateway: 100.64.2.1 }
health: { targets: [198.51.100.1, 203.0.113.1] }
control:
  socket: ${join(dir, "uplinkd.sock")}
  tokens: [{ token: secret-token-0123456789abcdef, access: read }]
${yamlExtra}`,
    );
    log = createLogger({
      format: options.format ?? "json",
      destination: out,
      ...(options.level === undefined ? {} : { level: options.level }),
    });
    const kernel = new FakeKernel();
    kernel.links = [LAN, wan(1), wan(2)];
    daemon = new Daemon({
      configPath,
      loadConfig,
      kernel,
      log,
      clock: new ManualClock(),
      createHealth: (o) => {
        const h = new FakeHealth(o);
        health.set(o.uplink.name, h);
        return h;
      },
      monitor: () => ({ start: () => undefined, stop: () => undefined }),
      ...(options.followConfig === false
        ? {}
        : {
            setLogLevel: (level: LogLevel) => {
              setLogLevel(log, level);
            },
          }),
    });
    await daemon.start();
    return daemon;
  }

  it("a transition line is strict JSON with exactly one time key; the transition's own time is `at`", async () => {
    const d = await start();
    health.get("isp1")?.go("down");
    await d.idle();
    const line = out.text.find((l) => l.includes('"event":"transition"'));
    assert.ok(line !== undefined, out.text.join("\n"));
    assert.equal(topLevelKeys(line, "time"), 1, line);
    const parsed = JSON.parse(line) as Record<string, unknown>;
    assert.equal(parsed.at, "2026-01-02T03:04:05.000Z");
    assert.equal(typeof parsed.time, "string");
    assert.equal(parsed.msg, "uplink isp1: up -> down (3 failed rounds)");
    // Every line the daemon wrote parses and has one time key.
    for (const l of out.text) {
      JSON.parse(l);
      assert.equal(topLevelKeys(l, "time"), 1, l);
    }
  });

  it("the start line is short and names the config, the uplinks and the socket; the config is logged only at debug, secrets masked", async () => {
    await start();
    const started = out.text.find((l) => l.includes("uplinkd started"));
    assert.ok(started !== undefined, out.text.join("\n"));
    assert.ok(started.length < 400, `start line of ${started.length} bytes: ${started}`);
    const msg = (JSON.parse(started) as { msg: string }).msg;
    assert.match(msg, /uplinks isp1 \(wan1\), isp2 \(wan2\)/);
    assert.ok(msg.includes(configPath));
    assert.ok(!out.text.some((l) => l.includes('"config":{')), "no config at info");
    // Every info line at start stays short.
    for (const l of out.text) assert.ok(l.length < 1024, `${l.length} bytes: ${l.slice(0, 200)}`);
  });

  it("log.level: debug in the config logs the config at debug with its tokens masked", async () => {
    await start("log: { level: debug }\n");
    const config = out.text.find((l) => l.includes('"config":{'));
    assert.ok(config !== undefined, "config logged at debug");
    assert.equal((JSON.parse(config) as { level: number }).level, 20);
    assert.ok(!config.includes("secret-token"), config);
  });

  it("log.level: warn in the config hides the start line; the CLI's level wins over the config", async () => {
    await start("log: { level: warn }\n");
    assert.ok(!out.text.some((l) => l.includes("uplinkd started")));
    await daemon?.stop();
    daemon = undefined;
    out.text.length = 0;
    await start("log: { level: warn }\n", { level: "info", followConfig: false });
    assert.ok(out.text.some((l) => l.includes("uplinkd started")));
  });

  it("text lines carry a 24-hour time and the level's name, not its number", async () => {
    await start("", { format: "text" });
    const started = out.text.find((l) => l.includes("uplinkd started"));
    assert.ok(started !== undefined, out.text.join("\n"));
    assert.match(started, /^\[\d{2}:\d{2}:\d{2}\.\d{3}\] INFO( \(\d+\))?: uplinkd started with /);
    assert.ok(!started.includes('"level"'), started);
  });

  it("a start that failed does not say the daemon stopped", async () => {
    await writeFile(configPath, "lan: [lan0]\nuplinks: nope\n");
    log = createLogger({ format: "json", destination: out });
    const d = new Daemon({
      configPath,
      loadConfig,
      kernel: new FakeKernel(),
      log,
      createHealth: (o) => new FakeHealth(o),
      monitor: () => ({ start: () => undefined, stop: () => undefined }),
    });
    await assert.rejects(d.start());
    await d.stop(true);
    assert.ok(!out.text.some((l) => l.includes("stopped")), out.text.join("\n"));
  });
});

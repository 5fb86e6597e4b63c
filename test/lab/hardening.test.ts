/**
 * Clients of the control API cannot take the daemon down, on the real
 * kernel: a daemon with `control.listen` on the router's LAN address
 * (100.64.100.1:9101) gets many TCP clients from the LAN client's namespace
 * (test/lab/control-clients.ts), and a blackhole on one uplink must still
 * fail over: new connections from the LAN leave by the other uplink (the
 * echo host says which source address it saw).
 *
 * - 1,100 idle connections (no request, reopened when closed) against a
 *   daemon started with a file limit of 1,024 (`prlimit --nofile=1024`).
 * - 5,000 event-stream clients that stop reading after the status line.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parse, stringify } from "yaml";
import { after, before, describe, it, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { StatusDocument } from "../../src/control/api.js";
import type { Lab } from "../../src/lab/lab.js";
import {
  LabDaemon,
  lanTraffic,
  labWithConfig,
  sharesByUplink,
  testPrefix,
  uplinkdArgv,
} from "./harness.js";

const LISTEN_HOST = "100.64.100.1";
const LISTEN_PORT = 9101;
const READ = "hardening-read-0123456789abcdef";
/** The daemon's file limit in the first scenario (soft and hard). */
const FILE_LIMIT = 1024;
/** Lab health: 200 ms rounds, down after 3 failed ones; a failover takes ~1-2 s. */
const FAILOVER_BOUND_MS = 8000;

interface ClientStats {
  event: "opened" | "stats";
  connected: number;
  failed: number;
  reopened: number;
  open: number;
  statuses: Record<string, number>;
}

/** control-clients.ts running in the LAN client's namespace. */
class Clients {
  readonly lines: ClientStats[] = [];
  readonly #child: ChildProcess;
  readonly #exited: Promise<number | null>;
  readonly #stderr: string[] = [];

  constructor(lab: Lab, args: readonly string[]) {
    this.#child = lab.spawn(
      "lan",
      [
        process.execPath,
        "--import",
        import.meta.resolve("tsx"),
        fileURLToPath(new URL("./control-clients.ts", import.meta.url)),
        ...args,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    this.#exited = new Promise((resolve) => this.#child.on("exit", resolve));
    this.#child.stderr?.on("data", (c: Buffer) => this.#stderr.push(c.toString("utf8")));
    if (this.#child.stdout !== null) {
      createInterface({ input: this.#child.stdout }).on("line", (line) => {
        this.lines.push(JSON.parse(line) as ClientStats);
      });
    }
  }

  /** The `opened` line: every first attempt connected or failed. */
  async opened(timeoutMs: number): Promise<ClientStats> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const line = this.lines.find((l) => l.event === "opened");
      if (line !== undefined) return line;
      if (this.#child.exitCode !== null) break;
      await sleep(50);
    }
    throw new Error(`clients not opened in ${timeoutMs} ms: ${this.#stderr.join("")}`);
  }

  last(): ClientStats | undefined {
    return this.lines.at(-1);
  }

  /** SIGTERM (SIGKILL after 5 s): every socket is closed with the process. */
  async stop(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      this.#child.kill("SIGTERM");
      const timer = setTimeout(() => this.#child.kill("SIGKILL"), 5000);
      await this.#exited;
      clearTimeout(timer);
    }
  }
}

function uplink(status: StatusDocument, name: string) {
  const u = status.uplinks.find((x) => x.name === name);
  assert.ok(u !== undefined, `no uplink ${name} in status`);
  return u;
}

/** Resident memory of process `pid`, bytes (VmRSS of /proc/PID/status). */
async function rssBytes(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(text)?.[1];
  assert.ok(kb !== undefined, text);
  return Number(kb) * 1024;
}

/** Open files of process `pid` (entries of /proc/PID/fd). */
async function openFiles(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** Samples a number every `everyMs` until stopped; keeps the largest. */
function peakOf(sample: () => Promise<number>, everyMs = 200) {
  let peak = 0;
  const state = { running: true };
  const loop = (async () => {
    while (state.running) {
      peak = Math.max(peak, await sample().catch(() => 0));
      await sleep(everyMs);
    }
  })();
  return {
    stop: async () => {
      state.running = false;
      await loop;
      return peak;
    },
  };
}

/** A lab with two uplinks whose daemon listens on the LAN address with a read token. */
async function hardeningLab(tag: string): Promise<Lab> {
  return labWithConfig({ prefix: testPrefix(tag), uplinks: 2 }, (c) => {
    c.control = {
      ...(c.control as object),
      listen: `${LISTEN_HOST}:${LISTEN_PORT}`,
      tokens: [{ name: "dashboard", token: READ, access: "read" }],
    };
  });
}

/** `uplinkd run` in the router namespace, with the file limit `nofile` when given. */
function startDaemon(lab: Lab, nofile?: number): LabDaemon {
  const run = uplinkdArgv("run", "-c", lab.configPath);
  const argv =
    nofile === undefined ? run : ["prlimit", `--nofile=${nofile}:${nofile}`, "--", ...run];
  return new LabDaemon(lab, lab.spawn("rtr", argv, { stdio: ["ignore", "pipe", "pipe"] }));
}

/**
 * Blackhole `name`, wait until the daemon has it down and inactive.
 * @returns ms from the fault to the status that shows it.
 */
async function failover(lab: Lab, daemon: LabDaemon, name: string): Promise<number> {
  const t0 = Date.now();
  await lab.fault(name, "blackhole");
  await daemon.waitFor(
    (s) => uplink(s, name).state === "down" && !uplink(s, name).active,
    FAILOVER_BOUND_MS,
    `${name} down`,
    20,
  );
  return Date.now() - t0;
}

/** Heal `name` and wait until it is up and active again. */
async function recover(lab: Lab, daemon: LabDaemon, name: string): Promise<void> {
  await lab.heal(name);
  await daemon.waitFor(
    (s) => uplink(s, name).state === "up" && uplink(s, name).active,
    15_000,
    `${name} up`,
    20,
  );
}

/** New LAN connections all leave by isp2 (isp1 is down): real TCP, the source address checked. */
async function assertNewConnectionsOnIsp2(lab: Lab): Promise<void> {
  const report = await lanTraffic(lab, 100, { concurrency: 20 });
  assert.equal(report.failed, 0, JSON.stringify(report.errors));
  const shares = sharesByUplink(report, lab);
  assert.equal(shares.get(1) ?? 0, 0, `isp1 is down: ${JSON.stringify([...shares])}`);
  assert.equal(shares.get(2), 1, JSON.stringify([...shares]));
}

/** Lines of the daemon's log about refused or limited control clients. */
function refusalLines(daemon: LabDaemon): string[] {
  return daemon.output
    .join("")
    .split("\n")
    .filter((l) => /control: (refused|dropped)/.test(l));
}

describe("1,100 idle TCP connections against a daemon with 1,024 files", () => {
  let lab: Lab;
  let daemon: LabDaemon;
  let clients: Clients | undefined;

  before(async () => {
    lab = await hardeningLab("hi");
    daemon = startDaemon(lab, FILE_LIMIT);
    await daemon.waitForStates(["up"], 30_000);
  });

  after(async () => {
    await clients?.stop();
    await (daemon as LabDaemon | undefined)?.stop();
    await (lab as Lab | undefined)?.down();
  });

  /**
   * 1,100 idle clients (reopening what the daemon closes), then a blackhole
   * on isp1: the daemon must stay up, stay under its file limit, fail over
   * and send new LAN connections by isp2.
   */
  async function idleClientsThenFailover(t: TestContext, perListener: number): Promise<void> {
    const pid = daemon.child.pid;
    assert.ok(pid !== undefined);
    const before = await openFiles(pid);
    const files = peakOf(() => openFiles(pid));
    const linesBefore = refusalLines(daemon).length;
    clients = new Clients(lab, ["idle", LISTEN_HOST, String(LISTEN_PORT), "1100", "250"]);
    try {
      const opened = await clients.opened(20_000);
      // Every first attempt settled (connected counts the reopened ones too).
      assert.ok(opened.connected + opened.failed >= 1100, JSON.stringify(opened));
      // The listener holds at most `perListener`; the rest were answered 503 and closed.
      await sleep(1000);
      assert.ok((clients.last()?.statuses["503"] ?? 0) > 0, JSON.stringify(clients.last()));

      const ms = await failover(lab, daemon, "isp1");
      await assertNewConnectionsOnIsp2(lab);
      // The clients kept at it all along (reopening what the daemon closed).
      const during = clients.last();
      assert.ok(during !== undefined && during.open >= perListener, JSON.stringify(during));
      await recover(lab, daemon, "isp1");
      const peakFiles = await files.stop();

      assert.equal(daemon.child.exitCode, null, daemon.log());
      assert.equal(daemon.child.signalCode, null, daemon.log());
      assert.ok(peakFiles < FILE_LIMIT - 100, `the daemon had ${peakFiles} files open`);
      const refused = refusalLines(daemon).slice(linesBefore);
      // Rate-limited: one line per kind of refusal per interval (60 s), not one per client.
      assert.ok(refused.length <= 4, refused.join("\n"));
      t.diagnostic(
        `daemon files ${before} before, ${peakFiles} at most; isp1 down after ${ms} ms; ` +
          `clients ${JSON.stringify(clients.last())}; ${refused.length} refusal log lines`,
      );
    } finally {
      await files.stop();
      await clients.stop();
      clients = undefined;
    }
  }

  it("the daemon stays up, its files stay under the limit and a blackhole fails over", async (t: TestContext) => {
    const pid = daemon.child.pid;
    assert.ok(pid !== undefined);
    const limits = await readFile(`/proc/${pid}/limits`, "utf8");
    assert.match(limits, new RegExp(`^Max open files +${FILE_LIMIT} +${FILE_LIMIT} +files`, "m"));
    await idleClientsThenFailover(t, 256);
  });

  it("with control.max_connections above what the file limit leaves, the daemon lowers it and still fails over", async (t: TestContext) => {
    const config = await readFile(lab.configPath, "utf8");
    const edited = parse(config) as { control: Record<string, unknown> };
    edited.control.max_connections = 4000;
    await writeFile(lab.configPath, stringify(edited));
    try {
      const reload = await lab.exec("rtr", uplinkdArgv("reload", "-c", lab.configPath), {
        timeoutMs: 30_000,
      });
      assert.equal(reload.code, 0, reload.stderr);
      assert.match(reload.stdout, /control\.max_connections: 256 -> 4000/);
      // (1,024 - 256 reserved) / 2 listeners.
      assert.match(daemon.log(), /each listener takes at most 384 connections/);
      await idleClientsThenFailover(t, 384);
    } finally {
      await writeFile(lab.configPath, config);
    }
  });
});

describe("5,000 event-stream clients that do not read", () => {
  let lab: Lab;
  let daemon: LabDaemon;
  let clients: Clients | undefined;

  before(async () => {
    lab = await hardeningLab("hs");
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"], 30_000);
  });

  after(async () => {
    await clients?.stop();
    await (daemon as LabDaemon | undefined)?.stop();
    await (lab as Lab | undefined)?.down();
  });

  it("the daemon stays up, its memory stays bounded and failover takes about as long as without them", async (t: TestContext) => {
    const pid = daemon.child.pid;
    assert.ok(pid !== undefined);
    // Failover without clients, for comparison.
    const quiet = await failover(lab, daemon, "isp1");
    await recover(lab, daemon, "isp1");
    const rssBefore = await rssBytes(pid);

    const rss = peakOf(() => rssBytes(pid));
    clients = new Clients(lab, ["stream", LISTEN_HOST, String(LISTEN_PORT), "5000", READ]);
    const opened = await clients.opened(30_000);
    t.diagnostic(`clients: ${JSON.stringify(opened)}`);
    assert.equal(opened.connected + opened.failed, 5000);
    // Let the status pushes (1 s) pile up in front of the readers that do not read.
    await sleep(3000);
    const busy = await failover(lab, daemon, "isp1");
    await assertNewConnectionsOnIsp2(lab);
    const peakRss = await rss.stop();
    const stats = clients.last();
    t.diagnostic(
      `failover ${quiet} ms without clients, ${busy} ms with them; ` +
        `daemon RSS ${Math.round(rssBefore / 2 ** 20)} MiB before, ${Math.round(peakRss / 2 ** 20)} MiB at most; ` +
        `clients ${JSON.stringify(stats)}`,
    );

    assert.equal(daemon.child.exitCode, null, daemon.log());
    // At most max_streams (32) streams were served; the rest got 503.
    assert.ok((stats?.statuses["200"] ?? 0) <= 32, JSON.stringify(stats));
    assert.ok((stats?.statuses["503"] ?? 0) > 0, JSON.stringify(stats));
    assert.ok(peakRss - rssBefore < 150 * 2 ** 20, `RSS grew by ${peakRss - rssBefore} bytes`);
    assert.ok(busy < quiet + 1500, `failover ${busy} ms with the clients, ${quiet} ms without`);
    await recover(lab, daemon, "isp1");
  });
});

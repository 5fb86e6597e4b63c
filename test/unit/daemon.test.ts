/**
 * The daemon's wiring on a fake kernel with fake health monitors: a
 * transition reaches the kernel and clears only the failed uplink's
 * connections, maintenance keeps or drains connections, a link change
 * reaches the monitors, and a reload the kernel refuses leaves the config
 * and status as they were.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { pino } from "pino";
import { loadConfig } from "../../src/config/load.js";
import { Daemon } from "../../src/daemon.js";
import { ASSUMED_HEALTHY, desiredInputs, desiredState } from "../../src/controller/desired.js";
import { describePlanBasis, planHealth } from "../../src/control/plan.js";
import { observe } from "../../src/links/watcher.js";
import { ManualClock } from "../fakes/clock.js";
import type { LinkState } from "../../src/kernel/types.js";
import type {
  HealthSnapshot,
  UplinkHealth,
  UplinkHealthOptions,
  UplinkState,
} from "../../src/uplink-health.js";
import { FakeKernel } from "../fakes/kernel.js";

/** A health monitor whose state the test sets. */
class FakeHealth implements UplinkHealth {
  state: UplinkState = "up";
  carrier: boolean;
  address: string | undefined;
  constructor(readonly options: UplinkHealthOptions) {
    this.carrier = options.carrier;
    this.address = options.address;
  }
  start(): void {}
  stop(): void {}
  snapshot(): HealthSnapshot {
    return { state: this.state, since: 0, loss: 0, rtt: 1, jitter: 0, reason: "" };
  }
  setCarrier(carrier: boolean): void {
    this.carrier = carrier;
  }
  setAddress(address: string | undefined): void {
    this.address = address;
  }
  /** Move to `to` and tell the daemon. */
  go(to: UplinkState): void {
    const from = this.state;
    this.state = to;
    this.options.onTransition({
      time: new Date(0).toISOString(),
      uplink: this.options.uplink.name,
      family: 4,
      from,
      to,
      reason: "test",
      loss: null,
      rtt: null,
    });
  }
}

function wan(n: number, carrier = true): LinkState {
  return {
    name: `wan${n}`,
    index: n + 10,
    up: true,
    carrier,
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

function yaml(dir: string, extra = ""): string {
  return `lan: [lan0]
uplinks:
  - { name: isp1, interface: wan1, gateway: 100.64.1.1 }
  - { name: isp2, interface: wan2, gateway: 100.64.2.1${extra} }
control: { socket: ${join(dir, "uplinkd.sock")} }
`;
}

describe("daemon", () => {
  let dir: string;
  let kernel: FakeKernel;
  let health: Map<string, FakeHealth>;
  let daemon: Daemon;
  let linkChange: () => void;
  let configPath: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "uplinkd-daemon-"));
    configPath = join(dir, "uplinkd.yaml");
    await writeFile(configPath, yaml(dir));
    kernel = new FakeKernel();
    kernel.links = [LAN, wan(1), wan(2)];
    health = new Map();
    daemon = new Daemon({
      configPath,
      loadConfig,
      kernel,
      eventLimit: 4,
      log: pino({ level: "silent" }),
      clock: new ManualClock(),
      createHealth: (options) => {
        const h = new FakeHealth(options);
        health.set(options.uplink.name, h);
        return h;
      },
      monitor: (onChange) => {
        linkChange = onChange;
        return { start: () => undefined, stop: () => undefined };
      },
    });
    await daemon.start();
  });

  afterEach(async () => {
    await daemon.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const balance = () => kernel.tables.get("uplinkd")?.maps.get("balance_default");
  const monitor = (name: string): FakeHealth => {
    const h = health.get(name);
    assert.ok(h !== undefined, `no monitor for ${name}`);
    return h;
  };

  it("a transition to down takes the uplink out of the map and clears only its connections", async () => {
    kernel.conntrack = [0x100, 0x200, 0x100];
    monitor("isp1").go("down");
    await daemon.idle();
    await daemon.controller.cleaner.idle();
    assert.deepEqual(balance(), ["0-9999 : goto uplink_2"]);
    assert.deepEqual(kernel.conntrack, [0x200]);
    const status = daemon.status();
    assert.deepEqual(
      status.uplinks.map((u) => [u.name, u.state, u.active]),
      [
        ["isp1", "down", false],
        ["isp2", "up", true],
      ],
    );
  });

  it("after a failover, the state built from the daemon's /inputs is the one it holds; assumed healthy is not", async () => {
    monitor("isp1").go("down");
    await daemon.idle();
    // Maintenance shows as `disabled`; what the probes found stays beside it.
    await daemon.disable("isp1", { drain: false });
    const config = await loadConfig(configPath);
    const observed = await observe(kernel, config);
    const reported = daemon.inputs();
    assert.deepEqual(reported, {
      uplinks: {
        isp1: { "4": { state: "disabled", probed: "down" } },
        isp2: { "4": { state: "up", probed: "up" } },
      },
      load: null,
    });
    const basis = { source: "daemon" as const, socket: config.control.socket, inputs: reported };
    const { health, load } = planHealth(basis);
    const built = desiredInputs(config, observed.links, observed.surroundings, health, load);
    // The uplinks whose connections go: failed by their probes, not by maintenance.
    assert.deepEqual([...built.failed], ["isp1"]);
    const desired = desiredState(built);
    assert.deepEqual(balance(), ["0-9999 : goto uplink_2"]);
    const held = kernel.tables.get("uplinkd")?.maps;
    for (const [name, elements] of Object.entries(desired.maps)) {
      assert.deepEqual(elements, held?.get(name), `map ${name}`);
    }
    assert.deepEqual(
      desired.routes.filter((r) => r.table === 254),
      kernel.routes.filter(
        (r) => r.table === 254 && r.protocol === config.dataplane.route_protocol,
      ),
    );
    assert.match(
      describePlanBasis(basis, config),
      /from the daemon at .*: isp1 disabled, isp2 up; load \(down\/up\): none$/,
    );
    const assumed = desiredState(
      desiredInputs(config, observed.links, observed.surroundings, ASSUMED_HEALTHY, undefined),
    );
    assert.deepEqual(assumed.maps.balance_default, [
      "0-4999 : goto uplink_1",
      "5000-9999 : goto uplink_2",
    ]);
  });

  it("keeps the last eventLimit transitions, oldest first", async () => {
    for (let i = 0; i < 3; i++) {
      monitor("isp1").go("down");
      monitor("isp1").go("up");
    }
    await daemon.idle();
    const control = await import("../../src/control/client.js");
    const { events } = (await control.controlRequest(
      join(dir, "uplinkd.sock"),
      "GET",
      "/events?limit=100",
    )) as { events: { to: string }[] };
    assert.deepEqual(
      events.map((e) => e.to),
      ["down", "up", "down", "up"],
    );
  });

  it("disable keeps the uplink's connections; disable --drain deletes them and says how many", async () => {
    kernel.conntrack = [0x100, 0x200, 0x100];
    const kept = await daemon.disable("isp1", { drain: false });
    assert.deepEqual(kept, { uplink: "isp1", state: "disabled", changed: true, drained: 0 });
    assert.deepEqual(balance(), ["0-9999 : goto uplink_2"]);
    assert.deepEqual(kernel.conntrack, [0x100, 0x200, 0x100]);
    const drained = await daemon.disable("isp2", { drain: true });
    assert.deepEqual(drained, { uplink: "isp2", state: "disabled", changed: true, drained: 1 });
    assert.deepEqual(kernel.conntrack, [0x100, 0x100]);
    const enabled = await daemon.enable("isp1");
    assert.equal(enabled.state, "up");
    assert.deepEqual(balance(), ["0-9999 : goto uplink_1"]);
  });

  it("a carrier loss reaches the uplink's monitor and the kernel", async () => {
    kernel.links = [LAN, wan(1, false), wan(2)];
    linkChange();
    for (let i = 0; i < 50 && monitor("isp1").carrier; i++) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    assert.equal(monitor("isp1").carrier, false);
    await daemon.idle();
    assert.deepEqual(balance(), ["0-9999 : goto uplink_2"]);
  });

  it("a reload the kernel refuses keeps the old config, status and kernel state", async () => {
    await writeFile(configPath, yaml(dir, ", weight: 5, route_options: { mtu: 1400 }"));
    kernel.failNext("ip");
    await assert.rejects(daemon.reload(), /fake ip failure/);
    assert.equal(daemon.status().uplinks[1]?.weight, 1);
    assert.deepEqual(balance(), ["0-4999 : goto uplink_1", "5000-9999 : goto uplink_2"]);
    const applied = await daemon.reload();
    assert.deepEqual(applied.changes, [
      "uplinks.isp2.weight: 1 -> 5",
      'uplinks.isp2.route_options: (none) -> {"mtu":1400}',
    ]);
    assert.equal(daemon.status().uplinks[1]?.weight, 5);
    assert.ok(kernel.routes.some((r) => r.table === 102 && r.options.mtu === 1400));
  });
});

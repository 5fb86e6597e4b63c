/**
 * The daemon with IPv6 health targets, on a fake kernel with fake health
 * monitors: one IPv4 and one IPv6 monitor per uplink, the IPv6 one fed the
 * uplink's global IPv6 address, per-family transitions recorded and taken
 * to the IPv6 balance map only, maintenance recorded for both families.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { pino } from "pino";
import { loadConfig } from "../../src/config/load.js";
import { Daemon } from "../../src/daemon.js";
import type { Family, LinkState } from "../../src/kernel/types.js";
import type {
  HealthSnapshot,
  UplinkHealth,
  UplinkHealthOptions,
  UplinkState,
} from "../../src/uplink-health.js";
import { ManualClock } from "../fakes/clock.js";
import { FakeKernel } from "../fakes/kernel.js";

/** A health monitor of one family whose state the test sets. */
class FakeHealth implements UplinkHealth {
  state: UplinkState = "up";
  carrier: boolean;
  address: string | undefined;
  readonly family: Family;
  constructor(readonly options: UplinkHealthOptions) {
    this.carrier = options.carrier;
    this.address = options.address;
    this.family = options.family ?? 4;
  }
  start(): void {}
  stop(): void {}
  snapshot(): HealthSnapshot {
    return { state: this.state, since: 0, loss: 0, rtt: 1, jitter: 0, reason: "test" };
  }
  setCarrier(carrier: boolean): void {
    this.carrier = carrier;
  }
  setAddress(address: string | undefined): void {
    this.address = address;
  }
  go(to: UplinkState): void {
    const from = this.state;
    this.state = to;
    this.options.onTransition({
      time: new Date(0).toISOString(),
      uplink: this.options.uplink.name,
      family: this.family,
      from,
      to,
      reason: "test",
      loss: null,
      rtt: null,
    });
  }
}

function wan(n: number, address6 = `2001:db8:${n}::2`): LinkState {
  return {
    name: `wan${n}`,
    index: n + 10,
    up: true,
    carrier: true,
    pointToPoint: false,
    addresses: [{ address: `100.64.${n}.2`, prefixlen: 24 }],
    addresses6: [
      {
        address: address6,
        prefixlen: 64,
        scope: "global",
        tentative: false,
        deprecated: false,
        dadfailed: false,
        temporary: false,
        dynamic: true,
      },
    ],
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

describe("daemon with IPv6 health targets", () => {
  let dir: string;
  let kernel: FakeKernel;
  let health: Map<string, FakeHealth>;
  let daemon: Daemon;
  let linkChange: () => void;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "uplinkd-daemon6-"));
    const configPath = join(dir, "uplinkd.yaml");
    await writeFile(
      configPath,
      `lan: [lan0]
uplinks:
  - { name: isp1, interface: wan1, gateway: 100.64.1.1, gateway6: "2001:db8:1::1" }
  - { name: isp2, interface: wan2, gateway: 100.64.2.1, gateway6: "2001:db8:2::1" }
  - { name: isp3, interface: wan3, gateway: 100.64.3.1, gateway6: none }
health:
  targets: [198.51.100.1, 2001:db8:ffff::1]
control: { socket: ${join(dir, "uplinkd.sock")} }
`,
    );
    kernel = new FakeKernel();
    kernel.links = [LAN, wan(1), wan(2), wan(3)];
    health = new Map();
    daemon = new Daemon({
      configPath,
      loadConfig,
      kernel,
      log: pino({ level: "silent" }),
      clock: new ManualClock(),
      createHealth: (options) => {
        const h = new FakeHealth(options);
        health.set(`${options.uplink.name}/${String(options.family ?? 4)}`, h);
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

  const monitor = (key: string): FakeHealth => {
    const h = health.get(key);
    assert.ok(h !== undefined, `no monitor ${key}`);
    return h;
  };
  const map = (name: string) => kernel.tables.get("uplinkd")?.maps.get(name);

  it("creates an IPv4 and an IPv6 monitor per uplink, each with its family's targets and address", () => {
    assert.deepEqual([...health.keys()].sort(), ["isp1/4", "isp1/6", "isp2/4", "isp2/6", "isp3/4"]);
    assert.deepEqual(monitor("isp1/4").options.health.targets, ["198.51.100.1"]);
    assert.deepEqual(monitor("isp1/6").options.health.targets, ["2001:db8:ffff::1"]);
    assert.equal(monitor("isp1/4").address, "100.64.1.2");
    assert.equal(monitor("isp1/6").address, "2001:db8:1::2");
    const status = daemon.status();
    assert.deepEqual(
      status.uplinks.map((u) => [u.name, u.state, u.ipv6?.state ?? null, u.ipv6?.address ?? null]),
      [
        ["isp1", "up", "up", "2001:db8:1::2"],
        ["isp2", "up", "up", "2001:db8:2::2"],
        ["isp3", "up", null, null],
      ],
    );
  });

  it("an IPv6 transition takes the uplink out of the IPv6 balance map only", async () => {
    const v4 = map("balance_default");
    const v6 = map("balance6_default");
    assert.ok(v6 !== undefined && v6.some((e) => e.includes("uplink_1")), JSON.stringify(v6));
    monitor("isp1/6").go("down");
    await daemon.idle();
    assert.deepEqual(map("balance_default"), v4, "IPv4 choices unchanged");
    assert.ok(!(map("balance6_default") ?? []).some((e) => e.includes("uplink_1")));
    const status = daemon.status();
    assert.deepEqual(
      status.uplinks.map((u) => [u.state, u.active, u.ipv6?.state, u.ipv6?.active]),
      [
        ["up", true, "down", false],
        ["up", true, "up", true],
        ["up", true, undefined, undefined],
      ],
    );
  });

  it("feeds a new global IPv6 address (renumbering) to the IPv6 monitor only", async () => {
    kernel.links = [LAN, wan(1, "2001:db8:1:1::9"), wan(2), wan(3)];
    linkChange();
    for (let i = 0; i < 50 && monitor("isp1/6").address === "2001:db8:1::2"; i++) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    assert.equal(monitor("isp1/6").address, "2001:db8:1:1::9");
    assert.equal(monitor("isp1/4").address, "100.64.1.2");
    await daemon.idle();
  });

  it("maintenance applies to both families; enable brings both back", async () => {
    await daemon.disable("isp2", { drain: false });
    const states = () => daemon.status().uplinks.map((u) => [u.name, u.state, u.ipv6?.state]);
    assert.deepEqual(states()[1], ["isp2", "disabled", "disabled"]);
    await daemon.enable("isp2");
    assert.deepEqual(states()[1], ["isp2", "up", "up"]);
  });
});

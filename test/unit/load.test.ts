import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/load.js";
import { formatRate, parseRate } from "../../src/config/rate.js";
import { renderMaps } from "../../src/dataplane/render.js";
import { buildViews } from "../../src/dataplane/views.js";
import type { UplinkLink } from "../../src/links/observe.js";
import { LoadBalancer } from "../../src/policy/balancer.js";
import {
  fullUplinks,
  loadWeights,
  shares,
  ThroughputMeter,
  utilisation,
  type Throughput,
} from "../../src/policy/load.js";
import type { PolicyMember } from "../../src/policy/select.js";
import { ManualClock } from "../fakes/clock.js";

const M = 1e6;
const members: PolicyMember[] = [
  { uplink: "isp1", weight: 1, tier: 1 },
  { uplink: "isp2", weight: 1, tier: 1 },
];
const bandwidth = (name: string) =>
  name === "isp1" ? { down: 10 * M, up: 2 * M } : { down: 40 * M, up: 10 * M };

describe("rates", () => {
  it("reads tc's units: bits, bytes and binary prefixes", () => {
    assert.equal(parseRate("100mbit"), 100e6);
    assert.equal(parseRate("20Mbit"), 20e6);
    assert.equal(parseRate("100kbps"), 800e3);
    assert.equal(parseRate("1kibit"), 1024);
    assert.equal(parseRate("5000"), 5000);
    assert.throws(() => parseRate("fast"), /not a rate/);
    assert.throws(() => parseRate("10 furlongs"), /not a rate/);
    assert.equal(formatRate(40e6), "40mbit");
    assert.equal(formatRate(1.5e9), "1.5gbit");
  });

  it("a config's bandwidth is read in bits per second; a least-used policy needs it on every member", () => {
    const ok = parseConfig(
      `lan: [lan0]
uplinks:
  - { name: isp1, interface: wan1, bandwidth: { down: 10mbit, up: 2mbit } }
  - { name: isp2, interface: wan2, bandwidth: { down: 40mbit } }
policies:
  default: { balance: least-used }
`,
      "t.yaml",
    );
    assert.deepEqual(ok.uplinks[0]?.bandwidth, { down: 10e6, up: 2e6, auto: [] });
    assert.equal(ok.policies.default?.balance, "least-used");
    assert.throws(
      () =>
        parseConfig(
          `lan: [lan0]
uplinks:
  - { name: isp1, interface: wan1, bandwidth: { down: 10mbit } }
  - { name: isp2, interface: wan2 }
policies:
  default: { balance: spillover }
`,
          "t.yaml",
        ),
      /t\.yaml:6:\d+: policies\.default\.balance: balance spillover needs the bandwidth of every member; set uplinks\[\]\.bandwidth for isp2/,
    );
  });
});

describe("load weights", () => {
  it("utilisation is the fuller direction", () => {
    assert.equal(utilisation({ down: 10 * M, up: 2 * M }, { down: 5 * M, up: 1.5 * M }), 0.75);
    assert.equal(utilisation(undefined, { down: 5 * M, up: 0 }), 0);
  });

  it("least-used: idle lines share by capacity; a full line gets only its floor", () => {
    const idle = shares(loadWeights("least-used", members, bandwidth, () => undefined, new Set()));
    assert.equal(Math.round(idle.get("isp1") ?? 0), 20);
    assert.equal(Math.round(idle.get("isp2") ?? 0), 80);
    const tp = (name: string): Throughput | undefined =>
      name === "isp1" ? { down: 10 * M, up: 0 } : { down: 0, up: 0 };
    const busy = shares(loadWeights("least-used", members, bandwidth, tp, new Set()));
    assert.ok((busy.get("isp1") ?? 100) < 1, JSON.stringify([...busy]));
    assert.ok((busy.get("isp2") ?? 0) > 99);
  });

  it("spillover: the first member that is not full takes everything; all full: by spare capacity", () => {
    const first = loadWeights("spillover", members, bandwidth, () => undefined, new Set());
    assert.deepEqual(
      first.map((m) => [m.uplink, m.weight]),
      [
        ["isp1", 1],
        ["isp2", 0],
      ],
    );
    const spilled = loadWeights(
      "spillover",
      members,
      bandwidth,
      () => undefined,
      new Set(["isp1"]),
    );
    assert.deepEqual(
      spilled.map((m) => m.weight),
      [0, 1],
    );
    const both = loadWeights(
      "spillover",
      members,
      bandwidth,
      () => undefined,
      new Set(["isp1", "isp2"]),
    );
    assert.deepEqual(
      both.map((m) => m.weight),
      [10_000, 40_000],
    );
  });

  it("weight mode leaves the weights alone", () => {
    assert.deepEqual(
      loadWeights("weight", members, bandwidth, () => undefined, new Set()),
      members,
    );
  });

  it("spillover hysteresis: full at the threshold, not full again only 10 points below it", () => {
    const at = (pct: number) => (name: string) =>
      name === "isp1" ? { down: (pct / 100) * 10 * M, up: 0 } : { down: 0, up: 0 };
    assert.deepEqual([...fullUplinks(["isp1"], bandwidth, at(79), 80, new Set())], []);
    assert.deepEqual([...fullUplinks(["isp1"], bandwidth, at(80), 80, new Set())], ["isp1"]);
    assert.deepEqual(
      [...fullUplinks(["isp1"], bandwidth, at(75), 80, new Set(["isp1"]))],
      ["isp1"],
    );
    assert.deepEqual([...fullUplinks(["isp1"], bandwidth, at(69), 80, new Set(["isp1"]))], []);
  });
});

describe("throughput meter", () => {
  it("follows a step to 63 % in one time constant and to 95 % in three", () => {
    const meter = new ThroughputMeter(2000);
    let bytes = 0;
    meter.update(0, new Map([["wan1", { rx: 0, tx: 0 }]]));
    meter.update(250, new Map([["wan1", { rx: 0, tx: 0 }]]));
    // 10 Mbit/s from now on: 312,500 bytes per 250 ms.
    let at = 250;
    const after = (ms: number) => {
      for (const end = at + ms; at < end;) {
        at += 250;
        bytes += 312_500;
        meter.update(at, new Map([["wan1", { rx: bytes, tx: 0 }]]));
      }
      return meter.rate("wan1")?.down ?? 0;
    };
    assert.ok(Math.abs(after(2000) / 10e6 - 0.632) < 0.01);
    assert.ok(Math.abs(after(4000) / 10e6 - 0.95) < 0.01);
  });

  it("a counter that goes back (a re-created interface) is skipped", () => {
    const meter = new ThroughputMeter(1000);
    meter.update(0, new Map([["wan1", { rx: 1000, tx: 0 }]]));
    meter.update(1000, new Map([["wan1", { rx: 2000, tx: 0 }]]));
    assert.equal(meter.rate("wan1")?.down, 8000);
    meter.update(2000, new Map([["wan1", { rx: 10, tx: 0 }]]));
    assert.equal(meter.rate("wan1")?.down, 8000);
  });
});

describe("load balancer", () => {
  const yaml = (balance: string) => `lan: [lan0]
uplinks:
  - { name: isp1, interface: wan1, gateway: 100.64.1.1, bandwidth: { down: 10mbit } }
  - { name: isp2, interface: wan2, gateway: 100.64.2.1, bandwidth: { down: 40mbit } }
policies:
  default: { balance: ${balance} }
`;

  /** A balancer fed by counters the test moves: `rx` bytes per uplink interface. */
  function setup(balance: string) {
    const clock = new ManualClock();
    const rx = { wan1: 0, wan2: 0 };
    let published = 0;
    const netDev = () =>
      [
        "Inter-|   Receive",
        " face |bytes packets",
        ...Object.entries(rx).map(
          ([name, bytes]) => `  ${name}: ${bytes} 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0`,
        ),
      ].join("\n");
    const balancer = new LoadBalancer({
      clock,
      log: pino({ level: "silent" }),
      onChange: () => {
        published++;
      },
      readNetDev: () => Promise.resolve(netDev()),
    });
    const config = parseConfig(yaml(balance), "t.yaml");
    balancer.start(config);
    /** Advance `ms` in 250 ms samples with `mbit` Mbit/s down on wan1. */
    const run = async (ms: number, mbit: number) => {
      for (let t = 0; t < ms; t += 250) {
        rx.wan1 += (mbit * 1e6 * 0.25) / 8;
        clock.advance(250);
        for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    };
    return { balancer, run, config, published: () => published };
  }

  it("least-used publishes new weights when a line fills, at most once a second, and not for small changes", async () => {
    const { balancer, run, config, published } = setup("least-used");
    await run(1000, 0);
    const first = published();
    assert.equal(first, 1, "the first measurement is published");
    await run(3000, 0);
    assert.equal(published(), first, "no change, no new weights");
    await run(6000, 10);
    assert.ok(published() > first);
    assert.ok(published() - first <= 6, `at most one per second: ${published() - first}`);
    const links = new Map<string, UplinkLink>(
      [1, 2].map((n) => [
        `isp${n}`,
        {
          present: true,
          up: true,
          carrier: true,
          pointToPoint: false,
          address: `100.64.${n}.2`,
          gateway: `100.64.${n}.1`,
        },
      ]),
    );
    const views = buildViews(config, links, () => "up");
    const load = balancer.snapshot;
    assert.ok(load !== undefined);
    const { choices } = renderMaps(config, views, { load });
    const choice = choices.default;
    assert.ok(choice?.kind === "balance");
    const share = shares(choice.members);
    assert.ok((share.get("isp2") ?? 0) > 95, JSON.stringify([...share]));
    balancer.stop();
  });

  it("spillover marks the first line full above its threshold and spills to the next", async () => {
    const { balancer, run, published } = setup("spillover");
    const fullNow = () => balancer.snapshot?.full;
    await run(1000, 0);
    assert.deepEqual(balancer.snapshot?.full, []);
    const before = published();
    await run(8000, 10);
    assert.deepEqual(fullNow(), ["isp1"]);
    assert.ok(published() > before);
    await run(8000, 0);
    assert.deepEqual(fullNow(), []);
    balancer.stop();
  });
});

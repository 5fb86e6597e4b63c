/**
 * Health per address family: each uplink's IPv4 is judged by its IPv4
 * targets and its IPv6 by its IPv6 targets, with the real monitors, a fake
 * ping and an injected clock.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";
import { createUplinkHealth } from "../../src/health/adapter.js";
import {
  familyName,
  hasIpv6Health,
  healthOf,
  probeFamily,
  sourceAddressOf,
  targetsOf,
} from "../../src/health/family.js";
import { HealthSupervisor } from "../../src/health/supervisor.js";
import type { UplinkLink } from "../../src/links/observe.js";
import type { Transition } from "../../src/uplink-health.js";
import { ManualClock } from "../fakes/clock.js";
import { FakePing } from "../fakes/health.js";

const A4 = "198.51.100.1";
const B4 = "203.0.113.1";
const A6 = "2001:db8:ffff::1";
const B6 = "2001:db8:ffff::2";
const log = pino({ level: "silent" });

function config(extra = ""): Config {
  const parsed = parseConfig(
    `lan: [lan0]
uplinks:
  - { name: isp1, interface: wan1, gateway: 100.64.1.1 }
  - { name: isp2, interface: wan2, gateway: 100.64.2.1 }
health:
  targets: [${A4}, ${B4}, "${A6}", "${B6}"]
  interval: 200ms
  timeout: 500ms
  down: 3
  up: 5
${extra}`,
    "uplinkd.yaml",
  );
  assert.deepEqual(parsed.health.targets, [A4, B4, A6, B6]);
  return parsed;
}

function link(n: number, ipv6?: string, carrier = true): UplinkLink {
  return Object.assign(
    {
      present: true,
      up: true,
      carrier,
      pointToPoint: false,
      address: `100.64.${n}.2`,
      gateway: `100.64.${n}.1`,
    } as UplinkLink,
    ipv6 === undefined ? {} : { ipv6: { address: ipv6, gateway: "fe80::1" } },
  );
}

describe("health settings split by family", () => {
  it("targetsOf keeps each family's targets in config order", () => {
    const health = { targets: [A4, A6, B4, B6] };
    assert.deepEqual(targetsOf(health, 4), [A4, B4]);
    assert.deepEqual(targetsOf(health, 6), [A6, B6]);
  });

  it("healthOf splits targets and probes and caps reliability per family", () => {
    const c = config();
    c.health.reliability = 2;
    c.health.probes = [
      { type: "tcp", host: "2001:db8:ffff::10", port: 80 },
      { type: "http", url: "http://[2001:db8:ffff::10]:8080/" },
      { type: "dns", server: "198.51.100.53", name: "example.com" },
    ];
    c.health.targets = [A4, A6];
    const v4 = healthOf(c.health, 4);
    const v6 = healthOf(c.health, 6);
    assert.deepEqual(v4.targets, [A4]);
    assert.deepEqual(
      v4.probes.map((p) => p.type),
      ["dns"],
    );
    assert.equal(v4.reliability, 2);
    assert.deepEqual(v6.targets, [A6]);
    assert.deepEqual(
      v6.probes.map((p) => p.type),
      ["tcp", "http"],
    );
    assert.equal(healthOf({ ...c.health, reliability: 5 }, 6).reliability, 3);
  });

  it("probeFamily reads the family of every probe kind", () => {
    assert.equal(probeFamily({ type: "icmp", host: A6 }), 6);
    assert.equal(probeFamily({ type: "icmp", host: A4 }), 4);
    assert.equal(probeFamily({ type: "http", url: "https://[2001:db8::1]/" }), 6);
    assert.equal(probeFamily({ type: "http", url: "https://example.com/" }), 4);
    assert.equal(probeFamily({ type: "dns", server: "[2001:db8::53]:53", name: "x" }), 6);
    assert.equal(familyName(6), "IPv6");
  });

  it("an uplink has IPv6 health only with IPv6 targets and gateway6 not none", () => {
    const c = config();
    const isp1 = c.uplinks[0];
    assert.ok(isp1);
    assert.equal(hasIpv6Health(isp1, c.health), true);
    assert.equal(hasIpv6Health(Object.assign({}, isp1, { gateway6: "none" }), c.health), false);
    assert.equal(hasIpv6Health(isp1, { ...c.health, targets: [A4] }), false);
  });

  it("the IPv6 source is the link's global IPv6 address", () => {
    assert.equal(sourceAddressOf(link(1, "2001:db8:1::2"), 6), "2001:db8:1::2");
    assert.equal(sourceAddressOf(link(1, "2001:db8:1::2"), 4), "100.64.1.2");
    assert.equal(sourceAddressOf(link(1), 6), undefined);
  });
});

function supervised(
  c: Config,
  links: Map<string, UplinkLink>,
): {
  clock: ManualClock;
  /** isp1's network (each uplink has its own fake network). */
  ping: FakePing;
  supervisor: HealthSupervisor;
  transitions: Transition[];
} {
  const clock = new ManualClock();
  const pings = new Map<string, FakePing>();
  const pingOf = (uplink: string): FakePing => {
    const existing = pings.get(uplink);
    if (existing !== undefined) return existing;
    const created = new FakePing(clock);
    pings.set(uplink, created);
    return created;
  };
  const ping = pingOf("isp1");
  const transitions: Transition[] = [];
  const supervisor = new HealthSupervisor({
    log,
    createHealth: (options) =>
      createUplinkHealth(options, {
        monitor: { clock, spawner: pingOf(options.uplink.name).spawner },
      }),
    onTransition: (t) => transitions.push(t),
  });
  supervisor.reconfigure(c, links);
  return { clock, ping, supervisor, transitions };
}

describe("health supervisor: one IPv4 and one IPv6 state per uplink", () => {
  const dual = () =>
    new Map([
      ["isp1", link(1, "2001:db8:1::2")],
      ["isp2", link(2, "2001:db8:2::2")],
    ]);

  it("pings IPv6 targets with -6 from the uplink's global address and its fwmark; IPv4 as before", () => {
    const { ping, clock } = supervised(config(), dual());
    clock.advance(100);
    const isp1 = ping.processes.filter((p) => p.mark === 0x100);
    assert.deepEqual(isp1.map((p) => p.host).sort(), [A4, A6, B6, B4].sort());
    for (const p of isp1) {
      if (p.host.includes(":")) {
        assert.ok(p.args.includes("-6"));
        assert.equal(p.source, "2001:db8:1::2");
      } else {
        assert.equal(p.source, undefined);
      }
    }
  });

  it("an IPv6-only blackhole takes isp1's IPv6 down and leaves its IPv4 up, then recovers", () => {
    const { ping, clock, supervisor, transitions } = supervised(config(), dual());
    clock.advance(5_000);
    assert.equal(supervisor.state("isp1", 4), "up");
    assert.equal(supervisor.state("isp1", 6), "up");
    const before = transitions.length;
    ping.path(A6, { blackhole: true });
    ping.path(B6, { blackhole: true });
    clock.advance(3_000);
    assert.equal(supervisor.state("isp1", 6), "down");
    assert.equal(supervisor.state("isp1", 4), "up");
    assert.equal(supervisor.state("isp1"), "up", "the family defaults to IPv4");
    const down = transitions.slice(before);
    assert.deepEqual(
      down.map((t) => [t.uplink, t.family, t.to]),
      [["isp1", 6, "down"]],
    );
    assert.match(down[0]?.reason ?? "", /2001:db8:ffff::1/);
    assert.equal(supervisor.snapshot("isp1", 6)?.loss !== null, true);
    ping.path(A6, {});
    ping.path(B6, {});
    clock.advance(5_000);
    assert.equal(supervisor.state("isp1", 6), "up");
  });

  it("an IPv4-only blackhole takes IPv4 down and leaves IPv6 up", () => {
    const { ping, clock, supervisor, transitions } = supervised(config(), dual());
    clock.advance(5_000);
    const before = transitions.length;
    ping.path(A4, { blackhole: true });
    ping.path(B4, { blackhole: true });
    clock.advance(3_000);
    assert.equal(supervisor.state("isp1", 4), "down");
    assert.equal(supervisor.state("isp1", 6), "up");
    assert.deepEqual(
      transitions.slice(before).map((t) => [t.uplink, t.family, t.to]),
      [["isp1", 4, "down"]],
    );
  });

  it("carrier loss takes both families down at once; carrier back brings both up", () => {
    const { clock, supervisor, transitions } = supervised(config(), dual());
    clock.advance(5_000);
    const before = transitions.length;
    const links = dual();
    const lost = new Map(links);
    lost.set("isp1", link(1, "2001:db8:1::2", false));
    supervisor.linksChanged(links, lost);
    assert.deepEqual(
      transitions
        .slice(before)
        .map((t) => [t.family, t.to, t.reason])
        .sort(),
      [
        [4, "down", "carrier lost"],
        [6, "down", "carrier lost"],
      ],
    );
    supervisor.linksChanged(lost, links);
    clock.advance(5_000);
    assert.equal(supervisor.state("isp1", 4), "up");
    assert.equal(supervisor.state("isp1", 6), "up");
  });

  it("maintenance applies to both families, with one transition each way per family", () => {
    const { clock, supervisor, transitions } = supervised(config(), dual());
    clock.advance(2_000);
    const before = transitions.length;
    assert.equal(supervisor.disable("isp1", { since: 1, reason: "work" }), true);
    assert.equal(supervisor.disable("isp1", { since: 2, reason: "again" }), false);
    assert.equal(supervisor.state("isp1", 4), "disabled");
    assert.equal(supervisor.state("isp1", 6), "disabled");
    assert.equal(supervisor.health("isp1", 6)?.state, "up", "the probes still judge");
    assert.equal(supervisor.enable("isp1", 5_000), true);
    assert.equal(supervisor.enable("isp1", 6_000), false);
    assert.equal(supervisor.state("isp1", 6), "up");
    assert.deepEqual(
      transitions.slice(before).map((t) => [t.time, t.family, t.from, t.to, t.reason]),
      [
        [new Date(1).toISOString(), 4, "up", "disabled", "work"],
        [new Date(1).toISOString(), 6, "up", "disabled", "work"],
        [
          new Date(5_000).toISOString(),
          4,
          "disabled",
          "up",
          `enabled by the operator; health: ${supervisor.health("isp1", 4)?.reason ?? "?"}`,
        ],
        [
          new Date(5_000).toISOString(),
          6,
          "disabled",
          "up",
          `enabled by the operator; health: ${supervisor.health("isp1", 6)?.reason ?? "?"}`,
        ],
      ],
    );
  });

  it("the IPv6 monitor waits, down with a reason, while the uplink has no global IPv6 address", () => {
    const links = new Map([
      ["isp1", link(1)],
      ["isp2", link(2, "2001:db8:2::2")],
    ]);
    const { clock, ping, supervisor, transitions } = supervised(config(), links);
    clock.advance(2_000);
    assert.equal(supervisor.state("isp1", 6), "down");
    assert.equal(supervisor.snapshot("isp1", 6)?.reason, "no global IPv6 address");
    assert.equal(supervisor.state("isp1", 4), "up");
    assert.equal(
      ping.processes.filter((p) => p.mark === 0x100 && p.host.includes(":")).length,
      0,
      "no ICMPv6 probe without a source address",
    );
    // SLAAC gives the address: probes start from it, IPv6 comes up after `up` rounds.
    const next = new Map(links);
    next.set("isp1", link(1, "2001:db8:1::2"));
    supervisor.linksChanged(links, next);
    clock.advance(3_000);
    assert.equal(supervisor.state("isp1", 6), "up");
    assert.ok(transitions.some((t) => t.uplink === "isp1" && t.family === 6 && t.to === "up"));
    // Renumbering: the probes move to the new address without a restart of the monitor.
    const renumbered = new Map(next);
    renumbered.set("isp1", link(1, "2001:db8:1:0:1::9"));
    const count = transitions.length;
    supervisor.linksChanged(next, renumbered);
    clock.advance(3_000);
    const live = ping.alive.filter((p) => p.mark === 0x100 && p.host.includes(":"));
    assert.deepEqual(
      live.map((p) => p.source),
      ["2001:db8:1:0:1::9", "2001:db8:1:0:1::9"],
    );
    assert.equal(supervisor.state("isp1", 6), "up");
    assert.equal(transitions.length, count, "no transition from a renumbering");
    // The address goes away: down with the reason.
    supervisor.linksChanged(renumbered, links);
    assert.equal(supervisor.state("isp1", 6), "down");
    assert.equal(transitions.at(-1)?.reason, "no global IPv6 address");
  });

  it("no IPv6 monitor with gateway6: none or without IPv6 targets", () => {
    const c = config();
    const isp2 = c.uplinks[1];
    assert.ok(isp2);
    Object.assign(isp2, { gateway6: "none" });
    const { supervisor } = supervised(c, dual());
    assert.equal(supervisor.monitors("isp1", 6), true);
    assert.equal(supervisor.monitors("isp2", 6), false);
    assert.equal(supervisor.snapshot("isp2", 6), undefined);
    const v4only = config();
    v4only.health.targets = [A4, B4];
    supervisor.reconfigure(v4only, dual());
    assert.equal(supervisor.monitors("isp1", 6), false);
    assert.equal(supervisor.monitors("isp1", 4), true);
    supervisor.stop();
  });

  it("a reload that keeps the IPv6 settings keeps the IPv6 state; new IPv6 targets restart it", () => {
    const c = config();
    const { clock, supervisor, ping } = supervised(c, dual());
    ping.path(A6, { blackhole: true });
    ping.path(B6, { blackhole: true });
    clock.advance(3_000);
    assert.equal(supervisor.state("isp1", 6), "down");
    assert.equal(supervisor.stateAfter(config(), "isp1", 6), "down");
    const changed = config();
    changed.health.targets = [A4, B4, A6];
    assert.equal(supervisor.stateAfter(changed, "isp1", 6), "init");
    assert.equal(supervisor.stateAfter(changed, "isp1", 4), "up", "IPv4 settings unchanged");
    supervisor.stop();
  });
});

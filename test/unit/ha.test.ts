import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError } from "../../src/errors.js";
import { renderDesired } from "../../src/dataplane/render.js";
import { buildViews } from "../../src/dataplane/views.js";
import { uplinkSlots } from "../../src/config/slots.js";
import type { UplinkLink } from "../../src/links/observe.js";
import { upLink } from "../fakes/links.js";
import {
  advertSeconds,
  renderConntrackd,
  renderKeepalived,
  renderNotifyScript,
  renderRadvd,
  vrrpSegments,
} from "../../src/ha/render.js";
import { haFiles } from "../../src/ha/cli.js";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import type { StatusDocument } from "../../src/control/api.js";
import { formatHa, formatRoleEvents } from "../../src/control/format.js";
import { hookEnvironment, summary, textBody, webhookPayload } from "../../src/notify/message.js";
import { Notifier } from "../../src/notify/notifier.js";
import { notifySchema } from "../../src/config/notify.js";
import { HaPart, parseStateFile, type HaRoleChange, type HaTransport } from "../../src/ha/part.js";
import type { UplinkView } from "../../src/dataplane/render.js";
import { ManualClock } from "../fakes/clock.js";
import { HA_FAULT_SCORE, HA_SCORE_BASE, HA_SCORE_STEP, healthScore } from "../../src/ha/score.js";

const UPLINKS = `lan: [lan0]
uplinks:
  - name: isp1
    interface: wan1
    gateway: 100.64.1.1
  - name: isp2
    interface: wan2
    gateway: 100.64.2.1
  - name: lte
    interface: wwan0
    gateway: 100.64.3.1
    tier: 2
`;

function haText(node: string, priority: number, sync: string, peer: string, extra = ""): string {
  return `${UPLINKS}ha:
  node: ${node}
  priority: ${priority}
  peer: { name: ${node === "a" ? "b" : "a"}, address: ${peer} }
  sync: { interface: sync0, address: ${sync} }
  advert_interval: 200ms
  virtual_addresses:
    wan2: [100.64.2.10/24]
    lan0: [100.64.100.1/24]
    wan1: [100.64.1.10/24]
${extra}`;
}

const A = parseConfig(haText("a", 20, "100.64.250.1", "100.64.250.2"), "a.yaml");
const B = parseConfig(haText("b", 10, "100.64.250.2", "100.64.250.1"), "b.yaml");

/** The issues parseConfig throws for `text`, as `LINE:COL path: message` lines. */
function issues(text: string): string[] {
  try {
    parseConfig(text, "ha.yaml");
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.issues.map((i) => `${i.file}:${i.line}:${i.col} ${i.path}: ${i.message}`);
  }
  assert.fail("the config was accepted");
}

describe("ha config", () => {
  it("fills in the defaults: 1 s adverts unless given, 5 s preempt delay, Debian's paths", () => {
    const ha = A.ha;
    assert.ok(ha !== undefined);
    assert.equal(ha.advert_interval, 200);
    assert.equal(ha.preempt_delay, 5000);
    assert.equal(ha.virtual_router_id, 51);
    assert.equal(ha.conntrackd.socket, "/var/run/conntrackd.ctl");
    assert.equal(ha.keepalived_config, "/etc/keepalived/keepalived.conf");
  });

  it("locates a sub-second interval that is no whole number of centiseconds at its value", () => {
    const text = haText("a", 20, "100.64.250.1", "100.64.250.2").replace("200ms", "205ms");
    assert.deepEqual(issues(text), [
      "ha.yaml:18:20 ha.advert_interval: must be a whole number of centiseconds (VRRPv3)",
    ]);
  });

  it("locates a priority above 20 at its value", () => {
    const found = issues(haText("a", 21, "100.64.250.1", "100.64.250.2"));
    assert.equal(found.length, 1);
    assert.match(found[0] ?? "", /^ha\.yaml:15:13 ha\.priority: /);
  });

  it("rejects the router as its own peer, at the peer's name", () => {
    const text = haText("a", 20, "100.64.250.1", "100.64.250.2").replace(
      "peer: { name: b",
      "peer: { name: a",
    );
    assert.deepEqual(issues(text), [
      "ha.yaml:16:17 ha.peer.name: the peer must be the other router, not this one (a)",
    ]);
  });

  it("requires a virtual address on every LAN interface", () => {
    const text = haText("a", 20, "100.64.250.1", "100.64.250.2").replace(
      "    lan0: [100.64.100.1/24]\n",
      "",
    );
    assert.deepEqual(issues(text), [
      "ha.yaml:20:5 ha.virtual_addresses: LAN interface lan0 needs a virtual address: the clients' gateway must move with the master",
    ]);
  });

  it("rejects virtual addresses on unknown interfaces, twice given, or with an uplink's own snat", () => {
    const text = haText(
      "a",
      20,
      "100.64.250.1",
      "100.64.250.2",
      "    eth9: [100.64.9.1]\n    wwan0: [100.64.1.10/24]\n",
    ).replace("    tier: 2\n", "    tier: 2\n    snat: 100.64.3.2\n");
    assert.deepEqual(issues(text), [
      "ha.yaml:24:11 ha.virtual_addresses.eth9: eth9 is neither a LAN nor an uplink interface (lan0, wan1, wan2, wwan0)",
      "ha.yaml:25:12 ha.virtual_addresses.wwan0: uplink lte has snat 100.64.3.2: with a virtual address uplinkd SNATs to that; remove one of them",
      "ha.yaml:25:13 ha.virtual_addresses.wwan0.0: 100.64.1.10 is already a virtual address of wan1",
    ]);
  });

  it("rejects VRIDs beyond 255 for the segments", () => {
    const text = haText("a", 20, "100.64.250.1", "100.64.250.2", "  virtual_router_id: 254\n");
    assert.deepEqual(issues(text), [
      "ha.yaml:23:22 ha.virtual_router_id: 3 segments need VRIDs 254..256; VRRP has 1..255",
    ]);
  });

  it("rejects a sync link that is a LAN or uplink interface", () => {
    const text = haText("a", 20, "100.64.250.1", "100.64.250.2").replace(
      "interface: sync0",
      "interface: wan1",
    );
    assert.deepEqual(issues(text), [
      "ha.yaml:17:22 ha.sync.interface: the sync link must be a dedicated interface, not wan1 (a LAN or uplink interface)",
    ]);
  });

  it("rejects an unknown key at the key", () => {
    const found = issues(`${haText("a", 20, "100.64.250.1", "100.64.250.2")}  vrid: 3\n`);
    assert.equal(found.length, 1);
    assert.match(found[0] ?? "", /^ha\.yaml:23:3 ha(\.vrid)?: /);
  });
});

describe("ha health score", () => {
  const good = (tier: number) => ({ tier, usability: "good" as const });
  const bad = (tier: number) => ({ tier, usability: "bad" as const });

  it("a router with more usable best-tier uplinks scores higher by more than any priority difference", () => {
    const two = healthScore([good(1), good(1), good(2)]);
    const one = healthScore([good(1), bad(1), good(2)]);
    assert.equal(two - one, HA_SCORE_STEP);
    assert.ok(two + 1 > one + 20, "priority 1 with two uplinks beats priority 20 with one");
  });

  it("only a lower tier usable still beats no uplink at all, which is FAULT", () => {
    assert.equal(healthScore([bad(1), bad(1), good(2)]), HA_SCORE_BASE);
    assert.equal(healthScore([bad(1), bad(1), bad(2)]), HA_FAULT_SCORE);
    assert.ok(HA_FAULT_SCORE < -253, "keepalived puts an instance into FAULT below -253");
  });

  it("degraded uplinks count as usable, and the total stays within keepalived's 254", () => {
    assert.equal(healthScore([{ tier: 1, usability: "degraded" }]), HA_SCORE_BASE + HA_SCORE_STEP);
    const many = Array.from({ length: 32 }, () => good(1));
    assert.ok(20 + healthScore(many) <= 254);
  });
});

describe("ha render", () => {
  it("numbers the segments by interface name, so both routers agree whatever the file's order", () => {
    assert.ok(A.ha !== undefined);
    assert.deepEqual(
      vrrpSegments(A.ha).map((s) => [s.interface, s.virtualRouterId]),
      [
        ["lan0", 51],
        ["wan1", 52],
        ["wan2", 53],
      ],
    );
    assert.equal(advertSeconds(200), "0.2");
    assert.equal(advertSeconds(1000), "1");
    assert.equal(advertSeconds(1250), "1.25");
  });

  it("keepalived.conf: one instance per segment in one sync group, the track file on each, VRRPv3", () => {
    const conf = renderKeepalived(A, "a.yaml");
    const instances = [...conf.matchAll(/^vrrp_instance (\S+) \{$/gm)].map((m) => m[1]);
    assert.deepEqual(instances, ["uplinkd_lan0", "uplinkd_wan1", "uplinkd_wan2"]);
    const group = /vrrp_sync_group uplinkd \{\n\tgroup \{\n((?:\t\t\S+\n)+)\t\}/.exec(conf);
    assert.deepEqual(group?.[1]?.trim().split(/\s+/), instances);
    assert.equal(conf.match(/\t\tuplinkd_health weight 1\n/g)?.length, 3);
    assert.match(conf, /\tvrrp_version 3\n/);
    assert.match(
      conf,
      /\tnotify "\/etc\/keepalived\/uplinkd-notify\.sh \/etc\/conntrackd\/conntrackd\.conf \/var\/lock\/conntrack\.lock \/run\/uplinkd\/ha-role \/etc\/uplinkd\/radvd\.conf \/run\/uplinkd\/radvd\.pid"\n/,
    );
    assert.match(conf, /\tsync_group_tracking_weight\n/);
    assert.match(conf, /file "\/run\/uplinkd\/ha-score"/);
    assert.match(
      conf,
      /vrrp_instance uplinkd_wan1 \{\n\tstate BACKUP\n\tinterface wan1\n\tvirtual_router_id 52\n\tpriority 20\n\tadvert_int 0\.2\n\tpreempt_delay 5\n\tvirtual_ipaddress \{\n\t\t100\.64\.1\.10\/24 dev wan1\n\t\}/,
    );
  });

  it("the two routers' keepalived.conf differ only in name and priority", () => {
    const a = renderKeepalived(A, "x.yaml")
      .replace(/router a \(peer b\)/, "")
      .replace("router_id a", "")
      .replaceAll("priority 20", "");
    const b = renderKeepalived(B, "x.yaml")
      .replace(/router b \(peer a\)/, "")
      .replace("router_id b", "")
      .replaceAll("priority 10", "");
    assert.equal(a, b);
  });

  it("conntrackd.conf: FTFW over unicast UDP between the sync addresses, mirrored on the peer", () => {
    const a = renderConntrackd(A, "a.yaml");
    const b = renderConntrackd(B, "b.yaml");
    assert.match(a, /Mode FTFW \{/);
    assert.match(
      a,
      /\tUDP \{\n\t\tIPv4_address 100\.64\.250\.1\n\t\tIPv4_Destination_Address 100\.64\.250\.2\n\t\tPort 3780\n\t\tInterface sync0\n/,
    );
    assert.match(b, /IPv4_address 100\.64\.250\.2\n\t\tIPv4_Destination_Address 100\.64\.250\.1\n/);
    const ignored = [...a.matchAll(/^\t\t\tIPv4_address (\S+)$/gm)].map((m) => m[1]);
    assert.deepEqual(ignored.sort(), [
      "100.64.1.10",
      "100.64.100.1",
      "100.64.2.10",
      "100.64.250.1",
      "100.64.250.2",
      "127.0.0.1",
    ]);
    assert.match(
      a,
      /\tLockFile \/var\/lock\/conntrack\.lock\n\tUNIX \{\n\t\tPath \/var\/run\/conntrackd\.ctl\n/,
    );
  });

  it("the notify script commits, flushes, resyncs and bulk-sends on MASTER, in that order", () => {
    const script = renderNotifyScript(A, "a.yaml");
    const master = /^MASTER\)\n([\s\S]*?)\n\t;;/m.exec(script)?.[1] ?? "";
    const steps = [...master.matchAll(/^\trun (-\w)/gm)].map((m) => m[1]);
    assert.deepEqual(steps, ["-c", "-f", "-R", "-B"]);
    assert.match(master, /\trole master "\$\{4:-0\}"$/);
    const backup = /^BACKUP\)\n([\s\S]*?)\n\t;;/m.exec(script)?.[1] ?? "";
    assert.deepEqual(
      [...backup.matchAll(/\brun (-\w)/g)].map((m) => m[1]),
      ["-d", "-t", "-n"],
    );
    // The paths come as arguments (keepalived.conf's notify line), never spliced into code.
    assert.match(
      script,
      /^conf=\$1\nlock=\$2\nstate=\$3\nradvd_conf=\$4\nradvd_pid=\$5\nshift 5$/m,
    );
    assert.doesNotMatch(script, /conntrackd\.conf|conntrack\.lock|ha-role/);
  });
});

describe("ha dataplane", () => {
  const links = new Map<string, UplinkLink>([
    ["isp1", upLink("100.64.1.2", "100.64.1.1")],
    ["isp2", upLink("100.64.2.2", "100.64.2.1")],
    ["lte", upLink("100.64.3.2", "100.64.3.1")],
  ]);

  it("forwarded connections are SNATed to the uplink's virtual address, the router's own keep its address", () => {
    const script = renderDesired(
      A,
      buildViews(A, links, () => "up"),
    ).nftScript;
    const post = /chain postrouting \{[\s\S]*?\n\t\}/.exec(script)?.[0] ?? "";
    assert.match(
      post,
      /\t\tmeta nfproto ipv4 oifname "wan1" fib saddr type local masquerade\n\t\tmeta nfproto ipv4 oifname "wan1" snat ip to 100\.64\.1\.10\n/,
    );
    assert.match(post, /oifname "wan2" snat ip to 100\.64\.2\.10\n/);
    // No virtual address for the LTE uplink: masquerade as without ha.
    assert.match(post, /\t\tmeta nfproto ipv4 oifname "wwan0" masquerade\n/);
  });

  it("a TCP packet without an entry that is no SYN is dropped, from the LAN or an uplink (a new master)", () => {
    const pre = (config: typeof A) =>
      /chain prerouting \{[\s\S]*?\n\t\}/.exec(
        renderDesired(
          config,
          buildViews(config, links, () => "up"),
        ).nftScript,
      )?.[0] ?? "";
    assert.match(
      pre(A),
      /\t\tct state new tcp flags & \(fin \| syn \| rst \| ack\) != syn drop\n\t\tct state new iifname vmap @inbound\n/,
    );
    const single = { ...A };
    delete single.ha;
    assert.doesNotMatch(pre(single), /tcp flags/);
  });

  it("marks and tables are the same on both routers: they derive from the uplinks alone", () => {
    assert.deepEqual(uplinkSlots(A), uplinkSlots(B));
  });
});

describe("ha part of the daemon", () => {
  /** Files in memory; `reads` counts reads of the state file. */
  function fakeIo() {
    const files = new Map<string, string>();
    return {
      files,
      io: {
        read: (path: string) => Promise.resolve(files.get(path)),
        write: (path: string, content: string) => {
          files.set(path, content);
          return Promise.resolve();
        },
      },
    };
  }
  const silent = pino({ level: "silent" });
  /** Heartbeats in memory: what was sent, and a way to deliver one as if from `from`. */
  function fakeTransport() {
    const sent: { text: string; address: string; port: number }[] = [];
    let deliver: (text: string, from: string) => void = () => undefined;
    const transport: HaTransport = {
      start: (_port, onMessage) => {
        deliver = onMessage;
      },
      send: (text, address, port) => sent.push({ text, address, port }),
      stop: () => undefined,
    };
    return {
      sent,
      transport,
      deliver: (text: string, from: string) => {
        deliver(text, from);
      },
    };
  }
  const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
  const view = (name: string, tier: number, usable: boolean) =>
    ({ name, tier, usability: usable ? "good" : "bad" }) as unknown as UplinkView;

  it("writes the health score when it changes, and FAULT when uplinkd gives up on stop", async () => {
    const { files, io } = fakeIo();
    const clock = new ManualClock();
    const part = new HaPart({
      log: silent,
      clock,
      io,
      transport: fakeTransport().transport,
      onRole: () => undefined,
    });
    part.start(A.ha);
    part.update([view("isp1", 1, true), view("isp2", 1, true), view("lte", 2, true)]);
    await part.idle();
    assert.equal(files.get("/run/uplinkd/ha-score"), `${HA_SCORE_BASE + 2 * HA_SCORE_STEP}\n`);
    part.update([view("isp1", 1, false), view("isp2", 1, true), view("lte", 2, true)]);
    await part.idle();
    assert.equal(files.get("/run/uplinkd/ha-score"), `${HA_SCORE_BASE + HA_SCORE_STEP}\n`);
    assert.equal(part.status()?.score, HA_SCORE_BASE + HA_SCORE_STEP);
    await part.stop(true);
    assert.equal(files.get("/run/uplinkd/ha-score"), `${HA_FAULT_SCORE}\n`);
  });

  it("reports each role the notify script writes, once, with the script's time", async () => {
    const { files, io } = fakeIo();
    const clock = new ManualClock();
    const changes: HaRoleChange[] = [];
    const part = new HaPart({
      log: silent,
      clock,
      io,
      pollMs: 100,
      transport: fakeTransport().transport,
      onRole: (c) => changes.push(c),
    });
    part.start(A.ha);
    clock.advance(0);
    await flush();
    assert.equal(part.status()?.role, "unknown");
    files.set("/run/uplinkd/ha-role", "backup 1700000000500 20\n");
    clock.advance(100);
    await flush();
    assert.equal(part.status()?.peer.role, "master");
    files.set("/run/uplinkd/ha-role", "master 1700000001000 90\n");
    clock.advance(100);
    await flush();
    clock.advance(100);
    await flush();
    assert.deepEqual(
      changes.map((c) => [c.from, c.to, c.time, c.priority]),
      [
        ["unknown", "backup", "2023-11-14T22:13:20.500Z", 20],
        ["backup", "master", "2023-11-14T22:13:21.000Z", 90],
      ],
    );
    assert.deepEqual(part.status(), {
      node: "a",
      role: "master",
      since: "2023-11-14T22:13:21.000Z",
      priority: 20,
      score: null,
      peer: { name: "b", role: "unknown", score: null },
    });
    await part.stop(false);
  });

  it("tells the peer its role each second and shows the peer's; a silent peer becomes unreachable", async () => {
    const { files, io } = fakeIo();
    const { sent, transport, deliver } = fakeTransport();
    const clock = new ManualClock();
    const part = new HaPart({ log: silent, clock, io, transport, onRole: () => undefined });
    part.start(A.ha);
    files.set("/run/uplinkd/ha-role", "master 1700000000500 90\n");
    clock.advance(100);
    await flush();
    clock.advance(1000);
    assert.deepEqual(sent.at(-1), {
      text: JSON.stringify({ node: "a", role: "master", score: null, priority: 20 }),
      address: "100.64.250.2",
      port: 3781,
    });
    const beat = JSON.stringify({ node: "b", role: "backup", score: 70, priority: 10 });
    deliver(beat, "100.64.250.9"); // not the peer's sync address: ignored
    assert.deepEqual(part.status()?.peer, { name: "b", role: "unknown", score: null });
    deliver(beat, "100.64.250.2");
    assert.deepEqual(part.status()?.peer, { name: "b", role: "backup", score: 70 });
    clock.advance(3001);
    await flush();
    assert.deepEqual(part.status()?.peer, { name: "b", role: "unreachable", score: null });
    await part.stop(false);
  });

  it("reads only the notify script's lines as roles", () => {
    assert.deepEqual(parseStateFile("fault 12 -234\n"), {
      role: "fault",
      wallMs: 12,
      priority: -234,
      commitMs: null,
    });
    assert.deepEqual(parseStateFile("master 1765000000123 60 38\n"), {
      role: "master",
      wallMs: 1765000000123,
      priority: 60,
      commitMs: 38,
    });
    assert.equal(parseStateFile("MASTER"), undefined);
    assert.equal(parseStateFile(""), undefined);
  });
});

describe("ha role notifications", () => {
  const change: HaRoleChange = {
    time: "2024-05-01T10:00:00.000Z",
    node: "b",
    from: "backup",
    to: "master",
    priority: 80,
  };

  it("a role change is its own message: subject, body, webhook body and hook variables", () => {
    const notification = {
      kind: "role" as const,
      host: "router-b",
      time: "2024-05-01T10:00:01.000Z",
      transitions: [],
      omitted: 0,
      uplinks: null,
      role: change,
    };
    assert.equal(summary(notification), "router b master");
    assert.match(
      textBody(notification),
      /^router b master on router-b\n\n2024-05-01T10:00:00\.000Z {2}router b \(HA pair\): backup → master \(VRRP priority 80\)\n/,
    );
    assert.deepEqual(webhookPayload(notification).role, change);
    assert.equal(webhookPayload(notification).type, "role");
    const env = hookEnvironment("role", [], 0, change);
    assert.equal(env.EVENT, "role");
    assert.equal(env.NODE, "b");
    assert.equal(env.ROLE, "master");
    assert.equal(env.PREVIOUS_ROLE, "backup");
    assert.equal(env.TIMESTAMP, change.time);
    assert.equal(env.UPLINK, "");
  });

  it("the notifier sends it at once to every channel, whatever `states` says", async () => {
    const bodies: string[] = [];
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
      req.on("end", () => {
        bodies.push(body);
        res.end("ok");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const notifier = new Notifier(
        notifySchema.parse({
          states: ["down"],
          coalesce: "10s",
          webhooks: [{ url: `http://127.0.0.1:${port}/hook` }],
        }),
        pino({ level: "silent" }),
        { interfaceOf: () => undefined, hostname: "router-b" },
      );
      notifier.notifyRole(change);
      await notifier.flush();
      assert.equal(bodies.length, 1);
      const body = JSON.parse(bodies[0] ?? "{}") as { summary?: string; role?: HaRoleChange };
      assert.equal(body.summary, "router b master");
      assert.deepEqual(body.role, change);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("ha in status and events", () => {
  it("status ends with this router's role and the peer's; events list role changes", () => {
    const status = {
      ha: {
        node: "a",
        role: "master" as const,
        since: "2026-12-02T14:30:23.000Z",
        priority: 20,
        score: 70,
        peer: { name: "b", role: "backup" as const, score: 50 },
      },
    } as unknown as StatusDocument;
    assert.equal(
      formatHa(status),
      "ha: router a master since 2026-12-02 14:30:23Z (priority 20, score 70); peer b backup (score 50)\n",
    );
    assert.equal(formatHa({ ...status, ha: null }), "");
    assert.equal(
      formatRoleEvents([
        { time: "2026-12-02T14:30:23.000Z", node: "a", from: "backup", to: "master", priority: 90 },
      ]),
      "2026-12-02 14:30:23Z  ha router a: backup -> master (priority 90)\n",
    );
  });
});

const UPLINKS6 = `lan: [lan0]
uplinks:
  - name: isp1
    interface: wan1
    gateway: 100.64.1.1
    gateway6: fe80::1
  - name: isp2
    interface: wan2
    gateway: 100.64.2.1
    gateway6: 2001:db8:2::1
    prefix6: 2001:db8:1002::/56
`;

function ha6Text(node: string, priority: number, sync: string, peer: string, lan = ""): string {
  return `${UPLINKS6}ha:
  node: ${node}
  priority: ${priority}
  peer: { name: ${node === "a" ? "b" : "a"}, address: ${peer} }
  sync: { interface: sync0, address: ${sync} }
  advert_interval: 100ms
  virtual_addresses:
    lan0: ${lan === "" ? "[100.64.100.1/24, fd00:1::1/64, fe80::1/64]" : lan}
    wan1: [100.64.1.10/24, 2001:db8:1::10/64]
    wan2: [100.64.2.10/24, 2001:db8:2:0::10/64]
`;
}

const A6 = parseConfig(ha6Text("a", 20, "100.64.250.1", "100.64.250.2"), "a.yaml");
const B6 = parseConfig(ha6Text("b", 10, "100.64.250.2", "100.64.250.1"), "b.yaml");

describe("a dual-stack pair", () => {
  it("check says what a dual-stack pair needs: a LAN link-local virtual address, one per uplink with IPv6, no delegated prefix", () => {
    assert.deepEqual(
      issues(ha6Text("a", 20, "100.64.250.1", "100.64.250.2", "[100.64.100.1/24, fd00:1::1/64]")),
      [
        "ha.yaml:19:11 ha.virtual_addresses.lan0: LAN interface lan0 needs a link-local virtual address (e.g. fe80::1/64): the master's router advertisements come from it, so LAN hosts keep one default router across a takeover",
      ],
    );
    assert.deepEqual(
      issues(ha6Text("a", 20, "100.64.250.1", "100.64.250.2", "[100.64.100.1/24]")),
      [
        "ha.yaml:19:11 ha.virtual_addresses.lan0: LAN interface lan0 has no IPv6 virtual address: in a dual-stack pair give it a link-local one (e.g. fe80::1/64, its hosts' default router) and one in the LAN's prefix (e.g. fd00:1::1/64)",
      ],
    );
    const noV6 = ha6Text("a", 20, "100.64.250.1", "100.64.250.2")
      .replace("[100.64.2.10/24, 2001:db8:2:0::10/64]", "[100.64.2.10/24]")
      .replace(
        "[100.64.1.10/24, 2001:db8:1::10/64]",
        "[100.64.1.10/24, 2001:db8:1::10/64, fe80::2/64]",
      )
      .replace("prefix6: 2001:db8:1002::/56", "prefix6: auto");
    const found = issues(noV6);
    assert.ok(
      found.some((l) =>
        /ha\.virtual_addresses\.wan1\.2: fe80::2 is link-local: a link-local virtual address is the LAN's default router and belongs on a LAN interface/.test(
          l,
        ),
      ),
      found.join("\n"),
    );
    assert.ok(
      found.some((l) =>
        /^ha\.yaml:10:15 uplinks\.1\.gateway6: uplink "isp2" has IPv6 but wan2 has no IPv6 virtual address/.test(
          l,
        ),
      ),
      found.join("\n"),
    );
    assert.ok(
      found.some((l) =>
        /uplinks\.1\.prefix6: uplink "isp2" has prefix6: auto: a prefix delegated to one router/.test(
          l,
        ),
      ),
      found.join("\n"),
    );
    assert.deepEqual(
      issues(ha6Text("a", 20, "100.64.250.1", "100.64.250.2", "[fe80::1/129]")).map((l) =>
        l.replace(/^.*?: /, ""),
      ),
      [
        "must be an IPv4 or IPv6 address with an optional prefix length (e.g. 100.64.1.10/24, 2001:db8:1::10/64, fe80::1/64)",
      ],
    );
  });

  it("an IPv4-only pair is not asked for IPv6 virtual addresses", () => {
    assert.equal(A.ha?.virtual_addresses.lan0?.length, 1);
    assert.equal(renderRadvd(A, "a.yaml"), undefined);
    assert.equal(haFiles(A, "a.yaml").length, 3);
  });

  it("keepalived.conf: an IPv6 instance beside each IPv4 one, same VRID, same sync group, link-local first", () => {
    const conf = renderKeepalived(A6, "a.yaml");
    const instances = [...conf.matchAll(/^vrrp_instance (\S+) \{$/gm)].map((m) => m[1]);
    assert.deepEqual(instances, [
      "uplinkd_lan0",
      "uplinkd_lan0_6",
      "uplinkd_wan1",
      "uplinkd_wan1_6",
      "uplinkd_wan2",
      "uplinkd_wan2_6",
    ]);
    const group = /vrrp_sync_group uplinkd \{\n\tgroup \{\n((?:\t\t\S+\n)+)\t\}/.exec(conf);
    assert.deepEqual(group?.[1]?.trim().split(/\s+/), instances);
    assert.match(
      conf,
      /vrrp_instance uplinkd_lan0_6 \{\n\tstate BACKUP\n\tinterface lan0\n\tvirtual_router_id 51\n\tpriority 20\n\tadvert_int 0\.1\n\tpreempt_delay 5\n\tvirtual_ipaddress \{\n\t\tfe80::1\/64 dev lan0\n\t\tfd00:1::1\/64 dev lan0\n\t\}/,
    );
    assert.match(
      conf,
      /vrrp_instance uplinkd_lan0 \{\n[^}]*virtual_ipaddress \{\n\t\t100\.64\.100\.1\/24 dev lan0\n\t\}/,
    );
    assert.match(conf, /vrrp_instance uplinkd_wan2_6 \{[^}]*\t\t2001:db8:2:0::10\/64 dev wan2\n/);
    assert.equal(conf.match(/\t\tuplinkd_health weight 1\n/g)?.length, 6);
  });

  it("conntrackd.conf copies IPv6 entries too, ignoring the routers' own IPv6 connections", () => {
    const conf = renderConntrackd(A6, "a.yaml");
    const ignored6 = [...conf.matchAll(/^\t\t\tIPv6_address (\S+)$/gm)].map((m) => m[1]);
    assert.deepEqual(ignored6, ["::1", "fd00:1::1", "2001:db8:1::10", "2001:db8:2::10"]);
    // Protocol filter only: no family filter, so IPv6 entries (with their marks) are synced.
    assert.doesNotMatch(conf, /Address Accept|Mark|L3/);
  });

  it("radvd.conf: the LAN's virtual prefixes, sent from the virtual link-local address only", () => {
    const conf = renderRadvd(A6, "a.yaml") ?? "";
    assert.match(
      conf,
      /\ninterface lan0 \{\n\tAdvSendAdvert on;\n\tAdvRASrcAddress \{\n\t\tfe80::1;\n\t\};\n\tprefix fd00:1::\/64 \{\n\t\tAdvOnLink on;\n\t\tAdvAutonomous on;\n\t\};\n\};\n$/,
    );
    assert.doesNotMatch(conf, /wan1|wan2/);
    assert.deepEqual(
      haFiles(A6, "a.yaml").map((f) => [f.path, f.mode]),
      [
        ["/etc/keepalived/keepalived.conf", 0o644],
        ["/etc/conntrackd/conntrackd.conf", 0o644],
        ["/etc/keepalived/uplinkd-notify.sh", 0o755],
        ["/etc/uplinkd/radvd.conf", 0o644],
      ],
    );
    assert.equal(
      renderRadvd(A6, "x.yaml"),
      renderRadvd(B6, "x.yaml")?.replace("router b (peer a)", "router a (peer b)"),
    );
  });

  it("the notify script starts radvd on MASTER after the commit and kills it on every other role", () => {
    const script = renderNotifyScript(A6, "a.yaml");
    const body = (role: string) =>
      new RegExp(`^${role}\\)\\n([\\s\\S]*?)\\n\\t;;`, "m").exec(script)?.[1] ?? "";
    const master = body("MASTER")
      .split("\n")
      .map((l) => /^\t(run -\w|\w+)/.exec(l)?.[1]);
    assert.deepEqual(master, ["run -c", "run -f", "run -R", "run -B", "role", "radvd_start"]);
    for (const role of ["BACKUP", "FAULT", "STOP"]) {
      assert.equal(body(role).split("\n")[0], "\tradvd_stop", role);
    }
    assert.match(script, /kill -KILL "\$\(cat "\$radvd_pid"\)"/);
    assert.doesNotMatch(script, /\/etc\/uplinkd\/radvd\.conf/);
    assert.match(script, /radvd -C "\$radvd_conf" -p "\$radvd_pid"/);
    // The state file gets the commit path's duration as its fourth field.
    assert.match(script, /printf '%s %s %s %s\\n' "\$1" "\$now" "\$2" "\$\(\(now - began\)\)"/);
    // An IPv4-only pair neither starts nor stops radvd (its path arguments are unused).
    assert.doesNotMatch(renderNotifyScript(A, "a.yaml"), /radvd_(start|stop)|radvd -C/);
  });

  it("forwarded IPv6 connections take the uplink's IPv6 virtual address (or its prefix6), the router's own keep theirs", () => {
    const link6 = (n: number): UplinkLink => ({
      present: true,
      up: true,
      carrier: true,
      pointToPoint: false,
      address: `100.64.${n}.2`,
      network: `100.64.${n}.0/24`,
      gateway: `100.64.${n}.1`,
      ipv6: {
        address: `2001:db8:${n}::2`,
        gateway: n === 1 ? "fe80::1" : "2001:db8:2::1",
        ...(n === 2 ? { prefix: "2001:db8:1002::/56" } : {}),
      },
    });
    const views = buildViews(
      A6,
      new Map([
        ["isp1", link6(1)],
        ["isp2", link6(2)],
      ]),
      () => "up",
    );
    assert.deepEqual(
      views.map((v) => v.virtualAddress6),
      ["2001:db8:1::10", "2001:db8:2::10"],
    );
    const post =
      /chain postrouting \{[\s\S]*?\n\t\}/.exec(renderDesired(A6, views).nftScript)?.[0] ?? "";
    assert.match(
      post,
      /\t\tmeta nfproto ipv6 oifname "wan1" fib saddr type local accept\n\t\tmeta nfproto ipv6 oifname "wan1" snat ip6 to 2001:db8:1::10\n/,
    );
    assert.match(
      post,
      /\t\tmeta nfproto ipv6 oifname "wan2" fib saddr type local accept\n\t\toifname "wan2" ip6 saddr @lan_networks6 snat ip6 prefix to 2001:db8:1002::\/56\n\t\tmeta nfproto ipv6 oifname "wan2" snat ip6 to 2001:db8:2::10\n/,
    );
    assert.doesNotMatch(post, /meta nfproto ipv6 oifname "wan\d" masquerade/);
  });
});

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import pino from "pino";
import { loadConfig, parseConfig } from "../../src/config/load.js";
import { configSchema, type Config } from "../../src/config/schema.js";
import { diffNft, summariseNft } from "../../src/dataplane/diff.js";
import {
  carryElements,
  domainSets,
  readDomainSets,
  type DomainSetState,
} from "../../src/dataplane/domains.js";
import { renderDesired, type UplinkView } from "../../src/dataplane/render.js";
import { buildViews } from "../../src/dataplane/views.js";
import { DnsmasqPart, type DnsmasqIo } from "../../src/dns/dnsmasq.js";
import { nftsetLines, renderNftsetFile, upstreamServers } from "../../src/dns/render.js";
import { Daemon } from "../../src/daemon.js";
import { formatStatus } from "../../src/control/format.js";
import { ConfigError, formatConfigIssue } from "../../src/errors.js";
import { ManualClock } from "../fakes/clock.js";
import type { UplinkLink } from "../../src/links/observe.js";
import { renderLabConfig } from "../../src/lab/config.js";
import { resolverArgv, resolverPaths, resolverRestartScript } from "../../src/lab/resolver.js";
import { planLab } from "../../src/lab/topology.js";
import type { UplinkHealthOptions, UplinkState } from "../../src/uplink-health.js";
import { FakeKernel } from "../fakes/kernel.js";

const log = pino({ level: "silent" });

const BASE = {
  lan: ["lan0"],
  uplinks: [
    { name: "isp1", interface: "wan1", gateway: "100.64.1.1", weight: 1, dns: ["100.64.1.53"] },
    { name: "isp2", interface: "wan2", gateway: "100.64.2.1", weight: 3, dns: ["100.64.2.53"] },
    {
      name: "lte",
      interface: "wwan0",
      gateway: "100.64.3.1",
      tier: 2,
      dns: ["100.64.3.53"],
    },
  ],
  policies: { fibre: { members: [{ uplink: "isp1" }] }, cable: { members: [{ uplink: "isp2" }] } },
  dns: { dnsmasq: { nftset_file: "/etc/dnsmasq.d/uplinkd.conf", servers_file: "/run/servers" } },
};

function configWith(rules: unknown[], extra: Record<string, unknown> = {}): Config {
  return configSchema.parse({ ...BASE, rules, ...extra });
}

const config = configWith([
  { name: "video", dst_domain: ["Video.Example", "cdn.example.net"], policy: "cable" },
  { dst: "192.0.2.0/24", policy: "fibre" },
  { dst_domain: "bank.example", proto: "tcp", dst_port: 443, policy: "fibre" },
]);

const up = (n: number): UplinkLink => ({
  present: true,
  up: true,
  carrier: true,
  pointToPoint: false,
  address: `100.64.${n}.2`,
  network: `100.64.${n}.0/24`,
  gateway: `100.64.${n}.1`,
});
const links = new Map<string, UplinkLink>([
  ["isp1", up(1)],
  ["isp2", up(2)],
  ["lte", up(3)],
]);

function views(of: Config, states: Record<string, UplinkState> = {}): UplinkView[] {
  return buildViews(of, links, (name) => states[name] ?? "up");
}

function errorsOf(yaml: string): string[] {
  try {
    parseConfig(yaml, "dns.yaml");
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map(formatConfigIssue);
    throw error;
  }
  return [];
}

describe("dst_domain and dns.dnsmasq config", () => {
  it("reads names in lower case, with defaults for reload, pid file and set timeout", () => {
    assert.deepEqual(config.rules[0]?.dst_domain, ["video.example", "cdn.example.net"]);
    assert.deepEqual(config.rules[2]?.dst_domain, ["bank.example"]);
    assert.deepEqual(config.dns?.dnsmasq?.reload, ["systemctl", "restart", "dnsmasq"]);
    assert.equal(config.dns.dnsmasq.pid_file, "/run/dnsmasq/dnsmasq.pid");
    assert.equal(config.dns.dnsmasq.set_timeout, 3_600_000);
  });

  it("locates a bad name and a domain rule without nftset_file at FILE:LINE:COL", () => {
    const head = "lan: [lan0]\nuplinks:\n  - name: isp1\n    interface: wan1\nrules:\n";
    assert.deepEqual(
      errorsOf(`${head}  - dst_domain: [ok.example, -bad.example]\n    policy: main\n`),
      [
        "dns.yaml:6:30: rules.0.dst_domain.1: must be a DNS name such as example.com (letters, digits, '-' and dots; no trailing dot)",
      ],
    );
    assert.deepEqual(errorsOf(`${head}  - dst_domain: a.example\n    policy: main\n`), [
      "dns.yaml:6:17: rules.0.dst_domain: dst_domain needs dns.dnsmasq.nftset_file: dnsmasq fills the rule's set from the nftset= lines uplinkd writes there",
    ]);
  });

  it("refuses a servers file when no uplink has DNS servers", () => {
    assert.deepEqual(
      errorsOf(
        "lan: [lan0]\nuplinks:\n  - name: isp1\n    interface: wan1\ndns:\n  dnsmasq:\n    servers_file: /run/s.conf\n",
      ),
      [
        "dns.yaml:7:19: dns.dnsmasq.servers_file: no uplink has dns servers, so dnsmasq would get none: give each uplink its ISP's resolvers (uplinks[].dns)",
      ],
    );
  });

  it("refuses a reload command given as a shell string", () => {
    const errors = errorsOf(
      "lan: [lan0]\nuplinks:\n  - name: isp1\n    interface: wan1\ndns:\n  dnsmasq:\n    reload: systemctl restart dnsmasq\n",
    );
    assert.equal(errors.length, 1);
    assert.match(errors[0] ?? "", /^dns\.yaml:7:13: dns\.dnsmasq\.reload: /);
  });
});

describe("domain sets in the nft table", () => {
  const desired = renderDesired(config, views(config));

  it("renders one timeout set per family per domain rule, matched in rule order", async () => {
    const golden = new URL("./golden/domain-rules.nft", import.meta.url);
    if (process.env.UPDATE_GOLDEN === "1") await writeFile(golden, desired.nftScript);
    assert.equal(desired.nftScript, await readFile(golden, "utf8"));
    assert.match(
      desired.nftScript,
      /\tset dom_0_4 \{\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\ttimeout 3600s\n\t\tcomment "rule 0: video.example cdn.example.net"\n\t\}/,
    );
    assert.match(desired.nftScript, /\tset dom_2_6 \{\n\t\ttype ipv6_addr\n/);
    const steer = /\tchain steer \{\n([^}]*)\}/.exec(desired.nftScript)?.[1] ?? "";
    assert.deepEqual(steer.trim().split("\n\t\t"), [
      'ip daddr @dom_0_4 goto policy_cable comment "video"',
      'ip6 daddr @dom_0_6 goto policy_cable comment "video"',
      "ip daddr vmap @rules_0",
      "ip daddr @dom_2_4 meta l4proto tcp th dport 443 goto policy_fibre",
      "ip6 daddr @dom_2_6 meta l4proto tcp th dport 443 goto policy_fibre",
      "goto policy_default",
    ]);
    assert.deepEqual(
      desired.domainSets.map((s) => s.name),
      ["dom_0_4", "dom_0_6", "dom_2_4", "dom_2_6"],
    );
  });

  it("keeps the structure hash when only the set timeout's elements would differ, changes it with the rules", () => {
    assert.equal(renderDesired(config, views(config)).nftHash, desired.nftHash);
    const longer = configWith(config.rules, {
      dns: { dnsmasq: { ...BASE.dns.dnsmasq, set_timeout: "2h" } },
    });
    assert.notEqual(renderDesired(longer, views(longer)).nftHash, desired.nftHash);
  });

  it("the diff ignores what dnsmasq put in the domain sets, and reloads when one is missing", () => {
    const json = {
      nftables: [
        { set: { name: "structure", elem: [Number.parseInt(desired.nftHash, 16)] } },
        ...["prerouting"].map((name) => ({ chain: { name } })),
        ...Object.entries(desired.maps).map(([name]) => ({ map: { name, elem: [] } })),
        {
          set: {
            name: "dom_0_4",
            comment: "rule 0: video.example cdn.example.net",
            elem: [{ elem: { val: "198.51.100.7", expires: 120 } }],
          },
        },
        { set: { name: "dom_0_6", elem: [] } },
        { set: { name: "dom_2_4", elem: ["203.0.113.9"] } },
      ],
    };
    const want = {
      hash: desired.nftHash,
      chains: ["prerouting"],
      maps: Object.fromEntries(Object.keys(desired.maps).map((name) => [name, []])),
      domainSets: desired.domainSets.map((s) => s.name),
    };
    const summary = summariseNft(json);
    assert.equal(summary.maps.has("dom_0_4"), false);
    assert.deepEqual(diffNft(want, summary).reload, ["nft set dom_2_6 is missing"]);
    json.nftables.push({ set: { name: "dom_2_6", elem: [] } });
    const complete = diffNft(want, summariseNft(json));
    assert.deepEqual([complete.reload, complete.maps], [[], {}]);
  });

  it("a whole-table reload carries elements over only into sets with the same rule and names", () => {
    const held: DomainSetState[] = readDomainSets({
      nftables: [
        {
          set: {
            name: "dom_0_4",
            comment: "rule 0: video.example cdn.example.net",
            elem: [
              { elem: { val: "198.51.100.7", expires: 120 } },
              { elem: { val: "198.51.100.8", expires: 0 } },
            ],
          },
        },
        { set: { name: "dom_2_4", comment: "rule 2: old.example", elem: ["203.0.113.9"] } },
      ],
    });
    assert.deepEqual(carryElements("uplinkd", domainSets(config), held), [
      "add element inet uplinkd dom_0_4 { 198.51.100.7 timeout 3600s expires 120s }",
    ]);
  });

  it("a config without domain rules declares no domain set", () => {
    const plain = configWith([{ dst: "192.0.2.0/24", policy: "fibre" }]);
    assert.doesNotMatch(renderDesired(plain, views(plain)).nftScript, /dom_/);
  });
});

describe("dnsmasq files", () => {
  it("one nftset line per name; a name below another rule's name gets both rules' sets, in rule order", () => {
    const nested = configWith([
      { dst_domain: ["example.com"], policy: "fibre" },
      { dst_domain: ["www.example.com", "other.example"], policy: "cable" },
      { dst_domain: ["example.com"], policy: "main" },
    ]);
    assert.deepEqual(nftsetLines(nested), [
      "nftset=/example.com/4#inet#uplinkd#dom_0_4,6#inet#uplinkd#dom_0_6,4#inet#uplinkd#dom_2_4,6#inet#uplinkd#dom_2_6",
      "nftset=/www.example.com/4#inet#uplinkd#dom_0_4,6#inet#uplinkd#dom_0_6,4#inet#uplinkd#dom_1_4,6#inet#uplinkd#dom_1_6,4#inet#uplinkd#dom_2_4,6#inet#uplinkd#dom_2_6",
      "nftset=/other.example/4#inet#uplinkd#dom_1_4,6#inet#uplinkd#dom_1_6",
    ]);
    assert.equal(
      renderNftsetFile(configWith([])),
      "# Written by uplinkd from its config; changes here are overwritten.\n",
    );
  });

  it("servers: the healthy uplinks' in order of tier and weight; the degraded ones when none is up; all when none is usable", () => {
    assert.deepEqual(upstreamServers(config, views(config)), [
      "100.64.2.53",
      "100.64.1.53",
      "100.64.3.53",
    ]);
    assert.deepEqual(upstreamServers(config, views(config, { isp2: "down" })), [
      "100.64.1.53",
      "100.64.3.53",
    ]);
    assert.deepEqual(
      upstreamServers(config, views(config, { isp1: "down", isp2: "degraded", lte: "down" })),
      ["100.64.2.53"],
    );
    assert.deepEqual(
      upstreamServers(config, views(config, { isp1: "down", isp2: "down", lte: "down" })),
      ["100.64.2.53", "100.64.1.53", "100.64.3.53"],
    );
  });
});

describe("dnsmasq servers of both families", () => {
  it("an IPv6 server follows its uplink's IPv6 usability, an IPv4 server its IPv4 usability", () => {
    const dual = configSchema.parse({
      lan: ["lan0"],
      uplinks: [
        { name: "isp1", interface: "wan1", dns: ["100.64.1.53", "2001:db8:1::53"] },
        { name: "isp2", interface: "wan2", dns: ["100.64.2.53", "2001:db8:2::53"] },
      ],
      // IPv6 targets: without them an uplink's IPv6 follows its IPv4 health.
      health: { targets: ["198.51.100.1", "2001:db8:ffff::1"] },
    });
    const link = (n: number): UplinkLink => ({
      present: true,
      up: true,
      carrier: true,
      pointToPoint: false,
      address: `100.64.${n}.2`,
      gateway: `100.64.${n}.1`,
      ipv6: { address: `2001:db8:${n}::2`, gateway: "fe80::1" },
    });
    const links = new Map([
      ["isp1", link(1)],
      ["isp2", link(2)],
    ]);
    const v6down = buildViews(dual, links, (name, family) =>
      name === "isp1" && family === 6 ? "down" : "up",
    );
    assert.deepEqual(upstreamServers(dual, v6down), [
      "100.64.1.53",
      "100.64.2.53",
      "2001:db8:2::53",
    ]);
  });
});

/** Files and processes in memory. */
class FakeIo implements DnsmasqIo {
  readonly files = new Map<string, string>();
  readonly log: string[] = [];
  failRun = 0;
  read(path: string): Promise<string | undefined> {
    return Promise.resolve(this.files.get(path));
  }
  write(path: string, content: string): Promise<void> {
    this.log.push(`write ${path}`);
    this.files.set(path, content);
    return Promise.resolve();
  }
  run(argv: readonly string[]): Promise<void> {
    this.log.push(`run ${argv.join(" ")}`);
    if (this.failRun > 0) {
      this.failRun--;
      return Promise.reject(new Error(`${argv.join(" ")} failed: unit dnsmasq.service not found`));
    }
    return Promise.resolve();
  }
  hangup(pidFile: string): Promise<number> {
    this.log.push(`hup ${pidFile}`);
    return Promise.resolve(42);
  }
}

describe("the dnsmasq part", () => {
  const lab = configWith(config.rules, {
    dns: {
      dnsmasq: {
        nftset_file: "/s/nftset.conf",
        servers_file: "/s/servers.conf",
        reload: ["kill-and-start", "dnsmasq"],
        pid_file: "/s/dnsmasq.pid",
      },
    },
  });

  it("writes both files and restarts dnsmasq once at start; nothing again while nothing changes", async () => {
    const io = new FakeIo();
    const part = new DnsmasqPart({ log, kernel: new FakeKernel(), io });
    await part.start(lab, views(lab));
    assert.deepEqual(io.log, [
      "write /s/nftset.conf",
      "run kill-and-start dnsmasq",
      "write /s/servers.conf",
    ]);
    assert.match(
      io.files.get("/s/servers.conf") ?? "",
      /^server=100\.64\.2\.53\nserver=100\.64\.1\.53\nserver=100\.64\.3\.53\n$/m,
    );
    part.update(lab, views(lab));
    await part.idle();
    assert.equal(io.log.length, 3);
  });

  it("a transition rewrites only the servers file and sends SIGHUP", async () => {
    const io = new FakeIo();
    const part = new DnsmasqPart({ log, kernel: new FakeKernel(), io });
    await part.start(lab, views(lab));
    io.log.length = 0;
    part.update(lab, views(lab, { isp2: "down" }));
    await part.idle();
    assert.deepEqual(io.log, ["write /s/servers.conf", "hup /s/dnsmasq.pid"]);
    assert.doesNotMatch(io.files.get("/s/servers.conf") ?? "", /100\.64\.2\.53/);
  });

  it("leaves files that already hold the content alone (a restart of uplinkd restarts no dnsmasq)", async () => {
    const io = new FakeIo();
    await new DnsmasqPart({ log, kernel: new FakeKernel(), io }).start(lab, views(lab));
    io.log.length = 0;
    await new DnsmasqPart({ log, kernel: new FakeKernel(), io }).start(lab, views(lab));
    assert.deepEqual(io.log, []);
  });

  it("a failed reload command is tried again on the next update", async () => {
    const io = new FakeIo();
    io.failRun = 1;
    const part = new DnsmasqPart({ log, kernel: new FakeKernel(), io });
    await part.start(lab, views(lab));
    io.log.length = 0;
    part.update(lab, views(lab));
    await part.idle();
    assert.deepEqual(io.log, ["run kill-and-start dnsmasq"]);
  });

  it("a reload that drops the domain rule rewrites the fragment without its lines", async () => {
    const io = new FakeIo();
    const part = new DnsmasqPart({ log, kernel: new FakeKernel(), io });
    await part.start(lab, views(lab));
    const fewer = configWith([], { dns: lab.dns });
    part.update(fewer, views(fewer));
    await part.idle();
    assert.doesNotMatch(io.files.get("/s/nftset.conf") ?? "", /nftset=/);
    assert.equal(io.log.filter((l) => l.startsWith("run")).length, 2);
  });

  it("status sizes come from the kernel's sets", async () => {
    const kernel = new FakeKernel();
    const desired = renderDesired(lab, views(lab));
    await kernel.nftLoad(desired.nftScript);
    await kernel.nftLoad(
      "flush set inet uplinkd dom_0_4\nadd element inet uplinkd dom_0_4 { 198.51.100.7, 198.51.100.8 }\n",
    );
    const part = new DnsmasqPart({ log, kernel, io: new FakeIo(), now: () => 5000 });
    await part.refreshSizes(lab);
    assert.deepEqual(
      part.sizes.map((s) => [s.set, s.elements]),
      [
        ["dom_0_4", 2],
        ["dom_0_6", 0],
        ["dom_2_4", 0],
        ["dom_2_6", 0],
      ],
    );
  });
});

describe("the daemon feeds dnsmasq", () => {
  it("the servers file follows a transition, and dnsmasq gets SIGHUP; status shows the domain sets", async () => {
    const dir = await mkdtemp(join(tmpdir(), "uplinkd-dns-"));
    // Stands in for dnsmasq: SIGHUP ends it, which the test can see.
    const dnsmasq = spawn("sleep", ["60"], { stdio: "ignore" });
    const hungUp = new Promise<NodeJS.Signals | null>((resolve) => {
      dnsmasq.on("exit", (_code, signal) => {
        resolve(signal);
      });
    });
    const configPath = join(dir, "uplinkd.yaml");
    await writeFile(join(dir, "dnsmasq.pid"), `${String(dnsmasq.pid)}\n`);
    await writeFile(
      configPath,
      [
        "lan: [lan0]",
        "uplinks:",
        "  - { name: isp1, interface: wan1, gateway: 100.64.1.1, dns: [100.64.1.53] }",
        "  - { name: isp2, interface: wan2, gateway: 100.64.2.1, dns: [100.64.2.53] }",
        `control: { socket: ${join(dir, "uplinkd.sock")} }`,
        "rules: [{ dst_domain: video.example, policy: default }]",
        "dns:",
        "  dnsmasq:",
        `    nftset_file: ${join(dir, "nftset.conf")}`,
        `    servers_file: ${join(dir, "servers.conf")}`,
        `    pid_file: ${join(dir, "dnsmasq.pid")}`,
        '    reload: ["true"]',
        "",
      ].join("\n"),
    );
    const kernel = new FakeKernel();
    const wan = (n: number) => ({
      name: `wan${n}`,
      index: n + 10,
      up: true,
      carrier: true,
      pointToPoint: false,
      addresses: [{ address: `100.64.${n}.2`, prefixlen: 24 }],
    });
    kernel.links = [
      {
        name: "lan0",
        index: 2,
        up: true,
        carrier: true,
        pointToPoint: false,
        addresses: [{ address: "192.0.2.1", prefixlen: 24 }],
      },
      wan(1),
      wan(2),
    ];
    const monitors = new Map<string, UplinkHealthOptions>();
    const states = new Map<string, UplinkState>();
    const daemon = new Daemon({
      configPath,
      loadConfig,
      kernel,
      log,
      clock: new ManualClock(),
      createHealth: (options) => {
        monitors.set(options.uplink.name, options);
        return {
          start: () => undefined,
          stop: () => undefined,
          snapshot: () => ({
            state: states.get(options.uplink.name) ?? "up",
            since: 0,
            loss: 0,
            rtt: 1,
            jitter: 0,
            reason: "",
          }),
          setCarrier: () => undefined,
          setAddress: () => undefined,
        };
      },
      monitor: () => ({ start: () => undefined, stop: () => undefined }),
    });
    try {
      await daemon.start();
      await daemon.dnsIdle();
      const servers = () => readFile(join(dir, "servers.conf"), "utf8");
      assert.match(await servers(), /server=100\.64\.1\.53\nserver=100\.64\.2\.53\n$/);
      assert.match(
        await readFile(join(dir, "nftset.conf"), "utf8"),
        /^nftset=\/video\.example\/4#inet#uplinkd#dom_0_4,6#inet#uplinkd#dom_0_6$/m,
      );
      states.set("isp1", "down");
      monitors.get("isp1")?.onTransition({
        time: new Date(0).toISOString(),
        uplink: "isp1",
        family: 4,
        from: "up",
        to: "down",
        reason: "test",
        loss: null,
        rtt: null,
      });
      await daemon.idle();
      await daemon.dnsIdle();
      assert.doesNotMatch(await servers(), /100\.64\.1\.53/);
      assert.equal(await hungUp, "SIGHUP");
      await daemon.refreshTraffic();
      assert.deepEqual(
        daemon.status().domains.map((d) => [d.set, d.elements]),
        [
          ["dom_0_4", 0],
          ["dom_0_6", 0],
        ],
      );
    } finally {
      dnsmasq.kill();
      await daemon.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("status table", () => {
  it("lists each domain set with its rule, family, size and names below the uplinks", () => {
    const text = formatStatus({
      version: "0.1.0",
      pid: 1,
      config: "u.yaml",
      startedAt: new Date(0).toISOString(),
      uplinks: [],
      policies: {},
      lastApply: null,
      domains: [
        {
          set: "dom_0_4",
          family: 4,
          rule: 0,
          ruleName: "video",
          domains: ["video.example"],
          elements: 12,
        },
        {
          set: "dom_0_6",
          family: 6,
          rule: 0,
          ruleName: null,
          domains: ["a.example"],
          elements: null,
        },
      ],
    });
    assert.match(text, /^DOMAIN SET\s+RULE\s+FAMILY\s+ADDRESSES\s+NAMES$/m);
    assert.match(text, /^dom_0_4\s+video\s+IPv4\s+12\s+video\.example$/m);
    assert.match(text, /^dom_0_6\s+#0\s+IPv6\s+-\s+a\.example$/m);
  });
});

describe("the lab's DNS", () => {
  it("the lab config points each uplink at its ISP's resolver and dnsmasq at the router resolver's files", () => {
    const plan = planLab({ prefix: "x", uplinks: 2 });
    const paths = resolverPaths("/run/uplinkd-lab/x");
    const config = parseConfig(renderLabConfig(plan, "/s.sock", "/c.yaml", paths), "lab.yaml");
    assert.deepEqual(
      config.uplinks.map((u) => u.dns),
      [["203.0.113.51"], ["203.0.113.52"]],
    );
    assert.deepEqual(config.dns?.dnsmasq, {
      nftset_file: "/run/uplinkd-lab/x/resolver.d/uplinkd-nftset.conf",
      servers_file: "/run/uplinkd-lab/x/resolver-servers.conf",
      reload: ["/run/uplinkd-lab/x/resolver-restart.sh"],
      pid_file: "/run/uplinkd-lab/x/resolver.pid",
      set_timeout: 3_600_000,
    });
  });

  it("the router's resolver reads uplinkd's files and answers on the LAN address only", () => {
    const argv = resolverArgv("/d");
    for (const option of [
      "--conf-dir=/d/resolver.d,*.conf",
      "--servers-file=/d/resolver-servers.conf",
      "--no-resolv",
      "--listen-address=100.64.100.1",
      "--pid-file=/d/resolver.pid",
    ]) {
      assert.ok(argv.includes(option), option);
    }
    assert.match(resolverRestartScript("/d"), /^exec 'dnsmasq' .*'--pid-file=\/d\/resolver\.pid'/m);
  });
});

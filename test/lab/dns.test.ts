/**
 * Steering by domain name and DNS that follows health, on the real kernel:
 * the LAN client resolves through the router's dnsmasq, which uplinkd feeds
 * (nftset fragment, servers file); the echo host reports which uplink
 * carried each connection.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { parse, stringify } from "yaml";
import type { ReloadResult, StatusDocument } from "../../src/control/api.js";
import { controlRequest } from "../../src/control/client.js";
import type { Lab } from "../../src/lab/lab.js";
import { LAB_DNS_DOMAINS, ispResolver, resolverPaths } from "../../src/lab/resolver.js";
import { labWithConfig, startDaemon, testPrefix, uplinkdArgv, type LabDaemon } from "./harness.js";
import { setElements, startEchoHost, viaHttp } from "./helpers.js";

const VIDEO = LAB_DNS_DOMAINS["video.lab.test"] ?? { ipv4: "", ipv6: "" };

/** Resolve `name` from the LAN client through its resolv.conf (the router); ms taken and addresses. */
async function resolve(lab: Lab, name: string): Promise<{ ms: number; addresses: string[] }> {
  const started = performance.now();
  const result = await lab.exec("lan", ["getent", "ahostsv4", name], { timeoutMs: 10_000 });
  const ms = performance.now() - started;
  assert.equal(result.code, 0, `getent ahostsv4 ${name} failed (${result.code})`);
  return {
    ms,
    addresses: [...new Set(result.stdout.split("\n").map((l) => l.split(/\s+/)[0] ?? ""))].filter(
      Boolean,
    ),
  };
}

/** Ask the router's resolver for `name`'s AAAA records (fills the rule's IPv6 set). */
async function resolve6(lab: Lab, name: string): Promise<string> {
  const script = `const r = new (require("dns").promises.Resolver)({ timeout: 2000, tries: 1 });
r.setServers(["100.64.100.1"]);
r.resolve6(${JSON.stringify(name)}).then((a) => console.log(a.join(",")), (e) => { console.error(e.code); process.exit(2); });`;
  const result = await lab.exec("lan", [process.execPath, "-e", script], { timeoutMs: 10_000 });
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.trim();
}

async function status(lab: Lab): Promise<StatusDocument> {
  return (await controlRequest(lab.controlSocket, "GET", "/status")) as StatusDocument;
}

async function reload(
  lab: Lab,
  edit: (config: Record<string, unknown>) => void,
): Promise<ReloadResult> {
  const config = parse(await readFile(lab.configPath, "utf8")) as Record<string, unknown>;
  edit(config);
  await writeFile(lab.configPath, stringify(config));
  return (await controlRequest(
    lab.controlSocket,
    "POST",
    "/reload",
    undefined,
    15_000,
  )) as ReloadResult;
}

describe("steering by domain name with the LAN's dnsmasq", () => {
  let lab: Lab;
  let daemon: LabDaemon;
  let videoEcho: ChildProcess;

  before(async () => {
    lab = await labWithConfig(
      { prefix: testPrefix("dns"), uplinks: 3, iperf3Servers: 0 },
      (config) => {
        Object.assign(config, {
          policies: { only2: { members: [{ uplink: "isp2" }] } },
          rules: [{ name: "video", dst_domain: ["video.lab.test"], policy: "only2" }],
        });
      },
    );
    videoEcho = await startEchoHost(lab, "net", VIDEO.ipv4);
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
  });

  after(async () => {
    videoEcho.kill();
    await daemon.stop();
    await lab.down();
  });

  it("a name of a domain rule (and a name below it) leaves by the rule's policy", async () => {
    const plan = await lab.exec("rtr", uplinkdArgv("plan", "-c", lab.configPath), {
      timeoutMs: 30_000,
    });
    assert.match(plan.stdout, /^dnsmasq: .*uplinkd-nftset\.conf holds:\n {2}# Written by uplinkd/m);
    assert.match(plan.stdout, /^ {2}nftset=\/video\.lab\.test\/4#inet#uplinkd#dom_0_4,/m);
    const fragment = await readFile(resolverPaths(lab.stateDir).nftsetFile, "utf8");
    assert.match(
      fragment,
      /^nftset=\/video\.lab\.test\/4#inet#uplinkd#dom_0_4,6#inet#uplinkd#dom_0_6$/m,
    );
    const seen: string[] = [];
    for (let i = 0; i < 8; i++)
      seen.push(await viaHttp(lab, i % 2 === 0 ? "video.lab.test" : `cdn${i}.video.lab.test`));
    assert.deepEqual(
      [...new Set(seen)],
      ["100.64.2.2"],
      `every connection via isp2: ${seen.join(" ")}`,
    );
    assert.match(
      (await setElements(lab, "dom_0_4")) ?? "",
      new RegExp(VIDEO.ipv4.replaceAll(".", "\\.")),
    );
    assert.equal(await resolve6(lab, "video.lab.test"), VIDEO.ipv6);
    assert.match((await setElements(lab, "dom_0_6")) ?? "", /2001:db8::11/);
    // Status samples the sets at most once a second.
    let sets: unknown[] = [];
    for (let i = 0; i < 30; i++) {
      sets = (await status(lab)).domains.map((d) => [d.set, d.elements]);
      if (JSON.stringify(sets) === '[["dom_0_4",1],["dom_0_6",1]]') break;
      await sleep(100);
    }
    assert.deepEqual(sets, [
      ["dom_0_4", 1],
      ["dom_0_6", 1],
    ]);
  });

  it("other names are balanced as before", async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 15 && seen.size < 2; i++)
      seen.add(await viaHttp(lab, `site${i}.web.lab.test`));
    assert.ok(seen.size >= 2, `other names spread over uplinks: ${[...seen].join(" ")}`);
  });

  it("a reload that changes the table's structure keeps what dnsmasq put in the domain set", async () => {
    const result = await reload(lab, (config) => {
      (config.rules as unknown[]).push({ dst: "198.51.100.200/32", policy: "only2" });
    });
    assert.deepEqual(result.changes.length > 0, true);
    assert.match(
      (await setElements(lab, "dom_0_4")) ?? "",
      new RegExp(VIDEO.ipv4.replaceAll(".", "\\.")),
    );
    assert.equal(await viaHttp(lab, "video.lab.test"), "100.64.2.2");
  });

  it("after isp1 goes down, dnsmasq stops asking isp1's resolver and names resolve at once", async () => {
    const servers = resolverPaths(lab.stateDir).serversFile;
    assert.match(await readFile(servers, "utf8"), new RegExp(`^server=${ispResolver(1)}$`, "m"));
    const logPath = resolverPaths(lab.stateDir).log;
    const logBefore = (await readFile(logPath, "utf8")).length;
    const faulted = performance.now();
    await lab.fault("isp1", "blackhole");
    try {
      await daemon.waitForState("isp1", "down", 10_000);
      const down = performance.now() - faulted;
      let text = "";
      for (let i = 0; i < 100; i++) {
        text = await readFile(servers, "utf8");
        if (!text.includes(ispResolver(1))) break;
        await sleep(20);
      }
      const rewritten = performance.now() - faulted;
      assert.doesNotMatch(text, new RegExp(ispResolver(1).replaceAll(".", "\\.")));
      assert.ok(
        rewritten - down < 1000,
        `servers file rewritten ${Math.round(rewritten - down)} ms after down`,
      );
      // dnsmasq rereads the file on the SIGHUP that follows the rewrite and
      // logs each server it now uses ("using nameserver A#53"): wait for that.
      let reread = "";
      for (let i = 0; i < 100 && !/using nameserver/.test(reread); i++) {
        reread = (await readFile(logPath, "utf8")).slice(logBefore);
        if (!/using nameserver/.test(reread)) await sleep(20);
      }
      assert.match(reread, /using nameserver/, "dnsmasq did not reread its servers file");
      const log = logPath;
      const before = (await readFile(log, "utf8")).length;
      const times: number[] = [];
      for (let i = 0; i < 6; i++) {
        const answer = await resolve(lab, `fresh${i}.web.lab.test`);
        assert.deepEqual(answer.addresses, ["192.0.2.10"]);
        times.push(Math.round(answer.ms));
      }
      assert.ok(
        Math.max(...times) < 900,
        `resolution times ${times.join(", ")} ms (a timeout is 1000 ms)`,
      );
      const forwarded = (await readFile(log, "utf8")).slice(before);
      assert.doesNotMatch(forwarded, new RegExp(`to ${ispResolver(1).replaceAll(".", "\\.")}`));
      assert.match(forwarded, /forwarded fresh0\.web\.lab\.test to 203\.0\.113\.5[23]/);
      console.log(
        `isp1 down after ${Math.round(down)} ms; servers file rewritten after ${Math.round(rewritten)} ms; resolutions ${times.join(", ")} ms`,
      );
    } finally {
      await lab.heal("isp1");
    }
    await daemon.waitForState("isp1", "up", 15_000);
    for (let i = 0; i < 100 && !(await readFile(servers, "utf8")).includes(ispResolver(1)); i++) {
      await sleep(20);
    }
    assert.match(await readFile(servers, "utf8"), new RegExp(`^server=${ispResolver(1)}$`, "m"));
  });

  it("a reload that removes the rule removes its sets and its nftset lines", async () => {
    const pidFile = resolverPaths(lab.stateDir).pidFile;
    const pidBefore = await readFile(pidFile, "utf8");
    await reload(lab, (config) => {
      config.rules = [];
    });
    assert.equal(await setElements(lab, "dom_0_4"), null);
    assert.equal(await setElements(lab, "dom_0_6"), null);
    const fragment = await readFile(resolverPaths(lab.stateDir).nftsetFile, "utf8");
    assert.doesNotMatch(fragment, /nftset=/);
    assert.notEqual(await readFile(pidFile, "utf8"), pidBefore, "dnsmasq was restarted");
    const resolver = (await lab.status()).processes.find((p) => p.name === "resolver");
    assert.equal(resolver?.alive, true, "lab status follows the restarted resolver");
    assert.deepEqual((await status(lab)).domains, []);
    const seen = new Set<string>();
    for (let i = 0; i < 15 && seen.size < 2; i++)
      seen.add(await viaHttp(lab, `v${i}.video.lab.test`));
    assert.ok(seen.size >= 2, `video names are balanced again: ${[...seen].join(" ")}`);
  });
});

/**
 * The controller on the real kernel when things go wrong: a reload the
 * kernel refuses, a reload that moves every kernel object uplinkd owns, and
 * `conntrack` and `nft` commands that hang.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import type { StatusDocument } from "../../src/control/api.js";
import { runCommand } from "../../src/process/run.js";
import type { Lab } from "../../src/lab/lab.js";
import { HANG_TAGS, hangingTools } from "../../src/lab/daemon.js";
import {
  lanTraffic,
  labWithConfig,
  sharesByUplink,
  startDaemon,
  testPrefix,
  uplinkdArgv,
  type LabDaemon,
} from "./harness.js";

function uplink(status: StatusDocument, name: string) {
  const u = status.uplinks.find((x) => x.name === name);
  assert.ok(u !== undefined, `no uplink ${name} in status`);
  return u;
}

async function ip(lab: Lab, ...args: string[]): Promise<string> {
  const r = await lab.exec("rtr", ["ip", ...args]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

async function nftTables(lab: Lab): Promise<string> {
  const r = await lab.exec("rtr", ["nft", "list", "tables"]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

describe("reload is a transaction", () => {
  let lab: Lab;
  let daemon: LabDaemon;
  let good: string;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("rb"), uplinks: 2 });
    good = await readFile(lab.configPath, "utf8");
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
  });

  it("a reload the kernel refuses changes nothing: the CLI says what was refused, status and kernel keep the old config", async () => {
    const mapBefore = await lab.exec("rtr", [
      "nft",
      "list",
      "map",
      "inet",
      "uplinkd",
      "balance_default",
    ]);
    const routesBefore = await ip(lab, "-N", "route", "show", "table", "all", "proto", "73");
    // isp1's weight 1 -> 5 (a map change the kernel would take) and a global IPv6 gateway
    // off isp2's IPv6 prefix (its route refused by the kernel). An off-link IPv4 gateway is
    // no longer a kernel refusal: it fails that uplink alone (test/lab/bad-uplink.test.ts).
    const bad = good
      .replace(/(name: isp1\n(?: {4}.*\n)*?) {4}weight: 1/, "$1    weight: 5")
      .replace(/(name: isp2\n(?: {4}.*\n)*?) {4}gateway6: auto/, "$1    gateway6: 2001:db8:99::9");
    assert.notEqual(bad, good);
    assert.match(bad, /weight: 5/);
    assert.match(bad, /gateway6: 2001:db8:99::9/);
    await writeFile(lab.configPath, bad);
    try {
      const refused = await lab.exec("rtr", uplinkdArgv("reload", "-c", lab.configPath), {
        timeoutMs: 30_000,
      });
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(refused.stderr, /^uplinkd: the kernel refused the new config: /m);
      assert.match(refused.stderr, /reload refused; the daemon keeps its running config/);
      assert.match(refused.stderr, /route replace default via 2001:db8:99::9 dev \S+ table 102/);
      assert.match(refused.stderr, /invalid gateway|Network is unreachable|No route to host/i);
      const status = await daemon.status();
      assert.ok(status !== undefined);
      assert.equal(uplink(status, "isp1").weight, 1, "status keeps the old weight");
      assert.notEqual(
        uplink(status, "isp2").ipv6?.gateway,
        "2001:db8:99::9",
        "status keeps the old IPv6 gateway",
      );
      const mapAfter = await lab.exec("rtr", [
        "nft",
        "list",
        "map",
        "inet",
        "uplinkd",
        "balance_default",
      ]);
      assert.equal(mapAfter.stdout, mapBefore.stdout, "the old balance map is back");
      assert.equal(
        await ip(lab, "-N", "route", "show", "table", "all", "proto", "73"),
        routesBefore,
        "the old routes stay",
      );
    } finally {
      await writeFile(lab.configPath, good);
    }
    const plan = await lab.exec("rtr", uplinkdArgv("plan", "-c", lab.configPath));
    assert.match(plan.stdout, /^no changes: the kernel holds the desired state$/m);
  });

  it("a reload that changes table name, route protocol, table base, rule priority and marks leaves no old object", async () => {
    const moved =
      good.replace(/^dataplane:.*$/m, "") +
      "dataplane:\n  table: multiwan\n  route_protocol: 74\n  table_base: 200\n  rule_priority: 3000\n  mark_mask: 0xf0000\n";
    await writeFile(lab.configPath, moved);
    try {
      const applied = await lab.exec("rtr", uplinkdArgv("reload", "-c", lab.configPath), {
        timeoutMs: 30_000,
      });
      assert.equal(applied.code, 0, `${applied.stdout}\n${applied.stderr}\n${daemon.log()}`);
      const tables = await nftTables(lab);
      assert.match(tables, /table inet multiwan/);
      assert.doesNotMatch(tables, /table inet uplinkd/);
      const rules = await ip(lab, "-N", "rule", "show");
      assert.doesNotMatch(rules, /proto 73|lookup 10[12]\b|^1\d\d\d:/m, rules);
      assert.match(rules, /^3001:\s+from all fwmark 0x10000\/0xf0000 lookup 201 proto 74/m);
      assert.equal(await ip(lab, "-N", "route", "show", "table", "all", "proto", "73"), "");
      assert.match(await ip(lab, "route", "show", "table", "202"), /default via 100\.64\.2\.1/);
      const report = await lanTraffic(lab, 200);
      assert.equal(report.failed, 0, JSON.stringify(report.errors));
      const shares = sharesByUplink(report, lab);
      assert.ok(
        (shares.get(1) ?? 0) > 0.25 && (shares.get(2) ?? 0) > 0.25,
        JSON.stringify([...shares]),
      );
    } finally {
      await writeFile(lab.configPath, good);
    }
    const back = await lab.exec("rtr", uplinkdArgv("reload", "-c", lab.configPath), {
      timeoutMs: 30_000,
    });
    assert.equal(back.code, 0, back.stderr);
    assert.doesNotMatch(await nftTables(lab), /multiwan/);
    assert.equal(await ip(lab, "-N", "route", "show", "table", "all", "proto", "74"), "");
  });
});

describe("hung commands do not stall failover", () => {
  let lab: Lab;
  let daemon: LabDaemon;
  let tools: Awaited<ReturnType<typeof hangingTools>>;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("hg"), uplinks: 3 });
    tools = await hangingTools();
    daemon = startDaemon(lab, lab.configPath, {
      env: { ...process.env, PATH: `${tools.dir}:${process.env.PATH ?? ""}` },
    });
    await daemon.waitForStates(["up"]);
  });

  after(async () => {
    await daemon.stop();
    await lab.down();
    await tools.remove();
  });

  async function hanging(tag: string): Promise<number> {
    const r = await runCommand("pgrep", ["-f", `sleep 3599 ${tag}`], { allowExitCodes: [1] });
    return r.stdout.split("\n").filter((l) => l.trim() !== "").length;
  }

  async function failover(name: string, fault: "blackhole" | "heal"): Promise<number> {
    const t0 = Date.now();
    if (fault === "heal") await lab.heal(name);
    else await lab.fault(name, fault);
    const want = fault === "heal" ? "up" : "down";
    await daemon.waitFor(
      (s) => uplink(s, name).state === want && uplink(s, name).active === (want === "up"),
      8000,
      `${name} ${want}`,
      20,
    );
    return Date.now() - t0;
  }

  it("with conntrack -D and nft list hanging, a failover, a recovery and a second failover come in the usual time", async (t) => {
    await writeFile(tools.marker, "");
    // The periodic listings go through a long-lived `nft -j -i` reader started before the
    // marker: end it, so that the daemon's next reader is a hanging stand-in.
    const pid = daemon.child.pid;
    assert.ok(pid !== undefined);
    await runCommand("pkill", ["-P", String(pid), "-x", "nft"], { allowExitCodes: [1] });
    const first = await failover("isp1", "blackhole");
    const recovery = await failover("isp1", "heal");
    const second = await failover("isp2", "blackhole");
    t.diagnostic(
      `isp1 down after ${first} ms, up after ${recovery} ms, isp2 down after ${second} ms`,
    );
    // The hangs happened: the clean-up of isp1 and the verify after the last transition.
    assert.ok(
      (await hanging(HANG_TAGS.conntrack)) >= 1,
      `no conntrack deletion hangs:\n${daemon.log()}`,
    );
    assert.ok((await hanging(HANG_TAGS.nft)) >= 1, `no nft list hangs:\n${daemon.log()}`);
    const report = await lanTraffic(lab, 150);
    assert.equal(report.failed, 0, JSON.stringify(report.errors));
    const shares = sharesByUplink(report, lab);
    assert.equal(shares.get(2) ?? 0, 0, "isp2 is down: no new connection uses it");
    await lab.heal("isp2");
  });
});

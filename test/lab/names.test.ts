/**
 * A router whose admin named its routing tables and protocols in
 * /etc/iproute2 (as the multi-ISP articles teach): uplinkd must read the
 * kernel by number, start, plan nothing, balance, and on SIGTERM remove only
 * its own routes and rules.
 *
 * `ip netns exec NS` bind-mounts each entry of /etc/netns/NS/ over /etc
 * (ip-netns(8)), so /etc/netns/<router>/iproute2/ is the router's
 * /etc/iproute2 for the daemon and every `ip` it runs. The directory is
 * removed after the test, also when it fails.
 */
import assert from "node:assert/strict";
import { cp, mkdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Lab } from "../../src/lab/lab.js";
import {
  lanTraffic,
  labWithConfig,
  sharesByUplink,
  startDaemon,
  testPrefix,
  uplinkdArgv,
  type LabDaemon,
} from "./harness.js";

const NETNS_ETC = "/etc/netns";

/** uplinkd's route protocol in the lab config (the default). */
const PROTOCOL = 73;

/** The foreign table: named, holding a route and a rule uplinkd must leave alone. */
const GUESTS = { table: 7, name: "guests", dst: "192.0.2.128/25", from: "203.0.113.128/25" };

interface NumericRoute {
  table?: string;
  dst: string;
  protocol?: string;
}

interface NumericRule {
  priority: number;
  table?: string;
  protocol?: string;
}

async function routes(lab: Lab): Promise<NumericRoute[]> {
  const r = await lab.exec("rtr", ["ip", "-N", "-4", "-j", "route", "show", "table", "all"]);
  return JSON.parse(r.stdout) as NumericRoute[];
}

async function rules(lab: Lab): Promise<NumericRule[]> {
  const r = await lab.exec("rtr", ["ip", "-N", "-4", "-j", "rule", "show"]);
  return JSON.parse(r.stdout) as NumericRule[];
}

const ours = (x: { protocol?: string }): boolean => x.protocol === String(PROTOCOL);

describe("routing tables and protocols named in /etc/iproute2", () => {
  let lab: Lab;
  let daemon: LabDaemon | undefined;
  let etcDir = "";
  let createdNetnsEtc = false;

  before(async () => {
    lab = await labWithConfig({ prefix: testPrefix("name"), uplinks: 2 });
    const rtr = lab.namespace("rtr");
    etcDir = join(NETNS_ETC, rtr);
    createdNetnsEtc = (await mkdir(NETNS_ETC, { recursive: true })) !== undefined;
    // A copy of the host's /etc/iproute2 with the admin's names added.
    await cp("/etc/iproute2", join(etcDir, "iproute2"), { recursive: true });
    const tables = join(etcDir, "iproute2", "rt_tables");
    await writeFile(
      tables,
      (await readFile(tables, "utf8")) +
        `101\tdsl_internet\n102\tcable_internet\n${GUESTS.table}\t${GUESTS.name}\n`,
    );
    const protos = join(etcDir, "iproute2", "rt_protos");
    await writeFile(protos, (await readFile(protos, "utf8")) + `${PROTOCOL}\tuplinkd\n`);
    const isp1 = lab.uplinks[0];
    assert.ok(isp1 !== undefined);
    const added = await lab.exec("rtr", ["ip", "-batch", "-"], {
      input:
        `route add ${GUESTS.dst} via ${isp1.gateway} dev ${isp1.routerInterface} table ${GUESTS.name} proto static\n` +
        `rule add from ${GUESTS.from} lookup ${GUESTS.name} pref 900\n`,
    });
    assert.equal(added.code, 0, added.stderr);
  });

  after(async () => {
    try {
      await daemon?.stop("SIGKILL");
      await lab.down();
    } finally {
      if (etcDir !== "") await rm(etcDir, { recursive: true, force: true });
      if (createdNetnsEtc) await rmdir(NETNS_ETC).catch(() => undefined);
    }
  });

  it("the router's iproute2 prints the names (the set-up works)", async () => {
    const shown = await lab.exec("rtr", ["ip", "-4", "-j", "route", "show", "table", "all"]);
    assert.match(shown.stdout, /"table":"guests"/);
    const rulesShown = await lab.exec("rtr", ["ip", "-4", "rule", "show"]);
    assert.match(rulesShown.stdout, /lookup guests/);
  });

  it("starts, owns tables 101 and 102 (named in rt_tables), and plans no change", async () => {
    daemon = startDaemon(lab);
    await daemon.waitForStates(["up"]);
    const named = await lab.exec("rtr", ["ip", "-4", "route", "show", "table", "all"]);
    assert.match(named.stdout, /table dsl_internet proto uplinkd/, "the kernel shows the names");
    assert.match(named.stdout, /table cable_internet proto uplinkd/);
    // Tables 101 and 102 (table_base 100 + uplink ids 1 and 2), and main's default route.
    const tables = new Set((await routes(lab)).filter(ours).map((r) => r.table ?? "254"));
    assert.deepEqual([...tables].sort(), ["101", "102", "254"]);
    const plan = await lab.exec("rtr", uplinkdArgv("plan", "-c", lab.configPath));
    assert.equal(plan.code, 0, plan.stderr);
    const lines = plan.stdout.trim().split("\n");
    assert.match(lines[0] ?? "", /^health and load: from the daemon at /);
    assert.deepEqual(lines.slice(1), ["no changes: the kernel holds the desired state"]);
    assert.equal(daemon.child.exitCode, null, daemon.log());
    assert.doesNotMatch(daemon.log(400), /differs|NaN/, daemon.log());
  });

  it("balances LAN connections over both uplinks", async () => {
    const report = await lanTraffic(lab, 300);
    assert.equal(report.failed, 0, JSON.stringify(report.errors));
    const shares = sharesByUplink(report, lab);
    for (const u of [1, 2]) {
      assert.ok((shares.get(u) ?? 0) > 0.3, JSON.stringify(report.bySource));
    }
  });

  it("on SIGTERM removes its own routes and rules and leaves the guests table alone", async () => {
    assert.ok(daemon !== undefined);
    assert.equal(await daemon.stop("SIGTERM"), 0, daemon.log());
    daemon = undefined;
    assert.deepEqual((await routes(lab)).filter(ours), []);
    assert.deepEqual((await rules(lab)).filter(ours), []);
    const guestRoutes = (await routes(lab)).filter((r) => r.table === String(GUESTS.table));
    assert.deepEqual(
      guestRoutes.map((r) => r.dst),
      [GUESTS.dst],
    );
    const guestRules = (await rules(lab)).filter((r) => r.table === String(GUESTS.table));
    assert.deepEqual(
      guestRules.map((r) => r.priority),
      [900],
    );
  });
});

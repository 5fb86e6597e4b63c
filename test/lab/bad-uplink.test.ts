/**
 * A bad uplink is a failed uplink, not a failed router, on the real kernel:
 * the lab with two uplinks and a config whose isp2 the kernel cannot serve
 * (gateway not on-link, interface missing, address absent). The daemon
 * starts, marks isp2 failed with a reason naming the key and the subnet
 * (status, events, log) and serves isp1; `check` and `plan` name the line.
 * A reload into such a config does the same, and a fixed config brings
 * isp2 back. A start that does fail leaves nothing in the kernel.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import type { StatusDocument } from "../../src/control/api.js";
import { controlRequest } from "../../src/control/client.js";
import { runCommand } from "../../src/process/run.js";
import { labUp, type Lab } from "../../src/lab/lab.js";
import type { Transition } from "../../src/uplink-health.js";
import {
  lanTraffic,
  sharesByUplink,
  startDaemon,
  testPrefix,
  uplinkdArgv,
  type LabDaemon,
} from "./harness.js";

type Edit = (config: { lan: string[]; uplinks: Record<string, unknown>[] }) => void;

describe("a bad uplink is a failed uplink, not a failed router", () => {
  let lab: Lab | undefined;
  let dir = "";
  let good = "";
  let daemon: LabDaemon | undefined;

  before(async () => {
    lab = await labUp({ prefix: testPrefix("bu"), uplinks: 2 });
    dir = await mkdtemp(join(tmpdir(), "uplinkd-bad-"));
    good = await readFile(lab.configPath, "utf8");
  });

  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    if (lab !== undefined) await writeFile(lab.configPath, good);
  });

  after(async () => {
    await lab?.down();
    await rm(dir, { recursive: true, force: true });
  });

  function theLab(): Lab {
    assert.ok(lab !== undefined);
    return lab;
  }

  /** The lab's config with `edit` applied, in a file of its own; returns its path. */
  async function configWith(name: string, edit: Edit): Promise<string> {
    const config = parse(good) as Parameters<Edit>[0];
    edit(config);
    const file = join(dir, `${name}.yaml`);
    await writeFile(file, stringify(config));
    return file;
  }

  /** `uplinkd ARGS` in the router namespace: status, stdout, stderr. */
  function cli(...args: string[]) {
    const [node = "", ...rest] = uplinkdArgv(...args);
    const r = spawnSync("ip", ["netns", "exec", theLab().namespace("rtr"), node, ...rest], {
      encoding: "utf8",
      timeout: 30_000,
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** Wait until isp2 is down for `reason` and isp1 up and active; then LAN traffic uses isp1 only. */
  async function isp2FailedIsp1Served(running: LabDaemon, reason: RegExp): Promise<void> {
    const status = await running.waitFor(
      (s) => {
        const [isp1, isp2] = s.uplinks;
        return (
          isp1?.state === "up" &&
          isp1.active &&
          isp2?.state === "down" &&
          !isp2.active &&
          reason.test(isp2.reason)
        );
      },
      30_000,
      `isp2 down (${String(reason)}), isp1 up`,
    );
    assert.match(status.uplinks[1]?.reason ?? "", reason);
    const report = await lanTraffic(theLab(), 20);
    assert.equal(report.failed, 0, `failed connections: ${JSON.stringify(report.errors)}`);
    assert.equal(report.ok, 20);
    assert.deepEqual([...sharesByUplink(report, theLab()).keys()], [1]);
    const events = (
      (await controlRequest(theLab().controlSocket, "GET", "/events?limit=1000")) as {
        events: Transition[];
      }
    ).events;
    assert.ok(
      events.some((e) => e.uplink === "isp2" && e.to === "down" && reason.test(e.reason)),
      JSON.stringify(events),
    );
    assert.match(running.log(), /uplink isp2 failed: uplinks\.1\./);
  }

  const offLink: Edit = (config) => {
    const isp2 = config.uplinks[1];
    assert.ok(isp2 !== undefined);
    isp2.gateway = "100.64.99.1";
  };
  const OFF_LINK =
    /^uplinks\.1\.gateway: gateway 100\.64\.99\.1 is not on-link for wan2 \(its subnets: 100\.64\.2\.0\/24\)/;

  it("a gateway not on-link: isp2 failed with the key and subnet, isp1 served; check and plan name the line", async () => {
    const file = await configWith("offlink", offLink);
    daemon = startDaemon(theLab(), file);
    await isp2FailedIsp1Served(daemon, OFF_LINK);
    assert.doesNotMatch(daemon.log(), /Nexthop has invalid gateway/);

    const lines = (await readFile(file, "utf8")).split("\n");
    const line = lines.findIndex((l) => l.includes("100.64.99.1")) + 1;
    const checked = cli("check", "-c", file);
    assert.equal(checked.status, 2, checked.stderr);
    assert.match(
      checked.stderr,
      new RegExp(
        `^${file}:${line}:\\d+: uplinks\\.1\\.gateway: gateway 100\\.64\\.99\\.1 is not on-link.*use`,
        "m",
      ),
    );
    const planned = cli("plan", "-c", file);
    assert.equal(planned.status, 2, planned.stderr);
    assert.match(planned.stderr, new RegExp(`^${file}:${line}:\\d+: uplinks\\.1\\.gateway:`, "m"));
    assert.doesNotMatch(planned.stdout, /100\.64\.99\.1/, "the plan holds no route via it");
  });

  it("a missing interface: isp2 failed, isp1 served; check names the uplink's and the LAN's line", async () => {
    const file = await configWith("missing", (config) => {
      const isp2 = config.uplinks[1];
      assert.ok(isp2 !== undefined);
      isp2.interface = "wan9";
      config.lan.push("lan9");
    });
    daemon = startDaemon(theLab(), file);
    await isp2FailedIsp1Served(daemon, /^uplinks\.1\.interface: no interface wan9 on this router/);
    const checked = cli("check", "-c", file);
    assert.equal(checked.status, 2, checked.stderr);
    const problems = checked.stderr.trimEnd().split("\n");
    assert.equal(problems.length, 2, checked.stderr);
    assert.match(problems[0] ?? "", /:\d+:\d+: lan\.1: no interface lan9 on this router/);
    assert.match(
      problems[1] ?? "",
      /:\d+:\d+: uplinks\.1\.interface: no interface wan9 .*fix the name/,
    );
  });

  it("an address the interface does not hold: isp2 failed, isp1 served", async () => {
    const file = await configWith("address", (config) => {
      const isp2 = config.uplinks[1];
      assert.ok(isp2 !== undefined);
      isp2.address = "100.64.2.77";
    });
    daemon = startDaemon(theLab(), file);
    await isp2FailedIsp1Served(
      daemon,
      /^uplinks\.1\.address: address 100\.64\.2\.77 is not on wan2 \(it has 100\.64\.2\.2\/24\)/,
    );
    const checked = cli("check", "-c", file);
    assert.equal(checked.status, 2, checked.stderr);
    assert.match(checked.stderr, /:\d+:\d+: uplinks\.1\.address: /);
  });

  it("a reload into a gateway not on-link fails isp2 only; a reload of the fix brings it back", async () => {
    const l = theLab();
    daemon = startDaemon(l);
    await daemon.waitFor((s) => s.uplinks.every((u) => u.state === "up" && u.active), 30_000);
    const config = parse(good) as Parameters<Edit>[0];
    offLink(config);
    await writeFile(l.configPath, stringify(config));
    await controlRequest(l.controlSocket, "POST", "/reload", undefined, 15_000);
    await isp2FailedIsp1Served(daemon, OFF_LINK);

    await writeFile(l.configPath, good);
    await controlRequest(l.controlSocket, "POST", "/reload", undefined, 15_000);
    const back: StatusDocument = await daemon.waitFor(
      (s) => s.uplinks.every((u) => u.state === "up" && u.active),
      30_000,
      "both uplinks up after the fix",
    );
    assert.equal(back.uplinks[1]?.reason.includes("not on-link"), false);
    const report = await lanTraffic(l, 40);
    assert.equal(report.failed, 0);
    assert.deepEqual([...sharesByUplink(report, l).keys()].sort(), [1, 2]);
  });

  it("a start the kernel refuses exits 1 and leaves no nft table, rules or routes", async () => {
    const l = theLab();
    // A global gateway6 off the uplink's IPv6 prefixes: the kernel refuses its route at the start.
    const file = await configWith("refused", (config) => {
      const isp1 = config.uplinks[0];
      assert.ok(isp1 !== undefined);
      isp1.gateway6 = "2001:db8:77::1";
    });
    const refused = startDaemon(l, file);
    const code = await new Promise<number | null>((resolve) => {
      if (refused.child.exitCode !== null) resolve(refused.child.exitCode);
      refused.child.on("exit", (status) => {
        resolve(status);
      });
      // Bounded: a start that neither serves nor ends is stopped.
      setTimeout(() => {
        refused.child.kill("SIGKILL");
      }, 60_000).unref();
    });
    const log = refused.log();
    assert.equal(code, 1, log);
    assert.doesNotMatch(log, /kernel state kept/);
    const rtr = l.namespace("rtr");
    const tables = await runCommand("ip", ["netns", "exec", rtr, "nft", "list", "tables"]);
    assert.doesNotMatch(tables.stdout, /\buplinkd\b/, "nft table left");
    for (const family of ["-4", "-6"]) {
      const rules = await runCommand("ip", [family, "-n", rtr, "rule", "show"]);
      assert.doesNotMatch(rules.stdout, /proto 73/, `rules left:\n${rules.stdout}`);
      for (const table of ["101", "102"]) {
        const routes = await runCommand("ip", [family, "-n", rtr, "route", "show", "table", table]);
        assert.equal(routes.stdout.trim(), "", `routes left in table ${table}`);
      }
    }
  });
});

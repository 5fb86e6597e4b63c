/**
 * The .deb under real systemd: build the package, boot a Debian machine
 * (systemd-nspawn with a private network), install the package with apt,
 * build a small lab inside the machine (two ISP namespaces that answer the
 * health target 198.51.100.1, a LAN namespace; the machine itself is the
 * router), then drive uplinkd with systemctl and check the kernel state.
 *
 * Debian 12 (bookworm) and 13 (trixie) by default; UPLINKD_SYSTEM_SUITES=
 * bookworm picks one. UPLINKD_DEB=PATH tests a package built before
 * instead of building one (scripts/package.sh --compression gzip, ~25 s).
 * About 1.5 minutes on 2 CPUs, plus ~35 s per suite the first time (mmdebstrap;
 * the root is cached under .cache/debian).
 */
import assert from "node:assert/strict";
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { runCommand } from "../../src/process/run.js";
import { CACHE, REPO, bootMachine, systemTestsUnavailable, type Machine } from "./machine.js";

const SUITES: Readonly<Record<string, string>> = { bookworm: "Debian 12", trixie: "Debian 13" };
const suites = (process.env.UPLINKD_SYSTEM_SUITES ?? "bookworm,trixie")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "");
const unavailable = await systemTestsUnavailable();

/** The two packages under test. */
interface Packages {
  /** uplinkd: the daemon and its CLI. */
  product: string;
  /** uplinkd-lab: the lab and demo. */
  lab: string;
}

let debPaths: Promise<Packages> | undefined;
/**
 * The packages under test: UPLINKD_DEB (and the uplinkd-lab package beside
 * it), or both built once for every suite.
 */
function packagesUnderTest(): Promise<Packages> {
  debPaths ??= (async () => {
    const given = process.env.UPLINKD_DEB;
    if (given !== undefined) {
      return { product: given, lab: given.replace(/uplinkd_([^/]*)$/, "uplinkd-lab_$1") };
    }
    const out = join(CACHE, "test-deb");
    const { stdout } = await runCommand("bash", [
      join(REPO, "scripts/package.sh"),
      "--no-lintian",
      "--compression",
      "gzip",
      "--out",
      out,
    ]);
    const built = (name: string): string => {
      const path = new RegExp(`^(\\S*${name}_\\S+\\.deb) `, "m").exec(stdout)?.[1];
      assert.ok(path, `scripts/package.sh printed no ${name} package:\n${stdout}`);
      return path.startsWith("/") ? path : join(REPO, path);
    };
    return { product: built("uplinkd"), lab: built("uplinkd-lab") };
  })();
  return debPaths;
}

/** The paths a package installs (`dpkg-deb -c`), e.g. `./usr/lib/uplinkd/dist/cli.js`. */
async function packagePaths(deb: string): Promise<string[]> {
  const { stdout } = await runCommand("dpkg-deb", ["-c", deb]);
  return stdout
    .split("\n")
    .map((line) => line.split(/\s+/)[5] ?? "")
    .filter((path) => path !== "");
}

test("the uplinkd package holds no lab file; uplinkd-lab holds the lab and needs uplinkd of its version", async (t) => {
  if (unavailable !== undefined) {
    t.skip(unavailable);
    return;
  }
  const { product, lab } = await packagesUnderTest();
  const productPaths = await packagePaths(product);
  assert.ok(productPaths.includes("./usr/lib/uplinkd/dist/cli.js"), "the CLI is in uplinkd");
  const labFiles = productPaths.filter((path) => /\/dist\/lab\//.test(path));
  assert.deepEqual(labFiles, [], "lab files in the uplinkd package");
  const labPaths = await packagePaths(lab);
  assert.ok(
    labPaths.includes("./usr/lib/uplinkd/dist/lab/cli.js"),
    "the lab's CLI is in uplinkd-lab",
  );
  assert.ok(labPaths.includes("./usr/lib/uplinkd/dist/lab/demo.js"), "the demo is in uplinkd-lab");
  const outside = labPaths.filter(
    (path) =>
      !path.endsWith("/") &&
      !path.startsWith("./usr/lib/uplinkd/dist/lab/") &&
      !path.startsWith("./usr/share/doc/uplinkd-lab/"),
  );
  assert.deepEqual(outside, [], "uplinkd-lab files outside the lab and its docs");
  const { stdout: depends } = await runCommand("dpkg-deb", ["-f", lab, "Depends", "Version"]);
  const version = /^Version: (\S+)$/m.exec(depends)?.[1];
  assert.ok(version !== undefined, depends);
  assert.match(depends, new RegExp(`uplinkd \\(= ${version.replace(/[.+]/g, "\\$&")}\\)`));
});

/**
 * The lab inside the machine. The machine is the router: wan1 and wan2
 * lead to namespaces isp1 and isp2 (gateways 100.64.1.1 and 100.64.2.1),
 * each of which holds the health target 198.51.100.1 itself, so a probe
 * is answered only through the uplink it left by; lan0 leads to namespace
 * lan (client 100.64.0.2). All inside the machine's private network.
 */
const LAB_SCRIPT = `
sysctl -qw net.ipv4.ip_forward=1
for i in 1 2; do
  ip netns add isp$i
  ip link add wan$i type veth peer name eth0 netns isp$i
  ip addr add 100.64.$i.2/24 dev wan$i
  ip link set wan$i up
  ip -n isp$i addr add 100.64.$i.1/24 dev eth0
  ip -n isp$i addr add 198.51.100.1/32 dev lo
  ip -n isp$i link set lo up
  ip -n isp$i link set eth0 up
done
ip netns add lan
ip link add lan0 type veth peer name eth0 netns lan
ip addr add 100.64.0.1/24 dev lan0
ip link set lan0 up
ip -n lan addr add 100.64.0.2/24 dev eth0
ip -n lan link set lo up
ip -n lan link set eth0 up
ip -n lan route add default via 100.64.0.1
# The main table keeps a default route (the router's own sockets need one);
# wan2's, with a higher metric, looks like one a DHCP client installed.
ip route add default via 100.64.1.1
ip route add default via 100.64.2.1 metric 200 proto dhcp
`;

/** The config; \`weight1\` is isp1's weight, \`private_targets: true\` as the lab's own configs. */
function labConfig(weight1: number): string {
  return `# uplinkd config of the system test's lab
private_targets: true
lan: [lan0]
uplinks:
  - { name: isp1, interface: wan1, gateway: 100.64.1.1, weight: ${weight1} }
  - { name: isp2, interface: wan2, gateway: 100.64.2.1 }
health:
  targets: [198.51.100.1]
  interval: 200ms
  timeout: 500ms
  down: 3
  up: 2
`;
}

interface StatusDoc {
  uplinks: { name: string; state: string; weight: number }[];
}

async function status(machine: Machine): Promise<StatusDoc> {
  const { stdout } = await machine.run(["uplinkd", "status", "--json"]);
  return JSON.parse(stdout) as StatusDoc;
}

/** Poll `check` every 250 ms until it returns true; fail with `what` after `timeoutMs`. */
async function waitUntil(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    await sleep(250);
  }
  assert.fail(
    `${what}: not within ${timeoutMs} ms${last === undefined ? "" : `: ${last instanceof Error ? last.message : JSON.stringify(last)}`}`,
  );
}

async function mainPid(machine: Machine): Promise<number> {
  const { stdout } = await machine.run([
    "systemctl",
    "show",
    "--property=MainPID",
    "--value",
    "uplinkd",
  ]);
  return Number(stdout.trim());
}

async function isActive(machine: Machine): Promise<string> {
  const { stdout } = await machine.run(["systemctl", "is-active", "uplinkd"], {
    allowExitCodes: [1, 2, 3, 4],
  });
  return stdout.trim();
}

/** What uplinkd leaves in the kernel: its nft table, ip rules it owns, routes of its tables. */
async function kernelState(machine: Machine): Promise<string[]> {
  const found: string[] = [];
  const tables = await machine.run(["nft", "list", "tables"]);
  if (/\buplinkd\b/.test(tables.stdout)) found.push(`nft: ${tables.stdout.trim()}`);
  const rules = await machine.run(["ip", "rule", "show"]);
  for (const line of rules.stdout.split("\n")) {
    const priority = Number(/^(\d+):/.exec(line)?.[1] ?? "0");
    if (priority >= 1000 && priority < 1600) found.push(`rule: ${line}`);
  }
  for (const table of ["101", "102"]) {
    const routes = await machine.run(["ip", "route", "show", "table", table]);
    if (routes.stdout.trim() !== "") found.push(`table ${table}: ${routes.stdout.trim()}`);
  }
  return found;
}

async function journalSince(machine: Machine, cursor: string): Promise<Record<string, unknown>[]> {
  const { stdout } = await machine.run([
    "journalctl",
    "--no-pager",
    "-o",
    "json",
    "-u",
    "uplinkd",
    ...(cursor === "" ? [] : [`--after-cursor=${cursor}`]),
  ]);
  return stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The unit's last `lines` journal lines, for failure messages. */
async function journalTail(machine: Machine, lines = 40): Promise<string> {
  const { stdout } = await machine.run([
    "journalctl",
    "--no-pager",
    "-o",
    "cat",
    "-n",
    String(lines),
    "-u",
    "uplinkd",
  ]);
  return stdout;
}

async function journalCursor(machine: Machine): Promise<string> {
  const { stdout } = await machine.run(["journalctl", "--no-pager", "-n", "0", "--show-cursor"]);
  return /-- cursor: (\S+)/.exec(stdout)?.[1] ?? "";
}

async function suiteTest(t: TestContext, suite: string): Promise<void> {
  const debs = await packagesUnderTest();
  const machine = await bootMachine(t, { suite });
  await copyFile(debs.product, join(machine.root, "root/uplinkd.deb"));
  await copyFile(debs.lab, join(machine.root, "root/uplinkd-lab.deb"));

  await t.test("apt installs the package; the unit passes systemd-analyze verify", async () => {
    // As the README says; offline: every dependency is in the machine already.
    await machine.run(["apt-get", "install", "-y", "-q", "/root/uplinkd.deb"]);
    const version = await machine.run(["uplinkd", "--version"]);
    assert.match(version.stdout, /^\d+\.\d+\.\d+/);
    await machine.run(["systemd-analyze", "verify", "uplinkd.service"]);
    const conffiles = await machine.run(["dpkg-query", "-W", "-f=${Conffiles}", "uplinkd"]);
    assert.match(conffiles.stdout, /\/etc\/uplinkd\/uplinkd\.yaml/);
    assert.equal(await isActive(machine), "inactive", "not started before it is configured");
  });

  await t.test(
    "without uplinkd-lab, uplinkd lab and uplinkd demo say which package brings them; with it they run",
    async () => {
      for (const command of [
        ["uplinkd", "lab", "status"],
        ["uplinkd", "demo", "--help"],
      ]) {
        const result = await machine.run(command, { allowExitCodes: [1] });
        assert.match(result.stderr, /comes with the uplinkd-lab package/, command.join(" "));
      }
      await machine.run(["apt-get", "install", "-y", "-q", "/root/uplinkd-lab.deb"]);
      const lab = await machine.run(["uplinkd", "lab", "--help"]);
      assert.match(lab.stdout, /\bup\b[\s\S]*\bdown\b/);
      const labStatus = await machine.run(["uplinkd", "lab", "status"], { allowExitCodes: [1] });
      assert.doesNotMatch(labStatus.stderr, /uplinkd-lab package/);
      const demo = await machine.run(["uplinkd", "demo", "--help"]);
      assert.match(demo.stdout, /--prefix/);
    },
  );

  await machine.sh(LAB_SCRIPT);

  await t.test(
    "uplinkd init -o /etc/uplinkd/uplinkd.yaml --force: both uplinks, the LAN; check takes it",
    async () => {
      // The README's second line, but not started: its public targets are not for a lab.
      await machine.run(["uplinkd", "init", "-o", "/etc/uplinkd/uplinkd.yaml", "--force"]);
      const { stdout } = await machine.run(["cat", "/etc/uplinkd/uplinkd.yaml"]);
      assert.match(stdout, /^lan: \[lan0\]$/m);
      assert.match(stdout, /- name: wan1\n {4}interface: wan1\n {4}gateway: 100\.64\.1\.1\n/);
      assert.match(stdout, /- name: wan2\n {4}interface: wan2\n {4}gateway: auto\n/);
      const checked = await machine.run(["uplinkd", "check"]);
      assert.equal(checked.stderr, "", "no warnings");
    },
  );

  await writeFile(join(machine.root, "etc/uplinkd/uplinkd.yaml"), labConfig(1), { mode: 0o600 });

  await t.test("systemctl start: both uplinks up, nft table, rules and routes", async () => {
    await machine.run(["systemctl", "start", "uplinkd"]);
    await waitUntil("both uplinks up", 20_000, async () =>
      (await status(machine)).uplinks.every((u) => u.state === "up"),
    );
    const state = await kernelState(machine);
    assert.ok(
      state.some((s) => s.startsWith("nft:")),
      `no nft table: ${state.join("; ")}`,
    );
    assert.ok(
      state.some((s) => s.startsWith("rule:")),
      `no ip rules: ${state.join("; ")}`,
    );
    assert.ok(
      state.some((s) => s.startsWith("table 101:")),
      `no route in table 101`,
    );
    assert.ok(
      state.some((s) => s.startsWith("table 102:")),
      `no route in table 102`,
    );
    // Forwarded LAN traffic reaches the target (through either uplink).
    await machine.run([
      "ip",
      "netns",
      "exec",
      "lan",
      "ping",
      "-c",
      "3",
      "-i",
      "0.2",
      "-W",
      "1",
      "198.51.100.1",
    ]);
  });

  await t.test("the hardened unit runs with CAP_NET_ADMIN and CAP_NET_RAW only", async () => {
    const pid = await mainPid(machine);
    const { stdout } = await machine.run(["grep", "^CapEff:", `/proc/${pid}/status`]);
    // CAP_NET_ADMIN is bit 12, CAP_NET_RAW bit 13 (linux/capability.h).
    assert.equal(BigInt(`0x${stdout.split(/\s+/)[1] ?? ""}`), (1n << 12n) | (1n << 13n));
  });

  await t.test("systemctl reload applies a changed weight", async () => {
    const pid = await mainPid(machine);
    await writeFile(join(machine.root, "etc/uplinkd/uplinkd.yaml"), labConfig(3), { mode: 0o600 });
    await machine.run(["systemctl", "reload", "uplinkd"]);
    await waitUntil("isp1 weight 3 after reload", 10_000, async () =>
      (await status(machine)).uplinks.some((u) => u.name === "isp1" && u.weight === 3),
    );
    assert.equal(await mainPid(machine), pid, "reload does not restart the daemon");
  });

  await t.test("systemctl reload with a broken config: refused, daemon keeps running", async () => {
    const pid = await mainPid(machine);
    const cursor = await journalCursor(machine);
    await writeFile(join(machine.root, "etc/uplinkd/uplinkd.yaml"), "uplinks: 42\n", {
      mode: 0o600,
    });
    await machine.run(["systemctl", "reload", "uplinkd"]);
    await waitUntil("an error logged for the refused reload", 10_000, async () =>
      (await journalSince(machine, cursor)).some((entry) => {
        const message = typeof entry.MESSAGE === "string" ? entry.MESSAGE : "";
        return message.startsWith("{") && (JSON.parse(message) as { level?: number }).level === 50;
      }),
    );
    assert.equal(await isActive(machine), "active");
    assert.equal(await mainPid(machine), pid);
    const doc = await status(machine);
    assert.equal(doc.uplinks.find((u) => u.name === "isp1")?.weight, 3, "old config stays");
    await writeFile(join(machine.root, "etc/uplinkd/uplinkd.yaml"), labConfig(3), { mode: 0o600 });
  });

  await t.test("journalctl -u uplinkd: the daemon's lines are JSON", async () => {
    const pid = String(await mainPid(machine));
    const entries = (await journalSince(machine, "")).filter((e) => e._PID === pid);
    assert.ok(entries.length >= 3, `only ${entries.length} journal lines from the daemon`);
    for (const entry of entries) {
      const message = String(entry.MESSAGE);
      assert.doesNotThrow(() => JSON.parse(message), `not JSON: ${message}`);
    }
  });

  await t.test(
    "an upgrade keeps the changed conffile and restarts the running daemon",
    async () => {
      const pid = await mainPid(machine);
      const before = await machine.run(["cat", "/etc/uplinkd/uplinkd.yaml"]);
      // The same version again runs the upgrade path (postinst configure OLD-VERSION);
      // a conffile question would fail here, as stdin is not a terminal.
      await machine.run(["dpkg", "-i", "/root/uplinkd.deb"], { input: "" });
      const after = await machine.run(["cat", "/etc/uplinkd/uplinkd.yaml"]);
      assert.equal(after.stdout, before.stdout, "the admin's config stays");
      await waitUntil("a new daemon after the upgrade", 15_000, async () => {
        const now = await mainPid(machine);
        return now !== 0 && now !== pid && (await isActive(machine)) === "active";
      });
      await waitUntil("both uplinks up again", 20_000, async () =>
        (await status(machine)).uplinks.every((u) => u.state === "up"),
      );
    },
  );

  await t.test("systemctl stop leaves no nft table, rules or routes", async () => {
    await machine.run(["systemctl", "stop", "uplinkd"]);
    assert.equal(await isActive(machine), "inactive");
    const left = await kernelState(machine);
    assert.deepEqual(
      left,
      [],
      `stop leaves kernel state:\n${left.join("\n")}\n${await journalTail(machine)}`,
    );
  });

  await t.test("apt remove stops the daemon and keeps the config; purge removes it", async () => {
    await machine.run(["systemctl", "enable", "--now", "uplinkd"]);
    await waitUntil("uplinkd active", 10_000, async () => (await isActive(machine)) === "active");
    await waitUntil("nft table loaded", 10_000, async () =>
      (await kernelState(machine)).some((s) => s.startsWith("nft:")),
    );
    await machine.run(["apt-get", "remove", "-y", "-q", "uplinkd"]);
    const left = await kernelState(machine);
    assert.deepEqual(
      left,
      [],
      `remove leaves kernel state:\n${left.join("\n")}\n${await journalTail(machine)}`,
    );
    await machine.run(["test", "-f", "/etc/uplinkd/uplinkd.yaml"]);
    await machine.run(["test", "!", "-e", "/usr/bin/uplinkd"]);
    await machine.run(["apt-get", "purge", "-y", "-q", "uplinkd"]);
    await machine.run(["test", "!", "-e", "/etc/uplinkd"]);
    await machine.run([
      "test",
      "!",
      "-e",
      "/etc/systemd/system/multi-user.target.wants/uplinkd.service",
    ]);
    await machine.run(["test", "!", "-e", "/usr/lib/uplinkd"]);
  });
}

for (const suite of suites) {
  test(
    `the .deb on ${SUITES[suite] ?? suite} (${suite}) under systemd`,
    { skip: unavailable, timeout: 600_000 },
    async (t) => {
      await mkdir(CACHE, { recursive: true });
      await suiteTest(t, suite);
    },
  );
}

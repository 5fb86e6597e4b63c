/**
 * `uplinkd init` on the real kernel, in a namespace of its own that looks
 * like a small router: a static uplink, a DHCP uplink (an address with a
 * lifetime and a `proto dhcp` default route), a LAN. Each interface is one
 * end of a veth pair whose other end stays in the namespace too, without an
 * address: init reads `ip -j` and sends no packet.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { runCommand } from "../../src/process/run.js";
import { uplinkdArgv } from "../../src/lab/daemon.js";
import { uniquePrefix } from "./helpers.js";

/** `ip -batch` lines run in the test's namespace. */
const SETUP = `
link add wan1 type veth peer name p-wan1
link add wan2 type veth peer name p-wan2
link add lan0 type veth peer name p-lan0
link add docker0 type veth peer name p-docker0
link set lo up
link set wan1 up
link set p-wan1 up
link set wan2 up
link set p-wan2 up
link set lan0 up
addr add 100.64.1.2/24 dev wan1
addr add 100.64.2.2/24 dev wan2 valid_lft 3600 preferred_lft 3600
addr add 100.64.0.1/24 dev lan0
addr add 100.64.99.1/24 dev docker0
route add default via 100.64.1.1 dev wan1 metric 100
route add default via 100.64.2.1 dev wan2 metric 200 proto dhcp
`;

/** Run `uplinkd ARGS` in namespace `ns`; returns status, stdout, stderr. */
function initIn(ns: string, args: string[]) {
  const [node = "", ...rest] = uplinkdArgv(...args);
  const r = spawnSync("ip", ["netns", "exec", ns, node, ...rest], {
    encoding: "utf8",
    timeout: 30_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("uplinkd init in a router namespace: static and DHCP uplinks, the LAN, public targets; -o refuses to overwrite without --force", async (t) => {
  const ns = `${uniquePrefix()}-init`;
  const dir = await mkdtemp(join(tmpdir(), "uplinkd-init-"));
  t.after(async () => {
    await runCommand("ip", ["netns", "del", ns]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  await runCommand("ip", ["netns", "add", ns]);
  await runCommand("ip", ["-n", ns, "-batch", "-"], { input: SETUP });

  const printed = initIn(ns, ["init"]);
  assert.equal(printed.status, 0, printed.stderr);
  assert.match(printed.stdout, /^lan: \[lan0\]$/m);
  assert.match(printed.stdout, /- name: wan1\n {4}interface: wan1\n {4}gateway: 100\.64\.1\.1\n/);
  assert.match(printed.stdout, /- name: wan2\n {4}interface: wan2\n {4}gateway: auto\n/);
  assert.match(printed.stdout, /^ {2}targets: \[1\.1\.1\.1, 9\.9\.9\.9, 8\.8\.8\.8\]$/m);
  assert.match(printed.stdout, /docker0: a container or VM bridge/);

  const file = join(dir, "uplinkd.yaml");
  const written = initIn(ns, ["init", "-o", file]);
  assert.equal(written.status, 0, written.stderr);
  assert.equal(await readFile(file, "utf8"), printed.stdout);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.match(written.stderr, /2 uplinks \(wan1, wan2\), LAN lan0/);

  // The written config passes check without a warning.
  const checked = initIn(ns, ["check", "-c", file]);
  assert.deepEqual([checked.status, checked.stderr], [0, ""]);

  await writeFile(file, "# mine\n");
  const refused = initIn(ns, ["init", "-o", file]);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /exists; --force replaces it/);
  assert.equal(await readFile(file, "utf8"), "# mine\n");

  const forced = initIn(ns, ["init", "-o", file, "--force"]);
  assert.equal(forced.status, 0, forced.stderr);
  assert.equal(await readFile(file, "utf8"), printed.stdout);
});

test("uplinkd init with no uplink: exit 1, nothing written, no lab-only fallback", async (t) => {
  const ns = `${uniquePrefix()}-init`;
  const dir = await mkdtemp(join(tmpdir(), "uplinkd-init-"));
  t.after(async () => {
    await runCommand("ip", ["netns", "del", ns]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  await runCommand("ip", ["netns", "add", ns]);
  await runCommand("ip", ["-n", ns, "-batch", "-"], {
    input: "link add lan0 type veth peer name p-lan0\naddr add 100.64.0.1/24 dev lan0\n",
  });
  const file = join(dir, "uplinkd.yaml");
  const r = initIn(ns, ["init", "-o", file]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /found no uplink/);
  await assert.rejects(stat(file), { code: "ENOENT" });
});

import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { KernelCommandTimeoutError } from "../../src/errors.js";
import { LinuxKernel } from "../../src/kernel/linux.js";

// Stand-ins for the kernel tools, first on PATH: `ip` hangs, `nft` takes
// 300 ms for a script that names "slow" and hangs on any other, `conntrack
// -D` takes 300 ms and reports two deletions. No kernel is touched.
let dir = "";
let savedPath: string | undefined;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "uplinkd-tools-"));
  const tool = async (name: string, body: string): Promise<void> => {
    await writeFile(join(dir, name), `#!/bin/sh\n${body}\n`);
    await chmod(join(dir, name), 0o755);
  };
  await tool("ip", "exec sleep 30");
  await tool("nft", 'case "$(cat)" in *slow*) sleep 0.3 ;; *) exec sleep 30 ;; esac');
  await tool("conntrack", 'sleep 0.3\necho "conntrack: 2 flow entries have been deleted." >&2');
  savedPath = process.env.PATH;
  process.env.PATH = `${dir}:${savedPath ?? ""}`;
});

after(async () => {
  process.env.PATH = savedPath;
  await rm(dir, { recursive: true, force: true });
});

describe("LinuxKernel timeouts", () => {
  it("defaults: ip and nft 5 s, the first nft load 60 s, conntrack deletion 30 s and listing 15 s; an override changes only its own", () => {
    // The documented figures, written out: a changed default must change this test too.
    const documented = {
      ipRead: 5000,
      ipWrite: 5000,
      nft: 5000,
      nftFirst: 60_000,
      conntrackDelete: 30_000,
      conntrackList: 15_000,
    };
    assert.deepEqual(new LinuxKernel().timeouts, documented);
    assert.deepEqual(new LinuxKernel({ timeouts: { nft: 250 } }).timeouts, {
      ...documented,
      nft: 250,
    });
  });

  it("a hung ip read is killed at its timeout and named", async () => {
    const kernel = new LinuxKernel({ timeouts: { ipRead: 100 } });
    await assert.rejects(kernel.readRoutes(), (error: unknown) => {
      assert.ok(error instanceof KernelCommandTimeoutError);
      assert.equal(error.command, "ip -N -4 -j -force -batch - <<< route show table all");
      assert.equal(error.timeoutMs, 100);
      return true;
    });
  });

  it("a hung ip batch keeps its timeout error (not rewritten as a failed line)", async () => {
    const kernel = new LinuxKernel({ timeouts: { ipWrite: 100 } });
    await assert.rejects(
      kernel.ipBatch(["route replace default via 100.64.1.1 dev wan1 table 101"]),
      (error: unknown) => error instanceof KernelCommandTimeoutError && error.timeoutMs === 100,
    );
  });

  it("a hung first nft load is killed at the first-load timeout", async () => {
    const kernel = new LinuxKernel({ timeouts: { nft: 5000, nftFirst: 100 } });
    await assert.rejects(
      kernel.nftLoad("table inet uplinkd {}\n"),
      (error: unknown) =>
        error instanceof KernelCommandTimeoutError &&
        error.command === "nft -f -" &&
        error.timeoutMs === 100,
    );
  });

  it("the first nft load may take longer (module autoload); once one succeeded, the nft timeout applies", async () => {
    const kernel = new LinuxKernel({ timeouts: { nft: 100, nftFirst: 5000 } });
    await kernel.nftLoad("table inet uplinkd {} # slow\n");
    await assert.rejects(
      kernel.nftLoad("table inet uplinkd {} # slow\n"),
      (error: unknown) => error instanceof KernelCommandTimeoutError && error.timeoutMs === 100,
    );
  });

  it("a slow conntrack deletion runs under its own, longer timeout", async () => {
    const kernel = new LinuxKernel({ timeouts: { ipRead: 100, conntrackDelete: 5000 } });
    assert.equal(await kernel.conntrackDelete(0x100, 0xff00, 4), 2);
  });

  it("without a family, deletes IPv4 and IPv6 entries (one run each) and adds the counts", async () => {
    const kernel = new LinuxKernel({ timeouts: { conntrackDelete: 5000 } });
    assert.equal(await kernel.conntrackDelete(0x100, 0xff00), 4);
  });

  it("and is killed when it outlasts that", async () => {
    const kernel = new LinuxKernel({ timeouts: { conntrackDelete: 100 } });
    await assert.rejects(kernel.conntrackDelete(0x100, 0xff00), (error: unknown) => {
      assert.ok(error instanceof KernelCommandTimeoutError);
      assert.match(
        error.message,
        /`conntrack -D -f ipv4 -m 256\/65280` did not finish within 100 ms/,
      );
      return true;
    });
  });
});

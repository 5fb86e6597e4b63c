import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readFileIfExists, writeFileAtomic } from "../../src/files.js";

describe("files written for other programs", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "uplinkd-files-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads a missing file as undefined and rethrows other errors", async () => {
    assert.equal(await readFileIfExists(join(dir, "missing")), undefined);
    await assert.rejects(readFileIfExists(dir), /EISDIR/);
  });

  it("replaces a file whole, with the mode asked for, creating its directory, leaving no temporary", async () => {
    const path = join(dir, "sub", "track");
    await writeFileAtomic(path, "one\n", 0o600);
    await writeFileAtomic(path, "two\n", 0o640);
    assert.equal(await readFileIfExists(path), "two\n");
    assert.equal((await stat(path)).mode & 0o777, 0o640);
    assert.deepEqual(await readdir(join(dir, "sub")), ["track"]);
  });

  it("a write that fails after its temporary was written leaves the target as it was and no temporary", async () => {
    // The target is a directory holding a file: the temporary is written,
    // then renaming it over the directory fails.
    const target = join(dir, "busy");
    await mkdir(target);
    await writeFile(join(target, "old"), "old\n");
    await assert.rejects(writeFileAtomic(target, "new\n"), /EISDIR|ENOTEMPTY|EEXIST/);
    assert.equal(await readFileIfExists(join(target, "old")), "old\n");
    assert.deepEqual(await readdir(target), ["old"]);
    assert.deepEqual((await readdir(dir)).sort(), ["busy", "sub"]);
  });

  it("a write whose directory cannot be created leaves the file in its way as it was", async () => {
    const path = join(dir, "kept");
    await writeFile(path, "old\n");
    await assert.rejects(writeFileAtomic(join(path, "inside"), "new\n"), /EEXIST|ENOTDIR/);
    assert.equal(await readFileIfExists(path), "old\n");
    assert.deepEqual((await readdir(dir)).sort(), ["busy", "kept", "sub"]);
  });
});

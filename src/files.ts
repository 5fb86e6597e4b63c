/**
 * Files uplinkd writes (dnsmasq fragments, keepalived and conntrackd
 * configs, the keepalived track file, `uplinkd init`'s config): one writer,
 * replacing atomically and durably, so a reader never sees half a file and
 * nothing planted in the directory is followed.
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, open, readFile, realpath, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/**
 * The file's text, or undefined when it does not exist.
 * @throws {Error} any other file-system error (permission, a directory).
 */
export async function readFileIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** A symlink stands where a file is to be written, and the caller did not allow it. */
export class SymlinkTargetError extends Error {
  readonly code = "UPLINKD_ERR_SYMLINK_TARGET";
  constructor(readonly path: string) {
    super(
      `${path} is a symbolic link; refusing to write through it (remove it, or write elsewhere)`,
    );
  }
}

/**
 * Replace `path` with `content` atomically and durably: a temporary file
 * with an unpredictable name in the same directory, created with O_EXCL
 * (never following or reusing anything planted there), given `mode`
 * (default 0644), written and fsync'd, then renamed over the target
 * (rename(2) is atomic within a file system) and the directory fsync'd.
 * The directory is created when missing. A symbolic link at `path` is
 * refused unless `options.followSymlink` (rename would replace the link
 * itself, not its target). The temporary file is removed when a step fails.
 * @throws {SymlinkTargetError} when `path` is a symbolic link.
 * @throws {Error} from the file system (permission, read-only, no space).
 */
export async function writeFileAtomic(
  path: string,
  content: string,
  mode = 0o644,
  options: { followSymlink?: boolean } = {},
): Promise<void> {
  let target = path;
  const existing = await lstat(path).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  });
  if (existing?.isSymbolicLink() === true) {
    if (options.followSymlink !== true) throw new SymlinkTargetError(path);
    target = await realpath(path);
  }
  const dir = dirname(target);
  const temporary = join(dir, `.${basename(target)}.${randomBytes(8).toString("hex")}.tmp`);
  await mkdir(dir, { recursive: true });
  let created = false;
  try {
    const handle = await open(
      temporary,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      mode,
    );
    created = true;
    try {
      await handle.writeFile(content);
      // The process umask may have narrowed `mode`: set it exactly.
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, target);
    created = false;
    const dirHandle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  } catch (error) {
    if (created) await unlink(temporary).catch(() => undefined);
    throw error;
  }
}

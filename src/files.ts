/**
 * Files uplinkd writes for others (dnsmasq fragments, keepalived and
 * conntrackd configs, the keepalived track file): replaced atomically, so a
 * reader never sees half a file.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
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

/**
 * Replace `path` with `content` atomically: a temporary file in the same
 * directory (created if missing), given `mode` (default 0644), then renamed
 * over the old one (rename(2) is atomic within a file system). The
 * temporary file is removed when a step fails.
 * @throws {Error} from the file system (permission, read-only, no space).
 */
export async function writeFileAtomic(path: string, content: string, mode = 0o644): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(temporary, content, { mode });
    // The process umask may have narrowed `mode`: set it exactly.
    await chmod(temporary, mode);
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
}

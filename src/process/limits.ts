/**
 * This process's resource limits, as the kernel reports them in
 * `/proc/self/limits` (Node has no getrlimit).
 */
import { readFileSync } from "node:fs";

/**
 * The soft limit of open files ("Max open files", RLIMIT_NOFILE) in the
 * text of a `/proc/PID/limits` file.
 * @returns the limit; undefined when the line is missing or says `unlimited`.
 */
export function parseOpenFilesLimit(text: string): number | undefined {
  const soft = /^Max open files\s+(\d+|unlimited)\s/m.exec(text)?.[1];
  return soft === undefined || soft === "unlimited" ? undefined : Number(soft);
}

/**
 * This process's soft limit of open files (RLIMIT_NOFILE, from
 * `/proc/self/limits`), e.g. 1024 under `ulimit -n 1024`.
 * @returns undefined when it cannot be read (no /proc) or is unlimited; never throws.
 */
export function openFilesLimit(): number | undefined {
  try {
    return parseOpenFilesLimit(readFileSync("/proc/self/limits", "utf8"));
  } catch {
    return undefined;
  }
}

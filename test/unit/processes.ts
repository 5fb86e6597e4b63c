/** Process checks shared by the unit tests that start real processes. */
import { readFileSync } from "node:fs";

/**
 * Whether a process with this pid still runs: it exists and is not a zombie
 * (a killed orphan stays a zombie until its new parent reaps it, which some
 * container inits never do). State from /proc/PID/stat (proc(5)).
 */
export function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

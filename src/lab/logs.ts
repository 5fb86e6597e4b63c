/** Error and log text for the lab's error messages. */
import { readFile } from "node:fs/promises";

/** The message of `error` (an Error's message, else the value as text). */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The last `lines` lines of log `file`, joined by ` | ` (for one-line error
 * messages); `(no log)` when it cannot be read.
 */
export async function tail(file: string, lines = 5): Promise<string> {
  try {
    const text = await readFile(file, "utf8");
    return text.trim().split("\n").slice(-lines).join(" | ");
  } catch {
    return "(no log)";
  }
}

/**
 * Running kernel tools (ip, nft, conntrack) as child processes. No shell is
 * involved: arguments are passed as an array.
 */
import { spawn } from "node:child_process";
import { KernelCommandError } from "../errors.js";

/** What a finished command printed. */
export interface CommandResult {
  stdout: string;
  stderr: string;
}

/**
 * Run `file args...`, optionally feeding `input` on stdin.
 *
 * @returns stdout and stderr as UTF-8 text.
 * @throws {KernelCommandError} when the command exits non-zero or cannot be
 *   started; the error names the command line and carries its stderr.
 */
export function runCommand(
  file: string,
  args: readonly string[],
  options: { input?: string; allowExitCodes?: readonly number[] } = {},
): Promise<CommandResult> {
  const commandLine = [file, ...args].join(" ");
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.on("error", (error) => {
      reject(new KernelCommandError(commandLine, null, error.message));
    });
    child.on("close", (code) => {
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      if (code === 0 || (code !== null && options.allowExitCodes?.includes(code))) {
        resolve({ stdout, stderr });
      } else {
        reject(new KernelCommandError(commandLine, code, stderr || stdout));
      }
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}

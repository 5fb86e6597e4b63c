/**
 * `uplinkd init [-o FILE] [--force] [--uplink IF...] [--lan IF...]`: print
 * a first config for this machine, or write it to FILE.
 */
import { writeFileAtomic } from "../files.js";
import type { Command } from "commander";
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { InitError, planInit, readMachineFacts, renderInitConfig } from "./init.js";

/**
 * Adds `init` to `program`. Without `-o` the config goes to stdout; with
 * `-o FILE` it is written to FILE (mode 0600, through a temporary file and
 * a rename), which must not exist unless `--force` is given, and a line
 * saying what was found goes to stderr.
 *
 * @throws {InitError} (from the action) when nothing usable is found, or
 *   FILE exists without `--force`; the CLI prints it and exits 1.
 */
export function registerInitCommand(program: Command): Command {
  return program
    .command("init")
    .description(
      "write a first config for this machine: its uplinks (default routes, DHCP leases, PPP), its LAN and public health targets",
    )
    .option("-o, --output <file>", "write the config to this file instead of stdout")
    .option("--force", "replace the output file if it exists")
    .option("--uplink <interface...>", "these interfaces are the uplinks (instead of guessing)")
    .option("--lan <interface...>", "these interfaces are the LAN (instead of guessing)")
    .action(async function (
      this: Command,
      options: { output?: string; force?: boolean; uplink?: string[]; lan?: string[] },
    ) {
      const facts = await readMachineFacts();
      const plan = planInit(facts, {
        ...(options.uplink === undefined ? {} : { uplinks: options.uplink }),
        ...(options.lan === undefined ? {} : { lan: options.lan }),
      });
      const text = renderInitConfig(plan);
      const output = this.configureOutput();
      if (options.output === undefined) {
        output.writeOut?.(text);
        return;
      }
      await writeConfig(options.output, text, options.force === true);
      output.writeErr?.(
        `${options.output}: ${plan.uplinks.length} uplinks (${plan.uplinks.map((u) => u.interface).join(", ")}), ` +
          `LAN ${plan.lan.map((l) => l.interface).join(", ")}\n`,
      );
    });
}

/** Write `text` to `file` (mode 0600); refuse an existing file unless `force`. */
async function writeConfig(file: string, text: string, force: boolean): Promise<void> {
  if (!force) {
    // O_EXCL: fail rather than replace, even if the file appears meanwhile.
    let handle;
    try {
      handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") {
        throw new InitError(`${file} exists; --force replaces it`);
      }
      throw new InitError(`cannot write ${file}: ${(error as Error).message}`, { cause: error });
    }
    try {
      await handle.writeFile(text);
    } finally {
      await handle.close();
    }
    return;
  }
  try {
    // A fresh O_EXCL temporary name, fsync, rename; a symlink at FILE is refused.
    await writeFileAtomic(file, text, 0o600);
  } catch (error) {
    throw new InitError(`cannot write ${file}: ${(error as Error).message}`, { cause: error });
  }
}

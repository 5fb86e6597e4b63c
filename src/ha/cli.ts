/**
 * `uplinkd ha render -c FILE [-o DIR] [--check]`: write (or compare) the
 * engine configs of this router of an HA pair.
 */
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Command } from "commander";
import { EXIT_CONFIG_INVALID } from "../errors.js";
import { DEFAULT_CONFIG_PATH, loadConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { ConfigError, formatConfigIssue } from "../errors.js";
import { writeFileAtomic } from "../files.js";
import { renderConntrackd, renderKeepalived, renderNotifyScript, renderRadvd } from "./render.js";

/** One file `ha render` writes. */
export interface HaFile {
  /** Where it goes. */
  path: string;
  content: string;
  /** File mode: 0o755 for the notify script, 0o644 for the configs. */
  mode: number;
}

/** Exit code of `ha render --check` when a file is missing or differs. */
export const EXIT_HA_DIFFERS = 1;

/**
 * The files of this router: keepalived.conf, conntrackd.conf, the notify
 * script and, for a dual-stack LAN, radvd.conf, at their configured paths
 * (`ha.keepalived_config`, `ha.conntrackd.config`, `ha.notify_script`,
 * `ha.radvd.config`) or, with `dir`, in `dir`
 * under their base names (keepalived.conf still names the notify script
 * at its configured path).
 * @throws {Error} when the config has no `ha`.
 */
export function haFiles(config: Config, source: string, dir?: string): HaFile[] {
  const ha = config.ha;
  if (ha === undefined) throw new Error(`${source} has no ha section`);
  const at = (path: string) => (dir === undefined ? path : join(dir, basename(path)));
  const files: HaFile[] = [
    {
      path: at(ha.keepalived_config),
      content: renderKeepalived(config, source),
      mode: 0o644,
    },
    {
      path: at(ha.conntrackd.config),
      content: renderConntrackd(config, source),
      mode: 0o644,
    },
    { path: at(ha.notify_script), content: renderNotifyScript(config, source), mode: 0o755 },
  ];
  const radvd = renderRadvd(config, source);
  if (radvd !== undefined) files.push({ path: at(ha.radvd.config), content: radvd, mode: 0o644 });
  return files;
}

/**
 * Write each file atomically (temporary file in the same directory, then
 * rename), creating its directory.
 * @throws {Error} from the file system (permission, read-only).
 */
export async function writeHaFiles(files: readonly HaFile[]): Promise<void> {
  for (const file of files) await writeFileAtomic(file.path, file.content, file.mode);
}

/**
 * The files whose content on disk differs from `files` (missing counts as
 * differing), with what is wrong.
 */
export async function staleHaFiles(
  files: readonly HaFile[],
): Promise<{ path: string; why: string }[]> {
  const stale: { path: string; why: string }[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file.path, "utf8");
    } catch (error) {
      stale.push({ path: file.path, why: (error as NodeJS.ErrnoException).code ?? String(error) });
      continue;
    }
    if (text !== file.content) {
      const have = text.split("\n");
      const want = file.content.split("\n");
      const line = want.findIndex((l, i) => have[i] !== l) + 1;
      stale.push({ path: file.path, why: `differs from line ${line}` });
    }
  }
  return stale;
}

/**
 * Adds `ha render` to `program`. Prints one line per file written; with
 * `--check` writes nothing, prints `PATH: ok` or `PATH: missing|differs
 * from line N` per file and sets exit code 1 when any is not up to date.
 * An invalid config: `FILE:LINE:COL: path: message` lines, exit 2.
 */
export function registerHaCommands(program: Command): Command {
  const ha = program
    .command("ha")
    .description("a redundant router pair with keepalived and conntrackd");
  ha.command("render")
    .description(
      "write keepalived.conf, conntrackd.conf, the notify script (and radvd.conf for a dual-stack LAN) of this router (ha: in the config)",
    )
    .option("-c, --config <file>", "config file", DEFAULT_CONFIG_PATH)
    .option("-o, --output <dir>", "write into DIR instead of the configured paths")
    .option("--check", "write nothing; exit 1 when a file is missing or differs")
    .action(async function (
      this: Command,
      options: { config: string; output?: string; check?: boolean },
    ) {
      const output = this.configureOutput();
      let config: Config;
      try {
        config = await loadConfig(options.config);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        for (const issue of error.issues) output.writeErr?.(`${formatConfigIssue(issue)}\n`);
        process.exitCode = EXIT_CONFIG_INVALID;
        return;
      }
      if (config.ha === undefined) {
        output.writeErr?.(`${options.config}: no ha section: nothing to render\n`);
        process.exitCode = EXIT_CONFIG_INVALID;
        return;
      }
      const files = haFiles(config, options.config, options.output);
      if (options.check === true) {
        const stale = new Map((await staleHaFiles(files)).map((s) => [s.path, s.why]));
        for (const file of files) {
          const why = stale.get(file.path);
          output.writeOut?.(`${file.path}: ${why === undefined ? "ok" : why}\n`);
        }
        if (stale.size > 0) process.exitCode = EXIT_HA_DIFFERS;
        return;
      }
      await writeHaFiles(files);
      for (const file of files) output.writeOut?.(`wrote ${file.path}\n`);
    });
  return ha;
}

/**
 * `uplinkd check -c FILE`: validate a config without touching the kernel.
 */
import type { Command } from "commander";
import { ConfigError, formatConfigIssue } from "../errors.js";
import { DEFAULT_CONFIG_PATH, loadConfigWithWarnings } from "./load.js";

/** Exit code of `uplinkd check` (and of any command) when the config is invalid. */
export const EXIT_CONFIG_INVALID = 2;

/**
 * Adds `check [-c FILE]` to `program`.
 *
 * On success it writes exactly `FILE: ok (N uplinks)` and a newline to
 * stdout and leaves the exit code alone (0); before that, one
 * `FILE:LINE:COL: path: warning: message` line per warning on stderr
 * (`loadConfigWithWarnings`: health targets that answer only in a lab, on
 * a config without `lab: true`). On an invalid or unreadable
 * config it writes one `FILE:LINE:COL: path: message` line per issue to
 * stderr, nothing else (no help text, whatever `showHelpAfterError` says),
 * and sets `process.exitCode` to `EXIT_CONFIG_INVALID` (2), so the process
 * ends with 2 once `parseAsync` returns. Output goes through commander's
 * output configuration (`writeOut`, `writeErr`, inherited from `program`),
 * so tests can capture it.
 *
 * @returns the new subcommand.
 */
export function registerCheckCommand(program: Command): Command {
  return program
    .command("check")
    .description(
      "validate a config file; exit 0 if it can be used, else 2 with one line per problem",
    )
    .option("-c, --config <file>", "config file", DEFAULT_CONFIG_PATH)
    .action(async function (this: Command, options: { config: string }) {
      const output = this.configureOutput();
      try {
        const { config, warnings } = await loadConfigWithWarnings(options.config);
        for (const warning of warnings) {
          output.writeErr?.(
            `${formatConfigIssue({ ...warning, message: `warning: ${warning.message}` })}\n`,
          );
        }
        output.writeOut?.(`${options.config}: ok (${config.uplinks.length} uplinks)\n`);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        for (const issue of error.issues) output.writeErr?.(`${formatConfigIssue(issue)}\n`);
        process.exitCode = EXIT_CONFIG_INVALID;
      }
    });
}

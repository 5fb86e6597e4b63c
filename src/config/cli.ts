/**
 * `uplinkd check -c FILE`: validate a config without touching the kernel.
 */
import type { Command } from "commander";
import { ConfigError, formatConfigIssue } from "../errors.js";
import { acceptRaWarnings } from "./sysctl6.js";
import { DEFAULT_CONFIG_PATH, loadConfigWithWarnings } from "./load.js";
import type { UplinkConfig } from "./schema.js";

/**
 * One line on how an uplink finds its next hop and source address, e.g.
 * `isp2 on wan2: gateway learned from the kernel (DHCP, PPP peer); source
 * address 100.64.2.9 (address:, SNAT to it)`.
 */
export function describeUplink(uplink: UplinkConfig): string {
  const gateway =
    uplink.gateway === "auto"
      ? "gateway learned from the kernel (DHCP, PPP peer; none on a point-to-point link: default dev " +
        `${uplink.interface})`
      : uplink.gateway === "none"
        ? `no gateway: default dev ${uplink.interface}`
        : `gateway ${uplink.gateway}`;
  const address =
    uplink.address === undefined
      ? `source address: the primary address of ${uplink.interface}`
      : `source address ${uplink.address} (address:${uplink.snat === undefined ? ", SNAT to it" : ""}; waits until ${uplink.interface} has it)`;
  const nat =
    uplink.snat === undefined
      ? uplink.address === undefined
        ? "masquerade"
        : ""
      : `SNAT to ${uplink.snat}`;
  return `${uplink.name} on ${uplink.interface}: ${gateway}; ${address}${nat === "" ? "" : `; ${nat}`}`;
}

/** Exit code of `uplinkd check` (and of any command) when the config is invalid. */
export const EXIT_CONFIG_INVALID = 2;

/**
 * Adds `check [-c FILE]` to `program`.
 *
 * On success it writes exactly `FILE: ok (N uplinks)` and a newline to
 * stdout and leaves the exit code alone (0); before that, one
 * `FILE:LINE:COL: path: warning: message` line per warning on stderr
 * (`loadConfigWithWarnings`: health targets that answer only in a lab, on
 * a config without `lab: true`), then one `FILE: warning: message` line per
 * uplink whose `accept_ra` ignores router advertisements (see
 * links/sysctl6.ts); with `--verbose`, then one indented line
 * per uplink ({@link describeUplink}). On an invalid or unreadable
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
    .option("-v, --verbose", "also say, per uplink, how it finds its gateway and source address")
    .action(async function (this: Command, options: { config: string; verbose?: boolean }) {
      const output = this.configureOutput();
      try {
        const { config, warnings } = await loadConfigWithWarnings(options.config);
        for (const warning of warnings) {
          output.writeErr?.(
            `${formatConfigIssue({ ...warning, message: `warning: ${warning.message}` })}\n`,
          );
        }
        // Sysctls of the namespace check runs in: the ones the daemon will see when run here.
        for (const warning of await acceptRaWarnings(config)) {
          output.writeErr?.(`${options.config}: warning: ${warning.message}\n`);
        }
        output.writeOut?.(`${options.config}: ok (${config.uplinks.length} uplinks)\n`);
        if (options.verbose === true) {
          for (const uplink of config.uplinks) output.writeOut?.(`  ${describeUplink(uplink)}\n`);
        }
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        for (const issue of error.issues) output.writeErr?.(`${formatConfigIssue(issue)}\n`);
        process.exitCode = EXIT_CONFIG_INVALID;
      }
    });
}

/**
 * `uplinkd check -c FILE`: validate a config, and on the router test it
 * against the kernel (reads `ip -j addr show`; changes nothing).
 */
import type { Command } from "commander";
import { ConfigError, EXIT_CONFIG_INVALID, formatConfigIssue } from "../errors.js";
import { LinuxKernel } from "../kernel/linux.js";
import type { LinkState } from "../kernel/types.js";
import { kernelProblems } from "../links/problems.js";
import { acceptRaWarnings } from "./sysctl6.js";
import { DEFAULT_CONFIG_PATH, loadConfigWithWarnings, locateIssues } from "./load.js";
import type { Config, UplinkConfig } from "./schema.js";

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

export { EXIT_CONFIG_INVALID };

/** Reads this machine's interfaces (`ip -j addr show`); tests pass their own. */
export type ReadLinks = () => Promise<LinkState[]>;

/**
 * The config against this machine's interfaces, as located issues
 * (FILE:LINE:COL, path, what to do): interfaces that do not exist, gateways
 * not on-link, addresses absent (links/problems.ts). Only on the router:
 * when no interface the config names exists here (or `ip` cannot be read),
 * `skipped` says why and there are no issues.
 */
export async function kernelIssues(
  file: string,
  config: Config,
  readLinks: ReadLinks = () => new LinuxKernel().readLinks(),
): Promise<{ issues: Awaited<ReturnType<typeof locateIssues>>; skipped?: string }> {
  let links: LinkState[];
  try {
    links = await readLinks();
  } catch (error) {
    return { issues: [], skipped: `cannot read the interfaces: ${(error as Error).message}` };
  }
  const names = [...config.lan, ...config.uplinks.map((u) => u.interface)];
  if (!names.some((name) => links.some((l) => l.name === name))) {
    return {
      issues: [],
      skipped: `none of the config's interfaces (${names.join(", ")}) is on this machine: not the router`,
    };
  }
  return { issues: await locateIssues(file, kernelProblems(config, links)) };
}

/**
 * Adds `check [-c FILE]` to `program`.
 *
 * On success it writes exactly `FILE: ok (N uplinks)` and a newline to
 * stdout and leaves the exit code alone (0); before that, one
 * `FILE:LINE:COL: path: warning: message` line per warning on stderr
 * (`loadConfigWithWarnings`: health targets that answer only in a lab, on
 * a config without `private_targets: true`), then one `FILE: warning: message` line per
 * uplink whose `accept_ra` ignores router advertisements (see
 * links/sysctl6.ts); with `--verbose`, then one indented line
 * per uplink ({@link describeUplink}). On the router ({@link kernelIssues}),
 * each interface that does not exist, gateway not on-link and address
 * absent is one `FILE:LINE:COL: path: message` line on stderr and the
 * exit code is 2; `--no-kernel` skips these tests (`--verbose` says when
 * they were skipped because this is not the router). On an invalid or unreadable
 * config it writes one `FILE:LINE:COL: path: message` line per issue to
 * stderr, nothing else (no help text, whatever `showHelpAfterError` says),
 * and sets `process.exitCode` to `EXIT_CONFIG_INVALID` (2), so the process
 * ends with 2 once `parseAsync` returns. Output goes through commander's
 * output configuration (`writeOut`, `writeErr`, inherited from `program`),
 * so tests can capture it.
 *
 * @returns the new subcommand.
 */
export function registerCheckCommand(program: Command, readLinks?: ReadLinks): Command {
  return program
    .command("check")
    .description(
      "validate a config file; exit 0 if it can be used, else 2 with one line per problem",
    )
    .option("-c, --config <file>", "config file", DEFAULT_CONFIG_PATH)
    .option("-v, --verbose", "also say, per uplink, how it finds its gateway and source address")
    .option("--no-kernel", "do not test the config against this machine's interfaces")
    .action(async function (
      this: Command,
      options: { config: string; verbose?: boolean; kernel: boolean },
    ) {
      const output = this.configureOutput();
      try {
        const { config, warnings } = await loadConfigWithWarnings(options.config);
        const kernel = options.kernel
          ? await kernelIssues(options.config, config, readLinks)
          : { issues: [], skipped: "--no-kernel" };
        if (kernel.issues.length > 0) throw new ConfigError(kernel.issues);
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
          if (kernel.skipped !== undefined) {
            output.writeOut?.(`  kernel tests skipped: ${kernel.skipped}\n`);
          }
        }
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        for (const issue of error.issues) output.writeErr?.(`${formatConfigIssue(issue)}\n`);
        process.exitCode = EXIT_CONFIG_INVALID;
      }
    });
}

/**
 * The `uplinkd` command line: one program, one subcommand per task.
 *
 * Exit codes: 0 success; 1 runtime failure (kernel command, control socket);
 * 2 invalid config or usage.
 */
import { Command, Option } from "commander";
import { kernelIssues, registerCheckCommand } from "./config/cli.js";
import { registerInitCommand } from "./config/init-cli.js";
import { DEFAULT_CONFIG_PATH, loadConfig, loadConfigOffThread } from "./config/load.js";
import { registerControlCommands, registerNotifyTestCommand } from "./control/cli.js";
import { Daemon } from "./daemon.js";
import { Dataplane, planIsEmpty } from "./dataplane/apply.js";
import { desiredInputs, desiredState, scheduleSurroundings } from "./controller/desired.js";
import { scheduleStatus } from "./controller/schedule.js";
import { describePlanBasis, planHealth, readPlanBasis } from "./control/plan.js";
import { formatSchedules } from "./control/format.js";
import { renderNftsetFile } from "./dns/render.js";
import { ConfigError, NotInstalledError, UplinkdError, formatConfigIssue } from "./errors.js";
import { LinuxKernel } from "./kernel/linux.js";
import { createUplinkHealth } from "./health/adapter.js";
import { observe } from "./links/watcher.js";
import { readSavedSpeedtests } from "./speedtest/part.js";
import { withMeasuredBandwidth } from "./speedtest/state.js";
import { LOG_LEVELS, type LogLevel } from "./log-level.js";
import { createLogger, setLogLevel, type LogFormat } from "./logger.js";
import { optional } from "./optional.js";

import { cleanLines } from "./text.js";

const VERSION = "0.1.0";

/** Print an error the way the CLI does and set the exit code (2 for config errors, else 1). */
function fail(error: unknown): void {
  if (error instanceof ConfigError) {
    for (const issue of error.issues) process.stderr.write(formatConfigIssue(issue) + "\n");
    process.exitCode = 2;
    return;
  }
  const message = error instanceof Error ? error.message : String(error);
  // Messages may carry text from outside (the daemon's answer, a command's stderr).
  process.stderr.write(`uplinkd: ${cleanLines(message)}\n`);
  process.exitCode = 1;
}

/** A program with the CLI's name, help and exit codes. */
function newProgram(): Command {
  return (
    new Command()
      .name("uplinkd")
      .description("multi-uplink (multi-WAN) routing daemon")
      .version(VERSION)
      .showHelpAfterError()
      // Usage errors (unknown option, missing argument) exit 2, as documented; --help and --version 0.
      .exitOverride((error) => {
        process.exit(error.exitCode === 0 ? 0 : 2);
      })
  );
}

const program = newProgram().enablePositionalOptions();

/**
 * A command whose module is loaded only when the command runs, so that
 * `uplinkd run` and `uplinkd status` never load the lab. Every argument
 * after `name` (options and `--help` too) goes to a fresh program on which
 * `load`'s register function has put the real command.
 */
function lazyCommand(
  name: string,
  description: string,
  load: () => Promise<(program: Command) => void>,
): void {
  program
    .command(name)
    .description(description)
    .argument("[arguments...]")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .passThroughOptions()
    .action(async (args: string[]) => {
      const register = await load();
      const real = newProgram();
      register(real);
      await real.parseAsync([name, ...args], { from: "user" });
    });
}

/**
 * Loads a module of the lab (`./lab/...`), which the `uplinkd-lab` package
 * installs beside `uplinkd`.
 *
 * @throws {NotInstalledError} when the lab's module is not there (the
 *   `uplinkd` package alone); any other load error as it is.
 */
async function fromLab<T>(command: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const { code, message } = error as { code?: unknown; message?: unknown };
    if (code === "ERR_MODULE_NOT_FOUND" && String(message).includes("/lab/")) {
      throw new NotInstalledError(command, "uplinkd-lab", { cause: error });
    }
    throw error;
  }
}

/** Options of `uplinkd run`. */
interface RunOptions {
  config: string;
  keep?: boolean;
  logLevel?: LogLevel;
  logFormat?: LogFormat;
}

const configOption = () =>
  new Option("-c, --config <file>", "config file").default(DEFAULT_CONFIG_PATH);

program
  .command("run")
  .description("run the daemon in the foreground (SIGTERM: stop, SIGHUP: reload)")
  .addOption(configOption())
  .option("--keep", "on stop, keep the kernel state (overrides dataplane.on_stop)")
  .addOption(
    new Option(
      "--log-level <level>",
      "the lowest level logged (overrides log.level of the config; default info)",
    ).choices(LOG_LEVELS),
  )
  .addOption(
    new Option(
      "--log-format <format>",
      "text (time, level name, message) or json (one JSON object a line); default text on a terminal, else json",
    ).choices(["text", "json"]),
  )
  .action(async (opts: RunOptions) => {
    const log = createLogger({
      ...optional("level", opts.logLevel),
      ...optional("format", opts.logFormat),
    });
    const daemon = new Daemon({
      // The CLI's level wins over the config's.
      ...(opts.logLevel === undefined
        ? {
            setLogLevel: (level: LogLevel) => {
              setLogLevel(log, level);
            },
          }
        : {}),
      configPath: opts.config,
      // Off the event loop: probes and failover go on while a reload parses.
      loadConfig: (file: string) => loadConfigOffThread(file),
      kernel: new LinuxKernel(),
      log,
      createHealth: (options) => createUplinkHealth(options),
    });
    // Signals are handled from the start: a SIGTERM that arrives while the
    // daemon is still starting (systemctl stop right after start) waits for
    // the start to end, then stops cleanly, instead of Node's default of
    // dying on the spot with the kernel state half made.
    const startup = daemon.start();
    const signalled = { stop: false };
    const stop = (signal: string) => {
      if (signalled.stop) return;
      signalled.stop = true;
      log.info({ signal }, `${signal}: stopping`);
      startup
        .then(
          () => daemon.stop(opts.keep === true ? true : undefined),
          // A start that failed is cleaned up as below.
          () => daemon.stop(false),
        )
        .then(() => process.exit())
        .catch((error: unknown) => {
          fail(error);
          process.exit();
        });
    };
    process.on("SIGTERM", () => {
      stop("SIGTERM");
    });
    process.on("SIGINT", () => {
      stop("SIGINT");
    });
    process.on("SIGHUP", () => {
      startup.then(() => daemon.reload()).catch(() => undefined);
    });
    try {
      await startup;
    } catch (error) {
      fail(error);
      if (signalled.stop) return; // the stop above cleans up and exits
      // A router that could not start leaves no half-made state behind:
      // no table, rules or routes of uplinkd steer the LAN's traffic.
      await daemon.stop(false).catch((cleanup: unknown) => {
        fail(cleanup);
        process.exitCode = error instanceof ConfigError ? 2 : 1;
      });
      process.exit();
    }
  });

program
  .command("plan")
  .description(
    "show what the daemon would change in the kernel for the config; changes nothing. " +
      "Health and load come from the running daemon (its control socket); " +
      "with no daemon, every uplink is assumed healthy and no load",
  )
  .addOption(configOption())
  .option("--json", "print the plan as JSON")
  .action(async (opts: { config: string; json?: boolean }) => {
    try {
      const config = await loadConfig(opts.config);
      // On the router: what the kernel cannot serve, at its config line (those uplinks get no routes).
      const problems = (await kernelIssues(opts.config, config)).issues;
      for (const issue of problems) process.stderr.write(formatConfigIssue(issue) + "\n");
      if (problems.length > 0) process.exitCode = 2;
      const kernel = new LinuxKernel();
      const observed = await observe(kernel, config);
      const basis = await readPlanBasis(config.control.socket);
      const { health, load } = planHealth(basis);
      // `bandwidth: auto` as the daemon measured it, else as state_dir keeps it.
      const speedtests =
        basis.source === "daemon" && basis.inputs.speedtests !== undefined
          ? basis.inputs.speedtests
          : await readSavedSpeedtests(config);
      const inputs = desiredInputs(
        withMeasuredBandwidth(config, (name) => speedtests[name]),
        observed.links,
        scheduleSurroundings(config, observed.surroundings, Date.now()),
        health,
        load,
      );
      const views = inputs.views;
      const schedules = scheduleStatus(config, Date.now());
      const desired = desiredState(inputs);
      const dataplane = new Dataplane(kernel, {
        table: config.dataplane.table,
        protocol: config.dataplane.route_protocol,
      });
      const plan = await dataplane.plan(desired, views);
      const nftsetFile = config.dns?.dnsmasq?.nftset_file;
      const fragment = nftsetFile === undefined ? undefined : renderNftsetFile(config);
      if (opts.json === true) {
        process.stdout.write(
          JSON.stringify(
            {
              empty: planIsEmpty(plan),
              basis:
                basis.source === "daemon"
                  ? { source: "daemon", socket: basis.socket, ...basis.inputs }
                  : basis,
              ...plan,
              nftScript: desired.nftScript,
              schedules,
              ...(fragment === undefined ? {} : { dnsmasq: { nftsetFile, fragment } }),
            },
            null,
            2,
          ) + "\n",
        );
        return;
      }
      process.stdout.write(describePlanBasis(basis, config) + "\n");
      for (const line of formatSchedules(schedules)) process.stdout.write(line + "\n");
      // The fragment matters only with domain rules; without, it holds no nftset= line.
      if (nftsetFile !== undefined && fragment?.includes("nftset=") === true) {
        process.stdout.write(
          `dnsmasq: ${nftsetFile} holds:\n${fragment.trimEnd().replace(/^/gm, "  ")}\n`,
        );
      }
      if (planIsEmpty(plan)) {
        process.stdout.write("no changes: the kernel holds the desired state\n");
        return;
      }
      if (plan.nft.reload.length > 0) {
        process.stdout.write(
          `nft: load table inet ${config.dataplane.table} (${plan.nft.reload.join("; ")}):\n`,
        );
        process.stdout.write(desired.nftScript.replace(/^/gm, "  ") + "\n");
      }
      for (const [name, elements] of Object.entries(plan.nft.maps)) {
        process.stdout.write(`nft: map ${name} = { ${elements.join(", ")} }\n`);
      }
      for (const command of plan.ipCommands) process.stdout.write(`ip ${command}\n`);
    } catch (error) {
      fail(error);
    }
  });

registerControlCommands(program);
registerNotifyTestCommand(program);
registerCheckCommand(program);
registerInitCommand(program);
lazyCommand(
  "lab",
  "a lab in network namespaces: LAN client, router, one ISP per uplink, an internet with test hosts",
  async () => (await fromLab("lab", () => import("./lab/cli.js"))).registerLabCommands,
);
lazyCommand(
  "ha",
  "a redundant router pair: render keepalived and conntrackd configs",
  async () => (await import("./ha/cli.js")).registerHaCommands,
);
lazyCommand(
  "demo",
  "a narrated lab run: traffic, faults, IPv4 and IPv6 failovers and recoveries (root)",
  async () => (await fromLab("demo", () => import("./lab/demo.js"))).registerDemoCommand,
);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof UplinkdError) fail(error);
  else throw error;
}

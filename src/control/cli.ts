/**
 * The commands that talk to a running daemon over its control socket:
 *
 *     uplinkd status [--json]
 *     uplinkd events [--json] [-n N]
 *     uplinkd disable UPLINK [--drain] [--reason TEXT]
 *     uplinkd enable UPLINK
 *     uplinkd quota UPLINK [--set BYTES | --reset]
 *     uplinkd speedtest UPLINK [--json]
 *     uplinkd reload
 *     uplinkd notify-test [-c FILE]     (reads the config; no daemon needed)
 *
 * Each takes `--socket PATH`, or `-c FILE` to take `control.socket` from a
 * config file (default: /etc/uplinkd/uplinkd.yaml if it exists, else
 * /run/uplinkd/uplinkd.sock). When no daemon answers there, the error says
 * where it looked and how that socket was found. `reload -c FILE` refuses
 * (exit 2) when FILE is not the file the daemon runs. Exit codes: 0 done;
 * 1 the daemon cannot be reached or failed; 2 usage (unknown uplink, another
 * config file) or a config the daemon refused.
 */
import { readFile, realpath } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import { pino } from "pino";
import { parseDocument } from "yaml";
import { EXIT_CONFIG_INVALID } from "../errors.js";
import { parseBytes } from "../config/quota.js";
import type { QuotaStatus } from "../quota/meter.js";
import type { SpeedtestResult } from "../speedtest/state.js";
import { DEFAULT_CONFIG_PATH, loadConfig } from "../config/load.js";
import type { StatusDocument } from "./api.js";
import { ConfigError, ControlError } from "../errors.js";
import { notifyTest } from "../notify/index.js";
import { cleanLines } from "../text.js";
import type { EventsDocument, MaintenanceResult, ReloadResult } from "./api.js";
import { controlRequest } from "./client.js";
import {
  formatEvents,
  formatRoleEvents,
  formatMaintenance,
  formatReload,
  formatQuota,
  formatSpeedtest,
  formatStatus,
} from "./format.js";

/** Longest wait for a speed test's answer, ms: both directions at their longest (2 min each) and more. */
const SPEEDTEST_TIMEOUT_MS = 300_000;

/** The control socket when neither `--socket` nor a config names one. */
export const DEFAULT_SOCKET = "/run/uplinkd/uplinkd.sock";

/**
 * Write text for a person to stdout (`out`) or stderr (`err`): escape
 * sequences and control characters other than line breaks are removed
 * first (reasons, names and messages come from the daemon, which got some
 * of them from outside). `--json` output is written as it is.
 */
function out(text: string): void {
  process.stdout.write(cleanLines(text));
}

function err(text: string): void {
  process.stderr.write(cleanLines(text));
}

interface SocketOptions {
  socket?: string;
  config?: string;
}

/** A control socket and how it was found (for messages). */
export interface LocatedSocket {
  socket: string;
  /** e.g. `--socket`, `control.socket of /etc/uplinkd/uplinkd.yaml`, `the default: ...`. */
  how: string;
}

/**
 * The control socket a command talks to, and how it was found: `--socket`,
 * else `control.socket` of the config (`-c FILE`, or the default config
 * when it exists), else {@link DEFAULT_SOCKET}. The config is read
 * leniently (only that key, even from a file with YAML errors), so a
 * config with errors still finds the daemon, e.g. for `reload`.
 *
 * @throws {ConfigError} when `-c FILE` was given and cannot be read.
 */
export async function locateSocket(options: SocketOptions): Promise<LocatedSocket> {
  if (options.socket !== undefined) return { socket: options.socket, how: "--socket" };
  const file = options.config ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if (options.config === undefined) {
      return { socket: DEFAULT_SOCKET, how: `the default: no config at ${file}` };
    }
    const message = `cannot read the config: ${(error as Error).message}`;
    throw new ConfigError([{ file, line: 1, col: 1, path: "", message }]);
  }
  // Errors or not, the document holds what could be read.
  const doc = parseDocument(text);
  const socket: unknown = doc.getIn(["control", "socket"]);
  const broken = doc.errors.length > 0 ? " (the file has YAML errors; this key could be read)" : "";
  if (typeof socket === "string" && socket !== "") {
    return { socket, how: `control.socket of ${file}${broken}` };
  }
  return {
    socket: DEFAULT_SOCKET,
    how:
      doc.errors.length > 0
        ? `the default: ${file} cannot be parsed and no control.socket could be read from it`
        : `the default: ${file} has no control.socket`,
  };
}

/** The control socket a command talks to (see {@link locateSocket}). */
export async function resolveSocket(options: SocketOptions): Promise<string> {
  return (await locateSocket(options)).socket;
}

/** Whether a request failed because nothing listens at the socket (no file, refused, not a socket). */
function noDaemon(error: unknown): boolean {
  const code = ((error as { cause?: unknown }).cause as NodeJS.ErrnoException | undefined)?.code;
  return (
    error instanceof ControlError && ["ENOENT", "ECONNREFUSED", "ENOTSOCK"].includes(code ?? "")
  );
}

/**
 * Requests to the daemon at the socket `options` lead to. When nothing
 * listens there, the error says where it looked, how that socket was
 * found, and what to do.
 * @throws {ConfigError} as {@link locateSocket}.
 */
async function controlAt(
  options: SocketOptions,
): Promise<
  (method: "GET" | "POST", path: string, body?: unknown, timeoutMs?: number) => Promise<unknown>
> {
  const { socket, how } = await locateSocket(options);
  if (how.startsWith("the default: ") && how.includes("cannot be parsed")) {
    err(`uplinkd: ${how.replace("the default: ", "")}; trying ${socket}\n`);
  }
  return async (method, path, body, timeoutMs) => {
    try {
      return await controlRequest(socket, method, path, body, timeoutMs);
    } catch (error) {
      if (!noDaemon(error)) throw error;
      throw new ControlError(
        `no daemon at ${socket} (${how}): is it running? use -s PATH or -c CONFIG`,
        { cause: error },
      );
    }
  };
}

/** A refused config or an unknown uplink: its message as is, exit 2; others are rethrown. */
function usageOrRethrow(error: unknown): void {
  if (
    error instanceof ControlError &&
    (error.remoteCode === "UPLINKD_ERR_CONFIG" ||
      error.remoteCode === "UPLINKD_ERR_UNKNOWN_UPLINK" ||
      error.remoteCode === "UPLINKD_ERR_NO_QUOTA")
  ) {
    const prefix = error.remoteCode === "UPLINKD_ERR_CONFIG" ? "" : "uplinkd: ";
    err(`${prefix}${error.message.replace(/^POST \S+: \d+ /, "")}\n`);
    process.exitCode = EXIT_CONFIG_INVALID;
    return;
  }
  throw error;
}

/** Codes of errors by which the kernel refused a state (a failed or hung command, a failed verify). */
function kernelRefusal(code: string | undefined): boolean {
  return code !== undefined && /^UPLINKD_ERR_(KERNEL_|VERIFY)/.test(code);
}

function withSocket(command: Command): Command {
  return command
    .option("-s, --socket <path>", "control socket (default: control.socket of the config)")
    .option("-c, --config <file>", "find the control socket in this config file");
}

/**
 * Adds `status`, `events`, `disable`, `enable` and `reload` to `program`.
 * Errors other than a refused config or an unknown uplink are thrown
 * (ControlError) for the program's handler (exit 1).
 */
export function registerControlCommands(program: Command): void {
  withSocket(
    program
      .command("status")
      .description("state, loss, RTT, connections and bytes of every uplink, from the daemon")
      .option("--json", "print the status document as JSON"),
  ).action(async (opts: SocketOptions & { json?: boolean }) => {
    const ask = await controlAt(opts);
    const status = (await ask("GET", "/status")) as StatusDocument;
    if (opts.json === true) process.stdout.write(JSON.stringify(status, null, 2) + "\n");
    else out(formatStatus(status));
  });

  withSocket(
    program
      .command("events")
      .description("recent uplink transitions with their reasons, oldest first")
      .option("--json", "print them as JSON")
      .option("-n, --limit <n>", "how many (most recent)", "50"),
  ).action(async (opts: SocketOptions & { json?: boolean; limit: string }) => {
    const limit = Number(opts.limit);
    if (!Number.isInteger(limit) || limit < 1) {
      err(`uplinkd: --limit takes a whole number >= 1, not ${opts.limit}\n`);
      process.exitCode = EXIT_CONFIG_INVALID;
      return;
    }
    const ask = await controlAt(opts);
    const doc = (await ask("GET", `/events?limit=${limit}`)) as EventsDocument;
    if (opts.json === true) process.stdout.write(JSON.stringify(doc, null, 2) + "\n");
    else out(formatEvents(doc.events) + formatRoleEvents(doc.roles ?? []));
  });

  withSocket(
    program
      .command("disable")
      .description(
        "maintenance: the uplink takes no new connections; existing ones keep flowing unless --drain",
      )
      .argument("<uplink>", "the uplink's name")
      .option("--drain", "also delete its conntrack entries: its existing connections end")
      .option("--reason <text>", "why, for the event log"),
  ).action(async (uplink: string, opts: SocketOptions & { drain?: boolean; reason?: string }) => {
    const ask = await controlAt(opts);
    try {
      const body = { drain: opts.drain === true, ...(opts.reason ? { reason: opts.reason } : {}) };
      const result = (await ask(
        "POST",
        `/uplinks/${encodeURIComponent(uplink)}/disable`,
        body,
        30_000,
      )) as MaintenanceResult;
      out(formatMaintenance(result, "disable"));
    } catch (error) {
      usageOrRethrow(error);
    }
  });

  withSocket(
    program
      .command("enable")
      .description("end maintenance: the uplink is back in the state its probes found")
      .argument("<uplink>", "the uplink's name"),
  ).action(async (uplink: string, opts: SocketOptions) => {
    const ask = await controlAt(opts);
    try {
      const result = (await ask(
        "POST",
        `/uplinks/${encodeURIComponent(uplink)}/enable`,
        undefined,
        30_000,
      )) as MaintenanceResult;
      out(formatMaintenance(result, "enable"));
    } catch (error) {
      usageOrRethrow(error);
    }
  });

  withSocket(
    program
      .command("quota")
      .description(
        "an uplink's data quota this period; --set BYTES when the provider's meter says otherwise, --reset for 0",
      )
      .argument("<uplink>", "the uplink's name")
      .option("--set <bytes>", "set the usage of this period (500MB, 20GiB, or bytes)")
      .option("--reset", "set the usage of this period to 0"),
  ).action(async (uplink: string, opts: SocketOptions & { set?: string; reset?: boolean }) => {
    if (opts.set !== undefined && opts.reset === true) {
      err("uplinkd: give --set or --reset, not both\n");
      process.exitCode = EXIT_CONFIG_INVALID;
      return;
    }
    let bytes: number | undefined = opts.reset === true ? 0 : undefined;
    if (opts.set !== undefined) {
      try {
        bytes = parseBytes(opts.set);
      } catch (error) {
        err(`uplinkd: --set: ${(error as Error).message}\n`);
        process.exitCode = EXIT_CONFIG_INVALID;
        return;
      }
    }
    const socket = await resolveSocket(opts);
    try {
      let quota: QuotaStatus | null | undefined;
      if (bytes === undefined) {
        const status = (await controlRequest(socket, "GET", "/status")) as StatusDocument;
        const u = status.uplinks.find((x) => x.name === uplink);
        if (u === undefined) {
          err(`uplinkd: no uplink named ${JSON.stringify(uplink)}\n`);
          process.exitCode = EXIT_CONFIG_INVALID;
          return;
        }
        quota = u.quota;
      } else {
        quota = (await controlRequest(
          socket,
          "POST",
          `/uplinks/${encodeURIComponent(uplink)}/quota`,
          { used_bytes: bytes },
          30_000,
        )) as QuotaStatus;
      }
      out(
        quota == null
          ? `${uplink}: no quota\n`
          : `${uplink}: ${formatQuota(quota)} (${quota.used_bytes} of ${quota.limit_bytes} bytes, ${quota.period_start} to ${quota.period_end})\n`,
      );
    } catch (error) {
      usageOrRethrow(error);
    }
  });

  withSocket(
    program
      .command("speedtest")
      .description(
        "measure an uplink's download and upload speed and its RTT under load, through that uplink alone (speedtest section of the config)",
      )
      .argument("<uplink>", "the uplink's name")
      .option("--json", "print the result as JSON"),
  ).action(async (uplink: string, opts: SocketOptions & { json?: boolean }) => {
    const socket = await resolveSocket(opts);
    try {
      const result = (await controlRequest(
        socket,
        "POST",
        `/uplinks/${encodeURIComponent(uplink)}/speedtest`,
        undefined,
        SPEEDTEST_TIMEOUT_MS,
      )) as SpeedtestResult;
      process.stdout.write(
        opts.json === true ? `${JSON.stringify(result, null, 2)}\n` : formatSpeedtest(result),
      );
    } catch (error) {
      if (error instanceof ControlError && error.remoteCode === "UPLINKD_ERR_SPEEDTEST") {
        process.stderr.write(`uplinkd: ${error.message.replace(/^POST \S+: \d+ /, "")}\n`);
        process.exitCode = 1;
        return;
      }
      usageOrRethrow(error);
    }
  });

  withSocket(
    program
      .command("reload")
      .description(
        "re-read the daemon's config and apply what changed (as SIGHUP); a config with errors is refused",
      ),
  ).action(async (opts: SocketOptions) => {
    const ask = await controlAt(opts);
    if (opts.config !== undefined) {
      // The daemon re-reads its own file: refuse to pretend another one was loaded.
      const running = ((await ask("GET", "/status")) as StatusDocument).config;
      const [asked, own] = await Promise.all(
        [opts.config, running].map((f) => realpath(f).catch(() => resolve(f))),
      );
      if (asked !== own) {
        err(
          `uplinkd: the daemon runs ${running}, not ${opts.config}: reload re-reads ${running}; ` +
            `edit that file, or restart the daemon with -c ${opts.config}\n`,
        );
        process.exitCode = EXIT_CONFIG_INVALID;
        return;
      }
    }
    try {
      const result = (await ask("POST", "/reload", undefined, 60_000)) as ReloadResult;
      out(formatReload(result));
    } catch (error) {
      if (error instanceof ControlError && kernelRefusal(error.remoteCode)) {
        // The kernel refused the new state: the daemon put the old one back.
        err(
          `uplinkd: the kernel refused the new config: ${error.message.replace(/^POST \S+: \d+ /, "")}\n`,
        );
        process.exitCode = 1;
      } else usageOrRethrow(error);
      err("uplinkd: reload refused; the daemon keeps its running config\n");
    }
  });
}

/**
 * Adds `notify-test [-c FILE]`: sends a test notification through every
 * channel of the config's `notify` section, one line per channel. Exit 0
 * when every channel delivered, 1 when one failed, 2 for an invalid config
 * or one without channels.
 */
export function registerNotifyTestCommand(program: Command): void {
  program
    .command("notify-test")
    .description(
      "send a test notification through every configured channel (email, webhooks, hooks)",
    )
    .option("-c, --config <file>", "config file", DEFAULT_CONFIG_PATH)
    .option("-v, --verbose", "also print the notifier's log (JSON lines) on stderr")
    .action(async (opts: { config: string; verbose?: boolean }) => {
      const config = await loadConfig(opts.config);
      const notify = config.notify;
      const channels =
        notify === undefined
          ? 0
          : (notify.email === undefined ? 0 : 1) + notify.webhooks.length + notify.hooks.length;
      if (notify === undefined || channels === 0) {
        err(
          `uplinkd: ${opts.config} configures no notification channel (notify: email, webhooks, hooks)\n`,
        );
        process.exitCode = EXIT_CONFIG_INVALID;
        return;
      }
      const log = pino({ level: opts.verbose === true ? "debug" : "silent" }, pino.destination(2));
      const results = await notifyTest(notify, log, {
        interfaceOf: (uplink) => config.uplinks.find((u) => u.name === uplink)?.interface,
      });
      for (const r of results) {
        const tries = `${r.attempts} attempt${r.attempts === 1 ? "" : "s"}, ${Math.round(r.durationMs)} ms`;
        out(
          r.ok
            ? `ok      ${r.channel} ${r.target} (${tries})\n`
            : `FAILED  ${r.channel} ${r.target} (${tries}): ${r.error ?? "?"}\n`,
        );
      }
      if (results.some((r) => !r.ok)) process.exitCode = 1;
    });
}

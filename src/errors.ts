/**
 * Every error uplinkd throws on purpose, in one catalogue. Each has a stable
 * `code` that callers (CLI, control API, tests) match on; a code is never
 * reused for another meaning.
 */

/** Base of all uplinkd errors. `code` is stable; `message` is for humans. */
export class UplinkdError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** One problem in a config file, located at FILE:LINE:COL (1-based). */
export interface ConfigIssue {
  file: string;
  line: number;
  col: number;
  /** Dotted key path, e.g. `uplinks.1.gateway`; empty for the document itself. */
  path: string;
  message: string;
}

/** Formats one issue as `FILE:LINE:COL: path: message` (the contract of `uplinkd check`). */
export function formatConfigIssue(issue: ConfigIssue): string {
  const where = `${issue.file}:${issue.line}:${issue.col}`;
  return issue.path ? `${where}: ${issue.path}: ${issue.message}` : `${where}: ${issue.message}`;
}

/** A config file that cannot be used: every issue found, all at once. */
export class ConfigError extends UplinkdError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super("UPLINKD_ERR_CONFIG", issues.map(formatConfigIssue).join("\n"));
    this.issues = issues;
  }
}

/** A kernel command (ip, nft, conntrack) failed; names the command and the kernel's message. */
export class KernelCommandError extends UplinkdError {
  readonly command: string;
  readonly exitCode: number | null;
  readonly stderr: string;
  /**
   * @param message replaces the default `` `COMMAND` failed (exit N): STDERR ``.
   * @param code replaces `UPLINKD_ERR_KERNEL_COMMAND` (for subclasses).
   */
  constructor(
    command: string,
    exitCode: number | null,
    stderr: string,
    options: { message?: string; code?: string } = {},
  ) {
    const said = stderr.trim() || "(no message)";
    super(
      options.code ?? "UPLINKD_ERR_KERNEL_COMMAND",
      options.message ?? `\`${command}\` failed (exit ${exitCode ?? "signal"}): ${said}`,
    );
    this.command = command;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/**
 * A kernel command did not finish within its timeout and was killed
 * (SIGKILL to its whole process group). A KernelCommandError too, so callers
 * that handle failed commands handle hung ones alike; `exitCode` is null and
 * `stderr` holds what the command printed before it was killed.
 * Code `UPLINKD_ERR_KERNEL_COMMAND_TIMEOUT`.
 */
export class KernelCommandTimeoutError extends KernelCommandError {
  /** The timeout that expired, ms. */
  readonly timeoutMs: number;
  constructor(command: string, timeoutMs: number, stderr = "") {
    super(command, null, stderr, {
      code: "UPLINKD_ERR_KERNEL_COMMAND_TIMEOUT",
      message: `\`${command}\` did not finish within ${timeoutMs} ms and was killed`,
    });
    this.timeoutMs = timeoutMs;
  }
}

/**
 * A kernel tool printed something uplinkd cannot read, e.g. a name where
 * `ip -N` promises a number. Names the command and the value.
 * Code `UPLINKD_ERR_KERNEL_OUTPUT`.
 */
export class KernelOutputError extends UplinkdError {
  readonly command: string;
  constructor(command: string, message: string) {
    super("UPLINKD_ERR_KERNEL_OUTPUT", `\`${command}\` printed ${message}`);
    this.command = command;
  }
}

/** After applying, the kernel does not hold what was rendered. */
export class DataplaneVerifyError extends UplinkdError {
  readonly differences: readonly string[];
  constructor(differences: readonly string[]) {
    super(
      "UPLINKD_ERR_VERIFY",
      `kernel state differs from the desired state after apply:\n  ${differences.join("\n  ")}`,
    );
    this.differences = differences;
  }
}

/** The control socket could not be reached or answered with an error. */
export class ControlError extends UplinkdError {
  /** HTTP status of the daemon's answer; undefined when there was none. */
  readonly status: number | undefined;
  /** The `code` of the daemon's error (e.g. `UPLINKD_ERR_CONFIG` for a refused reload). */
  readonly remoteCode: string | undefined;
  constructor(
    message: string,
    options?: { cause?: unknown; status?: number; remoteCode?: string | undefined },
  ) {
    super("UPLINKD_ERR_CONTROL", message, options);
    this.status = options?.status;
    this.remoteCode = options?.remoteCode;
  }
}

/** A control request named an uplink the config does not have. */
export class UnknownUplinkError extends UplinkdError {
  constructor(uplink: string, known: readonly string[]) {
    super(
      "UPLINKD_ERR_UNKNOWN_UPLINK",
      `no uplink named ${JSON.stringify(uplink)}; the config has ${known.join(", ") || "none"}`,
    );
  }
}

/** `uplinkd quota UPLINK` named an uplink without `quota` in the config. Code `UPLINKD_ERR_NO_QUOTA`. */
export class NoQuotaError extends UplinkdError {
  constructor(uplink: string) {
    super(
      "UPLINKD_ERR_NO_QUOTA",
      `uplink ${JSON.stringify(uplink)} has no quota; add uplinks[].quota to the config`,
    );
  }
}

/**
 * A speed test was refused (unknown direction URLs, uplink down, quota used
 * up, another test running) or failed (its endpoint refused every request).
 * Code `UPLINKD_ERR_SPEEDTEST`.
 */
export class SpeedtestError extends UplinkdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("UPLINKD_ERR_SPEEDTEST", message, options);
  }
}

/**
 * A command whose part of uplinkd is not installed: `uplinkd lab` and
 * `uplinkd demo` come with the `uplinkd-lab` package, beside `uplinkd`.
 * Code `UPLINKD_ERR_NOT_INSTALLED`.
 */
export class NotInstalledError extends UplinkdError {
  constructor(command: string, packageName: string, options?: { cause?: unknown }) {
    super(
      "UPLINKD_ERR_NOT_INSTALLED",
      `uplinkd ${command} comes with the ${packageName} package, which is not installed ` +
        `(apt install ./${packageName}_VERSION_ARCH.deb, built by npm run package)`,
      options,
    );
  }
}

/**
 * Health settings or a probe definition that cannot be used (e.g. a recovery
 * threshold above its failure threshold, an ICMP probe without a fwmark).
 * Code `UPLINKD_ERR_HEALTH`.
 */
export class HealthError extends UplinkdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("UPLINKD_ERR_HEALTH", message, options);
  }
}

/** The kinds of notification channel. */
export type ChannelKind = "email" | "webhook" | "hook";

/**
 * A delivery on one channel failed. `target` names the channel as logs show
 * it (`smtp.example.net:587`, a webhook's name or origin, a hook's path) and
 * never holds a secret. `retryable` tells whether another attempt may succeed
 * (network errors, timeouts, SMTP 4xx, HTTP 408/429/5xx).
 * Code `UPLINKD_ERR_NOTIFY`.
 */
export class NotifyError extends UplinkdError {
  readonly channel: ChannelKind;
  readonly target: string;
  readonly retryable: boolean;
  constructor(
    channel: ChannelKind,
    target: string,
    message: string,
    options: { retryable: boolean; cause?: unknown; code?: string },
  ) {
    super(options.code ?? "UPLINKD_ERR_NOTIFY", `${channel} ${target}: ${message}`, {
      cause: options.cause,
    });
    this.channel = channel;
    this.target = target;
    this.retryable = options.retryable;
  }
}

/**
 * An attempt on one channel did not finish within its `timeout` (ms); always
 * retryable. `what` names the step, e.g. `POST`, `SMTP delivery`, `the script`.
 * Code `UPLINKD_ERR_NOTIFY_TIMEOUT`.
 */
export class NotifyTimeoutError extends NotifyError {
  readonly timeoutMs: number;
  constructor(channel: ChannelKind, target: string, timeoutMs: number, what: string) {
    super(channel, target, `${what} did not finish within ${timeoutMs}ms`, {
      retryable: true,
      code: "UPLINKD_ERR_NOTIFY_TIMEOUT",
    });
    this.timeoutMs = timeoutMs;
  }
}

/**
 * A value that would change the meaning of a generated file or command
 * (a quote in an nft string, `#` in an `ip -batch` word, a newline in a
 * keepalived or conntrackd line). The schema refuses such values first;
 * this is the renderers' own guard.
 */
export class UnsafeTextError extends UplinkdError {
  /** What the value was for (`nft string`, `ip -batch word`, `keepalived value`). */
  readonly context: string;
  constructor(context: string, value: string) {
    super(
      "UPLINKD_ERR_UNSAFE_TEXT",
      `refusing to write ${JSON.stringify(value)} into ${context}: it holds characters that would change its meaning`,
    );
    this.context = context;
  }
}

/** Exit code of `uplinkd check` (and of any command) when the config is invalid. */
export const EXIT_CONFIG_INVALID = 2;

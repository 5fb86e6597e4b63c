/**
 * The daemon's log: one line per event, readable text on a terminal and
 * JSON otherwise (journald, a pipe, a file), at a level the CLI's
 * `--log-level` or the config's `log.level` sets.
 *
 * JSON lines are pino's: `level` (a number: 10 trace, 20 debug, 30 info,
 * 40 warn, 50 error, 60 fatal), `time` (ISO 8601, UTC), `pid`, `msg`, and the
 * event's own fields. Text lines carry the local time (24 h), the level's
 * name and the message.
 */
import { writeSync } from "node:fs";
import { pino, type DestinationStream, type Logger } from "pino";
import { prettyFactory, type PrettyOptions } from "pino-pretty";
import type { LogLevel } from "./log-level.js";

/** How log lines are written: `text` for a person, `json` for a machine. */
export type LogFormat = "text" | "json";

/** Options of createLogger. */
export interface LoggerOptions {
  /** The lowest level written (default `info`). */
  level?: LogLevel;
  /** Default: `text` when the destination is a terminal, else `json`. */
  format?: LogFormat;
  /** Where lines go (default stdout, file descriptor 1). */
  destination?: NodeJS.WritableStream & { isTTY?: boolean };
}

/** Every logger createLogger made, with the child loggers made from it since. */
const families = new WeakMap<Logger, Set<WeakRef<Logger>>>();

/**
 * The daemon's root logger. Child loggers made from it follow setLogLevel.
 * Text mode formats and writes each line synchronously (no worker thread, no
 * stream buffer), so nothing is lost when the process exits.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? process.stdout;
  const format = options.format ?? (destination.isTTY === true ? "text" : "json");
  const level = options.level ?? "info";
  const children = new Set<WeakRef<Logger>>();
  const settings = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      // One `time` per line (strict JSON parsers refuse two): an event's own is `at`.
      log: (fields: Record<string, unknown>) => {
        if (!Object.hasOwn(fields, "time")) return fields;
        const { time: at, ...rest } = fields;
        return { ...rest, at };
      },
    },
    onChild: (child: Logger) => {
      children.add(new WeakRef(child));
    },
  };
  const log =
    format === "text"
      ? pino(settings, prettyDestination(level, destination))
      : pino(settings, destination === process.stdout ? pino.destination(1) : destination);
  families.set(log, children);
  return log;
}

/** A destination that turns each JSON line into text (pino-pretty) and writes it at once. */
function prettyDestination(
  level: LogLevel,
  destination: NodeJS.WritableStream & { isTTY?: boolean },
): DestinationStream {
  const detail = level === "debug" || level === "trace";
  const options: PrettyOptions = {
    colorize: destination.isTTY === true,
    // Local time, 24 hours, milliseconds: "14:51:34.120".
    translateTime: "SYS:HH:MM:ss.l",
    ignore: "pid,hostname",
    // The message says what happened; the fields behind it are for machines (and debug).
    hideObject: !detail,
    singleLine: true,
  };
  const prettify = prettyFactory(options);
  return {
    write: (line: string) => {
      const text = prettify(line);
      if (destination === process.stdout) writeSync(1, text);
      else destination.write(text);
    },
  };
}
/**
 * Set the level of `log` and of every child logger made from it (pino's
 * children keep the level they were made with otherwise).
 */
export function setLogLevel(log: Logger, level: LogLevel): void {
  log.level = level;
  const children = families.get(log);
  if (children === undefined) return;
  for (const ref of children) {
    const child = ref.deref();
    if (child === undefined) children.delete(ref);
    else child.level = level;
  }
}

/** The levels of the daemon's log (config `log.level`, `uplinkd run --log-level`). */

/** The levels a user may choose, most severe first; `silent` logs nothing. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** One of LOG_LEVELS. */
export type LogLevel = (typeof LOG_LEVELS)[number];

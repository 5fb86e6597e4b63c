/**
 * Worker thread of {@link loadConfigOffThread}: reads and validates one
 * config file with `loadConfig` and posts the outcome to its parent, then
 * ends. Messages: in `{ file }`; out `{ ok: true, config }`,
 * `{ ok: false, issues }` (a ConfigError's issues) or
 * `{ ok: false, message }` (anything else thrown).
 */
import { parentPort, workerData } from "node:worker_threads";
import { ConfigError } from "../errors.js";
import { loadConfig } from "./load.js";

const { file } = workerData as { file: string };
try {
  parentPort?.postMessage({ ok: true, config: await loadConfig(file) });
} catch (error) {
  parentPort?.postMessage(
    error instanceof ConfigError
      ? { ok: false, issues: error.issues }
      : { ok: false, message: error instanceof Error ? error.message : String(error) },
  );
}

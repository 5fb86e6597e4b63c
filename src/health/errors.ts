/**
 * Errors of the health checks. Kept here until they join the catalogue in
 * `src/errors.ts`; the `code` is stable either way.
 */
import { UplinkdError } from "../errors.js";

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

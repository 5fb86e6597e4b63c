/**
 * The lab's error: an operation of `uplinkd lab` or the test harness failed
 * (a namespace, a veth, a helper process). Code `UPLINKD_ERR_LAB`.
 */
import { UplinkdError } from "../errors.js";

/** A lab operation failed (namespace, veth, process); the message names which and why. */
export class LabError extends UplinkdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("UPLINKD_ERR_LAB", message, options);
  }
}

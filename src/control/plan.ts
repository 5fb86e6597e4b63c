/**
 * What `uplinkd plan` builds the desired state from besides the config and
 * the links: the running daemon's health and load (`GET /inputs` on its
 * control socket), or, with no daemon, every uplink healthy and no load.
 */
import type { Config } from "../config/schema.js";
import type { InputsDocument } from "./api.js";
import { controlRequest } from "./client.js";
import { ControlError } from "../errors.js";
import type { LoadSnapshot } from "../policy/load.js";
import { ASSUMED_HEALTHY, type HealthReading } from "../controller/desired.js";

/** Where the health and load of a plan come from. */
export type PlanBasis =
  | {
      source: "daemon";
      /** The control socket asked. */
      socket: string;
      inputs: InputsDocument;
    }
  | {
      source: "assumed";
      socket: string;
      /** Why no daemon answered (the socket's error). */
      reason: string;
    };

/**
 * The health a daemon reported (`GET /inputs`): uplinks or families it does
 * not know (a config changed since its last reload) are `init`, as the
 * daemon's own reload would start them.
 */
export function healthOfInputs(inputs: InputsDocument): HealthReading {
  const of = (uplink: string, family: 4 | 6) => inputs.uplinks[uplink]?.[family === 6 ? "6" : "4"];
  return {
    state: (uplink, family) => of(uplink, family)?.state ?? "init",
    probed: (uplink, family) => of(uplink, family)?.probed,
  };
}

/** The health and load of a plan on `basis`. */
export function planHealth(basis: PlanBasis): {
  health: HealthReading;
  load: LoadSnapshot | undefined;
} {
  if (basis.source === "assumed") return { health: ASSUMED_HEALTHY, load: undefined };
  return { health: healthOfInputs(basis.inputs), load: basis.inputs.load ?? undefined };
}

/**
 * Ask the daemon on `socket` for its health and load.
 * @returns `assumed` when no daemon answers on the socket (no file, refused).
 * @throws {ControlError} when a daemon answers with an error or not in time.
 */
export async function readPlanBasis(socket: string, timeoutMs = 5000): Promise<PlanBasis> {
  try {
    const inputs = (await controlRequest(
      socket,
      "GET",
      "/inputs",
      undefined,
      timeoutMs,
    )) as InputsDocument;
    return { source: "daemon", socket, inputs };
  } catch (error) {
    const code = (error as { cause?: { code?: unknown } }).cause?.code;
    if (error instanceof ControlError && (code === "ENOENT" || code === "ECONNREFUSED")) {
      return { source: "assumed", socket, reason: code };
    }
    throw error;
  }
}

/**
 * One line saying what the plan assumed, e.g. `health and load: from the
 * daemon at /run/uplinkd.sock: isp1 down, isp2 up, isp2 IPv6 up; load: none`.
 */
export function describePlanBasis(basis: PlanBasis, config: Config): string {
  if (basis.source === "assumed") {
    return (
      `health and load: no daemon at ${basis.socket} (${basis.reason}); ` +
      "assuming every uplink healthy and no load"
    );
  }
  const states = config.uplinks.flatMap((u) => {
    const families = basis.inputs.uplinks[u.name];
    if (families === undefined) return [`${u.name} new (counted healthy)`];
    return (["4", "6"] as const).flatMap((f) => {
      const h = families[f];
      return h === undefined ? [] : [`${u.name}${f === "6" ? " IPv6" : ""} ${h.state}`];
    });
  });
  const load = basis.inputs.load;
  const loadText =
    load === null
      ? "none"
      : Object.entries(load.throughput)
          .map(
            ([name, t]) => `${name} ${Math.round(t.down / 1000)}/${Math.round(t.up / 1000)} kbit/s`,
          )
          .join(", ") + (load.full.length > 0 ? `; full: ${load.full.join(", ")}` : "");
  return (
    `health and load: from the daemon at ${basis.socket}: ${states.join(", ")}; ` +
    `load (down/up): ${loadText || "none"}`
  );
}

/**
 * Shapes of the control API's answers besides the status document
 * (`StatusDocument` in daemon.ts) and transitions (`Transition`).
 *
 * | method | path | access | answer |
 * |---|---|---|---|
 * | GET | /status | read | StatusDocument |
 * | GET | /events?limit=N | read | {@link EventsDocument}, oldest first |
 * | GET | /events/stream | read | server-sent events: {@link StreamEvent} |
 * | GET | /history | read | {@link HistoryDocument} |
 * | GET | /metrics | read | Prometheus text |
 * | POST | /reload | write | {@link ReloadResult}; 422 with FILE:LINE:COL lines when refused |
 * | POST | /uplinks/NAME/disable | write | {@link MaintenanceResult}; body `{"drain": true}` optional |
 * | POST | /uplinks/NAME/enable | write | {@link MaintenanceResult} |
 * | GET | / and /dashboard/* | none | the dashboard (holds no data) |
 *
 * Errors: `{ "error": message, "code": "UPLINKD_ERR_..." }` with 400 (bad
 * body), 401 (no or unknown token), 403 (read-only token), 404 (unknown
 * uplink or path), 413 (body above `MAX_BODY_BYTES`, 16 KiB), 422 (config
 * refused), 500 (anything else).
 */
import type { StatusDocument } from "../daemon.js";
import type { Transition, UplinkState } from "../uplink-health.js";

/** `GET /events`. */
export interface EventsDocument {
  /** Recent transitions, oldest first. */
  events: readonly Transition[];
}

/** `POST /reload`. */
export interface ReloadResult {
  ok: true;
  /** The config file that was read. */
  config: string;
  uplinks: string[];
  /** What changed, one `path: before -> after` line each; empty when nothing did. */
  changes: string[];
}

/** `POST /uplinks/NAME/disable` and `/enable`. */
export interface MaintenanceResult {
  uplink: string;
  state: UplinkState;
  /** The state changed (false when it was already disabled, or already enabled). */
  changed: boolean;
  /** Conntrack entries deleted by `drain`; 0 without. */
  drained: number;
}

/** Options of `POST /uplinks/NAME/disable`. */
export interface DisableOptions {
  /** Also delete the uplink's conntrack entries: its existing connections end. */
  drain: boolean;
  /** Why, for the event log (default "disabled by the operator"). */
  reason?: string | undefined;
}

/** One sample of the health history (for the dashboard's charts). */
export interface HistorySample {
  /** Epoch ms. */
  t: number;
  uplinks: { name: string; state: UplinkState; rtt: number | null; loss: number | null }[];
}

/** `GET /history`: one sample per `intervalMs`, oldest first. */
export interface HistoryDocument {
  intervalMs: number;
  samples: readonly HistorySample[];
}

/** What `GET /events/stream` sends: `event: status` and `event: transition`. */
export type StreamEvent =
  { type: "status"; data: StatusDocument } | { type: "transition"; data: Transition };

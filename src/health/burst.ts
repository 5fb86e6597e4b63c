/**
 * A probe burst: a few ICMP echo requests to one target in quick
 * succession, with the uplink's fwmark, to confirm or clear a suspicion at
 * once (the passive signal, see passive.ts) instead of waiting for the next
 * rounds. One short-lived iputils ping:
 * `ping -n -c COUNT -i SPACING -W TIMEOUT -m MARK HOST`, its reply lines
 * parsed as the long-running prober's are (ping.ts).
 */
import type { Clock } from "../clock.js";
import { parsePingLine, pingArgs } from "./ping.js";
import type { ProcessSpawner } from "../process/spawn.js";

/** Options of {@link pingBurst}. */
export interface PingBurstOptions {
  host: string;
  mark: number;
  /** Probes to send, >= 1. */
  count: number;
  /** Time between them, ms (iputils' minimum for root: 2 ms; default 20). */
  spacingMs?: number;
  /** A probe unanswered after this is lost, ms. */
  timeoutMs: number;
  clock: Clock;
  spawner: ProcessSpawner;
  /** Path of iputils ping; default `ping`. */
  pingPath?: string;
}

/**
 * Sends the burst and resolves with each probe's RTT in ms (index k: the
 * k-th probe), or null when it got no answer within `timeoutMs` (an ICMP
 * error, a late answer, none). Never rejects: a ping that cannot start
 * gives all nulls. ping is killed (SIGKILL) if it outlives the burst by
 * 500 ms.
 */
export function pingBurst(options: PingBurstOptions): Promise<(number | null)[]> {
  const spacing = options.spacingMs ?? 20;
  const rtts: (number | null)[] = new Array<number | null>(options.count).fill(null);
  const args = pingArgs(options.host, spacing, options.timeoutMs, options.mark);
  args.splice(args.length - 1, 0, "-c", String(options.count));
  return new Promise((resolve) => {
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      options.clock.clearTimeout(killer);
      resolve(rtts);
    };
    const child = options.spawner(options.pingPath ?? "ping", args);
    const killer = options.clock.setTimeout(
      () => {
        child.kill("SIGKILL");
        finish();
      },
      (options.count - 1) * spacing + options.timeoutMs + 500,
    );
    child.onStdoutLine((line) => {
      const parsed = parsePingLine(line);
      if (parsed.kind !== "reply" || parsed.duplicate || parsed.rttMs === null) return;
      const k = parsed.seq - 1;
      if (k >= 0 && k < rtts.length && parsed.rttMs <= options.timeoutMs) rtts[k] = parsed.rttMs;
    });
    child.onStderrLine(() => undefined);
    child.onExit(() => {
      finish();
    });
  });
}

/**
 * Tunnels (`tunnels:`): the router's own VPN flows, each steered by its
 * policy in the output chain (see `tunnelLine` in dataplane/nft.ts). This
 * part follows which uplink each tunnel is on and clears the tunnel's
 * conntrack entry when that uplink changes, so the next packet of the
 * tunnel is steered afresh and masqueraded to the new uplink's address:
 * the peer sees the new address at once (WireGuard roams to the source
 * of the last authenticated packet).
 *
 * - start (or a tunnel new to the config): its flow is cleared once, so an
 *   entry made before uplinkd ran (another uplink's NAT) does not linger;
 * - failover: its uplink failed (usability bad, or no route) or left the
 *   policy: cleared at once, without the grace the clean-up of a failed
 *   uplink's connections waits (one flow: a wrong guess costs a handshake);
 * - failback: left to the policy's `failback` (`keep`: the tunnel stays;
 *   `move`: after `failback_delay` the failback clears the policy's
 *   connections on worse tiers, the tunnel's among them, and
 *   {@link TunnelWatcher.failback} records the move).
 */
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import { tunnelEndpoint, type TunnelConfig } from "../config/tunnels.js";
import { policyMembers } from "../dataplane/nft.js";
import { routableIn, usabilityIn, type UplinkView } from "../dataplane/views.js";
import type { Family, Kernel } from "../kernel/types.js";
import type { PolicyChoice } from "../policy/select.js";
import type { FailbackEvent } from "./failback.js";

/** A tunnel's flow: the peer's address and port (absent: every port) and the protocol. */
export interface ConntrackFlow {
  family: Family;
  protocol: "udp" | "tcp";
  /** The peer's address. */
  dst: string;
  /** The peer's port; absent: every port. */
  dport?: number;
}

/**
 * Delete the conntrack entries of a tunnel's flow, whatever their mark:
 * those the router started (`conntrack -D -f ipv4|ipv6 -d ADDRESS -p udp
 * --dport PORT -m 0/0`), then those the peer started (`-s ADDRESS --sport PORT`).
 * @returns the number of entries deleted.
 * @throws {KernelCommandError}
 */
export async function deleteTunnelFlow(
  kernel: Pick<Kernel, "conntrackDeleteMatching">,
  flow: ConntrackFlow,
): Promise<number> {
  const common = { family: flow.family, proto: flow.protocol, mark: 0, mask: 0 };
  const started = await kernel.conntrackDeleteMatching({
    ...common,
    dst: flow.dst,
    ...(flow.dport === undefined ? {} : { dport: flow.dport }),
  });
  const answered = await kernel.conntrackDeleteMatching({
    ...common,
    src: flow.dst,
    ...(flow.dport === undefined ? {} : { sport: flow.dport }),
  });
  return started + answered;
}

/** What status shows of one tunnel. */
export interface TunnelStatus {
  name: string;
  /** As configured: `192.0.2.7:51820`. */
  endpoint: string;
  protocol: "udp" | "tcp";
  policy: string;
  /** The uplink the tunnel's flow is steered to now; null when its policy gives it none. */
  uplink: string | null;
  /** ISO time of the last move to another uplink (its flow cleared); null before any. */
  moved: string | null;
}

/** Options of a {@link TunnelWatcher}. */
export interface TunnelWatcherOptions {
  log: Logger;
  /** Wall clock, ms since the epoch. */
  wall: () => number;
  /** Deletes a flow's conntrack entries (`Kernel.conntrackDeleteFlow`); resolves with the count. */
  clearFlow: (flow: ConntrackFlow) => Promise<number>;
}

/**
 * The uplink a new flow of `choice` takes when it has one member, or the
 * best one (lowest tier, then highest weight, then config order) when it
 * balances over several; undefined when the policy gives none.
 */
export function tunnelUplink(choice: PolicyChoice | undefined): string | undefined {
  if (choice?.kind !== "balance") return undefined;
  let best: { uplink: string; weight: number; tier: number } | undefined;
  for (const m of choice.members) {
    if (m.weight <= 0) continue;
    if (
      best === undefined ||
      m.tier < best.tier ||
      (m.tier === best.tier && m.weight > best.weight)
    ) {
      best = m;
    }
  }
  return best?.uplink;
}

/** The conntrack flow of a tunnel. */
export function tunnelFlow(tunnel: TunnelConfig): ConntrackFlow {
  const endpoint = tunnelEndpoint(tunnel);
  return {
    family: endpoint.family,
    protocol: tunnel.protocol,
    dst: endpoint.address,
    ...(endpoint.port === undefined ? {} : { dport: endpoint.port }),
  };
}

interface Seen {
  tunnel: TunnelConfig;
  family: Family;
  uplink: string | undefined;
  moved: string | null;
}

/**
 * Follows each tunnel's uplink from commit to commit ({@link update}) and
 * clears its flow when it moves. The constructor starts nothing.
 */
export class TunnelWatcher {
  readonly #options: TunnelWatcherOptions;
  /** `name endpoint protocol policy` -> what was seen. */
  readonly #seen = new Map<string, Seen>();
  #choices: Record<Family, Record<string, PolicyChoice>> = { 4: {}, 6: {} };
  #stopped = false;

  constructor(options: TunnelWatcherOptions) {
    this.#options = options;
  }

  /** The kernel now holds the state of `config` and `views` with these choices. */
  update(
    config: Config,
    views: readonly UplinkView[],
    choices: Record<string, PolicyChoice>,
    choices6: Record<string, PolicyChoice>,
  ): void {
    if (this.#stopped) return;
    this.#choices = { 4: choices, 6: choices6 };
    const keys = new Set<string>();
    for (const tunnel of config.tunnels) {
      const key = `${tunnel.name} ${tunnel.endpoint} ${tunnel.protocol} ${tunnel.policy}`;
      keys.add(key);
      const family = tunnelEndpoint(tunnel).family;
      const preferred = tunnelUplink(this.#choices[family][tunnel.policy]);
      const seen = this.#seen.get(key);
      if (seen === undefined) {
        this.#seen.set(key, { tunnel, family, uplink: preferred, moved: null });
        this.#clear(tunnel, `started on ${preferred ?? "no uplink"}`);
        continue;
      }
      const current = seen.uplink;
      const view = views.find((v) => v.name === current);
      const lost =
        current === undefined ||
        view === undefined ||
        usabilityIn(view, family) === "bad" ||
        !routableIn(view, family) ||
        !policyMembers(config, views, tunnel.policy).some((m) => m.uplink === current);
      if (!lost || preferred === current) continue;
      this.#move(seen, preferred, `${current ?? "no uplink"} is not usable`);
    }
    for (const key of this.#seen.keys()) if (!keys.has(key)) this.#seen.delete(key);
  }

  /**
   * A failback of a `move` policy ended (its connections on worse tiers were
   * cleared): its tunnels on a worse tier move to the better one.
   */
  failback(event: FailbackEvent): void {
    if (this.#stopped) return;
    for (const seen of this.#seen.values()) {
      if (seen.tunnel.policy !== event.policy || seen.family !== event.family) continue;
      const preferred = tunnelUplink(this.#choices[seen.family][seen.tunnel.policy]);
      if (preferred === undefined || preferred === seen.uplink) continue;
      this.#move(seen, preferred, `failback to tier ${event.tier}`);
    }
  }

  #move(seen: Seen, uplink: string | undefined, why: string): void {
    const from = seen.uplink;
    seen.uplink = uplink;
    seen.moved = new Date(this.#options.wall()).toISOString();
    this.#clear(seen.tunnel, `${from ?? "no uplink"} -> ${uplink ?? "no uplink"}: ${why}`);
  }

  #clear(tunnel: TunnelConfig, why: string): void {
    const { log } = this.#options;
    this.#options.clearFlow(tunnelFlow(tunnel)).then(
      (deleted) => {
        log.info(
          { tunnel: tunnel.name, deleted, why },
          `tunnel ${tunnel.name} (${tunnel.protocol} ${tunnel.endpoint}): ${why}; cleared ${deleted} conntrack entries of its flow`,
        );
      },
      (error: unknown) => {
        log.error(
          { tunnel: tunnel.name, err: error },
          `tunnel ${tunnel.name}: clearing its flow failed (${why}): ${error instanceof Error ? error.message : String(error)}`,
        );
      },
    );
  }

  /** Each configured tunnel and its uplink now, in config order. */
  status(config: Config): TunnelStatus[] {
    return config.tunnels.map((tunnel) => {
      const seen = this.#seen.get(
        `${tunnel.name} ${tunnel.endpoint} ${tunnel.protocol} ${tunnel.policy}`,
      );
      return {
        name: tunnel.name,
        endpoint: tunnel.endpoint,
        protocol: tunnel.protocol,
        policy: tunnel.policy,
        uplink: seen?.uplink ?? null,
        moved: seen?.moved ?? null,
      };
    });
  }

  /** No more clearing. */
  stop(): void {
    this.#stopped = true;
  }
}

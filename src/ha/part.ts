/**
 * The daemon's part of an HA pair (config `ha`): it writes the health score
 * keepalived tracks (`ha.track_file`, see score.ts) after each commit of
 * the controller, and follows this router's VRRP role, which keepalived's
 * notify script writes to `ha.state_file` (`ROLE WALL_MS PRIORITY`, see
 * render.ts), reporting each change.
 *
 * Over the sync link the two daemons tell each other their role and score
 * once a second (one UDP datagram of JSON to the peer's sync address,
 * `ha.sync.port + 1`), so `status` shows the peer's role as the peer sees
 * it; a peer silent for 3 s is `unreachable`. This is reporting only:
 * keepalived alone elects the master.
 *
 * The track file is replaced atomically and only when its value changes; a
 * failed write is logged and tried again at the next update. The state file
 * is read every `pollMs` (default 100 ms); a missing file means keepalived
 * has not reported a role yet (`unknown`).
 */
import { createSocket, type Socket } from "node:dgram";
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../clock.js";
import type { HaConfig } from "../config/ha.js";
import type { UplinkView } from "../dataplane/render.js";
import { readFileIfExists, writeFileAtomic } from "../files.js";
import { HA_FAULT_SCORE, healthScore } from "./score.js";

/** VRRP role of a router as uplinkd knows it. */
export type HaRole = "master" | "backup" | "fault" | "stopped" | "unknown";

/** What `status` says of the peer: its reported role, or `unreachable` when it has been silent. */
export type HaPeerRole = HaRole | "unreachable";

/** Every {@link HaRole}. */
export const HA_ROLES: readonly HaRole[] = ["master", "backup", "fault", "stopped", "unknown"];

/** Interval of the heartbeat to the peer, ms. */
export const HA_HEARTBEAT_MS = 1000;

/** A peer silent for this long is `unreachable`, ms. */
export const HA_PEER_TIMEOUT_MS = 3000;

/** The datagram one daemon sends the other. */
export interface HaHeartbeat {
  node: string;
  role: HaRole;
  score: number | null;
  priority: number;
}

/** Sends and receives heartbeats; tests pass a fake. */
export interface HaTransport {
  /**
   * Listen on `port` (every address) and call `onMessage` with each
   * datagram's text and sender address. Errors go to `onError`.
   */
  start(
    port: number,
    onMessage: (text: string, from: string) => void,
    onError: (error: Error) => void,
  ): void;
  /** Send `text` to `address`:`port`; errors go to start's `onError`. */
  send(text: string, address: string, port: number): void;
  stop(): void;
}

/** UDP (node:dgram, udp4). */
export function udpTransport(): HaTransport {
  let socket: Socket | undefined;
  let report: (error: Error) => void = () => undefined;
  return {
    start(port, onMessage, onError) {
      report = onError;
      socket = createSocket({ type: "udp4", reuseAddr: true });
      socket.on("message", (message, remote) => {
        onMessage(message.toString("utf8"), remote.address);
      });
      socket.on("error", onError);
      socket.bind(port);
    },
    send(text, address, port) {
      socket?.send(text, port, address, (error) => {
        if (error) report(error);
      });
    },
    stop() {
      socket?.close();
      socket = undefined;
    },
  };
}

/** A change of this router's role. */
export interface HaRoleChange {
  /** ISO time the notify script wrote it (else when uplinkd read it). */
  time: string;
  node: string;
  from: HaRole;
  to: HaRole;
  /** keepalived's priority at the change (base + score), or null. */
  priority: number | null;
}

/** `status --json` `ha`: this router's role and the peer's as far as known. */
export interface HaStatus {
  node: string;
  role: HaRole;
  /** ISO time of the last role change seen; null before the first. */
  since: string | null;
  /** The configured priority. */
  priority: number;
  /** The health score last written to the track file; null before the first. */
  score: number | null;
  peer: {
    name: string;
    /**
     * The role the peer's daemon last reported over the sync link;
     * `unreachable` after 3 s of silence (then, while this router is
     * backup, `master`: someone's adverts outrank ours).
     */
    role: HaPeerRole;
    /** The peer's health score as it reported it; null when unknown. */
    score: number | null;
  };
}

/** File access of the part; tests pass a fake. */
export interface HaIo {
  /** The file's text, or undefined when it does not exist. */
  read(path: string): Promise<string | undefined>;
  /** Replace the file atomically, creating its directory. */
  write(path: string, content: string): Promise<void>;
}

/** The real file system. */
export const systemHaIo: HaIo = {
  read: readFileIfExists,
  write: (path, content) => writeFileAtomic(path, content),
};

/**
 * Parse the state file: `ROLE WALL_MS PRIORITY` (the notify script's
 * line). Returns undefined for text that is not such a line.
 */
export function parseStateFile(
  text: string,
):
  | { role: HaRole; wallMs: number | null; priority: number | null; commitMs: number | null }
  | undefined {
  const [role, wall, priority, commit] = text.trim().split(/\s+/);
  if (role !== "master" && role !== "backup" && role !== "fault" && role !== "stopped") {
    return undefined;
  }
  const number = (t: string | undefined) =>
    t !== undefined && /^-?\d+$/.test(t) ? Number(t) : null;
  return { role, wallMs: number(wall), priority: number(priority), commitMs: number(commit) };
}

/** Options of {@link HaPart}. */
export interface HaPartOptions {
  log: Logger;
  clock: Clock;
  /** Called for each role change (events, notifications). */
  onRole: (change: HaRoleChange) => void;
  io?: HaIo;
  /** Interval of reading the state file, ms (default 100). */
  pollMs?: number;
  /** Heartbeats to and from the peer (default UDP). */
  transport?: HaTransport;
}

/** See the module comment. */
export class HaPart {
  readonly #options: HaPartOptions;
  readonly #io: HaIo;
  #ha: HaConfig | undefined;
  #role: HaRole = "unknown";
  #since: string | null = null;
  #written: { path: string; score: number } | undefined;
  #wanted: number | undefined;
  #writing: Promise<void> = Promise.resolve();
  #timer: TimerHandle | undefined;
  #heartbeat: TimerHandle | undefined;
  #stopped = true;
  readonly #transport: HaTransport;
  #listening: number | undefined;
  #peer: { heartbeat: HaHeartbeat; at: number } | undefined;

  constructor(options: HaPartOptions) {
    this.#options = options;
    this.#io = options.io ?? systemHaIo;
    this.#transport = options.transport ?? udpTransport();
  }

  /** Start following `ha` (nothing happens without it). */
  start(ha: HaConfig | undefined): void {
    this.#ha = ha;
    this.#stopped = false;
    this.#schedule(0);
    this.#beat();
  }

  /** A reloaded config: new paths are written and read from now on. */
  reconfigure(ha: HaConfig | undefined): void {
    this.#ha = ha;
    this.#written = undefined;
  }

  /**
   * After a commit: write the health score of `views` to the track file
   * if it changed. Never throws.
   */
  update(views: readonly UplinkView[]): void {
    if (this.#ha === undefined) return;
    this.#write(healthScore(views));
  }

  /**
   * Stop reading the state file. With `giveUp` (uplinkd removes its kernel
   * state), write the FAULT score first, so keepalived hands the virtual
   * addresses to the peer. Resolves once the write is done.
   */
  async stop(giveUp: boolean): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#heartbeat !== undefined) this.#options.clock.clearTimeout(this.#heartbeat);
    this.#heartbeat = undefined;
    if (this.#listening !== undefined) this.#transport.stop();
    this.#listening = undefined;
    if (giveUp && this.#ha !== undefined) this.#write(HA_FAULT_SCORE);
    await this.#writing;
  }

  /** This router's role and the peer's; null without `ha`. */
  status(): HaStatus | null {
    const ha = this.#ha;
    if (ha === undefined) return null;
    return {
      node: ha.node,
      role: this.#role,
      since: this.#since,
      priority: ha.priority,
      score: this.#written?.score ?? null,
      peer: { name: ha.peer.name, ...this.#peerNow() },
    };
  }

  #peerNow(): { role: HaPeerRole; score: number | null } {
    const peer = this.#peer;
    if (peer !== undefined && this.#options.clock.now() - peer.at <= HA_PEER_TIMEOUT_MS) {
      return { role: peer.heartbeat.role, score: peer.heartbeat.score };
    }
    if (this.#role === "backup") return { role: "master", score: null };
    return { role: peer === undefined ? "unknown" : "unreachable", score: null };
  }

  /** Send our heartbeat (listening first if not yet), then again in a second. */
  #beat(): void {
    if (this.#stopped) return;
    const ha = this.#ha;
    if (ha !== undefined) {
      const port = ha.sync.port + 1;
      if (this.#listening !== port) {
        if (this.#listening !== undefined) this.#transport.stop();
        this.#listening = port;
        this.#transport.start(
          port,
          (text, from) => {
            this.#received(text, from);
          },
          (error) => {
            this.#options.log.debug({ err: error }, `ha: heartbeat: ${error.message}`);
          },
        );
      }
      const heartbeat: HaHeartbeat = {
        node: ha.node,
        role: this.#role,
        score: this.#written?.score ?? null,
        priority: ha.priority,
      };
      this.#transport.send(JSON.stringify(heartbeat), ha.peer.address, port);
    }
    this.#heartbeat = this.#options.clock.setTimeout(() => {
      this.#beat();
    }, HA_HEARTBEAT_MS);
  }

  /** A heartbeat datagram: kept when it comes from the peer's sync address and names the peer. */
  #received(text: string, from: string): void {
    const ha = this.#ha;
    if (ha === undefined || from !== ha.peer.address) return;
    let heartbeat: Partial<HaHeartbeat>;
    try {
      heartbeat = JSON.parse(text) as Partial<HaHeartbeat>;
    } catch {
      return;
    }
    if (heartbeat.node !== ha.peer.name || !HA_ROLES.includes(heartbeat.role as HaRole)) return;
    this.#peer = {
      heartbeat: {
        node: heartbeat.node,
        role: heartbeat.role as HaRole,
        score: typeof heartbeat.score === "number" ? heartbeat.score : null,
        priority: typeof heartbeat.priority === "number" ? heartbeat.priority : 0,
      },
      at: this.#options.clock.now(),
    };
  }

  /** Resolves when the last track file write is done (tests). */
  idle(): Promise<void> {
    return this.#writing;
  }

  #write(score: number): void {
    const ha = this.#ha;
    if (ha === undefined) return;
    this.#wanted = score;
    const path = ha.track_file;
    this.#writing = this.#writing.then(async () => {
      const wanted = this.#wanted;
      if (wanted === undefined) return;
      if (this.#written?.path === path && this.#written.score === wanted) return;
      try {
        await this.#io.write(path, `${wanted}\n`);
        this.#written = { path, score: wanted };
        this.#options.log.info(
          { event: "ha-score", score: wanted },
          `ha: health score ${wanted} written to ${path}`,
        );
      } catch (error) {
        this.#options.log.warn(
          { err: error },
          `ha: cannot write the health score to ${path}: ${String(error)}`,
        );
      }
    });
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = this.#options.clock.setTimeout(() => {
      void this.#poll().finally(() => {
        this.#schedule(this.#options.pollMs ?? 100);
      });
    }, delayMs);
  }

  async #poll(): Promise<void> {
    const ha = this.#ha;
    if (ha === undefined) return;
    let text: string | undefined;
    try {
      text = await this.#io.read(ha.state_file);
    } catch (error) {
      this.#options.log.warn({ err: error }, `ha: cannot read ${ha.state_file}: ${String(error)}`);
      return;
    }
    const state = text === undefined ? undefined : parseStateFile(text);
    const role: HaRole = state?.role ?? "unknown";
    if (role === this.#role || this.#stopped) return;
    const from = this.#role;
    this.#role = role;
    const time = new Date(state?.wallMs ?? this.#options.clock.wall()).toISOString();
    this.#since = time;
    const change: HaRoleChange = {
      time,
      node: ha.node,
      from,
      to: role,
      priority: state?.priority ?? null,
    };
    this.#options.log.info(
      // The log line has its own `time`: the change's is `at`.
      {
        event: "ha-role",
        node: change.node,
        from,
        to: role,
        priority: change.priority,
        at: change.time,
      },
      `ha: router ${ha.node} is ${role} (was ${from})`,
    );
    this.#options.onRole(change);
  }
}

/**
 * The lab's state file (`STATE_DIR/lab.json`): what `lab up` built, so that
 * `down`, `status`, `fault`, `heal` and `exec` work from another process.
 */
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { LabError } from "./errors.js";
import type { FaultSet } from "./faults.js";
import type { LabNode } from "./topology.js";

/** A long-running process the lab started (echo host, DNS, DHCP server or client, iperf3). */
export interface LabProcess {
  /** `host`, `dns`, `iperf3`, `dhcp-isp2`, `udhcpc-wan2`, `p2p-isp2` (TUN relay), `host-isp3` (CGNAT upstream host), `pppoe-isp2` (PPPoE server), `pppd-isp2` (the router's PPPoE client), `radvd-isp1`, `kea-isp1`, `dhclient6-wan1`. */
  name: string;
  node: LabNode;
  pid: number;
  /** Its stdout/stderr. */
  log: string;
}

/** Contents of `lab.json`. */
export interface LabState {
  version: 1;
  prefix: string;
  /** Number of uplinks. */
  uplinks: number;
  /** Uplink numbers that use DHCP. */
  dhcp: number[];
  weights: number[];
  tiers: number[];
  /** Point-to-point uplink numbers (absent in states of older labs: none). */
  p2p?: number[];
  /** CGNAT uplink numbers (absent in states of older labs: none). */
  cgnat?: number[];
  /** PPPoE uplink numbers (absent in states of older labs: none). */
  pppoe?: number[];
  stateDir: string;
  /** The daemon config `lab up` wrote. */
  configPath: string;
  /** The daemon's control socket named in that config. */
  controlSocket: string;
  /** ISO 8601. */
  createdAt: string;
  /** How long `lab up` took, ms. */
  upMs: number;
  processes: LabProcess[];
  /** Active faults by uplink number. */
  faults: Record<string, FaultSet>;
  /** Address changes so far, by DHCP uplink number. */
  dhcpGeneration: Record<string, number>;
  /** Sessions with a new address so far, by point-to-point or PPPoE uplink number (absent: none). */
  p2pGeneration?: Record<string, number>;
  /** `lab up --pd`: DHCPv6 prefix delegation runs (absent in states of older labs: no). */
  pd?: boolean;
  /**
   * IPv6 changes so far, by uplink number (absent: none): `network`
   * renumberings (uplink network and delegated prefix), `router` changes
   * of the ISP router's link-local address (`ra-change`).
   */
  v6Generation?: Record<string, { network: number; router: number }>;
}

/** `STATE_ROOT/PREFIX`. */
export function stateDirOf(prefix: string, stateRoot: string): string {
  return join(stateRoot, prefix);
}

/** Path of the state file in a state directory. */
export function stateFileOf(stateDir: string): string {
  return join(stateDir, "lab.json");
}

/**
 * Read a lab's state file.
 * @returns undefined when there is none.
 * @throws {LabError} when it exists but cannot be read or parsed.
 */
export async function readState(stateDir: string): Promise<LabState | undefined> {
  const file = stateFileOf(stateDir);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new LabError(`read ${file}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const state = JSON.parse(text) as { version?: unknown };
    if (state.version !== 1) throw new Error(`unknown version ${String(state.version)}`);
    return state as LabState;
  } catch (error) {
    throw new LabError(`parse ${file}: ${(error as Error).message}`, { cause: error });
  }
}

/** Temporary files written by this process so far: two writes at once never share one. */
let tmpCount = 0;

/**
 * Write a lab's state file atomically (temporary file + rename).
 * @throws {LabError} when the directory cannot be written.
 */
export async function writeState(state: LabState): Promise<void> {
  const file = stateFileOf(state.stateDir);
  const tmp = `${file}.${process.pid}.${++tmpCount}.tmp`;
  try {
    await mkdir(state.stateDir, { recursive: true });
    await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`);
    await rename(tmp, file);
  } catch (error) {
    throw new LabError(`write ${file}: ${(error as Error).message}`, { cause: error });
  }
}

/** Remove a state directory and everything in it (logs, leases, pid files). */
export async function removeStateDir(stateDir: string): Promise<void> {
  await rm(stateDir, { recursive: true, force: true });
}

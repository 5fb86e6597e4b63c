/**
 * Failover and recovery seen from the LAN client: the lab traffic tool's
 * `probe` mode opens a new TCP connection to the echo host every few ms and
 * reports each attempt (start time, success, the source address the echo
 * host saw). Faults are injected with one kernel command each, timed, so
 * the fault's moment is known to a few ms.
 */
import type { ChildProcess } from "node:child_process";
import type { Lab } from "../src/lab/lab.js";
import type { ProbeAttempt } from "../src/lab/traffic.js";
import { exec, faults, ipv6, measure, scripts, topology } from "./built.js";
import { sleep } from "./context.js";

/** The fault kinds the benchmark injects for failover. */
export type FailoverFault = "blackhole" | "blackhole6" | "carrier";

/** A running probe: a new connection every `intervalMs`, each given `timeoutMs`. */
export class Probe {
  readonly attempts: ProbeAttempt[] = [];
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  private buffer = "";
  private stderr = "";

  /**
   * @param family 4: connections to the echo host's IPv4 address, sources
   *   as the echo host saw them; 6: to its IPv6 address, each source
   *   replaced by `uplink:N`, the uplink whose space it is in (`uplink:0`:
   *   none), since an uplink's IPv6 source is whichever global address
   *   masquerade picked.
   */
  constructor(
    lab: Lab,
    readonly intervalMs: number,
    readonly timeoutMs: number,
    durationMs = 600_000,
    readonly family: 4 | 6 = 4,
  ) {
    this.child = lab.spawn(
      "lan",
      [
        ...scripts.labScriptArgv("traffic"),
        "probe",
        "--host",
        family === 6 ? topology.LAB_HOSTS6.echo : topology.LAB_HOSTS.echo,
        "--interval",
        String(intervalMs),
        "--timeout",
        String(timeoutMs),
        "--duration",
        String(durationMs),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    this.child.stdout?.on("data", (chunk: Buffer) => {
      this.buffer += chunk.toString("utf8");
      let nl = this.buffer.indexOf("\n");
      while (nl >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        nl = this.buffer.indexOf("\n");
        try {
          const a = JSON.parse(line) as ProbeAttempt;
          if (a.source !== undefined) {
            a.source =
              family === 6
                ? `uplink:${ipv6.uplinkOfAddress6(lab.uplinks, a.source) ?? 0}`
                : a.source.replace(/^::ffff:/, "");
          }
          this.attempts.push(a);
        } catch {
          // not a JSON line
        }
      }
    });
    this.child.stderr?.on("data", (chunk: Buffer) => {
      this.stderr += chunk.toString("utf8");
    });
    this.exited = new Promise((resolve) => {
      this.child.on("exit", () => {
        resolve();
      });
    });
  }

  /** Successful attempts since `since` (epoch ms) by source address. */
  sources(since: number): Map<string, number> {
    const out = new Map<string, number>();
    for (const a of this.attempts) {
      if (a.at < since || !a.ok || a.source === undefined) continue;
      out.set(a.source, (out.get(a.source) ?? 0) + 1);
    }
    return out;
  }

  /**
   * Wait until connections since `since` succeeded through every address in
   * `addresses` and none failed (at most `maxMs`).
   * @throws {Error} when that does not happen.
   */
  async warmUp(since: number, addresses: readonly string[], maxMs = 5000): Promise<void> {
    const deadline = Date.now() + maxMs;
    while (Date.now() < deadline) {
      await sleep(100);
      const seen = this.sources(since);
      const failed = this.attempts.filter((a) => a.at >= since && !a.ok).length;
      if (failed === 0 && addresses.every((a) => (seen.get(a) ?? 0) >= 3)) return;
    }
    const failed = this.attempts.filter((a) => a.at >= since && !a.ok);
    throw new Error(
      `probe warm-up: sources ${JSON.stringify([...this.sources(since)])}, ${failed.length} failed ` +
        `(${failed.map((f) => f.error).join(", ")})${this.stderr === "" ? "" : `; ${this.stderr.trim()}`}`,
    );
  }

  /**
   * Wait for failover after a fault at `faultAt`: until every attempt
   * started in the `settleMs` after the last failed one succeeded (and all
   * of those have been reported), at most `maxMs` after the fault.
   * @returns the failover time in ms (see `failoverMs`), with the failures
   *   counted, or `ms: null` when it did not settle in time.
   */
  async failover(
    faultAt: number,
    settleMs: number,
    maxMs: number,
  ): Promise<{ ms: number | null; failed: number }> {
    const deadline = faultAt + maxMs;
    for (;;) {
      await sleep(100);
      // Every attempt started before this has ended (success or timeout) and been printed.
      const reported = Date.now() - this.timeoutMs - 300;
      const window = this.attempts.filter((a) => a.at >= faultAt && a.at <= reported);
      const failures = window.filter((a) => !a.ok);
      const lastFailure = failures.reduce((m, a) => Math.max(m, a.at), -1);
      const since = lastFailure === -1 ? faultAt : lastFailure;
      const after = window.filter((a) => a.at > since).length;
      if (
        reported - since >= settleMs &&
        after >= 5 &&
        (lastFailure !== -1 || reported - faultAt >= 2 * settleMs)
      ) {
        return {
          ms: measure.failoverMs(this.attempts, faultAt, reported),
          failed: failures.length,
        };
      }
      if (Date.now() > deadline) return { ms: null, failed: failures.length };
    }
  }

  /**
   * Wait until a connection started after `healAt` succeeds through
   * `address` (the healed uplink's address, as the echo host sees it).
   * @returns ms from `healAt` to the start of that connection, or null after `maxMs`.
   */
  async recovery(healAt: number, address: string, maxMs: number): Promise<number | null> {
    const deadline = healAt + maxMs;
    for (;;) {
      const first = this.attempts
        .filter((a) => a.ok && a.at >= healAt && a.source === address)
        .reduce((m, a) => Math.min(m, a.at), Number.POSITIVE_INFINITY);
      if (first !== Number.POSITIVE_INFINITY) return first - healAt;
      if (Date.now() > deadline) return null;
      await sleep(100);
    }
  }

  /** Stop probing; waits for attempts in flight (at most its timeout + 2 s). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), this.timeoutMs + 2000);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * Inject `fault` into uplink `number` with one command in its ISP namespace:
 * `blackhole` loads the lab's fault chain with a drop rule (`nft -f`),
 * `carrier` takes the ISP's side of the router link down (`ip link set
 * cust down`). The lab's state file is not updated: heal with {@link heal},
 * which also runs `lab.heal`.
 * @returns when the fault was in place (epoch ms, right after the command
 *   ended) and how long the command took (ms; the fault's moment is known
 *   to within this).
 */
export async function inject(
  lab: Lab,
  number: number,
  fault: FailoverFault,
): Promise<{ at: number; commandMs: number }> {
  return timed(lab, number, fault, true);
}

/**
 * Undo {@link inject} with the opposite command, then `lab.heal` (so the
 * lab's state holds no fault either).
 * @returns when the fault was gone (epoch ms) and the command's duration.
 */
export async function heal(
  lab: Lab,
  number: number,
  fault: FailoverFault,
): Promise<{ at: number; commandMs: number }> {
  const t = await timed(lab, number, fault, false);
  await lab.heal(number);
  return t;
}

async function timed(
  lab: Lab,
  number: number,
  fault: FailoverFault,
  on: boolean,
): Promise<{ at: number; commandMs: number }> {
  const u = lab.uplink(number);
  const t0 = performance.now();
  if (fault === "blackhole" || fault === "blackhole6") {
    await exec.runCommand("ip", ["netns", "exec", u.namespace, "nft", "-f", "-"], {
      input: faults.renderFaultChain(on ? { [fault]: true } : {}),
    });
  } else {
    await exec.runCommand("ip", [
      "-n",
      u.namespace,
      "link",
      "set",
      topology.ISP_INTERFACES.customer,
      on ? "down" : "up",
    ]);
  }
  const at = Date.now();
  return { at, commandMs: Math.round((performance.now() - t0) * 10) / 10 };
}

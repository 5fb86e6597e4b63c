/**
 * Part "vm" (full runs and `--only vm`; minutes of emulation): machines
 * booted from Debian's stock kernels by scripts/vm.sh. Boot: wall time of
 * `scripts/vm.sh --kernel K -- true` (firmware, kernel, initramfs, the 9p
 * root, running `true`, power-off), median of 3 per kernel, with the
 * accelerator scripts/vm.sh picked (TCG unless its KVM probe boot
 * succeeded). PPPoE reconnect on 6.1: bench/vm-pppoe.ts inside the
 * machine, 5 session drops, each timed from `lab fault isp2 pppoe-drop` to
 * the daemon's status showing the uplink up from its new address.
 * Blackhole failover of the fast profile on each kernel:
 * bench/vm-failover.ts inside the machine, 5 trials measured as part
 * failover measures them on the host.
 */
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { release } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FAST, describeProfile, type BenchContext } from "./context.js";
import { trialSet, type Trial, type TrialSet } from "./failover.js";
import { spreadOf, type Spread } from "./stats.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));

/** Results of part vm. */
export interface VmResults {
  /** The accelerator scripts/vm.sh used: `tcg` or `kvm`. */
  accel: string;
  /** Boot to `true` and power-off, ms, per kernel. */
  boots: { kernel: string; ms: Spread }[];
  /** PPPoE session drop to uplink up again, ms (on 6.1). */
  pppoeReconnectMs: Spread;
  /** Blackhole failover of the fast profile, per kernel (absent in results of older runs). */
  failover?: { kernel: string; set: TrialSet }[];
}

/** Run scripts/vm.sh; resolves with its stdout and wall time, rejects on a non-zero exit. */
function vm(kernel: string, argv: readonly string[]): Promise<{ stdout: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [join(REPO, "scripts/vm.sh"), "--kernel", kernel, "--", ...argv], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code === 0) resolve({ stdout, ms: Math.round(performance.now() - started) });
      else
        reject(
          new Error(
            `scripts/vm.sh --kernel ${kernel} -- ${argv.join(" ")}: exit ${code}: ${stderr.slice(-2000)}`,
          ),
        );
    });
  });
}

/** The accelerator scripts/vm.sh uses: UPLINKD_VM_ACCEL, else its cached KVM probe verdict (`tcg` or `kvm`). */
async function accelUsed(): Promise<string> {
  const forced = process.env.UPLINKD_VM_ACCEL;
  if (forced === "tcg" || forced === "kvm") return forced;
  const cache = process.env.UPLINKD_VM_CACHE ?? join(REPO, ".cache/vm");
  return (await readFile(join(cache, `kvm-${release()}`), "utf8").catch(() => "tcg")).trim();
}

/** Run part vm. */
export async function vmPart(ctx: BenchContext): Promise<VmResults> {
  const boots: VmResults["boots"] = [];
  for (const kernel of ["6.1", "6.12"]) {
    // The first run may build the cached root: not timed.
    await vm(kernel, ["true"]);
    const ms: number[] = [];
    for (let i = 0; i < 3; i++) {
      ctx.check();
      ms.push((await vm(kernel, ["true"])).ms);
    }
    ctx.log("vm", `Linux ${kernel}: boot to \`true\` and power-off ${ms.join(", ")} ms`);
    boots.push({ kernel, ms: spreadOf(ms, 0) });
  }
  ctx.check();
  const { stdout } = await vm("6.1", ["node", "--import", "tsx", "bench/vm-pppoe.ts", "5"]);
  const line = stdout.trim().split("\n").at(-1) ?? "{}";
  const { reconnectMs } = JSON.parse(line) as { reconnectMs: number[] };
  ctx.log("vm", `PPPoE reconnect: ${reconnectMs.join(", ")} ms`);
  const failover: NonNullable<VmResults["failover"]> = [];
  for (const kernel of ["6.1", "6.12"]) {
    ctx.check();
    const run = await vm(kernel, ["node", "--import", "tsx", "bench/vm-failover.ts", "5"]);
    const { trials } = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}") as {
      trials: Trial[];
    };
    const set = trialSet("uplinkd", FAST.name, describeProfile(FAST), "blackhole", trials);
    ctx.log(
      "vm",
      `Linux ${kernel}: blackhole failover ${trials.map((t) => t.failoverMs ?? "-").join(", ")} ms` +
        `, detected ${trials.map((t) => t.detectMs ?? "-").join(", ")} ms`,
    );
    failover.push({ kernel, set });
  }
  return {
    accel: await accelUsed(),
    boots,
    pppoeReconnectMs: spreadOf(reconnectMs, 0),
    failover,
  };
}

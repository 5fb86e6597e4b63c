/**
 * Debian machines booted under systemd for the system tests: a root file
 * system made by mmdebstrap from Debian's repositories (cached as a tar
 * under .cache/debian), booted with `systemd-nspawn --boot
 * --private-network`, so the container has a network namespace of its own
 * with only `lo` in it and nothing it does reaches the host's.
 *
 * Commands run inside through nsenter into the namespaces of the
 * container's PID 1 (the machine is not registered with machined: this
 * machine's own PID 1 need not be systemd, so `machinectl shell` and
 * `systemd-run -M` are not available).
 *
 *     const machine = await bootMachine(t, { suite: "bookworm" });
 *     await machine.run(["systemctl", "is-active", "uplinkd"]);
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, openSync, closeSync } from "node:fs";
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { runCommand, type CommandResult } from "../../src/process/run.js";

/** The repository's root. */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** Gitignored cache of root tars, machines and packages. */
export const CACHE = join(REPO, ".cache");

/** Packages in every machine: systemd to boot, and what uplinkd and uplinkd-lab depend on. */
export const MACHINE_PACKAGES = [
  "systemd",
  "dbus",
  "iproute2",
  "nftables",
  "iputils-ping",
  "conntrack",
  "procps",
  "libstdc++6",
  // What uplinkd-lab depends on besides.
  "dnsmasq-base",
  "busybox",
  "iperf3",
  "psmisc",
  "python3-minimal",
];

/** The Debian mirror mmdebstrap downloads from. */
export const DEBIAN_MIRROR = "http://deb.debian.org/debian";

/** Tools the system tests need on this machine, with the package bringing each. */
export const SYSTEM_TEST_TOOLS: Readonly<Record<string, string>> = {
  "systemd-nspawn": "systemd-container",
  mmdebstrap: "mmdebstrap",
  nsenter: "util-linux",
  "dpkg-deb": "dpkg",
};

/**
 * Why the system tests cannot run here (not root, a missing tool), or
 * undefined when they can.
 */
export async function systemTestsUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "needs root (systemd-nspawn, mmdebstrap)";
  for (const [tool, pkg] of Object.entries(SYSTEM_TEST_TOOLS)) {
    try {
      await runCommand("sh", ["-c", `command -v ${tool}`]);
    } catch {
      return `needs ${tool}: apt-get install ${pkg} (scripts/setup.sh installs it)`;
    }
  }
  return undefined;
}

/**
 * A tar of a minimal Debian `suite` (bookworm, trixie) with
 * `MACHINE_PACKAGES`, made by mmdebstrap on first use and cached as
 * `.cache/debian/SUITE-HASH.tar` (HASH of the package list, so a changed
 * list makes a new one). ~35 s and ~200 MB the first time; at most 10 minutes.
 *
 * @throws {KernelCommandError} when mmdebstrap fails (its message says why:
 *   no network to the mirror, a missing keyring);
 *   {KernelCommandTimeoutError} after 10 minutes.
 */
export async function debianRootTar(suite: string): Promise<string> {
  const hash = createHash("sha256").update(MACHINE_PACKAGES.join(",")).digest("hex").slice(0, 12);
  const dir = join(CACHE, "debian");
  const tar = join(dir, `${suite}-${hash}.tar`);
  if (existsSync(tar)) return tar;
  await mkdir(dir, { recursive: true });
  const partial = `${tar}.partial-${process.pid}`;
  try {
    await runCommand(
      "mmdebstrap",
      [
        "--quiet",
        "--variant=apt",
        "--format=tar",
        `--include=${MACHINE_PACKAGES.join(",")}`,
        suite,
        partial,
        DEBIAN_MIRROR,
      ],
      // Downloading and unpacking ~250 packages: under a minute on a quiet machine.
      { timeoutMs: 600_000 },
    );
    await rename(partial, tar);
  } finally {
    await rm(partial, { force: true });
  }
  return tar;
}

/** Options of `bootMachine`. */
export interface BootOptions {
  /** Debian suite: bookworm (12), trixie (13). */
  suite: string;
  /** Longest wait for `systemctl is-system-running` to say running or degraded; default 90 s. */
  bootTimeoutMs?: number;
}

/** A booted container; `terminate()` powers it off and removes its root. */
export class Machine {
  /** The container's root directory on this machine (write files here to put them inside). */
  readonly root: string;
  readonly name: string;
  /** PID of the container's systemd, as this machine sees it. */
  pid = 0;
  private readonly child: ChildProcess;
  private readonly logFile: string;
  private exitedFlag = false;

  constructor(name: string, root: string, child: ChildProcess, logFile: string) {
    this.name = name;
    this.root = root;
    this.child = child;
    this.logFile = logFile;
    child.once("exit", () => {
      this.exitedFlag = true;
    });
  }

  /**
   * Run `argv` inside the machine (all its namespaces, its root, a clean
   * environment).
   *
   * @throws {KernelCommandError} when it exits with a code not in
   *   `allowExitCodes` (naming the command and its output).
   */
  run(
    argv: readonly string[],
    options: { input?: string; allowExitCodes?: readonly number[] } = {},
  ): Promise<CommandResult> {
    return runCommand(
      "nsenter",
      [
        "-t",
        String(this.pid),
        "-m",
        "-u",
        "-i",
        "-n",
        "-p",
        "-r",
        "-w",
        "--",
        "/usr/bin/env",
        "-i",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
        ...argv,
      ],
      options,
    );
  }

  /** Run a shell script inside the machine (`sh -euc SCRIPT`). */
  sh(script: string, allowExitCodes?: readonly number[]): Promise<CommandResult> {
    return this.run(["sh", "-euc", script], allowExitCodes === undefined ? {} : { allowExitCodes });
  }

  /** Whether systemd-nspawn has exited. */
  hasExited(): boolean {
    return this.exitedFlag;
  }

  /** The last `lines` lines systemd-nspawn printed (boot messages, errors). */
  async consoleTail(lines = 30): Promise<string> {
    const text = await readFile(this.logFile, "utf8").catch(() => "");
    return text.split("\n").slice(-lines).join("\n");
  }

  /** Find the container's PID 1 among systemd-nspawn's descendants (bounded wait). */
  async findInit(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.hasExited()) {
        throw new Error(`systemd-nspawn exited during boot:\n${await this.consoleTail()}`);
      }
      const pid = await containerInit(this.child.pid ?? 0);
      if (pid !== undefined) {
        this.pid = pid;
        return;
      }
      await sleep(100);
    }
    throw new Error(`no container init after ${timeoutMs} ms:\n${await this.consoleTail()}`);
  }

  /** Wait until `systemctl is-system-running` says running or degraded. */
  async waitBooted(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let state = "";
    while (Date.now() < deadline) {
      if (this.hasExited()) throw new Error(`machine stopped:\n${await this.consoleTail()}`);
      try {
        const r = await this.run(["systemctl", "is-system-running"], {
          allowExitCodes: [1, 2, 3, 4, 5],
        });
        state = r.stdout.trim();
        if (state === "running" || state === "degraded") return;
      } catch {
        // nsenter can fail while the container sets itself up.
      }
      await sleep(250);
    }
    throw new Error(
      `${this.name} not booted after ${timeoutMs} ms (state "${state}"):\n${await this.consoleTail()}`,
    );
  }

  /**
   * Power off (SIGTERM to systemd-nspawn: an orderly shutdown), SIGKILL
   * after 30 s, then remove the root directory. Throws if a mount under
   * the root is left behind.
   */
  async terminate(): Promise<void> {
    if (!this.hasExited() && this.child.pid !== undefined) {
      this.child.kill("SIGTERM");
      const deadline = Date.now() + 30_000;
      while (!this.hasExited() && Date.now() < deadline) await sleep(100);
      if (!this.hasExited()) {
        this.child.kill("SIGKILL");
        const killDeadline = Date.now() + 5_000;
        while (!this.hasExited() && Date.now() < killDeadline) await sleep(100);
      }
    }
    const mounts = (await readFile("/proc/mounts", "utf8"))
      .split("\n")
      .filter((line) => line.split(" ")[1]?.startsWith(this.root) === true);
    if (mounts.length > 0) {
      throw new Error(`mounts left under ${this.root}:\n${mounts.join("\n")}`);
    }
    await rm(this.root, { recursive: true, force: true });
    await rm(this.logFile, { force: true });
  }
}

/** The first descendant of `ancestor` that is PID 1 of its own PID namespace. */
async function containerInit(ancestor: number): Promise<number | undefined> {
  const queue = [ancestor];
  for (let seen = 0; queue.length > 0 && seen < 64; seen++) {
    const pid = queue.shift() ?? 0;
    const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
    const nspid = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
    if (nspid.length > 1 && nspid[nspid.length - 1] === "1") return pid;
    const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
    for (const task of tasks) {
      const children = await readFile(`/proc/${pid}/task/${task}/children`, "utf8").catch(() => "");
      for (const child of children.trim().split(/\s+/)) if (child !== "") queue.push(Number(child));
    }
  }
  return undefined;
}

let machineCount = 0;

/**
 * Boot a fresh machine of `options.suite` (root extracted from the cached
 * tar into `.cache/machines/NAME`), terminated and removed when the test
 * ends, also on failure.
 *
 * @throws when systemd-nspawn exits or the system is not up within the
 *   boot timeout; the message carries the console's last lines.
 */
export async function bootMachine(t: TestContext, options: BootOptions): Promise<Machine> {
  const tar = await debianRootTar(options.suite);
  machineCount++;
  const name = `ut${process.pid}x${machineCount}`;
  const root = join(CACHE, "machines", name);
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  await runCommand("tar", ["-xf", tar, "-C", root]);
  // systemd-nspawn wants a machine id of its own in the image.
  await writeFile(join(root, "etc/machine-id"), "");
  const logFile = `${root}.console.log`;
  const fd = openSync(logFile, "w");
  let child: ChildProcess;
  try {
    child = spawn(
      "systemd-nspawn",
      [
        "--quiet",
        `--directory=${root}`,
        `--machine=${name}`,
        "--boot",
        "--private-network",
        "--register=no",
        "--keep-unit",
        "--console=read-only",
      ],
      { stdio: ["ignore", fd, fd] },
    );
  } finally {
    closeSync(fd);
  }
  const machine = new Machine(name, root, child, logFile);
  t.after(async () => {
    await machine.terminate();
  });
  await machine.findInit(20_000);
  await machine.waitBooted(options.bootTimeoutMs ?? 90_000);
  return machine;
}

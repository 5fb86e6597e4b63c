/**
 * The part of the daemon that keeps the LAN's dnsmasq in step with
 * uplinkd: it writes the nftset fragment and the servers file (see
 * render.ts) whenever their content changes, then runs `dns.dnsmasq.reload`
 * (dnsmasq reads nftset= lines only when it starts) or sends SIGHUP to the
 * pid in `dns.dnsmasq.pid_file` (dnsmasq re-reads a servers-file on
 * SIGHUP). It also samples the size of each domain set for status.
 *
 * Files are written atomically (a temporary file in the same directory,
 * then rename), and only when their content differs from what the file
 * holds. Work runs one piece at a time; updates that arrive meanwhile are
 * merged into one. A failure is logged and never thrown at the caller: the
 * next update tries again (the controller's periodic verify brings one
 * every 10 s by default).
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import type { DomainSetStatus } from "../control/api.js";
import { domainSets } from "../dataplane/domains.js";
import type { UplinkView } from "../dataplane/render.js";
import { readFileIfExists, writeFileAtomic } from "../files.js";
import { runCommand } from "../process/run.js";
import type { Kernel } from "../kernel/types.js";
import { renderNftsetFile, renderServersFile } from "./render.js";

/** What the part does to files and processes; tests pass a fake. */
export interface DnsmasqIo {
  /** The file's content, or undefined when it does not exist. */
  read(path: string): Promise<string | undefined>;
  /** Replace the file's content atomically (temporary file + rename), creating its directory. */
  write(path: string, content: string): Promise<void>;
  /**
   * Run a command (no shell).
   * @throws {Error} naming the command line, its exit code and stderr.
   */
  run(argv: readonly string[]): Promise<void>;
  /**
   * Send SIGHUP to the process whose pid `pidFile` holds.
   * @returns the pid signalled.
   * @throws {Error} when the file is missing or holds no live pid.
   */
  hangup(pidFile: string): Promise<number>;
}

/** Longest a reload command may run before it is killed, ms. */
export const RELOAD_TIMEOUT_MS = 30_000;

/** The real files and processes. */
export const systemIo: DnsmasqIo = {
  read: readFileIfExists,
  write: (path, content) => writeFileAtomic(path, content),
  async run(argv) {
    const [file = "", ...args] = argv;
    await runCommand(file, args, { timeoutMs: RELOAD_TIMEOUT_MS });
  },
  async hangup(pidFile) {
    const text = await readFile(pidFile, "utf8").catch((error: unknown) => {
      throw new Error(`reading dnsmasq's pid file ${pidFile}: ${String(error)}`);
    });
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 1) {
      throw new Error(`dnsmasq's pid file ${pidFile} holds no pid ("${text.trim()}")`);
    }
    try {
      process.kill(pid, "SIGHUP");
    } catch (error) {
      throw new Error(`SIGHUP to dnsmasq (pid ${pid} from ${pidFile}): ${String(error)}`);
    }
    return pid;
  },
};

/** Options of a {@link DnsmasqPart}. */
export interface DnsmasqPartOptions {
  log: Logger;
  kernel: Pick<Kernel, "nftSetSize">;
  /** Files and processes (default: the real ones). */
  io?: DnsmasqIo;
  /** Clock for the size sample's age, ms (default Date.now). */
  now?: () => number;
}

interface Wanted {
  config: Config;
  views: readonly UplinkView[];
}

/** The dnsmasq part. The constructor starts nothing. */
export class DnsmasqPart {
  readonly #options: DnsmasqPartOptions;
  readonly #io: DnsmasqIo;
  /** What each file written holds, as far as this process knows. */
  readonly #written = new Map<string, string>();
  /** Files whose reload or SIGHUP failed: acted on again at the next update. */
  readonly #unsettled = new Set<string>();
  /** The nftset file and reload command of the last config, to empty it when a reload drops it. */
  #nftset: { path: string; reload: readonly string[] } | undefined;
  #wanted: Wanted | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  #sizes: DomainSetStatus[] = [];
  /** The config the sizes were sampled for. */
  #sampledConfig: Config | undefined;
  #sampledAt = -Infinity;

  constructor(options: DnsmasqPartOptions) {
    this.#options = options;
    this.#io = options.io ?? systemIo;
  }

  /**
   * Write the files for `config` and the uplinks now (and reload or signal
   * dnsmasq where they changed); resolves when done. Never throws.
   */
  async start(config: Config, views: readonly UplinkView[]): Promise<void> {
    this.update(config, views);
    await this.idle();
  }

  /**
   * The config or the uplinks' state changed (a reload, a transition, a
   * link change): bring the files up to date. Returns at once; the work runs
   * after any that is running, merged with later updates.
   */
  update(config: Config, views: readonly UplinkView[]): void {
    if (this.#stopped) return;
    this.#wanted = { config, views };
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
    });
  }

  /** Resolves when no work runs or waits. */
  async idle(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  /** No more updates; waits for the running one. The files stay as they are. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.idle();
  }

  async #drain(): Promise<void> {
    for (;;) {
      const wanted = this.#wanted;
      if (wanted === undefined) return;
      this.#wanted = undefined;
      await this.#sync(wanted.config, wanted.views);
    }
  }

  async #sync(config: Config, views: readonly UplinkView[]): Promise<void> {
    const dnsmasq = config.dns?.dnsmasq;
    const log = this.#options.log;
    let restarted = false;
    // The nftset file: the new config's, or the old one emptied when the config dropped it.
    const nftset =
      dnsmasq?.nftset_file === undefined
        ? undefined
        : { path: dnsmasq.nftset_file, reload: dnsmasq.reload };
    const targets: { path: string; reload: readonly string[]; content: string }[] = [];
    if (this.#nftset !== undefined && this.#nftset.path !== nftset?.path) {
      targets.push({ ...this.#nftset, content: renderNftsetFile({ ...config, rules: [] }) });
    }
    if (nftset !== undefined) targets.push({ ...nftset, content: renderNftsetFile(config) });
    for (const target of targets) {
      try {
        if (!(await this.#writeIfChanged(target.path, target.content))) continue;
        await this.#io.run(target.reload);
        restarted = true;
        log.info(
          { file: target.path, command: target.reload },
          `dnsmasq: wrote ${target.path} and ran ${target.reload.join(" ")}`,
        );
      } catch (error) {
        this.#unsettled.add(target.path);
        log.error({ err: error, file: target.path }, `dnsmasq nftset file: ${String(error)}`);
      }
    }
    this.#nftset = nftset;
    const serversFile = dnsmasq?.servers_file;
    if (dnsmasq === undefined || serversFile === undefined) return;
    const content = renderServersFile(config, views);
    try {
      if (!(await this.#writeIfChanged(serversFile, content))) return;
      const servers = content.split("\n").filter((l) => l.startsWith("server="));
      if (restarted) {
        log.info(
          { file: serversFile, servers },
          `dnsmasq: wrote ${serversFile} (dnsmasq restarted)`,
        );
        return;
      }
      const pid = await this.#io.hangup(dnsmasq.pid_file);
      log.info(
        { file: serversFile, servers, pid },
        `dnsmasq: wrote ${serversFile}, SIGHUP to pid ${pid}: ${servers.map((s) => s.slice(7)).join(", ") || "no servers"}`,
      );
    } catch (error) {
      this.#unsettled.add(serversFile);
      log.error({ err: error, file: serversFile }, `dnsmasq servers file: ${String(error)}`);
    }
  }

  /**
   * Write the file when its content differs.
   * @returns true when dnsmasq must be told: the file was written, or
   *   telling it failed last time.
   */
  async #writeIfChanged(path: string, content: string): Promise<boolean> {
    const known = this.#written.has(path) ? this.#written.get(path) : await this.#io.read(path);
    const unsettled = this.#unsettled.delete(path);
    if (known !== content) await this.#io.write(path, content);
    this.#written.set(path, content);
    return unsettled || known !== content;
  }

  /**
   * Sample each domain set's size (`nft -j list set`), at most once a
   * second for one config (a reload's new config is sampled at once); never
   * throws (a set that cannot be read has size null).
   */
  async refreshSizes(config: Config): Promise<void> {
    const now = (this.#options.now ?? Date.now)();
    if (now - this.#sampledAt < 1000 && config === this.#sampledConfig) return;
    this.#sampledAt = now;
    this.#sampledConfig = config;
    const table = config.dataplane.table;
    this.#sizes = await Promise.all(
      domainSets(config).map(async (set) => ({
        set: set.name,
        family: set.family,
        rule: set.rule,
        ruleName: set.ruleName ?? null,
        domains: set.domains,
        elements: await this.#options.kernel.nftSetSize(table, set.name).catch(() => null),
      })),
    );
  }

  /** The domain sets' sizes at the last sample. */
  get sizes(): readonly DomainSetStatus[] {
    return this.#sizes;
  }
}

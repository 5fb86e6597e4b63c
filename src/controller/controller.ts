/**
 * The controller: the one path by which uplinkd's kernel state changes.
 *
 *     desired kernel state = f(config, links, uplink health, load)   (desired.ts)
 *
 * Every trigger (a health transition, maintenance, a link change, a reload,
 * the periodic verify, a retry) asks for a reconcile; requests that arrive
 * while one waits are merged into it. A reconcile renders the desired state
 * and compares it with the last state known to be in the kernel:
 *
 * - urgent (a transition, maintenance, new load-based weights): the difference is computed in
 *   memory against the last applied state and applied at once: map
 *   elements only (one small nft transaction) when only maps differ, then
 *   the route and rule commands that differ. No kernel read comes first.
 * - full (start, links, verify, retry, reload): read the kernel, apply the
 *   smallest change (the whole nft table only when its structure differs),
 *   re-read and verify.
 *
 * Urgent work goes first. A full reconcile that is still reading the kernel
 * is preempted by urgent work (its reads are abandoned, it runs again
 * afterwards), so a slow `nft list` never delays a failover. Which
 * connections to clear is derived from the change between two applied
 * states ({@link staleUplinks}) and done on a lane of its own, so a slow or
 * hung `conntrack -D` never delays the next kernel change either.
 *
 * A failed reconcile is logged with the command and the kernel's message,
 * and retried as a full reconcile after a backoff.
 */
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import { Dataplane, planIsEmpty, type DataplaneOwner, type Plan } from "../dataplane/apply.js";
import { diffIp, ipCommands } from "../dataplane/diff.js";
import { policyMembers, policyNames } from "../dataplane/nft.js";
import type { DesiredState, UplinkView } from "../dataplane/render.js";
import { sleep, type Clock, type TimerHandle } from "../clock.js";
import type { Kernel } from "../kernel/types.js";
import type { PolicyChoice } from "../policy/select.js";
import { ConntrackCleaner, staleUplinks, type StaleUplink, type UplinkSummary } from "./cleanup.js";
import { desiredState, type ControllerInputs } from "./desired.js";

export type { ControllerInputs } from "./desired.js";

/** What asked for a reconcile. */
export type Trigger =
  | "start"
  | "transition"
  | "maintenance"
  | "load"
  | "quota"
  | "links"
  | "verify"
  | "retry"
  | "schedule";

/** Triggers whose change is applied from memory, ahead of everything else. */
const URGENT: ReadonlySet<Trigger> = new Set(["transition", "maintenance", "load", "quota"]);

/** The last state known to be in the kernel. */
interface Applied {
  owner: DataplaneOwner;
  desired: DesiredState;
  uplinks: UplinkSummary[];
}

/** The outcome of the last reconcile, for status. */
export interface LastApply {
  /** ISO time. */
  at: string;
  ok: boolean;
  error?: string;
}

/** Options of a {@link Controller}. */
export interface ControllerOptions {
  kernel: Kernel;
  log: Logger;
  clock: Clock;
  /** The inputs now (config, views, surroundings); called at the start of each reconcile. */
  inputs: () => ControllerInputs;
  /** Interval of the full verify, ms (default 10 s). */
  verifyIntervalMs?: number;
  /** Delay before retry `attempt` (1, 2, ...) after a failed reconcile, ms. */
  retryDelayMs: (attempt: number) => number;
  /**
   * Called each time the kernel is known to hold the state of `inputs`
   * (after every successful reconcile, urgent or full, changed or not).
   * Must return at once and not throw.
   */
  onCommit?: (inputs: ControllerInputs) => void;
  /**
   * How long the clean-up of an uplink that just failed waits, ms (default
   * 0: at once). Then it is done only if the uplink is still failed and an
   * alternative is still usable: uplinks that fail together (a probe-target
   * outage) are detected a round or two apart, and the first one must not
   * see the others as its alternative.
   */
  failedClearGraceMs?: () => number;
}

interface Waiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

interface Pending {
  reasons: Set<string>;
  waiters: Waiter[];
}

interface Exclusive {
  work: () => Promise<void>;
}

const NOT_PREEMPTIBLE = { preemptible: false, preempt: () => undefined } as const;

/** Thrown inside a reconcile that urgent work preempted while it was reading. */
class Preempted extends Error {
  constructor() {
    super("preempted by urgent work");
  }
}

/** The owner (nft table, route protocol) a config gives uplinkd's kernel objects. */
export function ownerOf(config: Config): DataplaneOwner {
  return { table: config.dataplane.table, protocol: config.dataplane.route_protocol };
}

function summarise(
  inputs: ControllerInputs,
  choices: Record<string, PolicyChoice>,
  choices6: Record<string, PolicyChoice>,
): UplinkSummary[] {
  const active = activeUplinks(choices);
  const active6 = activeUplinks(choices6);
  const failed6 = inputs.failed6;
  return inputs.views.map((v) => ({
    name: v.name,
    mark: v.mark,
    mask: v.mask,
    failed: inputs.failed.has(v.name),
    active: active.has(v.name),
    alternative: hasAlternative(inputs, choices, v.name, inputs.failed),
    ...(failed6 === undefined
      ? {}
      : {
          failed6: failed6.has(v.name),
          active6: active6.has(v.name),
          alternative6: hasAlternative(inputs, choices6, v.name, failed6),
        }),
  }));
}

/**
 * Whether a policy that `uplink` is a member of gives new connections to
 * another uplink that is not in `failed`: the connections of `uplink`
 * would have somewhere better to go.
 */
export function hasAlternative(
  inputs: Pick<ControllerInputs, "config" | "views">,
  choices: Record<string, PolicyChoice>,
  uplink: string,
  failed: ReadonlySet<string>,
): boolean {
  return policyNames(inputs.config).some((policy) => {
    const choice = choices[policy];
    if (choice?.kind !== "balance") return false;
    if (!policyMembers(inputs.config, inputs.views, policy).some((m) => m.uplink === uplink)) {
      return false;
    }
    return choice.members.some((m) => m.uplink !== uplink && m.weight > 0 && !failed.has(m.uplink));
  });
}

/** Uplinks that some policy gives new connections in `choices` (a member with weight 0 gets none). */
export function activeUplinks(choices: Record<string, PolicyChoice>): Set<string> {
  return new Set(
    Object.values(choices).flatMap((c) =>
      c.kind === "balance" ? c.members.filter((m) => m.weight > 0).map((m) => m.uplink) : [],
    ),
  );
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** The controller. The constructor starts nothing; see {@link Controller.start}. */
export class Controller {
  readonly #options: ControllerOptions;
  readonly cleaner: ConntrackCleaner;
  #applied: Applied | undefined;
  /**
   * The state last committed, kept while the next one is being written
   * (when {@link #applied} is unknown), so that status never shows a policy
   * without members in the middle of a change.
   */
  #committed: DesiredState | undefined;
  #urgent: Pending | undefined;
  #full: Pending | undefined;
  readonly #exclusive: Exclusive[] = [];
  /** The running reconcile: whether it may be preempted now, and how. */
  #running: { preemptible: boolean; preempt: () => void } | undefined;
  #pumping: Promise<void> | undefined;
  #retryTimer: TimerHandle | undefined;
  #verifyTimer: TimerHandle | undefined;
  #failures = 0;
  #stopped = false;
  #last: LastApply | null = null;
  /** The uplinks' summary of the last commit (kept while the next change is written). */
  #lastUplinks: UplinkSummary[] | undefined;

  constructor(options: ControllerOptions) {
    this.#options = options;
    this.cleaner = new ConntrackCleaner({
      kernel: options.kernel,
      log: options.log,
      retryDelayMs: options.retryDelayMs,
      sleep: (ms) => sleep(options.clock, ms),
    });
  }

  /** What each policy does in the last committed state (kept while a change is being written). */
  get choices(): Record<string, PolicyChoice> {
    return this.#committed?.choices ?? {};
  }

  /** What each policy does with new IPv6 connections in the last committed state. */
  get choices6(): Record<string, PolicyChoice> {
    return this.#committed?.choices6 ?? {};
  }

  /** The outcome of the last reconcile; null before the first. */
  get lastApply(): LastApply | null {
    return this.#last;
  }

  /**
   * The first full reconcile, then the periodic verify.
   * @throws {KernelCommandError} or {DataplaneVerifyError} when it fails (nothing is retried).
   */
  async start(): Promise<void> {
    await this.request("start");
    this.#scheduleVerify();
  }

  #scheduleVerify(): void {
    if (this.#stopped) return;
    this.#verifyTimer = this.#options.clock.setTimeout(() => {
      this.request("verify").catch(() => undefined);
      this.#scheduleVerify();
    }, this.#options.verifyIntervalMs ?? 10_000);
  }

  /**
   * Ask for a reconcile. Merged with a request of the same kind that waits.
   * @returns resolves when a reconcile that started after this call has
   *   succeeded; rejects with its error (the retry is scheduled anyway).
   */
  request(trigger: Trigger, reason: string = trigger): Promise<void> {
    if (this.#stopped) return Promise.reject(new Error("uplinkd is stopping"));
    const urgent = URGENT.has(trigger);
    const pending = urgent
      ? (this.#urgent ??= { reasons: new Set(), waiters: [] })
      : (this.#full ??= { reasons: new Set(), waiters: [] });
    pending.reasons.add(reason);
    const done = new Promise<void>((resolve, reject) => {
      pending.waiters.push({ resolve, reject });
    });
    if (urgent && this.#running?.preemptible === true) this.#running.preempt();
    this.#pump();
    return done;
  }

  /**
   * Run `work` alone: no reconcile runs beside it (a reload). Urgent work
   * that waits goes first.
   * @returns what `work` returns; rejects with what it throws.
   */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#exclusive.push({
        work: async () => {
          try {
            resolve(await work());
          } catch (error) {
            reject(asError(error));
          }
        },
      });
      this.#pump();
    });
  }

  /**
   * Apply the desired state of `inputs` (a reload's new config) as a full
   * reconcile, then remove what the old owner (nft table name, route
   * protocol) left. Call only from inside {@link exclusive}. When the kernel
   * refuses, the state of the current inputs is put back and the error
   * rethrown.
   * @returns the plan that was carried out.
   * @throws {KernelCommandError} or {DataplaneVerifyError}: what the kernel refused.
   */
  async applyCandidate(inputs: ControllerInputs): Promise<Plan> {
    const before = this.#applied;
    try {
      const plan = await this.#fullReconcile(inputs, "reload", false);
      if (before !== undefined) await this.#removeOldOwner(before.owner, ownerOf(inputs.config));
      return plan;
    } catch (error) {
      this.#options.log.error(
        { err: error },
        `reload refused by the kernel, putting the previous state back: ${asError(error).message}`,
      );
      await this.#fullReconcile(this.#options.inputs(), "reload rolled back", false).catch(
        (rollback: unknown) => {
          this.#options.log.error(
            { err: rollback },
            `putting the previous state back failed: ${asError(rollback).message}`,
          );
          this.#scheduleRetry();
        },
      );
      throw error;
    }
  }

  async #removeOldOwner(old: DataplaneOwner, next: DataplaneOwner): Promise<void> {
    const dataplane = new Dataplane(this.#options.kernel, old);
    const nft = old.table !== next.table;
    const ip = old.protocol !== next.protocol;
    if (!nft && !ip) return;
    await dataplane.removeAll({ nft, ip });
    this.#options.log.info(
      { table: nft ? old.table : undefined, protocol: ip ? old.protocol : undefined },
      "removed the kernel objects of the previous dataplane settings",
    );
  }

  #pump(): void {
    this.#pumping ??= this.#loop().finally(() => {
      this.#pumping = undefined;
      // Work requested between the loop's last look and now.
      if (this.#urgent !== undefined || this.#full !== undefined || this.#exclusive.length > 0) {
        this.#pump();
      }
    });
  }

  async #loop(): Promise<void> {
    for (;;) {
      if (this.#stopped) {
        this.#rejectAll(new Error("uplinkd is stopping"));
        return;
      }
      const urgent = this.#urgent;
      if (urgent !== undefined) {
        this.#urgent = undefined;
        await this.#run(urgent, true);
        continue;
      }
      const exclusive = this.#exclusive.shift();
      if (exclusive !== undefined) {
        this.#running = NOT_PREEMPTIBLE;
        await exclusive.work();
        this.#running = undefined;
        continue;
      }
      const full = this.#full;
      if (full !== undefined) {
        this.#full = undefined;
        await this.#run(full, false);
        continue;
      }
      return;
    }
  }

  async #run(pending: Pending, urgent: boolean): Promise<void> {
    const why = [...pending.reasons].join(", ");
    this.#running = NOT_PREEMPTIBLE;
    try {
      if (urgent) await this.#urgentReconcile(why);
      else await this.#fullReconcile(this.#options.inputs(), why, true);
    } catch (error) {
      if (error instanceof Preempted) {
        // Run again after the urgent work, with the same waiters.
        const again = (this.#full ??= { reasons: new Set(), waiters: [] });
        for (const reason of pending.reasons) again.reasons.add(reason);
        again.waiters.push(...pending.waiters);
        return;
      }
      const failure = asError(error);
      this.#last = {
        at: new Date(this.#options.clock.wall()).toISOString(),
        ok: false,
        error: failure.message,
      };
      this.#options.log.error({ err: failure, during: why }, `${why}: ${failure.message}`);
      this.#scheduleRetry();
      for (const w of pending.waiters) w.reject(failure);
      return;
    } finally {
      this.#running = undefined;
    }
    this.#last = { at: new Date(this.#options.clock.wall()).toISOString(), ok: true };
    this.#failures = 0;
    if (this.#retryTimer !== undefined) {
      this.#options.clock.clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
    }
    for (const w of pending.waiters) w.resolve();
  }

  #scheduleRetry(): void {
    if (this.#stopped || this.#retryTimer !== undefined) return;
    this.#failures++;
    const delay = this.#options.retryDelayMs(this.#failures);
    this.#options.log.warn(
      { attempt: this.#failures, retryInMs: delay },
      `retrying in ${delay} ms`,
    );
    this.#retryTimer = this.#options.clock.setTimeout(() => {
      this.#retryTimer = undefined;
      this.request("retry", `retry ${this.#failures}`).catch(() => undefined);
    }, delay);
  }

  /**
   * A transition or maintenance: the change computed in memory against the
   * last applied state. Falls back to a full reconcile (not preemptible)
   * when there is no such state or the table's structure or owner changed.
   */
  async #urgentReconcile(why: string): Promise<void> {
    const inputs = this.#options.inputs();
    const desired = desiredState(inputs);
    const owner = ownerOf(inputs.config);
    const applied = this.#applied;
    if (
      applied === undefined ||
      applied.desired.nftHash !== desired.nftHash ||
      applied.owner.table !== owner.table ||
      applied.owner.protocol !== owner.protocol
    ) {
      await this.#fullReconcile(inputs, why, false);
      return;
    }
    const dataplane = new Dataplane(this.#options.kernel, owner);
    const maps = Object.fromEntries(
      Object.entries(desired.maps).filter(
        ([name, elements]) =>
          JSON.stringify(elements) !== JSON.stringify(applied.desired.maps[name]),
      ),
    );
    const commands = ipCommands(diffIp(desired, applied.desired, owner.protocol));
    // From here on the kernel may hold something between the two states.
    this.#applied = undefined;
    if (Object.keys(maps).length > 0) await dataplane.updateMaps(maps);
    await this.#options.kernel.ipBatch(commands);
    this.#commit(inputs, desired, applied);
    if (Object.keys(maps).length + commands.length > 0) {
      this.#logApplied(why, [], Object.keys(maps), commands);
      // Verify what the in-memory difference assumed, behind any other urgent work.
      this.request("verify", `verify after ${why}`).catch(() => undefined);
    }
  }

  /**
   * One short info line per change the kernel took (why, the nft maps, how
   * many ip commands); the commands themselves at debug.
   */
  #logApplied(why: string, nftReload: string[], nftMaps: string[], ip: string[]): void {
    const parts = [
      ...(nftReload.length > 0 ? ["nft table loaded"] : []),
      ...(nftMaps.length > 0 ? [`nft maps ${nftMaps.join(", ")}`] : []),
      ...(ip.length > 0 ? [`${ip.length} ip command${ip.length === 1 ? "" : "s"}`] : []),
    ];
    this.#options.log.info(
      { why, nftReload, nftMaps, ipCommands: ip.length },
      `applied kernel changes (${why}): ${parts.join("; ")}`,
    );
    if (ip.length > 0) this.#options.log.debug({ why, ip }, `ip commands (${why})`);
  }

  /**
   * Read the kernel, apply the smallest change to reach the desired state of
   * `inputs`, re-read and compare.
   * @param preemptible urgent work may abandon it while it reads (before it
   *   writes, or while it verifies what it wrote).
   * @throws {Preempted} when urgent work preempted it before it wrote.
   * @throws {KernelCommandError} when a command fails or times out.
   * @throws {DataplaneVerifyError} when the kernel holds something else afterwards.
   */
  async #fullReconcile(inputs: ControllerInputs, why: string, preemptible: boolean): Promise<Plan> {
    const desired = desiredState(inputs);
    const owner = ownerOf(inputs.config);
    const dataplane = new Dataplane(this.#options.kernel, owner);
    const previous = this.#applied;
    const plan = await this.#reading(preemptible, () => dataplane.plan(desired, inputs.views));
    if (planIsEmpty(plan)) {
      this.#commit(inputs, desired, previous);
      return plan;
    }
    // From here on the kernel may hold something between the two states.
    this.#applied = undefined;
    await dataplane.write(plan, desired);
    this.#commit(inputs, desired, previous);
    this.#logApplied(why, plan.nft.reload, Object.keys(plan.nft.maps), plan.ipCommands);
    try {
      await this.#reading(preemptible, () => dataplane.verify(desired, inputs.views));
    } catch (error) {
      // Urgent work came while verifying: it verifies what it changes itself.
      if (error instanceof Preempted) return plan;
      this.#applied = undefined;
      throw error;
    }
    return plan;
  }

  /**
   * Await a kernel read. When `preemptible`, urgent work that arrives
   * meanwhile abandons it at once (the read goes on in the background and
   * ends with its command's timeout; it changes nothing).
   * @throws {Preempted} when abandoned.
   */
  async #reading<T>(preemptible: boolean, read: () => Promise<T>): Promise<T> {
    if (!preemptible) return read();
    const result = read();
    result.catch(() => undefined);
    const preempted = new Promise<never>((_resolve, reject) => {
      this.#running = {
        preemptible: true,
        preempt: () => {
          reject(new Preempted());
        },
      };
    });
    preempted.catch(() => undefined);
    try {
      return await Promise.race([result, preempted]);
    } finally {
      this.#running = NOT_PREEMPTIBLE;
    }
  }

  /** The kernel now holds `desired`: remember it and clear what became stale. */
  #commit(inputs: ControllerInputs, desired: DesiredState, previous: Applied | undefined): void {
    const uplinks = summarise(inputs, desired.choices, desired.choices6);
    this.#applied = { owner: ownerOf(inputs.config), desired, uplinks };
    this.#committed = desired;
    this.#options.onCommit?.(inputs);
    this.#lastUplinks = uplinks;
    const grace = this.#options.failedClearGraceMs?.() ?? 0;
    for (const stale of staleUplinks(previous?.uplinks, uplinks)) {
      if (grace > 0 && (stale.why === "failed" || stale.why === "IPv6 failed")) {
        this.#options.clock.setTimeout(() => {
          this.#clearIfStillFailed(stale);
        }, grace);
        continue;
      }
      this.cleaner.clear(stale).catch(() => undefined);
    }
    for (const u of uplinks) {
      const old = previous?.uplinks.find((o) => o.name === u.name);
      const kept = u.failed && u.alternative === false;
      if (kept && !(old?.failed === true && old.alternative === false)) {
        this.#options.log.warn(
          { uplink: u.name },
          `uplink ${u.name} failed but no other uplink of its policies is usable: its connections are kept until one is`,
        );
      }
    }
  }

  /** After the grace: clear a failed uplink's entries if it is still failed with an alternative. */
  #clearIfStillFailed(stale: StaleUplink): void {
    if (this.#stopped) return;
    const now = this.#lastUplinks?.find((u) => u.name === stale.name);
    if (now === undefined || now.mark !== stale.mark || now.mask !== stale.mask) return;
    const still =
      stale.family === 6
        ? now.failed6 === true && now.alternative6 !== false
        : now.failed && now.alternative !== false;
    if (still) this.cleaner.clear(stale).catch(() => undefined);
  }

  /**
   * Delete the conntrack entries of one uplink now (`disable --drain`).
   * @returns the number of entries deleted.
   * @throws {KernelCommandError} when every attempt failed.
   */
  drain(view: Pick<UplinkView, "name" | "mark" | "mask">): Promise<number> {
    return this.cleaner.clear({ ...view, why: "drained" });
  }

  /** Resolves when no reconcile runs or waits (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#pumping !== undefined) await this.#pumping;
  }

  /**
   * Stop: no more reconciles or retries; waits for the running one.
   * @param remove also remove every kernel object of the last applied (or `config`'s) owner.
   * @throws {KernelCommandError} when the removal fails.
   */
  async stop(config: Config, remove: boolean): Promise<void> {
    if (this.#verifyTimer !== undefined) this.#options.clock.clearTimeout(this.#verifyTimer);
    if (this.#retryTimer !== undefined) this.#options.clock.clearTimeout(this.#retryTimer);
    this.#stopped = true;
    this.cleaner.stop();
    await this.idle();
    this.#rejectAll(new Error("uplinkd is stopping"));
    if (!remove) return;
    const owner = this.#applied?.owner ?? ownerOf(config);
    await new Dataplane(this.#options.kernel, owner).removeAll();
  }

  #rejectAll(error: Error): void {
    for (const pending of [this.#urgent, this.#full]) {
      for (const w of pending?.waiters ?? []) w.reject(error);
    }
    this.#urgent = undefined;
    this.#full = undefined;
  }
}

/**
 * Putting rendered state into the kernel with the smallest change, then
 * reading it back to verify. The only writer of uplinkd's kernel state.
 */
import { DataplaneVerifyError } from "../errors.js";
import type { Kernel } from "../kernel/types.js";
import {
  diffIp,
  diffNft,
  ipCommands,
  isEmpty,
  summariseNft,
  type IpChanges,
  type NftDiff,
} from "./diff.js";
import { renderMapUpdate, uplinkChain, type DesiredState, type UplinkView } from "./render.js";

/** What would change in the kernel to reach a desired state. */
export interface Plan {
  nft: NftDiff;
  ip: IpChanges;
  /** The iproute2 commands, in the order they run (without the leading `ip`). */
  ipCommands: string[];
}

/** True when the plan changes nothing. */
export function planIsEmpty(plan: Plan): boolean {
  return (
    plan.nft.reload.length === 0 && Object.keys(plan.nft.maps).length === 0 && isEmpty(plan.ip)
  );
}

/** Identity of the dataplane uplinkd owns in one network namespace. */
export interface DataplaneOwner {
  /** nft table name (family inet). */
  table: string;
  /** rtnetlink protocol number on every route and rule uplinkd owns. */
  protocol: number;
}

/** Chains every rendered table has. */
export function expectedChains(views: readonly UplinkView[]): string[] {
  return [
    "prerouting",
    "output",
    "postrouting",
    "mark_unreachable",
    ...views.map((v) => uplinkChain(v.id)),
  ];
}

/** The dataplane: compares, applies and verifies. */
export class Dataplane {
  constructor(
    private readonly kernel: Kernel,
    private readonly owner: DataplaneOwner,
  ) {}

  /**
   * What would change to reach `desired`; changes nothing.
   * @throws {KernelCommandError} when the kernel cannot be read.
   */
  async plan(desired: DesiredState, views: readonly UplinkView[]): Promise<Plan> {
    const [table, routes, rules] = await Promise.all([
      this.kernel.nftReadTable(this.owner.table),
      this.kernel.readRoutes(),
      this.kernel.readRules(),
    ]);
    const nft = diffNft(
      { hash: desired.nftHash, chains: expectedChains(views), maps: desired.maps },
      table === null ? null : summariseNft(table),
    );
    const ip = diffIp(desired, { routes, rules }, this.owner.protocol);
    return { nft, ip, ipCommands: ipCommands(ip) };
  }

  /**
   * Make the kernel hold `desired` with the smallest change: the whole nft
   * table (one transaction) only when its structure differs, else only the
   * map elements that differ; then the iproute2 changes; then re-read and
   * compare.
   *
   * @returns the plan that was carried out.
   * @throws {KernelCommandError} when nft or ip fails: nft leaves the old
   *   table as it was; ip stops at the failing line, and since additions run
   *   before deletions the old paths stay.
   * @throws {DataplaneVerifyError} when the kernel holds something else afterwards.
   */
  async apply(desired: DesiredState, views: readonly UplinkView[]): Promise<Plan> {
    const plan = await this.plan(desired, views);
    if (plan.nft.reload.length > 0) await this.kernel.nftLoad(desired.nftScript);
    else if (Object.keys(plan.nft.maps).length > 0) await this.updateMaps(plan.nft.maps);
    await this.kernel.ipBatch(plan.ipCommands);
    const after = await this.plan(desired, views);
    if (!planIsEmpty(after)) {
      throw new DataplaneVerifyError([
        ...after.nft.reload,
        ...after.nft.differences,
        ...after.ipCommands.map((c) => `still to do: ip ${c}`),
      ]);
    }
    return plan;
  }

  /**
   * Replace only the elements of the given maps (a failover): one small nft
   * transaction.
   * @throws {KernelCommandError}
   */
  async updateMaps(maps: Record<string, readonly string[]>): Promise<void> {
    await this.kernel.nftLoad(renderMapUpdate(this.owner.table, maps));
  }

  /**
   * Apply only the iproute2 part of `desired` (routes and rules).
   * @returns the commands that ran.
   * @throws {KernelCommandError}
   */
  async applyIp(desired: Pick<DesiredState, "routes" | "rules">): Promise<string[]> {
    const [routes, rules] = await Promise.all([this.kernel.readRoutes(), this.kernel.readRules()]);
    const commands = ipCommands(diffIp(desired, { routes, rules }, this.owner.protocol));
    await this.kernel.ipBatch(commands);
    return commands;
  }

  /**
   * Remove everything uplinkd owns: its nft table, and every route and rule
   * carrying its protocol number. Other tables, routes and rules stay.
   * @throws {KernelCommandError}
   */
  async removeAll(): Promise<void> {
    const table = await this.kernel.nftReadTable(this.owner.table);
    if (table !== null) await this.kernel.nftLoad(`delete table inet ${this.owner.table}\n`);
    const [routes, rules] = await Promise.all([this.kernel.readRoutes(), this.kernel.readRules()]);
    const ip = diffIp({ routes: [], rules: [] }, { routes, rules }, this.owner.protocol);
    await this.kernel.ipBatch(ipCommands(ip));
  }
}

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
import { carryElements, readDomainSets } from "./domains.js";
import { renderMapUpdate, uplinkChain, type DesiredState, type UplinkView } from "./render.js";

/** What would change in the kernel to reach a desired state. */
export interface Plan {
  nft: NftDiff;
  /**
   * nft commands appended to a whole-table reload: they put back the
   * elements dnsmasq had put in the domain sets that stay (see
   * carryElements). Empty when there are none.
   */
  carry: string[];
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
      {
        hash: desired.nftHash,
        chains: expectedChains(views),
        maps: desired.maps,
        domainSets: desired.domainSets.map((s) => s.name),
      },
      table === null ? null : summariseNft(table),
    );
    const carry =
      table === null || nft.reload.length === 0
        ? []
        : carryElements(this.owner.table, desired.domainSets, readDomainSets(table));
    const ip = diffIp(desired, { routes, rules }, this.owner.protocol);
    return { nft, carry, ip, ipCommands: ipCommands(ip) };
  }

  /**
   * Make the kernel hold `desired` with the smallest change: {@link plan},
   * {@link write}, {@link verify}.
   *
   * @returns the plan that was carried out.
   * @throws {KernelCommandError} when nft or ip fails (see {@link write}).
   * @throws {DataplaneVerifyError} when the kernel holds something else afterwards.
   */
  async apply(desired: DesiredState, views: readonly UplinkView[]): Promise<Plan> {
    const plan = await this.plan(desired, views);
    await this.write(plan, desired);
    if (!planIsEmpty(plan)) await this.verify(desired, views);
    return plan;
  }

  /**
   * Carry out a plan: the whole nft table (one transaction, with the domain
   * sets' elements carried over) only when its structure differs, else only
   * the map elements that differ (domain sets untouched); then the iproute2
   * changes.
   * @throws {KernelCommandError} when nft or ip fails: nft leaves the old
   *   table as it was; ip stops at the failing line, and since additions run
   *   before deletions the old paths stay.
   */
  async write(plan: Plan, desired: DesiredState): Promise<void> {
    if (plan.nft.reload.length > 0) {
      const carry = plan.carry.length === 0 ? "" : `${plan.carry.join("\n")}\n`;
      await this.kernel.nftLoad(desired.nftScript + carry);
    } else if (Object.keys(plan.nft.maps).length > 0) await this.updateMaps(plan.nft.maps);
    await this.kernel.ipBatch(plan.ipCommands);
  }

  /**
   * Re-read the kernel and compare with `desired`.
   * @throws {DataplaneVerifyError} listing what differs.
   * @throws {KernelCommandError} when the kernel cannot be read.
   */
  async verify(desired: DesiredState, views: readonly UplinkView[]): Promise<void> {
    const after = await this.plan(desired, views);
    if (planIsEmpty(after)) return;
    throw new DataplaneVerifyError([
      ...after.nft.reload,
      ...after.nft.differences,
      ...after.ipCommands.map((c) => `still to do: ip ${c}`),
    ]);
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
   * Remove what uplinkd owns: its nft table, and every route and rule
   * carrying its protocol number. Other tables, routes and rules stay.
   * @param parts what to remove (default both): after a reload that renamed
   *   the table only the old table goes; after one that changed the
   *   protocol only the old routes and rules.
   * @throws {KernelCommandError}
   */
  async removeAll(parts: { nft: boolean; ip: boolean } = { nft: true, ip: true }): Promise<void> {
    if (parts.nft) {
      const table = await this.kernel.nftReadTable(this.owner.table);
      if (table !== null) await this.kernel.nftLoad(`delete table inet ${this.owner.table}\n`);
    }
    if (!parts.ip) return;
    const [routes, rules] = await Promise.all([this.kernel.readRoutes(), this.kernel.readRules()]);
    const ip = diffIp({ routes: [], rules: [] }, { routes, rules }, this.owner.protocol);
    await this.kernel.ipBatch(ipCommands(ip));
  }
}

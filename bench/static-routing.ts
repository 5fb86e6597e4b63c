/**
 * A lab router without uplinkd: the hand-made multi-ISP setup that lsm's
 * event script drives and that the throughput part compares against. In
 * the router namespace only:
 * - a main-table default route with one nexthop per uplink (weight 1 each)
 *   and layer-4 multipath hashing (`fib_multipath_hash_policy=1`), so new
 *   connections spread over the uplinks as uplinkd's do;
 * - per uplink i a routing table 200+i with `default via GW dev wanI` and a
 *   rule `from ADDR lookup 200+i` (a probe bound to the uplink's address
 *   leaves by it, whatever the main table says);
 * - masquerade on the uplinks (`table inet bench_nat`; the ISPs drop
 *   packets with a LAN source), and no other nft rule.
 */
import type { Lab } from "../src/lab/lab.js";
import { exec } from "./built.js";

/** Routing table of uplink i: 200 + i. */
const TABLE_BASE = 200;
/** Rule priority of uplink i: 500 + i (before main, 32766). */
const RULE_BASE = 500;
const NAT_TABLE = "bench_nat";

/** `nexthop via GW dev IF weight 1` for every uplink of the lab. */
export function allNexthops(lab: Lab): string[] {
  return lab.uplinks.flatMap((u) => [
    "nexthop",
    "via",
    u.gateway,
    "dev",
    u.routerInterface,
    "weight",
    "1",
  ]);
}

/**
 * Install the static setup in the lab's router (replacing any earlier one).
 * @throws {KernelCommandError} when a command fails.
 */
export async function installStaticRouting(lab: Lab): Promise<void> {
  const rtr = lab.namespace("rtr");
  await removeStaticRouting(lab);
  await exec.runCommand("ip", [
    "netns",
    "exec",
    rtr,
    "sysctl",
    "-q",
    "-w",
    "net.ipv4.fib_multipath_hash_policy=1",
  ]);
  const ifaces = lab.uplinks.map((u) => `"${u.routerInterface}"`).join(", ");
  await exec.runCommand("ip", ["netns", "exec", rtr, "nft", "-f", "-"], {
    input:
      `table inet ${NAT_TABLE} {}\ndelete table inet ${NAT_TABLE}\n` +
      `table inet ${NAT_TABLE} {\n\tchain postrouting {\n` +
      `\t\ttype nat hook postrouting priority srcnat; policy accept;\n` +
      `\t\toifname { ${ifaces} } masquerade\n\t}\n}\n`,
  });
  const lines: string[] = [];
  for (const u of lab.uplinks) {
    const table = TABLE_BASE + u.number;
    lines.push(`route replace default via ${u.gateway} dev ${u.routerInterface} table ${table}`);
    lines.push(`rule add from ${u.routerAddress} lookup ${table} pref ${RULE_BASE + u.number}`);
  }
  lines.push(`route replace default ${allNexthops(lab).join(" ")}`);
  await exec.runCommand("ip", ["-n", rtr, "-batch", "-"], {
    input: lines.join("\n") + "\n",
  });
}

/**
 * Remove the static setup (what {@link installStaticRouting} added); what
 * is already gone is fine.
 */
export async function removeStaticRouting(lab: Lab): Promise<void> {
  const rtr = lab.namespace("rtr");
  await exec.runCommand("ip", ["netns", "exec", rtr, "nft", "-f", "-"], {
    input: `table inet ${NAT_TABLE} {}\ndelete table inet ${NAT_TABLE}\n`,
  });
  // `-force`: carry on past what is not there (exit 1 then).
  const lines = ["route del default"];
  for (const u of lab.uplinks) {
    lines.push(`rule del pref ${RULE_BASE + u.number}`);
    lines.push(`route flush table ${TABLE_BASE + u.number}`);
  }
  await exec.runCommand("ip", ["-n", rtr, "-force", "-batch", "-"], {
    input: lines.join("\n") + "\n",
    allowExitCodes: [1],
  });
}

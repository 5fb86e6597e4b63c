/**
 * The daemon config `lab up` writes for its router: every uplink of the
 * lab, the lab's ping targets, and a control socket inside the lab's state
 * directory (so two labs never share one).
 */
import { stringify } from "yaml";
import { configSchema } from "../config/schema.js";
import { LabError } from "../errors.js";
import { LAB_HOSTS, LAN, type LabPlan } from "./topology.js";

/**
 * The config as YAML text: `lab: true`, `lan: [lan0]`; uplinks `ispI` on `wanI` with
 * gateway `100.64.I.1` (or `auto` for DHCP uplinks), their weight and tier;
 * health targets 198.51.100.1 and 203.0.113.1 every 200 ms, timeout 500 ms;
 * `control.socket` = `controlSocket`. `configPath` only appears in a comment.
 * @throws {LabError} when the result does not pass the config schema (a lab bug).
 */
export function renderLabConfig(plan: LabPlan, controlSocket: string, configPath: string): string {
  const config = {
    // Lab targets are documentation addresses: `check` expects them here.
    lab: true,
    lan: [LAN.routerInterface],
    uplinks: plan.uplinks.map((u) => ({
      name: u.name,
      interface: u.routerInterface,
      gateway: u.dhcp ? "auto" : u.gateway,
      weight: u.weight,
      tier: u.tier,
    })),
    health: {
      targets: [...LAB_HOSTS.pingTargets],
      interval: "200ms",
      timeout: "500ms",
    },
    control: { socket: controlSocket },
  };
  const checked = configSchema.safeParse(config);
  if (!checked.success) {
    throw new LabError(`lab config does not validate: ${checked.error.message}`);
  }
  const header =
    `# uplinkd config for the lab "${plan.prefix}", written by \`uplinkd lab up\`.\n` +
    `# Run the daemon in the router namespace: uplinkd lab exec rtr --prefix ${plan.prefix} -- uplinkd run -c ${configPath}\n`;
  return header + stringify(config);
}

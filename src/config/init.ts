/**
 * `uplinkd init`: a first config from what this machine shows.
 *
 * Uplinks are the interfaces with a default route in the main table, a
 * dynamic (DHCP) address, a DHCP client's lease file, or a point-to-point
 * link (PPP); the LAN is every other interface with a private (RFC 1918),
 * shared (100.64.0.0/10) or unique-local address. Container bridges, veths
 * and VPN tunnels are skipped by name. Health targets are public anycast
 * DNS resolvers (`PUBLIC_TARGETS`), never lab-only addresses.
 *
 * `planInit` and `renderInitConfig` are pure (facts in, YAML out);
 * `readMachineFacts` reads the kernel (`ip -j`) and the DHCP clients' lease
 * directories; nothing here sends a packet.
 */
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { UplinkdError } from "../errors.js";
import { runCommand } from "../process/run.js";
import { parseConfig } from "./load.js";
import { PUBLIC_TARGETS, addressKind } from "./warnings.js";

/** `uplinkd init` cannot write a config (code `UPLINKD_ERR_INIT`): nothing found, a file in the way. */
export class InitError extends UplinkdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("UPLINKD_ERR_INIT", message, options);
  }
}

/** One address of `ip -j addr show` (the fields init reads). */
export interface IpAddrInfo {
  family: string;
  local: string;
  prefixlen: number;
  /** True for an address with a lifetime (DHCP, SLAAC): `ip addr` prints "dynamic". */
  dynamic?: boolean;
}

/** One interface of `ip -j addr show` (the fields init reads). */
export interface IpLink {
  ifindex: number;
  ifname: string;
  /** `loopback`, `ether`, `ppp`, `none` (tunnels), ... */
  link_type?: string;
  flags?: string[];
  /** Set on a bridge or bond port. */
  master?: string;
  addr_info?: IpAddrInfo[];
}

/** One route of `ip -j -4 route show table main` (the fields init reads). */
export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  /** `dhcp`, `static`, `kernel`, `ra`, ...; absent for `boot`. */
  protocol?: string;
  metric?: number;
}

/** What init looks at. */
export interface MachineFacts {
  links: IpLink[];
  /** IPv4 routes of the main table. */
  routes: IpRoute[];
  /** Interfaces a DHCP client holds a lease file for. */
  leases: string[];
}

/** Interfaces init chooses itself instead of guessing (`--uplink`, `--lan`). */
export interface InitChoices {
  uplinks?: readonly string[];
  lan?: readonly string[];
}

/** One uplink found, with the evidence. */
export interface FoundUplink {
  name: string;
  interface: string;
  /** The default route's gateway for a static uplink, else `auto`. */
  gateway: string;
  /** Why it is an uplink, for the comment: `default via 192.0.2.1 (proto static)`. */
  why: string;
}

/** What init found. */
export interface InitPlan {
  uplinks: FoundUplink[];
  lan: { interface: string; why: string }[];
  skipped: { interface: string; why: string }[];
}

/** Interface names that are not a router's LAN or uplink: container bridges, veths, VPNs. */
const SKIPPED_NAMES: readonly (readonly [RegExp, string])[] = [
  [
    /^(docker\d+|br-[0-9a-f]{12}|virbr\d+|lxcbr\d+|lxdbr\d+|cni\d+|podman\d+|cilium_)/,
    "a container or VM bridge",
  ],
  [/^veth/, "a veth of a container"],
  [/^(tailscale|wg|zt|tun|tap|ipsec|vti)/, "a VPN tunnel"],
];

const DHCP_PROTOCOLS = new Set(["dhcp", "ra"]);
/** Address kinds of a LAN interface. */
const LAN_KINDS = new Set<string>(["private", "shared", "unique-local"]);

function ipv4Addresses(link: IpLink): IpAddrInfo[] {
  return (link.addr_info ?? []).filter((a) => a.family === "inet");
}

/** An uplink name from an interface name: letters, digits, `_`, `-`; starts with a letter. */
function uplinkName(ifname: string, taken: Set<string>): string {
  let name = ifname.replace(/[^a-zA-Z0-9_-]/g, "-");
  if (!/^[a-zA-Z]/.test(name)) name = `wan-${name}`;
  name = name.slice(0, 24);
  let candidate = name;
  for (let n = 2; taken.has(candidate); n++) candidate = `${name.slice(0, 20)}-${n}`;
  taken.add(candidate);
  return candidate;
}

/**
 * Sort the machine's interfaces into uplinks, LAN and skipped (pure).
 * Uplinks come in the order of their default route's metric, then name.
 *
 * @throws {InitError} when `choices` names an interface the machine lacks,
 *   or no uplink or no LAN interface is found (naming the interfaces seen).
 */
export function planInit(facts: MachineFacts, choices: InitChoices = {}): InitPlan {
  const byName = new Map(facts.links.map((l) => [l.ifname, l]));
  for (const name of [...(choices.uplinks ?? []), ...(choices.lan ?? [])]) {
    if (!byName.has(name)) {
      throw new InitError(
        `no interface ${name} on this machine (interfaces: ${[...byName.keys()].join(", ")})`,
      );
    }
  }
  const defaults = facts.routes.filter((r) => r.dst === "default" && r.dev !== undefined);
  const leases = new Set(facts.leases);
  const plan: InitPlan = { uplinks: [], lan: [], skipped: [] };
  const candidates: { link: IpLink; metric: number; why: string; gateway: string }[] = [];

  for (const link of facts.links) {
    const name = link.ifname;
    const addresses = ipv4Addresses(link);
    const route = defaults.find((r) => r.dev === name);
    const pointToPoint = link.link_type === "ppp" || (link.flags ?? []).includes("POINTOPOINT");
    const dynamic = addresses.find((a) => a.dynamic === true);
    const skipped = SKIPPED_NAMES.find(([pattern]) => pattern.test(name));
    const chosenUplink = choices.uplinks?.includes(name) === true;
    const chosenLan = choices.lan?.includes(name) === true;

    if (link.link_type === "loopback" || (link.flags ?? []).includes("LOOPBACK")) continue;
    if (chosenLan) {
      plan.lan.push({ interface: name, why: "chosen with --lan" });
      continue;
    }
    if (!chosenUplink && skipped !== undefined) {
      plan.skipped.push({ interface: name, why: skipped[1] });
      continue;
    }
    if (!chosenUplink && link.master !== undefined) continue; // a bridge port: the bridge counts

    const auto =
      pointToPoint ||
      dynamic !== undefined ||
      leases.has(name) ||
      (route !== undefined && DHCP_PROTOCOLS.has(route.protocol ?? ""));
    const evidence: string[] = [];
    if (route !== undefined) {
      evidence.push(
        `default ${route.gateway === undefined ? "" : `via ${route.gateway} `}(proto ${route.protocol ?? "boot"}, metric ${route.metric ?? 0})`,
      );
    }
    if (dynamic !== undefined)
      evidence.push(`dynamic address ${dynamic.local}/${dynamic.prefixlen}`);
    if (leases.has(name)) evidence.push("a DHCP lease");
    if (pointToPoint) evidence.push("a point-to-point link");
    if (chosenUplink) evidence.unshift("chosen with --uplink");

    if (chosenUplink || (choices.uplinks === undefined && evidence.length > 0)) {
      candidates.push({
        link,
        metric: route?.metric ?? Number.MAX_SAFE_INTEGER,
        why: evidence.join(", "),
        gateway: auto || route?.gateway === undefined ? "auto" : route.gateway,
      });
      continue;
    }
    if (choices.lan !== undefined) continue;
    const lanAddress = addresses.find((a) => LAN_KINDS.has(addressKind(a.local) ?? ""));
    if (lanAddress !== undefined) {
      plan.lan.push({ interface: name, why: `${lanAddress.local}/${lanAddress.prefixlen}` });
    } else if (addresses.length > 0) {
      plan.skipped.push({ interface: name, why: "a public address and no default route" });
    }
  }

  const taken = new Set<string>();
  candidates
    .sort((a, b) => a.metric - b.metric || a.link.ifname.localeCompare(b.link.ifname))
    .forEach((c) => {
      plan.uplinks.push({
        name: uplinkName(c.link.ifname, taken),
        interface: c.link.ifname,
        gateway: c.gateway,
        why: c.why,
      });
    });

  const seen = facts.links.map((l) => l.ifname).join(", ");
  if (plan.uplinks.length === 0) {
    throw new InitError(
      `found no uplink: no interface has a default route, a DHCP lease or a PPP link (interfaces: ${seen}); ` +
        "bring the uplinks up first, or name them with --uplink IF...",
    );
  }
  if (plan.lan.length === 0) {
    throw new InitError(
      `found no LAN interface: none but the uplinks has a private address (interfaces: ${seen}); ` +
        "name them with --lan IF...",
    );
  }
  return plan;
}

/**
 * The config as commented YAML (pure): `lan`, the uplinks with weight 1
 * and tier 1, health with `PUBLIC_TARGETS`, interval 500ms, timeout 1s,
 * down 3, up 5, reliability 1.
 *
 * @throws {InitError} when the result does not pass `parseConfig` (a bug).
 */
export function renderInitConfig(plan: InitPlan): string {
  const lines: string[] = [
    "# uplinkd config written by `uplinkd init` from what this machine showed.",
    "# Review it (names, weights, tiers), then check it and start the daemon:",
    "#",
    "#     uplinkd check -c /etc/uplinkd/uplinkd.yaml",
    "#     systemctl enable --now uplinkd",
    "#",
    "# Every setting: /usr/share/doc/uplinkd/examples/uplinkd.yaml, man uplinkd.",
  ];
  if (plan.skipped.length > 0) {
    lines.push("#", "# Left out:");
    for (const s of plan.skipped) lines.push(`#   ${s.interface}: ${s.why}`);
  }
  lines.push("", "# Interfaces towards your own network (a private address, no default route):");
  for (const l of plan.lan) lines.push(`#   ${l.interface}: ${l.why}`);
  lines.push(`lan: [${plan.lan.map((l) => l.interface).join(", ")}]`, "");
  lines.push(
    "# Interfaces towards the ISPs (a default route, a DHCP lease or PPP). New",
    "# connections are spread by weight; a tier-2 uplink carries traffic only",
    '# while every tier-1 uplink is down. gateway "auto" follows what DHCP or',
    "# PPP installs.",
  );
  if (plan.uplinks.length === 1) {
    lines.push("# Only one uplink was found: add the others before uplinkd can fail over.");
  }
  lines.push("uplinks:");
  for (const u of plan.uplinks) {
    lines.push(
      `  # ${u.interface}: ${u.why}`,
      `  - name: ${u.name}`,
      `    interface: ${u.interface}`,
      `    gateway: ${u.gateway}`,
      "    weight: 1",
      "    tier: 1",
    );
  }
  lines.push(
    "",
    "# Each round pings every target through every uplink; a round passes when",
    "# `reliability` targets answer within `timeout`. The targets are public",
    "# anycast DNS resolvers, beyond every ISP: an ISP's own gateway keeps",
    "# answering while its upstream is broken.",
    "health:",
    `  targets: [${PUBLIC_TARGETS.join(", ")}]`,
    "  interval: 500ms",
    "  timeout: 1s",
    "  down: 3 # failed rounds in a row -> down",
    "  up: 5 # good rounds in a row -> up again",
    "  reliability: 1",
    "",
  );
  const text = lines.join("\n");
  try {
    parseConfig(text, "uplinkd init");
  } catch (error) {
    throw new InitError(`the config init wrote does not validate: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return text;
}

/**
 * Interfaces with a DHCP client lease file under `root` (default `/`):
 * dhclient (/var/lib/dhcp/dhclient*.leases, `interface "IF";` lines),
 * systemd-networkd (/run/systemd/netif/leases/IFINDEX), NetworkManager
 * (/var/lib/NetworkManager/*-IF.lease) and dhcpcd (/var/lib/dhcpcd/IF.lease).
 * Missing directories are skipped.
 *
 * @param indexes ifindex -> interface name, for networkd's files.
 */
export async function readLeaseInterfaces(
  indexes: ReadonlyMap<number, string>,
  root = "/",
): Promise<string[]> {
  const found = new Set<string>();
  const list = (dir: string) => readdir(join(root, dir)).catch(() => [] as string[]);
  for (const file of await list("var/lib/dhcp")) {
    if (!/^dhclient.*\.leases$/.test(file)) continue;
    const text = await readFile(join(root, "var/lib/dhcp", file), "utf8").catch(() => "");
    for (const m of text.matchAll(/interface "([^"]+)";/g)) if (m[1] !== undefined) found.add(m[1]);
  }
  for (const file of await list("run/systemd/netif/leases")) {
    const name = indexes.get(Number(file));
    if (name !== undefined) found.add(name);
  }
  const names = [...indexes.values()];
  for (const file of await list("var/lib/NetworkManager")) {
    for (const name of names) if (file.endsWith(`-${name}.lease`)) found.add(name);
  }
  for (const file of await list("var/lib/dhcpcd")) {
    const m = /^(?:dhcpcd-)?(.+)\.lease$/.exec(file);
    if (m?.[1] !== undefined) found.add(m[1]);
  }
  return [...found].filter((name) => names.includes(name)).sort();
}

/**
 * Read this machine's interfaces (`ip -j addr show`), main-table IPv4
 * routes (`ip -j -4 route show table main`) and DHCP lease files.
 *
 * @throws {KernelCommandError} when `ip` fails.
 */
export async function readMachineFacts(root = "/"): Promise<MachineFacts> {
  const [addr, route] = await Promise.all([
    runCommand("ip", ["-j", "addr", "show"]),
    runCommand("ip", ["-j", "-4", "route", "show", "table", "main"]),
  ]);
  const links = JSON.parse(addr.stdout) as IpLink[];
  const routes = JSON.parse(route.stdout) as IpRoute[];
  const leases = await readLeaseInterfaces(new Map(links.map((l) => [l.ifindex, l.ifname])), root);
  return { links, routes, leases };
}

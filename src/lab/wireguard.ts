/**
 * A WireGuard tunnel in the lab: a peer in the `net` namespace (the lab's
 * internet) and the router's end in `rtr`, for tests of `tunnels:` (the
 * router's own VPN flow steered by a policy). Needs a kernel with
 * WireGuard (CONFIG_WIREGUARD; Debian: the `wireguard` module) and `wg`
 * (wireguard-tools): in the VM (scripts/vm.sh), not on every build machine.
 *
 * Addresses: the peer listens on the echo host's address
 * (`LAB_HOSTS.echo`, 192.0.2.10) on UDP {@link WG_PEER_PORT}; inside the
 * tunnel the router is {@link WG_ROUTER_INNER}, the peer
 * {@link WG_PEER_INNER} (a /30 of the lab's 100.64/10).
 */
import { runCommand } from "../process/run.js";
import { LabError } from "./errors.js";
import { LAB_HOSTS } from "./topology.js";
import type { Lab } from "./lab.js";

/** The peer's UDP port. */
export const WG_PEER_PORT = 51820;
/** The router's UDP port (its socket's source port). */
export const WG_ROUTER_PORT = 51821;
/** The router's address inside the tunnel. */
export const WG_ROUTER_INNER = "100.64.250.1";
/** The peer's address inside the tunnel. */
export const WG_PEER_INNER = "100.64.250.2";

/** The interface names: `wg0` on the router, `wgpeer` in `net`. */
export const WG_ROUTER_INTERFACE = "wg0";
export const WG_PEER_INTERFACE = "wgpeer";

/** A tunnel made by {@link wireguardTunnel}. */
export interface LabWireguard {
  /** The peer's endpoint as the router's config names it: `192.0.2.10:51820`. */
  endpoint: string;
  routerPublicKey: string;
  peerPublicKey: string;
}

/**
 * Why this machine cannot run a WireGuard tunnel, or undefined when it can
 * (`modprobe wireguard`, then /sys/module/wireguard, and `wg` on the PATH).
 */
export async function wireguardUnavailable(): Promise<string | undefined> {
  await runCommand("modprobe", ["-q", "wireguard"]).catch(() => undefined);
  const module = await runCommand("sh", ["-c", "test -d /sys/module/wireguard"]).then(
    () => true,
    () => false,
  );
  if (!module) {
    const release = await runCommand("uname", ["-r"]).then(
      (r) => r.stdout.trim(),
      () => "?",
    );
    return `this kernel (${release}) has no WireGuard (CONFIG_WIREGUARD); run it in a VM with Debian's kernel: bash scripts/vm.sh -- ...`;
  }
  const wg = await runCommand("sh", ["-c", "command -v wg"]).then(
    () => true,
    () => false,
  );
  return wg ? undefined : "WireGuard tunnels need wg: apt-get install wireguard-tools";
}

/** Shell lines: the key on stdin into "$key", a file only root reads, removed when the script ends. */
const KEY_FROM_STDIN = `umask 077
key=$(mktemp)
trap 'rm -f "$key"' EXIT
cat > "$key"`;

async function run(lab: Lab, node: string, script: string, input?: string): Promise<string> {
  const r = await lab.exec(node, ["sh", "-ec", script], input === undefined ? {} : { input });
  if (r.code !== 0) {
    throw new LabError(`${node}: ${script.split("\n")[0] ?? ""}...: ${r.stderr.trim()}`);
  }
  return r.stdout.trim();
}

/**
 * Make the tunnel: keys for both ends, the peer `wgpeer` in `net`
 * listening on 192.0.2.10:51820 (it learns the router's address from the
 * first authenticated packet and follows it when it changes), and `wg0` on
 * the router with that endpoint. No packet is sent: the first one (a ping
 * through the tunnel) starts the handshake.
 * @throws {LabError} when a command fails.
 */
export async function wireguardTunnel(lab: Lab): Promise<LabWireguard> {
  const routerKey = await run(lab, "rtr", "wg genkey");
  const peerKey = await run(lab, "net", "wg genkey");
  const routerPublicKey = await run(lab, "rtr", "wg pubkey", routerKey + "\n");
  const peerPublicKey = await run(lab, "net", "wg pubkey", peerKey + "\n");
  const endpoint = `${LAB_HOSTS.echo}:${WG_PEER_PORT}`;
  // The private key comes on stdin into a file only root reads, removed at once
  // (wg reads a file; stdin is a socket here, which it cannot open).
  await run(
    lab,
    "net",
    `${KEY_FROM_STDIN}
ip link add ${WG_PEER_INTERFACE} type wireguard
wg set ${WG_PEER_INTERFACE} listen-port ${WG_PEER_PORT} private-key "$key" peer ${routerPublicKey} allowed-ips ${WG_ROUTER_INNER}/32
ip addr add ${WG_PEER_INNER}/30 dev ${WG_PEER_INTERFACE}
ip link set ${WG_PEER_INTERFACE} up`,
    peerKey + "\n",
  );
  await run(
    lab,
    "rtr",
    `${KEY_FROM_STDIN}
ip link add ${WG_ROUTER_INTERFACE} type wireguard
wg set ${WG_ROUTER_INTERFACE} listen-port ${WG_ROUTER_PORT} private-key "$key" peer ${peerPublicKey} endpoint ${endpoint} allowed-ips ${WG_PEER_INNER}/32
ip addr add ${WG_ROUTER_INNER}/30 dev ${WG_ROUTER_INTERFACE}
ip link set ${WG_ROUTER_INTERFACE} up`,
    routerKey + "\n",
  );
  return { endpoint, routerPublicKey, peerPublicKey };
}

/**
 * The router's address and port as the peer last saw them (`wg show
 * wgpeer endpoints`): `100.64.2.2:51821`; undefined before a handshake.
 */
export async function peerSeesRouterAt(lab: Lab): Promise<string | undefined> {
  const out = await run(lab, "net", `wg show ${WG_PEER_INTERFACE} endpoints`);
  const field = out.split(/\s+/)[1];
  return field === undefined || field === "(none)" ? undefined : field;
}

/** The peer's latest handshake with the router, seconds since the epoch (0: none yet). */
export async function peerLatestHandshake(lab: Lab): Promise<number> {
  const out = await run(lab, "net", `wg show ${WG_PEER_INTERFACE} latest-handshakes`);
  return Number(out.split(/\s+/)[1] ?? 0);
}

/**
 * Start the router's end afresh (its peer removed and added again): the
 * next packet makes a new handshake, from whatever uplink the router
 * steers it to now.
 */
export async function rehandshake(lab: Lab, tunnel: LabWireguard): Promise<void> {
  await run(
    lab,
    "rtr",
    `wg set ${WG_ROUTER_INTERFACE} peer ${tunnel.peerPublicKey} remove
wg set ${WG_ROUTER_INTERFACE} peer ${tunnel.peerPublicKey} endpoint ${tunnel.endpoint} allowed-ips ${WG_PEER_INNER}/32`,
  );
}

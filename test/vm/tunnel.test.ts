/**
 * A WireGuard tunnel of the router over a chosen uplink (needs a kernel
 * with WireGuard: run in the VM, `npm run test:vm`): the router's `wg0`
 * to a peer in the lab's internet (192.0.2.10:51820), steered by the
 * tunnel's policy `site` (isp2 first, isp1 backup, failback: move after
 * 10 s). The peer's view of the router's address tells which uplink
 * carries the tunnel; a timestamped ping through the tunnel tells when it
 * carries packets.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type { StatusDocument } from "../../src/control/api.js";
import type { Lab } from "../../src/lab/lab.js";
import {
  peerLatestHandshake,
  peerSeesRouterAt,
  rehandshake,
  wireguardTunnel,
  wireguardUnavailable,
  WG_PEER_INNER,
  WG_ROUTER_PORT,
  type LabWireguard,
} from "../../src/lab/wireguard.js";
import { labTimeScale } from "../../src/lab/netns.js";
import { labWithConfig, testPrefix, type LabDaemon } from "../lab/harness.js";
import { defaultHealth, startBuiltDaemon, uplinkOf, waitUplink } from "./vm-helpers.js";

const blocked = await wireguardUnavailable();

/** How long a failback waits (`failback_delay`), ms. */
const FAILBACK_DELAY_MS = 10_000;
/**
 * The most a tunnel may take to carry packets over isp1 after isp2 is
 * declared down, ms: 3 s, doubled in an emulated machine (lab time scale
 * above 1), where the failover's nft update alone took 1.2 s and one run
 * in eight took 3.5 s; the test prints the figure of each run.
 */
const FAILOVER_LIMIT_MS = 3000 * Math.min(labTimeScale(), 2);

const ISP1 = `100.64.1.2:${WG_ROUTER_PORT}`;
const ISP2 = `100.64.2.2:${WG_ROUTER_PORT}`;

/** The tunnel's uplink in a status document. */
function tunnelUplink(status: StatusDocument): string | null | undefined {
  return status.tunnels?.find((t) => t.name === "site")?.uplink;
}

/** Poll `read` every 100 ms until it returns `want`; the time it did (ms since the epoch). */
async function until(
  what: string,
  read: () => Promise<unknown>,
  want: unknown,
  limitMs: number,
): Promise<number> {
  const deadline = Date.now() + limitMs;
  let last: unknown;
  while (Date.now() < deadline) {
    last = await read();
    if (last === want) return Date.now();
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: still ${String(last)} after ${limitMs} ms (want ${String(want)})`);
}

/**
 * A ping through the tunnel every 200 ms, each reply stamped (`ping -D`),
 * at most `count` pings.
 */
class StampedPing {
  readonly child: ChildProcess;
  #out = "";

  constructor(lab: Lab, count: number) {
    this.child = lab.spawn(
      "rtr",
      // Line-buffered: each reply is read as it comes, not in blocks of 4 KiB.
      [
        "stdbuf",
        "-oL",
        "ping",
        "-n",
        "-D",
        "-i",
        "0.2",
        "-W",
        "1",
        "-c",
        String(count),
        WG_PEER_INNER,
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    this.child.stdout?.on("data", (chunk: Buffer) => {
      this.#out += chunk.toString();
    });
  }

  /** Times of the replies, ms since the epoch. */
  replies(): number[] {
    return [...this.#out.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map(
      (m) => Number(m[1]) * 1000,
    );
  }

  stop(): void {
    if (this.child.exitCode === null) this.child.kill("SIGINT");
  }
}

describe(
  "a WireGuard tunnel of the router steered by policy site (isp2 first, isp1 backup)",
  { skip: blocked },
  () => {
    let lab: Lab;
    let daemon: LabDaemon;
    let tunnel: LabWireguard;
    let ping: StampedPing | undefined;

    before(async () => {
      lab = await labWithConfig({ prefix: testPrefix("wg"), uplinks: 2 }, (config) => {
        defaultHealth(config);
        config.policies = {
          site: {
            members: [
              { uplink: "isp2", tier: 1 },
              { uplink: "isp1", tier: 2 },
            ],
            failback: "move",
            failback_delay: `${FAILBACK_DELAY_MS / 1000}s`,
          },
        };
        config.tunnels = [
          { name: "site", endpoint: "192.0.2.10:51820", protocol: "udp", policy: "site" },
        ];
      });
      tunnel = await wireguardTunnel(lab);
      assert.equal(tunnel.endpoint, "192.0.2.10:51820");
      daemon = startBuiltDaemon(lab);
      await daemon.waitFor(
        (s) => s.uplinks.every((u) => u.state === "up" && u.active),
        30_000,
        "both uplinks up and active",
      );
    });

    after(async () => {
      ping?.stop();
      // The lab or the daemon may not have started.
      try {
        await (daemon as LabDaemon | undefined)?.stop();
      } finally {
        await (lab as Lab | undefined)?.down();
      }
    });

    it("runs over isp2: the handshake and a ping go out with isp2's address; status shows isp2", async () => {
      const status = await daemon.waitFor(
        (s) => tunnelUplink(s) === "isp2",
        10_000,
        "tunnel site on isp2",
      );
      assert.deepEqual(
        status.tunnels?.map((t) => [t.name, t.endpoint, t.protocol, t.policy, t.uplink]),
        [["site", "192.0.2.10:51820", "udp", "site", "isp2"]],
      );
      const r = await lab.exec("rtr", ["ping", "-n", "-c", "3", "-W", "5", WG_PEER_INNER]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(await peerSeesRouterAt(lab), ISP2);
      assert.ok((await peerLatestHandshake(lab)) > 0, "a handshake was made");
      const text = await lab.exec("rtr", [
        process.execPath,
        "dist/cli.js",
        "status",
        "--socket",
        lab.controlSocket,
      ]);
      assert.match(text.stdout, /site.*192\.0\.2\.10:51820.*isp2/);
    });

    it(`isp2 blackholed: the ping and a new handshake go over isp1 within ${FAILOVER_LIMIT_MS} ms of isp2 being declared down`, async (t) => {
      ping = new StampedPing(lab, 2000);
      await until(
        "the stamped ping answers",
        () => Promise.resolve((ping?.replies().length ?? 0) > 0),
        true,
        30_000,
      ).catch(() => undefined);
      await lab.fault("isp2", "blackhole");
      const down = await waitUplink(daemon, "isp2", (u) => u.state === "down", "down");
      const declared = Date.parse(uplinkOf(down, "isp2").since);
      const moved = await until(
        "the peer sees the router at isp1",
        () => peerSeesRouterAt(lab),
        ISP1,
        60_000,
      );
      const firstReply = ping.replies().find((at) => at > declared);
      t.diagnostic(
        `isp2 declared down at ${new Date(declared).toISOString()}; first tunnel reply after it ${firstReply === undefined ? "none" : `${Math.round(firstReply - declared)} ms`} later; the peer saw isp1 by ${moved - declared} ms (polled)`,
      );
      assert.ok(firstReply !== undefined, "no ping reply through the tunnel after isp2 went down");
      assert.ok(
        firstReply - declared <= FAILOVER_LIMIT_MS,
        `first tunnel reply ${Math.round(firstReply - declared)} ms after isp2 was declared down`,
      );
      const status = await daemon.waitFor(
        (s) => tunnelUplink(s) === "isp1",
        10_000,
        "tunnel site on isp1",
      );
      assert.equal(tunnelUplink(status), "isp1");
      // A new handshake from the router's end: it goes over isp1 too.
      const before = await peerLatestHandshake(lab);
      await new Promise((r) => setTimeout(r, 1100));
      await rehandshake(lab, tunnel);
      await until(
        "a new handshake",
        async () => (await peerLatestHandshake(lab)) > before,
        true,
        30_000,
      );
      assert.equal(await peerSeesRouterAt(lab), ISP1);
    });

    it(`isp2 healed: the tunnel is back on isp2 after the failback delay (${FAILBACK_DELAY_MS} ms), not before`, async (t) => {
      await lab.heal("isp2");
      const up = await waitUplink(
        daemon,
        "isp2",
        (u) => u.state === "up" && u.active,
        "up, active",
      );
      const upAt = Date.parse(uplinkOf(up, "isp2").since);
      const back = await until(
        "the peer sees the router at isp2",
        () => peerSeesRouterAt(lab),
        ISP2,
        120_000,
      );
      t.diagnostic(
        `isp2 up at ${new Date(upAt).toISOString()}; the peer saw isp2 ${back - upAt} ms later (polled)`,
      );
      assert.ok(
        back - upAt >= FAILBACK_DELAY_MS - 500,
        `back on isp2 ${back - upAt} ms after isp2 came up`,
      );
      const status = await daemon.waitFor(
        (s) => tunnelUplink(s) === "isp2",
        10_000,
        "tunnel site on isp2",
      );
      assert.equal(tunnelUplink(status), "isp2");
      await until(
        "a ping reply through the tunnel after the failback",
        () => Promise.resolve((ping?.replies() ?? []).some((at) => at > back)),
        true,
        30_000,
      );
    });

    it("stops cleanly", async () => {
      ping?.stop();
      assert.equal(await daemon.stop("SIGTERM"), 0, daemon.log());
    });
  },
);

/**
 * A redundant dual-stack router pair in the lab (`lab up --ha`): keepalived
 * moves the virtual addresses of both families, conntrackd copies the
 * connections of both (with their marks), uplinkd SNATs to the uplink's
 * virtual address (IPv6: or translates into its prefix6) and tells
 * keepalived its health, radvd runs on the master only. Long-lived LAN
 * connections of both families on every uplink must survive the master's
 * death, its return, and the loss of all its uplinks, each still seen by
 * the echo host from the same address; new connections of both families
 * succeed after each.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { haClientSource6, haLabUp, haUplinkVirtual, HA_LAB, type HaLab } from "../../src/lab/ha.js";
import { holdConnection, lanTraffic, type TrafficProcess } from "../../src/lab/daemon.js";
import type { HoldLine } from "../../src/lab/traffic.js";
import { uniquePrefix } from "./helpers.js";
import { controlRequest } from "../../src/control/client.js";
import type { EventsDocument } from "../../src/control/api.js";
import { LAB_HOSTS, LAB_HOSTS6 } from "../../src/lab/topology.js";

type Hold = TrafficProcess<HoldLine>;
type Family = 4 | 6;
const FAMILIES: readonly Family[] = [4, 6];
const ECHO: Record<Family, string> = { 4: LAB_HOSTS.echo, 6: LAB_HOSTS6.echo };

/** The address the echo host saw on the hold's first answer. */
function firstSource(hold: Hold): string | undefined {
  for (const line of hold.lines) if (line.event === "answer") return line.source;
  return undefined;
}

/** ms since the hold started, as its lines count time: the last line's t. */
function lastT(hold: Hold): number {
  return hold.lines.at(-1)?.t ?? 0;
}

/**
 * Every hold is still open and, after `sinceT` (each hold's own clock),
 * answered `atLeast` times, every answer from its first source.
 */
function assertFlowing(
  holds: readonly Hold[],
  sinceT: readonly number[],
  atLeast: number,
  when: string,
) {
  holds.forEach((hold, i) => {
    const closed = hold.lines.find((l) => l.event === "closed");
    assert.equal(closed, undefined, `${when}: connection ${i} broke: ${JSON.stringify(closed)}`);
    const source = firstSource(hold);
    const answers = hold.lines.filter(
      (l): l is Extract<HoldLine, { event: "answer" }> =>
        l.event === "answer" && l.t > (sinceT[i] ?? 0),
    );
    assert.ok(
      answers.length >= atLeast,
      `${when}: connection ${i} (${source}) answered ${answers.length} times, expected >= ${atLeast}`,
    );
    const others = answers.filter((a) => a.source !== source);
    assert.deepEqual(others, [], `${when}: connection ${i} changed its source address`);
  });
}

/**
 * The peer's role as each daemon reports it (`a` is what router a says of
 * b), polled until `done` holds (at most 6 s; the last reading otherwise).
 */
/**
 * `count` new connections of each family from the LAN client all succeed,
 * each seen from one of `sources[family]` (the uplinks' addresses).
 */
async function assertNewConnections(
  ha: HaLab,
  sources: Record<Family, string[]>,
  when: string,
  count = 20,
): Promise<void> {
  for (const family of FAMILIES) {
    const fresh = await lanTraffic(ha.lab, count, {
      rounds: 2,
      timeoutMs: 3000,
      host: ECHO[family],
    });
    assert.equal(fresh.ok, count, `new IPv${family} connections ${when}: ${JSON.stringify(fresh)}`);
    for (const source of Object.keys(fresh.bySource)) {
      assert.ok(sources[family].includes(source), `IPv${family} ${when}: ${source}`);
    }
  }
}

/** The master alone runs radvd, and the LAN client's IPv6 default router is the virtual link-local. */
async function assertRouterAdvertisements(ha: HaLab, master: "a" | "b"): Promise<void> {
  const backup = master === "a" ? "b" : "a";
  assert.equal(await ha.radvdRunning(master), true, `radvd of the master ${master}`);
  assert.equal(await ha.radvdRunning(backup), false, `radvd of ${backup}`);
  assert.equal(await ha.clientRouter6(), HA_LAB.lanLinkLocal);
}

async function peerRoles(
  ha: HaLab,
  done: (p: { a?: string; b?: string }) => boolean,
): Promise<{ a?: string; b?: string }> {
  let last: { a?: string; b?: string } = {};
  for (let k = 0; k < 60; k++) {
    const a = (await ha.status("a"))?.ha?.peer.role;
    const b = (await ha.status("b"))?.ha?.peer.role;
    last = { ...(a === undefined ? {} : { a }), ...(b === undefined ? {} : { b }) };
    if (done(last)) break;
    await sleep(100);
  }
  return last;
}

describe(
  "a redundant dual-stack router pair (keepalived, conntrackd, radvd, uplinkd)",
  { timeout: 300_000 },
  () => {
    let ha: HaLab;
    const holds: Hold[] = [];
    /** Per family, the address the echo host sees by each uplink. */
    const sources: Record<Family, string[]> = { 4: [], 6: [] };

    before(async () => {
      ha = await haLabUp({ prefix: uniquePrefix(), uplinks: 2 });
      sources[4] = ha.lab.plan.uplinks.map((u) => haUplinkVirtual(u));
      sources[6] = ha.lab.plan.uplinks.map((u) => haClientSource6(u));
    });

    after(async () => {
      await Promise.all(holds.map((h) => h.stop()));
      await ha.down();
    });

    it("router a is master, b backup; both daemons report it and probe from their own addresses", async () => {
      // On a busy machine a router's probes may time out for a moment (its uplinks down, FAULT):
      // wait until both are back in their roles.
      await ha.waitForRoles({ a: "master", b: "backup" }, 30_000);
      const a = (await ha.status("a"))?.ha;
      const b = (await ha.status("b"))?.ha;
      assert.ok(a !== undefined && a !== null && b !== undefined && b !== null, "both report ha");
      assert.equal(a.role, "master");
      assert.equal(b.role, "backup");
      assert.deepEqual(await ha.holders(4), ["a"]);
      assert.deepEqual(await ha.holders(6), ["a"]);
      await assertRouterAdvertisements(ha, "a");
      // Each daemon hears the other's role over the sync link (a heartbeat a second).
      const peers = await peerRoles(ha, (p) => p.a === "backup" && p.b === "master");
      assert.deepEqual(peers, { a: "backup", b: "master" });
      // The backup's uplinks are up: its probes leave from its own addresses (.3), not the virtual ones.
      const bUp = await ha.status("b");
      assert.deepEqual(
        bUp?.uplinks.map((u) => [u.address, u.state, u.ipv6?.address, u.ipv6?.state]),
        [
          ["100.64.1.3", "up", "2001:db8:1::3", "up"],
          ["100.64.2.3", "up", "2001:db8:2::3", "up"],
        ],
      );
    });

    it("LAN connections of both families leave by every uplink, seen from the uplink's virtual address (IPv6: or its prefix6)", async () => {
      // Connections are balanced at random: open them until each uplink carries three of each
      // family (at most 20 a family). Three each matter: without conntrackd's copy, the new
      // master picks a connection up mid-stream and balances it afresh, so about half of them
      // break (ECONNRESET, seen).
      for (const family of FAMILIES) {
        const mine = () => holds.filter((h) => sources[family].includes(firstSource(h) ?? ""));
        // Opened a few at a time (each is a process): as many as are missing, 20 at most.
        let opened = 0;
        while (opened < 20) {
          const missing = sources[family]
            .map((v) => Math.max(0, 3 - mine().filter((h) => firstSource(h) === v).length))
            .reduce((a, b) => a + b, 0);
          if (missing === 0) break;
          const batch = Array.from({ length: Math.min(missing, 20 - opened) }, () =>
            holdConnection(ha.lab, {
              durationMs: 240_000,
              intervalMs: 100,
              timeoutMs: 1000,
              host: ECHO[family],
            }),
          );
          holds.push(...batch);
          opened += batch.length;
          for (let k = 0; k < 200 && batch.some((h) => firstSource(h) === undefined); k++) {
            await sleep(50);
          }
          for (const hold of batch) {
            const source = firstSource(hold);
            assert.ok(source !== undefined, `an IPv${family} connection got no answer`);
            assert.ok(sources[family].includes(source), `IPv${family} connection from ${source}`);
          }
        }
        for (const v of sources[family]) {
          assert.ok(
            mine().filter((h) => firstSource(h) === v).length >= 3,
            `fewer than three IPv${family} connections by ${v}: ${mine().map(firstSource).join(", ")}`,
          );
        }
      }
    });

    it("the master dies: b takes the virtual addresses, every connection keeps flowing from the same address, new ones succeed", async () => {
      const killedAt = holds.map(lastT);
      await ha.kill("a");
      await ha.waitForRoles({ b: "master" }, 15_000);
      // (a, killed with its links cut, may still hold addresses: keepalived got no time to drop them.)
      assert.ok((await ha.holders(4)).includes("b"));
      assert.ok((await ha.holders(6)).includes("b"));
      // b's radvd runs now (a's died with it): the client keeps its default router.
      assert.equal(await ha.radvdRunning("b"), true, "radvd of the new master b");
      assert.equal(await ha.clientRouter6(), HA_LAB.lanLinkLocal);
      await sleep(3000);
      assertFlowing(holds, killedAt, 10, "after a died");
      await assertNewConnections(ha, sources, "after the takeover");
      const b = await ha.status("b");
      assert.equal(b?.ha?.role, "master");
      // The role change is an event of b's daemon.
      const events = (await controlRequest(
        ha.paths("b").controlSocket,
        "GET",
        "/events",
      )) as EventsDocument;
      assert.deepEqual(events.roles?.map((r) => [r.node, r.from, r.to]).at(-1), [
        "b",
        "backup",
        "master",
      ]);
      // a is silent now: b's daemon says so.
      const peers = await peerRoles(ha, (p) => p.b === "unreachable");
      assert.equal(peers.b, "unreachable");
    });

    it("the old master returns and takes over again without breaking a connection", async () => {
      const returnedAt = holds.map(lastT);
      await ha.restore("a");
      // a comes back as backup, gets b's connections, and preempts after its delay.
      await ha.waitForRoles({ a: "master", b: "backup" }, 20_000 + HA_LAB.preemptDelayMs);
      await sleep(3000);
      assertFlowing(holds, returnedAt, 10, "after a returned");
      await assertNewConnections(ha, sources, "after a returned");
      await assertRouterAdvertisements(ha, "a");
      const a = await ha.status("a");
      assert.equal(a?.ha?.role, "master");
    });

    it("every uplink of the master fails while the backup's work: the backup takes over", async () => {
      const failedAt = holds.map(lastT);
      await ha.failUplinks("a");
      // a's uplinkd sees every uplink down, writes the FAULT score; keepalived hands over to b.
      await ha.waitForRoles({ a: "fault", b: "master" }, 20_000);
      assert.deepEqual(await ha.holders(4), ["b"]);
      assert.deepEqual(await ha.holders(6), ["b"]);
      const a = await ha.status("a");
      assert.ok(
        a?.uplinks.every((u) => u.state === "down" && u.ipv6?.state === "down"),
        JSON.stringify(a?.uplinks.map((u) => [u.state, u.ipv6?.state])),
      );
      await assertRouterAdvertisements(ha, "b");
      await sleep(3000);
      assertFlowing(holds, failedAt, 10, "after a's uplinks failed");
      await assertNewConnections(ha, sources, "with a's uplinks down");
      await ha.healUplinks("a");
      await ha.waitForRoles({ a: "master", b: "backup" }, 30_000);
    });
  },
);

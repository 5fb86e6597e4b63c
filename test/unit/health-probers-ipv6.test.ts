import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { createServer as createHttpServer } from "node:http";
import { createServer as createTcpServer, type AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { systemClock } from "../../src/clock.js";
import { DnsProber, dnsServerFamily } from "../../src/health/dns.js";
import { HttpProber } from "../../src/health/http.js";
import type { ProbeSink } from "../../src/health/prober.js";
import type { SocketProber } from "../../src/health/socket-prober.js";
import { TcpProber } from "../../src/health/tcp.js";

// Real sockets on the IPv6 loopback address ::1 (the only IPv6 address a
// process can bind without changing any namespace's configuration).

type Outcome = { kind: "answered" } | { kind: "failed"; reason: string };

function probeOnce(prober: SocketProber): Promise<Outcome> {
  return new Promise((resolve) => {
    const sink: ProbeSink = {
      sent: () => undefined,
      answered: () => {
        resolve({ kind: "answered" });
      },
      failed: (_seq, _at, reason) => {
        resolve({ kind: "failed", reason });
      },
      note: () => undefined,
    };
    prober.start(sink);
    prober.probe(1);
  });
}

const timeoutMs = 2000;
const source6 = { address: "::1" };

describe("socket probers towards IPv6 targets", () => {
  const peers: (string | undefined)[] = [];
  const tcp = createTcpServer((socket) => {
    peers.push(socket.remoteAddress);
    socket.destroy();
  });
  const http = createHttpServer((req, res) => {
    peers.push(req.socket.remoteAddress);
    res.end("ok");
  });
  const udp = createSocket("udp6");
  let tcpPort = 0;
  let httpPort = 0;
  let dnsPort = 0;
  before(async () => {
    tcpPort = await new Promise((resolve) =>
      tcp.listen(0, "::1", () => {
        resolve((tcp.address() as AddressInfo).port);
      }),
    );
    httpPort = await new Promise((resolve) =>
      http.listen(0, "::1", () => {
        resolve((http.address() as AddressInfo).port);
      }),
    );
    udp.on("message", (query, peer) => {
      peers.push(peer.address);
      let end = 12;
      while ((query[end] ?? 0) !== 0) end += (query[end] ?? 0) + 1;
      end += 5;
      const header = Buffer.from([
        query[0] ?? 0,
        query[1] ?? 0,
        0x81,
        0x80,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
        0,
      ]);
      // One AAAA answer: 2001:db8::7.
      const rdata = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
      const answer = Buffer.from([0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16, ...rdata]);
      udp.send(Buffer.concat([header, query.subarray(12, end), answer]), peer.port, peer.address);
    });
    dnsPort = await new Promise((resolve) =>
      udp.bind(0, "::1", () => {
        resolve(udp.address().port);
      }),
    );
  });
  after(() => {
    tcp.close();
    http.close();
    udp.close();
  });

  it("TCP connects to an IPv6 target from the uplink's IPv6 address", async () => {
    peers.length = 0;
    const prober = new TcpProber({
      host: "::1",
      port: tcpPort,
      source: source6,
      timeoutMs,
      clock: systemClock,
    });
    assert.equal(prober.family, 6);
    assert.deepEqual(await probeOnce(prober), { kind: "answered" });
    assert.deepEqual(peers, ["::1"]);
  });

  it("an IPv6 target is not probed from an IPv4 source address", async () => {
    peers.length = 0;
    const outcome = await probeOnce(
      new TcpProber({
        host: "::1",
        port: tcpPort,
        source: { address: "127.0.0.2" },
        timeoutMs,
        clock: systemClock,
      }),
    );
    assert.deepEqual(outcome, { kind: "failed", reason: "the uplink has no IPv6 address yet" });
    assert.deepEqual(peers, [], "nothing was sent");
  });

  it("an IPv4 target is not probed from an IPv6 source address", async () => {
    const outcome = await probeOnce(
      new TcpProber({ host: "127.0.0.1", port: 9, source: source6, timeoutMs, clock: systemClock }),
    );
    assert.deepEqual(outcome, { kind: "failed", reason: "the uplink has no IPv4 address yet" });
  });

  it("HTTP GETs an IPv6-literal URL from the uplink's IPv6 address", async () => {
    peers.length = 0;
    const prober = new HttpProber({
      url: `http://[::1]:${httpPort}/health`,
      source: source6,
      timeoutMs,
      clock: systemClock,
    });
    assert.equal(prober.family, 6);
    assert.deepEqual(await probeOnce(prober), { kind: "answered" });
    assert.deepEqual(peers, ["::1"]);
  });

  it("DNS asks an IPv6 server from the uplink's IPv6 address (AAAA when expecting IPv6)", async () => {
    peers.length = 0;
    const prober = new DnsProber({
      server: `[::1]:${dnsPort}`,
      name: "probe.example",
      expect: ["2001:db8::7"],
      source: source6,
      timeoutMs,
      clock: systemClock,
    });
    assert.equal(prober.family, 6);
    assert.deepEqual(await probeOnce(prober), { kind: "answered" });
    assert.deepEqual(peers, ["::1"]);
  });

  it("tells a DNS server's family from its notation", () => {
    assert.equal(dnsServerFamily("198.51.100.53"), 4);
    assert.equal(dnsServerFamily("198.51.100.53:5353"), 4);
    assert.equal(dnsServerFamily("2001:db8:ffff::53"), 6);
    assert.equal(dnsServerFamily("[2001:db8:ffff::53]:53"), 6);
  });
});

import assert from "node:assert/strict";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createTcpServer, type AddressInfo, type Server } from "node:net";
import { after, before, describe, it } from "node:test";
import { systemClock } from "../../src/clock.js";
import { DnsProber } from "../../src/health/dns.js";
import { HttpProber } from "../../src/health/http.js";
import type { ProbeSink } from "../../src/health/prober.js";
import type { SocketProber } from "../../src/health/socket-prober.js";
import { TcpProber } from "../../src/health/tcp.js";
import type { ProbeTimings } from "../../src/health/window.js";

// Real sockets on the loopback address, each server on a port the kernel picks.

type Outcome =
  | { kind: "answered"; rttMs: number | undefined; timings: ProbeTimings | undefined }
  | { kind: "failed"; reason: string };

/** Sends probe 1 and resolves with its outcome. */
function probeOnce(prober: SocketProber): Promise<Outcome> {
  return new Promise((resolve) => {
    const sink: ProbeSink = {
      sent: () => undefined,
      answered: (_seq, _at, rttMs, timings) => {
        resolve({ kind: "answered", rttMs, timings });
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

function listen(server: Server | HttpServer): Promise<number> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve((server.address() as AddressInfo).port);
    });
  });
}

// The uplink's address: a second loopback address (Linux routes all of
// 127.0.0.0/8 to lo), so a prober that ignores it connects from 127.0.0.1
// and the server sees the difference.
const source = { address: "127.0.0.2" };
const timeoutMs = 2000;

describe("TCP prober", () => {
  let server: Server;
  let port: number;
  /** The source address of each connection the server accepted. */
  const peers: (string | undefined)[] = [];
  before(async () => {
    server = createTcpServer((socket) => {
      peers.push(socket.remoteAddress);
      socket.destroy();
    });
    port = await listen(server);
  });
  after(() => server.close());

  it("answers when the connection is established, from the uplink's address", async () => {
    peers.length = 0;
    const outcome = await probeOnce(
      new TcpProber({ host: "127.0.0.1", port, source, timeoutMs, clock: systemClock }),
    );
    assert.ok(outcome.kind === "answered");
    assert.ok((outcome.timings?.connectMs ?? -1) >= 0);
    assert.deepEqual(peers, ["127.0.0.2"]);
  });

  it("fails on a refused connection", async () => {
    const closed = createTcpServer();
    const closedPort = await listen(closed);
    await new Promise((resolve) => closed.close(resolve));
    const outcome = await probeOnce(
      new TcpProber({ host: "127.0.0.1", port: closedPort, source, timeoutMs, clock: systemClock }),
    );
    assert.deepEqual(outcome, {
      kind: "failed",
      reason: `connect ECONNREFUSED 127.0.0.1:${closedPort}`,
    });
  });

  it("fails at once while the uplink has no address", async () => {
    const outcome = await probeOnce(
      new TcpProber({ host: "127.0.0.1", port, source: {}, timeoutMs, clock: systemClock }),
    );
    assert.deepEqual(outcome, { kind: "failed", reason: "the uplink has no address yet" });
  });
});

describe("HTTP prober", () => {
  let server: HttpServer;
  let base: string;
  /** The source address of each request the server answered. */
  const peers: (string | undefined)[] = [];
  before(async () => {
    server = createHttpServer((req, res) => {
      peers.push(req.socket.remoteAddress);
      res.statusCode = req.url === "/broken" ? 503 : 200;
      res.end("ok");
    });
    base = `http://127.0.0.1:${await listen(server)}`;
  });
  after(() => server.close());

  it("answers on a 2xx status from the uplink's address, with connect and first-byte timings", async () => {
    peers.length = 0;
    const outcome = await probeOnce(
      new HttpProber({ url: `${base}/health`, source, timeoutMs, clock: systemClock }),
    );
    assert.ok(outcome.kind === "answered");
    assert.ok((outcome.timings?.connectMs ?? -1) >= 0);
    assert.ok((outcome.timings?.firstByteMs ?? -1) >= (outcome.timings?.connectMs ?? 0));
    assert.deepEqual(peers, ["127.0.0.2"]);
  });

  it("fails on an unexpected status", async () => {
    const outcome = await probeOnce(
      new HttpProber({ url: `${base}/broken`, source, timeoutMs, clock: systemClock }),
    );
    assert.deepEqual(outcome, { kind: "failed", reason: "HTTP 503" });
  });

  it("answers on a status listed in expectStatus", async () => {
    const outcome = await probeOnce(
      new HttpProber({
        url: `${base}/broken`,
        expectStatus: [503],
        source,
        timeoutMs,
        clock: systemClock,
      }),
    );
    assert.equal(outcome.kind, "answered");
  });

  it("rejects a URL that is not http(s)", () => {
    assert.throws(
      () => new HttpProber({ url: "ftp://x/", source, timeoutMs, clock: systemClock }),
      { code: "UPLINKD_ERR_HEALTH" },
    );
  });
});

/** A DNS server answering every A query with 192.0.2.7; `peers` lists each query's source address. */
function dnsServer(): Promise<{ socket: UdpSocket; port: number; peers: string[] }> {
  const socket = createSocket("udp4");
  const peers: string[] = [];
  socket.on("message", (query, peer) => {
    peers.push(peer.address);
    // Header (12 bytes), then the question up to the end of QTYPE/QCLASS.
    let end = 12;
    while ((query[end] ?? 0) !== 0) end += (query[end] ?? 0) + 1;
    end += 5;
    const header = Buffer.from([query[0] ?? 0, query[1] ?? 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    const answer = Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
    socket.send(Buffer.concat([header, query.subarray(12, end), answer]), peer.port, peer.address);
  });
  return new Promise((resolve) => {
    socket.bind(0, "127.0.0.1", () => {
      resolve({ socket, port: socket.address().port, peers });
    });
  });
}

describe("DNS prober", () => {
  let server: { socket: UdpSocket; port: number; peers: string[] };
  before(async () => {
    server = await dnsServer();
  });
  after(() => server.socket.close());

  it("answers when the server resolves the name, asked from the uplink's address", async () => {
    server.peers.length = 0;
    const outcome = await probeOnce(
      new DnsProber({
        server: `127.0.0.1:${server.port}`,
        name: "probe.example",
        source,
        timeoutMs,
        clock: systemClock,
      }),
    );
    assert.equal(outcome.kind, "answered");
    assert.deepEqual(server.peers, ["127.0.0.2"]);
  });

  it("fails when the answer lacks the expected address", async () => {
    const outcome = await probeOnce(
      new DnsProber({
        server: `127.0.0.1:${server.port}`,
        name: "probe.example",
        expect: ["192.0.2.8"],
        source,
        timeoutMs,
        clock: systemClock,
      }),
    );
    assert.deepEqual(outcome, { kind: "failed", reason: "answer 192.0.2.7 lacks 192.0.2.8" });
  });

  it("names the target by server and name", () => {
    const prober = new DnsProber({
      server: "198.51.100.53",
      name: "example.com",
      source,
      timeoutMs,
      clock: systemClock,
    });
    assert.equal(prober.target, "dns:198.51.100.53/example.com");
    assert.equal(prober.schedule, "on-demand");
  });
});

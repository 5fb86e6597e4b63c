/**
 * One speed test through one uplink: parallel HTTP downloads from
 * `speedtest.download_url`, then parallel uploads to `upload_url`, each for
 * a bounded time, from the uplink's own address (undici's Agent with
 * `localAddress`: the `from ADDRESS lookup T_i` rule routes the connections
 * through the uplink, as the TCP and HTTP probes are routed), while ping(8)
 * measures the RTT to the uplink's health target under that load. undici
 * does the HTTP; this module counts bytes and time.
 *
 * The download rate comes from the uplink's interface counters
 * (`/proc/net/dev`, read every 100 ms; the line's other traffic counts
 * too: it is what the line carried). The upload rate comes from the bytes
 * the far end acknowledged (`ss -ti`: `bytes_acked` of the test's
 * connections): bytes handed to a socket are not yet sent (the send buffer
 * grows to megabytes), and bytes the interface sent may still be dropped by
 * a shaper beyond it and sent again. `bytes_down`/`bytes_up` are the
 * interface's received/sent bytes during each direction: what the uplink's
 * quota counts. Without counters the streams' own counts stand in.
 */
import { spawn } from "node:child_process";
import { runCommand } from "../process/run.js";
import { Readable } from "node:stream";
import { Agent, request } from "undici";
import { SpeedtestError } from "../errors.js";
import {
  AckedBytes,
  medianMs,
  parsePingRtts,
  parseSsBytesAcked,
  rateBitsPerSecond,
  warmupMs,
  type ByteSample,
} from "./measure.js";
import type { SpeedtestResult } from "./state.js";

/** What one direction of a test needs. */
export interface TransferOptions {
  /** The URL to download from (GET) or upload to (POST). */
  url: string;
  /** Source address of every connection: the uplink's address. */
  localAddress: string;
  /** How long the direction runs, ms. */
  durationMs: number;
  /** Parallel connections. */
  streams: number;
  /** Bytes sampled this often, ms (default 100). */
  sampleMs?: number;
}

/** What one direction measured. */
export interface TransferResult {
  /** Rate after the ramp-up, bits per second; null when nothing was measured. */
  bitsPerSecond: number | null;
  /** Bytes moved by all streams. */
  bytes: number;
  /** Time the direction ran, ms. */
  elapsedMs: number;
}

/** Size of each chunk an upload stream hands to its connection, bytes. */
const UPLOAD_CHUNK = Buffer.alloc(64 * 1024);
/** Bytes one upload request carries at most; a stream then starts the next request. */
const UPLOAD_REQUEST_BYTES = 256 * 1024 * 1024;

/**
 * Run one direction: `streams` connections that download (GET) or upload
 * (POST) until `durationMs` has passed, request after request, counting
 * bytes; every stream is then aborted.
 * @throws {SpeedtestError} when no byte moved and some request failed
 *   (connection refused, an HTTP status of 400 or more): its message.
 */
export async function transfer(
  direction: "down" | "up",
  options: TransferOptions,
): Promise<TransferResult> {
  const agent = new Agent({
    localAddress: options.localAddress,
    connections: options.streams,
    pipelining: 1,
    connect: { timeout: Math.min(5000, options.durationMs) },
    headersTimeout: options.durationMs + 5000,
    bodyTimeout: options.durationMs + 5000,
  });
  const controller = new AbortController();
  const started = performance.now();
  const deadline = started + options.durationMs;
  let bytes = 0;
  /** The last failure's message, while no stream was stopped on purpose. */
  let lastError: string | undefined;
  const samples: ByteSample[] = [{ atMs: 0, bytes: 0 }];
  const sampler = setInterval(() => {
    samples.push({ atMs: performance.now() - started, bytes });
  }, options.sampleMs ?? 100);
  const over = (): boolean => controller.signal.aborted || performance.now() >= deadline;
  const failed = (error: unknown): void => {
    if (!controller.signal.aborted) {
      lastError = error instanceof Error ? error.message : JSON.stringify(error);
    }
  };

  const download = async (): Promise<void> => {
    const res = await request(options.url, {
      method: "GET",
      dispatcher: agent,
      signal: controller.signal,
      headers: { "user-agent": "uplinkd-speedtest" },
    });
    if (res.statusCode >= 400) {
      await res.body.dump();
      throw new SpeedtestError(`GET ${options.url} answered HTTP ${res.statusCode}`);
    }
    for await (const chunk of res.body) bytes += (chunk as Buffer).length;
  };

  const upload = async (): Promise<void> => {
    let sent = 0;
    const chunks = function* (): Generator<Buffer> {
      while (!over() && sent < UPLOAD_REQUEST_BYTES) {
        sent += UPLOAD_CHUNK.length;
        bytes += UPLOAD_CHUNK.length;
        yield UPLOAD_CHUNK;
      }
    };
    const res = await request(options.url, {
      method: "POST",
      dispatcher: agent,
      signal: controller.signal,
      headers: { "user-agent": "uplinkd-speedtest", "content-type": "application/octet-stream" },
      body: Readable.from(chunks(), { objectMode: false }),
    });
    await res.body.dump();
    if (res.statusCode >= 400) {
      throw new SpeedtestError(`POST ${options.url} answered HTTP ${res.statusCode}`);
    }
  };

  const stream = async (): Promise<void> => {
    while (!over()) {
      try {
        await (direction === "down" ? download() : upload());
      } catch (error) {
        failed(error);
        // A refused or failing endpoint is not hammered: one retry a quarter second later.
        if (!over()) await new Promise((r) => setTimeout(r, 250));
      }
    }
  };

  const stop = setTimeout(
    () => {
      controller.abort();
    },
    Math.max(0, deadline - performance.now()),
  );
  try {
    await Promise.all(Array.from({ length: options.streams }, () => stream()));
  } finally {
    clearTimeout(stop);
    clearInterval(sampler);
    controller.abort();
    await agent.destroy().catch(() => undefined);
  }
  const elapsedMs = performance.now() - started;
  samples.push({ atMs: elapsedMs, bytes });
  if (bytes === 0 && lastError !== undefined) {
    throw new SpeedtestError(
      `${direction === "down" ? "download from" : "upload to"} ${options.url} failed: ${lastError}`,
    );
  }
  return {
    bitsPerSecond: rateBitsPerSecond(samples, warmupMs(options.durationMs)),
    bytes,
    elapsedMs,
  };
}

/**
 * Ping `target` from `source` every 200 ms for `seconds` (iputils ping:
 * `ping -n -i 0.2 -W 1 -w SECONDS -I SOURCE TARGET`), the RTTs of the
 * replies, ms. Never throws: no ping, no replies, or an error give [].
 * @param pingPath the ping binary (default `ping`).
 */
export function pingDuring(
  target: string,
  source: string,
  seconds: number,
  pingPath = "ping",
): Promise<number[]> {
  return new Promise((resolve) => {
    const args = ["-n", "-i", "0.2", "-W", "1", "-w", String(Math.max(1, Math.ceil(seconds)))];
    args.push("-I", source, target);
    let out = "";
    const child = spawn(pingPath, args, { stdio: ["ignore", "pipe", "ignore"] });
    const kill = setTimeout(() => child.kill("SIGKILL"), (seconds + 3) * 1000);
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
    });
    child.on("error", () => {
      clearTimeout(kill);
      resolve([]);
    });
    child.on("close", () => {
      clearTimeout(kill);
      resolve(parsePingRtts(out));
    });
  });
}

/** Received and sent bytes of the uplink's interface since it was created. */
export interface InterfaceCounters {
  rx: number;
  tx: number;
}

/**
 * Sample an interface counter every `everyMs` until `stop` is aborted.
 * @returns cumulative samples since the first read; [] when the counters
 *   could not be read.
 */
async function sampleCounter(
  read: () => Promise<InterfaceCounters | undefined>,
  pick: (c: InterfaceCounters) => number,
  stop: AbortSignal,
  everyMs = 100,
): Promise<ByteSample[]> {
  const started = performance.now();
  let first: { value: InterfaceCounters; atMs: number | undefined } | undefined;
  for (let i = 0; i < 5 && first?.atMs === undefined; i++) {
    first = await timed(read, started, COUNTER_SPREAD_MS);
    if (first === undefined) return [];
  }
  if (first?.atMs === undefined) return [];
  const base = pick(first.value);
  const samples: ByteSample[] = [{ atMs: first.atMs, bytes: 0 }];
  while (!stop.aborted) {
    await new Promise((r) => setTimeout(r, everyMs));
    const now = await timed(read, started, COUNTER_SPREAD_MS);
    if (now === undefined) return [];
    if (now.atMs !== undefined) samples.push({ atMs: now.atMs, bytes: pick(now.value) - base });
  }
  return samples;
}

/** Longest time a counter read may take for its sample to be used, ms. */
const COUNTER_SPREAD_MS = 20;
/** Longest time an `ss` run may take for its sample to be used, ms. */
const SS_SPREAD_MS = 60;

/**
 * Read once and stamp the value with the middle of the read (ms since
 * `started`). A read that took longer than `spreadMs` (the event loop or
 * the machine was busy) gets no time: it is too uncertain for a rate.
 * @returns undefined when the read failed.
 */
async function timed<T>(
  read: () => Promise<T | undefined>,
  started: number,
  spreadMs: number,
): Promise<{ value: T; atMs: number | undefined } | undefined> {
  const before = performance.now();
  const value = await read().catch(() => undefined);
  const after = performance.now();
  if (value === undefined) return undefined;
  return { value, atMs: after - before > spreadMs ? undefined : (before + after) / 2 - started };
}

/**
 * Bytes acknowledged per TCP connection from `address` now (`ss -tinH
 * state established src ADDRESS`, iproute2); undefined when ss fails.
 */
export async function ssBytesAcked(address: string): Promise<Map<string, number> | undefined> {
  try {
    const { stdout } = await runCommand("ss", ["-tinH", "state", "established", "src", address], {
      timeoutMs: 2000,
    });
    return parseSsBytesAcked(stdout);
  } catch {
    return undefined;
  }
}

/** Sample acknowledged bytes every `everyMs` until `stop` is aborted; [] when ss fails. */
async function sampleAcked(
  read: () => Promise<Map<string, number> | undefined>,
  stop: AbortSignal,
  everyMs = 100,
): Promise<ByteSample[]> {
  const started = performance.now();
  const acked = new AckedBytes();
  const samples: ByteSample[] = [];
  while (!stop.aborted) {
    const sample = await timed(read, started, SS_SPREAD_MS);
    if (sample === undefined) return [];
    // A sample without a time still counts its connections (one may close before the next).
    const bytes = acked.add(sample.value);
    if (sample.atMs !== undefined) samples.push({ atMs: sample.atMs, bytes });
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return samples;
}

/** What {@link runSpeedtest} needs. */
export interface SpeedtestRunOptions {
  uplink: string;
  /** The uplink's IPv4 address (connections and pings leave from it). */
  address: string;
  /** Download URL; undefined: no download test. */
  downloadUrl: string | undefined;
  /** Upload URL; undefined: no upload test. */
  uploadUrl: string | undefined;
  /** Time per direction, ms. */
  durationMs: number;
  streams: number;
  /** An IPv4 health target pinged during the transfers; undefined: no RTT under load. */
  pingTarget: string | undefined;
  /** The uplink's RTT before the test (its health probes' mean), ms. */
  idleRttMs: number | null;
  /** The uplink's interface counters now; without it, rates and bytes are the streams' own counts. */
  readCounters?: () => Promise<InterfaceCounters | undefined>;
  /** Acknowledged bytes per connection from the uplink's address (default {@link ssBytesAcked}); undefined: not known. */
  readAcked?: () => Promise<Map<string, number> | undefined>;
  /** Wall clock for `measured_at`, epoch ms (default Date.now). */
  wall?: () => number;
}

/**
 * Download, then upload, through the uplink (each for `durationMs`, with
 * `streams` connections), pinging its health target meanwhile.
 * @throws {SpeedtestError} when neither URL is given, or a direction moved
 *   no byte and its requests failed.
 */
export async function runSpeedtest(options: SpeedtestRunOptions): Promise<SpeedtestResult> {
  if (options.downloadUrl === undefined && options.uploadUrl === undefined) {
    throw new SpeedtestError("set speedtest.download_url or speedtest.upload_url in the config");
  }
  const seconds = options.durationMs / 1000;
  const direction = async (
    dir: "down" | "up",
    url: string | undefined,
  ): Promise<[TransferResult | undefined, number | null]> => {
    if (url === undefined) return [undefined, null];
    const ping =
      options.pingTarget === undefined
        ? Promise.resolve([])
        : pingDuring(options.pingTarget, options.address, seconds);
    const stop = new AbortController();
    const counted =
      options.readCounters === undefined
        ? Promise.resolve([])
        : sampleCounter(options.readCounters, (c) => (dir === "down" ? c.rx : c.tx), stop.signal);
    const readAcked = options.readAcked ?? (() => ssBytesAcked(options.address));
    const acked = dir === "up" ? sampleAcked(readAcked, stop.signal) : Promise.resolve([]);
    let result: TransferResult;
    try {
      result = await transfer(dir, {
        url,
        localAddress: options.address,
        durationMs: options.durationMs,
        streams: options.streams,
      });
    } finally {
      stop.abort();
      await ping;
    }
    const warmup = warmupMs(options.durationMs);
    const samples = await counted;
    const wire = rateBitsPerSecond(samples, warmup);
    const delivered = rateBitsPerSecond(await acked, warmup);
    const bytes = samples.at(-1)?.bytes;
    return [
      {
        ...result,
        bitsPerSecond: delivered ?? wire ?? result.bitsPerSecond,
        ...(bytes === undefined ? {} : { bytes: Math.max(0, bytes) }),
      },
      medianMs(await ping),
    ];
  };
  const [down, rttDown] = await direction("down", options.downloadUrl);
  const [up, rttUp] = await direction("up", options.uploadUrl);
  return {
    uplink: options.uplink,
    measured_at: new Date((options.wall ?? Date.now)()).toISOString(),
    down: down?.bitsPerSecond ?? null,
    up: up?.bitsPerSecond ?? null,
    rtt_idle_ms: options.idleRttMs,
    rtt_down_ms: rttDown,
    rtt_up_ms: rttUp,
    bytes_down: down?.bytes ?? 0,
    bytes_up: up?.bytes ?? 0,
    duration_ms: options.durationMs,
    streams: options.streams,
  };
}

/**
 * The lab's bulk workload, run inside a lab node (usually `lan`): a stream
 * of HTTP downloads of mixed sizes from the echo host (`GET /bytes?n=N`),
 * arriving at random (a Poisson process) for DURATION ms, the same stream
 * for the same SEED. For comparing balancing modes on a fixed workload.
 *
 *     bulk.js --host H [--port 80] [--seed 1] [--duration 60000]
 *             [--rate 3] [--sizes 200000:70,2000000:25,20000000:5]
 *             [--timeout 120000]
 *
 * RATE is arrivals per second; SIZES is `bytes:weight,...`. Prints one JSON
 * {@link BulkReport} when every transfer has ended. Times are ms.
 */
import { request } from "node:http";
import { parseArgs } from "node:util";
import { seededRandom } from "../random.js";
import { isMainModule } from "./scripts.js";

/** One planned transfer. */
export interface BulkTransferPlan {
  /** Start, ms after the run began. */
  at: number;
  bytes: number;
}

/** One transfer's outcome. */
export interface BulkTransfer extends BulkTransferPlan {
  /** Start to last byte, ms; null when it failed. */
  completionMs: number | null;
  /** The client address the echo host saw (which uplink), from the X-Client header. */
  source: string | null;
  error?: string;
}

/** What `bulk` prints. */
export interface BulkReport {
  seed: number;
  durationMs: number;
  transfers: BulkTransfer[];
  /** Bytes received over all transfers. */
  bytes: number;
  /** Start of the first transfer to the end of the last, ms. */
  spanMs: number;
}

/**
 * The transfers of a run: Poisson arrivals at `rate` per second over
 * `durationMs`, sizes drawn from `sizes` (bytes -> relative weight).
 * Pure: the same arguments give the same plan.
 */
export function planBulk(
  seed: number,
  durationMs: number,
  rate: number,
  sizes: readonly (readonly [number, number])[],
): BulkTransferPlan[] {
  const random = seededRandom(seed);
  const total = sizes.reduce((sum, [, w]) => sum + w, 0);
  const plan: BulkTransferPlan[] = [];
  for (let at = 0; ;) {
    at += (-Math.log(1 - random()) / rate) * 1000;
    if (at >= durationMs) return plan;
    let pick = random() * total;
    const size = sizes.find(([, w]) => (pick -= w) < 0)?.[0] ?? sizes[0]?.[0] ?? 0;
    plan.push({ at: Math.round(at), bytes: size });
  }
}

function download(
  host: string,
  port: number,
  bytes: number,
  timeoutMs: number,
): Promise<{ received: number; source: string | null; error?: string }> {
  return new Promise((resolve) => {
    let received = 0;
    const req = request(
      { host, port, path: `/bytes?n=${bytes}`, agent: false, timeout: timeoutMs },
      (res) => {
        const source = typeof res.headers["x-client"] === "string" ? res.headers["x-client"] : null;
        res.on("data", (chunk: Buffer) => (received += chunk.length));
        res.on("end", () => {
          resolve(
            received === bytes
              ? { received, source }
              : { received, source, error: `short body ${received}/${bytes}` },
          );
        });
        res.on("error", (error) => {
          resolve({ received, source, error: error.message });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (error) => {
      resolve({ received, source: null, error: error.message });
    });
    req.end();
  });
}

/** Run the plan against the echo host; resolves when every transfer has ended. */
export async function runBulk(
  host: string,
  port: number,
  plan: readonly BulkTransferPlan[],
  timeoutMs: number,
): Promise<Omit<BulkReport, "seed" | "durationMs">> {
  const began = performance.now();
  const transfers = await Promise.all(
    plan.map(
      (p) =>
        new Promise<BulkTransfer>((resolve) => {
          setTimeout(() => {
            const start = performance.now();
            void download(host, port, p.bytes, timeoutMs).then((r) => {
              resolve({
                ...p,
                completionMs: r.error === undefined ? Math.round(performance.now() - start) : null,
                source: r.source,
                ...(r.error === undefined ? {} : { error: r.error }),
              });
            });
          }, p.at);
        }),
    ),
  );
  const ends = transfers.map((t) => t.at + (t.completionMs ?? 0));
  return {
    transfers,
    bytes: transfers.reduce((sum, t) => sum + (t.completionMs === null ? 0 : t.bytes), 0),
    spanMs: Math.round(Math.min(performance.now() - began, Math.max(0, ...ends))),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: "string" },
      port: { type: "string" },
      seed: { type: "string" },
      duration: { type: "string" },
      rate: { type: "string" },
      sizes: { type: "string" },
      timeout: { type: "string" },
    },
  });
  if (values.host === undefined) throw new Error("--host is required");
  const seed = Number(values.seed ?? "1");
  const durationMs = Number(values.duration ?? "60000");
  const rate = Number(values.rate ?? "3");
  const sizes = (values.sizes ?? "200000:70,2000000:25,20000000:5").split(",").map((pair) => {
    const [bytes, weight] = pair.split(":").map(Number);
    if (!(Number(bytes) > 0 && Number(weight) > 0)) throw new Error(`bad --sizes entry ${pair}`);
    return [Number(bytes), Number(weight)] as const;
  });
  if (!(durationMs > 0 && rate > 0)) throw new Error("--duration and --rate must be > 0");
  const plan = planBulk(seed, durationMs, rate, sizes);
  const result = await runBulk(
    values.host,
    Number(values.port ?? "80"),
    plan,
    Number(values.timeout ?? "120000"),
  );
  const report: BulkReport = { seed, durationMs, ...result };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

if (isMainModule(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`bulk: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 2;
  });
}

/**
 * Interface byte counters from `/proc/net/dev`, read by the balancer (load of
 * each uplink) and by the traffic sampler of status and metrics.
 */

/** Bytes through one interface since it was created (kernel counters). */
export interface InterfaceBytes {
  /** Received, bytes. */
  rx: number;
  /** Transmitted, bytes. */
  tx: number;
}

/**
 * Parses `/proc/net/dev`: interface -> received and transmitted bytes.
 * `/proc/net` is the reading process's network namespace (unlike `/sys`,
 * which shows the namespace of whoever mounted it).
 */
export function parseProcNetDev(text: string): Map<string, InterfaceBytes> {
  const out = new Map<string, InterfaceBytes>();
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    const rx = fields[0];
    const tx = fields[8];
    if (name === "" || rx === undefined || tx === undefined || Number.isNaN(rx + tx)) continue;
    out.set(name, { rx, tx });
  }
  return out;
}

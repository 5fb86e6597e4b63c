/**
 * Faults the lab injects into one uplink, applied in that uplink's ISP
 * namespace: parsing, and rendering the nft/tc commands (pure).
 */
import { parseRate as parseTcRate } from "../config/rate.js";
import { parseDuration } from "../config/duration.js";
import { LabError } from "./errors.js";
import { DELAY_DEVICE } from "./delay.js";

/**
 * One fault as given on the command line.
 * - `carrier`: the ISP's side of the router link goes down; the router's
 *   `wanI` loses carrier (NO-CARRIER, LOWER_DOWN).
 * - `blackhole`: the ISP forwards nothing in either direction; its gateway
 *   still answers pings to itself. `blackhole4` and `blackhole6` do the same
 *   for one address family only (`meta nfproto ipv4|ipv6`); router
 *   advertisements still arrive (they are not forwarded).
 * - `loss`: random loss of forwarded packets, `percent` (0..100) being the
 *   round-trip loss a ping through the ISP sees. Each direction drops
 *   1 - sqrt(1 - percent/100) of its packets (30% -> 16.3% each way).
 * - `rate`: token bucket (tbf) on both of the ISP's egresses, so upload and
 *   download are each limited to `rate` (tc syntax: `1mbit`, `500kbit`).
 * - `dhcp-change`: an event, not a state: the ISP's DHCP server hands out a
 *   different address and the router's client renews (DHCP uplinks only).
 * - `ra-change`: an event: the ISP's router gets a new link-local address
 *   (`fe80::1` -> `fe80::1:1` -> ...); its RA daemon stops (a last RA with
 *   router lifetime 0) and starts again from the new address, so the
 *   router's `default via ... proto ra` changes (IPv6 uplinks only).
 * - `renumber`: an event: the ISP announces the next uplink network
 *   (`2001:db8:I::/64` -> `2001:db8:I:1::/64` -> ...), deprecating the old
 *   one (preferred lifetime 0) and no longer routing it; with prefix
 *   delegation, it delegates the next prefix and the router's client asks
 *   again (IPv6 uplinks only).
 * - `pppoe-drop`: an event: the ISP ends the PPPoE session (its pppd sends
 *   LCP Terminate-Request and PADT) and answers the router's redial with a
 *   new address and a new peer (PPPoE uplinks only; see pppoe.ts).
 * - `delay`: every packet from the internet to the router is held `delayMs`
 *   (+- `jitterMs`, uniform; 0: none, order kept) by a user-space delay line
 *   in the ISP (see delay.ts), so round trips through the ISP take `delayMs`
 *   longer. `delayMs` 0 removes it.
 */
export type Fault =
  | { kind: "carrier" }
  | { kind: "blackhole" }
  | { kind: "blackhole4" }
  | { kind: "blackhole6" }
  | { kind: "loss"; percent: number }
  | { kind: "rate"; rate: string }
  | { kind: "dhcp-change" }
  | { kind: "ra-change" }
  | { kind: "renumber" }
  | { kind: "pppoe-drop" }
  | { kind: "delay"; delayMs: number; jitterMs: number };

/** Faults that are events (they happen once), not states a heal undoes. */
export const EVENT_FAULTS = ["dhcp-change", "ra-change", "renumber", "pppoe-drop"] as const;

/** The faults an uplink currently has; an empty object is a healthy uplink. */
export interface FaultSet {
  carrier?: boolean;
  /** Both families. */
  blackhole?: boolean;
  /** IPv4 only. */
  blackhole4?: boolean;
  /** IPv6 only. */
  blackhole6?: boolean;
  /** Round-trip loss, percent, 1..100. */
  loss?: number;
  /** tc rate, e.g. `1mbit`. */
  rate?: string;
  /** Added round-trip delay, ms > 0 (see {@link Fault} `delay`). */
  delay?: number;
  /** Jitter of that delay, ms, 0..delay; absent: none. */
  jitter?: number;
}

/**
 * A tc rate in bits per second (`1mbit` -> 1e6, `100kbps` -> 8e5), as the
 * config's rates are read ({@link parseTcRate}).
 * @throws {LabError} when it is not a tc rate, or is below 8kbit.
 */
export function parseRate(rate: string): number {
  let bits: number;
  try {
    bits = parseTcRate(rate);
  } catch {
    throw new LabError(`invalid rate ${JSON.stringify(rate)}: use e.g. 1mbit, 500kbit, 10mbit`);
  }
  if (bits < 8000) throw new LabError(`rate ${rate} is below the lab's minimum of 8kbit`);
  return bits;
}

/** Longest delay the lab's delay line accepts, ms. */
export const MAX_DELAY_MS = 10_000;

/** A lab duration: `80ms`, `1.5s`, or a bare number of ms. */
function parseLabDuration(what: string, text: string): number {
  const t = text.trim();
  let ms: number;
  try {
    ms = /^\d+(?:\.\d+)?$/.test(t) ? Number(t) : parseDuration(t);
  } catch {
    throw new LabError(`invalid ${what} ${JSON.stringify(t)}: use e.g. 80ms, 1.5s or 80`);
  }
  if (ms > MAX_DELAY_MS) throw new LabError(`${what} ${t} is above the lab's ${MAX_DELAY_MS} ms`);
  return ms;
}

/**
 * Parse `delay=DELAY[,jitter=JITTER]` (durations: `80ms`, `0.1s`, `80`).
 * @throws {LabError} when a duration is invalid, above 10 s, or the jitter
 *   is larger than the delay.
 */
function parseDelay(text: string): Fault {
  let delayMs: number | undefined;
  let jitterMs = 0;
  for (const part of text.split(",")) {
    const m = /^\s*(delay|jitter)=(.+)$/.exec(part);
    if (!m?.[1] || m[2] === undefined) {
      throw new LabError(
        `invalid delay fault ${JSON.stringify(text)}: use delay=80ms[,jitter=20ms]`,
      );
    }
    if (m[1] === "delay") delayMs = parseLabDuration("delay", m[2]);
    else jitterMs = parseLabDuration("jitter", m[2]);
  }
  if (delayMs === undefined) {
    throw new LabError(`jitter needs a delay: use delay=80ms,jitter=20ms`);
  }
  if (jitterMs > delayMs) {
    throw new LabError(`jitter (${jitterMs} ms) must not be larger than the delay (${delayMs} ms)`);
  }
  return { kind: "delay", delayMs, jitterMs };
}

/**
 * Parse `carrier`, `blackhole`, `blackhole4`, `blackhole6`, `loss=PCT`
 * (`loss=30` or `loss=30%`), `rate=RATE`, `delay=DELAY[,jitter=JITTER]`,
 * `dhcp-change`, `ra-change`, `renumber` or `pppoe-drop`.
 * @throws {LabError} for anything else.
 */
export function parseFault(text: string): Fault {
  const t = text.trim();
  if (/^(delay|jitter)=/.test(t)) return parseDelay(t);
  if (
    t === "carrier" ||
    t === "blackhole" ||
    t === "blackhole4" ||
    t === "blackhole6" ||
    t === "dhcp-change" ||
    t === "ra-change" ||
    t === "renumber" ||
    t === "pppoe-drop"
  ) {
    return { kind: t };
  }
  const loss = /^loss=(\d+(?:\.\d+)?)%?$/.exec(t);
  if (loss?.[1] !== undefined) {
    const percent = Number(loss[1]);
    if (percent > 100) throw new LabError(`loss must be 0..100 percent, not ${percent}`);
    return { kind: "loss", percent };
  }
  const rate = /^rate=(.+)$/.exec(t);
  if (rate?.[1] !== undefined) {
    parseRate(rate[1]);
    return { kind: "rate", rate: rate[1].trim().toLowerCase() };
  }
  throw new LabError(
    `unknown fault ${JSON.stringify(t)}: use carrier, blackhole, blackhole4, blackhole6, loss=PCT, rate=RATE, delay=MS[,jitter=MS], dhcp-change, ra-change, renumber or pppoe-drop`,
  );
}

/** `set` with `fault` added (events, {@link EVENT_FAULTS}, leave it unchanged). */
export function addFault(set: FaultSet, fault: Fault): FaultSet {
  const next = { ...set };
  switch (fault.kind) {
    case "carrier":
      next.carrier = true;
      break;
    case "blackhole":
      next.blackhole = true;
      break;
    case "blackhole4":
      next.blackhole4 = true;
      break;
    case "blackhole6":
      next.blackhole6 = true;
      break;
    case "loss":
      if (fault.percent > 0) next.loss = fault.percent;
      else delete next.loss;
      break;
    case "rate":
      next.rate = fault.rate;
      break;
    case "delay":
      if (fault.delayMs > 0) {
        next.delay = fault.delayMs;
        if (fault.jitterMs > 0) next.jitter = fault.jitterMs;
        else delete next.jitter;
      } else {
        delete next.delay;
        delete next.jitter;
      }
      break;
    case "dhcp-change":
    case "ra-change":
    case "renumber":
    case "pppoe-drop":
      break;
  }
  return next;
}

/** Human form of a fault set: `["carrier", "loss=30"]`. */
export function describeFaults(set: FaultSet): string[] {
  const out: string[] = [];
  if (set.carrier) out.push("carrier");
  if (set.blackhole) out.push("blackhole");
  if (set.blackhole4) out.push("blackhole4");
  if (set.blackhole6) out.push("blackhole6");
  if (set.loss !== undefined) out.push(`loss=${set.loss}`);
  if (set.rate !== undefined) out.push(`rate=${set.rate}`);
  if (set.delay !== undefined) {
    out.push(`delay=${set.delay}ms${set.jitter === undefined ? "" : `,jitter=${set.jitter}ms`}`);
  }
  return out;
}

/**
 * Per-direction drop threshold out of 10000 for a round-trip loss of
 * `percent`: round((1 - sqrt(1 - p)) * 10000).
 */
export function lossThreshold(percent: number): number {
  const p = Math.min(Math.max(percent, 0), 100) / 100;
  return Math.round((1 - Math.sqrt(1 - p)) * 10000);
}

/**
 * nft script replacing the ISP's `faults` chain with the rules of `set`
 * (one transaction; an empty set leaves the chain empty). Loss applies to
 * both families.
 *
 * Packets coming back from the delay line (`iifname dly`) pass the ISP's
 * forward hook a second time: the `faults` chain returns at once for them
 * (loss and blackhole act once), and the `delay_raw` chain (prerouting,
 * priority raw) keeps them out of conntrack. Both rules are always there;
 * they match nothing while there is no delay line.
 */
export function renderFaultChain(set: FaultSet): string {
  const lines = [
    "add chain inet lab delay_raw { type filter hook prerouting priority raw; policy accept; }",
    "flush chain inet lab delay_raw",
    `add rule inet lab delay_raw iifname "${DELAY_DEVICE}" notrack`,
    "flush chain inet lab faults",
    `add rule inet lab faults iifname "${DELAY_DEVICE}" return`,
  ];
  if (set.blackhole) lines.push("add rule inet lab faults counter drop");
  if (set.blackhole4 && !set.blackhole) {
    lines.push("add rule inet lab faults meta nfproto ipv4 counter drop");
  }
  if (set.blackhole6 && !set.blackhole) {
    lines.push("add rule inet lab faults meta nfproto ipv6 counter drop");
  }
  if (set.loss !== undefined && set.loss > 0) {
    lines.push(
      `add rule inet lab faults numgen random mod 10000 < ${lossThreshold(set.loss)} counter drop`,
    );
  }
  return lines.map((l) => `${l}\n`).join("");
}

/**
 * tc arguments installing a tbf of `rate` as the root qdisc of `dev`.
 * Burst: 10 ms worth of bytes, at least 16 KiB; queue: 100 ms.
 */
export function tbfArgs(dev: string, rate: string): string[] {
  const bits = parseRate(rate);
  const burst = Math.max(16384, Math.ceil(bits / 8 / 100));
  return [
    "qdisc",
    "replace",
    "dev",
    dev,
    "root",
    "tbf",
    "rate",
    rate,
    "burst",
    String(burst),
    "latency",
    "100ms",
  ];
}

import { z } from "zod";

/**
 * Rates as tc(8) writes them: a number followed by `bit`, `kbit`, `mbit`,
 * `gbit`, `tbit` (bits per second, decimal prefixes), the binary `kibit`,
 * `mibit`, `gibit`, or `bps`, `kbps`, `mbps`, `gbps` (BYTES per second, as
 * in tc). A bare number is bits per second, as in tc.
 */

const RATE_FACTORS: Readonly<Record<string, number>> = {
  "": 1,
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  tbit: 1e12,
  kibit: 1024,
  mibit: 1024 ** 2,
  gibit: 1024 ** 3,
  bps: 8,
  kbps: 8e3,
  mbps: 8e6,
  gbps: 8e9,
};

const RATE_RE = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i;

/**
 * A tc rate in bits per second (`10mbit` -> 1e7, `100kbps` -> 8e5, `5000` -> 5000).
 * @throws {Error} when the text is not a number with one of tc's rate units.
 */
export function parseRate(text: string): number {
  const match = RATE_RE.exec(text);
  const factor = match === null ? undefined : RATE_FACTORS[(match[2] ?? "").toLowerCase()];
  if (match?.[1] === undefined || factor === undefined) {
    throw new Error(`"${text}" is not a rate; write it as tc does, e.g. 100mbit, 500kbit, 1gbit`);
  }
  return Number(match[1]) * factor;
}

/** Bits per second as tc would print it: `40mbit`, `1.5gbit`, `800kbit`. */
export function formatRate(bitsPerSecond: number): string {
  for (const [unit, size] of [
    ["gbit", 1e9],
    ["mbit", 1e6],
    ["kbit", 1e3],
  ] as const) {
    if (bitsPerSecond >= size) return `${Number((bitsPerSecond / size).toFixed(2))}${unit}`;
  }
  return `${Math.round(bitsPerSecond)}bit`;
}

/** A rate (`100mbit`) or a number of bits per second; parsed to bits per second, > 0. */
export const rate = z
  .union([z.number().positive(), z.string()], {
    error: "must be a rate such as 100mbit, 20mbit, 1gbit (tc units)",
  })
  .transform((value, ctx) => {
    if (typeof value === "number") return value;
    try {
      const bits = parseRate(value);
      if (bits > 0) return bits;
      ctx.addIssue({ code: "custom", message: "must be more than 0" });
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
    }
    return z.NEVER;
  })
  .meta({ description: "rate as tc writes it: 100mbit, 20mbit, 1gbit, or bits per second" });

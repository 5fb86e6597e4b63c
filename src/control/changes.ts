/**
 * What a reload changes: the differences between two configs as
 * `path: before -> after` lines, for the log and `uplinkd reload`.
 */
import { maskSecrets } from "../config/secrets.js";

/** Most lines `configChanges` returns; more are counted in a last line. */
export const MAX_CHANGE_LINES = 50;

function show(value: unknown): string {
  return value === undefined ? "(none)" : JSON.stringify(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A list of objects that all have a distinct string `name` (uplinks, tokens with names). */
function byName(value: unknown): Map<string, unknown> | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const out = new Map<string, unknown>();
  for (const item of value) {
    if (!isRecord(item) || typeof item.name !== "string" || out.has(item.name)) return undefined;
    out.set(item.name, item);
  }
  return out;
}

function diff(before: unknown, after: unknown, path: string, out: string[]): void {
  if (JSON.stringify(before) === JSON.stringify(after)) return;
  const at = (key: string) => (path === "" ? key : `${path}.${key}`);
  if (isRecord(before) && isRecord(after)) {
    for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
      diff(before[key], after[key], at(key), out);
    }
    return;
  }
  const a = byName(before);
  const b = byName(after);
  if (a !== undefined && b !== undefined) {
    for (const name of a.keys()) if (!b.has(name)) out.push(`${at(name)}: removed`);
    for (const [name, item] of b) {
      if (!a.has(name)) out.push(`${at(name)}: added`);
      else diff(a.get(name), item, at(name), out);
    }
    const order = (m: Map<string, unknown>) => [...m.keys()].filter((n) => a.has(n) && b.has(n));
    if (JSON.stringify(order(a)) !== JSON.stringify(order(b))) {
      out.push(`${path}: order ${[...a.keys()].join(",")} -> ${[...b.keys()].join(",")}`);
    }
    return;
  }
  out.push(`${path}: ${show(before)} -> ${show(after)}`);
}

/**
 * The differences between two validated configs, one line each:
 * `uplinks.isp2.weight: 1 -> 3`, `uplinks.isp3: added`. Lists of named
 * objects are compared by name. Token values are never shown.
 *
 * @returns at most {@link MAX_CHANGE_LINES} lines (and one "... N more"); empty when equal.
 */
export function configChanges(before: unknown, after: unknown): string[] {
  const out: string[] = [];
  const [b, a] = maskSecrets(before, after);
  diff(b, a, "", out);
  const redacted = out.map((line) =>
    /^control\.tokens/.test(line)
      ? line.replace(/:.*$/, ": changed")
      : line.replace(/: "\*\*\*" -> "\*\*\* \(changed\)"$/, ": (changed)"),
  );
  const unique = [...new Set(redacted)];
  if (unique.length <= MAX_CHANGE_LINES) return unique;
  return [
    ...unique.slice(0, MAX_CHANGE_LINES),
    `... ${unique.length - MAX_CHANGE_LINES} more changes`,
  ];
}

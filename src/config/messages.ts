/**
 * Turns zod's findings into config issues a network admin can act on:
 * plain messages ("must be at least 1", "unknown key "gatway"; did you mean
 * "gateway"?") located at the offending node of the YAML file.
 */
import { z } from "zod";
import type { ConfigIssue } from "../errors.js";
import type { ConfigPath, ConfigSource } from "./source.js";

const TYPE_NAMES: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  array: "a list",
  object: "a mapping",
};

/** A short description of a YAML value for messages: `the string "x"`, `1.5`, `a list`. */
export function describeValue(value: unknown): string {
  if (value === null) return "an empty value";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") {
    const shown = value.length > 40 ? `${value.slice(0, 40)}...` : value;
    return `the string ${JSON.stringify(shown)}`;
  }
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return typeof value === "object" ? "a mapping" : typeof value;
}

/**
 * Per-parse zod error map: plain messages for zod's generic issues. Messages
 * written in the schema itself win over these (zod's precedence); returning
 * undefined keeps zod's own message.
 */
export const friendlyMessage: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case "invalid_type": {
      if (issue.input === undefined) {
        const key = issue.path?.at(-1);
        return key === undefined ? "is required" : `required key "${String(key)}" is missing`;
      }
      const expected = TYPE_NAMES[issue.expected] ?? issue.expected;
      return `must be ${expected}, not ${describeValue(issue.input)}`;
    }
    case "too_small": {
      const min = Number(issue.minimum);
      if (issue.origin === "array") {
        return min === 1 ? "must list at least one item" : `must list at least ${min} items`;
      }
      if (issue.origin === "string") {
        return min === 1 ? "must not be empty" : `must be at least ${min} characters`;
      }
      return issue.inclusive === false ? `must be more than ${min}` : `must be at least ${min}`;
    }
    case "too_big": {
      const max = Number(issue.maximum);
      if (issue.origin === "array") return `must list at most ${max} items`;
      if (issue.origin === "string") return `must be at most ${max} characters`;
      return issue.inclusive === false ? `must be less than ${max}` : `must be at most ${max}`;
    }
    case "invalid_value": {
      const values = issue.values.map((v) => JSON.stringify(v));
      return values.length === 1
        ? `must be ${values[0] ?? ""}`
        : `must be one of ${values.join(", ")}`;
    }
    case "invalid_format":
      return issue.format === "regex" && typeof issue["pattern"] === "string"
        ? `must match ${issue["pattern"]}`
        : undefined;
    default:
      return undefined;
  }
};

/**
 * The issues of one zod issue, located in the file. An unknown key (the
 * schema's objects are strict) gives one issue per key, located at the key
 * itself, with the closest known key suggested; a key a mapping refuses
 * (`invalid_key`) gives its own message, at the key.
 *
 * @param schema the schema that was parsed (to list the known keys).
 */
export function zodIssueToConfigIssues(
  issue: z.core.$ZodIssue,
  source: ConfigSource,
  schema: z.ZodType,
): ConfigIssue[] {
  const path = issue.path.map((step) => (typeof step === "number" ? step : String(step)));
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(schema, path);
    return issue.keys.map((key) => source.keyIssue([...path, key], unknownKeyMessage(key, known)));
  }
  if (issue.code === "invalid_key") {
    // A mapping key the schema refuses (a header name, a variable name): the key's own message, at the key.
    const said = issue.issues.map((inner) => inner.message).join("; ");
    return [source.keyIssue(path, said === "" ? issue.message : said)];
  }
  return [source.valueIssue(path, issue.message)];
}

/** `unknown key "gatway"; did you mean "gateway"?`, or the known keys when none is close. */
export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const close = closestKey(key, known);
  if (close !== undefined) return `unknown key "${key}"; did you mean "${close}"?`;
  if (known.length === 0) return `unknown key "${key}"`;
  return `unknown key "${key}"; known keys: ${known.join(", ")}`;
}

/**
 * The known key a mistyped `key` most likely meant: the one at the smallest
 * edit distance (letters added, dropped, changed or swapped, case ignored),
 * if that distance is small for the key's length; else undefined.
 */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  const limit = key.length <= 4 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps. */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = Array.from({ length: rows * cols }, () => 0);
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let value = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        value = Math.min(value, at(i - 2, j - 2) + 1);
      }
      d[i * cols + j] = value;
    }
  }
  return at(a.length, b.length);
}

/** The keys the object schema at `path` accepts; empty when there is no object there. */
export function knownKeys(schema: z.ZodType, path: ConfigPath): string[] {
  let current: z.ZodType | undefined = unwrap(schema);
  for (const step of path) {
    if (current instanceof z.ZodObject) {
      const shape = current.shape as Record<string, z.ZodType | undefined>;
      current = shape[String(step)];
    } else if (current instanceof z.ZodArray) {
      current = current.element as z.ZodType;
    } else {
      return [];
    }
    if (current === undefined) return [];
    current = unwrap(current);
  }
  return current instanceof z.ZodObject ? Object.keys(current.shape) : [];
}

/** The schema under defaults, optionals and pipes (their input side). */
function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema;
  for (;;) {
    if (
      current instanceof z.ZodDefault ||
      current instanceof z.ZodPrefault ||
      current instanceof z.ZodOptional ||
      current instanceof z.ZodNullable
    ) {
      current = current.unwrap() as z.ZodType;
    } else if (current instanceof z.ZodPipe) {
      current = current.in as z.ZodType;
    } else if (current instanceof z.ZodLazy) {
      current = current.unwrap() as z.ZodType;
    } else {
      return current;
    }
  }
}

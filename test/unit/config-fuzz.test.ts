/**
 * Bad config input never crashes the loader: random text, random YAML
 * documents and near-valid configs with mutated fields are either accepted
 * or refused with a ConfigError whose every issue is located at
 * FILE:LINE:COL inside the file and names a key path.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import fc from "fast-check";
import { parse, stringify } from "yaml";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError } from "../../src/errors.js";
import { fuzzParameters } from "../fuzz.js";

const FILE = "fuzz.yaml";
const EXAMPLE_TEXT = readFileSync(new URL("../../examples/uplinkd.yaml", import.meta.url), "utf8");
const EXAMPLE = parse(EXAMPLE_TEXT) as Record<string, unknown>;

/** Which stage refused the text: a YAML syntax problem has no key path. */
type Expect = "any" | "valid-yaml-mapping";

/**
 * Parses `text` and checks the outcome: a config, or a ConfigError with at
 * least one issue, each in the file (1 <= line <= lines + 1, col >= 1), with
 * a message. For text that is a YAML mapping, each issue names a key path.
 */
function checkOutcome(text: string, expect: Expect = "any"): void {
  let error: unknown;
  try {
    parseConfig(text, FILE);
    return;
  } catch (caught) {
    error = caught;
  }
  if (!(error instanceof ConfigError)) {
    assert.fail(`not a ConfigError: ${error instanceof Error ? error.stack : String(error)}`);
  }
  assert.ok(error.issues.length > 0, "a ConfigError without issues");
  const lineCount = text.split(/\r\n|\r|\n/).length;
  for (const issue of error.issues) {
    assert.equal(issue.file, FILE);
    assert.ok(Number.isInteger(issue.line) && issue.line >= 1, `line ${issue.line}`);
    assert.ok(issue.line <= lineCount + 1, `line ${issue.line} beyond ${lineCount} lines`);
    assert.ok(Number.isInteger(issue.col) && issue.col >= 1, `col ${issue.col}`);
    assert.equal(typeof issue.path, "string");
    assert.ok(issue.message.trim() !== "", "an empty message");
    // What the user wrote is quoted in messages; the rest is ours and must read well.
    const ours = issue.message.replace(/"(?:[^"\\]|\\.)*"/g, '""');
    assert.ok(!/undefined|\[object Object\]/.test(ours), issue.message);
    if (expect === "valid-yaml-mapping") {
      assert.notEqual(issue.path, "", `no key path: ${issue.message}`);
    }
  }
}

/** Pieces of YAML and of uplinkd's configs that random text is built from. */
const YAML_TOKENS = [
  "lan",
  "uplinks",
  "health",
  "dataplane",
  "control",
  "notify",
  "policies",
  "rules",
  "sets",
  "name",
  "interface",
  "gateway",
  "targets",
  "interval",
  "mark_mask",
  ": ",
  ":",
  "- ",
  "-",
  "\n",
  "\n  ",
  "\n    ",
  "\t",
  " ",
  "[",
  "]",
  "{",
  "}",
  ",",
  "&a ",
  "*a",
  "<<: *a",
  "!!str ",
  "!!binary ",
  "!!set ",
  "!!omap ",
  "!!timestamp ",
  "!!float ",
  "!custom ",
  "? ",
  "|",
  ">-",
  "'",
  '"',
  "\\u0000",
  "# c",
  "---",
  "...",
  "%YAML 1.2\n",
  "%TAG ! tag:x,2000:\n",
  "0x",
  "0xff00",
  "1e309",
  "-.inf",
  ".nan",
  "~",
  "null",
  "true",
  "200ms",
  "1.5s",
  "192.0.2.1",
  "auto",
  "\u00e9",
  "\ud83d\ude00",
  "\r\n",
  "\ufeff",
];

/** Values a field might be mutated to: wrong types, edge numbers, odd strings. */
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    null,
    true,
    0,
    -1,
    0.5,
    2 ** 53,
    -(2 ** 31),
    4294967296,
    Number.MAX_VALUE,
    "",
    " ",
    "auto",
    "none",
    "0x",
    "0xffffffffff",
    "0xff00",
    "10ms",
    "1e9h",
    "-5s",
    "1.5.5s",
    "192.0.2.1",
    "192.0.2.0/33",
    "300.1.1.1",
    "::1",
    "[::1]:9101",
    "127.0.0.1:0",
    "@banks",
    "@",
    "__proto__",
    "constructor",
    "toString",
    "a".repeat(300),
    [],
    {},
    [[]],
    { __proto__: null },
  ),
  fc.string({ maxLength: 20 }),
  fc.string({ unit: "grapheme", maxLength: 10 }),
  fc.integer(),
  fc.double(),
  fc.jsonValue({ maxDepth: 3 }),
);

/** Keys a mapping might gain: near-misses, prototype names, odd text. */
const oddKey = fc.oneof(
  fc.constantFrom("__proto__", "constructor", "prototype", "toString", "gatway", "", " ", "<<"),
  fc.string({ maxLength: 12 }),
);

type Step = string | number;

/** Every path to a value in a JSON-like tree (the root excluded). */
function pathsOf(value: unknown, prefix: Step[] = []): Step[][] {
  if (Array.isArray(value)) {
    return value.flatMap((item, index) => [
      [...prefix, index],
      ...pathsOf(item, [...prefix, index]),
    ]);
  }
  if (value !== null && typeof value === "object") {
    return Object.entries(value).flatMap(([key, item]) => [
      [...prefix, key],
      ...pathsOf(item, [...prefix, key]),
    ]);
  }
  return [];
}

/** A mutation of one node of a config tree. */
interface Mutation {
  pick: number;
  action: "replace" | "delete" | "add-key" | "duplicate";
  value: unknown;
  key: string;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  pick: fc.nat(),
  action: fc.constantFrom("replace", "delete", "add-key", "duplicate"),
  value: oddValue,
  key: oddKey,
});

/** Applies a mutation to a deep copy of `tree`. */
function mutate(tree: unknown, m: Mutation): unknown {
  const copy = structuredClone(tree);
  const paths = pathsOf(copy);
  const path = paths[m.pick % paths.length] ?? [];
  const parentPath = path.slice(0, -1);
  const last = path.at(-1);
  let parent = copy as Record<Step, unknown>;
  for (const step of parentPath) parent = parent[step] as Record<Step, unknown>;
  if (last === undefined) return copy;
  const target = parent[last];
  switch (m.action) {
    case "replace":
      parent[last] = m.value;
      break;
    case "delete":
      if (Array.isArray(parent) && typeof last === "number") parent.splice(last, 1);
      else Reflect.deleteProperty(parent, last);
      break;
    case "add-key":
      if (target !== null && typeof target === "object" && !Array.isArray(target)) {
        Object.defineProperty(target, m.key, { value: m.value, enumerable: true, writable: true });
      } else {
        parent[last] = { [m.key]: m.value };
      }
      break;
    case "duplicate":
      if (Array.isArray(parent)) parent.push(structuredClone(target));
      else parent[last] = [target, target];
      break;
  }
  return copy;
}

const RUNS = { text: 300, documents: 300, mutations: 400, edits: 300 };

describe("bad config input never crashes the loader", () => {
  test("random text gives a config or a located ConfigError", () => {
    const text = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.string({ unit: "binary", maxLength: 100 }),
      fc.array(fc.constantFrom(...YAML_TOKENS), { maxLength: 60 }).map((tokens) => tokens.join("")),
    );
    fc.assert(
      fc.property(text, (t) => {
        checkOutcome(t);
      }),
      fuzzParameters(RUNS.text),
    );
  });

  test("random YAML documents give a config or a located ConfigError", () => {
    const document = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }),
      fc.dictionary(
        fc.constantFrom(...Object.keys(EXAMPLE), "other"),
        fc.oneof(oddValue, fc.jsonValue({ maxDepth: 3 })),
      ),
    );
    fc.assert(
      fc.property(document, (doc) => {
        checkOutcome(stringify(doc));
      }),
      fuzzParameters(RUNS.documents),
    );
  });

  test("the example config with mutated fields gives a config or a located ConfigError", () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (mutations) => {
        const tree = mutations.reduce<unknown>((t, m) => mutate(t, m), EXAMPLE);
        const text = stringify(tree);
        const isMapping = tree !== null && typeof tree === "object" && !Array.isArray(tree);
        checkOutcome(
          text,
          isMapping && Object.keys(tree).length > 0 ? "valid-yaml-mapping" : "any",
        );
      }),
      fuzzParameters(RUNS.mutations),
    );
  });

  test("the example config's text with random edits gives a config or a located ConfigError", () => {
    const edit = fc.record({
      at: fc.nat(),
      remove: fc.nat({ max: 20 }),
      insert: fc.oneof(fc.constantFrom(...YAML_TOKENS), fc.string({ maxLength: 5 })),
    });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 5 }), (edits) => {
        let text = EXAMPLE_TEXT;
        for (const { at, remove, insert } of edits) {
          const i = at % (text.length + 1);
          text = text.slice(0, i) + insert + text.slice(i + remove);
        }
        checkOutcome(text);
      }),
      fuzzParameters(RUNS.edits),
    );
  });
});

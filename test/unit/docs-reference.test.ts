/**
 * The documentation keeps up with the config schema: every key of the
 * generated JSON Schema (schema/*.json) is documented in a reference table
 * of docs/ — a table row (a line starting with `|`) whose first cell names
 * the key's full path in backticks, e.g. `uplinks[].health.flap.count`
 * (list items are `[]`, map entries `NAME`). Every docs/*.md page counts,
 * so a feature page can carry the rows of its own keys; the rest are in
 * docs/configuration.md. The reverse holds too: a key the reference
 * (docs/configuration.md) names must exist, and its documented default must
 * be the schema's.
 */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const REFERENCE = "docs/configuration.md";

/** The parts of a JSON Schema node that hold keys. */
interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  additionalProperties?: SchemaNode | boolean;
  anyOf?: SchemaNode[];
  oneOf?: SchemaNode[];
  allOf?: SchemaNode[];
  default?: unknown;
}

/** One config key: its full path (`uplinks[].gateway`) and its default, if the schema has one. */
interface SchemaKey {
  path: string;
  default?: unknown;
}

/**
 * Every key below `node`, depth first. Union members (the probe kinds)
 * give the same path once.
 */
export function schemaKeys(node: SchemaNode, prefix = ""): SchemaKey[] {
  const keys = new Map<string, SchemaKey>();
  const visit = (n: SchemaNode, at: string): void => {
    for (const member of [...(n.anyOf ?? []), ...(n.oneOf ?? []), ...(n.allOf ?? [])]) {
      visit(member, at);
    }
    for (const [name, child] of Object.entries(n.properties ?? {})) {
      const path = at === "" ? name : `${at}.${name}`;
      if (!keys.has(path)) {
        keys.set(path, { path, ...("default" in child ? { default: child.default } : {}) });
      }
      visit(child, path);
    }
    if (n.items !== undefined) visit(n.items, `${at}[]`);
    if (typeof n.additionalProperties === "object") visit(n.additionalProperties, `${at}.NAME`);
  };
  visit(node, prefix);
  return [...keys.values()];
}

/**
 * `uplinks[].health` takes the keys of the top-level `health` (the
 * reference says so once, in the row of `uplinks[].health`), so its keys
 * are looked up under `health.`.
 */
function referencePath(path: string): string {
  return path.startsWith("uplinks[].health.") ? path.slice("uplinks[].".length) : path;
}

/** A table row: its cells, trimmed, without the outer pipes. */
function cells(line: string): string[] {
  return line
    .trim()
    .replace(/^\||\|$/g, "")
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim());
}

/** The backticked words of a cell. */
function codeSpans(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? "");
}

/** Keys named in the first cell of any table row of `markdown`. */
export function documentedKeys(markdown: string): Set<string> {
  const keys = new Set<string>();
  for (const line of markdown.split("\n")) {
    if (!line.trimStart().startsWith("|")) continue;
    for (const key of codeSpans(cells(line)[0] ?? "")) keys.add(key);
  }
  return keys;
}

/** Rows of the reference tables (header `key | type | default | meaning`): keys and default cell. */
function referenceRows(markdown: string): { keys: string[]; default: string; line: number }[] {
  const rows: { keys: string[]; default: string; line: number }[] = [];
  let inTable = false;
  markdown.split("\n").forEach((line, index) => {
    if (!line.trimStart().startsWith("|")) {
      inTable = false;
      return;
    }
    const row = cells(line);
    if (row.join("|") === "key|type|default|meaning") {
      inTable = true;
      return;
    }
    if (!inTable || /^-+$/.test(row[0] ?? "")) return;
    rows.push({ keys: codeSpans(row[0] ?? ""), default: row[2] ?? "", line: index + 1 });
  });
  return rows;
}

/** A schema default as the reference writes it, without backticks: `500ms`, `3`, `[a, b]`. */
function formatDefault(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(formatDefault).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    return entries.length === 0 ? "{}" : JSON.stringify(value);
  }
  return String(value);
}

async function loadSchemaKeys(): Promise<SchemaKey[]> {
  const files = (await readdir(`${REPO}/schema`)).filter((f) => f.endsWith(".json"));
  assert.ok(files.length > 0, "schema/ holds the generated JSON Schema");
  const keys: SchemaKey[] = [];
  for (const file of files) {
    const schema = JSON.parse(await readFile(`${REPO}/schema/${file}`, "utf8")) as SchemaNode;
    keys.push(...schemaKeys(schema));
  }
  return keys;
}

async function loadDocs(): Promise<Map<string, string>> {
  const pages = new Map<string, string>();
  for (const file of (await readdir(`${REPO}/docs`)).filter((f) => f.endsWith(".md"))) {
    pages.set(`docs/${file}`, await readFile(`${REPO}/docs/${file}`, "utf8"));
  }
  return pages;
}

/** Schema keys that no docs page documents, as the lookups of the test below make them. */
export function undocumented(keys: readonly SchemaKey[], pages: Iterable<string>): string[] {
  const documented = new Set<string>();
  for (const page of pages) for (const key of documentedKeys(page)) documented.add(key);
  return keys.map((k) => k.path).filter((path) => !documented.has(referencePath(path)));
}

describe("the configuration reference", () => {
  test("documents every key of the JSON Schema in a table row of some docs/*.md page", async () => {
    const keys = await loadSchemaKeys();
    assert.ok(keys.length > 100, `the schema's keys were read (${keys.length})`);
    const pages = await loadDocs();
    assert.deepEqual(
      undocumented(keys, pages.values()),
      [],
      "add a row `| \\`full.path\\` | type | default | meaning |` to docs/configuration.md or the feature's page",
    );
  });

  test("a key missing from the docs is reported, by its full path", () => {
    const keys = schemaKeys({
      properties: {
        uplinks: {
          items: {
            properties: {
              name: {},
              health: { properties: { down: {} } },
              bandwidth: { properties: { up: {} } },
            },
          },
        },
        policies: { additionalProperties: { properties: { balance: { default: "weight" } } } },
      },
    });
    const page = [
      "| key | type | default | meaning |",
      "| --- | --- | --- | --- |",
      "| `uplinks`, `uplinks[].name` | list | required | x |",
      "| `health.down` | integer | 3 | x |",
      "| `policies` | map | `{}` | x |",
      "Prose naming `uplinks[].bandwidth` and `policies.NAME.balance` is not a reference row.",
    ].join("\n");
    assert.deepEqual(undocumented(keys, [page]), [
      "uplinks[].health",
      "uplinks[].bandwidth",
      "uplinks[].bandwidth.up",
      "policies.NAME.balance",
    ]);
  });

  test("names only keys the schema has, with the schema's defaults", async () => {
    const keys = new Map((await loadSchemaKeys()).map((k) => [k.path, k]));
    const reference = await readFile(`${REPO}/${REFERENCE}`, "utf8");
    const rows = referenceRows(reference);
    assert.ok(rows.length > 100, `the reference's rows were read (${rows.length})`);
    const problems: string[] = [];
    for (const row of rows) {
      const defaults = row.default.replace(/`/g, "").split(/,\s*(?![^[{]*[\]}])/);
      row.keys.forEach((path, i) => {
        const key = keys.get(path);
        if (key === undefined) {
          problems.push(`${REFERENCE}:${row.line}: ${path} is not a key of the schema`);
          return;
        }
        if (!("default" in key)) return;
        const wanted = formatDefault(key.default);
        // A map whose default is {} documents its defaults key by key.
        if (wanted === "{}" && row.default !== "`{}`") return;
        const written = row.keys.length === defaults.length ? defaults[i] : row.default;
        if (written?.trim() !== wanted) {
          problems.push(
            `${REFERENCE}:${row.line}: ${path} default is ${wanted} in the schema, "${row.default}" in the docs`,
          );
        }
      });
    }
    assert.deepEqual(problems, []);
  });
});

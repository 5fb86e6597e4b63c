/**
 * The documentation keeps up with the config schema: every key of the
 * generated JSON Schema (schema/*.json) is documented in a reference table
 * of docs/ — a table row (a line starting with `|`) whose first cell names
 * the key's full path in backticks, e.g. `uplinks[].health.flap.count`
 * (list items are `[]`, map entries `NAME`). Every docs/*.md page counts,
 * so a feature page can carry the rows of its own keys; the rest are in
 * docs/configuration.md. The reverse holds too: a key the reference
 * (docs/configuration.md) names must exist, and its documented default must
 * be the schema's. The YAML examples of the pages use only keys the
 * schema has. And the links between README.md and the docs point at
 * files and headings that exist, so a section that moved leaves no link
 * behind.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { configSchema } from "../../src/config/schema.js";

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
function schemaKeys(node: SchemaNode, prefix = ""): SchemaKey[] {
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
function documentedKeys(markdown: string): Set<string> {
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
function undocumented(keys: readonly SchemaKey[], pages: Iterable<string>): string[] {
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

/** Markdown outside fenced code blocks. */
function prose(markdown: string): string {
  return markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, "");
}

/**
 * The anchors of a page's headings as GitHub makes them: lower case, inline
 * markup and punctuation other than `-` and `_` dropped, spaces as `-`; a
 * repeated heading gets `-1`, `-2`, ...
 */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const match of prose(markdown).matchAll(/^#{1,6}\s+(.+?)\s*#*$/gm)) {
    const slug = (match[1] ?? "")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

/** Links of a page to other files of the repository (not URLs): target and anchor. */
function localLinks(markdown: string): { target: string; anchor?: string }[] {
  const links: { target: string; anchor?: string }[] = [];
  for (const match of prose(markdown).matchAll(/\]\(([^)\s]+)\)/g)) {
    const href = match[1] ?? "";
    if (/^[a-z]+:/i.test(href)) continue;
    const [target = "", anchor] = href.split("#");
    links.push({ target, ...(anchor === undefined ? {} : { anchor }) });
  }
  return links;
}

describe("the links of README.md and docs/", () => {
  test("GitHub's heading anchors are computed as GitHub does", () => {
    const anchors = headingAnchors(
      "# Capacity: `least-used` and `spillover`\n## IPv6\n```\n# not a heading\n```\n## IPv6\n",
    );
    assert.deepEqual([...anchors], ["capacity-least-used-and-spillover", "ipv6", "ipv6-1"]);
  });

  test("point at files and headings that exist", async () => {
    const pages = ["README.md", ...(await loadDocs()).keys()];
    const problems: string[] = [];
    let checked = 0;
    for (const page of pages) {
      const markdown = await readFile(join(REPO, page), "utf8");
      for (const link of localLinks(markdown)) {
        checked++;
        const file = link.target === "" ? page : join(dirname(page), link.target);
        if (!existsSync(join(REPO, file))) {
          problems.push(`${page}: ${link.target} does not exist`);
          continue;
        }
        if (link.anchor === undefined || !file.endsWith(".md")) continue;
        const anchors = headingAnchors(await readFile(join(REPO, file), "utf8"));
        if (!anchors.has(link.anchor)) problems.push(`${page}: ${file} has no #${link.anchor}`);
      }
    }
    assert.ok(checked > 50, `the pages' links were read (${checked})`);
    assert.deepEqual(problems, []);
  });
});

describe("the YAML examples of README.md and docs/", () => {
  test("use only keys the config schema has", async () => {
    const pages = ["README.md", ...(await loadDocs()).keys()];
    const problems: string[] = [];
    let checked = 0;
    for (const page of pages) {
      const markdown = await readFile(join(REPO, page), "utf8");
      for (const match of markdown.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)) {
        const text = match[1] ?? "";
        // Another program's file, named in its first line (# prometheus.yml).
        if (/^# \S+\.ya?ml\s*$/.test(text.split("\n")[0] ?? "")) continue;
        checked++;
        const example = parse(text) as Record<string, unknown>;
        // A fragment is checked inside the smallest config.
        const config = {
          lan: ["lan0"],
          uplinks: [{ name: "isp1", interface: "wan1" }],
          ...example,
        };
        const result = configSchema.safeParse(config);
        for (const issue of result.error?.issues ?? []) {
          if (issue.code !== "unrecognized_keys") continue;
          problems.push(`${page}: ${issue.path.join(".")}: unknown ${issue.keys.join(", ")}`);
        }
      }
    }
    assert.ok(checked >= 10, `the pages' YAML examples were read (${checked})`);
    assert.deepEqual(problems, []);
  });
});

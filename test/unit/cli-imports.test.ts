/**
 * What the production CLI loads: `uplinkd run` and `uplinkd status` must not
 * load the lab or the demo (src/lab), which only `uplinkd lab` and `uplinkd
 * demo` need. Follows the static imports of src/cli.ts through the source
 * tree; type-only imports are erased by the compiler and do not count.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** `import ... from "./x.js"` and `export ... from "./x.js"` that load a module at start. */
const STATIC_IMPORT =
  /^(?:import|export)\s+(?!type\s)[^;]*?\bfrom\s+"(\.[^"]+)"|^import\s+"(\.[^"]+)"/gm;
/** `import("./x.js")`: loaded only when that code runs. */
const DYNAMIC_IMPORT = /\bimport\(\s*"(\.[^"]+)"\s*\)/g;

/** Relative paths (from the repository) of every source file `entry` loads. */
function loaded(entry: string, withDynamic: boolean): Set<string> {
  const seen = new Set<string>();
  const queue = [resolve(ROOT, entry)];
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    const name = relative(ROOT, file);
    if (seen.has(name)) continue;
    seen.add(name);
    const text = readFileSync(file, "utf8");
    const specifiers = [...text.matchAll(STATIC_IMPORT)].map((m) => m[1] ?? m[2] ?? "");
    if (withDynamic) specifiers.push(...[...text.matchAll(DYNAMIC_IMPORT)].map((m) => m[1] ?? ""));
    for (const specifier of specifiers) {
      queue.push(resolve(dirname(file), specifier.replace(/\.js$/, ".ts")));
    }
  }
  return seen;
}

describe("the production CLI", () => {
  test("loads the daemon and the control client at start, but nothing of src/lab", () => {
    const files = loaded("src/cli.ts", false);
    for (const needed of ["src/daemon.ts", "src/control/cli.ts", "src/config/load.ts"]) {
      assert.ok(files.has(needed), `${needed} is not found among the CLI's imports`);
    }
    const lab = [...files].filter((f) => f.startsWith("src/lab/"));
    assert.deepEqual(lab, [], "the CLI loads the lab at start");
  });

  test("reaches the lab and the demo through `uplinkd lab` and `uplinkd demo` only", () => {
    const files = loaded("src/cli.ts", true);
    assert.ok(files.has("src/lab/cli.ts"));
    assert.ok(files.has("src/lab/demo.ts"));
  });
});

/**
 * Node scripts the lab runs inside namespaces (the echo host, the traffic
 * tool). They run as separate processes, so they work both from the build
 * (`dist/lab/NAME.js`, plain node) and from sources (`src/lab/NAME.ts`,
 * node with the tsx loader).
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The lab's runnable scripts. */
export type LabScript = "host" | "traffic" | "bulk";

/**
 * The argv that runs lab script `name` with the current Node:
 * `[node, dist/lab/NAME.js]` when this module was built or when
 * `UPLINKD_LAB_SCRIPTS=dist` (tests in an emulated machine, where compiling
 * a script at each start takes tens of seconds; build first), else
 * `[node, --import, TSX_LOADER_URL, src/lab/NAME.ts]` when it runs from
 * sources under tsx. Append the script's own arguments.
 */
export function labScriptArgv(name: LabScript): string[] {
  const here = import.meta.url;
  if (!here.endsWith(".ts")) {
    return [process.execPath, fileURLToPath(new URL(`./${name}.js`, here))];
  }
  if (process.env.UPLINKD_LAB_SCRIPTS === "dist") {
    return [process.execPath, fileURLToPath(new URL(`../../dist/lab/${name}.js`, here))];
  }
  const file = fileURLToPath(new URL(`./${name}.ts`, here));
  return [process.execPath, "--import", import.meta.resolve("tsx"), file];
}

/** True when the module at `importMetaUrl` is the script node was started with. */
export function isMainModule(importMetaUrl: string): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  return fileURLToPath(importMetaUrl) === resolve(entry);
}

/**
 * The benchmark runs the built uplinkd (`dist/`, what `npm run build`
 * makes): the daemon, the lab's echo host and traffic tool all start as
 * plain `node dist/...`, so start-up, memory and CPU are those of the real
 * thing and not of a TypeScript loader. Types come from the sources.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** `dist/` of this checkout. */
export const DIST_DIR = fileURLToPath(new URL("../dist/", import.meta.url));

if (!existsSync(`${DIST_DIR}cli.js`)) {
  throw new Error(`no build in ${DIST_DIR}: run \`npm run build\` first (npm run bench does)`);
}

async function load<T>(path: string): Promise<T> {
  return (await import(new URL(path, new URL("../dist/", import.meta.url)).href)) as T;
}

export const labs = await load<typeof import("../src/lab/lab.js")>("lab/lab.js");
export const labDaemons = await load<typeof import("../src/lab/daemon.js")>("lab/daemon.js");
export const measure = await load<typeof import("../src/lab/measure.js")>("lab/measure.js");
export const scripts = await load<typeof import("../src/lab/scripts.js")>("lab/scripts.js");
export const faults = await load<typeof import("../src/lab/faults.js")>("lab/faults.js");
export const topology = await load<typeof import("../src/lab/topology.js")>("lab/topology.js");
export const control = await load<typeof import("../src/control/client.js")>("control/client.js");
export const conntrackLab =
  await load<typeof import("../src/lab/conntrack.js")>("lab/conntrack.js");
export const ipv6 = await load<typeof import("../src/lab/ipv6.js")>("lab/ipv6.js");
export const exec = await load<typeof import("../src/process/run.js")>("process/run.js");
export const haLabs = await load<typeof import("../src/lab/ha.js")>("lab/ha.js");

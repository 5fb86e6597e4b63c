/**
 * Test-only helpers for lab integration tests; running the daemon and
 * traffic lives in src/lab/daemon.ts (shared with the demo and benchmark).
 */
import { readFile, writeFile } from "node:fs/promises";
import { parse, stringify } from "yaml";
import { labUp, type Lab, type LabUpOptions } from "../../src/lab/lab.js";

export {
  holdConnection,
  LabDaemon,
  lanTraffic,
  sharesByUplink,
  startLabDaemon as startDaemon,
  uplinkdArgv,
} from "../../src/lab/daemon.js";

/** A lab prefix unique to a test file tag and this process: test runs never collide. */
export function testPrefix(tag: string): string {
  return `t${tag}${(process.pid % 1296).toString(36)}`.slice(0, 9);
}

/** Bring up a lab and edit its generated daemon config. */
export async function labWithConfig(
  options: LabUpOptions,
  edit: (config: Record<string, unknown>) => void = () => undefined,
): Promise<Lab> {
  const lab = await labUp(options);
  const config = parse(await readFile(lab.configPath, "utf8")) as Record<string, unknown>;
  edit(config);
  await writeFile(lab.configPath, stringify(config));
  return lab;
}

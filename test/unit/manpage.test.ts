/**
 * The man page and the bash completion (packaging/) name every command and
 * option the CLI has: the CLI's command tree is read in a child process
 * that replaces commander's parseAsync with a dump of the tree before
 * src/cli.ts runs it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

interface CommandTree {
  name: string;
  options: string[];
  commands: CommandTree[];
}

const REPO = fileURLToPath(new URL("../..", import.meta.url));

const DUMP = `
import { Command } from "commander";
const tree = (c) => ({
  name: c.name(),
  options: c.options.map((o) => o.long ?? o.short),
  commands: c.commands.map(tree),
});
Command.prototype.parseAsync = async function () {
  process.stdout.write(JSON.stringify(tree(this)));
  process.exit(0);
};
await import("./src/cli.ts");
`;

function cliTree(): CommandTree {
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", DUMP], {
    cwd: REPO,
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as CommandTree;
}

/** Roff escapes hyphens as \\-; compare with them undone. */
function plain(roff: string): string {
  return roff.replace(/\\-/g, "-").replace(/\\f[BIRP]/g, "");
}

test("the man page and the bash completion name every command and option of the CLI", async () => {
  const tree = cliTree();
  const man = plain(await readFile(`${REPO}/packaging/uplinkd.1`, "utf8"));
  const completion = await readFile(`${REPO}/packaging/uplinkd.bash-completion`, "utf8");
  assert.ok(tree.commands.length >= 10, "the CLI's commands were read");
  const missing: string[] = [];
  for (const command of tree.commands) {
    if (!new RegExp(`^\\.B ${command.name}\\b`, "m").test(man))
      missing.push(`man: ${command.name}`);
    if (!completion.includes(command.name)) missing.push(`completion: ${command.name}`);
    for (const option of command.options) {
      if (option === "--help") continue;
      if (command.name !== "lab" && !man.includes(option)) {
        missing.push(`man: ${command.name} ${option}`);
      }
      if (!completion.includes(option)) missing.push(`completion: ${command.name} ${option}`);
    }
    for (const sub of command.commands) {
      if (!man.includes(sub.name)) missing.push(`man: ${command.name} ${sub.name}`);
      if (!completion.includes(sub.name)) missing.push(`completion: ${command.name} ${sub.name}`);
    }
  }
  assert.deepEqual(missing, []);
});

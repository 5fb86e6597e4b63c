/**
 * The man page and the bash completion (packaging/) name every command and
 * option the CLI has, as `uplinkd --help` and each command's `--help` list
 * them: the CLI's command tree is read in a child process that replaces
 * commander's parseAsync with a dump of the tree before src/cli.ts runs it.
 * Commands whose module loads only when they run (lab, ha, demo) are run
 * once with no arguments, so that their real command tree is built and
 * dumped the same way. The lab's own options are documented in
 * docs/lab.md, which the man page points to.
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
const parseAsync = Command.prototype.parseAsync;
const loaded = [];
let root;
Command.prototype.parseAsync = async function (argv, options) {
  if (root !== undefined) {
    // A lazy command's action built its real program: keep its tree.
    loaded.push(tree(this));
    return this;
  }
  root = tree(this);
  for (const command of root.commands) {
    if (command.commands.length > 0 || command.options.length > 0) continue;
    await parseAsync.call(this, [command.name], { from: "user" });
    const real = loaded.pop()?.commands.find((c) => c.name === command.name);
    if (real !== undefined) Object.assign(command, real);
  }
  process.stdout.write(JSON.stringify(root));
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
  const labPage = await readFile(`${REPO}/docs/lab.md`, "utf8");
  assert.ok(tree.commands.length >= 10, "the CLI's commands were read");
  const ha = tree.commands.find((c) => c.name === "ha");
  assert.ok(
    ha?.commands.some((c) => c.name === "render" && c.options.includes("--check")),
    "the lazily loaded commands were read (ha render --check)",
  );
  const missing: string[] = [];
  for (const option of tree.options) {
    if (!man.includes(option)) missing.push(`man: uplinkd ${option}`);
    if (!completion.includes(option)) missing.push(`completion: uplinkd ${option}`);
  }
  for (const command of tree.commands) {
    if (!new RegExp(`^\\.B ${command.name}\\b`, "m").test(man))
      missing.push(`man: ${command.name}`);
    if (!completion.includes(command.name)) missing.push(`completion: ${command.name}`);
    for (const option of command.options) {
      if (option === "--help") continue;
      if (!man.includes(option)) missing.push(`man: ${command.name} ${option}`);
      if (!completion.includes(option)) missing.push(`completion: ${command.name} ${option}`);
    }
    for (const sub of command.commands) {
      if (sub.name === "help") continue;
      if (!new RegExp(`\\b${sub.name}\\b`).test(man)) {
        missing.push(`man: ${command.name} ${sub.name}`);
      }
      if (!completion.includes(sub.name)) missing.push(`completion: ${command.name} ${sub.name}`);
      for (const option of sub.options) {
        if (option === "--help") continue;
        const documented = command.name === "lab" ? labPage : man;
        if (!documented.includes(option)) {
          missing.push(
            `${command.name === "lab" ? "docs/lab.md" : "man"}: ${command.name} ${sub.name} ${option}`,
          );
        }
        if (!completion.includes(option)) {
          missing.push(`completion: ${command.name} ${sub.name} ${option}`);
        }
      }
    }
  }
  assert.deepEqual(missing, []);
});

test("the man page and docs/configuration.md describe the control limits", async () => {
  const man = plain(await readFile(`${REPO}/packaging/uplinkd.1`, "utf8"));
  const docs = await readFile(`${REPO}/docs/configuration.md`, "utf8");
  for (const key of ["max_connections", "max_streams", "stream_buffer", "refused_log_interval"]) {
    assert.match(man, new RegExp(`^\\.BR control\\.${key} `, "m"), `man: control.${key}`);
    assert.match(docs, new RegExp(`^\\| \`control\\.${key}\` +\\|`, "m"), `docs: control.${key}`);
  }
});

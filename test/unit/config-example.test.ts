import assert from "node:assert/strict";
import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { loadConfig, loadConfigWithWarnings } from "../../src/config/load.js";
import { formatConfigIssue } from "../../src/errors.js";
import { uplinkHealth } from "../../src/config/schema.js";

const EXAMPLE = fileURLToPath(new URL("../../examples/uplinkd.yaml", import.meta.url));

describe("examples/uplinkd.yaml", () => {
  test("is a valid config", async () => {
    await assert.doesNotReject(loadConfig(EXAMPLE));
  });

  test("shows weighted tier-1 uplinks, one with a DHCP gateway, and a tier-2 backup", async () => {
    const config = await loadConfig(EXAMPLE);
    const tier1 = config.uplinks.filter((u) => u.tier === 1);
    assert.ok(tier1.length >= 2);
    assert.ok(
      new Set(tier1.map((u) => u.weight)).size > 1,
      "tier-1 uplinks with different weights",
    );
    assert.ok(config.uplinks.some((u) => u.gateway === "auto"));
    assert.ok(config.uplinks.some((u) => u.tier === 2));
  });

  test("probes several targets, and each uplink can get a round to pass", async () => {
    const config = await loadConfig(EXAMPLE);
    assert.ok(config.health.targets.length >= 2);
    for (const uplink of config.uplinks) {
      const health = uplinkHealth(config, uplink);
      assert.ok(health.reliability <= health.targets.length, uplink.name);
    }
  });

  test("points editors at the shipped JSON Schema", async () => {
    const text = await readFile(EXAMPLE, "utf8");
    const match = /^# yaml-language-server: \$schema=(\S+)$/m.exec(text);
    assert.ok(match?.[1], "a yaml-language-server $schema line");
    await access(new URL(match[1], new URL("../../examples/", import.meta.url)));
  });
});

/** The first ```yaml block of `file` after the line that contains `after`. */
async function yamlBlock(file: string, after: string): Promise<string> {
  const text = await readFile(fileURLToPath(new URL(`../../${file}`, import.meta.url)), "utf8");
  const from = text.indexOf(after);
  assert.ok(from >= 0, `${file}: no "${after}"`);
  const match = /```yaml\n([\s\S]*?)```/.exec(text.slice(from));
  assert.ok(match?.[1], `${file}: no yaml block after "${after}"`);
  return match[1];
}

describe("the basic examples pass check without warnings", () => {
  const examples: [string, () => Promise<string>][] = [
    ["README.md (a first config)", () => yamlBlock("README.md", "Or write it by hand")],
    [
      "docs/configuration.md (the basics)",
      () => yamlBlock("docs/configuration.md", "## The basics"),
    ],
    ["examples/uplinkd.yaml", () => readFile(EXAMPLE, "utf8")],
  ];
  for (const [name, text] of examples) {
    test(name, async () => {
      const dir = await mkdtemp(join(tmpdir(), "uplinkd-example-"));
      try {
        const file = join(dir, "uplinkd.yaml");
        await writeFile(file, await text(), { mode: 0o600 });
        const { warnings } = await loadConfigWithWarnings(file);
        assert.deepEqual(warnings.map(formatConfigIssue), []);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import type { Route } from "../../src/kernel/types.js";
import { learnPrefixes, parsePrefixFile } from "../../src/links/prefix6.js";

const guard = (dst: string, protocol = 16): Route => ({
  family: 6,
  table: 254,
  type: "unreachable",
  dst,
  metric: 1024,
  protocol,
  options: {},
});

function config(...uplinks: string[]) {
  return parseConfig(
    ["private_targets: true", "lan: [lan0]", "uplinks:", ...uplinks.map((u) => `  - ${u}`)].join(
      "\n",
    ),
    "t.yaml",
  );
}

describe("learning prefix6: auto", () => {
  test("a prefix file's first word, canonical; an empty or odd file is no prefix", () => {
    assert.equal(parsePrefixFile("2001:DB8:1001:0::/56\n"), "2001:db8:1001::/56");
    assert.equal(parsePrefixFile(""), undefined);
    assert.equal(parsePrefixFile("2001:db8:1001::/96\n"), undefined, "longer than /64");
    assert.equal(parsePrefixFile("192.0.2.0/24"), undefined);
  });

  test("each uplink reads its own file; an unreadable file means no prefix now", async () => {
    const c = config(
      "{ name: isp1, interface: wan1, prefix6: auto, prefix6_file: /pd/wan1 }",
      "{ name: isp2, interface: wan2, prefix6: auto, prefix6_file: /pd/wan2 }",
      "{ name: isp3, interface: wan3, prefix6: 2001:db8:3000::/48 }",
    );
    const files: Record<string, string> = { "/pd/wan1": "2001:db8:1001::/56\n" };
    const read = (path: string) =>
      path in files ? Promise.resolve(files[path] ?? "") : Promise.reject(new Error("ENOENT"));
    assert.deepEqual(
      [...(await learnPrefixes(c, [guard("2001:db8:1002::/56")], read))],
      [["isp1", "2001:db8:1001::/56"]],
    );
    files["/pd/wan2"] = "2001:db8:1002:100::/56";
    files["/pd/wan1"] = "2001:db8:1001:100::/56";
    assert.deepEqual(
      new Map(await learnPrefixes(c, [], read)),
      new Map([
        ["isp1", "2001:db8:1001:100::/56"],
        ["isp2", "2001:db8:1002:100::/56"],
      ]),
    );
  });

  test("without a file: the one proto dhcp guard route, only when one auto uplink could own it", async () => {
    const one = config(
      "{ name: isp1, interface: wan1, prefix6: auto }",
      "{ name: isp2, interface: wan2 }",
    );
    const routes = [guard("2001:db8:1001::/56"), guard("2001:db8:9::/56", 73)];
    assert.deepEqual([...(await learnPrefixes(one, routes))], [["isp1", "2001:db8:1001::/56"]]);
    const two = config(
      "{ name: isp1, interface: wan1, prefix6: auto }",
      "{ name: isp2, interface: wan2, prefix6: auto }",
    );
    assert.deepEqual([...(await learnPrefixes(two, routes))], [], "which uplink's is it? unknown");
    assert.deepEqual(
      [...(await learnPrefixes(one, [guard("2001:db8:1001::/56"), guard("2001:db8:1002::/56")]))],
      [],
    );
  });

  test("prefix6_file without prefix6: auto is a mistake check explains", () => {
    assert.throws(
      () => config("{ name: isp1, interface: wan1, prefix6_file: /pd/wan1 }"),
      /uplinks\.0\.prefix6_file: prefix6_file is read only with prefix6: auto \(uplink "isp1" has no prefix6\)/,
    );
  });
});

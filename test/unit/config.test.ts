import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import {
  DEFAULT_CONFIG_PATH,
  loadConfig,
  loadConfigOffThread,
  parseConfig,
} from "../../src/config/load.js";
import { uplinkHealth, type Config } from "../../src/config/schema.js";
import { maxUplinkId } from "../../src/config/slots.js";
import { ConfigError, formatConfigIssue } from "../../src/errors.js";

/** A YAML text from lines, so line N of the file is argument N. */
function lines(...text: string[]): string {
  return `${text.join("\n")}\n`;
}

/** The `uplinkd check` lines for a config that must be rejected. */
function problems(text: string, file = "uplinkd.yaml"): string[] {
  try {
    parseConfig(text, file);
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map(formatConfigIssue);
    throw error;
  }
  return assert.fail("the config was accepted");
}

/** A valid config with two uplinks, to which a test adds lines. */
const NO_STEERING_UPLINK = { dns: [], pinned: [], forwards: [], gateway6: "auto" };

/** `text` written to `uplinkd.yaml` in a fresh temporary directory that goes when test `t` ends; its path. */
async function configFile(t: TestContext, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "uplinkd-config-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "uplinkd.yaml");
  await writeFile(file, text);
  return file;
}

const TWO_UPLINKS = [
  "lan: [lan0]",
  "uplinks:",
  "  - name: isp1",
  "    interface: wan1",
  "  - name: isp2",
  "    interface: wan2",
];

describe("the config contract of DESIGN.md", () => {
  const example = lines(
    "# /etc/uplinkd/uplinkd.yaml  (uplinkd run -c FILE to choose another)",
    "lan: [lan0]                 # interfaces whose new connections are balanced",
    "uplinks:",
    "  - name: isp1",
    "    interface: wan1",
    '    gateway: 100.64.1.1     # or "auto": learned from the kernel (DHCP/PPP)',
    "    weight: 2               # default 1",
    "    tier: 1                 # default 1; tier 2 only when every tier-1 is down",
    "  - name: isp2",
    "    interface: wan2",
    "    gateway: auto",
    "health:",
    "  targets: [198.51.100.1, 203.0.113.1]   # default targets for every uplink",
    "  interval: 200ms",
    "  timeout: 500ms",
    "  down: 3          # failed rounds in a row -> down",
    "  up: 5            # good rounds in a row -> up",
    "  reliability: 1   # targets that must answer for a round to pass",
    "control:",
    "  socket: /run/uplinkd/uplinkd.sock",
  );

  test("is accepted as written, with durations in ms and every default filled in", () => {
    const expected: Config = {
      lan: ["lan0"],
      uplinks: [
        {
          ...NO_STEERING_UPLINK,
          name: "isp1",
          interface: "wan1",
          gateway: "100.64.1.1",
          weight: 2,
          tier: 1,
        },
        {
          ...NO_STEERING_UPLINK,
          name: "isp2",
          interface: "wan2",
          gateway: "auto",
          weight: 1,
          tier: 1,
        },
      ],
      health: {
        targets: ["198.51.100.1", "203.0.113.1"],
        interval: 200,
        timeout: 500,
        down: 3,
        up: 5,
        reliability: 1,
        loss_fail: 20,
        loss_recover: 10,
        flap: { count: 3, period: 300_000, hold: 60_000 },
        probes: [],
        passive: true,
      },
      dataplane: {
        table: "uplinkd",
        mark_mask: 0xff00,
        table_base: 100,
        rule_priority: 1000,
        route_protocol: 73,
        main_metric: 4096,
        main_metric6: 512,
        policy_mark_mask: 0xff0000,
        on_stop: "remove",
      },
      control: {
        socket: "/run/uplinkd/uplinkd.sock",
        tokens: [],
        max_connections: 256,
        max_streams: 32,
        stream_buffer: 1048576,
        refused_log_interval: 60_000,
      },
      sets: {},
      policies: {},
      rules: [],
      tunnels: [],
      router_policy: "default",
      last_resort: "all",
      log: { level: "info" },
      state_dir: "/var/lib/uplinkd",
    };
    assert.deepEqual(parseConfig(example, "uplinkd.yaml"), expected);
  });

  test("lan and uplinks are all a config needs; the rest has defaults", () => {
    const config = parseConfig(lines(...TWO_UPLINKS), "uplinkd.yaml");
    assert.deepEqual(config.health, {
      targets: ["198.51.100.1", "203.0.113.1"],
      interval: 500,
      timeout: 1000,
      down: 3,
      up: 5,
      reliability: 1,
      loss_fail: 20,
      loss_recover: 10,
      flap: { count: 3, period: 300_000, hold: 60_000 },
      probes: [],
      passive: true,
    });
    assert.equal(config.dataplane.mark_mask, 0xff00);
    assert.equal(config.control.socket, "/run/uplinkd/uplinkd.sock");
    assert.deepEqual(
      config.uplinks.map((u) => [u.gateway, u.weight, u.tier, u.id]),
      [
        ["auto", 1, 1, undefined],
        ["auto", 1, 1, undefined],
      ],
    );
  });

  test("the default config file is /etc/uplinkd/uplinkd.yaml", () => {
    assert.equal(DEFAULT_CONFIG_PATH, "/etc/uplinkd/uplinkd.yaml");
  });
});

describe("durations", () => {
  function health(interval: string, timeout: string) {
    return parseConfig(
      lines(...TWO_UPLINKS, "health:", `  interval: ${interval}`, `  timeout: ${timeout}`),
      "uplinkd.yaml",
    ).health;
  }

  test("are read in ms from ms, s, m and h", () => {
    assert.deepEqual([health("200ms", "5s").interval, health("200ms", "5s").timeout], [200, 5000]);
    assert.equal(health("1.5s", "1s").interval, 1500);
    assert.equal(health("1m", "1s").interval, 60_000);
    assert.equal(health("1h", "1s").interval, 3_600_000);
  });

  test("a bare number is ms", () => {
    assert.deepEqual([health("250", "1000").interval, health("250", "1000").timeout], [250, 1000]);
  });

  test("a timeout longer or shorter than the interval is fine", () => {
    assert.equal(health("200ms", "1s").timeout, 1000);
    assert.equal(health("1s", "200ms").timeout, 200);
  });

  test("an interval below 10ms is rejected, with or without a unit", () => {
    const text = (interval: string) => lines(...TWO_UPLINKS, "health:", `  interval: ${interval}`);
    assert.deepEqual(problems(text("5ms")), [
      "uplinkd.yaml:8:13: health.interval: must be at least 10ms",
    ]);
    assert.deepEqual(problems(text("9")), [
      "uplinkd.yaml:8:13: health.interval: must be at least 10ms",
    ]);
    assert.equal(health("10ms", "1s").interval, 10);
  });

  test("a timeout of 0 is rejected", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "health:", "  timeout: 0s")), [
      "uplinkd.yaml:8:12: health.timeout: must be more than 0ms",
    ]);
  });

  test("text without a known unit is rejected with an example of what works", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "health:", "  interval: 3 seconds")), [
      "uplinkd.yaml:8:13: health.interval: must be a duration such as 200ms, 5s, 1m or 1h",
    ]);
  });
});

describe("an uplink's own health settings", () => {
  test("override the top-level health field by field; the rest is inherited", () => {
    const config = parseConfig(
      lines(
        ...TWO_UPLINKS,
        "    health: { interval: 1s, up: 10 }",
        "health:",
        "  targets: [192.0.2.7, 192.0.2.8]",
        "  interval: 200ms",
      ),
      "uplinkd.yaml",
    );
    const [isp1, isp2] = config.uplinks;
    assert.ok(isp1 && isp2);
    assert.deepEqual(isp2.health, { interval: 1000, up: 10 });
    assert.deepEqual(uplinkHealth(config, isp2), {
      targets: ["192.0.2.7", "192.0.2.8"],
      interval: 1000,
      timeout: 1000,
      down: 3,
      up: 10,
      reliability: 1,
      loss_fail: 20,
      loss_recover: 10,
      flap: { count: 3, period: 300_000, hold: 60_000 },
      probes: [],
      passive: true,
    });
    assert.deepEqual(uplinkHealth(config, isp1), config.health);
  });
});

describe("YAML that cannot be parsed", () => {
  test("an unclosed flow sequence is reported where YAML notices it", () => {
    assert.deepEqual(problems(lines("lan: [lan0", "uplinks: []")), [
      "uplinkd.yaml:2:1: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ]);
  });

  test("tabs as indentation are reported at the tab, once per line, in plain words", () => {
    assert.deepEqual(problems(lines("lan: [lan0]", "uplinks:", "\t- name: isp1")), [
      "uplinkd.yaml:3:1: tabs are not allowed: use spaces to indent",
    ]);
    assert.deepEqual(
      problems(
        lines(
          "lan: [lan0]",
          "uplinks:",
          "  - name: isp1",
          "\tinterface: wan1",
          "  - name: isp2",
          "    interface: wan2",
        ),
      ),
      ["uplinkd.yaml:4:1: tabs are not allowed: use spaces to indent"],
    );
    assert.deepEqual(
      problems(lines("lan: [lan0]", "health:", "  interval: 1s", "  \ttimeout: 2s")),
      ["uplinkd.yaml:4:3: tabs are not allowed: use spaces to indent"],
    );
  });

  test("a line indented off its siblings is blamed at that line with both indents", () => {
    assert.deepEqual(
      problems(
        lines(
          "lan: [lan0]",
          "uplinks:",
          "  - name: isp1",
          "    interface: wan1",
          "     gateway: auto",
          "  - name: isp2",
          "    interface: wan2",
        ),
      ),
      ["uplinkd.yaml:5:1: line 5 is indented 5 spaces, its siblings 4 spaces: indent it like them"],
    );
    assert.deepEqual(
      problems(lines("lan: [lan0]", "health:", "  interval: 200ms", "   timeout: 500ms")),
      ["uplinkd.yaml:4:1: line 4 is indented 3 spaces, its siblings 2 spaces: indent it like them"],
    );
    assert.deepEqual(
      problems(lines("lan: [lan0]", "health:", "  interval: 200ms", " timeout: 500ms")),
      ["uplinkd.yaml:4:1: line 4 is indented 1 space, its siblings 2 spaces: indent it like them"],
    );
  });

  test("a key given twice is reported at its second occurrence", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "lan: [lan1]")), [
      "uplinkd.yaml:7:1: Map keys must be unique",
    ]);
  });

  test("a second YAML document is reported at its '---'", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "---", "lan: [lan1]")), [
      "uplinkd.yaml:7:1: the config must be one YAML document; remove this '---' and what follows",
    ]);
  });

  test("lists nested thousands deep are reported where the reader gave up, not thrown", () => {
    const [problem, ...more] = problems(`lan: ${"[".repeat(5000)}${"]".repeat(5000)}\n`);
    assert.deepEqual(more, []);
    assert.match(
      problem ?? "",
      /^uplinkd\.yaml:1:\d+: lists and mappings are nested too deeply to read/,
    );
  });

  test("an empty file, or one with only comments, is reported at 1:1", () => {
    const empty = "uplinkd.yaml:1:1: the config is empty; it needs at least lan and uplinks";
    assert.deepEqual(problems(""), [empty]);
    assert.deepEqual(problems(lines("# nothing here yet", "")), [empty]);
  });

  test("a document that is a list or a single value, not a mapping, is reported at 1:1", () => {
    const notMapping =
      "uplinkd.yaml:1:1: the config must be a mapping of keys (lan, uplinks, health, ...), not a single value or a list";
    assert.deepEqual(problems(lines("# uplinks", "- name: isp1")), [notMapping]);
    assert.deepEqual(problems("uplinks\n"), [notMapping]);
  });
});

describe("keys an object cannot hold", () => {
  test("a __proto__ key is reported at the key instead of being dropped", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "sets:", "  __proto__: [192.0.2.0/24]")), [
      'uplinkd.yaml:8:3: sets.__proto__: "__proto__" cannot be used as a key',
    ]);
    assert.deepEqual(
      problems(lines(...TWO_UPLINKS, "policies:", "  __proto__: { members: [{ uplink: isp1 }] }")),
      ['uplinkd.yaml:8:3: policies.__proto__: "__proto__" cannot be used as a key'],
    );
  });

  test("a list or a mapping as a key is reported at the key", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "sets:", "  ? [a, b]", "  : [192.0.2.0/24]")), [
      "uplinkd.yaml:8:5: sets: a key must be a plain name, not a list or a mapping",
    ]);
  });
});

describe("values the schema rejects", () => {
  test("a value of the wrong type is reported at the value, saying what was found", () => {
    assert.deepEqual(
      problems(
        lines(
          "lan: lan0",
          "uplinks:",
          "  - name: isp1",
          "    interface: wan1",
          "    weight: two",
          "    gateway: 5",
          "  - name: isp2",
          "    interface: 7",
          "    tier: 1.5",
          "dataplane:",
          "  mark_mask: true",
          "  on_stop: maybe",
        ),
      ),
      [
        'uplinkd.yaml:1:6: lan: must be a list, not the string "lan0"',
        'uplinkd.yaml:5:13: uplinks.0.weight: must be a number, not the string "two"',
        'uplinkd.yaml:6:14: uplinks.0.gateway: must be "auto", "none" or an IPv4 address',
        "uplinkd.yaml:8:16: uplinks.1.interface: must be a string, not 7",
        "uplinkd.yaml:9:11: uplinks.1.tier: must be a whole number, not 1.5",
        "uplinkd.yaml:11:14: dataplane.mark_mask: must be a 32-bit mask such as 0xff00",
        'uplinkd.yaml:12:12: dataplane.on_stop: must be one of "remove", "keep"',
      ],
    );
  });

  test("values out of range or badly formed say what is allowed", () => {
    assert.deepEqual(
      problems(
        lines(
          "lan: []",
          "uplinks:",
          "  - name: 1st",
          "    interface: wan/1",
          "    gateway: 100.64.1.256",
          "    weight: 0",
          "    id: 255",
          "health:",
          "  targets: [198.51.100.1, example.com]",
          "dataplane:",
          '  mark_mask: "ff00"',
        ),
      ),
      [
        "uplinkd.yaml:1:6: lan: must list at least one item",
        "uplinkd.yaml:3:11: uplinks.0.name: must start with a letter and hold only letters, digits, '_' and '-' (at most 24)",
        "uplinkd.yaml:4:16: uplinks.0.interface: must be a Linux interface name: 1 to 15 of letters, digits and '_ . - + @ = %' (not '.' or '..')",
        "uplinkd.yaml:5:14: uplinks.0.gateway: must be an IPv4 address (e.g. 192.0.2.1)",
        "uplinkd.yaml:6:13: uplinks.0.weight: must be at least 1",
        "uplinkd.yaml:7:9: uplinks.0.id: must be at most 254",
        "uplinkd.yaml:9:27: health.targets.1: must be an IPv4 or IPv6 address (e.g. 192.0.2.1, 2001:db8::1)",
        "uplinkd.yaml:11:14: dataplane.mark_mask: must be a hex number such as 0xff00",
      ],
    );
  });

  test("a missing key is reported at the mapping that should hold it", () => {
    assert.deepEqual(
      problems(lines("uplinks:", "  - name: isp1", "  - interface: wan2", "    weight: 2")),
      [
        'uplinkd.yaml:1:1: lan: required key "lan" is missing',
        'uplinkd.yaml:2:5: uplinks.0.interface: required key "interface" is missing',
        'uplinkd.yaml:3:5: uplinks.1.name: required key "name" is missing',
      ],
    );
  });

  test("a key with no value is reported at the key", () => {
    assert.deepEqual(problems(lines("lan:", "uplinks:", "  - name: isp1", "    interface:")), [
      "uplinkd.yaml:1:1: lan: must be a list, not an empty value",
      "uplinkd.yaml:4:5: uplinks.0.interface: must be a string, not an empty value",
    ]);
  });

  test("an unknown key is reported at the key itself, with the key it most likely meant", () => {
    assert.deepEqual(
      problems(
        lines(
          "lan: [lan0]",
          "uplinks:",
          "  - name: isp1",
          "    interface: wan1",
          "    gatway: 100.64.1.1",
          "    health: { intervall: 1s }",
          "helth:",
          "  down: 3",
        ),
      ),
      [
        'uplinkd.yaml:5:5: uplinks.0.gatway: unknown key "gatway"; did you mean "gateway"?',
        'uplinkd.yaml:6:15: uplinks.0.health.intervall: unknown key "intervall"; did you mean "interval"?',
        'uplinkd.yaml:7:1: helth: unknown key "helth"; did you mean "health"?',
      ],
    );
  });

  test("an unknown key like no known one lists the known keys", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "dataplane:", "  nft_family: ip")), [
      'uplinkd.yaml:8:3: dataplane.nft_family: unknown key "nft_family"; known keys: table, mark_mask, table_base, rule_priority, route_protocol, main_metric, main_metric6, policy_mark_mask, on_stop',
    ]);
  });

  test("every problem of the file is reported at once, in file order", () => {
    const found = problems(
      lines(
        "lan: [lan0]",
        "uplinks:",
        "  - name: isp1",
        "    interface: wan1",
        "    weight: -1",
        "  - name: isp2",
        "    interfaces: wan2",
        "health:",
        "  interval: soon",
        "  reliability: 0",
      ),
      "/etc/uplinkd/uplinkd.yaml",
    );
    assert.deepEqual(found, [
      "/etc/uplinkd/uplinkd.yaml:5:13: uplinks.0.weight: must be at least 1",
      '/etc/uplinkd/uplinkd.yaml:6:5: uplinks.1.interface: required key "interface" is missing',
      '/etc/uplinkd/uplinkd.yaml:7:5: uplinks.1.interfaces: unknown key "interfaces"; did you mean "interface"?',
      "/etc/uplinkd/uplinkd.yaml:9:13: health.interval: must be a duration such as 200ms, 5s, 1m or 1h",
      "/etc/uplinkd/uplinkd.yaml:10:16: health.reliability: must be at least 1",
    ]);
  });

  test("the ConfigError carries each issue's parts and the code UPLINKD_ERR_CONFIG", () => {
    try {
      parseConfig(lines(...TWO_UPLINKS, "    weight: 0"), "a.yaml");
      assert.fail("the config was accepted");
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.code, "UPLINKD_ERR_CONFIG");
      assert.deepEqual(error.issues, [
        {
          file: "a.yaml",
          line: 7,
          col: 13,
          path: "uplinks.1.weight",
          message: "must be at least 1",
        },
      ]);
      assert.equal(error.message, "a.yaml:7:13: uplinks.1.weight: must be at least 1");
    }
  });
});

describe("checks across fields", () => {
  test("two uplinks with one name: the second name is reported", () => {
    assert.deepEqual(
      problems(
        lines(
          "lan: [lan0]",
          "uplinks:",
          "  - { name: isp, interface: wan1 }",
          "  - name: isp",
          "    interface: wan2",
        ),
      ),
      ['uplinkd.yaml:4:11: uplinks.1.name: uplink name "isp" is already used by uplinks.0'],
    );
  });

  test("two uplinks on one interface: the second interface is reported", () => {
    assert.deepEqual(
      problems(
        lines(
          "lan: [lan0]",
          "uplinks:",
          "  - { name: isp1, interface: wan1 }",
          "  - { name: isp2, interface: wan1 }",
        ),
      ),
      [
        'uplinkd.yaml:4:30: uplinks.1.interface: interface "wan1" is already the interface of uplink "isp1" (uplinks.0)',
      ],
    );
  });

  test("a LAN interface that is also an uplink's is reported in lan", () => {
    assert.deepEqual(problems(lines("lan: [lan0, wan2]", ...TWO_UPLINKS.slice(1))), [
      'uplinkd.yaml:1:13: lan.1: "wan2" is also the interface of uplink "isp2" (uplinks.1.interface); an interface is LAN or uplink, not both',
    ]);
  });

  test("a LAN interface listed twice is reported at the second", () => {
    assert.deepEqual(problems(lines("lan: [lan0, lan1, lan0]", ...TWO_UPLINKS.slice(1))), [
      'uplinkd.yaml:1:19: lan.2: "lan0" is listed twice',
    ]);
  });

  test("two uplinks with one explicit id: the second id is reported", () => {
    assert.deepEqual(
      problems(
        lines(
          "lan: [lan0]",
          "uplinks:",
          "  - { name: isp1, interface: wan1, id: 7 }",
          "  - { name: isp2, interface: wan2, id: 7 }",
        ),
      ),
      [
        'uplinkd.yaml:4:40: uplinks.1.id: id 7 is already the id of uplink "isp1" (uplinks.0); every uplink needs its own id',
      ],
    );
  });

  test("an explicit id equal to another uplink's position is reported at the explicit id", () => {
    // isp2 has no id, so it gets its position, 2; isp1 takes 2 as well.
    assert.deepEqual(
      problems(
        lines(
          "lan: [lan0]",
          "uplinks:",
          "  - name: isp1",
          "    interface: wan1",
          "    id: 2",
          "  - name: isp2",
          "    interface: wan2",
        ),
      ),
      [
        'uplinkd.yaml:5:9: uplinks.0.id: id 2 is already the id of uplink "isp2" (uplinks.1, by its position); every uplink needs its own id',
      ],
    );
  });

  test("an id whose mark does not fit in dataplane.mark_mask is reported at the id", () => {
    const max = maxUplinkId(0xf00);
    assert.deepEqual(
      problems(lines(...TWO_UPLINKS, "    id: 20", "dataplane:", "  mark_mask: 0x0f00")),
      [
        `uplinkd.yaml:7:9: uplinks.1.id: uplink "isp2" has id 20, which does not fit in dataplane.mark_mask 0xf00 (ids 1 to ${max}); widen the mask`,
      ],
    );
  });

  test("an uplink whose position does not fit in the mask is reported at the uplink", () => {
    const max = maxUplinkId(0x300);
    const uplinks = Array.from(
      { length: max + 1 },
      (_, i) => `  - { name: isp${i + 1}, interface: wan${i + 1} }`,
    );
    assert.deepEqual(
      problems(lines("lan: [lan0]", "dataplane: { mark_mask: 0x300 }", "uplinks:", ...uplinks)),
      [
        `uplinkd.yaml:${4 + max}:5: uplinks.${max}: uplink "isp${max + 1}" has id ${max + 1} (its position), which does not fit in dataplane.mark_mask 0x300 (ids 1 to ${max}); widen the mask`,
      ],
    );
  });

  test("a mark_mask of 0 is rejected at the mask", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "dataplane:", "  mark_mask: 0")), [
      "uplinkd.yaml:8:14: dataplane.mark_mask: must not be 0: uplinkd needs mark bits for its uplinks (e.g. 0xff00)",
    ]);
  });

  test("a mark_mask whose bits are not one run is rejected at the mask", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "dataplane:", '  mark_mask: "0xf0f0"')), [
      "uplinkd.yaml:8:14: dataplane.mark_mask: must be one run of consecutive bits such as 0xff00 or 0xf00, not 0xf0f0",
    ]);
  });

  test("mark_mask may be written as a YAML number or a quoted hex string", () => {
    const mask = (value: string) =>
      parseConfig(lines(...TWO_UPLINKS, "dataplane:", `  mark_mask: ${value}`), "u.yaml").dataplane
        .mark_mask;
    assert.equal(mask("0x0f00"), 0xf00);
    assert.equal(mask('"0x0f00"'), 0xf00);
    assert.equal(mask("3840"), 0xf00);
  });

  test("an explicit id that lands on a reserved routing table is reported at the id", () => {
    // table_base 100 + id 153 = 253, the kernel's "default" table.
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "    id: 153")), [
      'uplinkd.yaml:7:9: uplinks.1.id: uplink "isp2" with id 153 would use routing table 253 (dataplane.table_base 100 + id), which the kernel reserves ("default"); choose another id or table_base',
    ]);
  });

  test("a table_base that puts uplinks on reserved tables is reported at table_base, once per uplink", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "dataplane:", "  table_base: 253")), [
      'uplinkd.yaml:8:15: dataplane.table_base: uplink "isp1" with id 1 (its position) would use routing table 254 (dataplane.table_base 253 + id), which the kernel reserves ("main"); choose another id or table_base',
      'uplinkd.yaml:8:15: dataplane.table_base: uplink "isp2" with id 2 (its position) would use routing table 255 (dataplane.table_base 253 + id), which the kernel reserves ("local"); choose another id or table_base',
    ]);
  });

  test("a routing table beyond 2^32-1 is rejected", () => {
    assert.deepEqual(
      problems(lines(...TWO_UPLINKS, "    id: 16", "dataplane:", "  table_base: 0xfffffff0")),
      [
        'uplinkd.yaml:7:9: uplinks.1.id: uplink "isp2" with id 16 would use routing table 4294967296 (dataplane.table_base 4294967280 + id), beyond the largest table 4294967295; choose another id or table_base',
      ],
    );
  });

  test("reliability above the number of targets is reported at reliability", () => {
    assert.deepEqual(
      problems(
        lines(...TWO_UPLINKS, "health:", "  targets: [192.0.2.1, 192.0.2.2]", "  reliability: 3"),
      ),
      [
        "uplinkd.yaml:9:16: health.reliability: 3 targets must answer, but health.targets lists only 2",
      ],
    );
  });

  test("reliability counts the default targets when none are given", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "health: { reliability: 3 }")), [
      "uplinkd.yaml:7:24: health.reliability: 3 targets must answer, but health.targets lists only 2",
    ]);
  });

  test("an uplink's own reliability above its targets is reported at that reliability", () => {
    assert.deepEqual(problems(lines(...TWO_UPLINKS, "    health: { reliability: 4 }")), [
      'uplinkd.yaml:7:28: uplinks.1.health.reliability: 4 targets must answer, but uplink "isp2" probes only 2',
    ]);
  });

  test("an uplink's own targets fewer than the inherited reliability are reported at those targets", () => {
    assert.deepEqual(
      problems(
        lines(...TWO_UPLINKS, "    health: { targets: [192.0.2.1] }", "health: { reliability: 2 }"),
      ),
      [
        "uplinkd.yaml:7:24: uplinks.1.health.targets: lists 1 target, fewer than the 2 that must answer (health.reliability); add targets or set this uplink's health.reliability",
      ],
    );
  });

  test("a target listed twice is reported at the second", () => {
    assert.deepEqual(
      problems(lines(...TWO_UPLINKS, "health:", "  targets: [192.0.2.1, 192.0.2.1]")),
      ["uplinkd.yaml:8:24: health.targets.1: 192.0.2.1 is listed twice"],
    );
  });

  test("every cross-field problem is reported at once, in file order", () => {
    assert.deepEqual(
      problems(
        lines(
          "lan: [wan1]",
          "uplinks:",
          "  - { name: isp, interface: wan1, id: 3 }",
          "  - { name: isp, interface: wan2, id: 3 }",
          "health: { targets: [192.0.2.1], reliability: 2 }",
        ),
      ),
      [
        'uplinkd.yaml:1:7: lan.0: "wan1" is also the interface of uplink "isp" (uplinks.0.interface); an interface is LAN or uplink, not both',
        'uplinkd.yaml:4:13: uplinks.1.name: uplink name "isp" is already used by uplinks.0',
        'uplinkd.yaml:4:39: uplinks.1.id: id 3 is already the id of uplink "isp" (uplinks.0); every uplink needs its own id',
        "uplinkd.yaml:5:46: health.reliability: 2 targets must answer, but health.targets lists only 1",
      ],
    );
  });
});

describe("loadConfig", () => {
  test("reads and validates a file", async (t) => {
    const file = await configFile(t, lines(...TWO_UPLINKS));
    const config = await loadConfig(file);
    assert.deepEqual(
      config.uplinks.map((u) => u.name),
      ["isp1", "isp2"],
    );
  });

  test("reports problems with the file name it was given", async (t) => {
    const file = await configFile(t, lines(...TWO_UPLINKS, "    weight: 0"));
    await assert.rejects(loadConfig(file), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.issues.map(formatConfigIssue), [
        `${file}:7:13: uplinks.1.weight: must be at least 1`,
      ]);
      return true;
    });
  });

  test("a missing file is a ConfigError at 1:1 that says so", async () => {
    const file = join(tmpdir(), "uplinkd-no-such-dir", "uplinkd.yaml");
    await assert.rejects(loadConfig(file), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.issues.map(formatConfigIssue), [
        `${file}:1:1: cannot read the config: no such file`,
      ]);
      return true;
    });
  });

  test("a directory is a ConfigError at 1:1 that says so", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "uplinkd-config-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await assert.rejects(loadConfig(dir), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.issues.map(formatConfigIssue), [
        `${dir}:1:1: cannot read the config: it is a directory, not a file`,
      ]);
      return true;
    });
  });
});

describe("health.timeout: auto", () => {
  const base = [
    "lan: [lan0]",
    "uplinks:",
    "  - { name: isp1, interface: wan1 }",
    "  - name: isp2",
    "    interface: wan2",
  ];

  test("auto, timeout_min and timeout_max are accepted in ms; an uplink may keep a fixed timeout", () => {
    const config = parseConfig(
      lines(
        ...base,
        "    health: { timeout: 300ms }",
        "health:",
        "  timeout: auto",
        "  timeout_min: 20ms",
        "  timeout_max: 0.4s",
      ),
      "uplinkd.yaml",
    );
    assert.equal(config.health.timeout, "auto");
    assert.equal(config.health.timeout_min, 20);
    assert.equal(config.health.timeout_max, 400);
    assert.equal(config.uplinks[1]?.health?.timeout, 300);
  });

  test("a floor above the ceiling is named at the key that sets it, also for an uplink", () => {
    assert.deepEqual(
      problems(
        lines(...base, "health:", "  timeout: auto", "  timeout_min: 20ms", "  timeout_max: 10ms"),
      ),
      [
        "uplinkd.yaml:8:16: health.timeout_min: timeout_min (20ms) is above timeout_max (10ms): the RTT-aware timeout needs floor <= ceiling",
      ],
    );
    assert.deepEqual(
      problems(
        lines(...base, "    health: { timeout: auto, timeout_min: 40ms, timeout_max: 30ms }"),
      ),
      [
        "uplinkd.yaml:6:43: uplinks.1.health.timeout_min: timeout_min (40ms) is above timeout_max (30ms): the RTT-aware timeout needs floor <= ceiling",
      ],
    );
  });
});

describe("names and paths that would become code are refused at their line", () => {
  const hostile = (key: string, yamlValue: string, extra: string[] = []) =>
    problems(lines(...TWO_UPLINKS, ...extra, `${key}${yamlValue}`));

  test("a rule name that would close the nft comment string", () => {
    const found = problems(
      lines(
        ...TWO_UPLINKS,
        "rules:",
        String.raw`  - name: "web\";ip daddr 198.51.100.1 counter drop;#"`,
        "    policy: default",
      ),
    );
    assert.equal(found.length, 1);
    assert.match(found[0] ?? "", /^uplinkd\.yaml:8:11: rules\.0\.name: must start with a letter/);
    // A name with inner blanks (the example's "guest web") stays valid.
    parseConfig(
      lines(...TWO_UPLINKS, "rules:", "  - name: guest web", "    policy: default"),
      "uplinkd.yaml",
    );
  });

  test("interface names with '#', quotes, NUL, '.', '..', blanks or more than 15 bytes", () => {
    for (const name of [
      '"u#1"',
      String.raw`"wan\"1"`,
      String.raw`"wan\0"`,
      '"."',
      '".."',
      '"wan 1"',
      '"wan;ls"',
      "wan0123456789abc",
      '"wän123456789012"',
      String.raw`"wan\u202e1"`,
    ]) {
      const found = problems(
        lines("lan: [lan0]", "uplinks:", "  - name: isp1", `    interface: ${name}`),
      );
      assert.deepEqual(
        found,
        [
          "uplinkd.yaml:4:16: uplinks.0.interface: must be a Linux interface name: 1 to 15 of letters, digits and '_ . - + @ = %' (not '.' or '..')",
        ],
        name,
      );
    }
    // The kernel's own kinds of names stay valid: VLANs, bridges, PPP, 15 bytes.
    for (const name of ["eth0.100", "br-lan", "ppp0", "wwan0", "enp0s31f6abcdef"]) {
      parseConfig(
        lines("lan: [lan0]", "uplinks:", "  - name: isp1", `    interface: ${name}`),
        "uplinkd.yaml",
      );
    }
  });

  test("paths with quotes, '$(...)', backticks, newlines or relative are refused at the value", () => {
    const ha = (key: string, value: string) =>
      problems(
        lines(
          ...TWO_UPLINKS,
          "ha:",
          "  node: a",
          "  priority: 10",
          "  peer: { name: b, address: 100.64.250.2 }",
          "  sync: { interface: sync0, address: 100.64.250.1 }",
          "  virtual_addresses: { lan0: [100.64.100.1/24] }",
          `  ${key}: ${value}`,
        ),
      );
    const message =
      "must be an absolute path of letters, digits and '_ . / - + @ % , = :' (no blanks, quotes, '$', backticks, '#' or control characters)";
    for (const value of [
      `"/run/uplinkd/ha-role'; touch /tmp/x; '"`,
      '"/run/uplinkd/$(id>/tmp/x)"',
      '"/run/uplinkd/`id`"',
      String.raw`"/run/uplinkd/score\n}\nvrrp_script x {"`,
      "run/uplinkd/ha-role",
    ]) {
      assert.deepEqual(ha("state_file", value), [`uplinkd.yaml:13:15: ha.state_file: ${message}`]);
    }
    assert.deepEqual(ha("conntrackd", String.raw`{ socket: "/run/ct.ctl\nNetlinkBufferSize 1" }`), [
      `uplinkd.yaml:13:25: ha.conntrackd.socket: ${message}`,
    ]);
    assert.deepEqual(hostile("  socket: ", '"/etc/uplinkd/x y"', ["control:"]), [
      `uplinkd.yaml:8:11: control.socket: ${message}`,
    ]);
  });
});

describe("a config too large to parse on the event loop", () => {
  test("is refused at 1:1 with its size, before it is parsed", async (t) => {
    const file = await configFile(t, `${lines(...TWO_UPLINKS)}# ${"x".repeat(2 * 1024 * 1024)}\n`);
    await assert.rejects(loadConfig(file), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(
        error.issues.map(formatConfigIssue).join(" | "),
        /uplinkd\.yaml:1:1: the config is 2\d{6} bytes; at most 1048576 are read \(1 MiB\)$/,
      );
      return true;
    });
  });
});

describe("a reload of a huge or hostile config does not stall the daemon", () => {
  /** Runs `work`; returns its result and the longest gap between 10 ms ticks meanwhile, ms. */
  async function withLoopLag<T>(work: () => Promise<T>): Promise<{ value: T; lagMs: number }> {
    let last = performance.now();
    let lagMs = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      lagMs = Math.max(lagMs, now - last);
      last = now;
    }, 10);
    try {
      const value = await work();
      await new Promise((resolve) => setTimeout(resolve, 20));
      return { value, lagMs };
    } finally {
      clearInterval(timer);
    }
  }

  test("a 10 MB invalid config is refused by its size at once, the event loop keeps running", async (t) => {
    const file = await configFile(
      t,
      `lan: [lan0\n${"  - [ {a: b, c: [d, {e: f}]}, 'x' \n".repeat(300_000)}`,
    );
    const { value: error, lagMs } = await withLoopLag(() =>
      loadConfig(file).then(
        () => undefined,
        (e: unknown) => e,
      ),
    );
    assert.ok(error instanceof ConfigError);
    assert.match(
      error.issues.map(formatConfigIssue).join(" | "),
      /uplinkd\.yaml:1:1: the config is 1\d{7} bytes; at most 1048576 are read \(1 MiB\)$/,
    );
    assert.ok(lagMs < 200, `the event loop stalled ${Math.round(lagMs)} ms`);
  });

  test("the daemon parses in a worker thread: a slow 1 MiB file gives loadConfig's issues, and the caller's event loop keeps turning", async (t) => {
    const keys = Array.from({ length: 60_000 }, (_, i) => `  k${i}: v`);
    keys.push("  k17: again");
    const file = await configFile(t, lines(...TWO_UPLINKS, "extra:", ...keys));
    const inThread = await loadConfig(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(inThread instanceof ConfigError);
    const started = performance.now();
    const { value: error, lagMs } = await withLoopLag(() =>
      loadConfigOffThread(file).then(
        () => undefined,
        (e: unknown) => e,
      ),
    );
    const tookMs = performance.now() - started;
    assert.ok(error instanceof ConfigError, String(error));
    assert.deepEqual(error.issues, inThread.issues);
    // Parsing it on the caller's thread would stall the loop for most of the time taken.
    assert.ok(
      lagMs < tookMs / 2,
      `the event loop stalled ${Math.round(lagMs)} ms of ${Math.round(tookMs)} ms`,
    );
  });

  test("the worker's config equals loadConfig's; a worker out of time or heap is stopped and the file refused", async (t) => {
    const file = await configFile(t, lines(...TWO_UPLINKS));
    assert.deepEqual(await loadConfigOffThread(file), await loadConfig(file));
    const refusal = (options: { timeoutMs?: number; maxHeapMb?: number }) =>
      loadConfigOffThread(file, options).then(
        () => "loaded",
        (e: unknown) =>
          e instanceof ConfigError ? e.issues.map(formatConfigIssue).join(" | ") : String(e),
      );
    assert.match(
      await refusal({ timeoutMs: 1 }),
      /uplinkd\.yaml:1:1: reading the config took longer than 0\.001 s; it was stopped$/,
    );
    assert.match(
      await refusal({ maxHeapMb: 2 }),
      /uplinkd\.yaml:1:1: reading the config needed more than 2 MB; it was stopped$/,
    );
  });

  test("a key given twice among 60,000 is found in linear time, at its second occurrence", () => {
    // The YAML parser's own check compared every key with every earlier one: minutes at 1 MiB.
    const keys = Array.from({ length: 60_000 }, (_, i) => `  k${i}: v`);
    keys.push("  k17: again");
    const text = lines(...TWO_UPLINKS, "extra:", ...keys);
    const started = performance.now();
    const found = problems(text);
    const ms = performance.now() - started;
    assert.deepEqual(found, [
      `uplinkd.yaml:${TWO_UPLINKS.length + 2 + 60_000}:3: Map keys must be unique`,
    ]);
    assert.ok(ms < 10_000, `took ${Math.round(ms)} ms`);
  });

  test("keys given twice in nested and flow mappings are each reported", () => {
    assert.deepEqual(
      problems(
        lines(
          ...TWO_UPLINKS,
          "health: { interval: 1s, interval: 2s }",
          "control:",
          "  socket: /run/a.sock",
          "  socket: /run/b.sock",
        ),
      ),
      [
        `uplinkd.yaml:${TWO_UPLINKS.length + 1}:25: Map keys must be unique`,
        `uplinkd.yaml:${TWO_UPLINKS.length + 4}:3: Map keys must be unique`,
      ],
    );
  });
});

describe("a config holding secrets", () => {
  test("check warns at 1:1 when group or others may read it, not when it is 0600", async () => {
    const { loadConfigWithWarnings } = await import("../../src/config/load.js");
    const { chmod } = await import("node:fs/promises");
    const dir = await mkdtemp(join(tmpdir(), "uplinkd-secret-"));
    try {
      const file = join(dir, "uplinkd.yaml");
      await writeFile(
        file,
        lines(
          "private_targets: true",
          ...TWO_UPLINKS.slice(0),
          "health:",
          "  targets: [198.51.100.1, 2001:db8:ffff::1]",
          "control:",
          "  tokens: [{ token: 0123456789abcdef0123, access: read }]",
        ),
      );
      await chmod(file, 0o644);
      const open = await loadConfigWithWarnings(file);
      assert.deepEqual(open.warnings.map(formatConfigIssue), [
        `${file}:1:1: holds secrets (control.tokens) and is readable by everyone (mode 0644): chmod 600 it, or keep the SMTP password in notify.email.password_file`,
      ]);
      await chmod(file, 0o600);
      assert.deepEqual((await loadConfigWithWarnings(file)).warnings, []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a hook variable marked secret counts; one not marked does not", async () => {
    const { loadConfigWithWarnings } = await import("../../src/config/load.js");
    const { chmod } = await import("node:fs/promises");
    const dir = await mkdtemp(join(tmpdir(), "uplinkd-secret-"));
    try {
      const file = join(dir, "uplinkd.yaml");
      const config = (secret: boolean) =>
        lines(
          "private_targets: true",
          ...TWO_UPLINKS,
          "health:",
          "  targets: [198.51.100.1, 2001:db8:ffff::1]",
          "notify:",
          "  hooks:",
          "    - command: [/usr/local/bin/page]",
          `      env: { SITE: north, KEY: { value: k-123, secret: ${secret} } }`,
        );
      await writeFile(file, config(true));
      await chmod(file, 0o640);
      assert.deepEqual((await loadConfigWithWarnings(file)).warnings.map(formatConfigIssue), [
        `${file}:1:1: holds secrets (notify.hooks[].env) and is readable by its group (mode 0640): chmod 600 it, or keep the SMTP password in notify.email.password_file`,
      ]);
      await writeFile(file, config(false));
      const plain = await loadConfigWithWarnings(file);
      assert.deepEqual(plain.warnings, []);
      assert.deepEqual(plain.config.notify?.hooks[0]?.env, {
        SITE: { value: "north", secret: false },
        KEY: { value: "k-123", secret: false },
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a hook variable named like one of the notification's is refused at its key", () => {
    assert.deepEqual(
      problems(
        lines(
          ...TWO_UPLINKS,
          "notify:",
          "  hooks:",
          "    - command: [/bin/true]",
          "      env: { REASON: x }",
        ),
      ),
      [
        `uplinkd.yaml:${TWO_UPLINKS.length + 4}:14: notify.hooks.0.env.REASON: is set by the notification itself; choose another name`,
      ],
    );
  });
});

/**
 * Every renderer fed hostile strings, as a config that bypassed the schema
 * would hold them (the schema refuses them first: see config.test.ts): each
 * refuses them (UnsafeTextError) or writes them where they cannot change the
 * meaning of the text around them. The exploits are the ones of issue 27:
 * a rule name that closes the nft string, an interface with `#` that cuts
 * an `ip -batch` line, paths that break out of shell quotes or add lines to
 * keepalived.conf and conntrackd.conf.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import fc from "fast-check";
import { parseConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";
import { diffIp, ipCommands } from "../../src/dataplane/diff.js";
import { renderDesired } from "../../src/dataplane/render.js";
import { buildViews } from "../../src/dataplane/views.js";
import { renderNftsetFile, renderServersFile } from "../../src/dns/render.js";
import { UnsafeTextError } from "../../src/errors.js";
import { renderConntrackd, renderKeepalived, renderNotifyScript } from "../../src/ha/render.js";
import type { UplinkLink } from "../../src/links/observe.js";
import { cleanText, confWord, ipWord, nftString } from "../../src/text.js";

const BASE = `lan: [lan0]
uplinks:
  - name: isp1
    interface: wan1
    gateway: 100.64.1.1
    dns: [100.64.1.53]
  - name: isp2
    interface: wan2
    gateway: none
rules:
  - name: web
    dst_port: 443
    proto: tcp
    dst_domain: [example.com]
    policy: default
dns:
  dnsmasq: { nftset_file: /etc/dnsmasq.d/uplinkd.conf, servers_file: /run/uplinkd/servers }
ha:
  node: a
  priority: 10
  peer: { name: b, address: 100.64.250.2 }
  sync: { interface: sync0, address: 100.64.250.1 }
  virtual_addresses: { lan0: [100.64.100.1/24] }
`;

/** `value`, asserted present. */
function at<T>(value: T | undefined): T {
  assert.ok(value !== undefined);
  return value;
}

/** A fresh valid config; tests then put hostile values where the schema would refuse them. */
const base = (): Config => parseConfig(BASE, "uplinkd.yaml");

const link = (address: string, gateway?: string): UplinkLink => ({
  present: true,
  up: true,
  carrier: true,
  pointToPoint: gateway === undefined,
  address,
  network: address.replace(/\.\d+$/, ".0/24"),
  ...(gateway === undefined ? {} : { gateway }),
});

function views(config: Config) {
  const links = new Map<string, UplinkLink>([
    ["isp1", link("100.64.1.2", "100.64.1.1")],
    ["isp2", link("100.64.2.2")],
  ]);
  return buildViews(config, links, () => "up");
}

const nftOf = (config: Config): string => renderDesired(config, views(config)).nftScript;
const ipOf = (config: Config): string[] => {
  const desired = renderDesired(config, views(config));
  return ipCommands(diffIp(desired, { routes: [], rules: [] }, config.dataplane.route_protocol));
};

const RULE_EXPLOIT = 'web";ip daddr 198.51.100.1 counter drop;#';

describe("hostile names and paths never reach a generated file unescaped", () => {
  it("nft: a rule name that would close the comment string is refused", () => {
    const config = base();
    config.rules[0] = { ...at(config.rules[0]), name: RULE_EXPLOIT };
    assert.throws(() => nftOf(config), UnsafeTextError);
    assert.throws(() => nftString('a"b'), UnsafeTextError);
    assert.throws(() => nftString("a\\b"), UnsafeTextError);
    assert.throws(() => nftString("a\nb"), UnsafeTextError);
    assert.throws(() => nftString("a\u202eb"), UnsafeTextError);
    assert.equal(nftString("guest web"), '"guest web"');
  });

  it("nft: interface names with quotes or NUL are refused", () => {
    for (const name of ['wan"1', "wan\0", "wan\\1"]) {
      const config = base();
      config.uplinks[0] = { ...at(config.uplinks[0]), interface: name };
      assert.throws(() => nftOf(config), UnsafeTextError, name);
    }
  });

  it("ip -batch: an interface `u#1` with gateway none is refused, not cut into `dev u`", () => {
    const config = base();
    config.uplinks[1] = { ...at(config.uplinks[1]), interface: "u#1" };
    assert.throws(() => ipOf(config), UnsafeTextError);
    const safe = ipOf(base());
    assert.ok(
      safe.some((line) => / dev wan2 /.test(line)),
      "the safe config routes via dev wan2",
    );
    for (const word of ["u#1", "a b", 'a"', "a'", "a\\", "a\nb", ""]) {
      assert.throws(() => ipWord(word), UnsafeTextError, JSON.stringify(word));
    }
  });

  it("keepalived.conf: a newline in track_file or a blank in an interface is refused", () => {
    const config = base();
    config.ha = {
      ...at(config.ha),
      track_file: '/run/score"\n}\nvrrp_script x {\n\tscript "/bin/id',
    };
    assert.throws(() => renderKeepalived(config, "uplinkd.yaml"), UnsafeTextError);
    const blank = base();
    blank.ha = { ...at(blank.ha), virtual_addresses: { "lan0 x": ["100.64.100.1/24"] } };
    assert.throws(() => renderKeepalived(blank, "uplinkd.yaml"), UnsafeTextError);
    const notify = base();
    notify.ha = { ...at(notify.ha), state_file: "/run/uplinkd/ha-role'; touch /tmp/x; '" };
    assert.throws(() => renderKeepalived(notify, "uplinkd.yaml"), UnsafeTextError);
  });

  it("conntrackd.conf: a newline in conntrackd.socket is refused", () => {
    const config = base();
    config.ha = {
      ...at(config.ha),
      conntrackd: { ...at(config.ha).conntrackd, socket: "/run/ct.ctl\n\tNetlinkBufferSize 1" },
    };
    assert.throws(() => renderConntrackd(config, "uplinkd.yaml"), UnsafeTextError);
    assert.throws(() => confWord("a#b", "conntrackd.conf"), UnsafeTextError);
    assert.throws(() => confWord("a}", "conntrackd.conf"), UnsafeTextError);
  });

  it("the notify script holds no path: a hostile path given as an argument stays data", async () => {
    const config = base();
    config.ha = {
      ...at(config.ha),
      state_file: "/run/uplinkd/ha-role'; touch /tmp/x; '",
      conntrackd: { ...at(config.ha).conntrackd, lock_file: "/var/lock/$(id>/tmp/y)" },
    };
    const script = renderNotifyScript(config, "uplinkd.yaml\nrm -rf /");
    assert.doesNotMatch(script, /touch|\$\(id|^rm -rf/m);
    // Run it: the state file is written at the literal hostile path, nothing else happens.
    const dir = await mkdtemp(join(tmpdir(), "uplinkd-notify-"));
    try {
      await writeFile(join(dir, "notify.sh"), script, { mode: 0o755 });
      const state = join(dir, `ha-role'; touch ${dir}/pwned; '`);
      const lock = join(dir, `$(touch ${dir}/pwned2)`);
      await promisify(execFile)("sh", [
        join(dir, "notify.sh"),
        join(dir, "conntrackd.conf"),
        lock,
        state,
        join(dir, "radvd.conf"),
        join(dir, "radvd.pid"),
        "GROUP",
        "uplinkd",
        "STOP",
        "30",
      ]);
      assert.match(await readFile(state, "utf8"), /^stopped \d+ 30 \d+\n$/);
      assert.deepEqual(
        (await readdir(dir)).filter((f) => f.startsWith("pwned")),
        [],
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("dnsmasq fragments: a domain or server that would add an option is refused", () => {
    const config = base();
    config.rules[0] = {
      ...at(config.rules[0]),
      dst_domain: ["example.com/4#inet#x#y\nserver=1.2.3.4"],
    };
    assert.throws(() => renderNftsetFile(config), UnsafeTextError);
    const servers = base();
    servers.uplinks[0] = { ...at(servers.uplinks[0]), dns: ["100.64.1.53\nserver=/x/1.2.3.4"] };
    assert.throws(() => renderServersFile(servers, views(servers)), UnsafeTextError);
    assert.match(
      renderNftsetFile(base()),
      /^nftset=\/example\.com\/4#inet#uplinkd#dom_0_4,6#inet#uplinkd#dom_0_6$/m,
    );
  });

  it("text from outside loses its control characters and ANSI escapes", () => {
    assert.equal(cleanText("down\r\nX-Injected: 1"), "down  X-Injected: 1");
    assert.equal(cleanText("\x1b[2J\x1b[31mred\x1b[0m \x1b]0;title\x07ok"), "red ok");
    assert.equal(cleanText("isp\u202e1\0"), "isp 1 ");
    assert.equal(cleanText("Büro – 100 % ok"), "Büro – 100 % ok");
  });
});

/**
 * The shape of a text: per line, how many words, statement separators,
 * comment starts and braces it has outside double quotes. A value that
 * stays data changes none of these.
 */
function shape(text: string, separators: RegExp): string[] {
  return text.split("\n").map((line) => {
    let outside = "";
    let quoted = false;
    for (const char of line) {
      if (char === '"') quoted = !quoted;
      else if (!quoted) outside += char;
      else outside += "x";
    }
    const words = outside.split(/[ \t]+/).filter((w) => w !== "").length;
    const marks = (outside.match(separators) ?? []).length;
    return `${words}/${marks}`;
  });
}

/** Strings rich in the characters that mean something to nft, ip, keepalived and shells. */
const hostile = fc.oneof(
  fc.string({ unit: "binary", minLength: 1, maxLength: 24 }),
  fc.string({
    unit: fc.constantFrom(
      '"',
      "'",
      "\\",
      ";",
      "#",
      "!",
      "\n",
      "\r",
      " ",
      "\t",
      "{",
      "}",
      "$",
      "`",
      "\0",
      "\u202e",
      "a",
      "1",
      "/",
      ".",
    ),
    minLength: 1,
    maxLength: 24,
  }),
);

/** The render, or undefined when it refused with UnsafeTextError (anything else fails the test). */
function rendered<T>(render: () => T): T | undefined {
  try {
    return render();
  } catch (error) {
    if (error instanceof UnsafeTextError) return undefined;
    throw error;
  }
}

describe("property: hostile input never adds statements", () => {
  const NFT_MARKS = /[;#{}]/g;
  const CONF_MARKS = /[#!{}]/g;

  it("nft text from a rule name or an interface has the shape of the safe input's", () => {
    const safe = shape(nftOf(base()), NFT_MARKS);
    fc.assert(
      fc.property(hostile, fc.constantFrom("rule", "interface", "lan"), (value, field) => {
        const config = base();
        if (field === "rule") config.rules[0] = { ...at(config.rules[0]), name: value };
        else if (field === "interface")
          config.uplinks[0] = { ...at(config.uplinks[0]), interface: value };
        else config.lan = [value];
        const text = rendered(() => nftOf(config));
        if (text !== undefined) assert.deepEqual(shape(text, NFT_MARKS), safe);
      }),
      { numRuns: 300 },
    );
  });

  it("ip -batch lines from an interface (gateway none) have the safe input's words", () => {
    const safe = ipOf(base()).map((line) => shape(line, /[#"'\\]/g).join("|"));
    fc.assert(
      fc.property(hostile, (value) => {
        const config = base();
        config.uplinks[1] = { ...at(config.uplinks[1]), interface: value };
        const lines = rendered(() => ipOf(config));
        if (lines !== undefined) {
          assert.deepEqual(
            lines.map((line) => shape(line, /[#"'\\]/g).join("|")),
            safe,
          );
        }
      }),
      { numRuns: 300 },
    );
  });

  it("keepalived.conf and conntrackd.conf from paths and interfaces have the safe input's shape", () => {
    const safeKeepalived = shape(renderKeepalived(base(), "uplinkd.yaml"), CONF_MARKS);
    const safeConntrackd = shape(renderConntrackd(base(), "uplinkd.yaml"), CONF_MARKS);
    fc.assert(
      fc.property(
        hostile,
        fc.constantFrom("track_file", "state_file", "notify_script", "socket", "lock_file", "sync"),
        (value, field) => {
          const config = base();
          const ha = at(config.ha);
          if (field === "socket" || field === "lock_file") {
            config.ha = { ...ha, conntrackd: { ...ha.conntrackd, [field]: `/${value}` } };
          } else if (field === "sync") {
            config.ha = { ...ha, sync: { ...ha.sync, interface: value } };
          } else {
            config.ha = { ...ha, [field]: `/${value}` };
          }
          const keepalived = rendered(() => renderKeepalived(config, "uplinkd.yaml"));
          if (keepalived !== undefined)
            assert.deepEqual(shape(keepalived, CONF_MARKS), safeKeepalived);
          const conntrackd = rendered(() => renderConntrackd(config, "uplinkd.yaml"));
          if (conntrackd !== undefined)
            assert.deepEqual(shape(conntrackd, CONF_MARKS), safeConntrackd);
        },
      ),
      { numRuns: 300 },
    );
  });
});

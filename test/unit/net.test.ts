import assert from "node:assert/strict";
import { isIPv4, isIPv6 } from "node:net";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  disjointPrefixes4,
  formatPrefix,
  hasHostBits4,
  parsePrefix,
  prefixRange,
} from "../../src/net/ipv4.js";
import {
  canonicalAddress6,
  disjointPrefixes6,
  formatAddress6,
  inPrefix,
  inPrefix6,
  isLinkLocal6,
  maskOf,
  parseAddress6,
  prefixRange6,
} from "../../src/net/ipv6.js";
import { parseProcNetDev } from "../../src/net/dev.js";

const MAX128 = (1n << 128n) - 1n;
const value128 = fc.bigInt({ min: 0n, max: MAX128 });

describe("net/ipv6", () => {
  it("formats RFC 5952 text as inet_ntop does", () => {
    assert.equal(canonicalAddress6("2001:DB8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
    assert.equal(canonicalAddress6("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
    assert.equal(canonicalAddress6("0:0:0:0:0:0:0:0"), "::");
    assert.equal(canonicalAddress6("::ffff:192.0.2.1"), "::ffff:c000:201");
    assert.equal(canonicalAddress6("not an address"), "not an address");
  });

  it("keeps the IPv4-compatible form ::a.b.c.d apart from IPv4-mapped", () => {
    assert.equal(parseAddress6("::192.0.2.1"), 0xc0000201n);
    assert.equal(parseAddress6("::ffff:192.0.2.1"), 0xffffc0000201n);
  });

  it("rejects zones and IPv4", () => {
    assert.equal(parseAddress6("fe80::1%wan1"), undefined);
    assert.equal(parseAddress6("192.0.2.1"), undefined);
  });

  it("formats then parses back to the same value, in text Node accepts", () => {
    fc.assert(
      fc.property(value128, (value) => {
        const text = formatAddress6(value);
        assert.ok(isIPv6(text), text);
        assert.equal(text, text.toLowerCase());
        assert.equal(parseAddress6(text), value);
      }),
    );
  });

  it("gives every spelling of an address one canonical text", () => {
    fc.assert(
      fc.property(fc.ipV6(), (text) => {
        const once = canonicalAddress6(text);
        assert.equal(canonicalAddress6(once), once);
        assert.equal(parseAddress6(once), parseAddress6(text));
      }),
    );
  });

  it("puts an address inside exactly the prefixes whose range holds it", () => {
    fc.assert(
      fc.property(value128, fc.integer({ min: 0, max: 128 }), value128, (net, bits, other) => {
        const prefix = `${formatAddress6(net)}/${bits}`;
        const range = prefixRange6(prefix);
        assert.ok(range !== undefined);
        assert.ok(inPrefix6(formatAddress6(net), prefix));
        const inside = other >= range[0] && other <= range[1];
        assert.equal(inPrefix6(formatAddress6(other), prefix), inside);
      }),
    );
  });

  it("inPrefix: either family, never across families or with text that does not parse", () => {
    assert.equal(inPrefix("198.51.100.7", "198.51.100.0/24"), true);
    assert.equal(inPrefix("198.51.101.7", "198.51.100.0/24"), false);
    assert.equal(inPrefix("2001:db8::1", "2001:db8::/32"), true);
    assert.equal(inPrefix("2001:db9::1", "2001:db8::/32"), false);
    assert.equal(inPrefix("::ffff:198.51.100.7", "198.51.100.0/24"), false);
    assert.equal(inPrefix("198.51.100.7", "::/0"), false);
    assert.equal(inPrefix("not-an-address", "0.0.0.0/0"), false);
    assert.equal(inPrefix("198.51.100.7", "198.51.100.0/33"), false);
    // RFC 4291's IPv4-compatible form is not IPv4-mapped.
    assert.equal(inPrefix("::0.0.0.0", "::/81"), true);
    assert.equal(inPrefix("::198.51.100.7", "::ffff:0:0/96"), false);
    fc.assert(
      // Inside its own network of any length; outside the network that differs in its last bit.
      fc.property(fc.ipV6(), fc.integer({ min: 0, max: 128 }), (address, bits) => {
        const network = (parseAddress6(address) ?? 0n) & maskOf(bits);
        if (!inPrefix(address, `${formatAddress6(network)}/${bits}`)) return false;
        if (bits === 0) return true;
        const other = network ^ (1n << BigInt(128 - bits));
        return !inPrefix(address, `${formatAddress6(other)}/${bits}`);
      }),
    );
  });

  it("knows link-local addresses, with or without a zone", () => {
    assert.equal(isLinkLocal6("fe80::1"), true);
    assert.equal(isLinkLocal6("FEBF::1"), true);
    assert.equal(isLinkLocal6("fe80::1%wan1"), true);
    assert.equal(isLinkLocal6("fec0::1"), false);
    assert.equal(isLinkLocal6("2001:db8::1"), false);
  });

  it("drops prefixes inside a wider one", () => {
    assert.deepEqual(
      disjointPrefixes6(["2001:db8:1::/48", "2001:db8::/32", "fd00::/8", "2001:DB8::/32"]),
      ["2001:db8::/32", "fd00::/8"],
    );
  });
});

describe("net/ipv4", () => {
  it("parses addresses and prefixes, clearing host bits", () => {
    assert.deepEqual(parsePrefix("192.0.2.1"), [0xc0000201, 32]);
    assert.deepEqual(parsePrefix("192.0.2.77/24"), [0xc0000200, 24]);
    assert.deepEqual(parsePrefix("0.0.0.0/0"), [0, 0]);
    assert.equal(parsePrefix("192.0.2.1/33"), undefined);
    assert.equal(parsePrefix("192.0.2.1/"), undefined);
    assert.equal(parsePrefix("192.0.2.1/ 8"), undefined);
    assert.equal(parsePrefix("2001:db8::/32"), undefined);
    assert.equal(hasHostBits4("192.0.2.1/24"), true);
    assert.equal(hasHostBits4("192.0.2.0/24"), false);
  });

  it("formats what it parses, and the range spans 2^(32-n) addresses", () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (address, bits) => {
        const parsed = parsePrefix(`${address}/${bits}`);
        assert.ok(parsed !== undefined);
        const text = formatPrefix(parsed);
        const [network = ""] = text.split("/");
        assert.ok(isIPv4(network), text);
        assert.deepEqual(parsePrefix(text), parsed);
        const range = prefixRange(text);
        assert.ok(range !== undefined);
        assert.equal(range[1] - range[0] + 1, 2 ** (32 - bits));
        assert.equal(hasHostBits4(text), false);
      }),
    );
  });

  it("keeps disjoint prefixes only, sorted, each once", () => {
    assert.deepEqual(
      disjointPrefixes4(["10.1.0.0/16", "10.0.0.0/8", "192.0.2.7", "192.0.2.0/24", "bad"]),
      ["10.0.0.0/8", "192.0.2.0/24"],
    );
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([a, n]) => `${a}/${n}`),
          { maxLength: 10 },
        ),
        (prefixes) => {
          const kept = disjointPrefixes4(prefixes);
          const ranges = kept.map((p) => prefixRange(p) ?? [0, -1]);
          for (let i = 1; i < ranges.length; i++) {
            assert.ok((ranges[i - 1]?.[1] ?? 0) < (ranges[i]?.[0] ?? 0), kept.join(" "));
          }
          // Every input address is still covered by a kept prefix.
          for (const p of prefixes) {
            const [start = 0] = prefixRange(p) ?? [];
            assert.ok(
              ranges.some(([a = 0, b = 0]) => a <= start && start <= b),
              p,
            );
          }
        },
      ),
    );
  });
});

describe("net/dev", () => {
  it("reads received and transmitted bytes per interface", () => {
    const text = [
      "Inter-|   Receive                                                |  Transmit",
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed",
      "    lo:    1200      10    0    0    0     0          0         0     1200      10    0    0    0     0       0          0",
      "  wan1: 5000000    4000    0    0    0     0          0         0   700000    3000    0    0    0     0       0          0",
    ].join("\n");
    assert.deepEqual(
      [...parseProcNetDev(text)],
      [
        ["lo", { rx: 1200, tx: 1200 }],
        ["wan1", { rx: 5000000, tx: 700000 }],
      ],
    );
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KernelOutputError } from "../../src/errors.js";
import { READ_ROUTES, READ_RULES, parseRoutes, parseRules } from "../../src/kernel/linux.js";

// Captured from iproute2 6.1 in a lab namespace whose
// /etc/netns/NS/iproute2/rt_tables named 101 dsl_internet and 7 guests, and
// whose rt_protos named 73 uplinkd: with -N none of the names show.
const ROUTES_NUMERIC = JSON.stringify([
  {
    dst: "192.0.2.0/24",
    gateway: "100.64.9.1",
    dev: "v0",
    table: "7",
    protocol: "4",
    flags: [],
  },
  {
    dst: "default",
    gateway: "100.64.9.1",
    dev: "v0",
    table: "101",
    protocol: "73",
    flags: [],
    metrics: [{ initcwnd: 10 }],
  },
  { type: "7", dst: "default", table: "101", protocol: "73", metric: 4294967295, flags: [] },
  { type: "6", dst: "198.51.100.0/24", table: "101", protocol: "73", flags: [] },
  {
    dst: "default",
    gateway: "100.64.9.1",
    dev: "v0",
    prefsrc: "100.64.9.2",
    metric: 4096,
    flags: [],
  },
  {
    dst: "100.64.9.0/24",
    dev: "v0",
    protocol: "2",
    scope: "253",
    prefsrc: "100.64.9.2",
    flags: [],
  },
  {
    type: "2",
    dst: "100.64.9.2",
    dev: "v0",
    table: "255",
    protocol: "2",
    scope: "254",
    prefsrc: "100.64.9.2",
    flags: [],
  },
  {
    type: "3",
    dst: "100.64.9.255",
    dev: "v0",
    table: "255",
    protocol: "2",
    scope: "253",
    prefsrc: "100.64.9.2",
    flags: [],
  },
]);

const RULES_NUMERIC = JSON.stringify([
  { priority: 0, src: "all", table: "255" },
  { priority: 1000, src: "all", table: "254", suppress_prefixlen: 0, protocol: "73" },
  { priority: 1001, src: "all", fwmark: "0x100", fwmask: "0xff00", table: "101", protocol: "73" },
  { priority: 1255, src: "all", fwmark: "0xff00", fwmask: "0xff00", action: "7", protocol: "73" },
  { priority: 1256, src: "all", action: "6", protocol: "73" },
  { priority: 1301, src: "100.64.9.2", table: "101", protocol: "73" },
  { priority: 1400, src: "100.64.9.0", srclen: 24, table: "7" },
  { priority: 1500, src: "100.64.9.0", srclen: 24, action: "8" },
  { priority: 1600, src: "all", fwmark: "0x5", table: "7" },
  { priority: 32766, src: "all", table: "254" },
  { priority: 32767, src: "all", table: "253" },
]);

describe("reading the kernel numerically", () => {
  it("reads routes and rules with ip -N", () => {
    assert.equal(READ_ROUTES[0], "-N");
    assert.equal(READ_RULES[0], "-N");
  });

  it("parses numeric route tables, protocols and types", () => {
    assert.deepEqual(parseRoutes(ROUTES_NUMERIC), [
      {
        table: 7,
        type: "unicast",
        dst: "192.0.2.0/24",
        gateway: "100.64.9.1",
        dev: "v0",
        metric: 0,
        protocol: 4,
        options: {},
      },
      {
        table: 101,
        type: "unicast",
        dst: "default",
        gateway: "100.64.9.1",
        dev: "v0",
        metric: 0,
        protocol: 73,
        options: { initcwnd: 10 },
      },
      {
        table: 101,
        type: "unreachable",
        dst: "default",
        metric: 4294967295,
        protocol: 73,
        options: {},
      },
      {
        table: 101,
        type: "blackhole",
        dst: "198.51.100.0/24",
        metric: 0,
        protocol: 73,
        options: {},
      },
      {
        // Main table and protocol boot: iproute2 prints neither.
        table: 254,
        type: "unicast",
        dst: "default",
        gateway: "100.64.9.1",
        dev: "v0",
        src: "100.64.9.2",
        metric: 4096,
        protocol: 3,
        options: {},
      },
      {
        table: 254,
        type: "unicast",
        dst: "100.64.9.0/24",
        dev: "v0",
        src: "100.64.9.2",
        metric: 0,
        protocol: 2,
        options: {},
      },
      {
        table: 255,
        type: "local",
        dst: "100.64.9.2",
        dev: "v0",
        src: "100.64.9.2",
        metric: 0,
        protocol: 2,
        options: {},
      },
      {
        table: 255,
        type: "broadcast",
        dst: "100.64.9.255",
        dev: "v0",
        src: "100.64.9.2",
        metric: 0,
        protocol: 2,
        options: {},
      },
    ]);
  });

  it("parses numeric rule tables, protocols and actions", () => {
    assert.deepEqual(parseRules(RULES_NUMERIC), [
      { priority: 0, protocol: 0, table: 255 },
      { priority: 1000, protocol: 73, table: 254, suppressPrefixlength: 0 },
      { priority: 1001, protocol: 73, table: 101, fwmark: 0x100, fwmask: 0xff00 },
      { priority: 1255, protocol: 73, action: "unreachable", fwmark: 0xff00, fwmask: 0xff00 },
      { priority: 1256, protocol: 73, action: "blackhole" },
      { priority: 1301, protocol: 73, table: 101, from: "100.64.9.2" },
      { priority: 1400, protocol: 0, table: 7, from: "100.64.9.0/24" },
      { priority: 1500, protocol: 0, action: "prohibit", from: "100.64.9.0/24" },
      { priority: 1600, protocol: 0, table: 7, fwmark: 5, fwmask: 0xffffffff },
      { priority: 32766, protocol: 0, table: 254 },
      { priority: 32767, protocol: 0, table: 253 },
    ]);
  });

  it("refuses a table name instead of reading it as NaN", () => {
    // What `ip -j` (without -N) prints when rt_tables names table 101.
    const named = JSON.stringify([
      { priority: 1001, src: "all", fwmark: "0x100", fwmask: "0xff00", table: "dsl_internet" },
    ]);
    assert.throws(
      () => parseRules(named),
      (error: unknown) =>
        error instanceof KernelOutputError &&
        error.code === "UPLINKD_ERR_KERNEL_OUTPUT" &&
        /ip -N -4 -j rule show/.test(error.message) &&
        /"dsl_internet" as table/.test(error.message),
    );
  });

  it("refuses protocol and type names", () => {
    const named = JSON.stringify([
      { type: "unreachable", dst: "default", table: "101", protocol: "73", flags: [] },
    ]);
    assert.throws(() => parseRoutes(named), KernelOutputError);
    const proto = JSON.stringify([{ dst: "default", table: "101", protocol: "uplinkd" }]);
    assert.throws(() => parseRoutes(proto), /"uplinkd" as protocol/);
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LabError } from "../../src/lab/errors.js";
import { conntrackFillLines } from "../../src/lab/conntrack.js";

/** The tuple (source, source port) of a fill line. */
function tuple(line: string): string {
  const src = /-s (\S+)/.exec(line)?.[1];
  const sport = /--sport (\d+)/.exec(line)?.[1];
  return `${src}:${sport}`;
}

describe("conntrack fill lines", () => {
  test("one conntrack -I line per entry, with the group's mark", () => {
    const lines = conntrackFillLines([
      { mark: 256, count: 2 },
      { mark: 512, count: 1 },
    ]);
    assert.deepEqual(lines, [
      "-I -p tcp -s 100.96.0.1 -d 198.51.100.200 --sport 1024 --dport 80 --state ESTABLISHED -t 3600 -m 256",
      "-I -p tcp -s 100.96.0.1 -d 198.51.100.200 --sport 1025 --dport 80 --state ESTABLISHED -t 3600 -m 256",
      "-I -p tcp -s 100.96.0.1 -d 198.51.100.200 --sport 1026 --dport 80 --state ESTABLISHED -t 3600 -m 512",
    ]);
  });

  test("every tuple is unique, across source addresses and across batches with their own offsets", () => {
    const first = conntrackFillLines([{ mark: 1, count: 130_000 }]);
    const second = conntrackFillLines([{ mark: 2, count: 130_000 }], { offset: 130_000 });
    const all = new Set([...first, ...second].map(tuple));
    assert.equal(all.size, 260_000);
    assert.equal(tuple(first[60_000] ?? ""), "100.96.0.2:1024");
    assert.match(second.at(-1) ?? "", /-s 100\.96\.0\.5 /);
  });

  test("a negative count or an out-of-range mark is refused", () => {
    assert.throws(() => conntrackFillLines([{ mark: 1, count: -1 }]), LabError);
    assert.throws(() => conntrackFillLines([{ mark: 2 ** 32, count: 1 }]), LabError);
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LabError } from "../../src/lab/errors.js";
import { delayLineArgv, delayRuleArgs } from "../../src/lab/delay.js";
import { addFault, describeFaults, parseFault, renderFaultChain } from "../../src/lab/faults.js";

describe("lab delay faults", () => {
  test("delay=80ms and delay=60ms,jitter=20ms parse into ms; bare numbers are ms", () => {
    assert.deepEqual(parseFault("delay=80ms"), { kind: "delay", delayMs: 80, jitterMs: 0 });
    assert.deepEqual(parseFault("delay=60ms,jitter=20ms"), {
      kind: "delay",
      delayMs: 60,
      jitterMs: 20,
    });
    assert.deepEqual(parseFault("delay=0.1s"), { kind: "delay", delayMs: 100, jitterMs: 0 });
    assert.deepEqual(parseFault("delay=40"), { kind: "delay", delayMs: 40, jitterMs: 0 });
  });

  test("jitter larger than the delay, jitter alone, a bad duration and a delay over 10 s are refused", () => {
    assert.throws(() => parseFault("delay=10ms,jitter=20ms"), LabError);
    assert.throws(() => parseFault("jitter=20ms"), /needs a delay/);
    assert.throws(() => parseFault("delay=fast"), /invalid delay/);
    assert.throws(() => parseFault("delay=11s"), /above/);
    assert.throws(() => parseFault("delay=80ms,loss=3"), /delay=80ms\[,jitter=20ms\]/);
  });

  test("a new delay replaces the old one with its jitter; delay=0 removes both; other faults stay", () => {
    let set = addFault({ loss: 5 }, parseFault("delay=60ms,jitter=20ms"));
    assert.deepEqual(set, { loss: 5, delay: 60, jitter: 20 });
    assert.deepEqual(describeFaults(set), ["loss=5", "delay=60ms,jitter=20ms"]);
    set = addFault(set, parseFault("delay=30ms"));
    assert.deepEqual(set, { loss: 5, delay: 30 });
    set = addFault(set, parseFault("delay=0"));
    assert.deepEqual(set, { loss: 5 });
  });

  test("packets back from the delay line skip the faults chain and conntrack", () => {
    const script = renderFaultChain({ delay: 80, loss: 30 });
    const lines = script.trim().split("\n");
    const faults = lines.findIndex((l) => l === "flush chain inet lab faults");
    assert.equal(lines[faults + 1], 'add rule inet lab faults iifname "dly" return');
    assert.match(lines[faults + 2] ?? "", /numgen random mod 10000 < \d+ counter drop/);
    assert.ok(lines.includes('add rule inet lab delay_raw iifname "dly" notrack'));
  });

  test("the delay line's arguments and the rule that sends the internet's packets into it", () => {
    assert.deepEqual(delayLineArgv("/run/x/delay-line.py", 80, 20), [
      "python3",
      "/run/x/delay-line.py",
      "dly",
      "80",
      "20",
    ]);
    assert.deepEqual(delayRuleArgs("add", "core"), [
      "add",
      "iif",
      "core",
      "lookup",
      "100",
      "priority",
      "100",
    ]);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/load.js";
import { formatBytes, parseBytes } from "../../src/config/quota.js";
import type { Config, QuotaConfig } from "../../src/config/schema.js";
import { QuotaMeter, usageFileSchema, type QuotaAlert } from "../../src/quota/meter.js";
import { QuotaPart, SAVE_INTERVAL_MS } from "../../src/quota/part.js";
import { formatQuota } from "../../src/control/format.js";
import { periodAt } from "../../src/quota/period.js";
import { ManualClock } from "../fakes/clock.js";

const GiB = 1024 ** 3;

/** Local time, as the periods are: month 0-based. */
function local(y: number, m: number, d: number, h = 0): number {
  return new Date(y, m, d, h).getTime();
}

function quota(over: Partial<QuotaConfig> = {}): QuotaConfig {
  return {
    limit: 20 * GiB,
    period: "monthly",
    reset_day: 15,
    direction: "both",
    warn: [75, 95],
    when_exceeded: "standby",
    ...over,
  };
}

describe("quota config", () => {
  it("reads amounts with SI and IEC units", () => {
    assert.equal(parseBytes("500MB"), 500_000_000);
    assert.equal(parseBytes("20GiB"), 20 * GiB);
    assert.equal(parseBytes("1.5 kb"), 1500);
    assert.equal(parseBytes("1000"), 1000);
    assert.throws(() => parseBytes("20 gigs"), /not an amount of data/);
    assert.equal(formatBytes(20 * GiB), "20GiB");
    assert.equal(formatBytes(1.5 * GiB), "1.5GiB");
  });

  it("an LTE backup: 20 GiB monthly from the 15th, standby when exceeded", () => {
    const config = parseConfig(
      `
lan: [lan0]
uplinks:
  - { name: fibre, interface: wan1 }
  - name: lte
    interface: wwan0
    tier: 2
    quota: { limit: 20GiB, period: monthly, reset_day: 15, when_exceeded: standby }
`,
      "t.yaml",
    );
    const q = config.uplinks[1]?.quota;
    assert.deepEqual(q, quota());
    assert.equal(config.state_dir, "/var/lib/uplinkd");
  });

  it("a weekday for a monthly period is refused with its line", () => {
    assert.throws(
      () =>
        parseConfig(
          `lan: [lan0]\nuplinks:\n  - name: lte\n    interface: wwan0\n    quota: { limit: 1GB, reset_day: friday }\n`,
          "t.yaml",
        ),
      /t\.yaml:5:\d+: uplinks\.0\.quota\.reset_day: with period: monthly, reset_day is a day of the month/,
    );
  });
});

describe("billing periods", () => {
  it("monthly from the 15th: before the 15th the period began last month", () => {
    const p = periodAt(quota(), local(2026, 11, 7, 12));
    assert.equal(p.start, local(2026, 10, 15));
    assert.equal(p.end, local(2026, 11, 15));
    const q = periodAt(quota(), local(2026, 11, 15));
    assert.equal(q.start, local(2026, 11, 15));
    assert.equal(q.end, local(2027, 0, 15));
  });

  it("a reset day past the month's end is its last day", () => {
    const spec = quota({ reset_day: 31 });
    assert.deepEqual(periodAt(spec, local(2027, 1, 20)), {
      start: local(2027, 0, 31),
      end: local(2027, 1, 28),
    });
    assert.deepEqual(periodAt(spec, local(2028, 1, 29, 1)), {
      start: local(2028, 1, 29),
      end: local(2028, 2, 31),
    });
    assert.deepEqual(periodAt(spec, local(2026, 3, 30, 5)), {
      start: local(2026, 3, 30),
      end: local(2026, 4, 31),
    });
  });

  it("weekly from a weekday, and daily", () => {
    // 7 Dec 2026 is a Monday.
    const weekly = quota({ period: "weekly", reset_day: "friday" });
    assert.deepEqual(periodAt(weekly, local(2026, 11, 7, 9)), {
      start: local(2026, 11, 4),
      end: local(2026, 11, 11),
    });
    assert.equal(
      periodAt(quota({ period: "weekly", reset_day: undefined }), local(2026, 11, 7, 9)).start,
      local(2026, 11, 7),
    );
    assert.deepEqual(
      periodAt(quota({ period: "daily", reset_day: undefined }), local(2026, 11, 7, 23)),
      {
        start: local(2026, 11, 7),
        end: local(2026, 11, 8),
      },
    );
  });
});

describe("QuotaMeter", () => {
  const t0 = local(2026, 11, 7, 12);

  it("counts both directions from the first sample on, through a counter reset", () => {
    const m = new QuotaMeter();
    const q = quota();
    m.sample("lte", q, { rx: 5_000, tx: 1_000 }, t0);
    m.sample("lte", q, { rx: 8_000, tx: 1_500 }, t0 + 1000);
    assert.equal(m.status("lte", q, t0).used_bytes, 3_500);
    // The interface was re-created: its counters start again from zero.
    m.sample("lte", q, { rx: 100, tx: 50 }, t0 + 2000);
    assert.equal(m.status("lte", q, t0).used_bytes, 3_650);
    // Missing, then back: the new interface's counters count in full.
    m.sample("lte", q, null, t0 + 3000);
    m.sample("lte", q, { rx: 400, tx: 0 }, t0 + 4000);
    assert.equal(m.status("lte", q, t0).used_bytes, 4_050);
  });

  it("counts one direction when asked", () => {
    const m = new QuotaMeter();
    const down = quota({ direction: "down" });
    m.sample("lte", down, { rx: 0, tx: 0 }, t0);
    m.sample("lte", down, { rx: 700, tx: 300 }, t0 + 1000);
    assert.equal(m.status("lte", down, t0).used_bytes, 700);
  });

  it("survives a restart: the saved counters count what came meanwhile", () => {
    const q = quota();
    const m = new QuotaMeter();
    m.sample("lte", q, { rx: 1_000, tx: 0 }, t0);
    m.sample("lte", q, { rx: 3_000, tx: 0 }, t0 + 1000);
    const restarted = new QuotaMeter(
      usageFileSchema.parse(JSON.parse(JSON.stringify(m.snapshot()))),
    );
    restarted.sample("lte", q, { rx: 4_000, tx: 0 }, t0 + 60_000);
    assert.equal(restarted.status("lte", q, t0).used_bytes, 3_000);
    // Rebooted meanwhile: the counters are lower than saved and count from zero.
    const rebooted = new QuotaMeter(
      usageFileSchema.parse(JSON.parse(JSON.stringify(m.snapshot()))),
    );
    rebooted.sample("lte", q, { rx: 500, tx: 0 }, t0 + 60_000);
    assert.equal(rebooted.status("lte", q, t0).used_bytes, 2_500);
  });

  it("notifies each warn step and exceeded once per period, and starts again with the next", () => {
    const q = quota({ limit: 1000 });
    const m = new QuotaMeter();
    const steps = (alerts: QuotaAlert[]) => alerts.map((a) => a.step);
    m.sample("lte", q, { rx: 0, tx: 0 }, t0);
    assert.deepEqual(steps(m.sample("lte", q, { rx: 700, tx: 0 }, t0 + 1)), []);
    assert.deepEqual(steps(m.sample("lte", q, { rx: 760, tx: 0 }, t0 + 2)), [75]);
    assert.deepEqual(steps(m.sample("lte", q, { rx: 770, tx: 0 }, t0 + 3)), []);
    assert.deepEqual(steps(m.sample("lte", q, { rx: 1200, tx: 0 }, t0 + 4)), ["exceeded"]);
    assert.equal(m.exceeded("lte", q, t0 + 4), true);
    assert.deepEqual(steps(m.sample("lte", q, { rx: 1300, tx: 0 }, t0 + 5)), []);
    // The 15th: a new period.
    const next = local(2026, 11, 15, 0);
    assert.deepEqual(steps(m.sample("lte", q, { rx: 1400, tx: 0 }, next)), []);
    assert.equal(m.status("lte", q, next).used_bytes, 100);
    assert.equal(m.exceeded("lte", q, next), false);
    assert.equal(m.status("lte", q, next).period_start, new Date(next).toISOString());
  });

  it("set and reset: usage is what the provider says, steps below it count as notified", () => {
    const q = quota({ limit: 1000 });
    const m = new QuotaMeter();
    m.sample("lte", q, { rx: 0, tx: 0 }, t0);
    m.set("lte", q, 800, t0);
    assert.equal(m.status("lte", q, t0).used_bytes, 800);
    assert.deepEqual(
      m.sample("lte", q, { rx: 160, tx: 0 }, t0 + 1).map((a) => a.step),
      [95],
    );
    m.set("lte", q, 0, t0 + 2);
    assert.equal(m.status("lte", q, t0).used_bytes, 0);
    assert.equal(m.exceeded("lte", q, t0 + 2), false);
  });
});

describe("QuotaPart", () => {
  const yaml = `
lan: [lan0]
state_dir: /state
uplinks:
  - { name: fibre, interface: wan1 }
  - { name: lte, interface: wwan0, tier: 2, quota: { limit: 1000, reset_day: 15 } }
`;

  function part(files: Map<string, string>, counters: { rx: number; tx: number }) {
    const clock = new ManualClock(0, local(2026, 11, 7, 12));
    const config: Config = parseConfig(yaml, "t.yaml");
    const alerts: QuotaAlert[] = [];
    let changes = 0;
    const writes: number[] = [];
    const warnings: string[] = [];
    const log = pino({ level: "warn" }, { write: (line: string) => warnings.push(line) });
    const p = new QuotaPart({
      clock,
      log,
      config: () => config,
      readCounters: () => Promise.resolve(new Map([["wwan0", { ...counters }]])),
      onAlert: (a) => alerts.push(a),
      onExceededChange: () => changes++,
      read: (path) => Promise.resolve(files.get(path)),
      write: (path, text) => {
        files.set(path, text);
        writes.push(clock.now());
        return Promise.resolve();
      },
    });
    return { clock, p, alerts, counters, writes, warnings, changes: () => changes };
  }

  async function settle(): Promise<void> {
    for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  }

  it("a corrupt state file is logged and counting starts from the counters", async () => {
    const files = new Map([["/state/usage.json", "{not json"]]);
    const { p, warnings } = part(files, { rx: 5_000, tx: 0 });
    await p.start();
    assert.equal(p.status("lte")?.used_bytes, 0);
    assert.equal(p.status("fibre"), null);
    assert.ok(warnings.some((w) => w.includes("unreadable; counting starts again")));
    await p.stop();
  });

  it("saves at most every 10 s and at stop, and a restart goes on from the file", async () => {
    const files = new Map<string, string>();
    const a = part(files, { rx: 0, tx: 0 });
    await a.p.start();
    for (let i = 1; i <= 10; i++) {
      a.counters.rx = i * 10;
      a.clock.advance(2_000);
      await settle();
    }
    assert.ok(a.writes.length >= 2 && a.writes.length <= 3, `writes at ${a.writes.join(", ")}`);
    for (let i = 1; i < a.writes.length; i++) {
      assert.ok((a.writes[i] ?? 0) - (a.writes[i - 1] ?? 0) >= SAVE_INTERVAL_MS);
    }
    a.counters.rx = 150;
    await a.p.stop();
    assert.equal(
      usageFileSchema.parse(JSON.parse(files.get("/state/usage.json") ?? "{}")).uplinks.lte?.used,
      150,
    );
    const b = part(files, { rx: 400, tx: 0 });
    await b.p.start();
    assert.equal(b.p.status("lte")?.used_bytes, 400);
    await b.p.stop();
  });

  it("reaching the limit alerts and reports the exceeded change; set brings it back", async () => {
    const files = new Map<string, string>();
    const { p, alerts, counters, clock, changes } = part(files, { rx: 0, tx: 0 });
    await p.start();
    counters.rx = 1_100;
    clock.advance(2_000);
    await settle();
    // Straight past the warn steps: only the limit is told.
    assert.deepEqual(
      alerts.map((x) => x.step),
      ["exceeded"],
    );
    assert.deepEqual([...p.exceeded()], [["lte", "standby"]]);
    assert.equal(changes(), 1);
    await p.set("lte", 0);
    assert.deepEqual([...p.exceeded()], []);
    assert.equal(changes(), 2);
    await p.stop();
  });
});

describe("quota in the status table", () => {
  it("reads as used of the limit and the day it resets", () => {
    const status = {
      used_bytes: Math.round(0.62 * 20 * GiB),
      limit_bytes: 20 * GiB,
      period_start: new Date(local(2026, 10, 15)).toISOString(),
      period_end: new Date(local(2026, 11, 15)).toISOString(),
      exceeded: false,
    };
    assert.equal(formatQuota(status), "62% of 20GiB, resets 15 Dec");
    assert.equal(
      formatQuota({ ...status, used_bytes: 21 * GiB, exceeded: true }),
      "exceeded: 21GiB of 20GiB, resets 15 Dec",
    );
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import {
  emailSubject,
  hookEnvironment,
  summary,
  textBody,
  webhookPayload,
  type Notification,
  type NotifiedTransition,
} from "../../src/notify/message.js";
import { SerialQueue } from "../../src/queue.js";
import { backoffDelay } from "../../src/backoff.js";
import { MAX_BACKOFF_MS, retryBackoff } from "../../src/notify/retry.js";
import { notifySchema } from "../../src/config/notify.js";

const isp1Down: NotifiedTransition = {
  time: "2024-05-01T10:00:00.000Z",
  uplink: "isp1",
  family: 4,
  interface: "wan1",
  from: "up",
  to: "down",
  reason: "3 failed rounds: 198.51.100.1 and 203.0.113.1 did not answer",
  loss: 100,
  rtt: null,
};

const isp2Degraded: NotifiedTransition = {
  time: "2024-05-01T10:00:00.400Z",
  uplink: "isp2",
  family: 4,
  interface: "wan2",
  from: "up",
  to: "degraded",
  reason: "loss 12.46% above 10%",
  loss: 12.46,
  rtt: 48.04,
};

const isp1Ipv6Down: NotifiedTransition = {
  time: "2024-05-01T10:00:01.000Z",
  uplink: "isp1",
  family: 6,
  interface: "wan1",
  from: "up",
  to: "down",
  reason: "3 failed rounds: 2001:db8:ffff::1 and 2001:db8:ffff::2 did not answer",
  loss: 100,
  rtt: null,
};

function burst(transitions: NotifiedTransition[], omitted = 0): Notification {
  return {
    kind: "transitions",
    host: "router1",
    time: "2024-05-01T10:00:02.000Z",
    transitions,
    omitted,
    uplinks: [
      { name: "isp1", interface: "wan1", state: "down", loss: 100, rtt: null },
      { name: "isp2", interface: "wan2", state: "degraded", loss: 12.46, rtt: 48.04 },
    ],
  };
}

describe("the notify config", () => {
  test("an empty section is valid and configures no channel", () => {
    assert.deepEqual(notifySchema.parse({}), {
      coalesce: 2000,
      states: ["up", "degraded", "down", "disabled"],
      webhooks: [],
      hooks: [],
    });
  });

  test("the example of docs/operations.md parses, with defaults filled in and durations in ms", () => {
    const yaml = `
coalesce: 2s
email:
  host: smtp.example.net
  port: 587
  security: starttls
  username: router1
  password_file: /etc/uplinkd/smtp-password
  from: uplinkd <router1@example.net>
  to: [ops@example.net, oncall@example.net]
  subject_prefix: "[uplinkd]"
webhooks:
  - name: chat
    url: https://hooks.example.net/uplinkd/T0KEN
    headers:
      Authorization: Bearer s3cret
    timeout: 5s
    retries: 3
    backoff: 1s
hooks:
  - command: [/usr/local/bin/on-uplink-change, --quiet]
    run: transition
    timeout: 10s
`;
    const config = notifySchema.parse(parseYaml(yaml));
    assert.equal(config.coalesce, 2000);
    assert.deepEqual(config.email, {
      host: "smtp.example.net",
      port: 587,
      security: "starttls",
      username: "router1",
      password_file: "/etc/uplinkd/smtp-password",
      tls_verify: true,
      from: "uplinkd <router1@example.net>",
      to: ["ops@example.net", "oncall@example.net"],
      subject_prefix: "[uplinkd]",
      timeout: 30_000,
      retries: 2,
      backoff: 5000,
    });
    assert.deepEqual(config.webhooks[0], {
      name: "chat",
      url: "https://hooks.example.net/uplinkd/T0KEN",
      headers: { Authorization: "Bearer s3cret" },
      timeout: 5000,
      retries: 3,
      backoff: 1000,
    });
    assert.deepEqual(config.hooks[0], {
      command: ["/usr/local/bin/on-uplink-change", "--quiet"],
      run: "transition",
      timeout: 10_000,
      env: {},
    });
  });

  test("names every problem with its path", () => {
    const result = notifySchema.safeParse({
      coalesce: "20m",
      email: { host: "smtp", from: "me", to: ["nobody"], password: "p", password_file: "/f" },
      webhooks: [{ url: "ftp://example.net/x", headers: { "Bad Header": "x" } }],
      hooks: [{ command: ["on-change.sh"] }],
      sms: true,
    });
    assert.equal(result.success, false);
    const problems = result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    for (const expected of [
      "coalesce: must be at most 10m",
      "email.from: must be an email address, optionally with a name",
      "email.to.0: must be an email address such as ops@example.net",
      "email.password_file: give password or password_file, not both",
      "email.username: a password needs a username",
      "webhooks.0.url: must be an http:// or https:// URL",
      "webhooks.0.headers.Bad Header",
      "hooks.0.command: the program must be an absolute path",
      'Unrecognized key: "sms"',
    ]) {
      assert.ok(
        problems.some((p) => p.includes(expected)),
        `expected a problem like ${expected}; got:\n${problems.join("\n")}`,
      );
    }
  });

  test("has a JSON Schema for editors, durations shown as written", () => {
    const schema = z.toJSONSchema(notifySchema, {
      io: "input",
      target: "draft-2020-12",
    }) as unknown as {
      properties: { coalesce: { default: unknown }; email: { required: string[] } };
    };
    assert.equal(schema.properties.coalesce.default, "2s");
    assert.deepEqual(schema.properties.email.required.sort(), ["from", "host", "to"]);
  });
});

describe("what a notification says", () => {
  test("one transition: the subject names the uplink and its new state", () => {
    const n = burst([isp1Down]);
    assert.equal(summary(n), "isp1 IPv4 down");
    assert.equal(emailSubject(n, "[uplinkd]"), "[uplinkd] isp1 IPv4 down");
    assert.equal(emailSubject(n, ""), "isp1 IPv4 down");
  });

  test("an IPv6 transition says IPv6 in the subject and the body", () => {
    const n = burst([isp1Ipv6Down]);
    assert.equal(emailSubject(n, "[uplinkd]"), "[uplinkd] isp1 IPv6 down");
    assert.match(textBody(n), /^2024-05-01T10:00:01\.000Z {2}isp1 \(wan1\) IPv6: up → down$/m);
  });

  test("the uplinks now: an uplink with IPv6 shows both families", () => {
    const n: Notification = {
      ...burst([isp1Ipv6Down]),
      uplinks: [
        {
          name: "isp1",
          interface: "wan1",
          state: "up",
          loss: 0,
          rtt: 8.12,
          ipv6: { state: "down", loss: 100, rtt: null },
        },
        { name: "isp2", interface: "wan2", state: "up", loss: 0, rtt: 9, ipv6: null },
      ],
    };
    const body = textBody(n);
    assert.match(
      body,
      /^ {2}isp1 \(wan1\): IPv4 up, loss 0%, RTT 8\.1 ms\n {15}IPv6 down, loss 100%, RTT unknown$/m,
    );
    assert.match(body, /^ {2}isp2 \(wan2\): up, loss 0%, RTT 9 ms$/m);
    const payload = webhookPayload(n);
    assert.equal(payload.transitions[0]?.family, 6);
    assert.deepEqual(
      payload.uplinks?.map((u) => u.ipv6),
      [{ state: "down", loss: 100, rtt: null }, null],
    );
    assert.equal(hookEnvironment("transition", [isp1Ipv6Down]).FAMILY, "6");
  });

  test("a burst: the subject counts the changes, omitted ones included", () => {
    assert.equal(
      emailSubject(burst([isp1Down, isp2Degraded]), "[uplinkd]"),
      "[uplinkd] 2 uplink changes",
    );
    assert.equal(summary(burst([isp1Down, isp2Degraded], 5)), "7 uplink changes");
  });

  test("a test: the subject says so", () => {
    const n: Notification = { ...burst([]), kind: "test", uplinks: null };
    assert.equal(emailSubject(n, "[uplinkd]"), "[uplinkd] test notification");
    assert.match(textBody(n), /^Test notification from uplinkd on router1/);
  });

  test("the body lists each transition and every uplink now", () => {
    assert.equal(
      textBody(burst([isp1Down, isp2Degraded], 1)),
      [
        "3 uplink changes on router1",
        "",
        "2024-05-01T10:00:00.000Z  isp1 (wan1) IPv4: up → down",
        "  reason: 3 failed rounds: 198.51.100.1 and 203.0.113.1 did not answer",
        "  loss: 100%, RTT: unknown",
        "",
        "2024-05-01T10:00:00.400Z  isp2 (wan2) IPv4: up → degraded",
        "  reason: loss 12.46% above 10%",
        "  loss: 12.5%, RTT: 48 ms",
        "",
        "(1 more transition not listed)",
        "",
        "Uplinks now:",
        "  isp1 (wan1): down, loss 100%, RTT unknown",
        "  isp2 (wan2): degraded, loss 12.5%, RTT 48 ms",
        "",
        "-- uplinkd on router1, 2024-05-01T10:00:02.000Z",
        "",
      ].join("\n"),
    );
  });

  test("the body leaves out the uplinks when no status was provided", () => {
    const body = textBody({ ...burst([isp1Down]), uplinks: null });
    assert.doesNotMatch(body, /Uplinks now/);
  });

  test("the webhook body is JSON with every transition and uplink", () => {
    assert.deepEqual(webhookPayload(burst([isp1Down])), {
      type: "transitions",
      host: "router1",
      time: "2024-05-01T10:00:02.000Z",
      summary: "isp1 IPv4 down",
      transitions: [
        {
          time: "2024-05-01T10:00:00.000Z",
          uplink: "isp1",
          family: 4,
          interface: "wan1",
          from: "up",
          to: "down",
          reason: "3 failed rounds: 198.51.100.1 and 203.0.113.1 did not answer",
          loss: 100,
          rtt: null,
        },
      ],
      omitted: 0,
      uplinks: [
        { name: "isp1", interface: "wan1", state: "down", loss: 100, rtt: null, ipv6: null },
        {
          name: "isp2",
          interface: "wan2",
          state: "degraded",
          loss: 12.46,
          rtt: 48.04,
          ipv6: null,
        },
      ],
    });
  });
});

describe("a hook script's environment", () => {
  test("one transition: its fields, unknown values empty", () => {
    const env = hookEnvironment("transition", [isp1Down]);
    assert.deepEqual(
      { ...env, EVENTS_JSON: undefined },
      {
        EVENT: "transition",
        UPLINK: "isp1",
        FAMILY: "4",
        INTERFACE: "wan1",
        STATE: "down",
        PREVIOUS_STATE: "up",
        REASON: isp1Down.reason,
        TIMESTAMP: "2024-05-01T10:00:00.000Z",
        LOSS: "100",
        RTT: "",
        EVENTS_JSON: undefined,
        EVENT_COUNT: "1",
      },
    );
    assert.deepEqual(JSON.parse(env.EVENTS_JSON ?? ""), [isp1Down]);
  });

  test("a burst: the last transition's fields, every transition in EVENTS_JSON", () => {
    const env = hookEnvironment("burst", [isp1Down, isp2Degraded], 2);
    assert.equal(env.UPLINK, "isp2");
    assert.equal(env.LOSS, "12.5");
    assert.equal(env.RTT, "48");
    assert.equal(env.EVENT_COUNT, "4");
    assert.deepEqual(
      (JSON.parse(env.EVENTS_JSON ?? "") as { uplink: string }[]).map((t) => t.uplink),
      ["isp1", "isp2"],
    );
  });

  test("a test: EVENT=test, no transition", () => {
    const env = hookEnvironment("test", []);
    assert.equal(env.EVENT, "test");
    assert.equal(env.UPLINK, "");
    assert.equal(env.EVENTS_JSON, "[]");
  });

  test("NUL bytes, which an environment cannot hold, become spaces like other controls", () => {
    const env = hookEnvironment("transition", [{ ...isp1Down, reason: "a\0b" }]);
    assert.equal(env.REASON, "a b");
  });
});

describe("retry backoff", () => {
  test("doubles from the configured backoff, up to a cap", () => {
    const policy = retryBackoff({ retries: 20, backoffMs: 1000 });
    assert.deepEqual(
      [1, 2, 3, 4].map((r) => backoffDelay(policy, r)),
      [1000, 2000, 4000, 8000],
    );
    assert.equal(backoffDelay(policy, 20), MAX_BACKOFF_MS);
  });
});

describe("a channel's queue", () => {
  test("runs tasks one at a time, in order, past a failing one", async () => {
    const errors: unknown[] = [];
    const queue = new SerialQueue(10, (e) => errors.push(e));
    const log: string[] = [];
    let running = 0;
    const task =
      (name: string, fail = false) =>
      async () => {
        running++;
        assert.equal(running, 1, "two tasks ran at once");
        await new Promise((r) => setImmediate(r));
        log.push(name);
        running--;
        if (fail) throw new Error(name);
      };
    queue.push(task("a"));
    queue.push(task("b", true));
    queue.push(task("c"));
    await queue.idle();
    assert.deepEqual(log, ["a", "b", "c"]);
    assert.equal(errors.length, 1);
    assert.equal(queue.size, 0);
  });

  test("refuses tasks beyond its bound while one runs", async () => {
    const queue = new SerialQueue(2, () => undefined);
    let release = (): void => undefined;
    const gate = new Promise<void>((r) => (release = r));
    assert.equal(
      queue.push(() => gate),
      true,
    );
    await new Promise((r) => setImmediate(r));
    const accepted = [1, 2, 3].map(() => queue.push(() => Promise.resolve()));
    assert.deepEqual(accepted, [true, true, false]);
    assert.equal(queue.size, 3);
    release();
    await queue.idle();
  });
});

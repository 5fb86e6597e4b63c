/**
 * Text from outside (a reason text that quotes a probe's answer, a host
 * name, a hook's stderr) is cleaned before it reaches a mail, a hook's
 * environment, a webhook body or the terminal: no CR/LF that adds lines or
 * headers, no ANSI escape sequence, no bidirectional override (U+202E).
 */
import assert from "node:assert/strict";
import { uplinkStatus } from "../fakes/status.js";
import { describe, test } from "node:test";
import { formatEvents, formatReload, formatStatus } from "../../src/control/format.js";
import type { StatusDocument, UplinkStatus } from "../../src/control/api.js";
import {
  emailSubject,
  hookEnvironment,
  textBody,
  webhookPayload,
  type Notification,
  type NotifiedTransition,
} from "../../src/notify/message.js";
import { cleanLines, cleanText } from "../../src/text.js";

/** Hostile reason texts: a mail header, a terminal that clears and retitles, a reversed name. */
const HOSTILE = [
  "down\r\nBcc: attacker@example.net\r\n\r\nfake body",
  "\x1b[2J\x1b[H\x1b]0;owned\x07\x1b[31mred\x1b[0m",
  "isp\u202e1nwod\u202c",
  "nul\0byte\tand\vvt\x7fdel\x85nel\u2028ls",
  "\x9b31mC1 CSI",
];

/** Nothing a terminal or a mail parser would act on: no C0/C1 control, DEL, format character or escape. */
function assertClean(text: string, what: string): void {
  // eslint-disable-next-line no-control-regex
  assert.doesNotMatch(text, /[\x00-\x09\x0b-\x1f\x7f-\x9f\p{Cf}\u2028\u2029]/u, what);
}

function transition(reason: string): NotifiedTransition {
  return {
    time: "2026-12-07T10:00:00.000Z",
    uplink: "isp1",
    family: 4,
    interface: "wan1",
    from: "up",
    to: "down",
    reason,
    loss: 100,
    rtt: null,
  };
}

function notification(reason: string, host = "router1"): Notification {
  return {
    kind: "transitions",
    host,
    time: "2026-12-07T10:00:02.000Z",
    transitions: [transition(reason)],
    omitted: 0,
    uplinks: [{ name: "isp1", interface: "wan1", state: "down", loss: 100, rtt: null }],
  };
}

describe("cleanText and cleanLines", () => {
  test("remove escape sequences, turn other controls into spaces, keep printable text", () => {
    assert.equal(cleanText(HOSTILE[0] ?? ""), "down  Bcc: attacker@example.net    fake body");
    assert.equal(cleanText(HOSTILE[1] ?? ""), "red");
    assert.equal(cleanText(HOSTILE[2] ?? ""), "isp 1nwod ");
    assert.equal(cleanText(HOSTILE[4] ?? ""), "C1 CSI");
    for (const text of HOSTILE) assertClean(cleanText(text), JSON.stringify(text));
    assert.equal(cleanText("Büro – 100 % ok, 日本"), "Büro – 100 % ok, 日本");
  });

  test("cleanLines keeps line breaks and nothing else: a CR cannot overwrite a line", () => {
    assert.equal(cleanLines("a\nb\r\nc\x1b[1A\x1b[2Kd\n"), "a\nb \ncd\n");
    assert.equal(cleanLines("isp1 ok\rFAKE  "), "isp1 ok FAKE  ");
  });
});

describe("a notification with a hostile reason", () => {
  test("the mail body keeps its lines: no header, blank line or escape comes from the reason", () => {
    for (const reason of HOSTILE) {
      const body = textBody(notification(reason, "router\r\nX-Evil: 1"));
      for (const line of body.split("\n")) assertClean(line, JSON.stringify(reason));
      assert.equal(
        body.split("\n").length,
        textBody(notification("3 rounds failed")).split("\n").length,
      );
      assert.doesNotMatch(body, /^Bcc:|^X-Evil:/m);
    }
  });

  test("the subject is one clean line", () => {
    const n = notification("x");
    const subject = emailSubject(
      { ...n, transitions: [{ ...transition("x"), uplink: "isp1\r\nBcc: a@b" }] },
      "[uplinkd]",
    );
    assert.equal(subject, "[uplinkd] isp1  Bcc: a@b IPv4 down");
  });

  test("a hook's environment holds no control character; EVENTS_JSON holds the cleaned reason", () => {
    for (const reason of HOSTILE) {
      const env = hookEnvironment("transition", [transition(reason)]);
      for (const [key, value] of Object.entries(env))
        assertClean(value, `${key}=${JSON.stringify(value)}`);
      assert.equal(env.REASON, cleanText(reason));
      const events = JSON.parse(env.EVENTS_JSON ?? "[]") as { reason: string }[];
      assert.equal(events[0]?.reason, cleanText(reason));
    }
  });

  test("the webhook body carries the cleaned reason and host", () => {
    const payload = webhookPayload(notification(HOSTILE[2] ?? "", "router\u202e1"));
    assert.equal(payload.transitions[0]?.reason, "isp 1nwod ");
    assert.equal(payload.host, "router 1");
  });
});

function uplink(overrides: Partial<UplinkStatus>): UplinkStatus {
  return uplinkStatus("isp1", {
    state: "down",
    since: "2026-12-07T10:00:00.000Z",
    active: false,
    loss: 100,
    recentLoss: 100,
    rtt: null,
    jitter: null,
    reason: "3 rounds failed",
    connections: 0,
    rxBytes: 0,
    txBytes: 0,
    throughput: null,
    ...overrides,
  });
}

describe("the terminal (uplinkd status, events, reload)", () => {
  test("status and events print hostile reasons and names inside their cells", () => {
    const doc: StatusDocument = {
      version: "0.1.0",
      pid: 1,
      config: "/etc/uplinkd/uplinkd.yaml",
      startedAt: "2026-12-07T10:00:00.000Z",
      uplinks: [uplink({ address: "100.64.1.2\x1b[2J" })],
      policies: {},
      lastApply: null,
      domains: [],
      reason: "all down\r\n\x1b[31mFAKE",
    };
    const status = formatStatus(doc, Date.parse("2026-12-07T10:00:05.000Z"));
    for (const line of status.split("\n")) assertClean(line, status);
    assert.match(status, /^last resort: all down {2}FAKE$/m);
    for (const reason of HOSTILE) {
      const text = formatEvents([{ ...transition(reason) }]);
      assert.equal(text.trimEnd().split("\n").length, 2, text);
      for (const line of text.split("\n")) assertClean(line, JSON.stringify(reason));
    }
  });

  test("reload changes are one clean line each", () => {
    const text = formatReload({
      ok: true,
      config: "/etc/uplinkd/uplinkd.yaml",
      uplinks: ["isp1"],
      changes: ['notify.email.subject_prefix: "a" -> "b\u202ec"'],
    });
    assert.equal(text.split("\n").length, 3);
    assertClean(text.split("\n")[1] ?? "", text);
  });
});

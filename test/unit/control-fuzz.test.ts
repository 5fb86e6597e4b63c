/**
 * Bad requests never crash the control API: random methods, paths, query
 * strings, headers and bodies (JSON, not JSON, huge, with any content type)
 * get an answer below 500, and every error is JSON
 * `{"error": "...", "code": "UPLINKD_ERR_..."}` with a 4xx status. An
 * event stream the client leaves ends its subscription.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { DisableOptions } from "../../src/control/api.js";
import type { TokenConfig } from "../../src/control/auth.js";
import { MAX_BODY_BYTES, controlApp, type ControlHandlers } from "../../src/control/server.js";
import type { StatusDocument } from "../../src/control/api.js";
import { UnknownUplinkError } from "../../src/errors.js";
import { fuzzParameters } from "../fuzz.js";

const WRITE = "write-token-0123456789abcdef";
const READ = "read-token-0123456789abcdef";
const TOKENS: TokenConfig[] = [
  { name: "ops", token: WRITE, access: "write" },
  { name: "grafana", token: READ, access: "read" },
];
const UPLINKS = ["isp1", "isp2"];

/** Handlers that answer like the daemon: known uplinks only, a fixed status. */
function handlers(): ControlHandlers & { subscriptions: () => number } {
  let subscriptions = 0;
  const status: StatusDocument = {
    version: "0.1.0",
    pid: 1,
    config: "/etc/uplinkd/uplinkd.yaml",
    startedAt: "2026-11-21T00:00:00.000Z",
    uplinks: [],
    policies: {},
    lastApply: null,
    domains: [],
  };
  const maintenance = (uplink: string, state: "disabled" | "up") => {
    if (!UPLINKS.includes(uplink)) return Promise.reject(new UnknownUplinkError(uplink, UPLINKS));
    return Promise.resolve({ uplink, state, changed: true, drained: 0 });
  };
  return {
    status: () => Promise.resolve(status),
    events: () => ({ events: [] }),
    history: () => ({ intervalMs: 1000, samples: [] }),
    inputs: () => ({ uplinks: {}, load: null }),
    reload: () => Promise.resolve({ ok: true, config: "x.yaml", uplinks: UPLINKS, changes: [] }),
    disable: (uplink: string, _options: DisableOptions) => maintenance(uplink, "disabled"),
    enable: (uplink: string) => maintenance(uplink, "up"),
    metrics: () => Promise.resolve({ contentType: "text/plain", text: "uplinkd_up 1\n" }),
    subscribe: () => {
      subscriptions += 1;
      return () => {
        subscriptions -= 1;
      };
    },
    subscriptions: () => subscriptions,
  };
}

/** Printable ASCII without line breaks: what a header value may hold. */
const headerText = fc.stringMatching(/^[\x20-\x7e]{0,60}$/);

const pathSegment = fc.oneof(
  fc.constantFrom(
    "isp1",
    "isp2",
    "isp9",
    "",
    "..",
    ".",
    "%",
    "%ZZ",
    "%00",
    "%2F",
    "%E0%A4%A",
    "%C0%AF",
    "a%20b",
    "dashboard",
    "vendor",
    "uPlot.iife.min.js",
    "x".repeat(2000),
  ),
  fc.webSegment(),
  fc.stringMatching(/^[\x21-\x7e]{0,20}$/).map((s) => s.replace(/[?#/]/g, "")),
);

const path = fc.oneof(
  fc.constantFrom(
    "/status",
    "/events",
    "/events/stream",
    "/history",
    "/metrics",
    "/reload",
    "/",
    "/dashboard/app.js",
    "/dashboard/../../package.json",
    "/uplinks/isp1/disable",
    "/uplinks/isp1/enable",
  ),
  fc
    .tuple(pathSegment, fc.constantFrom("disable", "enable", "", "x"))
    .map(([name, action]) => `/uplinks/${name}/${action}`),
  fc.array(pathSegment, { minLength: 1, maxLength: 4 }).map((parts) => `/${parts.join("/")}`),
  fc.constantFrom("/dashboard/", "/dashboard/%2e%2e/%2e%2e/package.json", "//status", "/status/"),
);

const query = fc.oneof(
  fc.constant(""),
  fc
    .oneof(
      fc.constantFrom("-1", "0", "1e9", "NaN", "1.5", "", "99999999999999999999", "%", "0x10"),
      fc.stringMatching(/^[\x21-\x7e]{0,12}$/).map((s) => s.replace(/[#]/g, "")),
    )
    .map((limit) => `?limit=${limit}`),
  fc.stringMatching(/^[\x21-\x7e]{0,30}$/).map((s) => `?${s.replace(/#/g, "")}`),
);

const disableLike = fc
  .record(
    {
      drain: fc.oneof(fc.boolean(), fc.jsonValue({ maxDepth: 1 })),
      reason: fc.oneof(fc.string({ maxLength: 300 }), fc.jsonValue({ maxDepth: 1 })),
      other: fc.jsonValue({ maxDepth: 1 }),
    },
    { requiredKeys: [] },
  )
  .map((value) => JSON.stringify(value));

const body = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: disableLike },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)) },
  { weight: 2, arbitrary: fc.string({ maxLength: 100 }) },
  {
    weight: 1,
    arbitrary: fc.uint8Array({ maxLength: 200 }),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "{drain",
      '{"drain": true',
      "null",
      "[]",
      '"text"',
      "1e999",
      '{"__proto__": {"drain": true}}',
      '{"constructor": {"prototype": {}}}',
      "[".repeat(10_000),
      `{"reason": "${"x".repeat(5_000)}"}`,
      `{"drain": true, "reason": "${"x".repeat(MAX_BODY_BYTES)}"}`,
    ),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: MAX_BODY_BYTES - 2, max: 4 * MAX_BODY_BYTES })
      .map((size) => "{".padEnd(size, " ")),
  },
);

const contentType = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom(
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
    "",
  ),
  headerText,
);

interface FuzzRequest {
  tcp: boolean;
  method: string;
  path: string;
  query: string;
  body: string | Uint8Array | undefined;
  contentType: string | undefined;
  host: string | undefined;
  authorization: string | undefined;
}

const request: fc.Arbitrary<FuzzRequest> = fc.record({
  tcp: fc.boolean(),
  method: fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"),
  path,
  query,
  body,
  contentType,
  host: fc.oneof(
    fc.constant(undefined),
    fc.constantFrom("127.0.0.1:9101", "[::1]:9101", "localhost", "attacker.example"),
    headerText,
  ),
  authorization: fc.oneof(
    fc.constant(undefined),
    fc.constantFrom(`Bearer ${WRITE}`, `Bearer ${READ}`, "Bearer", "Basic eDp5", `bearer ${WRITE}`),
    headerText,
  ),
});

/**
 * Sends one request to a fresh app and checks the answer: below 500; an
 * error is JSON with `error` and an `UPLINKD_ERR_` code. An event stream is
 * cancelled once its headers are in, and must then end its subscription.
 */
async function checkRequest(r: FuzzRequest): Promise<void> {
  const fake = handlers();
  const app = controlApp(fake, r.tcp ? { tokens: () => TOKENS } : {});
  const headers = new Headers();
  if (r.contentType !== undefined) headers.set("content-type", r.contentType);
  if (r.host !== undefined) headers.set("host", r.host);
  if (r.authorization !== undefined) headers.set("authorization", r.authorization);
  const hasBody = r.method !== "GET" && r.method !== "HEAD" && r.body !== undefined;
  const controller = new AbortController();
  const res = await app.request(`http://localhost${r.path}${r.query}`, {
    method: r.method,
    headers,
    signal: controller.signal,
    ...(hasBody ? { body: r.body } : {}),
  });
  const where = `${r.method} ${r.path}${r.query}`;
  if ((res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
    assert.equal(res.status, 200, where);
    await res.body?.cancel();
    controller.abort();
    for (let turn = 0; turn < 100 && fake.subscriptions() > 0; turn++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(fake.subscriptions(), 0, `${where}: the stream's subscription outlived it`);
    return;
  }
  const text = await res.text();
  assert.ok(res.status < 500, `${where}: ${res.status} ${text}`);
  if (res.status < 400) return;
  assert.ok(res.status >= 400 && res.status < 500, `${where}: status ${res.status}`);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/, where);
  if (r.method === "HEAD") return;
  const answer = JSON.parse(text) as { error?: unknown; code?: unknown };
  assert.equal(typeof answer.error, "string", `${where}: ${text}`);
  assert.match(String(answer.code), /^UPLINKD_ERR_[A-Z_]+$/, `${where}: ${text}`);
}

describe("bad requests never crash the control API", () => {
  test("random requests get an answer below 500, and every error is JSON with a code", async () => {
    await fc.assert(fc.asyncProperty(request, checkRequest), fuzzParameters(400));
  });
});

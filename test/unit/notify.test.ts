/**
 * Notifications against real servers on loopback: a small SMTP server
 * (plain, AUTH, STARTTLS with a certificate made by openssl at test time), an
 * HTTP receiver, and hook scripts written to a temporary directory.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from "node:http";
import {
  createServer as createNetServer,
  type AddressInfo,
  type Server as NetServer,
  type Socket,
} from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import {
  TLSSocket,
  createSecureContext,
  createServer as createTlsServer,
  type SecureContext,
} from "node:tls";
import { promisify } from "node:util";
import { pino, type Logger } from "pino";
import { ManualClock } from "../fakes/clock.js";
import { running } from "./processes.js";
import { SystemClock, type TimerHandle } from "../../src/clock.js";
import { Notifier, notifyTest, type NotifyResult } from "../../src/notify/notifier.js";
import { notifySchema, type NotifyConfig } from "../../src/config/notify.js";
import type { Transition } from "../../src/uplink-health.js";

// ---------------------------------------------------------------- helpers

/** Rejects after `ms` ms with a message naming what was awaited. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`${what}: not within ${ms}ms`));
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` every 10ms until it is true; fails after `ms` ms. */
async function until(ms: number, what: string, check: () => boolean | Promise<boolean>) {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 10_000; i++) {
    if (await check()) return;
    if (Date.now() > deadline) break;
    await delay(10);
  }
  assert.fail(`${what}: not within ${ms}ms`);
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A pino logger whose records (parsed JSON) land in `records`. */
function memoryLog(): { log: Logger; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line.trim()) records.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  return { log: pino({ level: "debug" }, stream), records };
}

/** A config through the schema, so defaults are those a user gets. */
function config(input: Record<string, unknown>): NotifyConfig {
  return notifySchema.parse(input);
}

function transition(
  uplink: string,
  from: Transition["from"],
  to: Transition["to"],
  reason = "test",
): Transition {
  return {
    time: new Date().toISOString(),
    uplink,
    family: 4,
    from,
    to,
    reason,
    loss: to === "down" ? 100 : 0,
    rtt: to === "down" ? null : 12.34,
  };
}

const interfaces: Record<string, string> = { isp1: "wan1", isp2: "wan2", lte: "wwan0" };
const interfaceOf = (uplink: string) => interfaces[uplink];

/** Decodes a quoted-printable (or plain) MIME body to text. */
function decodeBody(message: string): string {
  const split = message.indexOf("\r\n\r\n");
  const headers = message.slice(0, split);
  let body = message.slice(split + 4);
  if (/content-transfer-encoding:\s*quoted-printable/i.test(headers)) {
    body = body.replace(/=\r\n/g, "");
    const bytes: number[] = [];
    for (let i = 0; i < body.length; i++) {
      const hex = body.slice(i + 1, i + 3);
      if (body[i] === "=" && /^[0-9A-F]{2}$/i.test(hex)) {
        bytes.push(Number.parseInt(hex, 16));
        i += 2;
      } else {
        bytes.push(body.charCodeAt(i));
      }
    }
    body = Buffer.from(bytes).toString("utf8");
  }
  return body.replace(/\r\n/g, "\n");
}

function header(message: string, name: string): string | undefined {
  const headers = message.slice(0, message.indexOf("\r\n\r\n")).replace(/\r\n[ \t]+/g, " ");
  const match = new RegExp(`^${name}:\\s*(.*)$`, "im").exec(headers);
  return match?.[1];
}

// ---------------------------------------------------------------- SMTP server

interface ReceivedMail {
  from: string;
  to: string[];
  /** The message as sent after DATA (headers, blank line, body), CRLF line ends. */
  data: string;
  /** The user name of a successful AUTH; null without. */
  user: string | null;
  /** Whether the session was upgraded with STARTTLS. */
  tls: boolean;
}

interface SmtpOptions {
  /** Require AUTH with these credentials before MAIL FROM. */
  auth?: { user: string; pass: string };
  /** Offer STARTTLS with this certificate. */
  tls?: { key: string; cert: string };
  /** Speak TLS from the first byte (with the `tls` certificate) instead of offering STARTTLS. */
  implicitTls?: boolean;
  /** Accept connections and never say anything. */
  stall?: boolean;
  /** Replies to the next MAIL FROMs (one each), before falling back to 250. */
  mailFromReplies?: string[];
}

/** Enough of an SMTP server (RFC 5321) for nodemailer: EHLO/HELO, STARTTLS, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT. */
class SmtpServer {
  readonly mails: ReceivedMail[] = [];
  connections = 0;
  readonly #server: NetServer;
  readonly #sockets = new Set<Socket>();
  readonly #options: SmtpOptions;
  readonly #secureContext: SecureContext | undefined;

  private constructor(options: SmtpOptions) {
    this.#options = options;
    this.#secureContext = options.tls && createSecureContext(options.tls);
    this.#server =
      options.implicitTls && options.tls
        ? createTlsServer(options.tls, (socket) => {
            this.#session(socket, true);
          })
        : createNetServer((socket) => {
            this.#session(socket, false);
          });
  }

  static async start(options: SmtpOptions = {}): Promise<SmtpServer> {
    const server = new SmtpServer(options);
    server.#server.listen(0, "127.0.0.1");
    await once(server.#server, "listening");
    return server;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  async waitForMails(count: number, ms = 5000): Promise<ReceivedMail[]> {
    await until(ms, `${count} mails`, () => this.mails.length >= count);
    return this.mails;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    this.#server.close();
    await once(this.#server, "close");
  }

  #session(raw: Socket, implicitTls: boolean): void {
    this.connections++;
    this.#sockets.add(raw);
    raw.on("close", () => this.#sockets.delete(raw));
    raw.on("error", () => undefined);
    if (this.#options.stall) return;
    let socket: Socket = raw;
    let secure = implicitTls;
    let buffer = "";
    let mode: "command" | "data" | "plain" | "login-user" | "login-pass" = "command";
    let user: string | null = null;
    let loginUser = "";
    let mail = { from: "", to: [] as string[] };
    const reply = (line: string) => socket.write(`${line}\r\n`);
    const checkAuth = (name: string, pass: string) => {
      const ok = this.#options.auth?.user === name && this.#options.auth.pass === pass;
      if (ok) user = name;
      reply(
        ok ? "235 2.7.0 Authentication successful" : "535 5.7.8 Authentication credentials invalid",
      );
    };
    const command = (line: string): void => {
      const verb = line.split(" ", 1)[0]?.toUpperCase() ?? "";
      const argument = line.slice(verb.length).trim();
      switch (verb) {
        case "EHLO": {
          const lines = ["localhost greets you"];
          if (this.#options.tls && !secure) lines.push("STARTTLS");
          if (this.#options.auth) lines.push("AUTH PLAIN LOGIN");
          lines.push("8BITMIME");
          lines.forEach((l, i) => reply(`250${i === lines.length - 1 ? " " : "-"}${l}`));
          return;
        }
        case "HELO":
          reply("250 localhost");
          return;
        case "STARTTLS": {
          if (!this.#secureContext || secure) return void reply("502 5.5.1 not offered");
          reply("220 2.0.0 Ready to start TLS");
          raw.removeListener("data", onData);
          const tls = new TLSSocket(raw, { isServer: true, secureContext: this.#secureContext });
          tls.on("error", () => undefined);
          tls.on("data", onData);
          socket = tls;
          secure = true;
          buffer = "";
          user = null;
          return;
        }
        case "AUTH": {
          const [mechanism, initial] = argument.split(" ");
          if (mechanism?.toUpperCase() === "PLAIN") {
            if (initial) {
              const [, name = "", pass = ""] = Buffer.from(initial, "base64")
                .toString()
                .split("\0");
              checkAuth(name, pass);
            } else {
              mode = "plain";
              reply("334 ");
            }
          } else if (mechanism?.toUpperCase() === "LOGIN") {
            mode = "login-user";
            reply("334 VXNlcm5hbWU6");
          } else {
            reply("504 5.5.4 mechanism not supported");
          }
          return;
        }
        case "MAIL": {
          if (this.#options.auth && user === null)
            return void reply("530 5.7.0 Authentication required");
          const scripted = this.#options.mailFromReplies?.shift();
          if (scripted) return void reply(scripted);
          mail = { from: /<([^>]*)>/.exec(argument)?.[1] ?? "", to: [] };
          reply("250 2.1.0 OK");
          return;
        }
        case "RCPT":
          mail.to.push(/<([^>]*)>/.exec(argument)?.[1] ?? "");
          reply("250 2.1.5 OK");
          return;
        case "DATA":
          mode = "data";
          reply("354 End data with <CR><LF>.<CR><LF>");
          return;
        case "RSET":
          mail = { from: "", to: [] };
          reply("250 2.0.0 OK");
          return;
        case "NOOP":
          reply("250 2.0.0 OK");
          return;
        case "QUIT":
          reply("221 2.0.0 Bye");
          socket.end();
          return;
        default:
          reply("502 5.5.2 command not recognized");
      }
    };
    const onData = (chunk: Buffer): void => {
      buffer += chunk.toString("latin1");
      for (let guard = 0; guard < 10_000; guard++) {
        if (mode === "data") {
          const end = buffer.indexOf("\r\n.\r\n");
          if (end < 0) return;
          const data = buffer
            .slice(0, end + 2)
            .split("\r\n")
            .map((l) => (l.startsWith("..") ? l.slice(1) : l))
            .join("\r\n");
          buffer = buffer.slice(end + 5);
          mode = "command";
          this.mails.push({
            ...mail,
            data: Buffer.from(data, "latin1").toString("utf8"),
            user,
            tls: secure,
          });
          reply("250 2.0.0 OK queued");
          continue;
        }
        const newline = buffer.indexOf("\r\n");
        if (newline < 0) return;
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 2);
        if (mode === "plain") {
          mode = "command";
          const [, name = "", pass = ""] = Buffer.from(line, "base64").toString().split("\0");
          checkAuth(name, pass);
        } else if (mode === "login-user") {
          loginUser = Buffer.from(line, "base64").toString();
          mode = "login-pass";
          reply("334 UGFzc3dvcmQ6");
        } else if (mode === "login-pass") {
          mode = "command";
          checkAuth(loginUser, Buffer.from(line, "base64").toString());
        } else {
          command(line);
        }
      }
    };
    raw.on("data", onData);
    reply("220 localhost ESMTP test server");
  }
}

// ---------------------------------------------------------------- HTTP receiver

interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Date.now() when the request had arrived in full. */
  at: number;
}

/** What to answer request number `index` (0-based): a status and body, or never answer. */
type Answer = { status: number; body?: string } | "hang";

class HttpReceiver {
  readonly requests: ReceivedRequest[] = [];
  readonly #server: Server;

  private constructor(answer: (index: number) => Answer) {
    this.#server = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const index = this.requests.length;
        this.requests.push({
          method: req.method ?? "",
          path: req.url ?? "",
          headers: req.headers,
          body: Buffer.concat(chunks).toString("utf8"),
          at: Date.now(),
        });
        const a = answer(index);
        if (a === "hang") return;
        res.writeHead(a.status, { "content-type": "text/plain" }).end(a.body ?? "");
      });
    });
  }

  static async start(
    answer: (index: number) => Answer = () => ({ status: 204 }),
  ): Promise<HttpReceiver> {
    const receiver = new HttpReceiver(answer);
    receiver.#server.listen(0, "127.0.0.1");
    await once(receiver.#server, "listening");
    return receiver;
  }

  url(path = "/hook"): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}${path}`;
  }

  async waitForRequests(count: number, ms = 5000): Promise<ReceivedRequest[]> {
    await until(ms, `${count} webhook requests`, () => this.requests.length >= count);
    return this.requests;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    this.#server.close();
    await once(this.#server, "close");
  }
}

// ---------------------------------------------------------------- fixtures

/**
 * The real clock (network I/O runs in real time), recording the delay of
 * every timer the code under test asks it for: backoffs and timeouts are
 * checked on the clock the code takes, not timed on the wall.
 */
class RecordingClock extends SystemClock {
  readonly delays: number[] = [];
  override setTimeout(fn: () => void, delayMs: number): TimerHandle {
    this.delays.push(delayMs);
    return super.setTimeout(fn, delayMs);
  }
  /** How many timers of `delayMs` were asked for. */
  count(delayMs: number): number {
    return this.delays.filter((d) => d === delayMs).length;
  }
}

let dir = "";
let tlsFiles: { key: string; cert: string; certPath: string } | undefined;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "uplinkd-notify-"));
  // openssl (scripts/setup.sh installs it) makes the STARTTLS tests' certificate;
  // without it these tests fail rather than pass unrun.
  await promisify(execFile)(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      join(dir, "cert.pem"),
    ],
    { timeout: 10_000 },
  );
  tlsFiles = {
    key: await readFile(join(dir, "key.pem"), "utf8"),
    cert: await readFile(join(dir, "cert.pem"), "utf8"),
    certPath: join(dir, "cert.pem"),
  };
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes an executable shell script into the temporary directory; returns its path. */
async function script(name: string, body: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `#!/bin/sh\n${body}\n`);
  await chmod(path, 0o755);
  return path;
}

/** Reads `env -0` output into an object. */
async function readEnv(path: string): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  for (const entry of (await readFile(path, "utf8")).split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

function emailConfig(port: number, extra: Record<string, unknown> = {}) {
  return {
    host: "127.0.0.1",
    port,
    security: "none",
    from: "uplinkd <router1@example.net>",
    to: ["ops@example.net", "oncall@example.net"],
    timeout: "2s",
    retries: 0,
    ...extra,
  };
}

// ---------------------------------------------------------------- tests

describe("email over SMTP", () => {
  test("arrives with the recipients, subject and body, after AUTH", async () => {
    const smtp = await SmtpServer.start({ auth: { user: "router1", pass: "s3cret pass" } });
    try {
      const passwordFile = join(dir, "smtp-password");
      await writeFile(passwordFile, "s3cret pass\n");
      const { log } = memoryLog();
      const notifier = new Notifier(
        config({
          coalesce: "50ms",
          email: emailConfig(smtp.port, { username: "router1", password_file: passwordFile }),
        }),
        log,
        {
          interfaceOf,
          hostname: "router1",
          statusProvider: () => [
            { name: "isp1", interface: "wan1", state: "down", loss: 100, rtt: null },
            { name: "isp2", interface: "wan2", state: "up", loss: 0, rtt: 8.25 },
          ],
        },
      );
      notifier.notify({
        time: "2024-05-01T10:00:00.000Z",
        uplink: "isp1",
        family: 4,
        from: "up",
        to: "down",
        reason: "3 failed rounds: no answer from 198.51.100.1",
        loss: 100,
        rtt: null,
      });
      const [mail] = await smtp.waitForMails(1);
      assert.ok(mail);
      assert.equal(mail.from, "router1@example.net");
      assert.deepEqual(mail.to, ["ops@example.net", "oncall@example.net"]);
      assert.equal(mail.user, "router1");
      assert.equal(header(mail.data, "Subject"), "[uplinkd] isp1 IPv4 down");
      assert.equal(header(mail.data, "To"), "ops@example.net, oncall@example.net");
      const body = decodeBody(mail.data);
      assert.match(body, /^isp1 IPv4 down on router1$/m);
      assert.match(body, /^2024-05-01T10:00:00.000Z {2}isp1 \(wan1\) IPv4: up → down$/m);
      assert.match(body, /^ {2}reason: 3 failed rounds: no answer from 198.51.100.1$/m);
      assert.match(body, /^ {2}loss: 100%, RTT: unknown$/m);
      assert.match(
        body,
        /^Uplinks now:\n {2}isp1 \(wan1\): down, loss 100%, RTT unknown\n {2}isp2 \(wan2\): up, loss 0%, RTT 8.3 ms$/m,
      );
      await within(5000, "flush", notifier.flush());
    } finally {
      await smtp.close();
    }
  });

  test("upgrades with STARTTLS and verifies the certificate against ca_file", async () => {
    assert.ok(tlsFiles, "no certificate: openssl failed in before()");
    const smtp = await SmtpServer.start({ tls: tlsFiles, auth: { user: "u", pass: "p" } });
    try {
      const results = await within(
        10_000,
        "notify-test",
        notifyTest(
          config({
            email: emailConfig(smtp.port, {
              security: "starttls",
              ca_file: tlsFiles.certPath,
              username: "u",
              password: "p",
            }),
          }),
          memoryLog().log,
        ),
      );
      assert.deepEqual(
        results.map((r) => [r.channel, r.target, r.ok, r.error]),
        [["email", `127.0.0.1:${smtp.port}`, true, undefined]],
      );
      const [mail] = await smtp.waitForMails(1);
      assert.equal(mail?.tls, true, "the mail went over the upgraded connection");
      assert.equal(mail.user, "u");
      assert.equal(header(mail.data, "Subject"), "[uplinkd] test notification");
    } finally {
      await smtp.close();
    }
  });

  test("security tls speaks TLS from the first byte", async () => {
    assert.ok(tlsFiles, "no certificate: openssl failed in before()");
    const smtp = await SmtpServer.start({ tls: tlsFiles, implicitTls: true });
    try {
      const [result] = await within(
        10_000,
        "notify-test",
        notifyTest(
          config({
            email: emailConfig(smtp.port, { security: "tls", ca_file: tlsFiles.certPath }),
          }),
          memoryLog().log,
        ),
      );
      assert.equal(result?.ok, true, result?.error);
      const [mail] = await smtp.waitForMails(1);
      assert.equal(mail?.tls, true);
    } finally {
      await smtp.close();
    }
  });

  test("refuses a certificate it cannot verify, without retrying", async () => {
    assert.ok(tlsFiles, "no certificate: openssl failed in before()");
    const smtp = await SmtpServer.start({ tls: tlsFiles });
    try {
      const [result] = await within(
        10_000,
        "notify-test",
        notifyTest(
          config({ email: emailConfig(smtp.port, { security: "starttls", retries: 2 }) }),
          memoryLog().log,
        ),
      );
      assert.equal(result?.ok, false);
      assert.equal(result.attempts, 1);
      assert.equal(result.code, "UPLINKD_ERR_NOTIFY");
      assert.match(result.error ?? "", /certificate/i);
      assert.equal(smtp.mails.length, 0);
    } finally {
      await smtp.close();
    }
  });

  test("security starttls refuses a server that does not offer STARTTLS", async () => {
    const smtp = await SmtpServer.start();
    try {
      const [result] = await within(
        10_000,
        "notify-test",
        notifyTest(
          config({ email: emailConfig(smtp.port, { security: "starttls" }) }),
          memoryLog().log,
        ),
      );
      assert.equal(result?.ok, false);
      assert.match(result.error ?? "", /STARTTLS/i);
      assert.equal(smtp.mails.length, 0);
    } finally {
      await smtp.close();
    }
  });

  test("a wrong password is reported at once, not retried", async () => {
    const smtp = await SmtpServer.start({ auth: { user: "u", pass: "right" } });
    try {
      const [result] = await within(
        10_000,
        "notify-test",
        notifyTest(
          config({
            email: emailConfig(smtp.port, {
              username: "u",
              password: "wrong",
              retries: 3,
              backoff: "10ms",
            }),
          }),
          memoryLog().log,
        ),
      );
      assert.equal(result?.ok, false);
      assert.equal(result.attempts, 1);
      assert.match(result.error ?? "", /535/);
      assert.equal(smtp.connections, 1);
    } finally {
      await smtp.close();
    }
  });

  test("a transient 4xx reply is retried after the backoff", async () => {
    const smtp = await SmtpServer.start({ mailFromReplies: ["451 4.3.0 try again later"] });
    try {
      const clock = new RecordingClock();
      const [result] = await within(
        10_000,
        "notify-test",
        notifyTest(
          config({ email: emailConfig(smtp.port, { retries: 2, backoff: "50ms" }) }),
          memoryLog().log,
          { clock },
        ),
      );
      assert.equal(result?.ok, true);
      assert.equal(result.attempts, 2);
      // One wait of the configured backoff between the two attempts, none other.
      assert.equal(clock.count(50), 1, `timers asked for: ${clock.delays.join(", ")} ms`);
      assert.ok(result.durationMs >= 50, `took ${result.durationMs} ms on the clock`);
      assert.equal((await smtp.waitForMails(1)).length, 1);
    } finally {
      await smtp.close();
    }
  });

  test("a server that never greets times out within the configured timeout", async () => {
    const smtp = await SmtpServer.start({ stall: true });
    try {
      const started = Date.now();
      const [result] = await within(
        5000,
        "notify-test",
        notifyTest(
          config({ email: emailConfig(smtp.port, { timeout: "300ms" }) }),
          memoryLog().log,
        ),
      );
      assert.equal(result?.ok, false);
      assert.equal(result.code, "UPLINKD_ERR_NOTIFY_TIMEOUT");
      assert.ok(Date.now() - started < 3000, `took ${Date.now() - started}ms`);
    } finally {
      await smtp.close();
    }
  });
});

describe("webhooks", () => {
  test("POST the transitions as JSON, with the configured headers", async () => {
    const http = await HttpReceiver.start();
    try {
      const notifier = new Notifier(
        config({
          coalesce: "20ms",
          webhooks: [{ url: http.url("/uplinkd"), headers: { Authorization: "Bearer t0ken" } }],
        }),
        memoryLog().log,
        {
          interfaceOf,
          hostname: "router1",
          statusProvider: () => [
            { name: "isp1", interface: "wan1", state: "down", loss: 100, rtt: null },
          ],
        },
      );
      notifier.notify({
        time: "2024-05-01T10:00:00.000Z",
        uplink: "isp1",
        family: 4,
        from: "up",
        to: "down",
        reason: "carrier lost",
        loss: 100,
        rtt: null,
      });
      const [request] = await http.waitForRequests(1);
      assert.ok(request);
      assert.equal(request.method, "POST");
      assert.equal(request.path, "/uplinkd");
      assert.equal(request.headers.authorization, "Bearer t0ken");
      assert.match(request.headers["content-type"] ?? "", /^application\/json/);
      const payload = JSON.parse(request.body) as Record<string, unknown>;
      assert.equal(typeof payload.time, "string");
      assert.deepEqual(
        { ...payload, time: undefined },
        {
          type: "transitions",
          host: "router1",
          time: undefined,
          summary: "isp1 IPv4 down",
          transitions: [
            {
              time: "2024-05-01T10:00:00.000Z",
              uplink: "isp1",
              family: 4,
              interface: "wan1",
              from: "up",
              to: "down",
              reason: "carrier lost",
              loss: 100,
              rtt: null,
            },
          ],
          omitted: 0,
          uplinks: [
            { name: "isp1", interface: "wan1", state: "down", loss: 100, rtt: null, ipv6: null },
          ],
        },
      );
      await within(5000, "flush", notifier.flush());
    } finally {
      await http.close();
    }
  });

  test("retries a 500 with exponential backoff, then succeeds", async () => {
    const http = await HttpReceiver.start((i) =>
      i < 2 ? { status: 500, body: "busy" } : { status: 200 },
    );
    try {
      const { log, records } = memoryLog();
      const [result] = await within(
        10_000,
        "notify-test",
        notifyTest(config({ webhooks: [{ url: http.url(), retries: 3, backoff: "100ms" }] }), log),
      );
      assert.equal(result?.ok, true);
      assert.equal(result.attempts, 3);
      const [a, b, c] = http.requests.map((r) => r.at);
      assert.ok(a !== undefined && b !== undefined && c !== undefined);
      assert.ok(b - a >= 90, `first retry after ${b - a}ms, expected ~100ms`);
      assert.ok(c - b >= 190, `second retry after ${c - b}ms, expected ~200ms`);
      assert.equal(records.filter((r) => /HTTP 500: busy; retrying/.test(String(r.msg))).length, 2);
    } finally {
      await http.close();
    }
  });

  test("gives up after the retries, naming the status", async () => {
    const http = await HttpReceiver.start(() => ({ status: 503, body: "maintenance" }));
    try {
      const [result] = await within(
        10_000,
        "notify-test",
        notifyTest(
          config({ webhooks: [{ url: http.url(), retries: 2, backoff: "10ms" }] }),
          memoryLog().log,
        ),
      );
      assert.equal(result?.ok, false);
      assert.equal(result.attempts, 3);
      assert.equal(result.code, "UPLINKD_ERR_NOTIFY");
      assert.match(result.error ?? "", /HTTP 503: maintenance/);
      assert.equal(http.requests.length, 3);
    } finally {
      await http.close();
    }
  });

  test("does not retry an answer that would not change (401)", async () => {
    const http = await HttpReceiver.start(() => ({ status: 401, body: "bad token" }));
    try {
      const [result] = await within(
        10_000,
        "notify-test",
        notifyTest(
          config({ webhooks: [{ url: http.url(), retries: 3, backoff: "10ms" }] }),
          memoryLog().log,
        ),
      );
      assert.equal(result?.ok, false);
      assert.equal(result.attempts, 1);
      assert.equal(http.requests.length, 1);
    } finally {
      await http.close();
    }
  });

  test("a receiver that never answers times out each attempt", async () => {
    const http = await HttpReceiver.start(() => "hang");
    try {
      const clock = new RecordingClock();
      const [result] = await within(
        5000,
        "notify-test",
        notifyTest(
          config({
            webhooks: [{ url: http.url(), timeout: "150ms", retries: 1, backoff: "50ms" }],
          }),
          memoryLog().log,
          { clock },
        ),
      );
      assert.equal(result?.ok, false);
      assert.equal(result.code, "UPLINKD_ERR_NOTIFY_TIMEOUT");
      assert.equal(result.attempts, 2);
      assert.equal(http.requests.length, 2);
      // Each attempt timed out on the clock at 150 ms, with one 50 ms backoff between them.
      const asked = `timers asked for: ${clock.delays.join(", ")} ms`;
      assert.equal(clock.count(150), 2, asked);
      assert.equal(clock.count(50), 1, asked);
      assert.ok(result.durationMs >= 350, `took ${result.durationMs} ms on the clock`);
    } finally {
      await http.close();
    }
  });

  test("logs only the URL's origin, never its secret path or query", async () => {
    const http = await HttpReceiver.start(() => ({ status: 500 }));
    try {
      const { log, records } = memoryLog();
      const url = http.url("/services/T0KEN-PATH?key=QUERY-SECRET");
      const [result] = await notifyTest(
        config({ webhooks: [{ url, retries: 1, backoff: "10ms" }] }),
        log,
      );
      assert.equal(result?.target, new URL(url).origin);
      assert.ok(records.length > 0);
      const logged = JSON.stringify(records);
      assert.doesNotMatch(logged, /T0KEN-PATH|QUERY-SECRET/);
    } finally {
      await http.close();
    }
  });
});

describe("hook scripts", () => {
  test("get the transition in environment variables; nothing is run through a shell", async () => {
    const envFile = join(dir, "hook-env");
    const argFile = join(dir, "hook-arg");
    const hook = await script(
      "dump-env.sh",
      'env -0 > "$1"\nprintf "%s" "$2" > "$1.arg"\nmv "$1.arg" "$3"',
    );
    const pwned = join(dir, "pwned");
    const reason = `loss 100% $(touch ${pwned}-1) \`touch ${pwned}-2\`; touch ${pwned}-3 && echo "quoted" 'single' $HOME`;
    const argument = `$(touch ${pwned}-4) *`;
    const notifier = new Notifier(
      config({ hooks: [{ command: [hook, envFile, argument, argFile] }] }),
      memoryLog().log,
      { interfaceOf },
    );
    notifier.notify({
      time: "2024-05-01T10:00:00.000Z",
      uplink: "isp1",
      family: 4,
      from: "up",
      to: "down",
      reason,
      loss: 100,
      rtt: null,
    });
    await within(5000, "flush", notifier.flush());
    const env = await readEnv(envFile);
    assert.equal(env.UPLINK, "isp1");
    assert.equal(env.INTERFACE, "wan1");
    assert.equal(env.STATE, "down");
    assert.equal(env.PREVIOUS_STATE, "up");
    assert.equal(env.REASON, reason);
    assert.equal(env.TIMESTAMP, "2024-05-01T10:00:00.000Z");
    assert.equal(env.LOSS, "100");
    assert.equal(env.RTT, "");
    assert.equal(env.EVENT, "transition");
    assert.equal(env.EVENT_COUNT, "1");
    assert.deepEqual(
      (JSON.parse(env.EVENTS_JSON ?? "") as { uplink: string; reason: string }[]).map((e) => [
        e.uplink,
        e.reason,
      ]),
      [["isp1", reason]],
    );
    assert.ok(env.PATH, "the daemon's environment is passed on");
    assert.equal(await readFile(argFile, "utf8"), argument, "arguments are passed as they are");
    for (const n of [1, 2, 3, 4])
      assert.equal(existsSync(`${pwned}-${n}`), false, `something ran "touch ${pwned}-${n}"`);
  });

  test("get their own env entries, secret ones too, which are never logged; the notification's variables are refused as names", async () => {
    const envFile = join(dir, "hook-own-env");
    const hook = await script("own-env.sh", 'env -0 > "$1"');
    const secret = "pager-key-0123456789";
    const memory = memoryLog();
    const notifier = new Notifier(
      config({
        hooks: [
          {
            command: [hook, envFile],
            env: { SITE: "north", PAGER_KEY: { value: secret, secret: true } },
          },
        ],
      }),
      memory.log,
      { interfaceOf },
    );
    notifier.notify(transition("isp1", "up", "down"));
    await within(5000, "flush", notifier.flush());
    const env = await readEnv(envFile);
    assert.equal(env.SITE, "north");
    assert.equal(env.PAGER_KEY, secret);
    assert.equal(env.UPLINK, "isp1");
    assert.ok(memory.records.length > 0);
    assert.ok(!JSON.stringify(memory.records).includes(secret), "the secret was logged");
    const refused = notifySchema.safeParse({ hooks: [{ command: [hook], env: { UPLINK: "x" } }] });
    assert.equal(refused.success, false);
    assert.match(JSON.stringify(refused.error.issues), /set by the notification itself/);
    assert.equal(
      notifySchema.safeParse({ hooks: [{ command: [hook], env: { "A-B": "x" } }] }).success,
      false,
    );
  });

  test("run once per transition, in order, without waiting for the coalescing window", async () => {
    const out = join(dir, "per-transition");
    const hook = await script("append.sh", 'echo "$UPLINK $PREVIOUS_STATE->$STATE" >> "$1"');
    const notifier = new Notifier(
      config({ coalesce: "1m", hooks: [{ command: [hook, out] }] }),
      memoryLog().log,
      {
        interfaceOf,
      },
    );
    notifier.notify(transition("isp1", "up", "down"));
    notifier.notify(transition("isp2", "up", "degraded"));
    notifier.notify(transition("isp1", "down", "up"));
    await until(
      5000,
      "three hook runs",
      async () => existsSync(out) && (await readFile(out, "utf8")).split("\n").length > 3,
    );
    assert.equal(await readFile(out, "utf8"), "isp1 up->down\nisp2 up->degraded\nisp1 down->up\n");
    await within(5000, "flush", notifier.flush());
  });

  test("are killed, with what they started, when they overstay their timeout", async () => {
    const pidFile = join(dir, "sleep-pid");
    const hook = await script("slow.sh", 'sleep 30 &\necho $! > "$1"\nwait');
    const started = Date.now();
    const [result] = await within(
      8000,
      "notify-test",
      notifyTest(
        config({ hooks: [{ command: [hook, pidFile], timeout: "300ms" }] }),
        memoryLog().log,
      ),
    );
    assert.equal(result?.ok, false);
    assert.equal(result.code, "UPLINKD_ERR_NOTIFY_TIMEOUT");
    assert.ok(Date.now() - started < 4000, `took ${Date.now() - started}ms`);
    const pid = Number((await readFile(pidFile, "utf8")).trim());
    assert.ok(pid > 0);
    await until(3000, `sleep (pid ${pid}) killed`, () => !running(pid));
  });

  test("their output goes to the log, and a non-zero exit is a failure", async () => {
    const hook = await script(
      "fails.sh",
      'echo "checked routes"\necho "vpn restart failed" >&2\nexit 3',
    );
    const { log, records } = memoryLog();
    const [result] = await within(
      5000,
      "notify-test",
      notifyTest(config({ hooks: [{ name: "vpn", command: [hook] }] }), log),
    );
    assert.equal(result?.ok, false);
    assert.equal(result.target, "vpn");
    assert.equal(result.error, "hook vpn: exited with status 3: vpn restart failed");
    const output = records.find((r) => r.channel === "hook" && "stdout" in r);
    assert.ok(output, "a log record with the output");
    assert.equal(output.stdout, "checked routes\n");
    assert.equal(output.stderr, "vpn restart failed\n");
    assert.equal(output.exitCode, 3);
  });

  test("a program that cannot be started is reported, not thrown", async () => {
    const [result] = await notifyTest(
      config({ hooks: [{ command: [join(dir, "missing.sh")] }] }),
      memoryLog().log,
    );
    assert.equal(result?.ok, false);
    assert.match(result.error ?? "", /cannot start .*missing\.sh: .*ENOENT/);
  });
});

describe("the Notifier", () => {
  test("a burst of 3 transitions within the window is one email, one webhook call, one burst hook run", async () => {
    const smtp = await SmtpServer.start();
    const http = await HttpReceiver.start();
    const runs = join(dir, "burst-runs");
    const hook = await script(
      "burst.sh",
      'printf "%s %s\\n" "$EVENT_COUNT" "$EVENTS_JSON" >> "$1"',
    );
    try {
      const clock = new ManualClock();
      // Called once for each burst, as it is composed: the window's observable end.
      let bursts = 0;
      const notifier = new Notifier(
        config({
          coalesce: "300ms",
          email: emailConfig(smtp.port),
          webhooks: [{ url: http.url() }],
          hooks: [{ command: [hook, runs], run: "burst" }],
        }),
        memoryLog().log,
        { interfaceOf, clock, statusProvider: () => (bursts++, []) },
      );
      notifier.notify(transition("isp1", "up", "down"));
      clock.advance(50);
      notifier.notify(transition("isp2", "up", "degraded"));
      clock.advance(50);
      notifier.notify(transition("lte", "init", "up"));
      clock.advance(199);
      assert.equal(bursts, 0, "nothing sent before the window closes");
      clock.advance(1);
      assert.equal(bursts, 1, "one burst when the window closes");
      await within(5000, "flush", notifier.flush());
      assert.equal(smtp.mails.length, 1);
      assert.equal(http.requests.length, 1);
      const [mail] = smtp.mails;
      const [request] = http.requests;
      assert.equal(header(mail?.data ?? "", "Subject"), "[uplinkd] 3 uplink changes");
      const body = decodeBody(mail?.data ?? "");
      for (const line of [
        "isp1 (wan1) IPv4: up → down",
        "isp2 (wan2) IPv4: up → degraded",
        "lte (wwan0) IPv4: init → up",
      ]) {
        assert.ok(body.includes(line), `body lists ${line}`);
      }
      const payload = JSON.parse(request?.body ?? "") as {
        summary: string;
        transitions: { uplink: string }[];
      };
      assert.equal(payload.summary, "3 uplink changes");
      assert.deepEqual(
        payload.transitions.map((t) => t.uplink),
        ["isp1", "isp2", "lte"],
      );
      const hookRuns = (await readFile(runs, "utf8")).trim().split("\n");
      assert.equal(hookRuns.length, 1);
      assert.match(hookRuns[0] ?? "", /^3 \[/);

      // A transition after the window closed opens a new one.
      notifier.notify(transition("isp1", "down", "up"));
      clock.advance(299);
      assert.equal(bursts, 1, "the new window is still open");
      clock.advance(1);
      await within(5000, "flush", notifier.flush());
      assert.equal(smtp.mails.length, 2);
      assert.equal(header(smtp.mails[1]?.data ?? "", "Subject"), "[uplinkd] isp1 IPv4 up");
    } finally {
      await smtp.close();
      await http.close();
    }
  });

  test("the window is timed on the injected clock", async () => {
    const http = await HttpReceiver.start();
    try {
      const clock = new ManualClock();
      let bursts = 0;
      const notifier = new Notifier(
        config({ coalesce: "2s", webhooks: [{ url: http.url() }] }),
        memoryLog().log,
        { interfaceOf, clock, statusProvider: () => (bursts++, []) },
      );
      notifier.notify(transition("isp1", "up", "down"));
      clock.advance(1000);
      notifier.notify(transition("isp2", "up", "down"));
      clock.advance(999);
      assert.equal(bursts, 0, "nothing sent before the window closes");
      clock.advance(1);
      assert.equal(bursts, 1, "sent when the window closes, 2 s after it opened");
      await within(5000, "flush", notifier.flush());
      assert.equal(http.requests.length, 1);
      const [request] = http.requests;
      const payload = JSON.parse(request?.body ?? "") as { time: string; transitions: unknown[] };
      assert.equal(payload.transitions.length, 2);
      assert.equal(payload.time, new Date(1_700_000_002_000).toISOString());
    } finally {
      await http.close();
    }
  });

  test("notify() returns at once while the SMTP server is stalled; other channels still deliver", async () => {
    const smtp = await SmtpServer.start({ stall: true });
    const http = await HttpReceiver.start();
    try {
      const { log, records } = memoryLog();
      const notifier = new Notifier(
        config({
          coalesce: 0,
          email: emailConfig(smtp.port, { timeout: "1s" }),
          webhooks: [{ url: http.url() }],
        }),
        log,
        { interfaceOf },
      );
      const started = performance.now();
      for (let i = 0; i < 5; i++)
        notifier.notify(transition("isp1", i % 2 ? "down" : "up", i % 2 ? "up" : "down"));
      const took = performance.now() - started;
      assert.ok(took < 50, `notify() took ${took}ms`);
      await http.waitForRequests(1, 900);
      await until(900, "the SMTP connection", () => smtp.connections > 0);
      assert.equal(
        records.filter((r) => r.channel === "email" && r.level === 50).length,
        0,
        "email still pending",
      );
      await within(5000, "flush", notifier.flush());
      const failure = records.find((r) => r.channel === "email" && r.level === 50);
      assert.equal(failure?.code, "UPLINKD_ERR_NOTIFY_TIMEOUT");
      assert.equal(smtp.mails.length, 0);
    } finally {
      await smtp.close();
      await http.close();
    }
  });

  test("notify() never throws, even when its callbacks do", async () => {
    const http = await HttpReceiver.start();
    try {
      const notifier = new Notifier(
        config({ coalesce: 0, webhooks: [{ url: http.url() }] }),
        memoryLog().log,
        {
          interfaceOf: () => {
            throw new Error("no such uplink");
          },
          statusProvider: () => {
            throw new Error("status unavailable");
          },
        },
      );
      assert.doesNotThrow(() => {
        notifier.notify(transition("isp1", "up", "down"));
      });
      await within(5000, "flush", notifier.flush());
      const payload = JSON.parse(http.requests[0]?.body ?? "") as {
        transitions: { interface: unknown }[];
        uplinks: unknown;
      };
      assert.equal(payload.transitions[0]?.interface, null);
      assert.equal(payload.uplinks, null);
    } finally {
      await http.close();
    }
  });

  test("transitions into states not listed in `states` are not notified", async () => {
    const http = await HttpReceiver.start();
    try {
      const notifier = new Notifier(
        config({ coalesce: 0, states: ["down"], webhooks: [{ url: http.url() }] }),
        memoryLog().log,
        { interfaceOf },
      );
      notifier.notify(transition("isp1", "down", "up"));
      notifier.notify(transition("isp1", "up", "degraded"));
      await within(5000, "flush", notifier.flush());
      assert.equal(http.requests.length, 0);
      notifier.notify(transition("isp1", "degraded", "down"));
      await within(5000, "flush", notifier.flush());
      assert.equal(http.requests.length, 1);
    } finally {
      await http.close();
    }
  });

  test("flush() sends an open burst at once and waits for it", async () => {
    const http = await HttpReceiver.start();
    try {
      const notifier = new Notifier(
        config({ coalesce: "10m", webhooks: [{ url: http.url() }] }),
        memoryLog().log,
        {
          interfaceOf,
        },
      );
      notifier.notify(transition("isp1", "up", "down"));
      await within(5000, "flush", notifier.flush());
      assert.equal(http.requests.length, 1);
    } finally {
      await http.close();
    }
  });

  test("test() reports ok or the error of every channel, in config order", async () => {
    const smtp = await SmtpServer.start();
    const ok = await HttpReceiver.start();
    const failing = await HttpReceiver.start(() => ({ status: 500, body: "down for maintenance" }));
    const envFile = join(dir, "test-env");
    const hook = await script("test-hook.sh", 'env -0 > "$1"');
    try {
      const results = await within(
        10_000,
        "test()",
        new Notifier(
          config({
            email: emailConfig(smtp.port),
            webhooks: [
              { name: "chat", url: ok.url() },
              { url: failing.url(), retries: 0 },
            ],
            hooks: [{ command: [hook, envFile] }],
          }),
          memoryLog().log,
          { interfaceOf },
        ).test(),
      );
      const summary = (r: NotifyResult) => [r.channel, r.target, r.ok, r.code ?? null];
      assert.deepEqual(results.map(summary), [
        ["email", `127.0.0.1:${smtp.port}`, true, null],
        ["webhook", "chat", true, null],
        ["webhook", new URL(failing.url()).origin, false, "UPLINKD_ERR_NOTIFY"],
        ["hook", hook, true, null],
      ]);
      assert.match(results[2]?.error ?? "", /HTTP 500: down for maintenance/);
      assert.equal((JSON.parse(ok.requests[0]?.body ?? "") as { type: string }).type, "test");
      const env = await readEnv(envFile);
      assert.equal(env.EVENT, "test");
      assert.equal(env.UPLINK, "");
      assert.equal(env.EVENTS_JSON, "[]");
      assert.deepEqual(await notifyTest(config({}), memoryLog().log), []);
    } finally {
      await smtp.close();
      await ok.close();
      await failing.close();
    }
  });
});

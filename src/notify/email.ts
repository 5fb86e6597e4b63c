/**
 * Email over SMTP (nodemailer): STARTTLS or TLS, AUTH, a deadline per
 * attempt, retries with exponential backoff on transient failures.
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import { createTransport } from "nodemailer";
import type { Clock } from "../clock.js";
import { NotifyError, NotifyTimeoutError } from "./errors.js";
import { withRetries } from "./retry.js";
import type { EmailConfig } from "../config/notify.js";

/** The default port of each `security` mode: submission, submissions, SMTP. */
export const DEFAULT_SMTP_PORT = { starttls: 587, tls: 465, none: 25 } as const;

/** What one email holds. */
export interface EmailMessage {
  /** One line. */
  subject: string;
  /** Plain text (UTF-8), lines ending with `\n`. */
  text: string;
}

/** The port an email config connects to: `port`, else the default of its `security`. */
export function smtpPort(email: EmailConfig): number {
  return email.port ?? DEFAULT_SMTP_PORT[email.security];
}

/** How the email channel is named in logs and results: `host:port`. */
export function emailTarget(email: EmailConfig): string {
  return `${email.host}:${smtpPort(email)}`;
}

/** nodemailer error codes after which another attempt would fail the same way. */
const PERMANENT_CODES = new Set([
  "EAUTH",
  "ENOAUTH",
  "ECONFIG",
  "EENVELOPE",
  "EMESSAGE",
  "ETLS",
  "EREQUIRETLS",
  "EMAXRECIPIENTS",
]);

/**
 * Sends one email to every recipient of `email.to`, from `email.from`.
 * `security: starttls` requires the server to offer STARTTLS; `tls` speaks
 * TLS from the first byte; `none` never encrypts (even when offered). The
 * certificate is verified unless `tls_verify` is false, against `ca_file`
 * when given. `password_file` is read at each attempt.
 *
 * Each attempt must finish within `email.timeout` ms of `clock` time
 * (connect, greeting, TLS, AUTH, DATA); attempts that fail for a transient
 * reason (network, timeout, SMTP 4xx) are retried `email.retries` times,
 * waiting `email.backoff` ms, then twice that, and so on. A permanent
 * rejection (SMTP 5xx, failed AUTH, bad certificate) is not retried.
 *
 * @param hostname the name this host gives in EHLO.
 * @returns the number of attempts made (>= 1).
 * @throws {RetriesExhausted} (from `./retry.js`) carrying the last
 *   `NotifyError` (`UPLINKD_ERR_NOTIFY` with the server's reply, or
 *   `UPLINKD_ERR_NOTIFY_TIMEOUT`) and the attempts made.
 */
export async function sendEmail(
  email: EmailConfig,
  message: EmailMessage,
  deps: { clock: Clock; log: Logger; hostname: string },
): Promise<number> {
  const target = emailTarget(email);
  return withRetries(
    () => sendOnce(email, message, target, deps),
    { retries: email.retries, backoffMs: email.backoff },
    deps.clock,
    (error) => smtpError(target, error),
    ({ attempt, error, delayMs }) => {
      deps.log.warn(
        { channel: "email", target, attempt, code: error.code, retryInMs: delayMs },
        `${error.message}; retrying in ${delayMs}ms`,
      );
    },
  );
}

async function sendOnce(
  email: EmailConfig,
  message: EmailMessage,
  target: string,
  deps: { clock: Clock; hostname: string },
): Promise<void> {
  const auth =
    email.username === undefined
      ? undefined
      : { user: email.username, pass: await password(email, target) };
  const ca = email.ca_file === undefined ? undefined : await readConfigFile(email.ca_file, target);
  const transport = createTransport({
    host: email.host,
    port: smtpPort(email),
    secure: email.security === "tls",
    requireTLS: email.security === "starttls",
    ignoreTLS: email.security === "none",
    name: deps.hostname,
    auth,
    tls: { rejectUnauthorized: email.tls_verify, ...(ca === undefined ? {} : { ca }) },
    connectionTimeout: email.timeout,
    greetingTimeout: email.timeout,
    socketTimeout: email.timeout,
    dnsTimeout: email.timeout,
    socketCloseTimeout: 0,
    disableFileAccess: true,
    disableUrlAccess: true,
    logger: false,
  });
  const controller = new AbortController();
  const timer = deps.clock.setTimeout(() => {
    controller.abort();
  }, email.timeout);
  try {
    await transport.sendMail({
      from: email.from,
      to: email.to,
      subject: message.subject,
      text: message.text,
      signal: controller.signal,
    });
  } catch (error) {
    if (controller.signal.aborted) {
      throw new NotifyTimeoutError("email", target, email.timeout, "SMTP delivery");
    }
    throw smtpError(target, error);
  } finally {
    deps.clock.clearTimeout(timer);
    transport.close();
  }
}

async function password(email: EmailConfig, target: string): Promise<string> {
  if (email.password !== undefined) return email.password;
  if (email.password_file === undefined) return "";
  return (await readConfigFile(email.password_file, target)).replace(/\r?\n$/, "");
}

async function readConfigFile(path: string, target: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new NotifyError("email", target, `cannot read ${path}: ${(error as Error).message}`, {
      retryable: false,
      cause: error,
    });
  }
}

/** The parts of a nodemailer error this module reads. */
interface SmtpFailure {
  message?: string;
  code?: string;
  /** The code of the underlying error, e.g. DEPTH_ZERO_SELF_SIGNED_CERT for an ESOCKET. */
  originalCode?: string;
  responseCode?: number;
  response?: string;
  permanent?: boolean;
}

/**
 * A nodemailer error as a NotifyError: the server's reply when there is one;
 * retryable unless the reply is permanent (5xx), the certificate could not
 * be verified, or the code says a retry would fail the same way (AUTH,
 * STARTTLS, envelope).
 */
function smtpError(target: string, error: unknown): NotifyError {
  const failure: SmtpFailure = typeof error === "object" && error !== null ? error : {};
  if (failure.code === "ETIMEDOUT") {
    return new NotifyError("email", target, failure.message ?? "timed out", {
      retryable: true,
      code: "UPLINKD_ERR_NOTIFY_TIMEOUT",
      cause: error,
    });
  }
  const certificate =
    failure.originalCode !== undefined && /CERT|SIGNATURE|ERR_TLS/.test(failure.originalCode);
  const retryable =
    failure.responseCode === undefined
      ? !certificate && !(failure.code !== undefined && PERMANENT_CODES.has(failure.code))
      : !(failure.permanent ?? (failure.responseCode >= 500 && failure.responseCode !== 503));
  const message = failure.message ?? String(error);
  const said = certificate
    ? `${message} (${failure.originalCode ?? ""}; give the server's CA in ca_file)`
    : message;
  return new NotifyError("email", target, said, { retryable, cause: error });
}

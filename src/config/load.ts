/**
 * Reading a config file: YAML -> schema -> cross-field checks -> `Config`.
 * Every problem is reported at once, each at its FILE:LINE:COL.
 */
import { readFile, stat } from "node:fs/promises";
import { Worker } from "node:worker_threads";
import {
  LineCounter,
  isCollection,
  isMap,
  isScalar,
  isSeq,
  parseDocument,
  type Node,
  type YAMLError,
} from "yaml";
import { ConfigError, type ConfigIssue } from "../errors.js";
import { checkConfig } from "./checks.js";
import { layoutMistakes } from "./indent.js";
import { friendlyMessage, zodIssueToConfigIssues } from "./messages.js";
import { configSchema, type Config } from "./schema.js";
import { ConfigSource, START, type ConfigPath } from "./source.js";
import { configWarnings } from "./warnings.js";

/** Where `uplinkd run` and `uplinkd check` look when no `-c FILE` is given. */
export const DEFAULT_CONFIG_PATH = "/etc/uplinkd/uplinkd.yaml";

/**
 * Validate config text and fill in every default.
 *
 * Runs in three stages and stops after the first that finds problems,
 * reporting all of that stage's problems at once: YAML syntax (tabs used to
 * indent and lines indented off their siblings said plainly at their line,
 * else the parser's errors, one per line), the schema (each at the offending value; a missing key at
 * the mapping that should hold it; an unknown key at the key), then checks
 * across fields (duplicate uplink names, interfaces and ids, ids beyond
 * `dataplane.mark_mask`, reserved routing tables, reliability above the
 * number of targets).
 *
 * @param text the file's content (UTF-8 YAML, one document).
 * @param file the name issues carry, as the user wrote it.
 * @returns the config; durations in ms, `mark_mask` as a number.
 * @throws {ConfigError} with every issue, sorted by line and column; paths
 *   are dotted with 0-based list indexes (`uplinks.1.gateway`).
 */
export function parseConfig(text: string, file: string): Config {
  const lines = new LineCounter();
  // Keys given twice are found below in one pass: the parser's own check
  // compares each key with every earlier one (100,000 keys took 2 minutes).
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  const source = new ConfigSource(file, doc, lines);

  if (doc.errors.length > 0) {
    // Tabs and lines off their siblings, said plainly at their own line, once each.
    const layout = layoutMistakes(text);
    if (layout.length > 0) {
      fail(layout.map((m) => source.issueAt({ line: m.line, col: m.col }, [], m.message)));
    }
    // Nesting too deep is reported once per level beyond the limit: keep the first.
    const deep = doc.errors.findIndex((error) => error.code === "RESOURCE_EXHAUSTION");
    const errors = doc.errors.filter(
      (error, index) => error.code !== "RESOURCE_EXHAUSTION" || index === deep,
    );
    // One message per line: the parser often reports one mistake several ways there.
    const seen = new Set<number>();
    const issues = errors
      .map((error) => yamlIssue(error, source))
      .filter((issue) => !seen.has(issue.line) && seen.add(issue.line));
    fail(issues);
  }
  const repeated = repeatedKeys(doc.contents, source);
  if (repeated.length > 0) fail(repeated);
  if (doc.contents === null) {
    fail([source.issueAt(START, [], "the config is empty; it needs at least lan and uplinks")]);
  }
  if (!isMap(doc.contents)) {
    fail([
      source.issueAt(
        START,
        [],
        "the config must be a mapping of keys (lan, uplinks, health, ...), not a single value or a list",
      ),
    ]);
  }

  const keys = unusableKeys(doc.contents, [], source);
  if (keys.length > 0) fail(keys);

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    fail([source.issueAt(START, [], `cannot read the YAML: ${(error as Error).message}`)]);
  }

  const result = configSchema.safeParse(data, { error: friendlyMessage });
  if (!result.success) {
    fail(
      result.error.issues.flatMap((issue) => zodIssueToConfigIssues(issue, source, configSchema)),
    );
  }

  const problems = checkConfig(result.data);
  if (problems.length > 0) {
    fail(problems.map((problem) => source.valueIssue(problem.path, problem.message)));
  }
  return result.data;
}

/**
 * Largest config file read, bytes (1 MiB): a real config is a few KiB;
 * parsing a much larger one costs seconds of CPU and much memory (the
 * daemon parses in a worker thread, {@link loadConfigOffThread}).
 */
export const MAX_CONFIG_BYTES = 1024 * 1024;

class ConfigTooLarge extends Error {
  constructor(readonly size: number) {
    super(`config of ${size} bytes`);
  }
}

/**
 * Read and validate a config file (see `parseConfig`).
 *
 * @param file path of the YAML file; default `DEFAULT_CONFIG_PATH`.
 * @throws {ConfigError} with every issue; a file that cannot be read gives
 *   one issue at line 1, column 1 that says why (missing, not allowed, a
 *   directory, larger than MAX_CONFIG_BYTES).
 */
export async function loadConfig(file: string = DEFAULT_CONFIG_PATH): Promise<Config> {
  let text: string;
  try {
    // Bounded: a huge file would cost seconds of CPU and much memory to parse.
    const size = (await stat(file)).size;
    if (size > MAX_CONFIG_BYTES) throw new ConfigTooLarge(size);
    text = await readFile(file, "utf8");
    if (Buffer.byteLength(text) > MAX_CONFIG_BYTES)
      throw new ConfigTooLarge(Buffer.byteLength(text));
  } catch (error) {
    const message =
      error instanceof ConfigTooLarge
        ? `the config is ${error.size} bytes; at most ${MAX_CONFIG_BYTES} are read (1 MiB)`
        : `cannot read the config: ${readFailure(error)}`;
    throw new ConfigError([{ file, ...START, path: "", message }]);
  }
  return parseConfig(text, file);
}

/** Options of {@link loadConfigOffThread}. */
export interface OffThreadOptions {
  /** Longest the worker may take, ms (default 30,000). */
  timeoutMs?: number;
  /** Most the worker's heap may hold, MB (default 512). */
  maxHeapMb?: number;
}

/**
 * The worker of {@link loadConfigOffThread}. From the build it is
 * `load-worker.js`; from the sources under tsx (tests, development) it is
 * `load-worker.ts`, which a worker can load only after registering tsx's
 * loader in its own thread (hooks of the parent thread do not reach it).
 */
function startWorker(file: string, maxHeapMb: number): Worker {
  const options = {
    workerData: { file },
    resourceLimits: { maxOldGenerationSizeMb: maxHeapMb },
    stdout: false,
    stderr: false,
  };
  if (!import.meta.url.endsWith(".ts")) {
    return new Worker(new URL("./load-worker.js", import.meta.url), options);
  }
  const tsx = import.meta.resolve("tsx/esm/api");
  const entry = new URL("./load-worker.ts", import.meta.url).href;
  const code = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(code, { ...options, eval: true });
}

/**
 * `loadConfig` in a worker thread, so that parsing (up to seconds for a
 * 1 MiB file built to be slow) does not stall the caller's event loop:
 * the daemon's probes, failover and control API go on during a reload.
 * The worker ends after one file; one that runs past `timeoutMs` or needs
 * more heap than `maxHeapMb` is stopped, and the file is refused.
 *
 * @param file path of the YAML file.
 * @returns the config, as `loadConfig` returns it.
 * @throws {ConfigError} as `loadConfig`, and with one issue at line 1,
 *   column 1 when the worker ran out of time or memory or failed to start.
 */
export function loadConfigOffThread(file: string, options: OffThreadOptions = {}): Promise<Config> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const maxHeapMb = options.maxHeapMb ?? 512;
  const refuse = (message: string): ConfigError =>
    new ConfigError([{ file, ...START, path: "", message }]);
  return new Promise<Config>((resolve, reject) => {
    const worker = startWorker(file, maxHeapMb);
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      fn();
    };
    const timer = setTimeout(() => {
      settle(() => {
        reject(refuse(`reading the config took longer than ${timeoutMs / 1000} s; it was stopped`));
      });
    }, timeoutMs);
    worker.once(
      "message",
      (
        m: { ok: true; config: Config } | { ok: false; issues?: ConfigIssue[]; message?: string },
      ) => {
        settle(() => {
          if (m.ok) resolve(m.config);
          else
            reject(
              m.issues === undefined
                ? refuse(`cannot read the config: ${m.message ?? "unknown error"}`)
                : new ConfigError(m.issues),
            );
        });
      },
    );
    worker.once("error", (error: Error & { code?: string }) => {
      settle(() => {
        reject(
          refuse(
            error.code === "ERR_WORKER_OUT_OF_MEMORY"
              ? `reading the config needed more than ${maxHeapMb} MB; it was stopped`
              : `cannot read the config: ${error.message}`,
          ),
        );
      });
    });
    worker.once("exit", (code) => {
      settle(() => {
        reject(refuse(`cannot read the config: its worker ended (exit ${code}) without an answer`));
      });
    });
  });
}

/**
 * Read and validate a config file (see `parseConfig`), and locate the
 * warnings of `configWarnings` in it (health targets that answer only in a
 * lab, unless the config says `private_targets: true`).
 *
 * @returns the config and one issue per warning (FILE:LINE:COL, path,
 *   message), in file order.
 * @throws {ConfigError} as `loadConfig`.
 */
export async function loadConfigWithWarnings(
  file: string = DEFAULT_CONFIG_PATH,
): Promise<{ config: Config; warnings: ConfigIssue[] }> {
  const config = await loadConfig(file);
  const exposed = await exposedSecrets(file, config);
  return { config, warnings: [...exposed, ...(await locateIssues(file, configWarnings(config)))] };
}

/**
 * Place findings about a valid config file (`path`, `message`) at their
 * FILE:LINE:COL, in file order; a path not in the file (a default) is
 * placed at its closest parent and says so.
 */
export async function locateIssues(
  file: string,
  found: readonly { path: ConfigPath; message: string }[],
): Promise<ConfigIssue[]> {
  if (found.length === 0) return [];
  const text = await readFile(file, "utf8");
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines });
  const source = new ConfigSource(file, doc, lines);
  return found
    .map((issue) =>
      source.valueIssue(
        issue.path,
        doc.hasIn(issue.path) ? issue.message : `${issue.message} (not in the file: a default)`,
      ),
    )
    .sort((a, b) => a.line - b.line || a.col - b.col);
}

/**
 * A warning at 1:1 when `config` holds secrets (API tokens, the SMTP
 * password, webhooks' URLs and headers, hook variables marked secret) and
 * its file is readable by group
 * or others (mode & 0o044); none otherwise.
 */
async function exposedSecrets(file: string, config: Config): Promise<ConfigIssue[]> {
  const held = [
    ...(config.control.tokens.length > 0 ? ["control.tokens"] : []),
    ...(config.notify?.email?.password !== undefined ? ["notify.email.password"] : []),
    ...((config.notify?.webhooks.length ?? 0) > 0 ? ["notify.webhooks"] : []),
    ...(config.notify?.hooks.some((hook) => Object.values(hook.env).some((e) => e.secret)) === true
      ? ["notify.hooks[].env"]
      : []),
  ];
  if (held.length === 0) return [];
  const mode = (await stat(file)).mode & 0o777;
  if ((mode & 0o044) === 0) return [];
  return [
    {
      file,
      ...START,
      path: "",
      message: `holds secrets (${held.join(", ")}) and is readable by ${
        mode & 0o004 ? "everyone" : "its group"
      } (mode ${mode.toString(8).padStart(4, "0")}): chmod 600 it, or keep the SMTP password in notify.email.password_file`,
    },
  ];
}

/** Throws the issues as one ConfigError, in file order. */
function fail(issues: ConfigIssue[]): never {
  const sorted = issues
    .map((issue, index) => ({ issue, index }))
    .sort((a, b) => a.issue.line - b.issue.line || a.issue.col - b.issue.col || a.index - b.index)
    .map(({ issue }) => issue);
  throw new ConfigError(sorted);
}

function yamlIssue(error: YAMLError, source: ConfigSource): ConfigIssue {
  // Some messages of the yaml package carry their own "at line L, column C: <excerpt>".
  const said = error.message.replace(/ at line \d+, column \d+:[\s\S]*$/, "").trim();
  const message =
    error.code === "MULTIPLE_DOCS"
      ? "the config must be one YAML document; remove this '---' and what follows"
      : error.code === "RESOURCE_EXHAUSTION"
        ? `lists and mappings are nested too deeply to read (${said})`
        : said;
  return source.issueAt(source.position(error.pos[0]), [], message);
}

/**
 * Keys given a second time in the same mapping, each at its second (and
 * later) occurrence: "Map keys must be unique", as the YAML parser says it.
 * Scalar keys are compared by value (`1` and `"1"` differ); one pass with
 * a set per mapping, so the time is linear in the number of keys. Aliases
 * are not followed.
 */
function repeatedKeys(root: Node | null, source: ConfigSource): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const stack: (Node | null)[] = [root];
  while (stack.length > 0) {
    const node = stack.pop() ?? null;
    if (isSeq(node)) {
      for (const item of node.items) stack.push(item as Node | null);
    } else if (isMap(node)) {
      const seen = new Set<unknown>();
      for (const pair of node.items) {
        const key = pair.key as Node | null;
        if (isScalar(key)) {
          if (seen.has(key.value)) {
            issues.push(
              source.issueAt(source.position(key.range?.[0] ?? 0), [], "Map keys must be unique"),
            );
          }
          seen.add(key.value);
        }
        stack.push(key, pair.value as Node | null);
      }
    }
  }
  return issues;
}

/**
 * Keys that a JavaScript object cannot hold as written, each located at the
 * key: a list or mapping as a key (YAML's `? [a, b]`), which would become
 * text, and `__proto__`, which an object does not keep as a key, so its
 * value would be dropped without a word. Aliases are not followed (their
 * anchors are walked where they are defined).
 */
function unusableKeys(node: Node | null, path: ConfigPath, source: ConfigSource): ConfigIssue[] {
  if (isSeq(node)) {
    return node.items.flatMap((item, index) =>
      unusableKeys(item as Node | null, [...path, index], source),
    );
  }
  if (!isMap(node)) return [];
  return node.items.flatMap((pair) => {
    const key = pair.key as Node | null;
    const at = source.position(key?.range?.[0] ?? 0);
    if (isCollection(key)) {
      return [source.issueAt(at, path, "a key must be a plain name, not a list or a mapping")];
    }
    const name = isScalar(key) ? String(key.value) : "";
    if (name === "__proto__") {
      return [source.issueAt(at, [...path, name], '"__proto__" cannot be used as a key')];
    }
    return unusableKeys(pair.value as Node | null, [...path, name], source);
  });
}

function readFailure(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOENT":
      return "no such file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "it is a directory, not a file";
    default:
      return (error as Error).message;
  }
}

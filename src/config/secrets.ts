/**
 * Config values that are secrets: the API tokens, the SMTP password, webhook
 * URLs (they often carry a token in their path) and webhook header values
 * (Authorization). The schema marks each with `.meta({ secret: true })` (so
 * the JSON Schema shows it); this list is the same set as paths, for code
 * that prints configs or their differences: the reload diff (CLI, log,
 * `POST /reload`) shows a secret only as `(changed)`. A hook's environment
 * entry is secret when it says so (`{ value, secret: true }`).
 */

/** Paths of the secret fields; `*` is any list index or mapping key. */
export const SECRET_FIELDS: readonly (readonly string[])[] = [
  ["control", "tokens", "*", "token"],
  ["notify", "email", "password"],
  ["notify", "webhooks", "*", "url"],
  ["notify", "webhooks", "*", "headers", "*"],
];

/**
 * Paths of entries that are secret when they say so, `{ value, secret:
 * true }`: the hooks' environment (`notify.hooks[].env.NAME`). Their
 * `value` is masked like a secret field.
 */
export const MARKED_SECRET_FIELDS: readonly (readonly string[])[] = [
  ["notify", "hooks", "*", "env", "*"],
];

/** What a secret is replaced with when a config is printed. */
export const SECRET_MASK = "***";

/** The mask for a secret that differs from the other side's: the diff prints `(changed)`. */
export const SECRET_CHANGED = "*** (changed)";

type Tree = unknown;

function isContainer(value: Tree): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

type Leaf = (before: Tree, after: Tree) => [Tree, Tree];

/** A secret value: `***`, and `*** (changed)` on the side that differs. */
const maskValue: Leaf = (before, after) => {
  const same = JSON.stringify(before) === JSON.stringify(after);
  return [
    before === undefined ? undefined : SECRET_MASK,
    after === undefined ? undefined : same ? SECRET_MASK : SECRET_CHANGED,
  ];
};

/** An entry `{ value, secret }`: its value masked when either side says `secret: true`. */
const maskMarked: Leaf = (before, after) => {
  const marked = (entry: Tree) =>
    isContainer(entry) && (entry as { secret?: unknown }).secret === true;
  if (!marked(before) && !marked(after)) return [before, after];
  const value = (entry: Tree) => (isContainer(entry) ? entry.value : entry);
  const [b, a] = maskValue(value(before), value(after));
  const put = (entry: Tree, masked: Tree): Tree =>
    entry === undefined ? undefined : isContainer(entry) ? { ...entry, value: masked } : masked;
  return [put(before, b), put(after, a)];
};

function mask(before: Tree, after: Tree, path: readonly string[], leaf: Leaf): [Tree, Tree] {
  if (path.length === 0) return leaf(before, after);
  const [head = "", ...rest] = path;
  const b = isContainer(before) ? (Array.isArray(before) ? [...before] : { ...before }) : before;
  const a = isContainer(after) ? (Array.isArray(after) ? [...after] : { ...after }) : after;
  const keys =
    head === "*"
      ? new Set([
          ...(isContainer(b) ? Object.keys(b) : []),
          ...(isContainer(a) ? Object.keys(a) : []),
        ])
      : new Set([head]);
  for (const key of keys) {
    const inB = isContainer(b) && Object.hasOwn(b, key);
    const inA = isContainer(a) && Object.hasOwn(a, key);
    if (!inB && !inA) continue;
    const [nb, na] = mask(inB ? b[key] : undefined, inA ? a[key] : undefined, rest, leaf);
    if (inB) b[key] = nb;
    if (inA) a[key] = na;
  }
  return [b, a];
}

/**
 * Two configs (validated or raw) with every secret replaced: `***` where it
 * is the same on both sides, `*** (changed)` on the `after` side where it
 * differs. Secret fields ({@link SECRET_FIELDS}) always; entries of
 * {@link MARKED_SECRET_FIELDS} when marked `secret: true` on either side
 * (so turning the mark off does not print the old value). The inputs are
 * not modified.
 */
export function maskSecrets(before: Tree, after: Tree): [Tree, Tree] {
  let pair: [Tree, Tree] = [before, after];
  for (const path of SECRET_FIELDS) pair = mask(pair[0], pair[1], path, maskValue);
  for (const path of MARKED_SECRET_FIELDS) pair = mask(pair[0], pair[1], path, maskMarked);
  return pair;
}

/**
 * One config (validated or raw) with every secret replaced by `***`, for
 * printing it whole (see {@link maskSecrets}). The input is not modified.
 */
export function redactSecrets(config: Tree): Tree {
  return maskSecrets(config, config)[1];
}

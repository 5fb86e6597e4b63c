/**
 * Config values that are secrets: the API tokens, the SMTP password, webhook
 * URLs (they often carry a token in their path) and webhook header values
 * (Authorization). The schema marks each with `.meta({ secret: true })` (so
 * the JSON Schema shows it); this list is the same set as paths, for code
 * that prints configs or their differences: the reload diff (CLI, log,
 * `POST /reload`) shows a secret only as `(changed)`.
 */

/** Paths of the secret fields; `*` is any list index or mapping key. */
export const SECRET_FIELDS: readonly (readonly string[])[] = [
  ["control", "tokens", "*", "token"],
  ["notify", "email", "password"],
  ["notify", "webhooks", "*", "url"],
  ["notify", "webhooks", "*", "headers", "*"],
];

/** What a secret is replaced with when a config is printed. */
export const SECRET_MASK = "***";

/** The mask for a secret that differs from the other side's: the diff prints `(changed)`. */
export const SECRET_CHANGED = "*** (changed)";

type Tree = unknown;

function isContainer(value: Tree): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function mask(before: Tree, after: Tree, path: readonly string[]): [Tree, Tree] {
  if (path.length === 0) {
    const same = JSON.stringify(before) === JSON.stringify(after);
    return [
      before === undefined ? undefined : SECRET_MASK,
      after === undefined ? undefined : same ? SECRET_MASK : SECRET_CHANGED,
    ];
  }
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
    const [nb, na] = mask(inB ? b[key] : undefined, inA ? a[key] : undefined, rest);
    if (inB) b[key] = nb;
    if (inA) a[key] = na;
  }
  return [b, a];
}

/**
 * Two configs (validated or raw) with every secret replaced: `***` where it
 * is the same on both sides, `*** (changed)` on the `after` side where it
 * differs. The inputs are not modified.
 */
export function maskSecrets(before: Tree, after: Tree): [Tree, Tree] {
  let pair: [Tree, Tree] = [before, after];
  for (const path of SECRET_FIELDS) pair = mask(pair[0], pair[1], path);
  return pair;
}

/**
 * Text that crosses from data into something parsed: the quoting helpers
 * the renderers use (nft, `ip -batch`, keepalived.conf, conntrackd.conf),
 * each refusing what it cannot write safely, and the cleaning of text from
 * outside (reason texts, names) before it reaches a mail body, a hook's
 * environment or a terminal.
 *
 * The config schema (src/config/names.ts) refuses unsafe names and paths
 * with their FILE:LINE:COL; these guards hold for every other caller too.
 */
import { UnsafeTextError } from "./errors.js";

/** Characters nft cannot hold inside a quoted string: `"` ends it, `\` is not an escape there, controls. */
const NFT_STRING_UNSAFE = /["\\]|[^\x20-\x7e]/;

/**
 * `text` as an nft quoted string (`"wan1"`).
 * @throws {UnsafeTextError} when `text` holds `"`, `\`, a control or format
 *   character or anything outside printable ASCII (nft 1.0.6 ends a string
 *   at any `"`; `\"` does not escape it).
 */
export function nftString(text: string): string {
  if (NFT_STRING_UNSAFE.test(text)) throw new UnsafeTextError("an nft string", text);
  return `"${text}"`;
}

/** One word of `ip -batch` input: printable ASCII without quotes, `\` or `#` (iproute2's makeargs). */
const IP_WORD = /^[\x21-\x7e]+$/;
const IP_WORD_UNSAFE = /["'\\#]/;

/**
 * `text` as one word of an `ip -batch` line. iproute2 splits batch lines on
 * blanks, honours `"` and `'` quoting and `\` escapes, and ends a line at
 * `#` (a comment), so none of them may appear in a word.
 * @throws {UnsafeTextError} when `text` is empty or holds a blank, a quote,
 *   `\`, `#`, a control character or non-ASCII.
 */
export function ipWord(text: string): string {
  if (!IP_WORD.test(text) || IP_WORD_UNSAFE.test(text)) {
    throw new UnsafeTextError("an ip -batch word", text);
  }
  return text;
}

/**
 * Characters of a value written unquoted on one line of keepalived.conf
 * or conntrackd.conf: letters, digits and `_ . / - + @ % , = :`. Blanks
 * split words there, `#` and `!` start comments, `{`/`}` open and close
 * blocks, `"` quotes and `$` expands a keepalived `$VAR`.
 */
const CONF_WORD = /^[A-Za-z0-9_./+@%,=:-]+$/;

/**
 * `text` as one value of a keepalived.conf or conntrackd.conf line.
 * @param context names the file, for the error (`keepalived.conf`).
 * @throws {UnsafeTextError} when `text` holds anything outside
 *   letters, digits and `_ . / - + @ % , = :` (or is empty).
 */
export function confWord(text: string, context: string): string {
  if (!CONF_WORD.test(text)) throw new UnsafeTextError(`a ${context} value`, text);
  return text;
}

/** ANSI/VT escape sequences: CSI (`ESC [ ... final`), OSC (`ESC ] ... BEL|ST`) and two-byte escapes. */
const ANSI_ESCAPE =
  // eslint-disable-next-line no-control-regex
  /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]/g;

/** Control characters (C0, DEL, C1) and bidirectional/format controls (U+202E and friends). */
const CONTROL = /[\p{Cc}\p{Cf}\u2028\u2029]/gu;

/**
 * Text from outside (a reason text, a name, a hook's output) made safe for
 * one line of a mail body, a hook's environment, a log or a terminal: ANSI
 * escape sequences removed, every other control or format character (CR,
 * LF, TAB, NUL, U+202E) replaced by a space, runs of blanks kept.
 * @param text any string.
 * @returns the same text without control characters; printable text is unchanged.
 */
export function cleanText(text: string): string {
  return text.replace(ANSI_ESCAPE, "").replace(CONTROL, " ");
}

/**
 * Text of several lines from outside (a status table, an error the daemon
 * sent) made safe for a terminal: each line cleaned as {@link cleanText},
 * the line breaks (`\n`) kept. A CR is replaced like any other control, so
 * no line can overwrite another on the screen.
 * @param text any string.
 * @returns the same lines without escape sequences or control characters.
 */
export function cleanLines(text: string): string {
  return text.split("\n").map(cleanText).join("\n");
}

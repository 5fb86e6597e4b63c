/**
 * The schema pieces for names and paths that end up in generated text:
 * nft chains and comments, `ip -batch` lines, keepalived.conf,
 * conntrackd.conf, dnsmasq fragments and command arguments. Each accepts
 * only characters that cannot change the meaning of the text around them,
 * so a refusal points at the config line (FILE:LINE:COL) rather than at a
 * renderer (src/text.ts holds the renderers' own guards).
 *
 * Free of imports from the other config modules, which all use it.
 */
import { z } from "zod";

/** Longest name of an uplink, policy, set, rule or HA node, characters. */
export const MAX_NAME_LENGTH = 32;

/**
 * A name of the config's own things (rules, API tokens): starts with a
 * letter or digit, then letters, digits, `_`, `-` and `.`, at most `max`
 * characters (ASCII only: no quotes, controls or look-alike Unicode). With
 * `spaces`, single blanks may also appear inside (a rule's "guest web"):
 * such a name is only ever written inside a quoted nft comment or a log.
 */
export function safeName(max = MAX_NAME_LENGTH, options: { spaces?: boolean } = {}) {
  const inner = options.spaces === true ? "[A-Za-z0-9_. -]" : "[A-Za-z0-9_.-]";
  return z
    .string()
    .regex(
      new RegExp(`^[A-Za-z0-9](?:${inner}{0,${max - 2}}[A-Za-z0-9_.-])?$`),
      `must start with a letter or digit and hold only letters, digits, '_', '-'${
        options.spaces === true ? ", '.' and inner spaces" : " and '.'"
      } (at most ${max})`,
    );
}

/** Longest interface name in bytes: IFNAMSIZ (16, include/uapi/linux/if.h) less the NUL. */
export const MAX_INTERFACE_NAME_BYTES = 15;

/**
 * Whether `name` is an interface name uplinkd accepts: what the kernel's
 * dev_valid_name() allows (1..15 bytes, no `/`, `:` or blank, not `.` or
 * `..`), further narrowed to printable ASCII without quotes, `\`, `#`, `;`,
 * `$`, backticks, braces or `*`, which mean something to nft, `ip -batch`,
 * keepalived or a shell.
 */
export function isInterfaceName(name: string): boolean {
  return (
    /^[A-Za-z0-9_.@+=%-]{1,15}$/.test(name) &&
    name !== "." &&
    name !== ".." &&
    Buffer.byteLength(name) <= MAX_INTERFACE_NAME_BYTES
  );
}

/** An interface name (see {@link isInterfaceName}). */
export const interfaceName = z
  .string()
  .refine(
    isInterfaceName,
    "must be a Linux interface name: 1 to 15 of letters, digits and '_ . - + @ = %' (not '.' or '..')",
  );

/** Longest path accepted, bytes (PATH_MAX less the NUL). */
export const MAX_PATH_BYTES = 4095;

/**
 * Whether `path` is a file path uplinkd accepts: absolute, at most 4,095
 * bytes, of letters, digits and `_ . / - + @ % , = :` only. So no blanks,
 * control characters, newlines, quotes, `$`, backticks, `\`, `#`, `;` or
 * braces: a path can be written into keepalived.conf, conntrackd.conf, a
 * dnsmasq option or a command line without quoting.
 */
export function isSafePath(path: string): boolean {
  return /^\/[A-Za-z0-9_./+@%,=:-]*$/.test(path) && Buffer.byteLength(path) <= MAX_PATH_BYTES;
}

/** An absolute file path (see {@link isSafePath}). */
export const safePath = z
  .string()
  .refine(
    isSafePath,
    "must be an absolute path of letters, digits and '_ . / - + @ % , = :' (no blanks, quotes, '$', backticks, '#' or control characters)",
  );

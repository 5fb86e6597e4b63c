/**
 * Where a value sits in a config file: maps a key path (`uplinks.1.gateway`)
 * to the line and column of its YAML node, so every problem can be reported
 * as FILE:LINE:COL.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from "yaml";
import type { ConfigIssue } from "../errors.js";

/** A key path into the config: mapping keys and 0-based list indexes. */
export type ConfigPath = readonly (string | number)[];

/** One problem found by `checkConfig` (./checks.ts): the value to blame and what is wrong. */
export interface ConfigProblem {
  /** Path of the offending value, e.g. `["uplinks", 1, "id"]`. */
  path: ConfigPath;
  message: string;
}

/** 1-based line and column in the file. */
export interface Position {
  line: number;
  col: number;
}

/** Formats a key path the way issues show it: `uplinks.1.gateway`; `""` for the document. */
export function dottedPath(path: ConfigPath): string {
  return path.map(String).join(".");
}

/** The first position of a file, where problems of the whole file are reported. */
export const START: Position = { line: 1, col: 1 };

/** What a walk along a path found: the deepest node reached and the key node that led to it. */
interface Found {
  /** The node at the whole path, or undefined when the path leaves the file. */
  node: Node | undefined;
  /** The deepest collection or value on the path that exists in the file. */
  deepest: Node | undefined;
  /** The key node of the last mapping entry on the path that exists. */
  key: Node | undefined;
}

/** A parsed config file that can tell where each value is. */
export class ConfigSource {
  readonly file: string;
  readonly #doc: Document;
  readonly #lines: LineCounter;

  /**
   * @param file the file name issues carry (as the user gave it).
   * @param doc the document from `parseDocument(text, { lineCounter })`.
   * @param lines the LineCounter that parsed `doc`.
   */
  constructor(file: string, doc: Document, lines: LineCounter) {
    this.file = file;
    this.#doc = doc;
    this.#lines = lines;
  }

  /** The 1-based position of a character offset in the file. */
  position(offset: number): Position {
    const { line, col } = this.#lines.linePos(offset);
    return { line, col };
  }

  /** An issue at a position. */
  issueAt(position: Position, path: ConfigPath, message: string): ConfigIssue {
    return { file: this.file, ...position, path: dottedPath(path), message };
  }

  /**
   * An issue about the value at `path`, located at that value. A value that
   * is not in the file (a missing key) is located at the mapping that
   * should hold it; an empty value (`key:` and nothing) at its key.
   */
  valueIssue(path: ConfigPath, message: string): ConfigIssue {
    return this.issueAt(this.valuePosition(path), path, message);
  }

  /**
   * An issue about the key that ends `path` (an unknown key), located at
   * the key itself rather than its value.
   */
  keyIssue(path: ConfigPath, message: string): ConfigIssue {
    const found = this.#walk(path);
    const at = found.node !== undefined ? found.key : undefined;
    return this.issueAt(this.#start(at ?? found.deepest), path, message);
  }

  /** Position of the value at `path` (see `valueIssue`). */
  valuePosition(path: ConfigPath): Position {
    const found = this.#walk(path);
    if (found.node === undefined) return this.#start(found.deepest);
    if (isEmptyScalar(found.node) && found.key !== undefined) return this.#start(found.key);
    return this.#start(found.node);
  }

  #start(node: Node | undefined): Position {
    const offset = node?.range?.[0];
    return offset === undefined ? START : this.position(offset);
  }

  #walk(path: ConfigPath): Found {
    let node = this.#resolve(this.#doc.contents ?? undefined);
    let key: Node | undefined;
    let deepest = node;
    for (const step of path) {
      if (node === undefined) return { node, deepest, key };
      deepest = node;
      if (isMap(node)) {
        const pair = node.items.find(
          (p) => isScalar(p.key) && String(p.key.value) === String(step),
        );
        if (pair === undefined) return { node: undefined, deepest, key };
        key = pair.key as Node;
        node = this.#resolve(pair.value as Node | null);
        // `key:` with nothing after it: a pair without a value node.
        if (node === undefined) return { node: key, deepest: key, key };
      } else if (isSeq(node) && typeof step === "number") {
        node = this.#resolve(node.items[step] as Node | null | undefined);
        key = undefined;
      } else {
        return { node: undefined, deepest, key };
      }
    }
    return { node, deepest: node ?? deepest, key };
  }

  #resolve(node: Node | null | undefined): Node | undefined {
    if (node === null || node === undefined) return undefined;
    if (isAlias(node)) return node.resolve(this.#doc) ?? node;
    return node;
  }
}

/** `key:` with no value: a null scalar that takes no room in the file. */
function isEmptyScalar(node: Node): boolean {
  return isScalar(node) && node.value === null && node.range?.[0] === node.range?.[1];
}

/**
 * YAML layout mistakes in plain words: tabs in indentation and lines
 * indented off their siblings, one message per mistake, at the line that
 * holds it. The yaml package reports these as several errors each, often
 * at the line before ("Nested mappings are not allowed in compact
 * mappings"); this scan of the text says what a person did instead. Pure.
 */

/** One layout mistake: 1-based line and column, and what to do. */
export interface LayoutMistake {
  line: number;
  col: number;
  message: string;
}

/** A line that holds YAML content (not blank, not only a comment). */
interface Significant {
  /** 1-based. */
  line: number;
  /** Spaces before the first character. */
  indent: number;
  /** Column (0-based) where a mapping key or a list item's content starts. */
  keyCol: number;
  /** Ends with `key:` (a block follows) or is a bare `-`. */
  opensBlock: boolean;
  /** Opens a block scalar (`|`, `>`): deeper lines are its text. */
  opensScalar: boolean;
}

function spaces(n: number): string {
  return `${n} space${n === 1 ? "" : "s"}`;
}

/** The line without a trailing comment (a `#` after a space, outside quotes: good enough for layout). */
function withoutComment(text: string): string {
  const hash = text.search(/(^|\s)#/);
  return (hash < 0 ? text : text.slice(0, hash)).trimEnd();
}

function significant(text: string, line: number): Significant | undefined {
  const indent = text.length - text.trimStart().length;
  const body = withoutComment(text.slice(indent));
  if (body === "") return undefined;
  let keyCol = indent;
  let rest = body;
  while (/^-( |$)/.test(rest)) {
    const next = rest.slice(1);
    const pad = next.length - next.trimStart().length;
    keyCol += 1 + pad;
    rest = next.trimStart();
  }
  return {
    line,
    indent,
    keyCol,
    opensBlock: rest === "" || /:$/.test(rest),
    opensScalar: /:\s*[|>][-+0-9]*$/.test(rest) || /^[|>][-+0-9]*$/.test(rest),
  };
}

/**
 * Tabs used to indent (one mistake per line) and lines indented off their
 * siblings: deeper than the line before it without a `key:` opening a
 * block ("line 5 is indented 5 spaces, its siblings 4"), or shallower but
 * at no enclosing level. Block scalars' text and flow collections spread
 * over lines are not judged.
 *
 * @param text the config file's text.
 * @returns the mistakes in line order; empty when the layout is fine.
 */
export function layoutMistakes(text: string): LayoutMistake[] {
  const lines = text.split(/\r?\n/);
  const mistakes: LayoutMistake[] = [];
  const tabs = new Set<number>();
  lines.forEach((raw, i) => {
    const lead = /^[ \t]*/.exec(raw)?.[0] ?? "";
    if (lead.includes("\t") && raw.trim() !== "") {
      tabs.add(i + 1);
      mistakes.push({
        line: i + 1,
        col: lead.indexOf("\t") + 1,
        message: "tabs are not allowed: use spaces to indent",
      });
    }
  });
  if (tabs.size > 0) return mistakes;

  /** Enclosing levels (lines whose block holds the lines after them), with their children's indent. */
  const stack: (Significant & { childIndent?: number })[] = [];
  let previous: Significant | undefined;
  let scalarIndent: number | undefined;
  let flowDepth = 0;
  for (const [i, raw] of lines.entries()) {
    if (raw.trim() === "") continue;
    const indent = raw.length - raw.trimStart().length;
    if (scalarIndent !== undefined) {
      if (indent > scalarIndent) continue;
      scalarIndent = undefined;
    }
    if (flowDepth > 0) {
      const body = withoutComment(raw);
      flowDepth += (body.match(/[[{]/g)?.length ?? 0) - (body.match(/[\]}]/g)?.length ?? 0);
      continue;
    }
    const here = significant(raw, i + 1);
    if (here === undefined) continue;
    const mistake = (siblings: number): void => {
      mistakes.push({
        line: here.line,
        col: 1,
        message: `line ${here.line} is indented ${spaces(here.indent)}, its siblings ${spaces(siblings)}: indent it like them`,
      });
    };
    while (stack.length > 0 && (stack.at(-1)?.indent ?? 0) >= here.indent) stack.pop();
    const parent = stack.at(-1);
    if (previous !== undefined && here.indent > previous.indent && !previous.opensBlock) {
      // Deeper than a line that opens no block: only a list item's next key may be.
      if (here.indent !== previous.keyCol) {
        mistake(previous.keyCol > previous.indent ? previous.keyCol : previous.indent);
        continue;
      }
    } else if (parent === undefined ? here.indent !== 0 && previous !== undefined : false) {
      mistake(0);
      continue;
    } else if (
      parent?.childIndent !== undefined &&
      here.indent !== parent.childIndent &&
      here.indent < (previous?.indent ?? 0)
    ) {
      mistake(parent.childIndent);
      continue;
    }
    if (parent !== undefined) parent.childIndent ??= here.indent;
    if (here.opensBlock || here.keyCol > here.indent) {
      stack.push(here.keyCol > here.indent ? { ...here, childIndent: here.keyCol } : { ...here });
    }
    if (here.opensScalar) scalarIndent = here.indent;
    const body = withoutComment(raw);
    flowDepth = Math.max(
      0,
      (body.match(/[[{]/g)?.length ?? 0) - (body.match(/[\]}]/g)?.length ?? 0),
    );
    previous = here;
  }
  return mistakes;
}

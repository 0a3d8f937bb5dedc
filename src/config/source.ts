/**
 * A configuration file's text as a document: YAML for `.yaml`/`.yml`, JSON
 * otherwise. Both are read through the `yaml` package's line counter, so a
 * refusal can name the line of the key it is about (JSON is parsed with
 * JSON.parse for its exact semantics, and located only when needed).
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';

export interface Position {
  /** 1-based. */
  readonly line: number;
  /** 1-based. */
  readonly column: number;
}

export interface ConfigSource {
  readonly format: 'json' | 'yaml';
  readonly document: unknown;
  /** Where the key at `path` is written, or its nearest ancestor that is; undefined if none is. */
  locate(path: readonly (string | number)[]): Position | undefined;
}

/** The text could not be read as a document at all. */
export class SyntaxProblem {
  constructor(
    readonly problem: string,
    readonly position: Position | undefined,
  ) {}
}

/** YAML aliases expand; a document that would expand past this is refused ("billion laughs"). */
const MAX_ALIAS_COUNT = 100;

export function isYamlFile(path: string): boolean {
  return /\.ya?ml$/i.test(path);
}

/** The document in `text`, or the reason it is not one (with its position when the parser knows it). */
export function readSource(path: string, text: string): ConfigSource | SyntaxProblem {
  return isYamlFile(path) ? readYaml(text) : readJson(text);
}

function readYaml(text: string): ConfigSource | SyntaxProblem {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, merge: true, prettyErrors: false });
  const first = doc.errors[0];
  if (first !== undefined) {
    return new SyntaxProblem(`not valid YAML: ${first.message}`, positionOf(lines, first.pos[0]));
  }
  let document: unknown;
  try {
    document = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    return new SyntaxProblem(`not valid YAML: ${(err as Error).message}`, undefined);
  }
  return { format: 'yaml', document, locate: (path) => locateIn(doc, lines, path) };
}

function readJson(text: string): ConfigSource | SyntaxProblem {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (err) {
    return new SyntaxProblem(`not valid JSON: ${(err as Error).message}`, undefined);
  }
  const locate = (path: readonly (string | number)[]) => {
    const lines = new LineCounter();
    return locateIn(parseDocument(text, { lineCounter: lines, uniqueKeys: false }), lines, path);
  };
  return { format: 'json', document, locate };
}

/** Walk the key path through maps and sequences; the position of the deepest key found. */
function locateIn(doc: Document, lines: LineCounter, path: readonly (string | number)[]): Position | undefined {
  let node: unknown = doc.contents;
  let found: Position | undefined;
  for (const segment of path) {
    let at: Node | undefined;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      at = pair?.key as Node | undefined;
      node = pair?.value;
    } else if (isSeq(node) && typeof segment === 'number') {
      at = node.items[segment] as Node | undefined;
      node = at;
    } else {
      break;
    }
    const start = at?.range?.[0];
    if (start === undefined) break;
    found = positionOf(lines, start);
    if (node === undefined || node === null) break;
  }
  return found;
}

function positionOf(lines: LineCounter, offset: number): Position {
  const { line, col } = lines.linePos(offset);
  return { line, column: col };
}

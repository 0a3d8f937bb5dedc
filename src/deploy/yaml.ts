/**
 * A small YAML emitter for generated manifests: mappings, sequences,
 * strings, numbers, booleans and null, in block style. A string is written
 * plain only when no YAML 1.1 or 1.2 reader can take it for anything else
 * (kubectl reads YAML 1.1, where `yes`, `on` and `12:30` are not strings);
 * otherwise it is double-quoted, or a literal block when it spans lines.
 */

export type YamlValue = string | number | boolean | null | readonly YamlValue[] | YamlMap;
export interface YamlMap {
  readonly [key: string]: YamlValue | undefined;
}

const INDENT = 2;
const PLAIN = /^[A-Za-z/][A-Za-z0-9._/-]*$/;
/** Words YAML 1.1 or 1.2 reads as booleans, null or special floats. */
const RESERVED = /^(?:y|n|yes|no|on|off|true|false|null|nan|inf)$/i;
/** Printable text a literal block can hold as-is: no control characters but TAB and LF, no BOM. */
const BLOCK_SAFE = /^[^\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\u2028\u2029]*$/;

/** Documents as one multi-document stream, each opened by `---`. */
export function formatYamlDocuments(documents: readonly YamlValue[], header: readonly string[] = []): string {
  const lines = header.map((line) => (line === '' ? '#' : `# ${line}`));
  for (const document of documents) {
    lines.push('---', ...formatNode(document, 0));
  }
  return `${lines.join('\n')}\n`;
}

export function formatScalar(value: string | number | boolean | null): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`cannot write ${value} as YAML`);
    return String(value);
  }
  return PLAIN.test(value) && !RESERVED.test(value) ? value : quote(value);
}

/** JSON's escapes are YAML's; JSON leaves NEL, LS, PS and BOM raw, which YAML reads as breaks or marks. */
function quote(value: string): string {
  return JSON.stringify(value).replace(/[\x7f-\x9f\u2028\u2029\ufeff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A node at column `indent`: its lines, the first one not yet prefixed by a key or `- `. */
function formatNode(value: YamlValue, indent: number): string[] {
  const pad = ' '.repeat(indent);
  if (isList(value)) {
    if (value.length === 0) return [`${pad}[]`];
    return value.flatMap((item) => formatItem(item, indent));
  }
  if (isMap(value)) {
    const entries = definedEntries(value);
    if (entries.length === 0) return [`${pad}{}`];
    return entries.flatMap(([key, item]) => formatEntry(key, item, indent));
  }
  if (typeof value === 'string' && isBlock(value)) return [`${pad}${blockHeader(value)}`, ...blockBody(value, indent + INDENT)];
  return [`${pad}${formatScalar(value)}`];
}

function formatEntry(key: string, value: YamlValue, indent: number): string[] {
  const head = `${' '.repeat(indent)}${formatScalar(key)}:`;
  if (typeof value === 'string' && isBlock(value)) return [`${head} ${blockHeader(value)}`, ...blockBody(value, indent + INDENT)];
  if (isList(value) && value.length > 0) return [head, ...formatNode(value, indent)];
  if (isMap(value) && definedEntries(value).length > 0) return [head, ...formatNode(value, indent + INDENT)];
  return [`${head} ${formatNode(value, 0)[0] ?? ''}`];
}

/** A sequence item: the nested node is written one level in, then its first line takes the `- `. */
function formatItem(value: YamlValue, indent: number): string[] {
  const inner = formatNode(value, indent + INDENT);
  const first = inner[0] ?? '';
  return [`${' '.repeat(indent)}- ${first.slice(indent + INDENT)}`, ...inner.slice(1)];
}

/** Multi-line text a literal block holds as-is: no trailing blanks, and no leading blank that would need an indentation indicator. */
function isBlock(value: string): boolean {
  return value.includes('\n') && BLOCK_SAFE.test(value) && !/[ \t]\n|[ \t]$|^[ \n]/.test(value);
}

/** `|` keeps one final newline, `|-` none, `|+` several. */
function blockHeader(value: string): string {
  return value.endsWith('\n\n') ? '|+' : value.endsWith('\n') ? '|' : '|-';
}

function blockBody(value: string, indent: number): string[] {
  const pad = ' '.repeat(indent);
  const body = value.endsWith('\n') ? value.slice(0, -1) : value;
  return body.split('\n').map((line) => (line === '' ? '' : `${pad}${line}`));
}

function isList(value: YamlValue): value is readonly YamlValue[] {
  return Array.isArray(value);
}

function isMap(value: YamlValue): value is YamlMap {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function definedEntries(map: YamlMap): [string, YamlValue][] {
  return Object.entries(map).filter((entry): entry is [string, YamlValue] => entry[1] !== undefined);
}

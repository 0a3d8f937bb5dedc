/**
 * The manifest emitter: every scalar reads back as itself under YAML 1.2
 * and under YAML 1.1 (what kubectl's reader speaks), and nesting survives.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parseDocument } from 'yaml';
import { formatScalar, formatYamlDocuments, type YamlValue } from '../../../src/deploy/yaml.js';

function readBack(text: string, version: '1.1' | '1.2'): unknown[] {
  const documents = parseAllDocuments(text, { version });
  if (!Array.isArray(documents)) throw new Error('expected a document stream');
  for (const d of documents) expect(d.errors, text).toEqual([]);
  return documents.map((d) => d.toJS());
}

// One trap a row: what a careless emitter writes plain and a reader takes for something else.
const SCALARS: [string, YamlValue][] = [
  ['YAML 1.1 boolean yes', 'yes'],
  ['YAML 1.1 boolean capitalised', 'On'],
  ['YAML 1.1 boolean y', 'y'],
  ['YAML 1.1 boolean NO', 'NO'],
  ['boolean word', 'true'],
  ['null word', 'null'],
  ['tilde null', '~'],
  ['empty string', ''],
  ['integer-looking', '21'],
  ['octal-looking', '0755'],
  ['hex-looking', '0x1F'],
  ['float-looking', '1e3'],
  ['YAML 1.1 sexagesimal', '12:30'],
  ['YAML 1.1 underscore integer', '1_000'],
  ['special float', '.inf'],
  ['quantity', '250m'],
  ['leading space', ' lead'],
  ['trailing space', 'trail '],
  ['colon space', 'a: b'],
  ['comment marker', 'a #b'],
  ['leading hash', '#x'],
  ['leading dash', '- x'],
  ['leading star (alias)', '*x'],
  ['leading ampersand (anchor)', '&x'],
  ['leading bang (tag)', '!x'],
  ['flow characters', '{a}'],
  ['quote inside', 'say "hi"'],
  ['backslash', 'C:\\path'],
  ['tab', 'a\tb'],
  ['non-ASCII', 'café'],
  ['control character', 'bell\u0007'],
  ['NEL (a line break in YAML 1.1)', 'a\u0085b'],
  ['line separator', 'a\u2028b'],
  ['path', '/etc/ftp-alg'],
  ['label key', 'app.kubernetes.io/name'],
  ['CIDR', '0.0.0.0/0'],
  ['IPv6 CIDR', '::/0'],
  ['multi-line with final newline', '{\n  "a": 1\n}\n'],
  ['multi-line without final newline', 'line 1\nline 2'],
  ['multi-line with two final newlines', 'x\n\n'],
  ['multi-line starting with a space', ' indented\nnext'],
  ['multi-line starting with a newline', '\nafter'],
  ['multi-line with trailing spaces', 'a  \nb'],
  ['multi-line with a document marker', 'a\n---\nb'],
  ['number', 50000],
  ['negative number', -1],
  ['float', 0.25],
  ['boolean', false],
  ['null', null],
];

describe('formatYamlDocuments: scalars read back unchanged', () => {
  for (const version of ['1.1', '1.2'] as const) {
    it.each(SCALARS)(`YAML ${version}: %s`, (_name, value) => {
      const text = formatYamlDocuments([{ key: value, list: [value], nested: { inner: [{ key: value }] } }]);
      expect(readBack(text, version)).toEqual([{ key: value, list: [value], nested: { inner: [{ key: value }] } }]);
    });
  }
});

describe('formatYamlDocuments: any text', () => {
  const text = fc.string({ unit: 'binary', maxLength: 40 });
  const lines = fc.array(fc.oneof(text, fc.constantFrom('', ' ', '#', '- ', ': ', 'yes', '0x1', '---')), { maxLength: 6 }).map((parts) => parts.join('\n'));
  for (const version of ['1.1', '1.2'] as const) {
    it(`YAML ${version}: keys and values read back unchanged`, () => {
      fc.assert(
        fc.property(fc.oneof(text, lines), fc.oneof(text, lines), (key, value) => {
          const document = { [key]: value, list: [value] };
          expect(readBack(formatYamlDocuments([document]), version)).toEqual([document]);
        }),
        { numRuns: 500 },
      );
    });
  }
});

describe('formatYamlDocuments: structure', () => {
  it('writes several documents, each opened by ---', () => {
    const text = formatYamlDocuments([{ a: 1 }, { b: [1, 2] }, 'plain'], ['header line', '']);
    expect(text.startsWith('# header line\n#\n---\n')).toBe(true);
    expect(readBack(text, '1.2')).toEqual([{ a: 1 }, { b: [1, 2] }, 'plain']);
  });

  it('round-trips nested lists, maps and empty collections', () => {
    const value: YamlValue = {
      empty: {},
      none: [],
      matrix: [[1, 2], [], [[3]]],
      items: [{ a: { b: [{ c: 'd' }] } }, {}, [], 'x'],
      'key: with colon': 'v',
      '': 'empty key',
    };
    expect(readBack(formatYamlDocuments([value]), '1.1')).toEqual([value]);
  });

  it('leaves out undefined members', () => {
    expect(readBack(formatYamlDocuments([{ a: 1, b: undefined }]), '1.2')).toEqual([{ a: 1 }]);
  });

  it('writes a multi-line string as a literal block', () => {
    const text = formatYamlDocuments([{ data: { 'ftp-alg.json': '{\n  "a": 1\n}\n' } }]);
    expect(text).toContain('ftp-alg.json: |\n    {\n      "a": 1\n    }\n');
  });

  it('writes safe words plain and everything else quoted', () => {
    expect(formatScalar('ClusterFirstWithHostNet')).toBe('ClusterFirstWithHostNet');
    expect(formatScalar('yes')).toBe('"yes"');
    expect(formatScalar('21')).toBe('"21"');
    expect(parseDocument(formatScalar('a\u0085b'), { version: '1.1' }).toJS()).toBe('a\u0085b');
  });

  it('refuses numbers YAML cannot hold', () => {
    expect(() => formatScalar(Number.NaN)).toThrow();
    expect(() => formatScalar(Number.POSITIVE_INFINITY)).toThrow();
  });
});

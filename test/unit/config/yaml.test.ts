/**
 * YAML configuration files: the same schema and validation as JSON, and a
 * refusal names the file, the line and column of the key, and the key; a
 * YAML syntax error names its line. Every shipped example exists as JSON
 * and as commented YAML, and both validate to the same object.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, keyPath, loadConfigFile } from '../../../src/config/load.js';

const CONFIG_DIR = fileURLToPath(new URL('../../../config/', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'ftp-alg-yaml-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let written = 0;
function file(extension: string, text: string): string {
  const path = join(scratch, `config-${++written}.${extension}`);
  writeFileSync(path, text);
  return path;
}

function refusal(path: string): ConfigError {
  try {
    loadConfigFile(path);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`accepted: ${path}`);
}

/** One valid site in YAML, lines 1-9; `extra` lines go inside the site, from line 10 on. */
const SITE = `sites:
  - name: main
    listen:
      host: 127.0.0.1
      port: 2121
    upstream:
      host: 192.0.2.10
    passivePorts: { min: 50000, max: 50099 }
    activePorts: { min: 50100, max: 50199 }
`;

describe('the shipped examples', () => {
  const files = readdirSync(CONFIG_DIR, { recursive: true, encoding: 'utf8' }).sort();
  const yaml = files.filter((f) => /\.ya?ml$/.test(f));
  const json = files.filter((f) => f.endsWith('.json'));

  it('every JSON example has a YAML twin, and every YAML one a JSON twin', () => {
    expect(json.length).toBeGreaterThan(0);
    expect(yaml.map((f) => f.replace(/\.ya?ml$/, ''))).toEqual(json.map((f) => f.replace(/\.json$/, '')));
  });

  it.each(yaml)('%s validates to the same object as its JSON twin', (name) => {
    const fromYaml = loadConfigFile(join(CONFIG_DIR, name));
    const fromJson = loadConfigFile(join(CONFIG_DIR, name.replace(/\.ya?ml$/, '.json')));
    expect(fromYaml.sites.length).toBeGreaterThan(0);
    expect(fromYaml).toEqual(fromJson);
  });
});

describe('a YAML file is validated by the one schema, and a refusal names file, line and key', () => {
  const rows: Array<[string, string, string, number, RegExp]> = [
    ['a bad address', SITE.replace('host: 127.0.0.1', 'host: localhost'), 'sites[0].listen.host', 4, /must be an IP address/],
    ['an unknown key in a site', `${SITE}    upstreamHost: 192.0.2.1\n`, 'sites[0].upstreamHost', 10, /unknown key/],
    ['an unknown key in a section', `${SITE}    timeouts:\n      idleMs: 5\n`, 'sites[0].timeouts.idleMs', 11, /unknown key/],
    ['an unknown top-level key', `log: { level: info }\ncolour: blue\n${SITE}`, 'colour', 2, /unknown key/],
    ['min above max (a cross-key check)', SITE.replace('min: 50000, max: 50099', 'min: 50099, max: 50000'), 'sites[0].passivePorts', 8, /greater than max/],
    ['a port out of range', SITE.replace('port: 2121', 'port: 70000'), 'sites[0].listen.port', 5, /0 to 65535/],
    ['a string where a number belongs', SITE.replace('port: 2121', 'port: "2121"'), 'sites[0].listen.port', 5, /must be a number, got "2121"/],
    ['a mapping where a list belongs (convict would merge it into the default: an empty allow list, everyone)', `${SITE}    clients:\n      allow: { office: 198.51.100.0/24 }\n`, 'sites[0].clients.allow', 11, /must be a list, got \{"office":"198.51.100.0\/24"\}/],
    ['a YAML 1.1 boolean word (YAML 1.2 reads it as a string, which convict would coerce to true)', `${SITE}    activeMode: { enabled: yes }\n`, 'sites[0].activeMode.enabled', 10, /must be true or false, got "yes"/],
  ];
  it.each(rows)('%s', (_name, text, key, line, problem) => {
    const path = file('yaml', text);
    const err = refusal(path);
    expect(err.key).toBe(key);
    expect(err.line).toBe(line);
    expect(err.problem).toMatch(problem);
    expect(err.message).toMatch(new RegExp(`^${escape(path)}:${line}:\\d+: ${escape(key)}: `));
  });

  it('an unknown key in the second site names its own line', () => {
    const second = `  - name: b\n    listen: { host: 127.0.0.2, port: 2121 }\n    upstream: { host: 192.0.2.11 }\n    privateAddress: 10.0.0.2\n    passiv: {}\n`;
    const err = refusal(file('yml', SITE + second));
    expect(err.key).toBe('sites[1].passiv');
    expect(err.line).toBe(14);
    expect(err.position?.column).toBe(5);
  });

  it('a missing key is reported at its nearest written ancestor', () => {
    const err = refusal(file('yaml', SITE.replace('      host: 192.0.2.10\n', '      port: 21\n')));
    expect(err.key).toBe('sites[0].upstream.host');
    expect(err.line).toBe(6); // the `upstream:` line
  });

  it('a document that is not a mapping is refused without a key', () => {
    const err = refusal(file('yaml', '- just\n- a list\n'));
    expect(err.key).toBe('');
    expect(err.message).toMatch(/must be an object/);
  });

  it('an empty file is refused', () => {
    expect(refusal(file('yaml', '# nothing but a comment\n')).message).toMatch(/must be an object/);
  });
});

describe('YAML syntax errors name their line', () => {
  const rows: Array<[string, string, number]> = [
    ['bad indentation', `${SITE}   badly: indented\n`, 10],
    ['an unclosed flow mapping', SITE.replace('{ min: 50100, max: 50199 }', '{ min: 50100, max: 50199'), 10],
    ['a bare IPv6 wildcard (":" starts a mapping)', SITE.replace('host: 127.0.0.1', 'host: ::'), 4],
    ['a duplicate key', SITE.replace('      port: 2121\n', '      port: 2121\n      port: 2122\n'), 6],
    ['a tab used for indentation', SITE.replace('      port: 2121', '\tport: 2121'), 5],
  ];
  it.each(rows)('%s', (_name, text, line) => {
    const path = file('yaml', text);
    const err = refusal(path);
    expect(err.message).toMatch(/not valid YAML/);
    expect(err.line).toBe(line);
    expect(err.message.startsWith(`${path}:${line}:`)).toBe(true);
  });

  it('two documents in one file are refused', () => {
    expect(refusal(file('yaml', `${SITE}---\n${SITE}`)).message).toMatch(/not valid YAML/);
  });

  it('an alias bomb is refused, not expanded', () => {
    const rows = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 8; i++) rows.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(', ')}]`);
    expect(refusal(file('yaml', `${rows.join('\n')}\n`)).message).toMatch(/not valid YAML.*alias/i);
  });
});

describe('YAML conveniences', () => {
  it('anchors, aliases and merge keys share settings between sites', () => {
    const text = `sites:
  - &base
    name: a
    listen: { host: 127.0.0.1, port: 2121 }
    privateAddress: 10.0.0.1
    upstream: { host: 192.0.2.10, port: 2121 }
    timeouts: &timeouts { controlIdleMs: 60000 }
    passivePorts: { min: 50000, max: 50099 }
    activePorts: { min: 50100, max: 50199 }
  - <<: *base
    name: b
    listen: { host: 127.0.0.2, port: 2121 }
    privateAddress: 10.0.0.2
    timeouts: *timeouts
`;
    const [a, b] = loadConfigFile(file('yaml', text)).sites;
    expect(b?.name).toBe('b');
    expect(b?.upstream).toEqual(a?.upstream);
    expect(b?.timeouts.controlIdleMs).toBe(60_000);
    expect(b?.passivePorts).toEqual({ min: 50_000, max: 50_099 });
    expect(b?.listen.host).toBe('127.0.0.2');
  });
});

describe('JSON files get lines too', () => {
  it('a schema error in a JSON file names its line', () => {
    const text = JSON.stringify({ sites: [{ name: 'main', upstream: { host: 'ftp.example.com' } }] }, null, 2);
    const err = refusal(file('json', text));
    expect(err.key).toBe('sites[0].upstream.host');
    expect(err.line).toBe(6);
  });

  it('a file that is not JSON still says so', () => {
    expect(refusal(file('json', '{ "sites": [')).message).toMatch(/not valid JSON/);
  });

  it('a file that cannot be read names it', () => {
    const path = join(scratch, 'absent.yaml');
    expect(refusal(path).message).toBe(`${path}: cannot read: ENOENT`);
  });
});

describe('keyPath', () => {
  it.each<[string, (string | number)[]]>([
    ['colour', ['colour']],
    ['sites[0].listen.host', ['sites', 0, 'listen', 'host']],
    ['sites[12].limits.maxSessions', ['sites', 12, 'limits', 'maxSessions']],
  ])('%s', (key, path) => {
    expect(keyPath(key)).toEqual(path);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

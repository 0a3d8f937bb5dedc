/**
 * `sites[].tls`: optional (absent: today's ftps policy), its defaults, and
 * every refusal naming the key: unreadable files, a key that does not match
 * its certificate, files of the wrong kind, contradicting keys. The files
 * are real PEM made by openssl for this file.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../../src/config/load.js';
import { type CertFiles, tlsSection, useTestCerts } from '../../support/certs.js';

type Doc = Record<string, unknown>;
const testCerts = useTestCerts();
let certs: CertFiles;
beforeEach(() => {
  certs = testCerts();
});

function site(extra: Doc = {}): Doc {
  return {
    name: 'main',
    listen: { host: '127.0.0.1', port: 2121 },
    upstream: { host: '192.0.2.10', port: 21 },
    passivePorts: { min: 50_000, max: 50_099 },
    activePorts: { min: 50_100, max: 50_199 },
    ...extra,
  };
}

const withTls = (tls: unknown) => ({ sites: [site({ tls })] });
const files = () => ({ certFile: certs.certFile, keyFile: certs.keyFile });

function refusal(document: unknown): string {
  try {
    parseConfig(document);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('accepted');
}

describe('sites[].tls is optional', () => {
  it('absent: no tls, the ftps policy as before', () => {
    const s = parseConfig({ sites: [site({ ftps: 'deny' })] }).sites[0];
    expect(s?.tls).toBeUndefined();
    expect(s?.ftps).toBe('deny');
    expect(Object.keys(s ?? {})).not.toContain('tls');
  });

  it('given: every key gets its default, frozen', () => {
    const s = parseConfig(withTls(files())).sites[0];
    expect(s?.tls).toEqual(tlsSection(certs)); // the defaults, written out in test/support/certs.ts
    expect(Object.isFrozen(s?.tls)).toBe(true);
  });

  it.each([
    ['optional', undefined, false],
    ['required', undefined, true],
    ['required', false, false],
    ['optional', true, true],
  ] as const)('client %s, requireProtP %s: PROT P required is %s', (client, requireProtP, expected) => {
    const tls = { ...files(), client, ...(requireProtP !== undefined && { requireProtP }) };
    expect(parseConfig(withTls(tls)).sites[0]?.tls?.requireProtP).toBe(expected);
  });

  it('every key set', () => {
    const tls = {
      ...files(),
      client: 'required',
      implicit: true,
      upstream: 'explicit',
      upstreamCaFile: certs.caFile,
      clientCaFile: certs.caFile,
      minVersion: 'TLSv1.3',
      requireProtP: false,
      allowCcc: true,
    };
    expect(parseConfig(withTls(tls)).sites[0]?.tls).toEqual({ ...tls, upstreamInsecure: false });
  });
});

describe('sites[].tls refusals name the key', () => {
  const rows: Array<[string, () => unknown, string, RegExp]> = [
    ['a key that belongs to another certificate', () => ({ ...files(), keyFile: certs.lonelyKeyFile }), 'keyFile', /does not match the certificate/],
    ['the rotated key with the first certificate', () => ({ ...files(), keyFile: certs.keyFile2 }), 'keyFile', /does not match/],
    ['a certificate file that does not exist', () => ({ ...files(), certFile: `${certs.dir}/nope.crt` }), 'certFile', /cannot read .*ENOENT/],
    ['a key file that does not exist', () => ({ ...files(), keyFile: `${certs.dir}/nope.key` }), 'keyFile', /cannot read .*ENOENT/],
    ['a directory as certificate', () => ({ ...files(), certFile: certs.dir }), 'certFile', /cannot read .*EISDIR/],
    ['no certFile', () => ({ keyFile: certs.keyFile }), 'certFile', /must name a PEM file/],
    ['no keyFile', () => ({ certFile: certs.certFile }), 'keyFile', /must name a PEM file/],
    ['a key where the certificate goes', () => ({ ...files(), certFile: certs.keyFile }), 'certFile', /no PEM certificate/],
    ['a certificate where the key goes', () => ({ ...files(), keyFile: certs.certFile }), 'keyFile', /not a PEM private key/],
    ['an unreadable client CA', () => ({ ...files(), clientCaFile: `${certs.dir}/nope-ca.crt` }), 'clientCaFile', /cannot read/],
    ['a client CA that is a key', () => ({ ...files(), clientCaFile: certs.keyFile }), 'clientCaFile', /no PEM certificate/],
    ['an unreadable upstream CA', () => ({ ...files(), upstream: 'explicit', upstreamCaFile: `${certs.dir}/nope-ca.crt` }), 'upstreamCaFile', /cannot read/],
    ['an upstream CA for a plain upstream', () => ({ ...files(), upstreamCaFile: certs.caFile }), 'upstreamCaFile', /upstream is "plain"/],
    ['upstreamInsecure with an upstream CA', () => ({ ...files(), upstream: 'implicit', upstreamCaFile: certs.caFile, upstreamInsecure: true }), 'upstreamInsecure', /set one of them/],
    ['an unknown key', () => ({ ...files(), ciphers: 'ALL' }), 'ciphers', /unknown key/],
    ['client neither optional nor required', () => ({ ...files(), client: 'maybe' }), 'client', /must be one of/],
    ['upstream mode unknown', () => ({ ...files(), upstream: 'starttls' }), 'upstream', /must be one of/],
    ['TLS 1.1 as minimum', () => ({ ...files(), minVersion: 'TLSv1.1' }), 'minVersion', /must be one of/],
    ['requireProtP a string', () => ({ ...files(), requireProtP: 'yes' }), 'requireProtP', /true, false or null/],
    ['implicit a string', () => ({ ...files(), implicit: 'yes' }), 'implicit', /must be true or false/],
    ['upstreamInsecure "false" (a string, not false)', () => ({ ...files(), upstream: 'explicit', upstreamInsecure: 'false' }), 'upstreamInsecure', /must be true or false/],
  ];
  it.each(rows)('%s', (_name, tls, key, problem) => {
    const message = refusal(withTls(tls()));
    expect(message.startsWith(`sites[0].tls.${key}: `)).toBe(true);
    expect(message).toMatch(problem);
  });

  it('tls that is not an object', () => {
    expect(refusal(withTls('on'))).toBe('sites[0].tls: must be an object');
    expect(refusal(withTls(null))).toBe('sites[0].tls: must be an object');
  });

  it('the second site is named when it is the bad one', () => {
    const second = site({ name: 'two', listen: { host: '127.0.0.1', port: 2122 }, passivePorts: { min: 50_200, max: 50_299 }, activePorts: { min: 50_300, max: 50_399 }, tls: { ...files(), keyFile: certs.lonelyKeyFile } });
    expect(refusal({ sites: [site({ tls: files() }), second] })).toMatch(/^sites\[1\]\.tls\.keyFile: /);
  });
});

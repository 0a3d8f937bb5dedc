/** USER user@host, SITE host, OPEN host: tables, then fast-check (several @, brackets, ports, NUL, long lines). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ProxyTarget, parseProxyHost, parseProxyUser } from '../../../src/ftp/proxyTarget.js';
import type { Parsed } from '../../../src/ftp/result.js';

const RUNS = { numRuns: Number(process.env.FUZZ_RUNS ?? 2000) };

const show = (r: Parsed<ProxyTarget>) =>
  r.ok ? `${r.value.user ?? '-'} ${r.value.host} ${r.value.port ?? '-'}${r.value.literal ? '' : ' name'}` : `refused ${r.reason}`;

describe('parseProxyUser', () => {
  const rows: [string, string][] = [
    ['alice@ftp.example.org', 'alice ftp.example.org - name'],
    ['alice@ftp.example.org:2121', 'alice ftp.example.org 2121 name'],
    ['alice@192.0.2.10', 'alice 192.0.2.10 -'],
    ['alice@192.0.2.10:21', 'alice 192.0.2.10 21'],
    ['alice@[2001:db8::1]:2121', 'alice 2001:db8::1 2121'],
    ['alice@[2001:DB8:0::1]', 'alice 2001:db8::1 -'],
    ['alice@2001:db8::1', 'alice 2001:db8::1 -'],
    ['alice@example.com@ftp.example.org', 'alice@example.com ftp.example.org - name'],
    ['a@b@c@192.0.2.1:2000', 'a@b@c 192.0.2.1 2000'],
    ['anonymous@FTP.Example.ORG.', 'anonymous ftp.example.org - name'],
    ['alice', 'refused no-host'],
    ['@ftp.example.org', 'refused empty-user'],
    ['alice@', 'refused empty-host'],
    ['alice@ftp.example.org:0', 'refused bad-port'],
    ['alice@ftp.example.org:65536', 'refused bad-port'],
    ['alice@ftp.example.org:021021', 'refused bad-port'],
    ['alice@ftp.example.org:', 'refused bad-port'],
    ['alice@ftp.example.org:-1', 'refused bad-port'],
    ['alice@[192.0.2.1]:21', 'refused bad-host'],
    ['alice@[2001:db8::1', 'refused bad-host'],
    ['alice@[2001:db8::1]x', 'refused bad-host'],
    ['alice@[fe80::1%eth0]', 'refused bad-host'],
    ['alice@127.1', 'refused bad-host'],
    ['alice@010.0.0.1', 'refused bad-host'],
    ['alice@ftp_example.org', 'refused bad-host'],
    ['alice@-ftp.example.org', 'refused bad-host'],
    ['alice@ftp.example.org 21', 'refused bad-host'],
    ['alice\0@ftp.example.org', 'refused control-char'],
    ['alice@ftp.example.org\r', 'refused control-char'],
    [`alice@${'a'.repeat(64)}.org`, 'refused bad-host'],
    [`alice@${'a.'.repeat(130)}org`, 'refused bad-host'],
  ];
  it.each(rows)('%j → %s', (arg, want) => {
    expect(show(parseProxyUser(arg))).toBe(want);
  });
});

describe('parseProxyHost (SITE host, OPEN host)', () => {
  const rows: [string, string][] = [
    ['ftp.example.org', '- ftp.example.org - name'],
    ['ftp.example.org:2121', '- ftp.example.org 2121 name'],
    ['ftp.example.org 2121', '- ftp.example.org 2121 name'],
    ['  192.0.2.10  ', '- 192.0.2.10 -'],
    ['[2001:db8::1]:2121', '- 2001:db8::1 2121'],
    ['[2001:db8::1] 2121', '- 2001:db8::1 2121'],
    ['2001:db8::1', '- 2001:db8::1 -'],
    ['', 'refused empty-host'],
    ['CHMOD 755 file', 'refused bad-port'],
    ['ftp.example.org 99999', 'refused bad-port'],
    ['ftp.example.org\0', 'refused control-char'],
  ];
  it.each(rows)('%j → %s', (arg, want) => {
    expect(show(parseProxyHost(arg))).toBe(want);
  });
});

describe('proxy target parsing is total and exact (fast-check)', () => {
  const unit = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...'abcxyz019.-'.split('')) },
    { weight: 3, arbitrary: fc.constantFrom(...'@:[] '.split('')) },
    { weight: 1, arbitrary: fc.constantFrom('\0', '\r', '\n', '%', '\xff', '\t', '_') },
  );
  const dense = fc.string({ unit, maxLength: 120 });
  const anything = fc.string({ unit: fc.nat(255).map((c) => String.fromCharCode(c)), maxLength: 400 });
  const port = fc.integer({ min: 1, max: 65535 });
  const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}[a-z0-9]$/);
  const name = fc.array(label, { minLength: 2, maxLength: 4 }).map((l) => l.join('.'));
  const user = fc.string({ unit: fc.constantFrom(...'abc@._-'.split('')), minLength: 1, maxLength: 20 });

  it('never throws, on any input and on very long lines; a result always names a host and a port in range', () => {
    fc.assert(
      fc.property(fc.oneof(dense, anything, dense.map((s) => s.repeat(40))), (arg) => {
        for (const r of [parseProxyUser(arg), parseProxyHost(arg)]) {
          if (!r.ok) continue;
          expect(r.value.host.length).toBeGreaterThan(0);
          expect(r.value.host).not.toMatch(/[\x00-\x20@[\]]/);
          if (r.value.port !== undefined) expect(r.value.port >= 1 && r.value.port <= 65535).toBe(true);
        }
      }),
      RUNS,
    );
  });

  it('user@name:port round-trips whatever @ the user name holds (the last @ separates)', () => {
    fc.assert(
      fc.property(user, name, fc.option(port, { nil: undefined }), (u, host, p) => {
        const r = parseProxyUser(`${u}@${host}${p === undefined ? '' : `:${p}`}`);
        expect(r).toEqual({ ok: true, value: { user: u, host, literal: false, port: p } });
      }),
      RUNS,
    );
  });

  it('user@[v6]:port and user@v4:port round-trip; a port out of range is refused, never wrapped', () => {
    fc.assert(
      fc.property(user, fc.ipV6(), fc.ipV4(), fc.integer({ min: 0, max: 200_000 }), (u, v6, v4, p) => {
        const ok = p >= 1 && p <= 65535;
        const six = parseProxyUser(`${u}@[${v6}]:${p}`);
        const four = parseProxyUser(`${u}@${v4}:${p}`);
        if (!ok) {
          expect(six).toEqual({ ok: false, reason: 'bad-port' });
          expect(four.ok).toBe(false);
          return;
        }
        expect(six.ok && six.value.port === p && six.value.literal && six.value.user === u).toBe(true);
        expect(four.ok && four.value.port === p && four.value.user === u).toBe(true);
      }),
      RUNS,
    );
  });
});

/**
 * The PROXY protocol codec (HAProxy's proxy-protocol.txt): the spec's
 * examples one a row, every fixture fed at every split, refusals, and
 * fast-check round trips and fuzzing.
 */
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import {
  formatProxyHeader,
  MAX_V1_BYTES,
  MAX_V2_BYTES,
  parseProxyHeader,
  proxyAddresses,
  type ProxyAccept,
  type ProxyHeader,
  type ProxyParse,
  V2_SIGNATURE,
} from '../../../src/common/proxyProtocol.js';

const RUNS = { numRuns: 1000 };
const FFFF = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const ascii = (text: string) => Buffer.from(text, 'latin1');
const sig = V2_SIGNATURE.toString('hex');

const tcp = (version: 1 | 2, family: 4 | 6, src: string, dst: string, sport: number, dport: number): ProxyHeader => ({
  version,
  command: 'proxy',
  addresses: { family, source: { address: src, port: sport }, destination: { address: dst, port: dport } },
  tlvs: [],
});
const unknown: ProxyHeader = { version: 1, command: 'proxy', addresses: undefined, tlvs: [] };
const local: ProxyHeader = { version: 2, command: 'local', addresses: undefined, tlvs: [] };

/** Valid headers: the bytes, and what they say. */
const FIXTURES: Array<[string, Buffer, ProxyHeader]> = [
  // proxy-protocol.txt 2.1: the worst cases of each protocol, and its example.
  ['v1 TCP4, every field at its maximum (56 bytes)', ascii('PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n'), tcp(1, 4, '255.255.255.255', '255.255.255.255', 65535, 65535)],
  ['v1 TCP6, every field at its maximum (104 bytes)', ascii(`PROXY TCP6 ${FFFF} ${FFFF} 65535 65535\r\n`), tcp(1, 6, FFFF, FFFF, 65535, 65535)],
  ['v1 UNKNOWN, the shortest header (15 bytes)', ascii('PROXY UNKNOWN\r\n'), unknown],
  ['v1 UNKNOWN with addresses, the longest header (107 bytes)', ascii(`PROXY UNKNOWN ${FFFF} ${FFFF} 65535 65535\r\n`), unknown],
  ['v1 the spec example', ascii('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n'), tcp(1, 4, '192.168.0.1', '192.168.0.11', 56324, 443)],
  ['v1 TCP6 compressed', ascii('PROXY TCP6 2001:db8::1 2001:db8::2 40000 21\r\n'), tcp(1, 6, '2001:db8::1', '2001:db8::2', 40000, 21)],
  ['v1 TCP6 in full form is read canonical', ascii('PROXY TCP6 2001:0db8:0000:0000:0000:0000:0000:0001 2001:db8::2 1 0\r\n'), tcp(1, 6, '2001:db8::1', '2001:db8::2', 1, 0)],
  // 2.2: what HAProxy's send-proxy-v2 writes for 172.19.0.1:42578 -> 172.19.0.3:80.
  ['v2 TCP4 as HAProxy writes it', hex(`${sig} 21 11 000c ac130001 ac130003 a652 0050`), tcp(2, 4, '172.19.0.1', '172.19.0.3', 42578, 80)],
  ['v2 TCP6', hex(`${sig} 21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 9c40 0015`), tcp(2, 6, '2001:db8::1', '2001:db8::2', 40000, 21)],
  ['v2 LOCAL (a health check), no address block', hex(`${sig} 20 00 0000`), local],
  ['v2 LOCAL with an address block: ignored', hex(`${sig} 20 11 000c ac130001 ac130003 a652 0050`), local],
  ['v2 PROXY UNSPEC: no addresses', hex(`${sig} 21 00 0000`), { ...local, command: 'proxy' }],
  ['v2 TCP4 with TLVs (ALPN "ftp", NOOP of 0 bytes)', hex(`${sig} 21 11 0015 c6336407 cb007101 1388 0015 01 0003 667470 04 0000`), {
    ...tcp(2, 4, '198.51.100.7', '203.0.113.1', 5000, 21),
    tlvs: [{ type: 1, value: ascii('ftp') }, { type: 4, value: Buffer.alloc(0) }],
  }],
  ['v2 UDP over IPv4: no addresses for a TCP listener', hex(`${sig} 21 12 000c ac130001 ac130003 a652 0050`), { ...local, command: 'proxy' }],
  ['v2 AF_UNIX: no addresses', hex(`${sig} 21 31 00d8 ${'00'.repeat(216)}`), { ...local, command: 'proxy' }],
];

const no = (reason: string): ProxyParse => ({ kind: 'refused', reason } as ProxyParse);

/** Complete inputs that are refused, and why. */
const REFUSALS: Array<[string, Buffer, string, ProxyAccept?]> = [
  ['an FTP command', ascii('USER anonymous\r\n'), 'not-proxy'],
  ['a TLS ClientHello', hex('16030100a5010000a10303'), 'not-proxy'],
  ['lower case', ascii('proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n'), 'not-proxy'],
  ['v1 on a v2-only listener', ascii('PROXY UNKNOWN\r\n'), 'not-proxy', 'v2'],
  ['v2 on a v1-only listener', hex(`${sig} 20 00 0000`), 'not-proxy', 'v1'],
  ['v1 without CR', ascii('PROXY UNKNOWN\n'), 'bad-v1'],
  ['v1 with two spaces', ascii('PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n'), 'bad-v1'],
  ['v1 TCP5', ascii('PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n'), 'bad-v1'],
  ['v1 missing the destination port', ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'), 'bad-v1'],
  ['v1 an extra field', ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n'), 'bad-v1'],
  ['v1 port 65536', ascii('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'), 'bad-v1'],
  ['v1 port with a leading zero', ascii('PROXY TCP4 1.2.3.4 5.6.7.8 021 2\r\n'), 'bad-v1'],
  ['v1 octet 256', ascii('PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n'), 'bad-v1'],
  ['v1 octal-looking octet', ascii('PROXY TCP4 010.2.3.4 5.6.7.8 1 2\r\n'), 'bad-v1'],
  ['v1 short-form IPv4', ascii('PROXY TCP4 127.1 5.6.7.8 1 2\r\n'), 'bad-v1'],
  ['v1 TCP4 naming IPv6', ascii('PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n'), 'bad-v1'],
  ['v1 TCP6 naming IPv4', ascii('PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n'), 'bad-v1'],
  ['v1 IPv6 with a zone', ascii('PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n'), 'bad-v1'],
  ['v1 NUL in the line', ascii('PROXY UNKNOWN\0\r\n'), 'bad-v1'],
  ['v1 CR inside the line', ascii('PROXY UNK\rNOWN\r\n'), 'bad-v1'],
  ['v1 108 bytes', ascii(`PROXY UNKNOWN ${FFFF} ${FFFF} 65535 655350\r\n`), 'too-long'],
  ['v1 no CRLF within 107 bytes', ascii(`PROXY UNKNOWN ${'x'.repeat(200)}`), 'too-long'],
  ['v2 version 1', hex(`${sig} 11 11 000c ac130001 ac130003 a652 0050`), 'bad-version'],
  ['v2 version 3', hex(`${sig} 31 11 000c ac130001 ac130003 a652 0050`), 'bad-version'],
  ['v2 command 2', hex(`${sig} 22 11 000c ac130001 ac130003 a652 0050`), 'bad-command'],
  ['v2 family 4', hex(`${sig} 21 41 000c ac130001 ac130003 a652 0050`), 'bad-address'],
  ['v2 transport 3', hex(`${sig} 21 13 000c ac130001 ac130003 a652 0050`), 'bad-address'],
  ['v2 TCP4 with a short address block', hex(`${sig} 21 11 0008 ac130001 ac130003`), 'bad-length'],
  ['v2 TCP6 with a TCP4-sized block', hex(`${sig} 21 21 000c ac130001 ac130003 a652 0050`), 'bad-length'],
  ['v2 a TLV running past the header', hex(`${sig} 21 11 0010 ac130001 ac130003 a652 0050 01 0005 66`), 'bad-tlv'],
  ['v2 two stray bytes after the addresses', hex(`${sig} 21 11 000e ac130001 ac130003 a652 0050 0100`), 'bad-tlv'],
  ['v2 longer than our bound', Buffer.concat([hex(`${sig} 21 00`), Buffer.from([0x10, 0x00])]), 'too-long'],
];

describe('parseProxyHeader: the spec examples', () => {
  it.each(FIXTURES)('%s', (_name, bytes, header) => {
    expect(parseProxyHeader(bytes)).toEqual({ kind: 'header', header, consumed: bytes.length });
  });

  it.each(FIXTURES)('%s: every split gives "more" until the last byte, and the same header after it', (_name, bytes, header) => {
    const accept: ProxyAccept = header.version === 1 ? 'v1' : 'v2';
    for (let n = 0; n < bytes.length; n++) expect(parseProxyHeader(bytes.subarray(0, n), accept), `prefix ${n}`).toEqual({ kind: 'more' });
    // The client's first bytes after the header are left to the caller.
    const withData = Buffer.concat([bytes, ascii('USER anonymous\r\n')]);
    expect(parseProxyHeader(withData, accept)).toEqual({ kind: 'header', header, consumed: bytes.length });
  });
});

describe('parseProxyHeader: refusals', () => {
  it.each(REFUSALS)('%s', (_name, bytes, reason, accept) => {
    expect(parseProxyHeader(bytes, accept ?? 'any')).toEqual(no(reason));
  });

  it('refuses a non-header at its first byte, before any more arrives', () => {
    expect(parseProxyHeader(ascii('U'))).toEqual(no('not-proxy'));
    expect(parseProxyHeader(ascii('PROXY\t'))).toEqual(no('not-proxy'));
    expect(parseProxyHeader(hex(`${sig} 31`))).toEqual(no('bad-version')); // from the 13th byte
  });

  it('refuses a v2 length beyond the bound as soon as the length is read', () => {
    const fixed = Buffer.concat([hex(`${sig} 21 11`), Buffer.from([0xff, 0xff])]);
    expect(parseProxyHeader(fixed)).toEqual(no('too-long'));
    expect(MAX_V2_BYTES).toBeLessThan(16 + 0xffff);
  });

  it('refuses an unterminated v1 line once it reaches 107 bytes', () => {
    const line = ascii(`PROXY UNKNOWN ${'a'.repeat(MAX_V1_BYTES)}`);
    expect(parseProxyHeader(line.subarray(0, MAX_V1_BYTES - 1))).toEqual({ kind: 'more' });
    expect(parseProxyHeader(line.subarray(0, MAX_V1_BYTES))).toEqual(no('too-long'));
  });
});

describe('formatProxyHeader', () => {
  it.each(FIXTURES.filter(([name]) => !/full form|address block: ignored|UDP|AF_UNIX|with addresses, the longest/.test(name)))(
    '%s: written byte-exact',
    (_name, bytes, header) => {
      expect(formatProxyHeader(header).toString('hex')).toBe(bytes.toString('hex'));
    },
  );

  it('writes v1 LOCAL as UNKNOWN (v1 has no LOCAL)', () => {
    expect(formatProxyHeader({ ...local, version: 1 }).toString('latin1')).toBe('PROXY UNKNOWN\r\n');
  });

  it('throws on our own bug: a port out of range or an address of the other family', () => {
    expect(() => formatProxyHeader(tcp(1, 4, '1.2.3.4', '5.6.7.8', 70000, 1))).toThrow(RangeError);
    expect(() => formatProxyHeader(tcp(2, 4, '2001:db8::1', '5.6.7.8', 1, 1))).toThrow(RangeError);
  });
});

describe('proxyAddresses', () => {
  it('keeps one family, unmapping ::ffff: pairs', () => {
    expect(proxyAddresses({ address: '::ffff:198.51.100.7', port: 40000 }, { address: '203.0.113.1', port: 21 })).toEqual({
      family: 4,
      source: { address: '198.51.100.7', port: 40000 },
      destination: { address: '203.0.113.1', port: 21 },
    });
  });

  it('writes the IPv4 end IPv4-mapped when the families differ', () => {
    expect(proxyAddresses({ address: '2001:db8:1::10', port: 40000 }, { address: '192.0.2.1', port: 21 })).toEqual({
      family: 6,
      source: { address: '2001:db8:1::10', port: 40000 },
      destination: { address: '::ffff:c000:201', port: 21 },
    });
  });

  it('gives nothing for an address that is not one', () => {
    expect(proxyAddresses({ address: '', port: 1 }, { address: '192.0.2.1', port: 21 })).toBeUndefined();
  });
});

// ---- properties ----------------------------------------------------------------

const port = fc.integer({ min: 0, max: 65535 });
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
const ipv6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((words) => new ipaddr.IPv6(words).toRFC5952String());
const endpoint = (address: fc.Arbitrary<string>) => fc.record({ address, port });
const addresses = fc.oneof(
  fc.record({ family: fc.constant(4 as const), source: endpoint(ipv4), destination: endpoint(ipv4) }),
  fc.record({ family: fc.constant(6 as const), source: endpoint(ipv6), destination: endpoint(ipv6) }),
);
const header: fc.Arbitrary<ProxyHeader> = fc.oneof(
  fc.record({ version: fc.constant(1 as const), command: fc.constant('proxy' as const), addresses: fc.option(addresses, { nil: undefined }), tlvs: fc.constant([]) }),
  fc.record({
    version: fc.constant(2 as const),
    command: fc.constantFrom('proxy' as const, 'local' as const),
    addresses: fc.option(addresses, { nil: undefined }),
    tlvs: fc.array(fc.record({ type: fc.nat(255), value: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)) }), { maxLength: 4 }),
  }).map((h) => (h.command === 'local' ? { ...h, addresses: undefined } : h)),
);
const anyBytes = fc.uint8Array({ maxLength: 160 }).map((a) => Buffer.from(a));
/** A valid header with a few bytes changed, inserted or removed. */
const mutated = fc.tuple(header, fc.array(fc.tuple(fc.nat(200), fc.nat(2), fc.nat(255)), { minLength: 1, maxLength: 4 })).map(([h, edits]) => {
  let bytes = formatProxyHeader(h);
  for (const [at, op, value] of edits) {
    const i = at % (bytes.length + 1);
    const b = Buffer.from([value]);
    bytes = op === 0 ? Buffer.concat([bytes.subarray(0, i), b, bytes.subarray(i + 1)]) : op === 1 ? Buffer.concat([bytes.subarray(0, i), b, bytes.subarray(i)]) : Buffer.concat([bytes.subarray(0, i), bytes.subarray(i + 1)]);
  }
  return bytes;
});
const peerBytes = fc.oneof(anyBytes, mutated, fc.constantFrom(...REFUSALS.map(([, b]) => b)));
const accept = fc.constantFrom<ProxyAccept>('v1', 'v2', 'any');

describe('properties', () => {
  it('parse(format(h)) is h, whatever bytes follow', () => {
    fc.assert(
      fc.property(header, anyBytes, (h, tail) => {
        const bytes = formatProxyHeader(h);
        const expected = h.version === 1 ? { ...h, command: 'proxy' } : h;
        expect(parseProxyHeader(Buffer.concat([bytes, tail]))).toEqual({ kind: 'header', header: expected, consumed: bytes.length });
      }),
      RUNS,
    );
  });

  it('a v1 header never exceeds 107 bytes', () => {
    fc.assert(fc.property(header.filter((h) => h.version === 1), (h) => formatProxyHeader(h).length <= MAX_V1_BYTES), RUNS);
  });

  it('is total on peer bytes: never throws, never consumes more than it was given', () => {
    fc.assert(
      fc.property(peerBytes, accept, (bytes, a) => {
        const r = parseProxyHeader(bytes, a);
        if (r.kind === 'header') expect(r.consumed).toBeLessThanOrEqual(bytes.length);
      }),
      { numRuns: 3000 },
    );
  });

  it('a verdict never changes as more bytes arrive (any split gives the same result)', () => {
    fc.assert(
      fc.property(peerBytes, fc.nat(200), accept, (bytes, cut, a) => {
        const prefix = bytes.subarray(0, cut % (bytes.length + 1));
        const early = parseProxyHeader(prefix, a);
        const late = parseProxyHeader(bytes, a);
        if (early.kind !== 'more') expect(late).toEqual(early);
        if (late.kind === 'more') expect(early.kind).toBe('more');
      }),
      { numRuns: 3000 },
    );
  });
});

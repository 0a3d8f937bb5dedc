/** Property-based tests of the codec (fast-check), with bounded runs. */
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { formatCommand, parseCommand, withoutTerminator } from '../../../src/ftp/command.js';
import {
  formatEprt,
  formatEpsvReply,
  formatHostPort,
  formatPasvReply,
  parseAddressOfFamily,
  parseEprt,
  parseEpsvArg,
  parseEpsvReply,
  parseHostPort,
  parsePasvReply,
} from '../../../src/ftp/hostPort.js';
import { formatReply, ReplyReader, replyCode } from '../../../src/ftp/reply.js';
import type { Parsed } from '../../../src/ftp/result.js';
import * as helpers from '../../support/hostPort.js';
import { cutAt, feed } from './feed.js';

const RUNS = { numRuns: 1000 };

const port = fc.integer({ min: 1, max: 65535 });
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
/** Any IPv6 address, written in any of the forms fast-check knows (compressed, full, embedded IPv4). */
const ipv6 = fc.ipV6();
/** Strings of latin1 code units: what a peer's bytes decode to. */
const latin1Text = fc.string({ unit: fc.nat(255).map((c) => String.fromCharCode(c)), maxLength: 200 });
/** Strings made mostly of the characters the parsers care about, to reach past the first check. */
const dense = fc.string({
  unit: fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom(...'0123456789'.split('')) },
    { weight: 3, arbitrary: fc.constantFrom(...',|!()= .:%-+'.split('')) },
    { weight: 1, arbitrary: fc.constantFrom(...'abcdefxABCDEF\r\n\0\xff\t'.split('')) },
  ),
  maxLength: 80,
});
/** Valid inputs with a few characters changed, inserted or removed. */
const mutated = fc
  .tuple(
    fc.constantFrom(
      '227 Entering Passive Mode (192,0,2,10,195,80).',
      '229 Entering Extended Passive Mode (|||6446|)',
      '|2|2001:db8::1|5282|',
      '|1|198.51.100.7|5282|',
      '192,0,2,10,195,80',
    ),
    fc.array(fc.tuple(fc.nat(60), fc.nat(2), fc.nat(255)), { maxLength: 4 }),
  )
  .map(([text, edits]) => {
    let out: string = text;
    for (const [at, op, code] of edits) {
      const i = at % (out.length + 1);
      const c = String.fromCharCode(code);
      out = op === 0 ? out.slice(0, i) + c + out.slice(i + 1) : op === 1 ? out.slice(0, i) + c + out.slice(i) : out.slice(0, i) + out.slice(i + 1);
    }
    return out;
  });
const peerText = fc.oneof(latin1Text, dense, mutated, fc.string({ unit: 'binary', maxLength: 80 }));
/** Bytes with many LF and CR, so that lines are short and frequent. */
const streamBytes = fc
  .array(fc.oneof({ weight: 1, arbitrary: fc.constantFrom(0x0a, 0x0d) }, { weight: 6, arbitrary: fc.nat(255) }), { maxLength: 400 })
  .map((bytes) => Buffer.from(bytes));

function isTotalResult<T>(result: Parsed<T>): boolean {
  return result.ok ? 'value' in result : typeof result.reason === 'string' && result.reason.length > 0;
}

/** A written line: one CRLF at the end and no CR, LF or NUL before it. */
function isCleanLine(line: Buffer): boolean {
  const body = line.subarray(0, line.length - 2);
  return line.subarray(line.length - 2).equals(Buffer.from('\r\n')) && !body.includes(0x0d) && !body.includes(0x0a) && !body.includes(0);
}

describe('round trips: parse(format(x)) equals x', () => {
  it('PORT host-port, any IPv4 and port 1-65535', () => {
    fc.assert(
      fc.property(ipv4, port, (address, p) => {
        expect(parseHostPort(formatHostPort(address, p))).toEqual({ ok: true, value: { address, family: 4, port: p } });
      }),
      RUNS,
    );
  });

  it('227 reply, also through ReplyReader', () => {
    fc.assert(
      fc.property(ipv4, port, (address, p) => {
        const line = formatPasvReply(address, p);
        const read = new ReplyReader().read(line);
        expect(read.kind === 'final' && read.code === 227).toBe(true);
        expect(parsePasvReply(withoutTerminator(line).toString('latin1'))).toEqual({ ok: true, value: { address, family: 4, port: p } });
      }),
      RUNS,
    );
  });

  it('EPRT with IPv4', () => {
    fc.assert(
      fc.property(ipv4, port, (address, p) => {
        expect(parseEprt(formatEprt(address, p))).toEqual({ ok: true, value: { address, family: 4, port: p } });
      }),
      RUNS,
    );
  });

  it('EPRT with IPv6, normalised once and then stable', () => {
    fc.assert(
      fc.property(ipv6, port, (address, p) => {
        const first = parseEprt(formatEprt(address, p));
        if (!first.ok) throw new Error(`refused ${address}: ${first.reason}`);
        expect(first.value.family).toBe(6);
        expect(first.value.port).toBe(p);
        // Same 128 bits as the input, in lower case, compressed form.
        expect(ipaddr.IPv6.parse(first.value.address).toByteArray()).toEqual(ipaddr.IPv6.parse(address).toByteArray());
        expect(first.value.address).toBe(first.value.address.toLowerCase());
        expect(parseEprt(formatEprt(first.value.address, p))).toEqual(first);
      }),
      RUNS,
    );
  });

  it('EPRT with any delimiter that cannot occur in the address or port (RFC 2428 2)', () => {
    const delimiter = fc.integer({ min: 33, max: 126 }).map((c) => String.fromCharCode(c)).filter((d) => !/[0-9a-fA-F.:]/.test(d));
    fc.assert(
      fc.property(fc.oneof(ipv4, ipv6), port, delimiter, (address, p, d) => {
        const family = address.includes(':') ? 6 : 4;
        const normal = parseAddressOfFamily(address, family);
        expect(parseEprt(`${d}${family === 4 ? 1 : 2}${d}${address}${d}${p}${d}`)).toEqual({ ok: true, value: { address: normal, family, port: p } });
      }),
      RUNS,
    );
  });

  it('229 reply, also through ReplyReader', () => {
    fc.assert(
      fc.property(port, (p) => {
        const line = formatEpsvReply(p);
        const read = new ReplyReader().read(line);
        expect(read.kind === 'final' && read.code === 229).toBe(true);
        expect(parseEpsvReply(withoutTerminator(line).toString('latin1'))).toEqual({ ok: true, value: p });
      }),
      RUNS,
    );
  });

  it('229 with any non-digit delimiter (RFC 2428 3)', () => {
    const delimiter = fc.integer({ min: 33, max: 126 }).map((c) => String.fromCharCode(c)).filter((d) => !/[0-9]/.test(d));
    fc.assert(
      fc.property(port, delimiter, (p, d) => {
        expect(parseEpsvReply(`229 Entering Extended Passive Mode (${d}${d}${d}${p}${d})`)).toEqual({ ok: true, value: p });
      }),
      RUNS,
    );
  });

  it('commands with latin1 arguments', () => {
    const verb = fc.stringMatching(/^[A-Z]{1,8}$/);
    const arg = fc.string({ unit: fc.integer({ min: 1, max: 0xfe }).map((c) => String.fromCharCode(c)), maxLength: 100 });
    fc.assert(
      fc.property(verb, arg, (v, a) => {
        const expected = a.replace(/[\r\n]/g, '').trim();
        expect(parseCommand(formatCommand(v, a))).toEqual({ ok: true, value: { verb: v, arg: expected } });
      }),
      RUNS,
    );
  });

  it('replies with latin1 text', () => {
    fc.assert(
      fc.property(fc.integer({ min: 100, max: 599 }), latin1Text, (code, text) => {
        const line = formatReply(code, text);
        expect(new ReplyReader().read(line)).toEqual({ kind: 'final', code, text: withoutTerminator(line).toString('latin1') });
      }),
      RUNS,
    );
  });
});

// The tests format and read PORT/EPRT/227/229 with their own hand-written helpers, so that a codec
// bug cannot hide in both sides of an integration test; here the two are held to agree.
describe('the tests\' own host-port helpers (test/support/hostPort.ts) agree with the codec', () => {
  it('PORT, EPRT, 227 and 229, both ways', () => {
    fc.assert(
      fc.property(ipv4, port, (address, p) => {
        expect(helpers.portArg(address, p)).toBe(formatHostPort(address, p));
        expect(helpers.eprtArg(address, p)).toBe(formatEprt(address, p));
        expect(helpers.pasvReply(address, p)).toBe(formatPasvReply(address, p).toString('latin1'));
        expect(helpers.parse227(formatPasvReply(address, p).toString('latin1'))).toEqual({ address, port: p });
        expect(helpers.parse229(formatEpsvReply(p).toString('latin1'))).toBe(p);
        expect(helpers.parseActiveLine(`PORT ${formatHostPort(address, p)}`)).toEqual({ verb: 'PORT', address, port: p });
        expect(helpers.parseActiveLine(`EPRT ${formatEprt(address, p)}`)).toEqual({ verb: 'EPRT', address, port: p });
      }),
      RUNS,
    );
  });
});

describe('parsers are total on peer input', () => {
  it('string parsers never throw and always return a result or a reason', () => {
    fc.assert(
      fc.property(peerText, (text) => {
        expect(isTotalResult(parseHostPort(text))).toBe(true);
        expect(isTotalResult(parsePasvReply(text))).toBe(true);
        expect(isTotalResult(parseEprt(text))).toBe(true);
        expect(isTotalResult(parseEpsvReply(text))).toBe(true);
        expect(isTotalResult(parseEpsvArg(text))).toBe(true);
        for (const family of [4, 6] as const) {
          const address = parseAddressOfFamily(text, family);
          expect(address === undefined || typeof address === 'string').toBe(true);
        }
        const code = replyCode(text);
        expect(code === 0 || (code >= 100 && code <= 599)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('accepted values are always in range', () => {
    fc.assert(
      fc.property(peerText, (text) => {
        for (const result of [parseHostPort(text), parsePasvReply(text), parseEprt(text)]) {
          if (!result.ok) continue;
          expect(result.value.port).toBeGreaterThanOrEqual(1);
          expect(result.value.port).toBeLessThanOrEqual(65535);
          expect(parseAddressOfFamily(result.value.address, result.value.family)).toBe(result.value.address);
        }
        const epsv = parseEpsvReply(text);
        if (epsv.ok) expect(epsv.value >= 1 && epsv.value <= 65535).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('parseCommand never throws; an accepted command has an upper-case verb and no NUL', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), peerText.map((t) => Buffer.from(t, 'latin1'))), (bytes) => {
        const raw = Buffer.from(bytes);
        const result = parseCommand(raw);
        expect(isTotalResult(result)).toBe(true);
        if (result.ok) {
          expect(result.value.verb).toMatch(/^[A-Z]{1,8}$/);
          expect(result.value.arg).not.toContain('\0');
          expect(raw.includes(0)).toBe(false); // the raw line is what gets forwarded
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('ReplyReader never throws and gives only final, part or malformed', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.uint8Array({ maxLength: 60 }), dense.map((t) => Buffer.from(t, 'latin1'))), { maxLength: 30 }), (lines) => {
        const reader = new ReplyReader();
        for (const line of lines) {
          const result = reader.read(Buffer.from(line));
          expect(['final', 'part', 'malformed']).toContain(result.kind);
          if (result.kind === 'final') expect(result.code).toBe(replyCode(result.text));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('LineSplitter is independent of how the stream is cut', () => {
  it('random chunking gives the same events as one push', () => {
    fc.assert(
      fc.property(streamBytes, fc.array(fc.nat(400), { maxLength: 40 }), fc.integer({ min: 1, max: 64 }), (bytes, cuts, max) => {
        const whole = feed(max, [bytes]);
        expect(feed(max, cutAt(bytes, cuts))).toEqual(whole);
      }),
      { numRuns: 2000 },
    );
  });

  it('lines are the stream: concatenated, they rebuild every byte up to the last LF when nothing is too long', () => {
    fc.assert(
      fc.property(streamBytes, (bytes) => {
        const { events, held } = feed(bytes.length + 1, [bytes]);
        const lines = events.flatMap((e) => ('line' in e ? [e.line] : []));
        expect(Buffer.concat([...lines, Buffer.from(held, 'latin1')])).toEqual(bytes);
        for (const line of lines) expect(line.indexOf(0x0a)).toBe(line.length - 1);
      }),
      RUNS,
    );
  });

  it('never holds more than the cap: a line past it is refused in the read that took it over, and none of it is kept', () => {
    fc.assert(
      fc.property(streamBytes, fc.array(fc.nat(400), { maxLength: 40 }), fc.integer({ min: 1, max: 64 }), (bytes, cuts, max) => {
        const chunks = cutAt(bytes, cuts);
        for (let n = 1; n <= chunks.length; n++) {
          const sent = Buffer.concat(chunks.slice(0, n));
          const open = sent.subarray(sent.lastIndexOf(0x0a) + 1); // the unterminated line so far
          const { events, held } = feed(max, chunks.slice(0, n));
          if (open.length > max) {
            expect(events.at(-1)).toEqual({ fault: 'too-long' });
            expect(held).toBe('');
          } else {
            expect(held).toBe(open.length === max ? 'too-long' : open.toString('latin1')); // held + the probe's LF is max + 1
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('written lines never carry CR, LF or NUL before their CRLF', () => {
  const anyText = fc.oneof(fc.string({ unit: 'binary', maxLength: 100 }), latin1Text, dense);

  it('formatReply', () => {
    fc.assert(
      fc.property(fc.integer({ min: 100, max: 599 }), anyText, (code, text) => {
        expect(isCleanLine(formatReply(code, text))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('formatCommand', () => {
    fc.assert(
      fc.property(fc.constantFrom('USER', 'PASS', 'PORT', 'EPRT', 'RETR', 'PASV'), fc.option(anyText, { nil: undefined }), (verb, arg) => {
        expect(isCleanLine(formatCommand(verb, arg))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('formatPasvReply and formatEpsvReply', () => {
    fc.assert(
      fc.property(ipv4, port, (address, p) => {
        expect(isCleanLine(formatPasvReply(address, p))).toBe(true);
        expect(isCleanLine(formatEpsvReply(p))).toBe(true);
      }),
      RUNS,
    );
  });
});

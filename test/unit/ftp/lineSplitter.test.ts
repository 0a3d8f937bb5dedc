import { describe, expect, it } from 'vitest';
import { LineSplitter, type LineFault } from '../../../src/ftp/lineSplitter.js';
import { bytewise, feed, latin1, type LineEvent, splitAt } from './feed.js';

const MAX = 64;
const line = (text: string): LineEvent => ({ line: latin1(text) });
const TOO_LONG: LineEvent = { fault: 'too-long' };

describe('LineSplitter framing', () => {
  // Each row: the bytes of one read, the events it must give, the bytes left held.
  const rows: Array<[string, string, LineEvent[], string]> = [
    // RFC 959 5.3 / RFC 854: lines end in CRLF; the terminator is kept for byte-exact forwarding.
    ['CRLF line', 'NOOP\r\n', [line('NOOP\r\n')], ''],
    // Tolerated like most servers: a bare LF ends a line too.
    ['bare LF line', 'NOOP\n', [line('NOOP\n')], ''],
    // A bare CR is an ordinary byte, not a terminator (RFC 959 leaves CR inside pathnames possible).
    ['bare CR inside a line', 'RETR a\rb\r\n', [line('RETR a\rb\r\n')], ''],
    ['bare CR at the end with no LF is held', 'NOOP\r', [], 'NOOP\r'],
    ['CR CR LF keeps both CRs', 'NOOP\r\r\n', [line('NOOP\r\r\n')], ''],
    ['several lines in one read', 'USER a\r\nPASS b\r\nSYST\n', [line('USER a\r\n'), line('PASS b\r\n'), line('SYST\n')], ''],
    ['an empty line is a line', '\r\n\n', [line('\r\n'), line('\n')], ''],
    ['a tail without LF is held', 'USER a\r\nPA', [line('USER a\r\n')], 'PA'],
    ['nothing at all', '', [], ''],
    ['NUL and 0xff are bytes like any other (refused later, by the parsers)', 'A\0\xff\r\n', [line('A\0\xff\r\n')], ''],
  ];
  it.each(rows)('%s', (_name, input, events, held) => {
    expect(feed(MAX, [latin1(input)])).toEqual({ events, held });
  });

  it('holds a partial line until its LF arrives in a later read', () => {
    expect(feed(MAX, [latin1('US'), latin1('ER a'), latin1('\r'), latin1('\nPASV\r\n')]).events).toEqual([
      line('USER a\r\n'),
      line('PASV\r\n'),
    ]);
  });

  it('copies held bytes, so a reused read buffer does not corrupt the pending line', () => {
    const events: Buffer[] = [];
    const splitter = new LineSplitter(MAX, { line: (raw) => events.push(Buffer.from(raw)), fault: () => undefined });
    const readBuffer = latin1('USER');
    splitter.push(readBuffer);
    readBuffer.fill(0x58); // the socket reuses its buffer for the next read
    splitter.push(latin1(' a\r\n'));
    expect(events).toEqual([latin1('USER a\r\n')]);
  });

  it('an empty chunk changes nothing', () => {
    expect(feed(MAX, [latin1('AB'), Buffer.alloc(0), latin1('\n')]).events).toEqual([line('AB\n')]);
  });
});

describe('LineSplitter line-length bound (OpenBSD get_line: cap line length)', () => {
  const exact = 'X'.repeat(MAX - 2) + '\r\n'; // exactly MAX bytes, terminator included
  const over = 'X'.repeat(MAX - 1) + '\r\n'; // MAX + 1

  it('emits a line of exactly maxLineBytes, terminator included', () => {
    expect(feed(MAX, [latin1(exact)]).events).toEqual([line(exact)]);
  });

  it('faults once on a line one byte over, read in one piece', () => {
    expect(feed(MAX, [latin1(over + 'NOOP\r\n')]).events).toEqual([TOO_LONG, line('NOOP\r\n')]);
  });

  it('faults once when the held part reaches the cap only with its LF', () => {
    // MAX bytes held without LF is still within the bound; the LF makes it MAX + 1.
    const held = 'X'.repeat(MAX);
    expect(feed(MAX, [latin1(held)]).events).toEqual([]);
    expect(feed(MAX, [latin1(held), latin1('\nNOOP\r\n')]).events).toEqual([TOO_LONG, line('NOOP\r\n')]);
  });

  it('faults once on an over-long line at every split offset and byte by byte', () => {
    const stream = latin1(`USER a\r\n${'Y'.repeat(3 * MAX)}\r\nPASV\r\n`);
    const expected = [line('USER a\r\n'), TOO_LONG, line('PASV\r\n')];
    for (let offset = 0; offset <= stream.length; offset++) {
      expect(feed(MAX, splitAt(stream, offset)).events, `offset ${offset}`).toEqual(expected);
    }
    expect(feed(MAX, bytewise(stream)).events).toEqual(expected);
  });

  it('faults once per over-long line, not once per splitter', () => {
    const long = 'Z'.repeat(MAX * 2);
    expect(feed(MAX, [latin1(`${long}\n${long}\nNOOP\n`)]).events).toEqual([TOO_LONG, TOO_LONG, line('NOOP\n')]);
  });

  it('stays bounded while 10 MiB arrive without LF in 64 KiB reads, then resumes at the next line', () => {
    const cap = 8192;
    const faults: LineFault[] = [];
    const lines: Buffer[] = [];
    const splitter = new LineSplitter(cap, { line: (raw) => lines.push(Buffer.from(raw)), fault: (f) => faults.push(f) });
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    const external = process.memoryUsage().arrayBuffers;
    const faultsAfter: number[] = [];
    for (let sent = 0; sent < 10 * 1024 * 1024; sent += chunk.length) {
      splitter.push(chunk);
      faultsAfter.push(faults.length);
    }
    // Refused in the very read that took the line over the cap, and never again for that line.
    expect(faultsAfter.every((n) => n === 1)).toBe(true);
    // Measured from outside: none of the 10 MiB is kept (holding it would grow external memory by 10 MiB).
    expect(process.memoryUsage().arrayBuffers - external).toBeLessThan(2 * 1024 * 1024);
    // The end of the over-long line and the next command arrive together: nothing of the long line is left.
    splitter.push(latin1('AAAA\r\nNOOP\r\n'));
    expect(faults).toEqual(['too-long']);
    expect(lines).toEqual([latin1('NOOP\r\n')]);
  });

  it('stays bounded when the cap is larger than one read', () => {
    const cap = 100_000;
    const reads = Array.from({ length: 40 }, () => Buffer.alloc(64 * 1024, 0x42));
    // One read (64 KiB) is held; the second takes the line over the cap and is refused at once.
    expect(feed(cap, reads.slice(0, 1))).toEqual({ events: [], held: 'B'.repeat(64 * 1024) });
    expect(feed(cap, reads.slice(0, 2))).toEqual({ events: [TOO_LONG], held: '' });
    expect(feed(cap, reads)).toEqual({ events: [TOO_LONG], held: '' });
  });
});

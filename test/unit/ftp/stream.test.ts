/**
 * Every fixture stream, fed whole, split in two at every byte offset, and one byte at a time,
 * must give exactly the same lines, faults, commands and replies (pg-protocol's rule: a TCP
 * read is not a message).
 */
import { describe, expect, it } from 'vitest';
import { type Command, parseCommand } from '../../../src/ftp/command.js';
import { type ReplyLine, ReplyReader } from '../../../src/ftp/reply.js';
import type { Parsed } from '../../../src/ftp/result.js';
import { bytewise, feed, latin1, type LineEvent, linesOf, splitAt } from './feed.js';

interface Fixture {
  readonly name: string;
  readonly bytes: Buffer;
  readonly maxLineBytes: number;
  /** The lines the whole stream gives, written out by hand. */
  readonly lines: readonly string[];
  readonly faults: number;
  /** An unterminated last line still held at the end ('' for none). */
  readonly held: string;
}

const CLIENT = [
  'USER anonymous\r\n',
  'pass guest@example.org\r\n', // RFC 959 5.3: case-insensitive verbs
  'SYST\n', // bare LF
  'TYPE I\r\n',
  'PASV\r\n',
  'RETR dir/a\rb.txt\r\n', // bare CR inside a pathname (RFC 959 3.1.1.1)
  'EPSV\r\n',
  'EPRT |2|2001:db8::1|5282|\r\n',
  'PORT 192,0,2,10,195,80\r\n',
  '  NOOP   \r\n',
  '\r\n', // empty line
  'US3R x\r\n', // bad verb
  'USER a\0b\r\n', // NUL
  '\xff\xf4\xff\xf2ABOR\r\n', // RFC 959 4.1.3: Telnet IP and Synch before ABOR
  'RETR f\xff\xffo\r\n', // IAC IAC
  'QUIT\r\n',
];

const UPSTREAM = [
  '220-Welcome to the private server\r\n',
  '220-  227 Entering Passive Mode (10,0,0,5,4,1).\r\n', // looks like a 227, is text
  '220 Ready\r\n',
  '331 Password required\r\n',
  '230 Logged in\n', // bare LF
  '211-Features:\r\n',
  ' EPSV\r\n',
  ' MDTM\r\n',
  '211-still part of the 211\r\n',
  '211 End\r\n',
  '227 Entering Passive Mode (10,0,0,5,4,1).\r\n',
  '229 Entering Extended Passive Mode (|||6446|)\r\n',
  '200\r\n', // bare code
  '150 Opening\rdata connection\r\n', // bare CR
  '600 not a code\r\n',
  '226 Transfer complete\r\n',
];

const fixtures: Fixture[] = [
  { name: 'client commands', bytes: latin1(CLIENT.join('')), maxLineBytes: 512, lines: CLIENT, faults: 0, held: '' },
  { name: 'upstream replies', bytes: latin1(UPSTREAM.join('')), maxLineBytes: 512, lines: UPSTREAM, faults: 0, held: '' },
  {
    name: 'client commands with an unterminated last line',
    bytes: latin1(`${CLIENT.slice(0, 4).join('')}NOOP\r`),
    maxLineBytes: 512,
    lines: CLIENT.slice(0, 4),
    faults: 0,
    held: 'NOOP\r',
  },
  {
    name: 'an over-long line between commands',
    bytes: latin1(`USER a\r\n${'L'.repeat(200)}\r\nPASV\r\nQUIT\n`),
    maxLineBytes: 40,
    lines: ['USER a\r\n', 'PASV\r\n', 'QUIT\n'],
    faults: 1,
    held: '',
  },
  {
    name: 'over-long reply lines, one of them inside a multi-line reply',
    bytes: latin1(`211-a\r\n${'M'.repeat(100)}\r\n211 End\r\n${'2'.repeat(41)}\n227 (10,0,0,5,4,1)\r\n`),
    maxLineBytes: 41,
    lines: ['211-a\r\n', '211 End\r\n', '227 (10,0,0,5,4,1)\r\n'],
    faults: 2,
    held: '',
  },
  {
    name: 'lines of exactly the cap and one over',
    bytes: latin1(`${'A'.repeat(14)}\r\n${'B'.repeat(15)}\r\n${'C'.repeat(15)}\n`),
    maxLineBytes: 16,
    lines: [`${'A'.repeat(14)}\r\n`, `${'C'.repeat(15)}\n`],
    faults: 1,
    held: '',
  },
];

function commandsOf(events: readonly LineEvent[]): Parsed<Command>[] {
  return linesOf(events).map((raw) => parseCommand(raw));
}

function repliesOf(events: readonly LineEvent[]): ReplyLine[] {
  const reader = new ReplyReader();
  return linesOf(events).map((raw) => reader.read(raw));
}

describe.each(fixtures)('fixture: $name', (fixture) => {
  const whole = feed(fixture.maxLineBytes, [fixture.bytes]);

  it('gives the expected lines when fed whole', () => {
    expect(linesOf(whole.events)).toEqual(fixture.lines.map(latin1));
    expect(whole.events.filter((e) => 'fault' in e)).toHaveLength(fixture.faults);
    expect(whole.held).toBe(fixture.held);
  });

  it('gives the same events, commands and replies split at every byte offset', () => {
    for (let offset = 0; offset <= fixture.bytes.length; offset++) {
      const split = feed(fixture.maxLineBytes, splitAt(fixture.bytes, offset));
      expect(split, `offset ${offset}`).toEqual(whole);
      expect(commandsOf(split.events), `offset ${offset}`).toEqual(commandsOf(whole.events));
      expect(repliesOf(split.events), `offset ${offset}`).toEqual(repliesOf(whole.events));
    }
  });

  it('gives the same events, commands and replies one byte at a time', () => {
    const trickle = feed(fixture.maxLineBytes, bytewise(fixture.bytes));
    expect(trickle).toEqual(whole);
    expect(commandsOf(trickle.events)).toEqual(commandsOf(whole.events));
    expect(repliesOf(trickle.events)).toEqual(repliesOf(whole.events));
  });
});

describe('parsed fixture streams', () => {
  it('client commands parse as expected', () => {
    const ok = (verb: string, arg = ''): Parsed<Command> => ({ ok: true, value: { verb, arg } });
    expect(commandsOf(feed(512, [fixtures[0]!.bytes]).events)).toEqual([
      ok('USER', 'anonymous'),
      ok('PASS', 'guest@example.org'),
      ok('SYST'),
      ok('TYPE', 'I'),
      ok('PASV'),
      ok('RETR', 'dir/a\rb.txt'),
      ok('EPSV'),
      ok('EPRT', '|2|2001:db8::1|5282|'),
      ok('PORT', '192,0,2,10,195,80'),
      ok('NOOP'),
      { ok: false, reason: 'empty' },
      { ok: false, reason: 'bad-verb' },
      { ok: false, reason: 'nul' },
      ok('ABOR'),
      ok('RETR', 'f\xffo'),
      ok('QUIT'),
    ]);
  });

  it('upstream replies read as expected', () => {
    const part: ReplyLine = { kind: 'part' };
    const final = (code: number, text: string): ReplyLine => ({ kind: 'final', code, text });
    expect(repliesOf(feed(512, [fixtures[1]!.bytes]).events)).toEqual([
      part,
      part, // the 227 inside the 220 greeting
      final(220, '220 Ready'),
      final(331, '331 Password required'),
      final(230, '230 Logged in'),
      part,
      part,
      part,
      part,
      final(211, '211 End'),
      final(227, '227 Entering Passive Mode (10,0,0,5,4,1).'),
      final(229, '229 Entering Extended Passive Mode (|||6446|)'),
      final(200, '200'),
      final(150, '150 Opening\rdata connection'),
      { kind: 'malformed' },
      final(226, '226 Transfer complete'),
    ]);
  });
});

import { describe, expect, it } from 'vitest';
import { type Command, formatCommand, parseCommand, withoutTerminator } from '../../../src/ftp/command.js';
import type { Parsed } from '../../../src/ftp/result.js';
import { latin1 } from './feed.js';

const ok = (verb: string, arg = ''): Parsed<Command> => ({ ok: true, value: { verb, arg } });
const no = (reason: string): Parsed<Command> => ({ ok: false, reason });

describe('parseCommand', () => {
  const rows: Array<[string, string, Parsed<Command>]> = [
    // RFC 959 5.3: <verb> SP <arg> CRLF.
    ['verb and argument', 'USER anonymous\r\n', ok('USER', 'anonymous')],
    ['verb alone', 'PASV\r\n', ok('PASV')],
    // RFC 959 5.3: command codes are case-insensitive.
    ['lower-case verb', 'user anonymous\r\n', ok('USER', 'anonymous')],
    ['mixed-case verb', 'ePsV ALL\r\n', ok('EPSV', 'ALL')],
    // Lenient like real servers: bare LF, or no terminator at all.
    ['bare LF terminator', 'SYST\n', ok('SYST')],
    ['no terminator', 'SYST', ok('SYST')],
    // RFC 959 says one SP; clients send more. Surrounding spaces go, inner ones stay.
    ['extra spaces around verb and argument', '  USER    anonymous   \r\n', ok('USER', 'anonymous')],
    ['spaces inside the argument are kept', 'RETR my  file.txt\r\n', ok('RETR', 'my  file.txt')],
    ['trailing space after a bare verb', 'PWD \r\n', ok('PWD')],
    // RFC 959 3.1.1.1: a pathname may hold a CR that is not followed by LF.
    ['bare CR inside the argument', 'RETR a\rb\r\n', ok('RETR', 'a\rb')],
    ['argument bytes kept as latin1', 'RETR caf\xe9\r\n', ok('RETR', 'caf\xe9')],
    ['EPRT argument passed through', 'EPRT |2|2001:db8::1|5282|\r\n', ok('EPRT', '|2|2001:db8::1|5282|')],
    // RFC 959 4.1.3 / RFC 854: ABOR is preceded by Telnet IAC IP and IAC DM (Synch).
    ['IAC IP IAC DM before ABOR', '\xff\xf4\xff\xf2ABOR\r\n', ok('ABOR')],
    ['IAC IP alone before ABOR', '\xff\xf4ABOR\r\n', ok('ABOR')],
    // RFC 854: IAC IAC is one data byte 255.
    ['IAC IAC is a literal 0xff', 'RETR f\xff\xffo\r\n', ok('RETR', 'f\xffo')],
    // RFC 854: IAC WILL/WONT/DO/DONT <option> is a three-byte negotiation.
    ['IAC WILL option is removed', '\xff\xfb\x01NOOP\r\n', ok('NOOP')],
    ['IAC DONT option is removed', '\xff\xfe\x22NOOP\r\n', ok('NOOP')],
    ['lone IAC at the end of the line is dropped', 'NOOP\xff\r\n', ok('NOOP')],
    ['IAC WILL cut off at the end of the line', 'NOOP\xff\xfb\r\n', ok('NOOP')],
    ['eight-letter verb is the longest accepted', 'ABCDEFGH\r\n', ok('ABCDEFGH')],
    // Unknown verbs are values, not errors (libunftp Command::Other).
    ['unknown verb is a value', 'FROB x\r\n', ok('FROB', 'x')],
    // OpenBSD get_line: NUL is refused.
    ['NUL in the argument', 'USER a\0b\r\n', no('nul')],
    ['NUL alone', '\0\r\n', no('nul')],
    ['NUL in the verb', 'US\0ER a\r\n', no('nul')],
    // The raw line is forwarded byte-exact, so a NUL hidden behind IAC must be refused too.
    ['NUL right after IAC', 'USER a\xff\0b\r\n', no('nul')],
    ['NUL as the option of IAC WILL', 'USER a\xff\xfb\0b\r\n', no('nul')],
    ['IAC IAC then NUL', 'USER a\xff\xff\0\r\n', no('nul')],
    // RFC 959 5.3.1: verbs are alphabetic, three or four characters (extensions stay short).
    ['digits in the verb', 'US3R a\r\n', no('bad-verb')],
    ['a reply code where a verb belongs', '200 OK\r\n', no('bad-verb')],
    ['punctuation in the verb', 'US-ER a\r\n', no('bad-verb')],
    ['nine-letter verb', 'ABCDEFGHI\r\n', no('bad-verb')],
    ['very long verb', `${'A'.repeat(400)}\r\n`, no('bad-verb')],
    ['non-ASCII letter in the verb', '\xc4BOR\r\n', no('bad-verb')],
    // RFC 959 5.3: the separator is SP; a TAB is not one.
    ['TAB between verb and argument', 'USER\tanonymous\r\n', no('bad-verb')],
    ['bare CR inside the verb', 'US\rER a\r\n', no('bad-verb')],
    ['empty line', '\r\n', no('empty')],
    ['nothing at all', '', no('empty')],
    ['only spaces', '    \r\n', no('empty')],
    ['only Telnet commands', '\xff\xf4\xff\xf2\r\n', no('empty')],
  ];
  it.each(rows)('%s', (_name, raw, expected) => {
    expect(parseCommand(latin1(raw))).toEqual(expected);
  });
});

describe('formatCommand', () => {
  const rows: Array<[string, string, string | undefined, string]> = [
    ['verb alone', 'PASV', undefined, 'PASV\r\n'],
    ['verb and argument', 'PORT', '10,0,0,1,4,1', 'PORT 10,0,0,1,4,1\r\n'],
    // STYLE: lines the gateway writes never carry CR, LF or NUL from peer input.
    ['CR, LF and NUL are taken out of the argument', 'USER', 'a\r\nb\0c\rd\ne', 'USER abcde\r\n'],
    ['an argument of only CR LF leaves the bare verb', 'NOOP', '\r\n', 'NOOP\r\n'],
    ['an injected second command is flattened', 'USER', 'x\r\nDELE important', 'USER xDELE important\r\n'],
    // A JS string can hold code units above 0xff; latin1 encoding would keep only their low byte.
    ['a code unit whose low byte is LF cannot smuggle a newline', 'USER', 'a\u010ab', 'USER ab\r\n'],
    ['a code unit whose low byte is NUL cannot smuggle a NUL', 'USER', 'a\u0100b\u0d0d', 'USER ab\r\n'],
  ];
  it.each(rows)('%s', (_name, verb, arg, expected) => {
    expect(formatCommand(verb, arg)).toEqual(latin1(expected));
  });

  it('parses back to what was formatted', () => {
    expect(parseCommand(formatCommand('EPRT', '|1|198.51.100.7|5282|'))).toEqual(ok('EPRT', '|1|198.51.100.7|5282|'));
  });
});

describe('withoutTerminator', () => {
  const rows: Array<[string, string]> = [
    ['A\r\n', 'A'],
    ['A\n', 'A'],
    ['A\r', 'A'], // a lone trailing CR is dropped as well
    ['A\r\r\n', 'A\r'], // only one CR belongs to the terminator
    ['A\n\n', 'A\n'],
    ['', ''],
  ];
  it.each(rows)('%j', (raw, body) => {
    expect(withoutTerminator(latin1(raw))).toEqual(latin1(body));
  });
});

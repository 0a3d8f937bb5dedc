import { describe, expect, it } from 'vitest';
import { formatReply, type ReplyLine, ReplyReader, replyCode } from '../../../src/ftp/reply.js';
import { latin1 } from './feed.js';

const final = (code: number, text: string): ReplyLine => ({ kind: 'final', code, text });
const PART: ReplyLine = { kind: 'part' };
const MALFORMED: ReplyLine = { kind: 'malformed' };

function readAll(lines: readonly string[]): { results: ReplyLine[] } {
  const reader = new ReplyReader();
  return { results: lines.map((text) => reader.read(latin1(text))) };
}

/** Whether a multi-line reply is open after `lines`, seen through `read` alone: a `200` line then is part of it, not a reply. */
function openAfter(lines: readonly string[]): boolean {
  const reader = new ReplyReader();
  for (const text of lines) reader.read(latin1(text));
  return reader.read(latin1('200 probe')).kind === 'part';
}

describe('ReplyReader, one line between replies', () => {
  const rows: Array<[string, string, ReplyLine]> = [
    // RFC 959 4.2: a reply is a three-digit code, SP, text.
    ['single-line reply', '200 Command okay.\r\n', final(200, '200 Command okay.')],
    ['bare LF terminator', '200 OK\n', final(200, '200 OK')],
    ['no terminator', '200 OK', final(200, '200 OK')],
    // Seen in the wild: a bare code with no text completes a reply.
    ['bare code, no text', '200\r\n', final(200, '200')],
    ['code and SP, empty text', '200 \r\n', final(200, '200 ')],
    ['227 with its address', '227 Entering Passive Mode (192,0,2,10,195,80).\r\n', final(227, '227 Entering Passive Mode (192,0,2,10,195,80).')],
    ['bare CR inside the text', '150 Opening\rdata\r\n', final(150, '150 Opening\rdata')],
    ['lowest code', '100 x', final(100, '100 x')],
    ['highest code', '599 x', final(599, '599 x')],
    // RFC 959 4.2: the first digit is 1-5.
    ['first digit 0', '099 x\r\n', MALFORMED],
    ['first digit 6', '600 x\r\n', MALFORMED],
    ['all zeros', '000 x\r\n', MALFORMED],
    ['letter in the code', '2a0 x\r\n', MALFORMED],
    ['two digits only', '20 OK\r\n', MALFORMED],
    ['four digits', '2000 OK\r\n', MALFORMED],
    ['TAB after the code', '200\tOK\r\n', MALFORMED],
    ['letter after the code', '200x\r\n', MALFORMED],
    ['leading space', ' 200 OK\r\n', MALFORMED],
    ['empty line', '\r\n', MALFORMED],
    ['text only', 'hello\r\n', MALFORMED],
    // RFC 959 4.2: `ddd-` opens a multi-line reply.
    ['ddd- opens a multi-line reply', '211-Features:\r\n', PART],
    ['ddd- with no text', '211-\r\n', PART],
  ];
  it.each(rows)('%s', (_name, text, expected) => {
    expect(new ReplyReader().read(latin1(text))).toEqual(expected);
  });
});

describe('ReplyReader, sequences of lines', () => {
  const rows: Array<[string, string[], ReplyLine[]]> = [
    // RFC 2389 3.2 FEAT: a multi-line 211 with indented feature lines.
    ['FEAT listing', ['211-Features:', ' EPSV', ' MDTM', '211 End'], [PART, PART, PART, final(211, '211 End')]],
    // RFC 959 4.2: the example from the RFC itself; a line inside may start with digits.
    [
      'RFC 959 example',
      ['123-First line', 'Second line', '  234 A line beginning with numbers', '123 The last line'],
      [PART, PART, PART, final(123, '123 The last line')],
    ],
    // DESIGN: only the final line carries a 227; a 227 inside a 211 is text.
    [
      '227 inside a multi-line 211 is part, not final',
      ['211-Status', '227 Entering Passive Mode (192,0,2,10,195,80).', '211 End'],
      [PART, PART, final(211, '211 End')],
    ],
    [
      '229 inside a multi-line 211 is part, not final',
      ['211-Status', '229 Entering Extended Passive Mode (|||6446|)', '211 End'],
      [PART, PART, final(211, '211 End')],
    ],
    // RFC 959 4.2: only `ddd SP` with the opening code ends the reply; `ddd-` inside is text.
    ['same code with hyphen inside is still part', ['211-a', '211-b', '211-c', '211 End'], [PART, PART, PART, final(211, '211 End')]],
    // RFC 959 4.2: the last line is the code "followed immediately by Space".
    ['bare code inside is not the end', ['211-a', '211', '211 End'], [PART, PART, final(211, '211 End')]],
    ['another code inside is part', ['211-a', '212 x', '200 OK', '211 End'], [PART, PART, PART, final(211, '211 End')]],
    ['malformed-looking lines inside are part', ['211-a', '', '600 x', '\xff\0', '211 End'], [PART, PART, PART, PART, final(211, '211 End')]],
    ['a reply after a multi-line reply', ['211-a', '211 End', '200 OK'], [PART, final(211, '211 End'), final(200, '200 OK')]],
    ['two multi-line replies back to back', ['220-a', '220 b', '230-c', '230 d'], [PART, final(220, '220 b'), PART, final(230, '230 d')]],
    ['garbage between replies does not change state', ['garbage', '200 OK'], [MALFORMED, final(200, '200 OK')]],
    ['a multi-line reply that never ends stays open', ['211-a', '212 b'], [PART, PART]],
  ];
  it.each(rows)('%s', (_name, lines, expected) => {
    expect(readAll(lines).results).toEqual(expected);
  });

  it('reports whether a multi-line reply is open', () => {
    const lines = ['200 OK', '211-a', 'b', '211 c', 'junk'];
    expect(lines.map((_, i) => openAfter(lines.slice(0, i + 1)))).toEqual([false, true, true, false, false]);
  });
});

describe('replyCode', () => {
  const rows: Array<[string, number]> = [
    ['227 x', 227],
    ['100', 100],
    ['599-', 599],
    ['099', 0],
    ['600', 0],
    ['20', 0],
    ['', 0],
    ['2 0', 0],
    ['abc', 0],
    ['\u0662\u0660\u0660', 0], // Arabic-Indic digits are not ASCII digits
  ];
  it.each(rows)('%j', (text, code) => {
    expect(replyCode(text)).toBe(code);
  });
});

describe('formatReply', () => {
  const rows: Array<[string, number, string, string]> = [
    ['plain', 200, 'Command okay.', '200 Command okay.\r\n'],
    ['empty text', 200, '', '200 \r\n'],
    // STYLE: lines the gateway writes never carry CR, LF or NUL from peer input.
    ['CR, LF and NUL become spaces', 550, 'a\r\nb\0c', '550 a  b c\r\n'],
    ['an injected second reply is flattened', 550, 'x\r\n227 (10,0,0,1,4,1)', '550 x  227 (10,0,0,1,4,1)\r\n'],
    // Code units above 0xff would keep only their low byte in latin1 (0x010a -> LF).
    ['a code unit whose low byte is LF cannot smuggle a newline', 550, 'a\u010ab', '550 a b\r\n'],
    ['a code unit whose low byte is NUL or CR cannot smuggle them', 550, '\u0100\u0d0d', '550   \r\n'],
  ];
  it.each(rows)('%s', (_name, code, text, expected) => {
    expect(formatReply(code, text)).toEqual(latin1(expected));
  });

  it('is read back as one final line', () => {
    expect(new ReplyReader().read(formatReply(421, 'Service not available'))).toEqual(final(421, '421 Service not available'));
  });
});

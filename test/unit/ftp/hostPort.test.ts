import { describe, expect, it } from 'vitest';
import {
  type EpsvArg,
  type Family,
  formatEprt,
  formatEpsvReply,
  formatHostPort,
  formatPasvReply,
  type HostPort,
  parseAddressOfFamily,
  parseEprt,
  parseEpsvArg,
  parseEpsvReply,
  parseHostPort,
  parsePasvReply,
} from '../../../src/ftp/hostPort.js';
import type { Parsed } from '../../../src/ftp/result.js';
import { latin1 } from './feed.js';

const v4 = (address: string, port: number): Parsed<HostPort> => ({ ok: true, value: { address, family: 4, port } });
const v6 = (address: string, port: number): Parsed<HostPort> => ({ ok: true, value: { address, family: 6, port } });
const no = <T>(reason: string): Parsed<T> => ({ ok: false, reason });
const HUGE = '9'.repeat(400);

describe('parseHostPort (PORT argument, RFC 959 4.1.2)', () => {
  const rows: Array<[string, string, Parsed<HostPort>]> = [
    ['the usual form', '192,0,2,10,195,80', v4('192.0.2.10', 195 * 256 + 80)],
    ['all fields at their maximum', '255,255,255,255,255,255', v4('255.255.255.255', 65535)],
    ['the lowest port', '10,0,0,1,0,1', v4('10.0.0.1', 1)], // the codec leaves "port >= 1024" (RFC 2577) to policy
    ['0.0.0.0 is syntactically valid', '0,0,0,0,4,1', v4('0.0.0.0', 1025)], // refusing it is policy too
    ['spaces around fields are tolerated', ' 192, 0 ,2,10 , 195,80 ', v4('192.0.2.10', 50000)],
    ['a leading zero is decimal, never octal', '010,0,0,1,4,1', v4('10.0.0.1', 1025)],
    // RFC 959 4.1.2: each field is one byte, 0-255.
    ['octet above 255', '192,0,2,256,195,80', no('bad-number')],
    ['port byte above 255', '192,0,2,10,256,0', no('bad-number')],
    // The classic overflow: p2 beyond a byte must not be folded into p1*256+p2.
    ['port byte 65557 (overflow)', '10,0,0,1,0,65557', no('bad-number')],
    ['four digits', '0192,0,2,10,195,80', no('bad-number')],
    ['400-digit number', `${HUGE},0,2,10,195,80`, no('bad-number')],
    ['negative field', '192,0,2,-10,195,80', no('bad-number')],
    ['plus sign', '+192,0,2,10,195,80', no('bad-number')],
    ['letters', '192,0,2,ten,195,80', no('bad-number')],
    ['hex', '0xc0,0,2,10,195,80', no('bad-number')],
    ['decimal point', '192,0,2,1.5,195,80', no('bad-number')],
    ['empty field', '192,0,2,,195,80', no('bad-number')],
    ['trailing comma', '192,0,2,10,195,', no('bad-number')],
    ['dots instead of commas', '192.0.2.10,195,80', no('field-count')],
    ['five fields', '192,0,2,10,195', no('field-count')],
    ['seven fields', '192,0,2,10,195,80,1', no('field-count')],
    ['empty', '', no('field-count')],
    // RFC 959: port 0 is no port.
    ['port 0', '192,0,2,10,0,0', no('bad-port')],
  ];
  it.each(rows)('%s', (_name, text, expected) => {
    expect(parseHostPort(text)).toEqual(expected);
  });
});

describe('parsePasvReply (227, RFC 959 4.1.2 and RFC 1123 4.1.2.6)', () => {
  const rows: Array<[string, string, Parsed<HostPort>]> = [
    ['RFC 959 form with parentheses and period', '227 Entering Passive Mode (192,0,2,10,195,80).', v4('192.0.2.10', 50000)],
    ['parentheses, no period', '227 Entering Passive Mode (192,0,2,10,195,80)', v4('192.0.2.10', 50000)],
    // RFC 1123 4.1.2.6: parentheses cannot be assumed; scan for the first digit.
    ['equals sign form', '227 =192,0,2,10,195,80', v4('192.0.2.10', 50000)],
    ['no parentheses at all', '227 Entering Passive Mode 192,0,2,10,195,80', v4('192.0.2.10', 50000)],
    ['no text before the numbers', '227 192,0,2,10,195,80', v4('192.0.2.10', 50000)],
    ['spaces after commas', '227 Entering Passive Mode (192, 0, 2, 10, 195, 80)', v4('192.0.2.10', 50000)],
    ['spaces before and after commas', '227 (192 , 0 , 2 , 10 , 195 , 80)', v4('192.0.2.10', 50000)],
    ['trailing text after the numbers', '227 Entering Passive Mode (192,0,2,10,195,80). Have a nice day', v4('192.0.2.10', 50000)],
    ['lowest port', '227 (192,0,2,10,0,1)', v4('192.0.2.10', 1)],
    ['highest port', '227 (192,0,2,10,255,255)', v4('192.0.2.10', 65535)],
    // The scan stops at the first digit: a '-' before it is text, so the first field reads positive.
    ['minus before the first field is text (first-digit scan)', '227 (-192,0,2,10,195,80)', v4('192.0.2.10', 50000)],
    // RFC 959: every field one byte; port 1-65535.
    ['octet above 255', '227 Entering Passive Mode (192,0,2,256,195,80).', no('bad-number')],
    ['port byte above 255', '227 Entering Passive Mode (192,0,2,10,300,80).', no('bad-number')],
    ['PORT-style overflow 0,65557', '227 Entering Passive Mode (10,0,0,1,0,65557).', no('bad-number')],
    ['400-digit number', `227 Entering Passive Mode (${HUGE},0,2,10,195,80).`, no('bad-number')],
    ['400-digit last field', `227 Entering Passive Mode (192,0,2,10,195,${HUGE}).`, no('bad-number')],
    ['port 0', '227 Entering Passive Mode (192,0,2,10,0,0).', no('bad-port')],
    ['five fields', '227 Entering Passive Mode (192,0,2,10,195).', no('no-host-port')],
    // Six of seven numbers are not a host-port: taking them would pick a wrong port.
    ['seven fields', '227 Entering Passive Mode (192,0,2,10,195,80,7).', no('no-host-port')],
    ['seven fields with spaces', '227 (192, 0, 2, 10, 195, 80 , 7)', no('no-host-port')],
    ['trailing comma', '227 (192,0,2,10,195,80,)', no('no-host-port')],
    ['letters glued to the last field', '227 (192,0,2,10,195,8a)', no('no-host-port')],
    ['negative field', '227 Entering Passive Mode (192,0,2,-10,195,80).', no('no-host-port')],
    ['letters in a field', '227 Entering Passive Mode (192,0,2,ten,195,80).', no('no-host-port')],
    ['hex field', '227 Entering Passive Mode (192,0,2,0x0a,195,80).', no('no-host-port')],
    ['dotted address', '227 Entering Passive Mode (192.0.2.10,195,80).', no('no-host-port')],
    ['no numbers at all', '227 Entering Passive Mode', no('no-host-port')],
    ['bare code', '227', no('no-host-port')],
    ['empty', '', no('no-host-port')],
    // RFC 1123 says "the first digit"; a digit in the text before the numbers defeats that scan.
    ['a digit in the text before the numbers', '227 Entering Passive Mode v2 (192,0,2,10,195,80)', no('no-host-port')],
  ];
  it.each(rows)('%s', (_name, text, expected) => {
    expect(parsePasvReply(text)).toEqual(expected);
  });
});

describe('parseEprt (RFC 2428 2)', () => {
  const rows: Array<[string, string, Parsed<HostPort>]> = [
    ['IPv4, the RFC example', '|1|132.235.1.2|6275|', v4('132.235.1.2', 6275)],
    ['IPv4', '|1|198.51.100.7|5282|', v4('198.51.100.7', 5282)],
    ['IPv6', '|2|2001:db8::1|5282|', v6('2001:db8::1', 5282)],
    ['IPv6, the RFC example', '|2|1080::8:800:200C:417A|5282|', v6('1080::8:800:200c:417a', 5282)],
    // RFC 2428 2: any delimiter in ASCII 33-126.
    ['delimiter !', '!1!198.51.100.7!5282!', v4('198.51.100.7', 5282)],
    ['delimiter ~ (126)', '~2~2001:db8::1~5282~', v6('2001:db8::1', 5282)],
    ['delimiter # ', '#1#198.51.100.7#1#', v4('198.51.100.7', 1)],
    // Addresses are normalised (RFC 5952 for IPv6).
    ['IPv6 upper case and zeros are normalised', '|2|2001:DB8:0:0:0:0:0:1|5282|', v6('2001:db8::1', 5282)],
    ['IPv4-mapped IPv6 is normalised to hex groups', '|2|::ffff:198.51.100.7|5282|', v6('::ffff:c633:6407', 5282)],
    ['unspecified IPv6', '|2|::|5282|', v6('::', 5282)],
    ['lowest port', '|1|198.51.100.7|1|', v4('198.51.100.7', 1)],
    ['highest port', '|1|198.51.100.7|65535|', v4('198.51.100.7', 65535)],
    ['leading zeros in the port', '|1|198.51.100.7|00080|', v4('198.51.100.7', 80)],
    // RFC 2428 2: the address must be of the announced family.
    ['family 1 with an IPv6 address', '|1|2001:db8::1|5282|', no('bad-address')],
    ['family 2 with an IPv4 address', '|2|198.51.100.7|5282|', no('bad-address')],
    ['family 3', '|3|198.51.100.7|5282|', no('bad-family')],
    ['family 0', '|0|198.51.100.7|5282|', no('bad-family')],
    ['family 01', '|01|198.51.100.7|5282|', no('bad-family')],
    // IPv4 only as a dotted quad: inet_aton forms would let a bounce check be fooled.
    ['IPv4 as one 32-bit number', '|1|3221225985|1|', no('bad-address')],
    ['IPv4 with a hex octet', '|1|0xc0.0.2.1|1|', no('bad-address')],
    ['IPv4 with an octal-looking octet', '|1|010.0.2.1|1|', no('bad-address')],
    ['IPv4 with three parts', '|1|192.0.513|1|', no('bad-address')],
    ['IPv4 with a trailing dot', '|1|192.0.2.1.|1|', no('bad-address')],
    ['IPv4 octet above 255', '|1|192.0.2.256|1|', no('bad-address')],
    ['IPv4 with a space', '|1| 198.51.100.7|1|', no('bad-address')],
    // A zone id names a link of the sender, meaningless to us.
    ['IPv6 zone id', '|2|fe80::1%eth0|5282|', no('bad-address')],
    ['IPv6 zone id, URL-encoded', '|2|fe80::1%25eth0|5282|', no('bad-address')],
    ['IPv6 in brackets', '|2|[2001:db8::1]|5282|', no('bad-address')],
    ['IPv6 with nine groups', '|2|1:2:3:4:5:6:7:8:9|5282|', no('bad-address')],
    ['port 0', '|1|198.51.100.7|0|', no('bad-port')],
    ['port 65536', '|1|198.51.100.7|65536|', no('bad-port')],
    ['negative port', '|1|198.51.100.7|-1|', no('bad-port')],
    ['400-digit port', `|1|198.51.100.7|${HUGE}|`, no('bad-port')],
    ['port with a space', '|1|198.51.100.7| 80|', no('bad-port')],
    ['empty family', '||198.51.100.7|5282|', no('bad-family')],
    ['empty address', '|1||5282|', no('bad-address')],
    ['empty port', '|1|198.51.100.7||', no('bad-port')],
    ['all fields empty', '||||', no('bad-family')],
    ['missing last delimiter', '|1|198.51.100.7|5282', no('bad-syntax')],
    ['text after the last delimiter', '|1|198.51.100.7|5282|x', no('bad-syntax')],
    ['extra field', '|1|198.51.100.7|5282|1|', no('bad-syntax')],
    ['mixed delimiters', '|1!198.51.100.7|5282|', no('bad-syntax')],
    ['delimiter found inside the IPv6 address', ':2:2001:db8::1:5282:', no('bad-syntax')],
    ['space (32) is not a delimiter', ' 1 198.51.100.7 5282 ', no('bad-delimiter')],
    ['DEL (127) is not a delimiter', '\x7f1\x7f198.51.100.7\x7f5282\x7f', no('bad-delimiter')],
    ['empty', '', no('bad-delimiter')],
  ];
  it.each(rows)('%s', (_name, arg, expected) => {
    expect(parseEprt(arg)).toEqual(expected);
  });
});

describe('parseEpsvReply (229, RFC 2428 3)', () => {
  const rows: Array<[string, string, Parsed<number>]> = [
    ['the RFC form', '229 Entering Extended Passive Mode (|||6446|)', { ok: true, value: 6446 }],
    ['delimiter !', '229 Entering Extended Passive Mode (!!!6446!)', { ok: true, value: 6446 }],
    ['delimiter #', '229 Entering Extended Passive Mode (###6446#)', { ok: true, value: 6446 }],
    ['trailing period', '229 Entering Extended Passive Mode (|||6446|).', { ok: true, value: 6446 }],
    ['no text before the parenthesis', '229 (|||6446|)', { ok: true, value: 6446 }],
    ['lowest port', '229 (|||1|)', { ok: true, value: 1 }],
    ['highest port', '229 (|||65535|)', { ok: true, value: 65535 }],
    // RFC 2428 3: the same delimiter four times; mixing is refused.
    ['mixed delimiters in the empty fields', '229 Entering Extended Passive Mode (|!|6446|)', no('bad-delimiter')],
    ['different closing delimiter', '229 Entering Extended Passive Mode (|||6446!)', no('bad-syntax')],
    ['different opening delimiter', '229 Entering Extended Passive Mode (!!!6446|)', no('bad-syntax')],
    // RFC 2428 3: network protocol and address fields must be empty.
    ['address fields not empty', '229 (|1|192.0.2.1|6446|)', no('bad-delimiter')],
    ['space is not a delimiter', '229 (   6446 )', no('bad-delimiter')],
    ['port 0', '229 Entering Extended Passive Mode (|||0|)', no('bad-port')],
    ['port 65536', '229 Entering Extended Passive Mode (|||65536|)', no('bad-port')],
    ['negative port', '229 (|||-1|)', no('bad-port')],
    ['400-digit port', `229 (|||${HUGE}|)`, no('bad-port')],
    ['letters in the port', '229 (|||64a6|)', no('bad-port')],
    ['empty port', '229 (||||)', no('bad-port')],
    ['no port and no closing delimiter', '229 (|||)', no('bad-syntax')],
    ['missing closing parenthesis', '229 Entering Extended Passive Mode (|||6446|', no('bad-syntax')],
    ['missing parentheses', '229 Entering Extended Passive Mode |||6446|', no('no-parenthesis')],
    ['bare code', '229', no('no-parenthesis')],
  ];
  it.each(rows)('%s', (_name, text, expected) => {
    expect(parseEpsvReply(text)).toEqual(expected);
  });
});

describe('parseEpsvArg (RFC 2428 3)', () => {
  const rows: Array<[string, string, Parsed<EpsvArg>]> = [
    ['no argument', '', { ok: true, value: { kind: 'any' } }],
    ['ALL', 'ALL', { ok: true, value: { kind: 'all' } }],
    ['all, in lower case (RFC 959: case-insensitive)', 'all', { ok: true, value: { kind: 'all' } }],
    ['protocol 1 (IPv4)', '1', { ok: true, value: { kind: 'family', family: 4 } }],
    ['protocol 2 (IPv6)', '2', { ok: true, value: { kind: 'family', family: 6 } }],
    ['protocol 3', '3', no('bad-family')],
    ['protocol 01', '01', no('bad-family')],
    ['ALL with more text', 'ALLX', no('bad-family')],
  ];
  it.each(rows)('%s', (_name, arg, expected) => {
    expect(parseEpsvArg(arg)).toEqual(expected);
  });
});

describe('parseAddressOfFamily', () => {
  const rows: Array<[string, Family, string | undefined]> = [
    ['192.0.2.1', 4, '192.0.2.1'],
    ['0.0.0.0', 4, '0.0.0.0'],
    ['192.0.2.1', 6, undefined],
    ['2001:db8::1', 4, undefined],
    ['2001:0DB8::0001', 6, '2001:db8::1'],
    ['fe80::1%1', 6, undefined],
    ['3221225985', 4, undefined],
    ['', 4, undefined],
    ['', 6, undefined],
  ];
  it.each(rows)('%j as IPv%i', (text, family, expected) => {
    expect(parseAddressOfFamily(text, family)).toBe(expected);
  });
});

describe('formatters', () => {
  it('formatHostPort writes h1,h2,h3,h4,p1,p2', () => {
    expect(formatHostPort('192.0.2.10', 50000)).toBe('192,0,2,10,195,80');
    expect(formatHostPort('10.0.0.1', 1)).toBe('10,0,0,1,0,1');
    expect(formatHostPort('255.255.255.255', 65535)).toBe('255,255,255,255,255,255');
  });

  it('formatPasvReply writes the RFC 959 form with CRLF', () => {
    expect(formatPasvReply('203.0.113.5', 50000)).toEqual(latin1('227 Entering Passive Mode (203,0,113,5,195,80).\r\n'));
  });

  it('formatEprt picks the family from the address', () => {
    expect(formatEprt('198.51.100.7', 5282)).toBe('|1|198.51.100.7|5282|');
    expect(formatEprt('2001:db8::1', 5282)).toBe('|2|2001:db8::1|5282|');
  });

  it('formatEpsvReply writes the RFC 2428 form with CRLF', () => {
    expect(formatEpsvReply(6446)).toEqual(latin1('229 Entering Extended Passive Mode (|||6446|)\r\n'));
  });
});

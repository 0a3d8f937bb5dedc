/**
 * The address-carrying arguments and replies of FTP data-connection set-up:
 * PORT and 227 (RFC 959, RFC 1123 4.1.2.6), EPRT and 229 (RFC 2428).
 * Every field is validated; the parsers never throw on peer input.
 */
import ipaddr from 'ipaddr.js';
import { type Parsed, parsed, refused } from './result.js';

export type Family = 4 | 6;

export interface HostPort {
  /** Normalised textual address (IPv4 dotted quad or RFC 5952 IPv6). */
  readonly address: string;
  readonly family: Family;
  /** 1-65535. */
  readonly port: number;
}

const MAX_FIELD_DIGITS = 3;
const MAX_PORT_DIGITS = 5;
const MIN_DELIMITER = 33; // RFC 2428 2: any printable ASCII
const MAX_DELIMITER = 126;

/** `h1,h2,h3,h4,p1,p2` exactly, as in a PORT argument. */
export function parseHostPort(text: string): Parsed<HostPort> {
  const fields = text.split(',');
  if (fields.length !== 6) return refused('field-count');
  const numbers: number[] = [];
  for (const field of fields) {
    const value = parseByte(field.trim());
    if (value === undefined) return refused('bad-number');
    numbers.push(value);
  }
  const [h1, h2, h3, h4, p1, p2] = numbers as [number, number, number, number, number, number];
  const port = p1 * 256 + p2;
  if (port === 0) return refused('bad-port');
  return parsed({ address: `${h1}.${h2}.${h3}.${h4}`, family: 4, port });
}

export function formatHostPort(address: string, port: number): string {
  const octets = ipaddr.IPv4.parse(address).octets;
  return `${octets.join(',')},${port >> 8},${port & 0xff}`;
}

/**
 * The host-port of a 227 reply. RFC 1123 4.1.2.6: the text varies
 * (`(h1,…,p2)`, `=h1,…,p2`, bare), so scan for the first digit after the code.
 */
export function parsePasvReply(text: string): Parsed<HostPort> {
  const body = text.slice(4);
  const first = body.search(/[0-9]/);
  if (first === -1) return refused('no-host-port');
  // Exactly six numbers: a seventh field or letters glued to the sixth are not a host-port.
  const match = /^[0-9]+(?:\s*,\s*[0-9]+){5}(?![0-9A-Za-z]|\s*,)/.exec(body.slice(first));
  if (match === null) return refused('no-host-port');
  return parseHostPort(match[0]);
}

export function formatPasvReply(address: string, port: number): Buffer {
  return Buffer.from(`227 Entering Passive Mode (${formatHostPort(address, port)}).\r\n`, 'latin1');
}

/** EPRT argument: `<d><af><d><addr><d><port><d>`, d any of ASCII 33-126. */
export function parseEprt(arg: string): Parsed<HostPort> {
  const d = arg.charAt(0);
  if (!isDelimiter(d)) return refused('bad-delimiter');
  const parts = arg.split(d);
  if (parts.length !== 5 || parts[0] !== '' || parts[4] !== '') return refused('bad-syntax');
  const [, proto, host, portText] = parts as [string, string, string, string, string];
  if (proto !== '1' && proto !== '2') return refused('bad-family');
  const family: Family = proto === '1' ? 4 : 6;
  const address = parseAddressOfFamily(host, family);
  if (address === undefined) return refused('bad-address');
  const port = parsePort(portText);
  if (port === undefined) return refused('bad-port');
  return parsed({ address, family, port });
}

export function formatEprt(address: string, port: number): string {
  const family = ipaddr.parse(address).kind() === 'ipv4' ? 1 : 2;
  return `|${family}|${address}|${port}|`;
}

/** The port of a 229 reply: `(<d><d><d><port><d>)`, the same delimiter four times. */
export function parseEpsvReply(text: string): Parsed<number> {
  const open = text.indexOf('(', 4);
  if (open === -1) return refused('no-parenthesis');
  const d = text.charAt(open + 1);
  if (!isDelimiter(d) || text.charAt(open + 2) !== d || text.charAt(open + 3) !== d) {
    return refused('bad-delimiter');
  }
  const end = text.indexOf(d, open + 4);
  if (end === -1 || text.charAt(end + 1) !== ')') return refused('bad-syntax');
  const port = parsePort(text.slice(open + 4, end));
  return port === undefined ? refused('bad-port') : parsed(port);
}

export function formatEpsvReply(port: number): Buffer {
  return Buffer.from(`229 Entering Extended Passive Mode (|||${port}|)\r\n`, 'latin1');
}

/** EPSV argument (RFC 2428 3): none, `ALL`, or a network protocol number. */
export type EpsvArg = { kind: 'any' } | { kind: 'all' } | { kind: 'family'; family: Family };

export function parseEpsvArg(arg: string): Parsed<EpsvArg> {
  if (arg === '') return parsed({ kind: 'any' });
  if (arg.toUpperCase() === 'ALL') return parsed({ kind: 'all' });
  if (arg === '1') return parsed({ kind: 'family', family: 4 });
  if (arg === '2') return parsed({ kind: 'family', family: 6 });
  return refused('bad-family');
}

/** An address of exactly one family, normalised, or undefined. IPv4 only as a dotted quad. */
export function parseAddressOfFamily(text: string, family: Family): string | undefined {
  if (family === 4) {
    return ipaddr.IPv4.isValidFourPartDecimal(text) ? ipaddr.IPv4.parse(text).toString() : undefined;
  }
  if (text.includes('%') || !ipaddr.IPv6.isValid(text)) return undefined;
  return ipaddr.IPv6.parse(text).toString();
}

function parseByte(text: string): number | undefined {
  if (text.length === 0 || text.length > MAX_FIELD_DIGITS || !/^[0-9]+$/.test(text)) return undefined;
  const value = Number(text);
  return value <= 255 ? value : undefined;
}

function parsePort(text: string): number | undefined {
  if (text.length === 0 || text.length > MAX_PORT_DIGITS || !/^[0-9]+$/.test(text)) return undefined;
  const value = Number(text);
  return value >= 1 && value <= 65535 ? value : undefined;
}

function isDelimiter(d: string): boolean {
  const c = d.charCodeAt(0);
  return d.length === 1 && c >= MIN_DELIMITER && c <= MAX_DELIMITER;
}

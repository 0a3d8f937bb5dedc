/**
 * How a client names the server behind an FTP proxy (the "FTP proxy"
 * settings of FileZilla, WinSCP, lftp; ProFTPD mod_proxy, SuSE ftp-proxy):
 * `USER user@host`, `USER user@host:port`, `USER user@[2001:db8::1]:2121`
 * (the last `@` separates: user names may contain `@`), and `SITE host` /
 * `OPEN host` (`host`, `host:port`, `host port`, `[v6]:port`). Pure and
 * total: a reason, never an exception.
 */
import ipaddr from 'ipaddr.js';
import { type Parsed, parsed, refused } from './result.js';

export interface ProxyTarget {
  /** The user name the server gets (USER form only). */
  readonly user: string | undefined;
  /** An IP address (normalised) or a host name (lower case). */
  readonly host: string;
  /** Whether `host` is an IP literal (else a name to resolve). */
  readonly literal: boolean;
  /** undefined: the default (21). */
  readonly port: number | undefined;
}

const MAX_HOST = 253;
const MAX_USER = 256;

/** `user@host[:port]`, the last `@` separating. */
export function parseProxyUser(arg: string): Parsed<ProxyTarget> {
  if (hasControl(arg)) return refused('control-char');
  const at = arg.lastIndexOf('@');
  if (at === -1) return refused('no-host');
  const user = arg.slice(0, at);
  if (user === '') return refused('empty-user');
  if (user.length > MAX_USER) return refused('user-too-long');
  const target = parseHostPort(arg.slice(at + 1), false);
  return target.ok ? parsed({ ...target.value, user }) : target;
}

/** The argument of `SITE host` or `OPEN host`. */
export function parseProxyHost(arg: string): Parsed<ProxyTarget> {
  if (hasControl(arg)) return refused('control-char');
  return parseHostPort(arg.trim(), true);
}

function parseHostPort(text: string, spaceSeparates: boolean): Parsed<ProxyTarget> {
  if (text === '') return refused('empty-host');
  let host = text;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1) return refused('bad-host');
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':') && !(spaceSeparates && rest.startsWith(' '))) return refused('bad-host');
      portText = rest.slice(1).trim();
    }
    if (!ipaddr.IPv6.isValid(host) || host.includes('%')) return refused('bad-host');
  } else {
    const space = spaceSeparates ? text.indexOf(' ') : -1;
    if (space !== -1) {
      host = text.slice(0, space);
      portText = text.slice(space + 1).trim();
    } else if (text.indexOf(':') !== -1 && text.indexOf(':') === text.lastIndexOf(':')) {
      host = text.slice(0, text.indexOf(':'));
      portText = text.slice(text.indexOf(':') + 1);
    }
  }
  const port = portText === undefined ? undefined : parsePort(portText);
  if (port === null) return refused('bad-port');
  const literal = ipLiteral(host);
  if (literal !== undefined) return parsed({ user: undefined, host: literal, literal: true, port });
  if (!isHostName(host)) return refused('bad-host');
  return parsed({ user: undefined, host: host.toLowerCase().replace(/\.$/, ''), literal: false, port });
}

/** 1-65535 in at most five decimal digits; null otherwise. */
function parsePort(text: string): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : null;
}

/** A dotted-quad IPv4 (no shorthand, no leading zeros) or an IPv6 without zone, normalised. */
function ipLiteral(host: string): string | undefined {
  if (host.includes(':')) return ipaddr.IPv6.isValid(host) && !host.includes('%') ? ipaddr.process(host).toString() : undefined;
  if (ipaddr.IPv4.isValidFourPartDecimal(host) && !/(^|\.)0\d/.test(host)) return ipaddr.parse(host).toString();
  return undefined;
}

/** A DNS host name (RFC 1123 labels), not an address; all-numeric forms (`127.1`) are not names. */
export function isHostName(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_HOST || value.includes(':')) return false;
  const labels = value.replace(/\.$/, '').split('.');
  return labels.every((l: string) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l)) && !/^[0-9.]+$/.test(value);
}

function hasControl(text: string): boolean {
  return /[\x00-\x1f\x7f]/.test(text);
}

/**
 * PORT/EPRT arguments and 227/229 replies in tests, through the gateway's
 * own codec (src/ftp/hostPort.ts): one formatter and one parser for each,
 * so a test and the gateway can never disagree on the syntax. The parsers
 * here throw on a refusal: in a test, an unparsable reply is a failure.
 */
import {
  formatEprt,
  formatHostPort,
  formatPasvReply,
  parseEprt,
  parseEpsvReply,
  parseHostPort,
  parsePasvReply,
} from '../../src/ftp/hostPort.js';
import type { Parsed } from '../../src/ftp/result.js';

export interface Target {
  readonly address: string;
  readonly port: number;
}

function accepted<T>(result: Parsed<T>, what: string, text: string): T {
  if (!result.ok) throw new Error(`not ${what} (${result.reason}): ${text}`);
  return result.value;
}

/** The address and port of a `227 …` reply line (RFC 1123 4.1.2.6 forms). */
export function parse227(text: string): Target {
  const { address, port } = accepted(parsePasvReply(text), 'a 227 with a host-port', text);
  return { address, port };
}

/** The port of a `229 … (|||port|)` reply line. */
export function parse229(text: string): number {
  return accepted(parseEpsvReply(text), 'a 229 with a port', text);
}

/** `227 <text> (h1,h2,h3,h4,p1,p2).` with its terminator, for a fake upstream to send. */
export function pasvReply(address: string, port: number, text = 'Entering Passive Mode'): string {
  if (text === 'Entering Passive Mode') return formatPasvReply(address, port).toString('latin1');
  return `227 ${text} (${formatHostPort(address, port)}).\r\n`;
}

/** `h1,h2,h3,h4,p1,p2` (RFC 959 PORT argument). */
export const portArg: (address: string, port: number) => string = formatHostPort;

/** `|1|a.b.c.d|port|` or `|2|v6|port|` (RFC 2428 EPRT argument). */
export const eprtArg: (address: string, port: number) => string = formatEprt;

/** The verb, address and port of a PORT or EPRT line (as an upstream received it). */
export function parseActiveLine(line: string): Target & { verb: 'PORT' | 'EPRT' } {
  const verb = line.slice(0, 4).toUpperCase();
  const arg = line.slice(5).trim();
  const parsedArg = verb === 'PORT' ? parseHostPort(arg) : verb === 'EPRT' ? parseEprt(arg) : undefined;
  if (parsedArg === undefined) throw new Error(`not a PORT/EPRT line: ${line}`);
  const { address, port } = accepted(parsedArg, `a ${verb} argument`, line);
  return { verb: verb as 'PORT' | 'EPRT', address, port };
}

/**
 * Client commands (RFC 959 5.3): `VERB [SP arg] CRLF`.
 *
 * Total: any byte string gives a command or a reason. Telnet IAC sequences
 * (RFC 854; clients send IAC IP / IAC DM before ABOR) are removed before the
 * verb is read; the raw line is kept by the caller for byte-exact forwarding.
 */
import { type Parsed, parsed, refused } from './result.js';

export interface Command {
  /** Upper-case verb: `PASV`, `EPSV`, or any other word of letters. */
  readonly verb: string;
  /** Argument with surrounding spaces removed; bytes kept as latin1. */
  readonly arg: string;
}

export const IAC = 0xff;
const TELNET_WILL = 251;
const TELNET_DONT = 254;
const MAX_VERB_CHARS = 8;

export function parseCommand(raw: Buffer): Parsed<Command> {
  // Check the raw bytes: the line is forwarded as is, so a NUL behind IAC counts too.
  if (raw.includes(0)) return refused('nul');
  const body = stripTelnet(withoutTerminator(raw));
  const text = body.toString('latin1').trim();
  if (text.length === 0) return refused('empty');
  const space = text.indexOf(' ');
  const word = space === -1 ? text : text.slice(0, space);
  if (word.length > MAX_VERB_CHARS || !/^[A-Za-z]+$/.test(word)) return refused('bad-verb');
  const arg = space === -1 ? '' : text.slice(space + 1).trim();
  return parsed({ verb: word.toUpperCase(), arg });
}

/**
 * `VERB arg\r\n`, with CR, LF and NUL taken out of the argument, and code units above
 * 0xff too: latin1 encoding keeps only their low byte (U+010A would become LF).
 */
export function formatCommand(verb: string, arg = ''): Buffer {
  const safe = arg.replace(/[\r\n\0\u0100-\uffff]/g, '');
  return Buffer.from(safe.length > 0 ? `${verb} ${safe}\r\n` : `${verb}\r\n`, 'latin1');
}

export function withoutTerminator(raw: Buffer): Buffer {
  let end = raw.length;
  if (end > 0 && raw[end - 1] === 0x0a) end--;
  if (end > 0 && raw[end - 1] === 0x0d) end--;
  return raw.subarray(0, end);
}

function stripTelnet(body: Buffer): Buffer {
  if (!body.includes(IAC)) return body;
  const out = Buffer.allocUnsafe(body.length);
  let n = 0;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i] as number;
    if (byte !== IAC) {
      out[n++] = byte;
      continue;
    }
    const next = body[i + 1];
    if (next === IAC) {
      out[n++] = IAC;
      i++;
    } else if (next !== undefined && next >= TELNET_WILL && next <= TELNET_DONT) {
      i += 2; // option negotiation: IAC WILL/WONT/DO/DONT <option>
    } else {
      i += 1; // IAC <command>, e.g. IP (244) or DM (242)
    }
  }
  return out.subarray(0, n);
}

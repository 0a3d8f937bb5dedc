/**
 * Server replies (RFC 959 4.2): single-line `ddd text` or multi-line
 * `ddd-text` … `ddd text`. Only the last line of a reply completes it; lines
 * inside a multi-line reply are text, whatever they look like.
 */
import { withoutTerminator } from './command.js';

export type ReplyLine =
  /** The line that completes a reply; `code` is its three-digit code. */
  | { readonly kind: 'final'; readonly code: number; readonly text: string }
  /** The first or a middle line of a multi-line reply. */
  | { readonly kind: 'part' }
  /** Not a reply line where a reply must start. */
  | { readonly kind: 'malformed' };

const PART: ReplyLine = { kind: 'part' };
const MALFORMED: ReplyLine = { kind: 'malformed' };

export class ReplyReader {
  /** Code of the multi-line reply being read, or 0 between replies. */
  private openCode = 0;

  read(raw: Buffer): ReplyLine {
    const text = withoutTerminator(raw).toString('latin1');
    const code = replyCode(text);
    const sep = text.charAt(3);
    if (this.openCode !== 0) {
      if (code !== this.openCode || sep !== ' ') return PART;
      this.openCode = 0;
      return { kind: 'final', code, text };
    }
    if (code === 0) return MALFORMED;
    if (sep === '-') {
      this.openCode = code;
      return PART;
    }
    if (sep !== ' ' && sep !== '') return MALFORMED;
    return { kind: 'final', code, text };
  }
}

/** The reply code at the start of `text`, or 0 if there is none (RFC 959: first digit 1-5). */
export function replyCode(text: string): number {
  if (text.length < 3) return 0;
  const a = text.charCodeAt(0) - 48;
  const b = text.charCodeAt(1) - 48;
  const c = text.charCodeAt(2) - 48;
  if (a < 1 || a > 5 || b < 0 || b > 9 || c < 0 || c > 9) return 0;
  return a * 100 + b * 10 + c;
}

/**
 * A single-line reply with CR, LF and NUL replaced in the text, and code units above 0xff
 * too: latin1 encoding keeps only their low byte (U+010A would become LF).
 */
export function formatReply(code: number, text: string): Buffer {
  return Buffer.from(`${code} ${text.replace(/[\r\n\0\u0100-\uffff]/g, ' ')}\r\n`, 'latin1');
}

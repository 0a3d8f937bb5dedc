/** Helpers shared by the codec tests: run bytes through a LineSplitter and record what comes out. */
import { type LineFault, LineSplitter } from '../../../src/ftp/lineSplitter.js';

export type LineEvent = { readonly line: Buffer } | { readonly fault: LineFault };

/**
 * Feed `chunks` in order to one splitter; return every event, and what the splitter still holds,
 * seen through `push` alone: one more LF is pushed, and the line it completes (without that LF) is
 * what was held; '' when it completes nothing; its fault when held bytes and LF exceed the cap.
 */
export function feed(maxLineBytes: number, chunks: readonly Buffer[]): { events: LineEvent[]; held: string | LineFault } {
  const events: LineEvent[] = [];
  const splitter = new LineSplitter(maxLineBytes, {
    line: (raw) => events.push({ line: Buffer.from(raw) }),
    fault: (kind) => events.push({ fault: kind }),
  });
  for (const chunk of chunks) splitter.push(chunk);
  const fed = events.length;
  splitter.push(Buffer.from('\n'));
  const [probe, ...more] = events.splice(fed);
  if (more.length > 0) throw new Error('one LF completed more than one line');
  if (probe === undefined) return { events, held: '' };
  return { events, held: 'fault' in probe ? probe.fault : probe.line.subarray(0, -1).toString('latin1') };
}

/** The lines among `events`, in order. */
export function linesOf(events: readonly LineEvent[]): Buffer[] {
  const lines: Buffer[] = [];
  for (const event of events) if ('line' in event) lines.push(event.line);
  return lines;
}

/** `bytes` as two pieces cut at `offset` (either may be empty). */
export function splitAt(bytes: Buffer, offset: number): Buffer[] {
  return [bytes.subarray(0, offset), bytes.subarray(offset)];
}

/** `bytes` one byte per chunk. */
export function bytewise(bytes: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) chunks.push(bytes.subarray(i, i + 1));
  return chunks;
}

/** `bytes` cut at the given offsets (any order, duplicates and out-of-range values allowed). */
export function cutAt(bytes: Buffer, offsets: readonly number[]): Buffer[] {
  const cuts = [...new Set(offsets.map((o) => Math.min(o, bytes.length)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const cut of cuts) {
    chunks.push(bytes.subarray(start, cut));
    start = cut;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

export function latin1(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

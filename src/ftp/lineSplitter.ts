/**
 * Stream framing for the control channel: TCP reads in, whole lines out.
 *
 * A line ends at LF (CRLF is the norm, bare LF is tolerated as most servers
 * do); a bare CR is an ordinary byte of the line. Each emitted line keeps its
 * terminator so that a line the gateway does not rewrite can be forwarded
 * byte-exact. Memory is bounded: a line longer than `maxLineBytes` (terminator included) is
 * dropped up to its LF and reported once as `too-long`.
 */
export const LF = 0x0a;
export const CR = 0x0d;

export type LineFault = 'too-long';

export interface LineSink {
  line(raw: Buffer): void;
  fault(kind: LineFault): void;
}

export class LineSplitter {
  private pending: Buffer | null = null;
  private discarding = false;

  constructor(
    private readonly maxLineBytes: number,
    private readonly sink: LineSink,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const lf = chunk.indexOf(LF, start);
      if (lf === -1) {
        this.hold(chunk.subarray(start));
        return;
      }
      this.finish(chunk.subarray(start, lf + 1));
      start = lf + 1;
    }
  }

  private hold(part: Buffer): void {
    if (this.discarding) return;
    const held = this.pending === null ? part.length : this.pending.length + part.length;
    if (held > this.maxLineBytes) {
      this.pending = null;
      this.discarding = true;
      this.sink.fault('too-long');
      return;
    }
    // Copy: the caller's chunk may be a reused read buffer.
    this.pending = this.pending === null ? Buffer.from(part) : Buffer.concat([this.pending, part]);
  }

  private finish(tail: Buffer): void {
    if (this.discarding) {
      this.discarding = false;
      return;
    }
    const line = this.pending === null ? tail : Buffer.concat([this.pending, tail]);
    this.pending = null;
    if (line.length > this.maxLineBytes) {
      this.sink.fault('too-long');
      return;
    }
    this.sink.line(line);
  }
}

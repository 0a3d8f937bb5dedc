/**
 * Byte relay between the two legs of a data connection: both directions,
 * backpressure respected, and a FIN on one side forwarded as `end()` on the
 * other (half-close: an upload's end is the FIN; turning it into a close
 * would cut the transfer). Both sockets must be created with
 * `allowHalfOpen: true`.
 */
import type { Socket } from 'node:net';

export interface RelayCounters {
  /** Bytes from `a` to `b`. */
  aToB: number;
  /** Bytes from `b` to `a`. */
  bToA: number;
}

/**
 * Relay until both directions have ended and both sockets closed, or until
 * either fails; `done` is called once, with the first error if any.
 */
export function relay(a: Socket, b: Socket, done: (err?: Error) => void): RelayCounters {
  const counters: RelayCounters = { aToB: 0, bToA: 0 };
  let open = 2;
  let finished = false;
  const finish = (err?: Error) => {
    if (finished) return;
    finished = true;
    if (err !== undefined) {
      a.destroy();
      b.destroy();
    }
    done(err);
  };
  const onClose = () => {
    if (--open === 0) finish();
  };
  pump(a, b, (n) => (counters.aToB += n));
  pump(b, a, (n) => (counters.bToA += n));
  for (const s of [a, b]) {
    s.once('error', finish);
    s.once('close', onClose);
  }
  return counters;
}

function pump(src: Socket, dst: Socket, count: (n: number) => void): void {
  const resume = () => src.resume();
  src.on('data', (chunk: Buffer) => {
    count(chunk.length);
    if (!dst.write(chunk)) {
      src.pause();
      dst.once('drain', resume);
    }
  });
  src.once('end', () => dst.end());
}

// Cheap ends for the bench's own traffic: a source writes one constant 1 MiB
// buffer again and again (its bytes never change, so sharing it between
// writes is safe), and a sink counts bytes read into one reused 1 MiB buffer
// (it keeps nothing, so reuse is safe too). The peers must not be the
// bottleneck of what they measure.
import { createHash } from 'node:crypto';
import net from 'node:net';

export const CHUNK_BYTES = 1024 * 1024;
export const ZEROS = Buffer.alloc(CHUNK_BYTES);
const SINK_BUFFER = Buffer.allocUnsafe(CHUNK_BYTES);

/** `onread` options that hand every chunk to `onChunk(buf, n)`; the buffer is reused. */
export function sinkOnread(onChunk) {
  return { buffer: SINK_BUFFER, callback: (n, buf) => void onChunk(buf, n) };
}

/** Moves an accepted socket (listener made with pauseOnConnect) onto an `onread` reader. */
export function adopt(accepted, onread) {
  const handle = accepted._handle;
  accepted._handle = null;
  const socket = new net.Socket({ handle, allowHalfOpen: true, onread });
  socket.once('close', () => accepted.destroy());
  return socket;
}

/** Writes `bytes` zero bytes with backpressure; `then` runs once all are handed to the kernel path. */
export function sendZeros(socket, bytes, then) {
  let left = bytes;
  const more = () => {
    while (left > 0) {
      const n = Math.min(left, CHUNK_BYTES);
      left -= n;
      const ok = socket.write(n === CHUNK_BYTES ? ZEROS : ZEROS.subarray(0, n));
      if (!ok) {
        socket.once('drain', more);
        return;
      }
    }
    then();
  };
  more();
}

export function u64(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/**
 * Verified flows carry this instead of zeros: deterministic bytes whose
 * length is not a power of two, so chunk boundaries wander through it and a
 * relay that overwrote a buffer still held by a write would be caught.
 */
export const PATTERN = makePattern(CHUNK_BYTES + 13);

function makePattern(n) {
  const b = Buffer.allocUnsafe(n);
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 255;
  }
  return b;
}

/** Writes `bytes` bytes of the repeated PATTERN with backpressure. */
export function sendPattern(socket, bytes, then) {
  let left = bytes;
  let at = 0;
  const more = () => {
    while (left > 0) {
      const n = Math.min(left, PATTERN.length - at);
      const ok = socket.write(PATTERN.subarray(at, at + n));
      left -= n;
      at = (at + n) % PATTERN.length;
      if (!ok) {
        socket.once('drain', more);
        return;
      }
    }
    then();
  };
  more();
}

/** sha256 (hex) of `bytes` bytes of the repeated PATTERN. */
export function patternHash(bytes) {
  const h = createHash('sha256');
  for (let left = bytes; left > 0; left -= PATTERN.length) h.update(left >= PATTERN.length ? PATTERN : PATTERN.subarray(0, left));
  return h.digest('hex');
}

/**
 * Byte relay between the two legs of a data connection: both directions,
 * backpressure respected, and a FIN on one side forwarded as `end()` on the
 * other (half-close: an upload's end is the FIN; turning it into a close
 * would cut the transfer). Both sockets must be created with
 * `allowHalfOpen: true`.
 *
 * The fast path. A socket made by `connectForRelay`, or adopted from a
 * listener by `adoptForRelay`, reads with the `onread` option into windows
 * of a large slab: each read gets fresh bytes (the window starts where the
 * previous chunk ended) and a slab is never written into again once given
 * out, so a chunk still held by a pending write is never overwritten. This
 * moves several times more bytes per event-loop turn than the stream's own
 * 64 KiB reads. Any other duplex socket (a TLS socket, one from a test) is
 * relayed with `'data'` events.
 *
 * Accepted sockets. Node honours `onread` only in the Socket constructor: a
 * listener builds its accepted sockets itself and passes no `onread` (Node
 * 20, 22 and 24 alike: `onconnection` in lib/net.js of 24.22.3 passes only
 * the handle, allowHalfOpen, pauseOnCreate, readable, writable and
 * highWaterMark). The public `new net.Socket({ fd, onread })` needs the
 * accepted socket's fd, which is not public either. So `adoptForRelay` moves
 * the accepted socket's handle (`_handle`), before its first read, into a
 * new socket that has `onread`. It is feature-detected: on a Node where the
 * handle is not found where expected, the socket is relayed as it is (with
 * `'data'` events: correct, slower), and test/integration/data/relay.test.ts,
 * which checks that reads land in the slabs, fails on that Node version.
 */
import net, { type NetConnectOpts, type Socket, type SocketConstructorOpts } from 'node:net';
import { resetTls } from '../tls/handshake.js';

/** Bytes delivered: written to the destination socket (handed to its kernel), not merely read from the source. */
export interface RelayCounters {
  /** Bytes from `a` to `b`. */
  aToB: number;
  /** Bytes from `b` to `a`. */
  bToA: number;
}

/** Bytes of one slab; the reads of one socket are windows of its current slab. */
const SLAB_BYTES = 512 * 1024;
/** Smallest window offered to one read; a slab with less left is retired. */
const MIN_READ_BYTES = 128 * 1024;
/** Bytes a destination may hold unsent before its source stops reading. */
const MAX_PENDING_WRITE_BYTES = 256 * 1024;
/** Spare slabs kept for reuse by the whole process (SLAB_BYTES each). */
const MAX_SPARE_SLABS = 32;

/** Receives one chunk; returns false when the source should stop reading. */
type Sink = (chunk: Buffer, written: () => void) => boolean;

/**
 * A slab goes back to the spares once its reader has moved on and every
 * write of a chunk cut from it has completed (handed to the kernel, failed
 * or been cancelled): never while a pending write still holds its bytes.
 */
class Slab {
  pending = 0;
  retired = false;
  readonly release = (): void => {
    if (--this.pending === 0 && this.retired) spare(this.bytes);
  };

  constructor(readonly bytes: Buffer) {}

  retire(): void {
    this.retired = true;
    if (this.pending === 0) spare(this.bytes);
  }
}

const spares: Buffer[] = [];

function spare(bytes: Buffer): void {
  if (spares.length < MAX_SPARE_SLABS) spares.push(bytes);
}

function newSlab(): Slab {
  return new Slab(spares.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES));
}

/**
 * The `onread` side of one socket. Until the relay starts, the first chunk
 * is kept and reading stops (a peer may send before the other leg is up).
 */
class SlabReader {
  private slab: Slab | undefined;
  private offset = 0;
  private sink: Sink | undefined;
  private held: { chunk: Buffer; written: () => void }[] = [];

  readonly onread = {
    buffer: (): Uint8Array => this.window(),
    callback: (bytes: number, buf: Uint8Array): boolean => this.take(bytes, buf),
  };

  /** Feed held chunks to `sink`; returns false if it asked to stop reading. */
  attach(sink: Sink): boolean {
    this.sink = sink;
    let reading = true;
    for (const { chunk, written } of this.held.splice(0)) reading = sink(chunk, written) && reading;
    return reading;
  }

  /** The socket is closed: no read will use the current window any more. */
  close(): void {
    this.slab?.retire();
    this.slab = undefined;
    this.offset = SLAB_BYTES;
  }

  private window(): Uint8Array {
    if (this.slab === undefined || SLAB_BYTES - this.offset < MIN_READ_BYTES) {
      this.slab?.retire();
      this.slab = newSlab();
      this.offset = 0;
    }
    return this.slab.bytes.subarray(this.offset);
  }

  private take(bytes: number, buf: Uint8Array): boolean {
    const slab = this.slab as Slab;
    const chunk = Buffer.from(buf.buffer, buf.byteOffset, bytes);
    this.offset += bytes;
    slab.pending++;
    if (this.sink !== undefined) return this.sink(chunk, slab.release);
    this.held.push({ chunk, written: slab.release });
    return false;
  }
}

const readers = new WeakMap<Socket, SlabReader>();

/** `net.connect` for a relay leg: the socket reads on the fast path. */
export function connectForRelay(options: NetConnectOpts): Socket {
  const reader = new SlabReader();
  const socket = net.connect({ ...options, onread: reader.onread } as NetConnectOpts);
  readers.set(socket, reader);
  socket.once('close', () => reader.close());
  return socket;
}

/**
 * An accepted socket moved onto the fast path. The listener must be created
 * with `pauseOnConnect: true` so that nothing is read before the move; the
 * listener's connection count still ends with the returned socket's close
 * (`server.close()` callbacks wait for it as before). A socket that cannot be
 * moved is returned as it is.
 */
export function adoptForRelay(accepted: Socket): Socket {
  const inner = accepted as unknown as { _handle?: unknown };
  const handle = inner._handle;
  if (!isStreamHandle(handle) || accepted.readableLength > 0 || accepted.readableEnded || accepted.destroyed) return accepted;
  const reader = new SlabReader();
  inner._handle = null;
  const options = { handle, allowHalfOpen: true, onread: reader.onread } as SocketConstructorOpts;
  const socket = new net.Socket(options);
  readers.set(socket, reader);
  // The listener counts the accepted socket: release it when the new one closes.
  socket.once('close', () => {
    reader.close();
    accepted.destroy();
  });
  return socket;
}

/** A libuv stream handle as Node 20-24 keep it in `_handle` (what a Socket's `handle` option takes). */
function isStreamHandle(handle: unknown): handle is object {
  return typeof handle === 'object' && handle !== null && typeof (handle as { readStart?: unknown }).readStart === 'function';
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
      abort(a);
      abort(b);
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

/**
 * Cut a data connection with a reset, not a FIN: in FTP's stream mode a FIN
 * means "the file is complete", so a transfer that failed must never end in one.
 */
export function abort(socket: Socket): void {
  if (socket.destroyed || resetTls(socket)) return; // a TLS leg: its TCP connection is reset
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy(); // not a TCP handle (a test stream): a plain close is all there is
  }
}

function pump(src: Socket, dst: Socket, count: (n: number) => void): void {
  // A FIN read before the relay started has already emitted 'end'.
  if (src.readableEnded) dst.end();
  else src.once('end', () => dst.end());
  const reader = readers.get(src);
  if (reader === undefined) return pumpData(src, dst, count);
  const resume = () => src.resume();
  const sink: Sink = (chunk, written) => {
    dst.write(chunk, (err) => {
      if (err == null) count(chunk.length);
      written();
    });
    if (dst.writableLength <= MAX_PENDING_WRITE_BYTES || dst.destroyed) return true;
    dst.once('drain', resume);
    return false;
  };
  if (reader.attach(sink)) src.resume();
}

function pumpData(src: Socket, dst: Socket, count: (n: number) => void): void {
  const resume = () => src.resume();
  src.on('data', (chunk: Buffer) => {
    const delivered = (err?: Error | null) => {
      if (err == null) count(chunk.length);
    };
    if (!dst.write(chunk, delivered)) {
      src.pause();
      dst.once('drain', resume);
    }
  });
  src.resume(); // a socket accepted with pauseOnConnect stays paused until told
}

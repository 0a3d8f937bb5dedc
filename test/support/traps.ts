/**
 * The data-connection ends a test plays itself, and witnesses for the
 * tests that attack the gateway: listeners (an active-mode client's, or a
 * trap that must stay silent on a third address or a privileged port),
 * outgoing connections (an upstream's after PORT, or a stranger's), probes,
 * a record of every outbound connection the gateway itself makes, and a
 * way to know that the gateway has read a piece of a segmented command.
 *
 * On Linux every 127.0.0.0/8 address is local, so 127.0.0.2 plays the
 * third host and 127.0.0.3 a second client. The gateway runs in the test
 * process, so patching `net.Socket.prototype.connect` and
 * `LineSplitter.prototype.push` sees what it does (not what a data-plane
 * worker thread does: tests that use the record run pinholes in process).
 */
import net, { type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { LineSplitter } from '../../src/ftp/lineSplitter.js';

export const CLIENT = '127.0.0.1';
export const THIRD_HOST = '127.0.0.2';
export const OTHER_CLIENT = '127.0.0.3';

export interface DataConnection {
  /** Address the connection came from, without `::ffff:`. */
  readonly peer: string;
  /** Port the connection came from. */
  readonly peerPort: number;
  /** Every byte received, once the peer has sent FIN (or the socket closed). */
  readonly received: Promise<Buffer>;
  readonly socket: Socket;
}

export interface Listener {
  readonly host: string;
  readonly port: number;
  /** Remote addresses of the connections accepted, in order. */
  readonly peers: string[];
  /** The connections accepted, in order. */
  readonly connections: DataConnection[];
  /** Bytes received over every connection. */
  received(): Buffer;
  /** The socket of the next connection not yet taken (by this or by `next`). */
  connection(): Promise<Socket>;
  /** The next connection not yet taken (by this or by `connection`). */
  next(): Promise<DataConnection>;
  close(): Promise<void>;
}

export interface ListenOptions {
  /** Sent to each connection, which is then ended; by default nothing is sent and the connection is held. */
  readonly payload?: Buffer;
}

/** A listener on `host`:`port` (0: any) that records who connects and what they send. */
export async function listen(host: string, port = 0, options: ListenOptions = {}): Promise<Listener> {
  const peers: string[] = [];
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const connections: DataConnection[] = [];
  let taken = 0;
  const arrivals: (() => void)[] = [];
  const server: Server = net.createServer({ allowHalfOpen: true }, (socket) => {
    peers.push(socket.remoteAddress ?? '');
    sockets.add(socket);
    connections.push({ peer: plain(socket.remoteAddress), peerPort: socket.remotePort ?? 0, received: collect(socket), socket });
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => {
      if (socket.writable && !socket.writableEnded) socket.end();
    });
    if (options.payload !== undefined) socket.end(options.payload);
    for (const wake of arrivals.splice(0)) wake();
  });
  server.listen({ host, port, exclusive: true });
  await once(server, 'listening'); // rejects on 'error' (EADDRINUSE, EACCES)
  const bound = (server.address() as net.AddressInfo).port;
  const next = async (): Promise<DataConnection> => {
    while (connections.length <= taken) await new Promise<void>((resolve) => arrivals.push(resolve));
    return connections[taken++] as DataConnection;
  };
  return {
    host,
    port: bound,
    peers,
    connections,
    received: () => Buffer.concat(chunks),
    connection: async () => (await next()).socket,
    next,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A socket's bytes until FIN (or close). */
function collect(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  return new Promise((resolve) => {
    const finish = () => resolve(Buffer.concat(chunks));
    socket.once('end', finish);
    socket.once('close', finish);
  });
}

function plain(address: string | undefined): string {
  const a = address ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

export interface Dialled {
  /** True once connected; false if refused or reset before. */
  readonly connected: boolean;
  /** Bytes the other side sent before it closed. */
  readonly received: Buffer;
  /** The socket error code, if any (ECONNREFUSED, ECONNRESET…). */
  readonly error: string | undefined;
}

/**
 * Connect to `host:port` from `localAddress` (an upstream's data connection
 * in active mode, or a stranger), send `send` then FIN, and collect what
 * comes back until the other side closes.
 */
export function dial(host: string, port: number, options: { localAddress?: string; send?: Buffer } = {}): Promise<Dialled> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let connected = false;
    let error: string | undefined;
    const socket = net.connect({ host, port, localAddress: options.localAddress, allowHalfOpen: true });
    socket.on('connect', () => {
      connected = true;
      if (options.send !== undefined) socket.end(options.send);
      else socket.end();
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => socket.destroy());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
    });
    socket.on('close', () => resolve({ connected, received: Buffer.concat(chunks), error }));
  });
}

/**
 * A listener on 127.0.0.1 and a trap on the third host with the same port
 * number: whatever connects to "that port" reaches one or the other
 * depending only on the address it chose.
 */
export async function listenTwins(options: ListenOptions = {}): Promise<{ right: Listener; trap: Listener; port: number }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const right = await listen(CLIENT, 0, options);
    try {
      const trap = await listen(THIRD_HOST, right.port);
      return { right, trap, port: right.port };
    } catch {
      await right.close();
    }
  }
  throw new Error('no port free on both 127.0.0.1 and 127.0.0.2');
}

/** A trap on a privileged port of `host` (the tests run as root; else the bind fails and so does the test). */
export async function listenPrivileged(host: string): Promise<Listener> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 600 + Math.floor(Math.random() * 400);
    try {
      return await listen(host, port);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
  throw new Error(`no free privileged port on ${host}`);
}

export interface Outbound {
  readonly host: string;
  readonly port: number;
}

export interface OutboundRecord {
  /** Every connection the gateway's own code opened, in order. */
  readonly targets: Outbound[];
  stop(): void;
}

type Connect = (this: Socket, ...args: unknown[]) => Socket;

/** The source folders whose code opens the gateway's connections. */
export const GATEWAY_ROOMS = ['control', 'data', 'edge'] as const;
const GATEWAY_SOURCE = new RegExp(`[/\\\\]src[/\\\\](?:${GATEWAY_ROOMS.join('|')})[/\\\\]`);

/**
 * Record every `connect` made from the gateway's own rooms, src/{control,data,edge}
 * (the stack says who calls; test/unit/support/traps.test.ts checks the rooms exist):
 * the upstream control connection and the connecting legs of pinholes.
 */
export function recordGatewayConnects(): OutboundRecord {
  const proto = net.Socket.prototype as unknown as { connect: Connect };
  const original = proto.connect;
  const targets: Outbound[] = [];
  proto.connect = function (this: Socket, ...args: unknown[]): Socket {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 40;
    const stack = new Error().stack ?? '';
    Error.stackTraceLimit = limit;
    if (GATEWAY_SOURCE.test(stack)) {
      const first = Array.isArray(args[0]) ? (args[0] as unknown[])[0] : args[0];
      if (typeof first === 'object' && first !== null) {
        const o = first as { host?: unknown; port?: unknown };
        targets.push({ host: String(o.host ?? 'localhost'), port: Number(o.port) });
      } else {
        targets.push({ host: typeof args[1] === 'string' ? args[1] : 'localhost', port: Number(first) });
      }
    }
    return original.apply(this, args);
  };
  return {
    targets,
    stop() {
      proto.connect = original;
    },
  };
}

export interface LineInputWatch {
  /** Forget what was seen so far (call before each new session). */
  reset(): void;
  /** Resolves once some splitter (a control connection of the gateway) has been fed exactly `bytes` since the reset. */
  fed(bytes: Buffer): Promise<void>;
  stop(): void;
}

/**
 * What the gateway's line splitters are fed, read by read. Writing a piece
 * and awaiting `fed(sentSoFar)` before the next piece makes every piece a
 * separate read on the gateway's side (the kernel may coalesce writes).
 */
export function watchLineInput(): LineInputWatch {
  const proto = LineSplitter.prototype as unknown as { push: (this: LineSplitter, chunk: Buffer) => void };
  const original = proto.push;
  let fedSoFar = new Map<LineSplitter, Buffer>();
  let waiters: { bytes: Buffer; resolve: () => void }[] = [];
  const check = () => {
    waiters = waiters.filter((w) => {
      for (const seen of fedSoFar.values()) {
        if (seen.equals(w.bytes)) {
          w.resolve();
          return false;
        }
      }
      return true;
    });
  };
  proto.push = function (this: LineSplitter, chunk: Buffer): void {
    const before = fedSoFar.get(this) ?? Buffer.alloc(0);
    if (before.length < 64 * 1024) fedSoFar.set(this, Buffer.concat([before, chunk]));
    original.call(this, chunk);
    check();
  };
  return {
    reset() {
      fedSoFar = new Map();
    },
    fed(bytes) {
      return new Promise((resolve) => {
        waiters.push({ bytes: Buffer.from(bytes), resolve });
        check();
      });
    },
    stop() {
      proto.push = original;
    },
  };
}

/**
 * Connect from `localAddress` and report what happened: refused; accepted
 * and then closed by the gateway (with the bytes received); or still open
 * after `boundMs` (then destroyed here).
 */
export function probe(
  port: number,
  localAddress: string,
  send?: Buffer,
  boundMs = 2_000,
): Promise<{ outcome: 'refused' | 'closed' | 'open'; bytes: number }> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let connected = false;
    const socket = net.connect({ host: CLIENT, port, localAddress });
    const timer = setTimeout(() => {
      resolve({ outcome: 'open', bytes });
      socket.destroy();
    }, boundMs);
    socket.on('connect', () => {
      connected = true;
      if (send !== undefined) socket.write(send);
    });
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected && err.code === 'ECONNREFUSED') resolve({ outcome: 'refused', bytes });
      else if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ outcome: connected ? 'closed' : 'refused', bytes });
    });
  });
}

/** How a socket ended: the peer's FIN ('end'), or a reset/error ('reset'); resolves at 'close'. */
export function closedHow(socket: Socket): Promise<'end' | 'reset'> {
  let how: 'end' | 'reset' | undefined;
  socket.once('end', () => {
    how ??= 'end';
  });
  socket.on('error', () => {
    how ??= 'reset';
  });
  return new Promise((resolve) => socket.once('close', () => resolve(how ?? 'reset')));
}

/** Resolve with `value`, or reject after `ms` with `what` in the message (a bound on a wait, not a sleep). */
export async function within<T>(ms: number, what: string, value: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([value, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

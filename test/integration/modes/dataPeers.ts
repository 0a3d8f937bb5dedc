/**
 * The data-connection ends a mode test plays itself: the client's listener
 * for active mode (what a client opens before it sends PORT/EPRT) and an
 * outgoing data connection (an upstream's after PORT, or a stranger's).
 * The PORT/EPRT arguments naming them are in test/support/hostPort.ts.
 */
import net, { type Server, type Socket } from 'node:net';
import { once } from 'node:events';

export interface DataConnection {
  /** Address the connection came from, without `::ffff:`. */
  readonly peer: string;
  /** Port the connection came from. */
  readonly peerPort: number;
  /** Every byte received, once the peer has sent FIN (or the socket closed). */
  readonly received: Promise<Buffer>;
  readonly socket: Socket;
}

export interface DataListener {
  readonly host: string;
  readonly port: number;
  /** Connections accepted so far, in order. */
  readonly connections: DataConnection[];
  /** The next connection not yet taken. */
  next(): Promise<DataConnection>;
  close(): Promise<void>;
}

/**
 * Listen on `host` port 0 like an active-mode client. Each accepted
 * connection is sent `send` (then FIN) if given, and everything it carries
 * is collected until FIN.
 */
export async function listenForData(host: string, send?: Buffer): Promise<DataListener> {
  const connections: DataConnection[] = [];
  const sockets = new Set<Socket>();
  const arrivals: (() => void)[] = [];
  let taken = 0;
  const server: Server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    connections.push({ peer: plain(socket.remoteAddress), peerPort: socket.remotePort ?? 0, received: collect(socket), socket });
    for (const wake of arrivals.splice(0)) wake();
    if (send !== undefined) socket.end(send);
  });
  server.listen({ host, port: 0 });
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    host,
    port,
    connections,
    async next() {
      while (connections.length <= taken) await new Promise<void>((resolve) => arrivals.push(resolve));
      return connections[taken++] as DataConnection;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Collect a socket's bytes until FIN, then end our side too. */
function collect(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  return new Promise((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks));
    };
    socket.once('end', () => {
      finish();
      if (socket.writable && socket.writableLength === 0 && !socket.writableEnded) socket.end();
    });
    socket.once('close', finish);
  });
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
 * 'listening' if something accepts a connection on `host:port`, 'refused'
 * on ECONNREFUSED. Connect from an address the pinhole does not expect
 * (127.0.0.2) so that the probe itself never becomes its peer.
 */
export function probe(host: string, port: number, localAddress?: string): Promise<'listening' | 'refused'> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, localAddress });
    socket.once('connect', () => {
      socket.destroy();
      resolve('listening');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') resolve('refused');
      else reject(err);
    });
  });
}

function plain(address: string | undefined): string {
  const a = address ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

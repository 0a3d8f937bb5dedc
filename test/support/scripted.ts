/**
 * A scripted fake upstream: a net.Server on 127.0.0.1 port 0 that greets
 * (or never does) and answers each line it receives by a callback. It
 * records every byte it receives, so tests can check byte-exact pass-through
 * and send replies no real server would (a hostile 227, an unsolicited one).
 */
import net, { type Server, type Socket } from 'node:net';
import { once } from 'node:events';

export interface ScriptedConnection {
  readonly socket: Socket;
  /** Every byte received so far. */
  received(): Buffer;
  /** Lines received so far, terminators removed. */
  readonly lines: string[];
  /** Strings are sent as latin1: one byte per character, as on an FTP control connection. */
  write(bytes: string | Buffer): void;
  /** Resolves once at least `n` bytes have been received. */
  waitForBytes(n: number): Promise<void>;
  readonly closed: Promise<void>;
}

/** The answer to one received line: bytes to send, or nothing. */
export type Responder = (line: string, connection: ScriptedConnection) => string | Buffer | undefined;

export interface ScriptedOptions {
  /** Sent on connect; null: never greet; a function is asked at each connection. Default `220 scripted\r\n`. */
  readonly greeting?: string | null | (() => string | null);
  /** Default: `200 OK` to every line. */
  readonly respond?: Responder;
  /** Where to listen; default 127.0.0.1, port 0. */
  readonly host?: string;
  readonly port?: number;
}

export interface ScriptedUpstream {
  readonly host: string;
  readonly port: number;
  readonly connections: ScriptedConnection[];
  /** The next connection (or the first one already made and not yet taken). */
  connection(): Promise<ScriptedConnection>;
  close(): Promise<void>;
}

export async function startScriptedUpstream(options: ScriptedOptions = {}): Promise<ScriptedUpstream> {
  const greeting = options.greeting === undefined ? '220 scripted\r\n' : options.greeting;
  const respond: Responder = options.respond ?? (() => '200 OK\r\n');
  const connections: ScriptedConnection[] = [];
  let taken = 0;
  const arrivals: (() => void)[] = [];
  const server: Server = net.createServer((socket) => {
    const conn = scriptedConnection(socket, respond);
    connections.push(conn);
    for (const w of arrivals.splice(0)) w();
    const text = typeof greeting === 'function' ? greeting() : greeting;
    if (text !== null) conn.write(text);
  });
  const host = options.host ?? '127.0.0.1';
  server.listen(options.port ?? 0, host);
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    host,
    port,
    connections,
    async connection() {
      while (connections.length <= taken) await new Promise<void>((resolve) => arrivals.push(resolve));
      return connections[taken++] as ScriptedConnection;
    },
    async close() {
      for (const c of connections) c.socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function scriptedConnection(socket: Socket, respond: Responder): ScriptedConnection {
  const chunks: Buffer[] = [];
  let length = 0;
  let partial = '';
  const waiters: { n: number; resolve: () => void }[] = [];
  const conn: ScriptedConnection = {
    socket,
    received: () => Buffer.concat(chunks),
    lines: [],
    write: (bytes) => {
      if (socket.writable) socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
    },
    waitForBytes: (n) => (length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))),
    closed: new Promise((resolve) => socket.once('close', () => resolve())),
  };
  socket.on('error', () => undefined);
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    length += chunk.length;
    for (const w of waiters.filter((x) => length >= x.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
    partial += chunk.toString('latin1');
    let lf = partial.indexOf('\n');
    while (lf !== -1) {
      const line = partial.slice(0, lf).replace(/\r$/, '');
      partial = partial.slice(lf + 1);
      conn.lines.push(line);
      const answer = respond(line, conn);
      if (answer !== undefined) conn.write(answer);
      lf = partial.indexOf('\n');
    }
  });
  return conn;
}

export interface DataSource {
  readonly port: number;
  /** Addresses of the peers that connected, in order. */
  readonly peers: string[];
  close(): Promise<void>;
}

/** A listener on 127.0.0.1 port 0 that sends `payload` to each connection and closes it (an upstream's passive data port). */
export async function startDataSource(payload: Buffer): Promise<DataSource> {
  const peers: string[] = [];
  const sockets = new Set<Socket>();
  const server = net.createServer((socket) => {
    peers.push(socket.remoteAddress ?? '');
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    socket.end(payload);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    peers,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Real TLS peers for the pinhole-level FTPS tests (Node's own TLS, no mocks):
 *
 * - an upstream whose first TLS connection is its control connection and
 *   every later one a data connection; like vsftpd with require_ssl_reuse it
 *   can refuse data connections that do not resume the control session;
 * - the gateway's side of a client control connection (`SiteTls.serve`),
 *   and a client that keeps its control session to resume on data;
 * - helpers that send or receive a whole file on a socket, by sha256.
 */
import { constants, createHash } from 'node:crypto';
import { once } from 'node:events';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import tls, { type SecureVersion, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import { afterEach } from 'vitest';
import type { ServerSide, SiteTls } from '../../src/tls/SiteTls.js';
import type { CertFiles } from './certs.js';

/** Undo steps a test pushes; run in reverse after each test. */
export function cleanupEachTest(): (() => unknown)[] {
  const steps: (() => unknown)[] = [];
  afterEach(async () => {
    for (const undo of steps.splice(0).reverse()) await undo();
  });
  return steps;
}

export const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** Everything `socket` sends until its end. */
export function receiveAll(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
    socket.once('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** Write `bytes`, then end (close_notify then FIN on a TLS socket). */
export function sendAll(socket: Socket, bytes: Buffer): void {
  socket.end(bytes);
}

/** Resolves once `socket` has closed, whether or not with an error. */
export function closed(socket: Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

export interface DataConnection {
  readonly socket: TLSSocket | Socket;
  /** Whether the data connection resumed the control session (TLS only). */
  readonly reused: boolean;
}

export interface TlsUpstream {
  readonly port: number;
  /** Data connections as they are accepted (TLS after its handshake). */
  next(): Promise<DataConnection>;
  /** Data connections refused for not resuming the control session. */
  readonly refusedForNoReuse: number;
  /** Active mode: the upstream's TLS server side on a data connection it opened itself (same keys as its control listener). */
  serveOn(raw: Socket): TLSSocket;
  close(): Promise<void>;
}

function certOptions(certs: CertFiles, maxVersion: SecureVersion) {
  return { cert: readFileSync(certs.certFile), key: readFileSync(certs.keyFile), maxVersion, minVersion: 'TLSv1.2' as const };
}

/** A queue of connections: `next()` waits for the next one. */
function connectionQueue(): { push(c: DataConnection): void; next(): Promise<DataConnection> } {
  const ready: DataConnection[] = [];
  const waiting: ((c: DataConnection) => void)[] = [];
  return {
    push(c) {
      const wake = waiting.shift();
      if (wake === undefined) ready.push(c);
      else wake(c);
    },
    next() {
      const c = ready.shift();
      return c !== undefined ? Promise.resolve(c) : new Promise((resolve) => waiting.push(resolve));
    },
  };
}

/**
 * An FTPS upstream's TLS: the first connection is the control connection,
 * kept open; the others are data connections, refused (closed after the
 * handshake, as vsftpd does) unless they resume when `requireReuse`.
 */
export async function startTlsUpstream(certs: CertFiles, options: { maxVersion: SecureVersion; requireReuse: boolean }): Promise<TlsUpstream> {
  const queue = connectionQueue();
  const sockets = new Set<Socket>();
  let control: TLSSocket | undefined;
  let refused = 0;
  const sessionIdContext = 'test-upstream';
  const server = tls.createServer({ ...certOptions(certs, options.maxVersion), sessionIdContext }, (socket) => {
    socket.on('error', () => undefined);
    sockets.add(socket);
    if (control === undefined) {
      control = socket;
      return;
    }
    if (options.requireReuse && !socket.isSessionReused()) {
      refused++;
      socket.destroy();
      return;
    }
    queue.push({ socket, reused: socket.isSessionReused() });
  });
  server.on('connection', (raw: Socket) => sockets.add(raw));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    next: () => queue.next(),
    get refusedForNoReuse() {
      return refused;
    },
    serveOn(raw) {
      const secureContext = tls.createSecureContext({ ...certOptions(certs, options.maxVersion), sessionIdContext, ticketKeys: server.getTicketKeys() });
      const socket = new tls.TLSSocket(raw, { isServer: true, secureContext });
      socket.on('error', () => undefined);
      return socket;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A plain upstream data listener: every connection is a data connection. */
export async function startPlainUpstream(): Promise<TlsUpstream> {
  const queue = connectionQueue();
  const sockets = new Set<Socket>();
  // Not half-open: once an upload's end arrives it closes, as an FTP server does after STOR.
  const server: Server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    sockets.add(socket);
    queue.push({ socket, reused: false });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    next: () => queue.next(),
    refusedForNoReuse: 0,
    serveOn() {
      throw new Error('a plain upstream has no TLS');
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A TCP listener whose connections the gateway serves as TLS control connections (`SiteTls.serve(raw, 'client')`). */
export async function startGatewayControl(siteTls: SiteTls, side: ServerSide = 'client'): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = net.createServer({ pauseOnConnect: true }, (raw) => {
    sockets.add(raw);
    const handshake = siteTls.serve(raw, side);
    handshake.socket.on('error', () => undefined);
    // An echo: what the client sends comes back, so a test can see the connection still works.
    handshake.socket.on('data', (chunk: Buffer) => handshake.socket.write(chunk));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface TlsClientOptions {
  readonly maxVersion: SecureVersion;
  readonly session?: Buffer;
  /** A client certificate to present: [certFile, keyFile]. */
  readonly identity?: readonly [string, string];
  readonly localAddress?: string;
  /** Resume by session ID only, never ask for a ticket (curl against Node under TLS 1.2). */
  readonly noTickets?: boolean;
}

/** A TLS client connection as an FTPS client makes it (CA-verified, no SNI for an IP). */
export function tlsClient(certs: CertFiles, port: number, options: TlsClientOptions): TLSSocket {
  const [certFile, keyFile] = options.identity ?? [];
  const socket = options.localAddress === undefined ? undefined : net.connect({ host: '127.0.0.1', port, localAddress: options.localAddress });
  return tls.connect({
    host: '127.0.0.1',
    port,
    socket,
    ca: readFileSync(certs.caFile),
    maxVersion: options.maxVersion,
    session: options.session,
    ...(options.noTickets === true && { secureOptions: constants.SSL_OP_NO_TICKET }),
    ...(certFile !== undefined && keyFile !== undefined && { cert: readFileSync(certFile), key: readFileSync(keyFile) }),
  });
}

/** A client control connection to the gateway; its session is the last 'session' event's. */
export async function clientControl(
  certs: CertFiles,
  port: number,
  maxVersion: SecureVersion,
  options: Omit<TlsClientOptions, 'maxVersion'> = {},
): Promise<{ socket: TLSSocket; session(): Buffer }> {
  const socket = tlsClient(certs, port, { ...options, maxVersion });
  let latest: Buffer | undefined;
  socket.on('session', (s: Buffer) => {
    latest = s;
  });
  socket.on('error', () => undefined);
  await once(socket, 'secureConnect');
  // TLS 1.3 tickets come after the handshake: wait for one.
  while (latest === undefined) await once(socket, 'session');
  return {
    socket,
    session: () => latest as Buffer,
  };
}

/** Wait for a secure connection or its failure. */
export async function secured(socket: TLSSocket): Promise<void> {
  await once(socket, 'secureConnect');
}

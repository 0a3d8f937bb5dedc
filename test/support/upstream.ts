/**
 * A real FTP upstream for tests and the demo: ftp-srv on loopback, port 0,
 * anonymous login, rooted in a fresh temporary folder.
 */
import type { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FtpSrv } from 'ftp-srv';

export interface TestUpstream {
  readonly host: string;
  readonly port: number;
  readonly root: string;
  close(): Promise<void>;
}

async function freePort(host: string): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `tls`: the upstream speaks FTPS with this key and certificate, explicit (AUTH TLS) or, with `implicit`, from the first byte. */
export async function startUpstream(
  options: { host?: string; root?: string; tls?: { key: Buffer; cert: Buffer }; implicit?: boolean } = {},
): Promise<TestUpstream> {
  const host = options.host ?? '127.0.0.1';
  const root = options.root ?? mkdtempSync(join(tmpdir(), 'ftp-alg-upstream-'));
  const port = await freePort(host);
  const pasvMin = await freePort(host);
  const server = new FtpSrv({
    url: `${options.implicit === true ? 'ftps' : 'ftp'}://${host}:${port}`,
    pasv_url: host,
    pasv_min: pasvMin,
    pasv_max: Math.min(65535, pasvMin + 40),
    anonymous: true,
    ...(options.tls !== undefined && { tls: options.tls }),
    greeting: ['ftp-alg test upstream'],
    log: silentLogger(),
  });
  server.on('login', (_data: unknown, resolve: (r: { root: string }) => void) => resolve({ root }));
  // ftp-srv leaves Nagle on: its small replies then wait for the peer's delayed ACK (~40 ms a command).
  // (ftp-srv emits 'connect' with the connection, but its typings do not declare the event.)
  (server as unknown as EventEmitter).on('connect', ({ connection }: { connection: { commandSocket?: net.Socket } }) => {
    connection.commandSocket?.setNoDelay(true);
  });
  await server.listen();
  return {
    host,
    port,
    root,
    async close() {
      await server.close();
      if (options.root === undefined) rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Put `files` (name: content) in the upstream's root. */
export function putFiles(upstream: TestUpstream, files: Readonly<Record<string, Buffer>>): void {
  for (const [name, data] of Object.entries(files)) writeFileSync(join(upstream.root, name), data);
}

function silentLogger(): unknown {
  const noop = () => undefined;
  const logger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop, child: () => logger };
  return logger;
}

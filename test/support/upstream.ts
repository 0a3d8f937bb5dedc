/**
 * A real FTP upstream for tests and the demo: ftp-srv, anonymous login (any
 * user name is let in), rooted in a fresh temporary folder, with what it saw:
 * control connections, and logins by the user name the client gave (so a
 * test can name its sessions) with the RETR/STOR each one completed.
 * By default on 127.0.0.1 with a free control port and passive range; a
 * caller may fix the host, the control port and the passive range, so that
 * several servers form an upstream pool on 127.0.0.1-3 with one port.
 */
import type { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FtpSrv } from 'ftp-srv';
import type { PortRange } from '../../src/config/types.js';
import { freePortOnAll } from './ports.js';

export interface SeenLogin {
  /** The user name the client logged in with (`anonymous` skips PASS). */
  readonly user: string;
  /** Transfer commands this login's connection completed, e.g. `RETR /who.txt`. */
  readonly transfers: string[];
}

export interface TestUpstream {
  readonly host: string;
  readonly port: number;
  readonly root: string;
  readonly logins: SeenLogin[];
  /** Control connections accepted. */
  readonly connects: () => number;
  writeFile(name: string, data: Buffer | string): void;
  close(): Promise<void>;
}

export interface UpstreamOptions {
  readonly host?: string;
  /** The control port; default a free one. */
  readonly port?: number;
  /** The passive range; default 41 ports from a free one. */
  readonly pasv?: PortRange;
  /** Serve this folder (kept at close) instead of a fresh temporary one. */
  readonly root?: string;
  /** Speak FTPS with this key and certificate, explicit (AUTH TLS) or, with `implicit`, from the first byte. */
  readonly tls?: { key: Buffer; cert: Buffer };
  readonly implicit?: boolean;
}

export async function startUpstream(options: UpstreamOptions = {}): Promise<TestUpstream> {
  const host = options.host ?? '127.0.0.1';
  const root = options.root ?? mkdtempSync(join(tmpdir(), 'ftp-alg-upstream-'));
  const port = options.port ?? (await freePortOnAll([host]));
  const pasvMin = options.pasv?.min ?? (await freePortOnAll([host]));
  const server = new FtpSrv({
    url: `${options.implicit === true ? 'ftps' : 'ftp'}://${host}:${port}`,
    pasv_url: host,
    pasv_min: pasvMin,
    pasv_max: options.pasv?.max ?? Math.min(65535, pasvMin + 40),
    anonymous: true,
    ...(options.tls !== undefined && { tls: options.tls }),
    greeting: [`ftp-alg test upstream ${host}`],
    log: silentLogger(),
  });
  const logins: SeenLogin[] = [];
  let connects = 0;
  // ftp-srv emits 'connect' with the connection, but its typings do not declare the event.
  (server as unknown as EventEmitter).on('connect', ({ connection }: { connection: { commandSocket?: { setNoDelay(on: boolean): void } } }) => {
    connects++;
    // ftp-srv leaves Nagle on: its small replies then wait for the peer's delayed ACK (~40 ms a command).
    connection.commandSocket?.setNoDelay(true);
  });
  server.on('login', ({ connection, username }, resolve) => {
    const seen: SeenLogin = { user: username, transfers: [] };
    logins.push(seen);
    const record = (verb: string) => (err: unknown, path: unknown) => {
      if (err === null || err === undefined) seen.transfers.push(`${verb} ${String(path)}`);
    };
    connection.on('RETR', record('RETR'));
    connection.on('STOR', record('STOR'));
    resolve({ root });
  });
  await server.listen();
  let closed = false;
  return {
    host,
    port,
    root,
    logins,
    connects: () => connects,
    writeFile: (name, data) => writeFileSync(join(root, name), data),
    async close() {
      if (closed) return;
      closed = true;
      await server.close();
      if (options.root === undefined) rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Put `files` (name: content) in the upstream's root. */
export function putFiles(upstream: TestUpstream, files: Readonly<Record<string, Buffer>>): void {
  for (const [name, data] of Object.entries(files)) upstream.writeFile(name, data);
}

function silentLogger(): unknown {
  const noop = () => undefined;
  const logger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop, child: () => logger };
  return logger;
}

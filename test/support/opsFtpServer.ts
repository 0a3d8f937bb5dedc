/**
 * ftp-srv upstreams for operations tests, with what each one saw: logins
 * (by the user name the client gave, so a test can name its sessions) and
 * the RETR/STOR each login's connection served. Unlike `upstream.ts`, the
 * host, the control port and the passive range are the caller's, so that
 * several servers can form an upstream pool on 127.0.0.1-3 with one port.
 */
import type { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FtpSrv } from 'ftp-srv';
import type { PortRange } from '../../src/config/types.js';

export interface SeenLogin {
  /** The user name the client logged in with (any name is let in; `anonymous` skips PASS). */
  readonly user: string;
  /** Transfer commands this login's connection completed, e.g. `RETR /who.txt`. */
  readonly transfers: string[];
}

export interface OpsFtpServer {
  readonly host: string;
  readonly port: number;
  readonly root: string;
  readonly logins: SeenLogin[];
  /** Control connections accepted. */
  readonly connects: () => number;
  writeFile(name: string, data: Buffer | string): void;
  close(): Promise<void>;
}

export interface OpsFtpOptions {
  readonly host: string;
  readonly port: number;
  readonly pasv: PortRange;
}

export async function startFtpServer(options: OpsFtpOptions): Promise<OpsFtpServer> {
  const root = mkdtempSync(join(tmpdir(), `ftp-alg-ops-${options.host}-`));
  const server = new FtpSrv({
    url: `ftp://${options.host}:${options.port}`,
    pasv_url: options.host,
    pasv_min: options.pasv.min,
    pasv_max: options.pasv.max,
    anonymous: true,
    greeting: [`ftp-alg ops upstream ${options.host}`],
    log: silentLogger(),
  });
  const logins: SeenLogin[] = [];
  let connects = 0;
  const events: EventEmitter = server; // 'connect' is emitted but not in ftp-srv's typings
  events.on('connect', () => {
    connects++;
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
    host: options.host,
    port: options.port,
    root,
    logins,
    connects: () => connects,
    writeFile: (name, data) => writeFileSync(join(root, name), data),
    async close() {
      if (closed) return;
      closed = true;
      await server.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A TCP port that 0-binds on the first host and is free on every other host too (bounded tries). */
export async function freePortOnAll(hosts: readonly string[], attempts = 20): Promise<number> {
  for (let i = 0; i < attempts; i++) {
    const first = await listenOn(hosts[0] ?? '127.0.0.1', 0);
    if (first === undefined) continue;
    const port = (first.address() as net.AddressInfo).port;
    const others: net.Server[] = [];
    let ok = true;
    for (const host of hosts.slice(1)) {
      const s = await listenOn(host, port);
      if (s === undefined) {
        ok = false;
        break;
      }
      others.push(s);
    }
    await Promise.all([first, ...others].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    if (ok) return port;
  }
  throw new Error(`no port free on all of ${hosts.join(', ')} after ${attempts} tries`);
}

function listenOn(host: string, port: number): Promise<net.Server | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(undefined));
    server.listen({ host, port, exclusive: true }, () => resolve(server));
  });
}

function silentLogger(): unknown {
  const noop = () => undefined;
  const logger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop, child: () => logger };
  return logger;
}

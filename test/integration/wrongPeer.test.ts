/**
 * A pinhole accepts exactly one connection, only from the expected peer
 * (STYLE.md; OpenBSD pf "max 1", ftpserverlib's IP match). On Linux every
 * 127.0.0.0/8 address is local, so a second loopback address plays the
 * stranger.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ControlClient, readDataConnection } from '../support/control.js';
import { sha256 } from '../support/ftpClient.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../support/gateway.js';
import { portRanges, rangeSize } from '../support/ports.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';
import { parse227, parse229 } from '../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
const PAYLOAD = randomBytes(64 * 1024);
const STRANGER = '127.0.0.2';

let upstream: TestUpstream;
let gw: TestGateway;
const clients: ControlClient[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  writeFileSync(join(upstream.root, 'secret.bin'), PAYLOAD);
  gw = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, passivePorts, activePorts });
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
});

afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
});

/** Connect from `localAddress`; resolve with what arrived before the gateway closed the connection. */
function strangerConnects(port: number, localAddress: string): Promise<{ bytes: number; closed: boolean }> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') reject(err);
    });
    socket.on('close', () => resolve({ bytes, closed: true }));
    socket.on('connect', () => socket.write('stolen upload\r\n'));
  });
}

describe('a pinhole refuses a connection from another address', () => {
  it.each(['PASV', 'EPSV'] as const)('%s: the stranger is closed without data; the client then downloads', async (verb) => {
    const before = await counterTotal(gw.gateway, 'ftp_alg_pinholes_wrong_peer_total');
    const client = await ControlClient.greeted(gw.port);
    clients.push(client);
    await client.login();
    expect((await client.command('TYPE I')).code).toBe(200);
    const reply = await client.command(verb);
    const port = verb === 'PASV' ? parse227(reply.text).port : parse229(reply.text);

    const stranger = await strangerConnects(port, STRANGER);
    expect(stranger).toEqual({ bytes: 0, closed: true });
    expect(await counterTotal(gw.gateway, 'ftp_alg_pinholes_wrong_peer_total')).toBe(before + 1);
    const text = await gw.gateway.metrics.registry.getSingleMetricAsString('ftp_alg_pinholes_wrong_peer_total');
    expect(text).toContain(`ftp_alg_pinholes_wrong_peer_total{site="${SITE}",dir="passive"} ${before + 1}`);
    expect(gw.gateway.stats().pinholes).toBe(1); // still waiting for the right peer

    await client.write('RETR secret.bin\r\n');
    const data = readDataConnection(port);
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await data)).toBe(sha256(PAYLOAD));
    expect((await client.reply()).code).toBe(226);
    await vi.waitFor(() => expect(gw.gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts)));
  });

  it('once the client has connected, the pinhole listens no more', async () => {
    const client = await ControlClient.greeted(gw.port);
    clients.push(client);
    await client.login();
    expect((await client.command('TYPE I')).code).toBe(200);
    const port = parse227((await client.command('PASV')).text).port;
    await client.write('RETR secret.bin\r\n');
    const data = readDataConnection(port);
    // 150 means the upstream's data connection is up, so the gateway accepted the client's before.
    expect((await client.reply()).code).toBe(150);
    const second = await new Promise<string>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve('accepted');
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    expect(second).toBe('ECONNREFUSED');
    expect(sha256(await data)).toBe(sha256(PAYLOAD));
    expect((await client.reply()).code).toBe(226);
  });
});

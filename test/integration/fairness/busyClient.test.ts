/**
 * Issue 13, item 3: with the default limits one client address (a sync
 * tool with many connections, an office behind one NAT address) may run at
 * least 64 logged-in sessions with a transfer each at once; and the issue's
 * report, fifty parallel sessions from one address refused with 421 under
 * the old default of 20, passes. ftp-srv upstream, real clients.
 */
import { randomBytes } from 'node:crypto';
import { Client } from 'basic-ftp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlClient, parse227, readDataConnection } from '../../support/control.js';
import { downloadToBuffer, sha256 } from '../../support/ftpClient.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { freePortOnAll, type OpsFtpServer, startFtpServer } from '../../support/opsFtpServer.js';
import { portRanges } from '../../support/ports.js';
import { within } from '../../support/traps.js';

const SESSIONS = 64;
const [passivePorts, activePorts, upstreamPasv] = portRanges(3, 100) as [{ min: number; max: number }, { min: number; max: number }, { min: number; max: number }];
let upstream: OpsFtpServer | undefined;
let gw: TestGateway | undefined;
const closers: (() => void)[] = [];

beforeEach(async () => {
  upstream = await startFtpServer({ host: '127.0.0.1', port: await freePortOnAll(['127.0.0.1']), pasv: upstreamPasv });
  // The default limits: nothing but the upstream and the pools is configured.
  gw = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, passivePorts, activePorts });
});

afterEach(async () => {
  for (const close of closers.splice(0)) close();
  if (gw !== undefined) await expectNoLeaks(gw.gateway, { passivePorts, activePorts });
  await gw?.close();
  gw = undefined;
  await upstream?.close();
  upstream = undefined;
});

describe('a busy client address under the default limits', () => {
  it(`${SESSIONS} logged-in sessions from one address, each with a data connection open at once, every transfer byte-exact`, async () => {
    const g = gw as TestGateway;
    const files = Array.from({ length: SESSIONS }, (_, i) => randomBytes(64 * 1024 + i));
    files.forEach((data, i) => upstream?.writeFile(`f${i}.bin`, data));
    const clients = await Promise.all(
      files.map(async () => {
        const c = await ControlClient.connect(g.port);
        closers.push(() => c.destroy());
        expect((await within(5_000, 'greeting', c.reply())).code).toBe(220);
        await c.login();
        expect((await c.command('TYPE I')).code).toBe(200);
        return c;
      }),
    );
    expect(g.gateway.stats().sessions).toBe(SESSIONS);
    // Every session holds its pinhole before any transfer starts: 64 at once from one address.
    const ports = await Promise.all(
      clients.map(async (c) => {
        const reply = await c.command('PASV');
        expect(reply.code, reply.text).toBe(227);
        return parse227(reply.text).port;
      }),
    );
    expect(g.gateway.stats().pinholes).toBe(SESSIONS);
    const received = await Promise.all(
      clients.map(async (c, i) => {
        const data = readDataConnection(ports[i] as number);
        expect((await c.command(`RETR f${i}.bin`)).code).toBe(150);
        const bytes = await data;
        expect((await within(10_000, '226', c.reply())).code).toBe(226);
        return bytes;
      }),
    );
    received.forEach((bytes, i) => expect(sha256(bytes), `f${i}.bin`).toBe(sha256(files[i] as Buffer)));
    expect(await counterTotal(g.gateway, 'ftp_alg_sessions_refused_total')).toBe(0);
    expect(await counterTotal(g.gateway, 'ftp_alg_pinholes_refused_total')).toBe(0);
    expect(await counterTotal(g.gateway, 'ftp_alg_sessions_evicted_total')).toBe(0);
    await Promise.all(clients.map(async (c) => expect((await c.command('QUIT')).code).toBe(221)));
  });

  it('fifty parallel sessions from one address with basic-ftp (a sync tool): all admitted, each lists and downloads', async () => {
    const g = gw as TestGateway;
    const blob = randomBytes(32 * 1024);
    upstream?.writeFile('blob.bin', blob);
    const clients = Array.from({ length: 50 }, () => new Client(10_000));
    for (const c of clients) closers.push(() => c.close());
    await Promise.all(clients.map((c) => c.access({ host: '127.0.0.1', port: g.port, user: 'anonymous', password: 'sync@example.org' })));
    expect(g.gateway.stats().sessions).toBe(50);
    await Promise.all(
      clients.map(async (c) => {
        expect((await c.list()).map((f) => f.name)).toContain('blob.bin');
        expect(sha256(await downloadToBuffer(c, 'blob.bin'))).toBe(sha256(blob));
      }),
    );
    expect(await counterTotal(g.gateway, 'ftp_alg_sessions_refused_total')).toBe(0);
    expect((await g.gateway.metrics.registry.getSingleMetricAsString('ftp_alg_sessions_total')).includes(`site="${SITE}"} 50`)).toBe(true);
  });
});

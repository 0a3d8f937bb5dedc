/**
 * Issue 13, item 3: with the default limits one client address (a sync
 * tool with many connections, an office behind one NAT address) may run at
 * least 64 logged-in sessions with a transfer each at once; and the issue's
 * report, fifty parallel sessions from one address refused with 421 under
 * the old default of 20, passes. ftp-srv upstream, real clients.
 */
import { randomBytes } from 'node:crypto';
import { Client } from 'basic-ftp';
import { describe, expect, it } from 'vitest';
import { downloadToBuffer, sha256 } from '../../support/ftpClient.js';
import { counterTotal, SITE } from '../../support/gateway.js';
import { downloadAtOnce, loggedInSessions, useFtpSrvGateway } from './sessions.js';

const SESSIONS = 64;
const rig = useFtpSrvGateway(100);
const { closers } = rig;

describe('a busy client address under the default limits', () => {
  it(`${SESSIONS} logged-in sessions from one address, each with a data connection open at once, every transfer byte-exact`, async () => {
    const g = rig.gw;
    const files = Array.from({ length: SESSIONS }, (_, i) => randomBytes(64 * 1024 + i));
    files.forEach((data, i) => rig.upstream.writeFile(`f${i}.bin`, data));
    const clients = await loggedInSessions(g.port, SESSIONS, closers);
    expect(g.gateway.stats().sessions).toBe(SESSIONS);
    // Every session holds its pinhole before any transfer starts: 64 at once from one address.
    const received = await downloadAtOnce(
      clients,
      files.map((_, i) => `f${i}.bin`),
      () => expect(g.gateway.stats().pinholes).toBe(SESSIONS),
    );
    received.forEach((bytes, i) => expect(sha256(bytes), `f${i}.bin`).toBe(sha256(files[i] as Buffer)));
    expect(await counterTotal(g.gateway, 'ftp_alg_sessions_refused_total')).toBe(0);
    expect(await counterTotal(g.gateway, 'ftp_alg_pinholes_refused_total')).toBe(0);
    expect(await counterTotal(g.gateway, 'ftp_alg_sessions_evicted_total')).toBe(0);
    await Promise.all(clients.map(async (c) => expect((await c.command('QUIT')).code).toBe(221)));
  });

  it('fifty parallel sessions from one address with basic-ftp (a sync tool): all admitted, each lists and downloads', async () => {
    const g = rig.gw;
    const blob = randomBytes(32 * 1024);
    rig.upstream.writeFile('blob.bin', blob);
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

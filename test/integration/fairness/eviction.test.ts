/**
 * Issue 13, item 2: at a full cap (per client address, per site, process)
 * the oldest session that has not logged in and is quiet is ended with 421
 * to admit the newcomer; a logged-in or busy session never is, and only
 * when no session may go is the newcomer refused. The scenario: a
 * few hundred idle connections that never log in, half of them from a real
 * user's address, no longer lock that user out.
 */
import { describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { counterTotal, SITE } from '../../support/gateway.js';
import type { TestGateway } from '../../support/gateway.js';
import { usePerTestGateway } from '../../support/perTestGateway.js';
import { CLIENT, OTHER_CLIENT, THIRD_HOST, within } from '../../support/traps.js';
import { readDataConnection } from '../../support/control.js';
import { parse227 } from '../../support/hostPort.js';

const rig = usePerTestGateway();
const EVICTED = '421 Too many connections from your address, closing an idle one.\r\n';

/** Connect from `from`: the first reply's code (220, or 421 when refused), and the client. */
async function connect(port: number, from = CLIENT): Promise<{ code: number; client: ControlClient }> {
  const client = rig.track(await ControlClient.connect(port, { localAddress: from }));
  return { code: (await within(3_000, 'greeting', client.reply())).code, client };
}

async function loggedIn(port: number, from = CLIENT): Promise<ControlClient> {
  const { code, client } = await connect(port, from);
  expect(code).toBe(220);
  await client.login();
  return client;
}

/** Ended by eviction: the 421 naming it, then the close. */
async function expectEvicted(client: ControlClient): Promise<void> {
  await within(3_000, 'eviction', client.closed);
  expect(client.received().toString('latin1').endsWith(EVICTED)).toBe(true);
}

async function expectAlive(client: ControlClient): Promise<void> {
  expect((await within(3_000, 'NOOP', client.command('NOOP'))).code).toBe(200);
}

async function counter(gw: TestGateway, name: string, labels: Record<string, string>): Promise<number> {
  const metric = gw.gateway.metrics.registry.getSingleMetric(name);
  const values = (await metric?.get())?.values ?? [];
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
}

describe('eviction at the per-client cap', () => {
  it('the oldest idle session not logged in is ended with 421 (logged, counted) and the newcomer admitted', async () => {
    const { gw } = await rig.start({ limits: { maxSessionsPerClient: 2 } });
    const first = await connect(gw.port);
    const second = await connect(gw.port);
    const third = await connect(gw.port);
    expect([first.code, second.code, third.code]).toEqual([220, 220, 220]);
    await expectEvicted(first.client);
    await expectAlive(second.client);
    await third.client.login();
    expect(await counter(gw, 'ftp_alg_sessions_evicted_total', { site: SITE, scope: 'client' })).toBe(1);
    expect(await counterTotal(gw.gateway, 'ftp_alg_sessions_evicted_total')).toBe(1);
    expect(await counterTotal(gw.gateway, 'ftp_alg_sessions_refused_total')).toBe(0);
    expect(await counter(gw, 'ftp_alg_session_ends_total', { site: SITE, reason: 'evicted' })).toBe(1);
    expect(gw.gateway.stats().sessions).toBe(2);
  });

  it('logged-in sessions are never evicted: with every place held by one, the newcomer is refused', async () => {
    const { gw, fake } = await rig.start({ limits: { maxSessionsPerClient: 2 } });
    const held = [await loggedIn(gw.port), await loggedIn(gw.port)];
    const newcomer = await connect(gw.port);
    expect(newcomer.code).toBe(421);
    await within(3_000, 'refusal close', newcomer.client.closed);
    for (const c of held) await expectAlive(c);
    expect(fake.connections).toHaveLength(2);
    expect(await counterTotal(gw.gateway, 'ftp_alg_sessions_evicted_total')).toBe(0);
    expect(await counter(gw, 'ftp_alg_sessions_refused_total', { site: SITE, reason: 'client-limit' })).toBe(1);
  });

  it('an older logged-in session is passed over: the younger idle one goes', async () => {
    const { gw } = await rig.start({ limits: { maxSessionsPerClient: 2 } });
    const user = await loggedIn(gw.port);
    const idle = await connect(gw.port);
    const newcomer = await connect(gw.port);
    expect(newcomer.code).toBe(220);
    await expectEvicted(idle.client);
    await expectAlive(user);
  });

  it('a session busy before login (a reply owed, a pinhole open) is not evicted', async () => {
    const { gw, fake } = await rig.start({ limits: { maxSessionsPerClient: 2 } });
    fake.hooks.reply = (line) => (line.startsWith('USER slow') ? '' : undefined); // USER slow: never answered
    const waiting = await connect(gw.port);
    await waiting.client.write('USER slow\r\n');
    const passive = await connect(gw.port);
    expect((await passive.client.command('PASV')).code).toBe(227); // holds a pinhole, not logged in
    await vi.waitFor(() => expect(gw.gateway.stats().pinholes).toBe(1));
    const refused = await connect(gw.port);
    expect(refused.code).toBe(421);
    await expectAlive(passive.client);
    expect(await counterTotal(gw.gateway, 'ftp_alg_sessions_evicted_total')).toBe(0);

    // The pinhole closes (ABOR): that session is quiet again, and the next newcomer evicts it, not the one still waiting.
    expect((await passive.client.command('ABOR')).code).toBe(226);
    await vi.waitFor(() => expect(gw.gateway.stats().pinholes).toBe(0));
    expect((await connect(gw.port)).code).toBe(220);
    await expectEvicted(passive.client);
    expect(waiting.client.received().toString('latin1')).not.toContain('421');
  });
});

describe('eviction at the site and process caps', () => {
  it('site maxSessions: the site-wide oldest idle session goes, whatever its address', async () => {
    const { gw } = await rig.start({ limits: { maxSessions: 2 } });
    const a = await connect(gw.port, CLIENT);
    const b = await connect(gw.port, OTHER_CLIENT);
    const c = await connect(gw.port, THIRD_HOST);
    expect(c.code).toBe(220);
    await expectEvicted(a.client);
    await expectAlive(b.client);
    expect(await counter(gw, 'ftp_alg_sessions_evicted_total', { site: SITE, scope: 'site' })).toBe(1);
  });

  it('process limits.maxSessions: the process-wide oldest idle session goes', async () => {
    const { gw } = await rig.start({ limits: { maxSessions: 100 } }, { limits: { maxSessions: 2 } });
    const a = await connect(gw.port, CLIENT);
    const b = await loggedIn(gw.port, OTHER_CLIENT);
    const c = await connect(gw.port, THIRD_HOST);
    expect(c.code).toBe(220);
    await expectEvicted(a.client);
    await expectAlive(b);
    expect(await counter(gw, 'ftp_alg_sessions_evicted_total', { site: SITE, scope: 'process' })).toBe(1);
    // Now every session but c is logged in; log c in too: the next one is refused.
    await c.client.login();
    const d = await connect(gw.port, CLIENT);
    expect(d.code).toBe(421);
    expect(await counter(gw, 'ftp_alg_sessions_refused_total', { site: SITE, reason: 'process-limit' })).toBe(1);
  });
});

describe("the issue's scenario: idle connections that never log in, half from the user's address", () => {
  const IDLE = 300;

  it.each([
    ['default limits', {}],
    ['a site cap below the idle crowd', { limits: { maxSessions: 200 } }],
  ])('%s: the user still logs in and transfers', async (_name, site) => {
    const { gw, fake } = await rig.start(site);
    const file = Buffer.alloc(256 * 1024, 7);
    fake.files.set('report.bin', file);
    for (let i = 0; i < IDLE; i++) {
      const { code } = await connect(gw.port, i % 2 === 0 ? CLIENT : OTHER_CLIENT);
      expect(code).toBe(220);
    }
    const user = await loggedIn(gw.port, CLIENT);
    const pasv = await user.command('PASV');
    expect(pasv.code).toBe(227);
    const data = readDataConnection(parse227(pasv.text).port, { localAddress: CLIENT });
    expect((await user.command('RETR report.bin')).code).toBe(150);
    expect((await data).equals(file)).toBe(true);
    expect((await within(5_000, '226', user.reply())).code).toBe(226);
    expect(await counterTotal(gw.gateway, 'ftp_alg_sessions_refused_total')).toBe(0);
    expect(await counterTotal(gw.gateway, 'ftp_alg_sessions_evicted_total')).toBeGreaterThan(0);
    const limits = gw.gateway.stats();
    expect(limits.sessions).toBeLessThanOrEqual((site as { limits?: { maxSessions: number } }).limits?.maxSessions ?? 1_000);
  });
});

/**
 * The operator's HTTP endpoint after real traffic: values, not just names.
 * Sessions, bytes by flow, pinholes, free ports back to the range size,
 * refusals by reason, upstream connect failures; /healthz, and /readyz
 * ready while running, unready as soon as a drain starts.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { connectClient, type RecordingClient, sha256 } from '../../support/ftpClient.js';
import { type TestGateway, startGatewayWith } from '../../support/gateway.js';
import { httpGet, Scrape } from '../../support/opsMetrics.js';
import { portRanges, rangeSize, refusedPort } from '../../support/ports.js';
import { putFiles, startUpstream, type TestUpstream } from '../../support/upstream.js';

const SITE = 'edge';
const [passivePorts, activePorts] = portRanges(2, 16) as [{ min: number; max: number }, { min: number; max: number }];
const FILES = { 'small.bin': randomBytes(300 * 1024 + 5), 'large.bin': randomBytes(1024 * 1024 + 7) };
const UPLOAD = randomBytes(200 * 1024 + 3);

let upstream: TestUpstream;
let gw: TestGateway | undefined;
const closers: (() => void)[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  putFiles(upstream, FILES);
});

afterAll(async () => {
  await upstream.close();
});

afterEach(async () => {
  for (const close of closers.splice(0)) close();
  await gw?.close();
  gw = undefined;
});

function site(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: SITE,
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: upstream.host, port: upstream.port },
    externalAddress: '127.0.0.1',
    passivePorts,
    activePorts,
    ...overrides,
  };
}

async function start(overrides: Record<string, unknown> = {}): Promise<TestGateway> {
  gw = await startGatewayWith({ metrics: { listen: '127.0.0.1:0' }, sites: [site(overrides)] }, 'warn');
  return gw;
}

async function client(port: number): Promise<RecordingClient> {
  const c = await connectClient(port, 'PASV');
  closers.push(() => c.close());
  return c;
}

async function control(port: number): Promise<ControlClient> {
  const c = await ControlClient.connect(port);
  closers.push(() => c.destroy());
  return c;
}

describe('metrics after real transfers', () => {
  it('counts sessions, bytes by flow, pinholes and transfers, and free ports return to the range size', async () => {
    const g = await start();
    const port = g.portOf(SITE);
    const first = await client(port);
    const second = await client(port);
    expect(sha256(await first.download('small.bin'))).toBe(sha256(FILES['small.bin']));
    expect(sha256(await first.download('large.bin'))).toBe(sha256(FILES['large.bin']));
    await first.upload(UPLOAD, 'up.bin');
    expect(sha256(await second.download('small.bin'))).toBe(sha256(FILES['small.bin']));
    first.close();
    second.close();

    const address = g.metrics();
    await vi.waitFor(async () => {
      const s = await Scrape.from(address);
      expect(s.value('ftp_alg_sessions_active', { site: SITE })).toBe(0);
      expect(s.value('ftp_alg_pinholes_open', { site: SITE })).toBe(0);
    });
    const answer = await httpGet(address, '/metrics');
    expect(answer.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const s = await Scrape.from(address);
    const downloaded = 2 * FILES['small.bin'].length + FILES['large.bin'].length;
    expect(s.value('ftp_alg_sessions_total', { site: SITE })).toBe(2);
    expect(s.value('ftp_alg_bytes_total', { site: SITE, flow: 'download' })).toBe(downloaded);
    expect(s.value('ftp_alg_bytes_total', { site: SITE, flow: 'upload' })).toBe(UPLOAD.length);
    expect(s.value('ftp_alg_pinholes_opened_total', { site: SITE, dir: 'passive' })).toBe(4);
    expect(s.value('ftp_alg_pinholes_opened_total', { site: SITE, dir: 'active' }) ?? 0).toBe(0);
    expect(s.value('ftp_alg_transfer_duration_seconds_count', { site: SITE })).toBe(4);
    expect(s.value('ftp_alg_ports_free', { site: SITE, dir: 'passive' })).toBe(rangeSize(passivePorts));
    expect(s.value('ftp_alg_ports_free', { site: SITE, dir: 'active' })).toBe(rangeSize(activePorts));
    expect(s.value('ftp_alg_upstream_connect_seconds_count', { site: SITE })).toBe(2);
    expect(s.value('ftp_alg_upstream_connect_failures_total', { site: SITE }) ?? 0).toBe(0);
    expect(s.value('ftp_alg_sessions_refused_total', { site: SITE }) ?? 0).toBe(0);
    expect(s.value('ftp_alg_pinholes_expired_total', { site: SITE }) ?? 0).toBe(0);
  });

  it('free ports drop while a pinhole waits and come back when it closes', async () => {
    const g = await start();
    const c = await control(g.portOf(SITE));
    expect((await c.reply()).code).toBe(220);
    await c.login();
    expect((await c.command('PASV')).code).toBe(227);
    const during = await Scrape.from(g.metrics());
    expect(during.value('ftp_alg_ports_free', { site: SITE, dir: 'passive' })).toBe(rangeSize(passivePorts) - 1);
    expect(during.value('ftp_alg_pinholes_open', { site: SITE, dir: 'passive' })).toBe(1);
    await c.command('QUIT');
    await vi.waitFor(async () => {
      const after = await Scrape.from(g.metrics());
      expect(after.value('ftp_alg_ports_free', { site: SITE, dir: 'passive' })).toBe(rangeSize(passivePorts));
      expect(after.value('ftp_alg_pinholes_open', { site: SITE, dir: 'passive' })).toBe(0);
    });
  });

  it('counts a session refused for exceeding maxSessionsPerClient under reason="client-limit"', async () => {
    const g = await start({ limits: { maxSessionsPerClient: 2 } });
    const port = g.portOf(SITE);
    const held = [await control(port), await control(port)];
    for (const c of held) expect((await c.reply()).code).toBe(220);
    for (const c of held) await c.login(); // logged in: never evicted for a newcomer
    const third = await control(port);
    expect((await third.reply()).code).toBe(421);
    await third.closed;

    const s = await Scrape.from(g.metrics());
    expect(s.value('ftp_alg_sessions_refused_total', { site: SITE, reason: 'client-limit' })).toBe(1);
    expect(s.value('ftp_alg_sessions_total', { site: SITE })).toBe(2);
    expect(s.value('ftp_alg_sessions_active', { site: SITE })).toBe(2);

    // One leaves: the client may connect again, and nothing more is refused.
    await held[0]?.command('QUIT');
    await vi.waitFor(async () => expect((await Scrape.from(g.metrics())).value('ftp_alg_sessions_active', { site: SITE })).toBe(1));
    const again = await control(port);
    expect((await again.reply()).code).toBe(220);
    const later = await Scrape.from(g.metrics());
    expect(later.value('ftp_alg_sessions_refused_total', { site: SITE, reason: 'client-limit' })).toBe(1);
    expect(later.value('ftp_alg_sessions_total', { site: SITE })).toBe(3);
  });

  it('counts upstream connect failures with a dead upstream, and /readyz turns unready', async () => {
    // One failure takes the lone member to "failing" (never ejected: it is the last in service).
    const g = await start({ upstream: { host: '127.0.0.1', port: await refusedPort(), health: { consecutiveFailures: 1 } } });
    const address = g.metrics();
    expect((await httpGet(address, '/readyz')).status).toBe(200);

    const c = await control(g.portOf(SITE));
    const reply = await c.reply();
    expect(reply.code).toBe(421);
    await c.closed;

    const s = await Scrape.from(address);
    expect(s.value('ftp_alg_upstream_connect_failures_total', { site: SITE })).toBe(1);
    expect(s.value('ftp_alg_sessions_total', { site: SITE })).toBe(1);
    expect(s.value('ftp_alg_upstream_connect_seconds_count', { site: SITE }) ?? 0).toBe(0);
    const ready = await httpGet(address, '/readyz');
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body)).toMatchObject({ ready: false, state: 'running', sites: { [SITE]: false } });
    expect((await httpGet(address, '/healthz')).status).toBe(200);
  });
});

describe('/healthz and /readyz', () => {
  it('/readyz is 200 while running and 503 as soon as a drain starts; /healthz stays 200', async () => {
    const g = await start();
    const address = g.metrics();
    const health = await httpGet(address, '/healthz');
    expect(health.status).toBe(200);
    const ready = await httpGet(address, '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toMatchObject({ ready: true, state: 'running', sites: { [SITE]: true } });

    // A session with a data connection pending holds the drain open (an idle one is closed at once).
    const c = await control(g.portOf(SITE));
    expect((await c.reply()).code).toBe(220);
    await c.login();
    expect((await c.command('PASV')).code).toBe(227);
    const began = performance.now();
    const closing = g.gateway.close(20_000);
    const draining = await httpGet(address, '/readyz');
    expect(draining.status).toBe(503);
    expect(JSON.parse(draining.body)).toMatchObject({ ready: false, state: 'draining' });
    expect((await httpGet(address, '/healthz')).status).toBe(200);

    // The session ends by itself: the drain completes without waiting for its bound.
    await c.command('QUIT');
    await closing;
    expect(performance.now() - began).toBeLessThan(10_000);
    await expect(httpGet(address, '/healthz')).rejects.toThrow(/ECONNREFUSED/);
    gw = undefined;
  });
});

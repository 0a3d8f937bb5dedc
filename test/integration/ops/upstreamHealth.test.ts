/**
 * Upstream health on loopback with scripted members (127.0.0.1, .2, .3 on
 * one port, as a pool's members are): passive health ejects a member that
 * answers 421, a probe brings it back once it greets again, a pool of two
 * keeps serving while one member is down, probes are polite FTP sessions
 * that end with QUIT, a lone member is never ejected into "no upstream",
 * a failed attempt is retried on another member before the client hears
 * anything, and two sites on one upstream share one prober.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { type CapturedLine, counterTotal, startGatewayWith, type TestGateway } from '../../support/gateway.js';
import { httpGet, Scrape } from '../../support/opsMetrics.js';
import { freePortOnAll, portRanges } from '../../support/ports.js';
import { type ScriptedUpstream, startScriptedUpstream } from '../../support/scripted.js';
import { parseConfig } from '../../../src/config/load.js';

const A = '127.0.0.2';
const B = '127.0.0.1';
const C = '127.0.0.3';
const [passive1, active1, passive2, active2] = portRanges(4, 8) as { min: number; max: number }[];

let gw: TestGateway | undefined;
const members: ScriptedUpstream[] = [];
const clients: ControlClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await gw?.close();
  gw = undefined;
  await Promise.all(members.splice(0).map((m) => m.close()));
});

/** A scripted member that speaks enough FTP for a probe and a session; `greeting()` is asked at each connection. */
async function member(host: string, port: number, greeting: () => string | null): Promise<ScriptedUpstream> {
  const m = await startScriptedUpstream({
    host,
    port,
    greeting,
    respond: (line, conn) => {
      const verb = line.split(' ')[0]?.toUpperCase();
      if (verb === 'QUIT') {
        conn.socket.end('221 Goodbye.\r\n');
        return undefined;
      }
      if (verb === 'USER') return '331 Password required.\r\n';
      if (verb === 'PASS') return '230 Logged in.\r\n';
      return '200 OK\r\n';
    },
  });
  members.push(m);
  return m;
}

function site(name: string, upstream: Record<string, unknown>, ranges = { passivePorts: passive1, activePorts: active1 }): Record<string, unknown> {
  return { name, listen: { host: '127.0.0.1', port: 0 }, upstream, ...ranges, limits: { maxSessionsPerClient: 50 } };
}

async function start(...sites: Record<string, unknown>[]): Promise<TestGateway> {
  gw = await startGatewayWith({ metrics: { listen: '127.0.0.1:0' }, sites });
  return gw;
}

/** Connect, read the greeting (the raw bytes), say QUIT if greeted. */
async function session(g: TestGateway, siteName = 'pool'): Promise<string> {
  const c = await ControlClient.connect(g.portOf(siteName));
  clients.push(c);
  const greeting = await c.reply();
  if (greeting.code === 220) await c.command('QUIT');
  await c.closed;
  return greeting.raw.toString('latin1');
}

function healthChanges(g: TestGateway, host: string): CapturedLine[] {
  return g.lines.filter((l) => l.msg === 'upstream health changed' && l.upstream === host);
}

async function gauge(g: TestGateway, name: string, siteName: string, upstream: string): Promise<number | undefined> {
  return (await Scrape.from(g.metrics())).value(name, { site: siteName, upstream });
}

describe('passive health and probes', () => {
  it('an upstream that answers 421 is ejected by passive health, and a probe re-admits it once it recovers', async () => {
    const port = await freePortOnAll([A, B]);
    let busy = true;
    const a = await member(A, port, () => (busy ? '421 Too many users, try later.\r\n' : '220 member-a\r\n'));
    await member(B, port, () => '220 member-b\r\n');
    const g = await start(site('pool', { hosts: [A, B], port, health: { baseEjectionMs: 300, maxEjectionMs: 1_000 } }));

    const greetings: string[] = [];
    for (let i = 0; i < 6; i++) greetings.push(await session(g));
    expect(greetings).toEqual(Array(6).fill('220 member-b\r\n')); // no client heard the 421: each was retried on B
    expect(healthChanges(g, A)[0]).toMatchObject({ from: 'up', to: 'ejected', reason: 'greeting-refused', consecutiveFailures: 3, retryInMs: 300 });
    expect(await counterTotal(g.gateway, 'ftp_alg_upstream_ejections_total')).toBe(1);
    expect(await gauge(g, 'ftp_alg_upstream_up', 'pool', A)).toBe(0);
    expect(await gauge(g, 'ftp_alg_upstream_up', 'pool', B)).toBe(1);
    const sessionsOnA = a.connections.length;

    busy = false;
    await vi.waitFor(() => expect(healthChanges(g, A).at(-1)).toMatchObject({ from: 'ejected', to: 'up', reason: 'probe-ok' }), { timeout: 10_000 });
    const probe = a.connections.at(-1);
    expect(a.connections.length).toBeGreaterThan(sessionsOnA);
    expect(probe?.lines).toEqual(['QUIT']); // the probe that re-admitted it ended politely
    await probe?.closed;
    expect(await gauge(g, 'ftp_alg_upstream_up', 'pool', A)).toBe(1);
    expect(await gauge(g, 'ftp_alg_upstream_consecutive_failures', 'pool', A)).toBe(0);
    expect((await Scrape.from(g.metrics())).value('ftp_alg_upstream_probe_seconds_count', { upstream: A })).toBeGreaterThanOrEqual(1);
    expect(await session(g)).toBe('220 member-a\r\n'); // back in the rotation (fewest sessions, first)
  });

  it('a pool of two keeps serving while one member is down, and /readyz stays ready', async () => {
    const port = await freePortOnAll([A, B]);
    const b = await member(B, port, () => '220 member-b\r\n'); // nothing listens on A
    const g = await start(site('pool', { hosts: [A, B], port }));
    for (let i = 0; i < 10; i++) {
      const c = await ControlClient.connect(g.portOf('pool'));
      clients.push(c);
      expect((await c.reply()).raw.toString('latin1')).toBe('220 member-b\r\n');
      expect((await c.command('NOOP')).code).toBe(200);
      await c.command('QUIT');
      expect((await httpGet(g.metrics(), '/readyz')).status).toBe(200);
    }
    expect(b.connections).toHaveLength(10);
    expect(await counterTotal(g.gateway, 'ftp_alg_upstream_connect_failures_total')).toBe(3);
    expect(healthChanges(g, A)).toHaveLength(1);
    expect(await gauge(g, 'ftp_alg_upstream_consecutive_failures', 'pool', A)).toBe(3);
    expect(await gauge(g, 'ftp_alg_upstream_up', 'pool', B)).toBe(1);
  });

  it('probes are short FTP sessions that end with QUIT; with check.user they log in and send NOOP first', async () => {
    const plain = await member(B, 0, () => '220 plain\r\n');
    const login = await member(B, 0, () => '220 login\r\n');
    const g = await start(
      site('plain', { host: B, port: plain.port, health: { idleProbeMs: 150 } }),
      site('login', { host: B, port: login.port, health: { idleProbeMs: 150, check: { user: 'health', password: 'pw' } } }, { passivePorts: passive2, activePorts: active2 }),
    );
    await vi.waitFor(() => expect(plain.connections.length).toBeGreaterThanOrEqual(2), { timeout: 5_000 });
    await vi.waitFor(() => expect(login.connections.length).toBeGreaterThanOrEqual(2), { timeout: 5_000 });
    await g.close();
    gw = undefined;
    for (const c of plain.connections) {
      await c.closed;
      expect(c.lines).toEqual(['QUIT']);
    }
    for (const c of login.connections) {
      await c.closed;
      expect(c.lines).toEqual(['USER health', 'PASS pw', 'NOOP', 'QUIT']);
    }
    expect(g.lines.filter((l) => l.msg === 'upstream health changed')).toEqual([]); // nothing changed: not one line per probe
  });

  it('never probes a member sessions keep reaching within idleProbeMs', async () => {
    const m = await member(B, 0, () => '220 busy\r\n');
    const g = await start(site('pool', { host: B, port: m.port, health: { idleProbeMs: 400 } }));
    const ends = performance.now() + 1_500;
    while (performance.now() < ends) {
      await session(g);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Every connection the member saw was a client's session (it said QUIT after the greeting, as a probe
    // would, so count them instead): one per session, none added by a prober.
    expect(m.connections.length).toBe(await counterTotal(g.gateway, 'ftp_alg_sessions_total'));
  });
});

describe('a lone member', () => {
  it('is never ejected into "no upstream": its clients get its honest 421, /readyz turns unready, and it comes back', async () => {
    let busy = true;
    const m = await member(B, 0, () => (busy ? '421 Too many users, try later.\r\n' : '220 back\r\n'));
    const g = await start(site('pool', { host: B, port: m.port, health: { baseEjectionMs: 60_000, maxEjectionMs: 60_000 } }));
    for (let i = 0; i < 5; i++) expect(await session(g)).toBe('421 Too many users, try later.\r\n');
    expect(m.connections).toHaveLength(5); // every session still reached it
    expect(healthChanges(g, B)).toEqual([expect.objectContaining({ from: 'up', to: 'failing', reason: 'greeting-refused' })]);
    expect(await counterTotal(g.gateway, 'ftp_alg_upstream_ejections_total')).toBe(0);
    expect(await gauge(g, 'ftp_alg_upstream_up', 'pool', B)).toBe(0);
    expect(await gauge(g, 'ftp_alg_upstream_consecutive_failures', 'pool', B)).toBe(5);
    const unready = await httpGet(g.metrics(), '/readyz');
    expect(unready.status).toBe(503);
    expect(JSON.parse(unready.body)).toMatchObject({ sites: { pool: false } });

    busy = false;
    expect(await session(g)).toBe('220 back\r\n');
    expect(healthChanges(g, B).at(-1)).toMatchObject({ from: 'failing', to: 'up', reason: 'ok' });
    expect((await httpGet(g.metrics(), '/readyz')).status).toBe(200);
  });
});

describe('retry on another member', () => {
  it('a member that never greets is left for the next before the client hears anything; its early commands reach only the member that greeted', async () => {
    const port = await freePortOnAll([A, B]);
    const silent = await member(A, port, () => null);
    const b = await member(B, port, () => '220 member-b\r\n');
    const g = await start({ ...site('pool', { hosts: [A, B], port }), timeouts: { greetingMs: 200 } });
    const c = await ControlClient.connect(g.portOf('pool'));
    clients.push(c);
    await c.write('USER early\r\n'); // held by the gateway until a greeting
    expect((await c.reply()).raw.toString('latin1')).toBe('220 member-b\r\n');
    expect((await c.reply()).code).toBe(331);
    const onA = await silent.connection();
    await onA.closed;
    expect(onA.received().length).toBe(0);
    expect((await b.connection()).lines).toEqual(['USER early']);
    expect(g.lines.find((l) => l.msg === 'upstream failed, trying another')).toMatchObject({ failed: A, outcome: 'greeting-timeout', next: B });
  });

  it('maxAttempts bounds the members one session tries; the last refusal is what the client hears', async () => {
    const port = await freePortOnAll([A, B, C]);
    await member(A, port, () => '421 member-a busy\r\n');
    await member(B, port, () => '421 member-b busy\r\n');
    const c = await member(C, port, () => '220 member-c\r\n');
    const g = await start(site('pool', { hosts: [A, B, C], port, maxAttempts: 2 }));
    expect(await session(g)).toBe('421 member-b busy\r\n');
    expect(c.connections).toHaveLength(0);
    await g.close();
    // With three attempts allowed the third member serves it.
    const again = await start(site('pool', { hosts: [A, B, C], port, maxAttempts: 3 }));
    expect(await session(again)).toBe('220 member-c\r\n');
  });
});

describe('reload', () => {
  it('keeps what was learnt: a member ejected before a reload stays out of the site that replaces it', async () => {
    const port = await freePortOnAll([A, B]);
    await member(B, port, () => '220 member-b\r\n'); // nothing listens on A
    const before = site('pool', { hosts: [A, B], port });
    const g = await start(before);
    for (let i = 0; i < 3; i++) expect(await session(g)).toBe('220 member-b\r\n');
    expect(healthChanges(g, A)).toHaveLength(1);
    await g.gateway.reload(parseConfig({ metrics: { listen: '127.0.0.1:0' }, sites: [{ ...before, limits: { maxSessionsPerClient: 49 } }] }));
    expect(g.lines.some((l) => l.msg === 'site changed')).toBe(true);
    for (let i = 0; i < 3; i++) expect(await session(g)).toBe('220 member-b\r\n');
    expect(await counterTotal(g.gateway, 'ftp_alg_upstream_connect_failures_total')).toBe(3); // no session tried A again
    expect(await gauge(g, 'ftp_alg_upstream_up', 'pool', A)).toBe(0);
  });
});

describe('one prober per upstream', () => {
  it('two sites in front of one upstream probe it once per interval, not twice', async () => {
    const probedAt: number[] = [];
    const m = await member(B, 0, () => {
      probedAt.push(performance.now());
      return '220 shared\r\n';
    });
    const health = { idleProbeMs: 300 };
    await start(
      site('v4', { host: B, port: m.port, health }),
      site('other', { host: B, port: m.port, health }, { passivePorts: passive2, activePorts: active2 }),
    );
    await vi.waitFor(() => expect(probedAt.length).toBeGreaterThanOrEqual(5), { timeout: 10_000, interval: 20 });
    // One prober: consecutive probes about an interval apart (a timer fires late, never early; the
    // margin is for connect latency). Two probers of any phase would leave a gap of half an interval
    // or less between some two probes.
    const gaps = probedAt.slice(1).map((t, i) => t - (probedAt[i] as number));
    expect(Math.min(...gaps), `gaps ${gaps.map((g) => g.toFixed(0)).join(', ')} ms`).toBeGreaterThan(health.idleProbeMs * 0.6);
  });
});

/**
 * Attack 7, resource exhaustion by count: PASV floods in one session and
 * across sessions, session caps (site, process, per client address), and
 * the per-site allow/deny lists. A refused connection hears one 421 and is
 * closed before any upstream connection is made.
 */
import net from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { counterTotal, SITE } from '../../support/gateway.js';
import { type FakeFtp } from '../../support/hostileUpstream.js';
import { usePerTestGateway } from '../../support/perTestGateway.js';
import { rangeSize } from '../../support/ports.js';
import { CLIENT, OTHER_CLIENT, THIRD_HOST, within } from '../../support/traps.js';
import { parse227 } from '../../support/hostPort.js';

const rig = usePerTestGateway();
const { passivePorts } = rig.pools;
const start = (site: Record<string, unknown> = {}, root: Record<string, unknown> = {}) => rig.start(site, root);

/** Connect from `from`: the greeting's code (220, or 421 when refused), and the client. */
async function connect(port: number, from = CLIENT): Promise<{ code: number; client: ControlClient }> {
  const client = await ControlClient.connect(port, { localAddress: from });
  rig.track(client);
  return { code: (await within(3_000, 'greeting', client.reply())).code, client };
}

/** A refused connection: one 421 line, then the close. */
async function expectRefused(client: ControlClient): Promise<void> {
  await within(3_000, 'close', client.closed);
  expect(client.received().toString('latin1')).toMatch(/^421 [^\r\n]*\r\n$/);
}

/** PASV, then connect to the pinhole from `from` and wait until the gateway has connected on to the upstream: a transfer's worth of ports held. */
async function holdPinhole(client: ControlClient, f: FakeFtp, from = CLIENT): Promise<number> {
  const reply = await client.command('PASV');
  if (reply.code !== 227) return reply.code;
  const peers = f.dataPeers.length;
  rig.track(net.connect({ host: CLIENT, port: parse227(reply.text).port, localAddress: from }).on('error', () => undefined));
  await vi.waitFor(() => expect(f.dataPeers.length).toBe(peers + 1));
  return 227;
}

describe('PASV floods', () => {
  it('50 PASVs in one segment: each replaces the last, one port held at the end', async () => {
    const { gw, fake } = await start({ limits: { maxPinholesPerSession: 2 } });
    const { client } = await connect(gw.port);
    await client.login();
    await client.write('PASV\r\n'.repeat(50));
    const ports = new Set<number>();
    for (let i = 0; i < 50; i++) {
      const reply = await within(3_000, `PASV ${i}`, client.reply());
      expect(reply.code).toBe(227);
      ports.add(parse227(reply.text).port);
    }
    expect(ports.size).toBeGreaterThan(1);
    await vi.waitFor(() => expect(gw.gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts) - 1));
    expect(gw.gateway.stats().pinholes).toBe(1);
    expect(fake.dataPeers).toEqual([]);
  });

  it('pinholes carrying transfers are capped per session (maxPinholesPerSession); ABOR frees them', async () => {
    const { gw, fake } = await start({ limits: { maxPinholesPerSession: 2 } });
    const { client } = await connect(gw.port);
    await client.login();
    expect(await holdPinhole(client, fake)).toBe(227);
    expect(await holdPinhole(client, fake)).toBe(227);
    expect(await holdPinhole(client, fake)).toBe(425);
    expect(gw.gateway.stats().pinholes).toBe(2);
    const text = await gw.gateway.metrics.registry.getSingleMetricAsString('ftp_alg_pinholes_refused_total');
    expect(text).toMatch(/reason="[a-z-]*pinhole-limit"/);
    expect((await client.command('ABOR')).code).toBe(226);
    await vi.waitFor(() => expect(gw.gateway.stats().pinholes).toBe(0));
    expect(await holdPinhole(client, fake)).toBe(227);
  });

  it("one client address cannot drain the site's pool: its sessions are capped, another client still gets a port", async () => {
    // 10 ports; one address: at most 3 sessions × 2 pinholes = 6.
    const { gw, fake } = await start({ limits: { maxPinholesPerSession: 2, maxSessionsPerClient: 3 } });
    let admitted = 0;
    for (let i = 0; i < 5; i++) {
      const { code, client } = await connect(gw.port);
      if (code === 421) {
        await expectRefused(client);
        continue;
      }
      admitted++;
      await client.login();
      for (let j = 0; j < 3; j++) await holdPinhole(client, fake);
    }
    expect(admitted).toBe(3);
    expect(gw.gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts) - 6);

    const victim = await connect(gw.port, OTHER_CLIENT);
    expect(victim.code).toBe(220);
    await victim.client.login();
    expect(await holdPinhole(victim.client, fake, OTHER_CLIENT)).toBe(227);
  });
  it('pinholes are capped per client address across its sessions (maxPinholesPerClient)', async () => {
    const { gw, fake } = await start({ limits: { maxPinholesPerSession: 2, maxSessionsPerClient: 10, maxPinholesPerClient: 4 } });
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) {
      const { code, client } = await connect(gw.port);
      expect(code).toBe(220);
      await client.login();
      for (let j = 0; j < 2; j++) codes.push(await holdPinhole(client, fake));
    }
    expect(codes.filter((c) => c === 227)).toHaveLength(4);
    expect(codes.filter((c) => c === 425)).toHaveLength(4);
    expect(gw.gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts) - 4);
    const text = await gw.gateway.metrics.registry.getSingleMetricAsString('ftp_alg_pinholes_refused_total');
    expect(text).toMatch(/reason="client-pinhole-limit"\} 4/);

    const victim = await connect(gw.port, OTHER_CLIENT);
    await victim.client.login();
    expect(await holdPinhole(victim.client, fake, OTHER_CLIENT)).toBe(227);
  });
});

describe('session caps', () => {
  // Sessions that hold a place are logged in: an idle one not logged in would be evicted instead (test/integration/fairness/eviction.test.ts).
  it('site maxSessions: the next connection, from any address, gets 421 before any upstream connection', async () => {
    const { gw, fake } = await start({ limits: { maxSessions: 2 } });
    const a = await connect(gw.port);
    const b = await connect(gw.port, OTHER_CLIENT);
    expect([a.code, b.code]).toEqual([220, 220]);
    for (const held of [a, b]) await held.client.login();
    for (const from of [CLIENT, THIRD_HOST]) {
      const c = await connect(gw.port, from);
      expect(c.code).toBe(421);
      await expectRefused(c.client);
    }
    expect(fake.connections).toHaveLength(2);
    expect(await gw.gateway.metrics.registry.getSingleMetricAsString('ftp_alg_sessions_refused_total')).toContain('reason="site-limit"');
    a.client.destroy();
    await vi.waitFor(() => expect(gw.gateway.stats().sessions).toBe(1));
    expect((await connect(gw.port)).code).toBe(220); // the slot came back
  });

  it('process-wide limits.maxSessions', async () => {
    const { gw } = await start({ limits: { maxSessions: 100 } }, { limits: { maxSessions: 2 } });
    for (const from of [CLIENT, OTHER_CLIENT]) {
      const held = await connect(gw.port, from);
      expect(held.code).toBe(220);
      await held.client.login();
    }
    const c = await connect(gw.port, THIRD_HOST);
    expect(c.code).toBe(421);
    await expectRefused(c.client);
    expect(await gw.gateway.metrics.registry.getSingleMetricAsString('ftp_alg_sessions_refused_total')).toContain('reason="process-limit"');
  });

  it('maxSessionsPerClient: one address is capped, another is not; the count comes back when a session ends', async () => {
    const { gw } = await start({ limits: { maxSessionsPerClient: 2 } });
    const first = await connect(gw.port);
    const second = await connect(gw.port);
    expect([first.code, second.code]).toEqual([220, 220]);
    for (const held of [first, second]) await held.client.login();
    const third = await connect(gw.port);
    expect(third.code).toBe(421);
    await expectRefused(third.client);
    expect((await connect(gw.port, OTHER_CLIENT)).code).toBe(220);
    expect(await gw.gateway.metrics.registry.getSingleMetricAsString('ftp_alg_sessions_refused_total')).toContain('reason="client-limit"');
    first.client.destroy();
    await vi.waitFor(() => expect(gw.gateway.stats().sessions).toBe(2));
    expect((await connect(gw.port)).code).toBe(220);
  });
});

describe('allow and deny lists (CIDR, deny first)', () => {
  const rows: [string, { allow?: string[]; deny?: string[] }, string[], string[]][] = [
    ['deny one address', { deny: ['127.0.0.2/32'] }, [THIRD_HOST], [CLIENT, OTHER_CLIENT]],
    ['allow one address', { allow: ['127.0.0.1/32'] }, [THIRD_HOST, OTHER_CLIENT], [CLIENT]],
    ['deny inside an allowed block', { allow: ['127.0.0.0/8'], deny: ['127.0.0.2'] }, [THIRD_HOST], [CLIENT, OTHER_CLIENT]],
    ['deny a block', { deny: ['127.0.0.0/30'] }, [CLIENT, THIRD_HOST, OTHER_CLIENT], []],
    ['allow IPv6 only', { allow: ['::1/128'] }, [CLIENT], []],
    ['allow an IPv4-mapped block', { allow: ['::ffff:127.0.0.1/128'] }, [OTHER_CLIENT], [CLIENT]],
  ];

  it.each(rows)('%s', async (_name, clientsConfig, refused, admitted) => {
    const { gw, fake } = await start({ clients: clientsConfig });
    for (const from of refused) {
      const c = await connect(gw.port, from);
      expect(c.code, from).toBe(421);
      await expectRefused(c.client);
    }
    expect(fake.connections).toHaveLength(0);
    for (const from of admitted) expect((await connect(gw.port, from)).code, from).toBe(220);
    expect(fake.connections).toHaveLength(admitted.length);
    expect(await counterTotal(gw.gateway, 'ftp_alg_sessions_refused_total')).toBe(refused.length);
  });
});

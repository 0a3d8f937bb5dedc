/**
 * PROXY protocol on the site listener (issue 12 item 2). 127.0.0.1 plays
 * the balancer, 127.0.0.3 the client it names, 127.0.0.2 a stranger (every
 * 127/8 address is local on Linux). The carried client is the client for
 * everything: pinholes, PORT checks, allow/deny, limits, metrics; a header
 * from anyone but a trusted balancer, a late, truncated, malformed or
 * oversized one closes the connection before any FTP is spoken.
 */
import net from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { formatProxyHeader, type ProxyHeader } from '../../../src/common/proxyProtocol.js';
import { ControlClient, readDataConnection } from '../../support/control.js';
import { parseConfig } from '../../../src/config/load.js';
import { SITE, type TestGateway } from '../../support/gateway.js';
import { usePerTestGateway } from '../../support/perTestGateway.js';
import { listen, within } from '../../support/traps.js';
import { parse227, parse229, portArg } from '../../support/hostPort.js';

const BALANCER = '127.0.0.1';
const STRANGER = '127.0.0.2';
const REAL_CLIENT = '127.0.0.3';
const PAYLOAD = Buffer.from('the file behind the balancer\n'.repeat(1000));

const rig = usePerTestGateway();
const behindBalancer = (mode: 'v1' | 'v2' | 'any' = 'any', site: Record<string, unknown> = {}) =>
  rig.start({ listen: { host: '127.0.0.1', port: 0, proxyProtocol: mode, trustedProxies: ['127.0.0.1/32'] }, ...site });

const header = (version: 1 | 2, client = REAL_CLIENT, port = 40000): Buffer =>
  formatProxyHeader({
    version,
    command: 'proxy',
    addresses: { family: 4, source: { address: client, port }, destination: { address: '127.0.0.1', port: 21 } },
    tlvs: [],
  });

/** Connect from `from` and send `bytes` first. */
async function connectWith(gw: TestGateway, bytes: Buffer, from = BALANCER): Promise<ControlClient> {
  const client = rig.track(await ControlClient.connect(gw.port, { localAddress: from }));
  if (bytes.length > 0) await client.write(bytes);
  return client;
}

async function refusals(gw: TestGateway, reason: string): Promise<number> {
  const { values } = await gw.gateway.metrics.sessionsRefused.get();
  return values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

/** Closed without a byte of FTP, and counted under `reason`. */
async function expectClosedUnanswered(gw: TestGateway, client: ControlClient, reason: string, sessions = 0): Promise<void> {
  await within(3_000, 'close', client.closed);
  expect(client.received().length).toBe(0);
  expect(await refusals(gw, reason)).toBe(1);
  expect(gw.gateway.stats().sessions).toBe(sessions);
}

/** A connection to the pinhole from `from` gets nothing and is counted as a wrong peer; the pinhole still waits. */
async function expectWrongPeer(gw: TestGateway, port: number, from: string): Promise<void> {
  const got = await readDataConnection(port, { localAddress: from }).catch(() => Buffer.alloc(0));
  expect(got.length).toBe(0);
  await vi.waitFor(async () => expect((await gw.gateway.metrics.pinholesWrongPeer.get()).values[0]?.value).toBe(1));
  expect(gw.gateway.stats().pinholes).toBe(1);
}

describe('a header from the trusted balancer names the client', () => {
  it.each([1, 2] as const)('v%i: passive pinholes accept the carried client and refuse the balancer', async (version) => {
    const { gw, fake } = await behindBalancer();
    fake.files.set('f.bin', PAYLOAD);
    const client = await connectWith(gw, header(version));
    expect((await client.reply()).code).toBe(220);
    await client.login();
    const port = parse227((await client.command('PASV')).text).port;
    await expectWrongPeer(gw, port, BALANCER); // the balancer's own address is not the client
    await client.write('RETR f.bin\r\n');
    const data = readDataConnection(port, { localAddress: REAL_CLIENT });
    expect((await client.reply()).code).toBe(150);
    expect((await data).equals(PAYLOAD)).toBe(true);
    expect((await client.reply()).code).toBe(226);
    expect(fake.dataPeers).toEqual(['127.0.0.1']); // the gateway's own leg
  });

  it('EPSV too, with the first command in the same segment as the header', async () => {
    const { gw, fake } = await behindBalancer('v2');
    fake.files.set('f.bin', PAYLOAD);
    const client = await connectWith(gw, Buffer.concat([header(2), Buffer.from('USER anonymous\r\n')]));
    expect((await client.reply()).code).toBe(220);
    expect((await client.reply()).code).toBe(331);
    expect((await client.command('PASS x')).code).toBe(230);
    const port = parse229((await client.command('EPSV')).text);
    await client.write('RETR f.bin\r\n');
    const data = readDataConnection(port, { localAddress: REAL_CLIENT });
    expect((await client.reply()).code).toBe(150);
    expect((await data).equals(PAYLOAD)).toBe(true);
  });

  it('PORT must name the carried client: the balancer is a third host (RFC 2577)', async () => {
    const { gw, fake } = await behindBalancer('v1');
    fake.files.set('f.bin', PAYLOAD);
    const target = rig.track({ destroy: () => undefined });
    const listener = await listen(REAL_CLIENT);
    target.destroy = () => void listener.close();
    const client = await connectWith(gw, header(1));
    expect((await client.reply()).code).toBe(220);
    await client.login();
    const hp = (host: string) => portArg(host, listener.port);
    expect((await client.command(`PORT ${hp(BALANCER)}`)).code).toBe(504);
    expect((await client.command(`PORT ${hp(REAL_CLIENT)}`)).code).toBe(200);
    expect((await client.command('RETR f.bin')).code).toBe(150);
    expect((await client.reply()).code).toBe(226);
    await vi.waitFor(() => expect(listener.received().equals(PAYLOAD)).toBe(true));
    expect(fake.activeTargets.length).toBe(1);
  });

  it('v2 LOCAL (a health check) is the balancer speaking for itself: its own address is the client', async () => {
    const { gw } = await behindBalancer('v2');
    const local: ProxyHeader = { version: 2, command: 'local', addresses: undefined, tlvs: [] };
    const client = await connectWith(gw, formatProxyHeader(local));
    expect((await client.reply()).code).toBe(220);
    await client.login();
    await expectWrongPeer(gw, parse227((await client.command('PASV')).text).port, REAL_CLIENT);
  });
});

describe('admission uses the carried client', () => {
  it('deny lists apply to the carried address: 421, as for a direct client', async () => {
    const { gw } = await behindBalancer('any', { clients: { deny: ['127.0.0.3/32'] } });
    const denied = await connectWith(gw, header(1));
    expect((await denied.reply()).code).toBe(421);
    expect(await refusals(gw, 'denied')).toBe(1);
    const other = await connectWith(gw, header(1, '127.0.0.4'));
    expect((await other.reply()).code).toBe(220);
  });

  it('per-client limits count carried clients, not the balancer', async () => {
    const { gw } = await behindBalancer('any', { limits: { maxSessionsPerClient: 1 } });
    const first = await connectWith(gw, header(2));
    expect((await first.reply()).code).toBe(220);
    await first.login(); // a logged-in session is never evicted to make room
    const second = await connectWith(gw, header(2, REAL_CLIENT, 40001));
    expect((await second.reply()).code).toBe(421);
    expect(await refusals(gw, 'client-limit')).toBe(1);
    const someoneElse = await connectWith(gw, header(2, '127.0.0.4'));
    expect((await someoneElse.reply()).code).toBe(220);
  });
});

describe('no FTP is spoken without a valid header from a trusted balancer', () => {
  it('a header from an untrusted address: closed at once, nothing read', async () => {
    const { gw, fake } = await behindBalancer();
    const client = await connectWith(gw, header(1), STRANGER);
    await expectClosedUnanswered(gw, client, 'proxy-untrusted');
    expect(fake.connections.length).toBe(0);
  });

  it('a header that does not come in time: closed at the deadline', async () => {
    const { gw } = await behindBalancer('any', { timeouts: { proxyHeaderMs: 300 } });
    const client = await connectWith(gw, header(1).subarray(0, 10));
    const began = performance.now();
    await expectClosedUnanswered(gw, client, 'proxy-timeout');
    expect(performance.now() - began).toBeGreaterThanOrEqual(250);
  });

  it('a truncated header then FIN: closed, counted', async () => {
    const { gw } = await behindBalancer('v2');
    const client = await connectWith(gw, header(2).subarray(0, 20));
    client.socket.end();
    await expectClosedUnanswered(gw, client, 'proxy-truncated');
  });

  it.each([
    ['an FTP command instead of a header', Buffer.from('USER anonymous\r\n')],
    ['a malformed v1 header', Buffer.from('PROXY TCP4 127.0.0.999 127.0.0.1 1 21\r\n')],
    ['a v1 header of 108 bytes', Buffer.from(`PROXY UNKNOWN ${'f'.repeat(100)}\r\n`)],
    ['an oversized v2 header', Buffer.concat([header(2).subarray(0, 14), Buffer.from([0xff, 0xff])])],
    ['a v2 header on a v1 listener', header(2)],
  ])('%s: closed, counted', async (name, bytes) => {
    const { gw } = await behindBalancer(name.includes('v1 listener') ? 'v1' : 'any');
    const client = await connectWith(gw, bytes);
    await expectClosedUnanswered(gw, client, 'proxy-invalid');
  });

  it('a bare TCP check (connect, close) is not counted', async () => {
    const { gw } = await behindBalancer();
    const socket = rig.track(net.connect({ host: '127.0.0.1', port: gw.port }));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.end();
    await new Promise((resolve) => socket.once('close', resolve));
    expect(await refusals(gw, 'proxy-truncated')).toBe(0);
  });

  it('a connection still sending its header is closed by a drain', async () => {
    const { gw } = await behindBalancer();
    const client = await connectWith(gw, Buffer.from('PROXY TCP4'));
    void gw.close();
    await within(3_000, 'close', client.closed);
    expect(client.received().length).toBe(0);
  });
});

describe('header injection: a listener that expects no header never trusts one', () => {
  it('a PROXY line from a client is an unknown command passed upstream; PORT still checks the real client', async () => {
    const { gw, fake } = await rig.start();
    fake.hooks.reply = (line) => (line.startsWith('PROXY') ? '500 Unknown command.\r\n' : undefined);
    const client = rig.track(await ControlClient.connect(gw.port));
    expect((await client.reply()).code).toBe(220);
    expect((await client.command('PROXY TCP4 127.0.0.3 127.0.0.1 40000 21')).code).toBe(500);
    const conn = await fake.connection();
    expect(conn.lines).toContain('PROXY TCP4 127.0.0.3 127.0.0.1 40000 21');
    await client.login();
    expect((await client.command('PORT 127,0,0,3,156,64')).code).toBe(504); // not the client: refused
  });
});

describe('reload', () => {
  it('turning the PROXY protocol on keeps the listening socket; new connections must then send a header', async () => {
    const { gw, fake } = await rig.start();
    const before = rig.track(await ControlClient.connect(gw.port));
    expect((await before.reply()).code).toBe(220);
    const listen = { host: '127.0.0.1', port: 0, proxyProtocol: 'v1', trustedProxies: ['127.0.0.1/32'] };
    const site = { name: SITE, listen, upstream: { host: fake.host, port: fake.port }, ...rig.pools };
    await gw.gateway.reload(parseConfig({ log: { level: 'silent' }, sites: [site] }));
    expect(gw.gateway.addresses()[SITE]?.port).toBe(gw.port);
    await expectClosedUnanswered(gw, await connectWith(gw, Buffer.from('USER anonymous\r\n')), 'proxy-invalid', 1);
    expect((await (await connectWith(gw, header(1))).reply()).code).toBe(220);
    expect((await before.command('NOOP')).code).toBe(200); // the session from before the reload goes on
  });
});

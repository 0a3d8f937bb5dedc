/**
 * PROXY protocol toward the upstream (issue 12 item 1): the header naming
 * the client is the first thing on every upstream control connection, and
 * on each data connection the gateway makes to the upstream when
 * configured. Checked byte-exact here; test/e2e/identity.e2e.test.ts
 * checks it against HAProxy as a real parser.
 */
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { V2_SIGNATURE } from '../../../src/common/proxyProtocol.js';
import { ControlClient } from '../../support/control.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { portRanges } from '../../support/ports.js';
import { parse227 } from '../../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
let fake: FakeFtp | undefined;
let gw: TestGateway | undefined;
const clients: { destroy(): void }[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  if (gw !== undefined) await expectNoLeaks(gw.gateway, { passivePorts, activePorts });
  await gw?.close();
  await fake?.close();
  gw = undefined;
  fake = undefined;
});

/** A fake upstream that takes a header line silently (as a PROXY-aware server does), and a gateway sending it. */
async function start(upstream: Record<string, unknown>, site: Record<string, unknown> = {}, root: Record<string, unknown> = {}): Promise<{ gw: TestGateway; fake: FakeFtp }> {
  fake = await startFakeFtp();
  fake.hooks.reply = (line) => (line.startsWith('PROXY ') || line.startsWith('\r\n\r\n') ? '' : undefined);
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port, ...upstream }, passivePorts, activePorts, ...site }, root);
  return { gw, fake };
}

async function greeted(port: number, bytes?: Buffer): Promise<ControlClient> {
  const client = await ControlClient.connect(port);
  clients.push(client);
  if (bytes !== undefined) await client.write(bytes);
  expect((await client.reply()).code).toBe(220);
  return client;
}

describe('upstream control connections begin with the header', () => {
  it('v1: names the client socket and the listener it reached, then FTP follows', async () => {
    const { gw, fake } = await start({ proxyProtocol: 'v1' });
    const client = await greeted(gw.port);
    await client.login();
    const conn = await fake.connection();
    const header = `PROXY TCP4 127.0.0.1 127.0.0.1 ${client.socket.localPort} ${gw.port}\r\n`;
    expect(conn.received().toString('latin1')).toBe(`${header}USER anonymous\r\nPASS test@example.org\r\n`);
  });

  it('v2 behind a v1 balancer: names the carried client and the address it reached, byte-exact', async () => {
    const { gw, fake } = await start(
      { proxyProtocol: 'v2' },
      { listen: { host: '127.0.0.1', port: 0, proxyProtocol: 'v1', trustedProxies: ['127.0.0.1'] } },
    );
    await greeted(gw.port, Buffer.from('PROXY TCP4 203.0.113.7 198.51.100.1 40000 21\r\n'));
    const conn = await fake.connection();
    await conn.waitForBytes(28);
    // 0x21 PROXY v2, 0x11 TCP over IPv4, 12 bytes: 203.0.113.7, 198.51.100.1, 40000, 21.
    const expected = Buffer.concat([V2_SIGNATURE, Buffer.from('2111000ccb007107c63364019c400015', 'hex')]);
    expect(conn.received().subarray(0, 28).toString('hex')).toBe(expected.toString('hex'));
  });

  it('off: nothing but FTP reaches the upstream', async () => {
    const { gw, fake } = await start({});
    const client = await greeted(gw.port);
    await client.login();
    expect((await fake.connection()).received().toString('latin1')).toBe('USER anonymous\r\nPASS test@example.org\r\n');
  });
});

describe('upstream data connections begin with the header when proxyProtocolData is on', () => {
  it.each([
    ['on', true, 0],
    ['off', false, 0],
  ])('%s: an upload reaches the upstream with or without the header naming the client data socket', async (_name, data, workers) => {
    const { gw, fake } = await start({ proxyProtocol: 'v1', proxyProtocolData: data }, {}, { dataPlane: { workers } });
    const client = await greeted(gw.port);
    await client.login();
    const port = parse227((await client.command('PASV')).text).port;
    await client.write('STOR up.bin\r\n');
    const socket = net.connect({ host: '127.0.0.1', port });
    clients.push(socket);
    await once(socket, 'connect');
    expect((await client.reply()).code).toBe(150);
    const payload = Buffer.from('upload through the gateway\n'.repeat(100));
    socket.end(payload);
    const arrived = await fake.uploaded('up.bin');
    const header = data ? `PROXY TCP4 127.0.0.1 127.0.0.1 ${socket.localPort} ${port}\r\n` : '';
    expect(arrived.toString('latin1')).toBe(header + payload.toString('latin1'));
    await vi.waitFor(async () => expect((await client.reply()).code).toBe(226));
  });
});

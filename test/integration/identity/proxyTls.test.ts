/**
 * Implicit FTPS behind a PROXY-speaking balancer: the client's TLS
 * ClientHello may arrive in the same segment as the header, and must not be
 * lost when the session puts TLS over the connection.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { formatProxyHeader } from '../../../src/common/proxyProtocol.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { startFakeFtp, type FakeFtp } from '../../support/hostileUpstream.js';
import { portRanges } from '../../support/ports.js';
import { tlsSection, useTestCerts } from '../../support/certs.js';

const [passivePorts, activePorts] = portRanges(2, 4) as [{ min: number; max: number }, { min: number; max: number }];
const certs = useTestCerts();
const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

describe('implicit FTPS behind a balancer', () => {
  it.each([
    ['the ClientHello in the same segment as the header', true],
    ['the ClientHello after the header', false],
  ])('%s: the handshake completes and the client is greeted', async (_name, together) => {
    const fake: FakeFtp = await startFakeFtp();
    closers.push(() => fake.close());
    const gw: TestGateway = await startGateway({
      upstream: { host: fake.host, port: fake.port },
      passivePorts,
      activePorts,
      listen: { host: '127.0.0.1', port: 0, proxyProtocol: 'v2', trustedProxies: ['127.0.0.1/32'] },
      tls: tlsSection(certs(), { implicit: true }),
    });
    closers.push(() => gw.close());
    const raw = net.connect({ host: '127.0.0.1', port: gw.port });
    closers.push(() => void raw.destroy());
    await once(raw, 'connect');
    const header = formatProxyHeader({ version: 2, command: 'proxy', addresses: { family: 4, source: { address: '127.0.0.3', port: 40000 }, destination: { address: '127.0.0.1', port: 990 } }, tlvs: [] });
    if (together) raw.cork();
    raw.write(header);
    const secure = tls.connect({ socket: raw, ca: readFileSync(certs().caFile), host: '127.0.0.1' });
    if (together) process.nextTick(() => raw.uncork());
    else await new Promise((r) => setTimeout(r, 50));
    const greeting = await new Promise<string>((resolve, reject) => {
      secure.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1')));
      secure.once('error', reject);
      setTimeout(() => reject(new Error('no greeting over TLS within 5 s')), 5_000);
    });
    expect(greeting).toMatch(/^220 /);
    secure.destroy();
  });
});

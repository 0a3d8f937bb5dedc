/**
 * Two instances behind one address (`instance: { index, count }`): each
 * hands out passive ports only from its own slice, so a balancer can steer
 * a data connection to the instance that answered the PASV; the generated
 * balancer ruleset is accepted by nft (check mode, as root).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { passiveSlice } from '../../../src/config/instance.js';
import { parseConfig } from '../../../src/config/load.js';
import { balancerRules } from '../../../src/deploy/balancer.js';
import { ControlClient } from '../../support/control.js';
import { SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { startFakeFtp, type FakeFtp } from '../../support/hostileUpstream.js';
import { findOnPath } from '../../support/onPath.js';
import { portRanges } from '../../support/ports.js';
import { parse227, parse229 } from '../../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 12) as [{ min: number; max: number }, { min: number; max: number }];
const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

describe('each instance serves only its slice of the passive range', () => {
  it('two instances: disjoint slices that together make the range; PASV and EPSV stay inside', async () => {
    const fake: FakeFtp = await startFakeFtp();
    stops.push(() => fake.close());
    const gateways: TestGateway[] = [];
    for (const index of [0, 1]) {
      const gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, passivePorts, activePorts }, { instance: { index, count: 2 } });
      stops.push(() => gw.close());
      gateways.push(gw);
    }
    const slices = [0, 1].map((index) => passiveSlice(passivePorts, { index, count: 2 }));
    expect((slices[0]?.max ?? 0) + 1).toBe(slices[1]?.min);
    for (const [index, gw] of gateways.entries()) {
      const slice = slices[index] ?? { min: 0, max: 0 };
      expect(gw.gateway.stats().sites[SITE]?.passiveFree).toBe(slice.max - slice.min + 1);
      const client = await ControlClient.greeted(gw.port);
      stops.push(async () => client.destroy());
      await client.login();
      for (let i = 0; i < 12; i++) {
        const port = i % 2 === 0 ? parse227((await client.command('PASV')).text).port : parse229((await client.command('EPSV')).text);
        expect(port).toBeGreaterThanOrEqual(slice.min);
        expect(port).toBeLessThanOrEqual(slice.max);
      }
    }
  });
});

const nft = findOnPath('nft');
const missing = nft === undefined ? 'nft is not installed (apt-get install nftables)' : process.getuid?.() !== 0 ? 'nft -c needs root' : undefined;
const inCi = process.env.CI === 'true' || process.env.CI === '1';
if (missing !== undefined && !inCi) console.warn(`instances.test.ts: skipping the nft check: ${missing}`);

describe.skipIf(missing !== undefined && !inCi)('the generated balancer ruleset', () => {
  it.each([
    ['IPv4', ['192.0.2.21', '192.0.2.22', '192.0.2.23'], '203.0.113.1'],
    ['IPv6', ['2001:db8:2::21', '2001:db8:2::22'], '2001:db8::1'],
  ])('nft -c accepts it (%s)', async (_family, instances, vip) => {
    const config = parseConfig({
      instance: { index: 0, count: instances.length },
      sites: [{ name: 'main', listen: { host: '0.0.0.0', port: 21 }, upstream: { host: '192.0.2.10', port: 21 }, externalAddress: vip }],
    });
    const dir = mkdtempSync(join(tmpdir(), 'ftp-alg-balancer-'));
    stops.push(async () => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'balancer.nft');
    writeFileSync(file, balancerRules(config, { instances }));
    const result = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(nft ?? 'nft', ['-c', '-f', file], (err, _out, stderr) => resolve({ code: err === null ? 0 : 1, stderr })),
    );
    expect(result.code, result.stderr).toBe(0);
  });
});

// Issue 9 over IPv6: a reverse site on the kernel data plane with an IPv6
// client and an IPv6 upstream (same family, so the kernel carries every
// pinhole: the pin6/arm6/snat6/orig6/reply6 sets).
//
//   client ns 2001:db8:1::10 ── edge ns [2001:db8:1::1]:21 (ftp-alg, forwarding on;
//   the client has no route inside) 2001:db8:2::1 ── server ns: vsftpd on [2001:db8:2::10]:21
//
// Real clients (curl, lftp, ftplib) in EPSV and EPRT get, put and list
// byte-exact; each transfer is logged as carried by the kernel with byte
// counts from the v6 counter sets, an EPSV pinhole is seen as a pin6 element
// keyed by the client's address, and it admits one connection only. After
// every test the gateway's table holds no element and every pool is full.
import { dirname, join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectKernelSettled, fullPools, kernelTable } from './lib/kernelPlane.js';
import { describeResult, runClient, sha256File, unsupported, usedMode, type ClientKind, type ClientResult, type Mode } from './lib/clients.js';
import { FILES, expectedSha, remotePath, uploadPath } from './lib/fixtures.js';
import { jsonLines, startGateway, type GatewayConfig, type RunningGateway } from './lib/gateway.js';
import { suitePrereq } from './lib/prereq.js';
import { startServer, type RunningServer } from './lib/servers.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR, enableForwarding, type Topology } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 30_000;
const PROBE = join(dirname(fileURLToPath(import.meta.url)), 'lib', 'ftpProbe.mjs');
const PASSIVE = { min: 50000, max: 50099 };
const ACTIVE = { min: 50100, max: 50199 };
const SETTLE_MS = 5_000;
const TABLE = ['inet', 'ftp_alg_dp'];

const prereq = suitePrereq('kernel-ipv6.e2e', { gateway: true, tools: ['nft', 'conntrack'] });

function config(): GatewayConfig {
  return {
    log: { level: 'debug' },
    dataPlane: { kind: 'nftables' },
    metrics: { listen: '127.0.0.1:0' },
    sites: [
      {
        name: 'v6',
        listen: { host: ADDR.edge6, port: 21 },
        upstream: { host: ADDR.server6, port: 21 },
        externalAddress: ADDR.edge6,
        passivePorts: { ...PASSIVE },
        activePorts: { ...ACTIVE },
      },
    ],
  };
}

const CASES: [ClientKind, Mode][] = [];
for (const client of ['curl', 'lftp', 'ftplib'] as const) {
  for (const mode of ['epsv', 'eprt'] as const) if (unsupported(client, mode, 6) === undefined) CASES.push([client, mode]);
}

describe.skipIf(prereq.skip)('kernel data plane over IPv6 (issue 9): IPv6 client, IPv6 upstream', () => {
  const suite = useE2eSuite({ prereq, workPrefix: 'ftpalg-e2e-kernel6-', hookTimeoutMs: HOOK_TIMEOUT_MS });
  const t = (): Topology => suite.t();
  let server: RunningServer | undefined;
  let gateway: RunningGateway | undefined;
  /** Gateway output already looked at by earlier tests. */
  let seen = 0;

  beforeAll(async () => {
    await enableForwarding(t());
    const root = suite.root;
    if (root === undefined) throw new Error('no root');
    server = await startServer('vsftpd', t(), root.dir, { host: ADDR.server6 });
    await writeFile(join(suite.work, 'up.bin'), FILES['1k.bin']);
    gateway = await startGateway(t(), config());
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await gateway?.stop();
    await server?.stop();
  }, HOOK_TIMEOUT_MS);

  afterEach(async () => {
    await expectSettled();
    seen = gateway?.output().length ?? 0;
  }, HOOK_TIMEOUT_MS);

  const target = () => ({ host: ADDR.edge6, port: 21, user: server?.user ?? '', password: server?.password ?? '' });
  const why = (r: ClientResult) => `${describeResult(r)}\n${suite.gatewayLog(40)}`;
  /** The gateway's lines of this test only. */
  const lines = (msg: string) => jsonLines(gateway?.output().slice(seen) ?? '').filter((l) => l.msg === msg);

  const FULL = fullPools({ v6: { passive: PASSIVE, active: ACTIVE } });

  /** No element left in the gateway's table (whose IPv6 sets are there) and both pools full, within a bound. */
  async function expectSettled(): Promise<void> {
    await expectKernelSettled(t(), gateway?.metricsAddress() ?? '', FULL);
    expect(await kernelTable(t())).toContain('set arm6');
  }

  /** The transfers of this test, every one carried by the kernel with its bytes counted. */
  async function kernelTransfers(count: number): Promise<Record<string, unknown>[]> {
    const deadline = Date.now() + SETTLE_MS;
    while (lines('transfer done').length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(lines('pinhole relayed')).toEqual([]);
    const done = lines('transfer done');
    expect(done.map((l) => l.plane)).toEqual(Array<string>(count).fill('nftables'));
    return done;
  }

  it.each(CASES)('%s, %s: get 8 MiB byte-exact, counted by the v6 sets', async (client, mode) => {
    const local = join(suite.work, `${client}-${mode}.bin`);
    const r = await runClient(t().ns.client, { client, mode, op: 'get', target: target(), remote: remotePath('8m.bin'), local });
    expect(r.code, why(r)).toBe(0);
    expect(usedMode(r), why(r)).toBe(true);
    expect(await sha256File(local)).toBe(expectedSha('8m.bin'));
    const [done] = await kernelTransfers(1);
    // The payload estimated from the orig6/reply6 counters (IPv6 and TCP headers taken off): at least the
    // file less 1 %, and at most 10 % more (segments the sender retransmits on a loaded machine count again).
    const size = FILES['8m.bin'].length;
    expect(Number(done?.downBytes), JSON.stringify(done)).toBeGreaterThan(size * 0.99);
    expect(Number(done?.downBytes), JSON.stringify(done)).toBeLessThan(size * 1.1);
    const open = lines('pinhole open').at(-1);
    expect(open?.peer).toBe(mode === 'epsv' ? ADDR.client6 : ADDR.server6);
  }, TEST_TIMEOUT_MS);

  it.each(CASES.filter(([client]) => client === 'curl'))('%s, %s: put and list byte-exact', async (client, mode) => {
    const name = `v6-${mode}.bin`;
    const put = await runClient(t().ns.client, { client, mode, op: 'put', target: target(), remote: uploadPath(name), local: join(suite.work, 'up.bin') });
    expect(put.code, why(put)).toBe(0);
    expect(await sha256File(suite.root?.uploaded(name) ?? '')).toBe(expectedSha('1k.bin'));
    const list = await runClient(t().ns.client, { client, mode, op: 'list', target: target(), remote: '/pub/' });
    expect(list.code, why(list)).toBe(0);
    for (const file of Object.keys(FILES)) expect(list.listing.join('\n')).toContain(file);
    const [up, listing] = await kernelTransfers(2);
    expect(up).toMatchObject({ flow: 'upload' });
    expect(Math.abs(Number(up?.upBytes) - 1024)).toBeLessThan(256);
    expect(Number(listing?.downBytes)).toBeGreaterThan(0);
  }, TEST_TIMEOUT_MS);

  it('an EPSV pinhole is a pin6 element keyed by the client, and admits one connection only', async () => {
    const steps = [
      { op: 'control', host: ADDR.edge6, port: 21 },
      { op: 'send', line: `USER ${server?.user ?? ''}` },
      { op: 'send', line: `PASS ${server?.password ?? ''}` },
      { op: 'send', line: 'TYPE I' },
      { op: 'send', line: 'EPSV' },
      { op: 'sleep', ms: 1_000 },
      { op: 'dial', host: ADDR.edge6, port: 'last', slot: 'first' },
      { op: 'dial', host: ADDR.edge6, port: 'last', slot: 'second' },
      { op: 'send', line: 'RETR /pub/8m.bin' },
      { op: 'read', slot: 'first' },
    ];
    const probe = t().exec('client', process.execPath, [PROBE, JSON.stringify(steps)], { timeoutMs: 25_000 });
    // While the probe sleeps after EPSV, the element waits for the client's SYN.
    let pin6 = '';
    const deadline = Date.now() + SETTLE_MS;
    while (!pin6.includes(ADDR.client6) && Date.now() < deadline) {
      pin6 = (await t().exec('edge', 'nft', ['list', 'map', ...TABLE, 'pin6'])).stdout;
    }
    const r = await probe;
    expect(r.code, r.stderr).toBe(0);
    const results = JSON.parse(r.stdout.trim().split('\n').pop() ?? '[]') as unknown[];
    expect(results[4]).toMatch(/^229 .*\(\|\|\|5\d{4}\|\)/);
    const port = /\|\|\|(\d+)\|/.exec(String(results[4]))?.[1];
    expect(pin6).toContain(`${ADDR.client6} . ${ADDR.edge6} . ${port ?? '?'}`);
    expect(pin6).toContain(`${ADDR.server6} . `);
    expect(results.slice(6, 8)).toEqual(['connected', 'refused']);
    expect(results[9]).toMatchObject({ bytes: FILES['8m.bin'].length, sha256: expectedSha('8m.bin') });
    await kernelTransfers(1);
    expect(lines('pinhole second connection refused').length).toBe(1);
  }, TEST_TIMEOUT_MS);
});

// Issue 9: the kernel data plane with relay workers (`dataPlane: { kind: nftables, workers: 1 }`), in the
// client / edge / server namespaces with forwarding on in the edge. Pinholes the kernel can forward are
// nftables elements (byte-exact, no byte through the process); those it cannot (an IPv6 client in front of an
// IPv4 upstream, mode conversion either way) fall back to the relay, which here is the worker thread: their
// bytes must arrive byte-exact too, their `transfer done` line comes from the worker, and their ports come
// from the worker's shard and go back to it. After every test the gateway's table holds no element and every
// pool of every site is full.
//
// The upstream is scripted (lib/scriptedUpstream.mjs: every passive data connection gets the whole payload,
// RETR after PORT sends it to the PORT target); steps run inside the client namespace with lib/ftpProbe.mjs.
import { createHash } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { expectKernelSettled, fullPools, metricValue as metric, scrapeMetrics } from './lib/kernelPlane.js';
import { jsonLines, startGateway, type GatewayConfig, type RunningGateway } from './lib/gateway.js';
import { suitePrereq } from './lib/prereq.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR, enableForwarding, stopChild, type Role, type Topology } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 30_000;
const LIB = join(dirname(fileURLToPath(import.meta.url)), 'lib');
const PROBE = join(LIB, 'ftpProbe.mjs');
const UPSTREAM = join(LIB, 'scriptedUpstream.mjs');
const PAYLOAD_BYTES = 4 << 20;
const SETTLE_MS = 5_000;

type SiteName = 'kernel' | 'v6' | 'to-active' | 'to-passive';
/** One site per path, each with ranges of its own: where its control port listens and how it reaches the upstream. */
const SITES: Record<SiteName, { host: string; port: number; mode: 'client' | 'passive' | 'active'; base: number }> = {
  kernel: { host: ADDR.edgePublic, port: 21, mode: 'client', base: 50000 },
  v6: { host: ADDR.edge6, port: 21, mode: 'client', base: 50200 },
  'to-active': { host: ADDR.edgePublic, port: 2121, mode: 'active', base: 50400 },
  'to-passive': { host: ADDR.edgePublic, port: 2122, mode: 'passive', base: 50600 },
};
const RANGE_SIZE = 100;
/** A site's two pinhole ranges, from its base port. */
const rangesOf = (base: number) => ({
  passive: { min: base, max: base + RANGE_SIZE - 1 },
  active: { min: base + RANGE_SIZE, max: base + 2 * RANGE_SIZE - 1 },
});

const prereq = suitePrereq('kernel-workers.e2e', { gateway: true, servers: false, clients: false, tools: ['nft', 'conntrack', 'curl'] });

function payloadSha(): string {
  const payload = Buffer.alloc(PAYLOAD_BYTES);
  for (let i = 0; i < PAYLOAD_BYTES; i++) payload[i] = (i * 31 + 7) & 0xff;
  return createHash('sha256').update(payload).digest('hex');
}

function config(): GatewayConfig {
  return {
    log: { level: 'info' },
    dataPlane: { kind: 'nftables', workers: 1 },
    metrics: { listen: '127.0.0.1:0' },
    sites: Object.entries(SITES).map(([name, s]) => ({
      name,
      listen: { host: s.host, port: s.port },
      upstream: { host: ADDR.server, port: 21 },
      externalAddress: [ADDR.edgePublic, ADDR.edge6],
      privateAddress: ADDR.edgePrivate,
      passivePorts: rangesOf(s.base).passive,
      activePorts: rangesOf(s.base).active,
      upstreamDataMode: s.mode,
    })),
  };
}

type Step =
  | { op: 'control'; host: string; port: number }
  | { op: 'send'; line: string }
  | { op: 'dial'; host: string; port: 'last' }
  | { op: 'read'; slot?: string }
  | { op: 'listen'; host: string }
  | { op: 'sleep'; ms: number };

type StepResult = string | number | { bytes: number; sha256: string; peer?: string };

const login = (site: SiteName): Step[] => [
  { op: 'control', host: SITES[site].host, port: SITES[site].port },
  { op: 'send', line: 'USER e2e' },
  { op: 'send', line: 'PASS e2e' },
];

describe.skipIf(prereq.skip)('kernel data plane with relay workers (issue 9)', () => {
  const env = useE2eSuite({ prereq, workPrefix: 'ftpalg-e2e-kernel-workers-', hookTimeoutMs: HOOK_TIMEOUT_MS });
  let upstream: ChildProcess | undefined;
  let upstreamOutput = '';
  let gateway: RunningGateway | undefined;
  /** How many `transfer done` lines the gateway had printed when the test began. */
  let transfersBefore = 0;
  const topo = (): Topology => env.t();

  async function probe(role: Role, steps: Step[]): Promise<StepResult[]> {
    const r = await topo().exec(role, process.execPath, [PROBE, JSON.stringify(steps)], { timeoutMs: 25_000 });
    if (r.code !== 0) throw new Error(`probe failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '[]') as StepResult[];
  }

  const metrics = () => scrapeMetrics(topo(), String(gateway?.metricsAddress()));
  const FULL_POOLS = fullPools(Object.fromEntries(Object.entries(SITES).map(([name, s]) => [name, rangesOf(s.base)])));
  /** No element left in the table and every port of every site back in its pool, within a bound. */
  const expectSettled = () => expectKernelSettled(topo(), String(gateway?.metricsAddress()), FULL_POOLS);

  function transfersSinceTestBegan(): Record<string, unknown>[] {
    return jsonLines(gateway?.output() ?? '')
      .filter((l) => l.msg === 'transfer done')
      .slice(transfersBefore);
  }

  async function waitFor<T>(what: string, get: () => T | undefined | Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + SETTLE_MS;
    for (;;) {
      const v = await get();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`no ${what} within ${SETTLE_MS} ms\n${env.gatewayLog(40)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The one `transfer done` line of this test's transfer. */
  const transferDone = () => waitFor('transfer done', () => transfersSinceTestBegan()[0]);

  /** The relay fallback's reason for this site, counted once, and the pinhole logged as relayed. */
  async function expectRelayed(site: SiteName, reason: string): Promise<void> {
    const relayed = jsonLines(gateway?.output() ?? '').filter((l) => l.msg === 'pinhole relayed' && l.site === site);
    expect(relayed).toEqual([expect.objectContaining({ reason })]);
    expect(metric(await metrics(), 'ftp_alg_pinholes_by_plane_total', `site="${site}",plane="relay",reason="${reason}"`)).toBe(1);
  }

  beforeAll(async () => {
    await enableForwarding(topo());
    upstream = topo().spawn('server', process.execPath, [UPSTREAM, ADDR.server, String(PAYLOAD_BYTES)]);
    upstream.stdout?.setEncoding('utf8').on('data', (s: string) => {
      upstreamOutput += s;
    });
    await waitFor('upstream ready', () => (upstreamOutput.includes('ready') ? true : undefined));
    gateway = await startGateway(topo(), config());
    const plane = jsonLines(gateway.output()).find((l) => l.msg === 'data plane');
    expect(plane).toMatchObject({ dataPlane: 'nftables' });
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await gateway?.stop();
    expect(gateway?.exit()).toEqual({ code: 0, signal: null });
    expect((await topo().exec('edge', 'nft', ['list', 'tables'])).stdout).not.toContain('ftp_alg_dp');
    if (upstream !== undefined) await stopChild(upstream);
  }, HOOK_TIMEOUT_MS);

  beforeEach(() => {
    transfersBefore = jsonLines(gateway?.output() ?? '').filter((l) => l.msg === 'transfer done').length;
  });

  afterEach(async () => {
    await expectSettled();
  }, HOOK_TIMEOUT_MS);

  it('passive over IPv4: the kernel forwards the pinhole byte-exact, nothing is relayed', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await probe('client', [...login('kernel'), { op: 'send', line: 'PASV' }, { op: 'dial', host: ADDR.edgePublic, port: 'last' }, { op: 'read' }]);
    expect(r[3]).toMatch(/^227 .*\(203,0,113,1,/);
    expect(r[4]).toBe('connected');
    expect(r[5]).toMatchObject({ bytes: PAYLOAD_BYTES, sha256: payloadSha() });
    expect(await transferDone()).toMatchObject({ plane: 'nftables', reason: 'done', flow: 'download' });
    expect(jsonLines(gateway?.output() ?? '').filter((l) => l.msg === 'pinhole relayed')).toEqual([]);
  });

  it('active over IPv4: the upstream connects to a kernel pinhole, the client gets the bytes from the external address', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await probe('client', [
      ...login('kernel'),
      { op: 'listen', host: ADDR.client },
      { op: 'send', line: 'PORT {listen}' },
      { op: 'send', line: 'RETR f' },
      { op: 'read', slot: 'listen' },
    ]);
    expect(r[4]).toMatch(/^200 /);
    expect(r[5]).toMatch(/^150 /);
    expect(r[6]).toMatchObject({ bytes: PAYLOAD_BYTES, sha256: payloadSha(), peer: ADDR.edgePublic });
    expect(await transferDone()).toMatchObject({ plane: 'nftables' });
  });

  it('IPv6 client, IPv4 upstream: EPSV is relayed by the worker, byte-exact, logged as relayed', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await probe('client', [...login('v6'), { op: 'send', line: 'EPSV' }, { op: 'dial', host: ADDR.edge6, port: 'last' }, { op: 'read' }]);
    expect(r[3]).toMatch(/^229 /);
    expect(r[4]).toBe('connected');
    expect(r[5]).toMatchObject({ bytes: PAYLOAD_BYTES, sha256: payloadSha() });
    const done = await transferDone();
    expect(done).toMatchObject({ site: 'v6', worker: 0, downBytes: PAYLOAD_BYTES, reason: 'done' });
    expect(done.plane).toBeUndefined();
    await expectRelayed('v6', 'family');
  });

  it('mode conversion to active upstream: both legs listen in the worker, byte-exact', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await probe('client', [
      ...login('to-active'),
      { op: 'send', line: 'PASV' },
      { op: 'dial', host: ADDR.edgePublic, port: 'last' },
      { op: 'send', line: 'RETR f' },
      { op: 'read' },
    ]);
    expect(r[3]).toMatch(/^227 .*\(203,0,113,1,/);
    expect(r[4]).toBe('connected');
    expect(r[5]).toMatch(/^150 /);
    expect(r[6]).toMatchObject({ bytes: PAYLOAD_BYTES, sha256: payloadSha() });
    expect(upstreamOutput).toMatch(/port 192\.0\.2\.1:505\d\d/); // the site's active range: a port of the worker's shard
    expect(await transferDone()).toMatchObject({ site: 'to-active', worker: 0, downBytes: PAYLOAD_BYTES });
    await expectRelayed('to-active', 'mode-conversion');
  });

  it('mode conversion to passive upstream: the worker connects both legs, byte-exact', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await probe('client', [
      ...login('to-passive'),
      { op: 'listen', host: ADDR.client },
      { op: 'send', line: 'PORT {listen}' },
      { op: 'read', slot: 'listen' },
    ]);
    expect(r[4]).toMatch(/^200 /);
    expect(r[5]).toMatchObject({ bytes: PAYLOAD_BYTES, sha256: payloadSha(), peer: ADDR.edgePublic });
    expect(await transferDone()).toMatchObject({ site: 'to-passive', worker: 0, downBytes: PAYLOAD_BYTES });
    await expectRelayed('to-passive', 'mode-conversion');
  });

  it('kernel and worker pinholes at once, from the same pools, each byte-exact', { timeout: TEST_TIMEOUT_MS }, async () => {
    const kernel = probe('client', [...login('kernel'), { op: 'send', line: 'PASV' }, { op: 'dial', host: ADDR.edgePublic, port: 'last' }, { op: 'read' }]);
    const relayed = probe('client', [...login('v6'), { op: 'send', line: 'EPSV' }, { op: 'dial', host: ADDR.edge6, port: 'last' }, { op: 'read' }]);
    for (const r of await Promise.all([kernel, relayed])) expect(r[5]).toMatchObject({ bytes: PAYLOAD_BYTES, sha256: payloadSha() });
    await waitFor('two transfers', () => (transfersSinceTestBegan().length === 2 ? true : undefined));
    const planes = transfersSinceTestBegan().map((l) => (l.worker === 0 ? 'worker' : l.plane));
    expect(planes.sort()).toEqual(['nftables', 'worker']);
  });
});

// Issue 9: the pinhole guarantees on the kernel data plane (nftables), in the
// client / edge / server namespaces with forwarding on in the edge.
//
// The upstream is scripted (lib/scriptedUpstream.mjs): its passive data
// listener accepts every connection and sends each one the whole payload, so
// a connection that fails was refused by the gateway's table, not by the
// server. Steps run from inside the client or server namespace with
// lib/ftpProbe.mjs. After every test the gateway's table holds no element and
// every pool is full again.
import { createHash } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { flowEnded, parseFlowEvent } from '../../src/data/nftables/flowEvents.js';
import { hasElements } from '../support/nftListing.js';
import { expectKernelSettled, fullPools, kernelTable, metricValue as metric, scrapeMetrics } from './lib/kernelPlane.js';
import { jsonLines, startGateway, type GatewayConfig, type RunningGateway } from './lib/gateway.js';
import { GATEWAY_CLI, suitePrereq } from './lib/prereq.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR, enableForwarding, stopChild, type Role, type Topology } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 30_000;
const LIB = join(dirname(fileURLToPath(import.meta.url)), 'lib');
const PROBE = join(LIB, 'ftpProbe.mjs');
const UPSTREAM = join(LIB, 'scriptedUpstream.mjs');
const PAYLOAD_BYTES = 1 << 20;
const ACCEPT_MS = 1_500;
const IDLE_MS = 2_000;
const PASSIVE = { min: 50000, max: 50099 };
const ACTIVE = { min: 50100, max: 50199 };
/** A second address in the client and in the server namespace: the wrong peers. */
const OTHER_CLIENT = '203.0.113.11';
const OTHER_SERVER = '192.0.2.11';
const SETTLE_MS = 5_000;

const prereq = suitePrereq('kernel.e2e', { gateway: true, servers: false, clients: false, tools: ['nft', 'conntrack', 'curl'] });

function payloadSha(): string {
  const payload = Buffer.alloc(PAYLOAD_BYTES);
  for (let i = 0; i < PAYLOAD_BYTES; i++) payload[i] = (i * 31 + 7) & 0xff;
  return createHash('sha256').update(payload).digest('hex');
}

function kernelConfig(acceptMs = ACCEPT_MS, kind: 'nftables' | 'auto' = 'nftables'): GatewayConfig {
  return {
    log: { level: 'debug' },
    dataPlane: { kind },
    metrics: { listen: '127.0.0.1:0' },
    sites: [
      {
        name: 'kernel',
        listen: { host: ADDR.edgePublic, port: 21 },
        upstream: { host: ADDR.server, port: 21 },
        externalAddress: ADDR.edgePublic,
        passivePorts: { ...PASSIVE },
        activePorts: { ...ACTIVE },
        timeouts: { pinholeAcceptMs: acceptMs, dataIdleMs: IDLE_MS },
        limits: { maxPinholesPerSession: 4 },
      },
    ],
  };
}

type Step =
  | { op: 'control' }
  | { op: 'send'; line: string }
  | { op: 'dial'; host?: string; port: number | 'last' | 'last-1'; from?: string; slot?: string; hold?: boolean }
  | { op: 'read'; slot?: string }
  | { op: 'listen'; host: string }
  | { op: 'sleep'; ms: number };

/**
 * Payload estimated from the elements' IP byte counters (headers taken off): at least 99 % of what was
 * sent; retransmitted segments, which a loaded machine makes, count twice, hence up to 10 % more.
 */
function expectEstimatedBytes(bytes: number): void {
  expect(bytes).toBeGreaterThan(PAYLOAD_BYTES * 0.99);
  expect(bytes).toBeLessThan(PAYLOAD_BYTES * 1.1);
}

type StepResult = string | number | { bytes: number; sha256: string; peer?: string };

const LOGIN: Step[] = [{ op: 'control' }, { op: 'send', line: 'USER e2e' }, { op: 'send', line: 'PASS e2e' }];

describe.skipIf(prereq.skip)('kernel data plane: pinhole guarantees in nftables (issue 9)', () => {
  const env = useE2eSuite({ prereq, workPrefix: 'ftpalg-e2e-kernel-', hookTimeoutMs: HOOK_TIMEOUT_MS });
  let upstream: ChildProcess | undefined;
  let upstreamOutput = '';
  let gateway: RunningGateway | undefined;
  const topo = (): Topology => env.t();

  async function probe(role: Role, steps: Step[]): Promise<StepResult[]> {
    const filled = steps.map((s) => (s.op === 'control' ? { ...s, host: ADDR.edgePublic, port: 21 } : s.op === 'dial' ? { host: ADDR.edgePublic, ...s } : s));
    const r = await topo().exec(role, process.execPath, [PROBE, JSON.stringify(filled)], { timeoutMs: 25_000 });
    if (r.code !== 0) throw new Error(`probe failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '[]') as StepResult[];
  }

  async function edge(cmd: string, args: string[]): Promise<string> {
    const r = await topo().exec('edge', cmd, args, { timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  const tableListing = () => kernelTable(topo());
  const metrics = (gw: RunningGateway) => scrapeMetrics(topo(), gw.metricsAddress() ?? '');
  const FULL_POOLS = fullPools({ kernel: { passive: PASSIVE, active: ACTIVE } });
  /** No element left in the table and every port back in its pool, within a bound. */
  const expectSettled = (gw: RunningGateway) => expectKernelSettled(topo(), gw.metricsAddress() ?? '', FULL_POOLS);

  /** The names of the gateway's child processes (its helpers: conntrack, and nft when it drives nft -i). */
  async function childCommands(gw: RunningGateway): Promise<string[]> {
    const r = await topo().exec('edge', 'ps', ['--ppid', String(gw.pid), '-o', 'comm=']);
    return r.stdout.split('\n').map((c) => c.trim()).filter((c) => c !== '');
  }

  async function childPids(gw: RunningGateway, comm: string): Promise<number[]> {
    const r = await topo().exec('edge', 'ps', ['--ppid', String(gw.pid), '-o', 'pid=,comm=']);
    return r.stdout.split('\n').flatMap((l) => {
      const [pid, name] = l.trim().split(/\s+/);
      return name === comm ? [Number(pid)] : [];
    });
  }

  function gatewayLines(msg: string): Record<string, unknown>[] {
    return jsonLines(gateway?.output() ?? '').filter((l) => l.msg === msg);
  }

  async function waitFor<T>(what: string, get: () => T | undefined | Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + SETTLE_MS;
    for (;;) {
      const v = await get();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`no ${what} within ${SETTLE_MS} ms\n${env.gatewayLog(30)}${gateway?.output().split('\n').slice(-30).join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  beforeAll(async () => {
    await enableForwarding(topo());
    await edge('ip', ['addr', 'show']); // the edge exists
    for (const [role, addr, dev] of [['client', OTHER_CLIENT, 'to-edge'], ['server', OTHER_SERVER, 'to-edge']] as const) {
      const r = await topo().exec(role, 'ip', ['addr', 'add', `${addr}/24`, 'dev', dev]);
      if (r.code !== 0) throw new Error(r.stderr);
    }
    upstream = topo().spawn('server', process.execPath, [UPSTREAM, ADDR.server, String(PAYLOAD_BYTES)]);
    upstream.stdout?.setEncoding('utf8').on('data', (s: string) => {
      upstreamOutput += s;
    });
    await waitFor('upstream ready', () => (upstreamOutput.includes('ready') ? true : undefined));
    gateway = await startGateway(topo(), kernelConfig());
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await gateway?.stop();
    if (upstream !== undefined) await stopChild(upstream);
  }, HOOK_TIMEOUT_MS);

  describe('one gateway', () => {
    afterEach(async () => {
      if (gateway !== undefined) await expectSettled(gateway);
    }, HOOK_TIMEOUT_MS);

    it('passive: the kernel forwards the expected peer byte-exact, from the private address, and logs the bytes', { timeout: TEST_TIMEOUT_MS }, async () => {
      const before = upstreamOutput.length;
      const r = await probe('client', [...LOGIN, { op: 'send', line: 'PASV' }, { op: 'dial', port: 'last' }, { op: 'read' }]);
      expect(r[3]).toMatch(/^227 .*\(203,0,113,1,/);
      expect(r[4]).toBe('connected');
      expect(r[5]).toMatchObject({ bytes: PAYLOAD_BYTES, sha256: payloadSha() });
      expect(upstreamOutput.slice(before)).toContain(`data from ${ADDR.edgePrivate}`);
      const done = await waitFor('transfer done', () => gatewayLines('transfer done').find((l) => l.plane === 'nftables'));
      expect(done).toMatchObject({ reason: 'done', flow: 'download' });
      expectEstimatedBytes(Number(done.downBytes));
      expect(Number(done.upBytes)).toBeLessThan(1_024);
      expect(gatewayLines('pinhole relayed')).toEqual([]);
      // The elements went in over the gateway's own netlink socket: no nft process (conntrack -E still brings the events).
      expect(gatewayLines('nftables driver')).toEqual([expect.objectContaining({ driver: 'netlink', events: 'conntrack' })]);
      expect(await childCommands(gateway as RunningGateway)).toEqual(['conntrack']);
      const text = await metrics(gateway as RunningGateway);
      expect(metric(text, 'ftp_alg_data_plane', 'kind="nftables"')).toBe(1);
      expect(metric(text, 'ftp_alg_kernel_plane_driver', 'driver="netlink"')).toBe(1);
      expect(metric(text, 'ftp_alg_pinholes_by_plane_total', 'plane="nftables",reason="kernel"')).toBe(1);
    });

    it('passive: a wrong peer is refused by the kernel, logged and counted; the right one still connects', { timeout: TEST_TIMEOUT_MS }, async () => {
      const r = await probe('client', [
        ...LOGIN,
        { op: 'send', line: 'PASV' },
        { op: 'dial', port: 'last', from: OTHER_CLIENT },
        { op: 'dial', port: 'last' },
        { op: 'read' },
      ]);
      expect(r.slice(4)).toEqual(['refused', 'connected', expect.objectContaining({ bytes: PAYLOAD_BYTES })]);
      const warn = await waitFor('wrong peer line', () => gatewayLines('pinhole connection from wrong peer refused')[0]);
      expect(warn).toMatchObject({ peer: OTHER_CLIENT, expected: ADDR.client, plane: 'nftables' });
      expect(metric(await metrics(gateway as RunningGateway), 'ftp_alg_pinholes_wrong_peer_total', 'dir="passive"')).toBe(1);
    });

    it('one connection only: the arm is consumed by the first SYN in the packet path, a second connection is refused', { timeout: TEST_TIMEOUT_MS }, async () => {
      const r = await probe('client', [
        ...LOGIN,
        { op: 'send', line: 'PASV' },
        { op: 'dial', port: 'last', slot: 'first' },
        { op: 'dial', port: 'last', slot: 'second' },
        { op: 'read', slot: 'first' },
      ]);
      // The scripted upstream would have accepted the second one too: the refusal is the gateway's.
      expect(r.slice(4)).toEqual(['connected', 'refused', expect.objectContaining({ bytes: PAYLOAD_BYTES })]);
      await waitFor('second connection line', () => gatewayLines('pinhole second connection refused')[0]);
    });

    it('the accept deadline is the element timeout: a late peer is refused and the pinhole counted as expired', { timeout: TEST_TIMEOUT_MS }, async () => {
      const r = await probe('client', [...LOGIN, { op: 'send', line: 'PASV' }, { op: 'sleep', ms: ACCEPT_MS + 500 }, { op: 'dial', port: 'last' }]);
      expect(r[5]).toBe('refused');
      expect(metric(await metrics(gateway as RunningGateway), 'ftp_alg_pinholes_expired_total', 'dir="passive"')).toBe(1);
    });

    it('a new PASV closes the waiting pinhole, ABOR closes the current one', { timeout: TEST_TIMEOUT_MS }, async () => {
      const r = await probe('client', [
        ...LOGIN,
        { op: 'send', line: 'PASV' },
        { op: 'send', line: 'PASV' },
        { op: 'dial', port: 'last-1' },
        { op: 'dial', port: 'last' },
        { op: 'read' },
        { op: 'send', line: 'PASV' },
        { op: 'send', line: 'ABOR' },
        // ABOR is answered while the elements' removal is on its way to the kernel (well under a millisecond
        // when the machine is idle): a flow the kernel still admits in that window is cut at once (conntrack -D).
        { op: 'sleep', ms: 100 },
        { op: 'dial', port: 'last' },
      ]);
      expect(r.slice(5, 8)).toEqual(['refused', 'connected', expect.objectContaining({ bytes: PAYLOAD_BYTES })]);
      expect(r[11]).toBe('refused');
    });

    it('a flow that started before a new PASV runs on even when its conntrack events come after it (the arm was consumed)', { timeout: TEST_TIMEOUT_MS }, async () => {
      // conntrack -E held still: the gateway hears of the flow only after the second PASV has closed its pinhole.
      const [events] = await childPids(gateway as RunningGateway, 'conntrack');
      const since = gateway?.output().length ?? 0;
      const linesNow = (msg: string) => jsonLines(gateway?.output().slice(since) ?? '').filter((l) => l.msg === msg);
      process.kill(events as number, 'SIGSTOP');
      const resume = setTimeout(() => process.kill(events as number, 'SIGCONT'), 1_000);
      try {
        const r = await probe('client', [...LOGIN, { op: 'send', line: 'PASV' }, { op: 'dial', port: 'last' }, { op: 'read' }, { op: 'send', line: 'PASV' }, { op: 'sleep', ms: 1_500 }]);
        expect(r[5]).toMatchObject({ bytes: PAYLOAD_BYTES, sha256: payloadSha() });
        const done = await waitFor('transfer done', () => linesNow('transfer done')[0]);
        expect(done).toMatchObject({ plane: 'nftables', reason: 'replaced', flow: 'download' });
        expectEstimatedBytes(Number(done.downBytes));
        expect(linesNow('pinhole flow admitted as it closed: cut')).toEqual([]);
        expect(linesNow('pinhole flow had started before the close: runs on')).toHaveLength(1);
      } finally {
        clearTimeout(resume);
        process.kill(events as number, 'SIGCONT');
      }
    });

    it('a kernel flow idle for dataIdleMs is cut (its counters stood still) and its port comes back', { timeout: TEST_TIMEOUT_MS }, async () => {
      const r = await probe('client', [...LOGIN, { op: 'send', line: 'PASV' }, { op: 'dial', port: 'last', hold: true }, { op: 'sleep', ms: IDLE_MS * 2 }]);
      expect(r[4]).toBe('connected');
      const done = await waitFor('idle transfer', () => gatewayLines('transfer done').find((l) => l.reason === 'data-idle'));
      expect(done).toMatchObject({ plane: 'nftables' });
    });

    it('active: only the upstream may connect to the active pinhole; its data reaches the client from the external address', { timeout: TEST_TIMEOUT_MS }, async () => {
      const before = upstreamOutput.length;
      const setup = probe('client', [
        ...LOGIN,
        { op: 'listen', host: ADDR.client },
        { op: 'send', line: 'PORT {listen}' },
        { op: 'sleep', ms: 1_000 },
        { op: 'send', line: 'RETR f' },
        { op: 'read', slot: 'listen' },
      ]);
      const announced = await waitFor('PORT upstream', () => /port 192\.0\.2\.1:(\d+)/.exec(upstreamOutput.slice(before))?.[1]);
      const port = Number(announced);
      expect(port).toBeGreaterThanOrEqual(ACTIVE.min);
      const wrong = await probe('server', [{ op: 'dial', host: ADDR.edgePrivate, port, from: OTHER_SERVER }]);
      expect(wrong).toEqual(['refused']);
      const r = await setup;
      expect(r[4]).toMatch(/^200 /);
      expect(r[7]).toMatchObject({ bytes: PAYLOAD_BYTES, sha256: payloadSha(), peer: ADDR.edgePublic });
      const warn = await waitFor('active wrong peer', () => gatewayLines('pinhole connection from wrong peer refused').find((l) => l.peer === OTHER_SERVER));
      expect(warn).toMatchObject({ expected: ADDR.server, leg: 'upstream' });
    });
  });

  describe('failures and restarts', () => {
    it('nft refusing a pinhole answers that client 425 with a log line, and the session goes on', { timeout: TEST_TIMEOUT_MS }, async () => {
      await edge('nft', ['delete', 'table', 'inet', 'ftp_alg_dp']); // every element command now fails
      const r = await probe('client', [...LOGIN, { op: 'send', line: 'PASV' }, { op: 'send', line: 'NOOP' }]);
      expect(r[3]).toMatch(/^425 /);
      expect(r[4]).toMatch(/^200 /);
      const line = await waitFor('refusal line', () => gatewayLines('data connection refused')[0]);
      expect(line).toMatchObject({ reason: 'kernel-error' });
      // The kernel's own answer to the netlink batch, checked: no such table.
      expect(gatewayLines('pinhole open failed')).toEqual([expect.objectContaining({ err: expect.objectContaining({ message: expect.stringContaining('ENOENT') }) })]);
      expect(metric(await metrics(gateway as RunningGateway), 'ftp_alg_kernel_plane_errors_total', 'op="open"')).toBe(1);
    });

    it('without the native netlink module the plane drives a long-lived nft -i instead, says so, and forwards byte-exact', { timeout: 2 * TEST_TIMEOUT_MS }, async () => {
      await gateway?.stop();
      // The built CLI behind a loader that refuses the `netlink` package, as on a platform without its prebuild.
      const dir = await mkdtemp(join(tmpdir(), 'ftpalg-e2e-nonl-'));
      const cli = join(dir, 'cli-without-netlink.mjs');
      await writeFile(
        cli,
        [
          "import Module from 'node:module';",
          'const load = Module._load;',
          "Module._load = function (request, ...rest) { if (/^netlink(\\/|$)/.test(request)) throw new Error('netlink hidden by the test'); return load.call(this, request, ...rest); };",
          `await import(${JSON.stringify(GATEWAY_CLI)});`,
        ].join('\n'),
      );
      try {
        gateway = await startGateway(topo(), kernelConfig(), cli);
        expect(gatewayLines('nftables driver')).toEqual([expect.objectContaining({ driver: 'nft', events: 'conntrack', why: 'netlink hidden by the test' })]);
        const r = await probe('client', [...LOGIN, { op: 'send', line: 'PASV' }, { op: 'dial', port: 'last' }, { op: 'read' }]);
        expect(r[5]).toMatchObject({ bytes: PAYLOAD_BYTES, sha256: payloadSha() });
        const done = await waitFor('transfer done', () => gatewayLines('transfer done').find((l) => l.plane === 'nftables'));
        expectEstimatedBytes(Number(done.downBytes));
        expect((await childCommands(gateway)).sort()).toEqual(['conntrack', 'nft']);
        expect(metric(await metrics(gateway), 'ftp_alg_kernel_plane_driver', 'driver="nft"')).toBe(1);
        await expectSettled(gateway);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('after SIGKILL and a restart nothing stale forwards; SIGTERM removes the table', { timeout: 2 * TEST_TIMEOUT_MS }, async () => {
      await gateway?.stop();
      const LONG_ACCEPT_MS = 20_000; // the element must outlive the restart, so only the purge can remove it
      const first = await startGateway(topo(), kernelConfig(LONG_ACCEPT_MS));
      // A flow the kernel forwards (held open), then a second pinhole still waiting, when the gateway is killed.
      const session = probe('client', [
        ...LOGIN,
        { op: 'send', line: 'PASV' },
        { op: 'dial', port: 'last', hold: true },
        // Even if its NEW event reaches the gateway after this PASV, the flow had consumed the arm: it runs on.
        { op: 'send', line: 'PASV' },
        { op: 'sleep', ms: 4_000 },
      ]);
      let listing = '';
      let flowsSeen = '';
      gateway = first; // its log is the one a failure should show
      const flowPort = await waitFor('a forwarded flow and a waiting pinhole', async () => {
        // Both pinholes logged as open: the second one's 227 is on its way (its elements alone can show in the
        // table before the gateway has read the kernel's answer and replied).
        const openLogged = jsonLines(first.output()).filter((l) => l.msg === 'pinhole open').length;
        listing = await tableListing();
        const ct = (await topo().exec('edge', 'conntrack', ['-L', '-p', 'tcp'])).stdout;
        flowsSeen = ct;
        const flows = ct.split('\n').map(parseFlowEvent);
        // Held open, so not ended: flows of earlier tests linger in TIME_WAIT (harmless, and left alone by a restart).
        const forwarded = flows.find(
          (f) => f !== undefined && !flowEnded(f) && f.reply.src === ADDR.server && f.orig.dport >= PASSIVE.min && f.orig.dport <= PASSIVE.max,
        );
        return forwarded !== undefined && openLogged >= 2 ? forwarded.orig.dport : undefined;
      }).catch((err: Error) => {
        // What the kernel held at the last look: a failure must say whether the held flow ended (and how) or never showed.
        throw new Error(`${err.message}\nconntrack -L at the last look:\n${flowsSeen}\ntable:\n${listing}`);
      });
      process.kill(first.pid, 'SIGKILL');
      await waitFor('SIGKILL', () => (first.alive() ? undefined : true));
      await first.stop();
      const second = await startGateway(topo(), kernelConfig(LONG_ACCEPT_MS));
      gateway = second;
      const opened = await session;
      const portOf = (reply: unknown) => {
        const m = /\((?:\d+,){4}(\d+),(\d+)\)/.exec(String(reply));
        return Number(m?.[1]) * 256 + Number(m?.[2]);
      };
      expect(portOf(opened[3])).toBe(flowPort);
      const waiting = portOf(opened[5]);
      expect(listing).toContain(`. ${waiting} `);
      // The new gateway purged the table (the waiting pinhole no longer admits) and cut the forwarded flow.
      expect(await probe('client', [{ op: 'dial', port: waiting }])).toEqual(['refused']);
      expect(jsonLines(second.output()).find((l) => l.msg === 'stale forwarded flow from an earlier run cut')).toMatchObject({ port: flowPort });
      expect(hasElements(await tableListing())).toBe(false);
      await second.stop();
      expect(second.exit()).toEqual({ code: 0, signal: null });
      expect((await topo().exec('edge', 'nft', ['list', 'tables'])).stdout).not.toContain('ftp_alg_dp');
    });

    it('auto: the relay while forwarding is off (and says why), the kernel plane once it is on', { timeout: 2 * TEST_TIMEOUT_MS }, async () => {
      await gateway?.stop();
      const planeOf = async (gw: RunningGateway) => {
        const line = jsonLines(gw.output()).find((l) => l.msg === 'data plane');
        const text = await metrics(gw);
        await gw.stop();
        return { plane: line?.dataPlane, configured: line?.configured, relayGauge: metric(text, 'ftp_alg_data_plane', 'kind="relay"') };
      };
      await edge('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=0']);
      const off = await startGateway(topo(), kernelConfig(ACCEPT_MS, 'auto'));
      const why = jsonLines(off.output()).find((l) => l.msg === 'kernel data plane not usable; relaying');
      expect(await planeOf(off)).toEqual({ plane: 'relay', configured: 'auto', relayGauge: 1 });
      expect(why?.why).toBe('net.ipv4.ip_forward is 0');
      await enableForwarding(topo());
      const on = await startGateway(topo(), kernelConfig(ACCEPT_MS, 'auto'));
      expect(await planeOf(on)).toEqual({ plane: 'nftables', configured: 'auto', relayGauge: 0 });
    });
  });
});

// Issue 12 item 5: two gateway instances behind one public address.
//
//   client ns 203.0.113.10 ──▶ VIP 203.0.113.2 (edge ns: the ruleset of `ftp-alg --balancer nftables`)
//        control :21          ──jhash──▶ instance 0 (203.0.113.3:21) or instance 1 (203.0.113.4:21)
//        data    :50000-50049 ─────────▶ instance 0 (its slice)
//        data    :50050-50099 ─────────▶ instance 1 (its slice)
//   each instance ──▶ vsftpd 192.0.2.10:21
//
// 64 concurrent sessions through the VIP, PASV and EPSV: all byte-exact, both
// instances serve some, and each instance's 227/229 name only ports of its own
// slice. Controls: without the balancer the VIP serves nothing, and with a
// balancer that sends instance 1's slice to instance 0 its sessions fail.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { passiveSlice } from '../../src/config/instance.js';
import { describeResult, runClient, sha256File, type ClientResult } from './lib/clients.js';
import { expectedSha, remotePath } from './lib/fixtures.js';
import { e2eConfig, startGateway, type GatewayConfig, type RunningGateway } from './lib/gateway.js';
import { assertPrereq, GATEWAY_CLI, suitePrereq } from './lib/prereq.js';
import { startServer, type RunningServer } from './lib/servers.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR, execOrThrow, type Topology } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 90_000;
const VIP = '203.0.113.2';
const INSTANCES = ['203.0.113.3', '203.0.113.4'] as const;
const PASSIVE = { min: 50000, max: 50099 };
const SESSIONS = 64;

const prereq = suitePrereq('instances.e2e', { gateway: true });

/** Instance `index` of two: its own address, the shared VIP and passive range, an active range of its own (they share a namespace here). */
function instanceConfig(index: number): GatewayConfig & { instance: { index: number; count: number } } {
  const site = e2eConfig().sites[0];
  if (site === undefined) throw new Error('no e2e site');
  return {
    ...e2eConfig(),
    instance: { index, count: INSTANCES.length },
    sites: [
      {
        ...site,
        listen: { host: INSTANCES[index] ?? '', port: 21 },
        externalAddress: VIP,
        passivePorts: PASSIVE,
        activePorts: { min: 50200 + index * 100, max: 50299 + index * 100 },
        timeouts: { pinholeAcceptMs: 3_000 },
      },
    ],
  };
}

const inEdge = (topo: Topology, cmd: string, args: string[]): Promise<string> => execOrThrow(topo, 'edge', cmd, args);

describe.skipIf(prereq.skip)('two instances behind one address (issue 12)', () => {
  let server: RunningServer | undefined;
  let second: RunningGateway | undefined;
  const env = useE2eSuite({
    prereq,
    workPrefix: 'ftpalg-e2e-instances-',
    hookTimeoutMs: HOOK_TIMEOUT_MS,
    startGateway: async (topo) => {
      for (const address of [VIP, ...INSTANCES]) await inEdge(topo, 'ip', ['addr', 'add', `${address}/24`, 'dev', 'to-client']);
      return startGateway(topo, instanceConfig(0));
    },
  });
  const { t } = env;
  const outputs = () => [env.gatewayLog(1_000_000), second?.output() ?? ''];

  beforeAll(async () => {
    assertPrereq(prereq);
    second = await startGateway(t(), instanceConfig(1));
    server = await startServer('vsftpd', t(), env.root?.dir ?? '');
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await second?.stop();
    await server?.stop();
  }, HOOK_TIMEOUT_MS);

  const target = () => ({ host: VIP, port: 21, user: server?.user ?? '', password: server?.password ?? '' });
  const download = (i: number, timeoutMs?: number): Promise<ClientResult> =>
    runClient(t().ns.client, {
      client: 'curl',
      mode: i % 2 === 0 ? 'pasv' : 'epsv',
      op: 'get',
      target: target(),
      remote: remotePath('1k.bin'),
      local: join(env.work, `s${i}.bin`),
      timeoutMs,
    });

  it('control: without the balancer, the VIP serves nothing', async () => {
    const r = await download(-1, 12_000);
    expect(r.code).not.toBe(0);
  }, 30_000);

  /** Generate the balancer's ruleset with the built CLI, change it with `edit`, load it in the edge namespace. */
  async function loadBalancer(edit: (rules: string) => string = (r) => r): Promise<void> {
    const file = join(env.work, 'instance.json');
    await writeFile(file, JSON.stringify(instanceConfig(0)));
    const rules = await inEdge(t(), process.execPath, [GATEWAY_CLI, '--balancer', 'nftables', '--config', file, '--instances', INSTANCES.join(',')]);
    await writeFile(join(env.work, 'balancer.nft'), edit(rules));
    await inEdge(t(), 'nft', ['-f', join(env.work, 'balancer.nft')]);
  }

  it('control: a balancer that steers instance 1\'s slice to instance 0 breaks its sessions', async () => {
    const slice = passiveSlice(PASSIVE, { index: 1, count: 2 });
    await loadBalancer((rules) => rules.replace(`${slice.min}-${slice.max} dnat ip to ${INSTANCES[1]}`, `${slice.min}-${slice.max} dnat ip to ${INSTANCES[0]}`));
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => download(100 + i, 15_000)));
    expect(results.filter((r) => r.code !== 0).length).toBeGreaterThan(0);
  }, 60_000);

  it(`${SESSIONS} concurrent sessions through the VIP: byte-exact, spread over both, each port from its instance's slice`, async () => {
    await loadBalancer();
    const startsBefore = outputs().map((out) => out.split('\n').filter((l) => l.includes('"session start"')).length);

    const results = await Promise.all(Array.from({ length: SESSIONS }, (_, i) => download(i)));
    for (const [i, r] of results.entries()) {
      expect(r.code, `${describeResult(r)}\n${outputs().join('\n').slice(-4000)}`).toBe(0);
      expect(await sha256File(join(env.work, `s${i}.bin`))).toBe(expectedSha('1k.bin'));
    }
    const [first, other] = outputs().map((out, i) => out.split('\n').filter((l) => l.includes('"session start"')).length - (startsBefore[i] ?? 0));
    console.log(`instances.e2e: ${SESSIONS} sessions, instance 0 took ${first}, instance 1 took ${other}`);
    expect(first).toBeGreaterThan(0);
    expect(other).toBeGreaterThan(0);
    expect((first ?? 0) + (other ?? 0)).toBe(SESSIONS);
    // Each instance's advertised ports are in its own slice: the transcript's 227/229 and the instance that logged the session agree.
    const slices = [0, 1].map((index) => passiveSlice(PASSIVE, { index, count: 2 }));
    const ports = results.map((r) => {
      const line = r.transcript.find((c) => c.dir === 'received' && /^22[79] /.test(c.line))?.line ?? '';
      const m = /\|\|\|(\d+)\|/.exec(line) ?? /,(\d+),(\d+)\)/.exec(line);
      return m === null ? -1 : m.length === 2 ? Number(m[1]) : Number(m[1]) * 256 + Number(m[2]);
    });
    expect(ports.every((p) => slices.some((s) => p >= s.min && p <= s.max))).toBe(true);
    const inSlice = (s: { min: number; max: number }) => ports.filter((p) => p >= s.min && p <= s.max).length;
    expect(inSlice(slices[0] ?? PASSIVE)).toBeGreaterThan(0);
    expect(inSlice(slices[1] ?? PASSIVE)).toBeGreaterThan(0);
  }, 120_000);

  it('the clients reached the instances with their own address (DNAT, no SNAT)', () => {
    for (const out of outputs()) {
      for (const line of out.split('\n').filter((l) => l.includes('"session start"'))) expect(line).toContain(`"client":"${ADDR.client}"`);
    }
  });
});

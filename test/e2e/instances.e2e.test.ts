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
//
// Health checks: `ftp-alg --balancer-agent` (in the edge namespace too) asks
// each instance's /readyz every CHECK_INTERVAL_MS and rewrites the balancer's
// control map. Instance 1 is SIGKILLed (by its pid) while long downloads run
// on both: within FALL_CHECKS intervals (+ margin) every new session succeeds
// on instance 0, and the downloads running on instance 0 finish byte-exact.
// Control: without the agent, a killed instance keeps its share of new
// sessions, which fail. Restarted, instance 1 gets sessions again.
import type { ChildProcess } from 'node:child_process';
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
import { ADDR, execOrThrow, stopChild, type Topology } from './lib/topology.js';
import { FALL_CHECKS, RISE_CHECKS } from '../../src/deploy/BalancerAgent.js';

const HOOK_TIMEOUT_MS = 90_000;
const VIP = '203.0.113.2';
const INSTANCES = ['203.0.113.3', '203.0.113.4'] as const;
const PASSIVE = { min: 50000, max: 50099 };
const SESSIONS = 64;
const METRICS_PORT = 9464;
const CHECK_INTERVAL_MS = 1_000;
/** On top of the agent's own bound (FALL_CHECKS or RISE_CHECKS intervals): the nft write, a busy machine. */
const CHECK_MARGIN_MS = 2_500;
/** Long downloads running across the kill: 8 MiB at 1 MiB/s, about 8 s each. */
const LONG_SESSIONS = 12;
const LONG_RATE = '1M';
const EIGHT_MIB = 8 * 1024 * 1024;
const SMALL_SOCKET_BUFFERS = '4096 32768 131072';

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
    metrics: { listen: `${INSTANCES[index] ?? ''}:${METRICS_PORT}` },
  };
}

const inEdge = (topo: Topology, cmd: string, args: string[]): Promise<string> => execOrThrow(topo, 'edge', cmd, args);

describe.skipIf(prereq.skip)('two instances behind one address (issue 12)', () => {
  let server: RunningServer | undefined;
  let second: RunningGateway | undefined;
  let agent: { child: ChildProcess; output: () => string } | undefined;
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
    if (agent !== undefined) await stopChild(agent.child);
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

  /** The instance whose passive slice holds `port` (undefined: none). */
  const sliceOf = (port: number) =>
    [0, 1].find((index) => {
      const slice = passiveSlice(PASSIVE, { index, count: 2 });
      return port >= slice.min && port <= slice.max;
    });
  /** The data port of a session's 227/229, from the replies it received (-1 when it got none). */
  const portOf = (lines: string[]) => {
    const line = lines.find((l) => /^22[79] /.test(l)) ?? '';
    const m = /\|\|\|(\d+)\|/.exec(line) ?? /,(\d+),(\d+)\)/.exec(line);
    return m === null ? -1 : m.length === 2 ? Number(m[1]) : Number(m[1]) * 256 + Number(m[2]);
  };
  const receivedLines = (r: ClientResult) => r.transcript.filter((c) => c.dir === 'received').map((c) => c.line);

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
    const owners = results.map((r) => sliceOf(portOf(receivedLines(r))));
    expect(owners.every((owner) => owner !== undefined)).toBe(true);
    expect(owners.filter((owner) => owner === 0).length).toBeGreaterThan(0);
    expect(owners.filter((owner) => owner === 1).length).toBeGreaterThan(0);
  }, 120_000);

  it('the clients reached the instances with their own address (DNAT, no SNAT)', () => {
    for (const out of outputs()) {
      for (const line of out.split('\n').filter((l) => l.includes('"session start"'))) expect(line).toContain(`"client":"${ADDR.client}"`);
    }
  });

  const killSecond = async (): Promise<number> => {
    const victim = second;
    if (victim === undefined) throw new Error('no instance 1');
    process.kill(victim.pid, 'SIGKILL');
    const killedAt = Date.now();
    await victim.stop(); // it has exited: this waits for that and removes its files
    expect(victim.exit()?.signal).toBe('SIGKILL');
    second = undefined;
    return killedAt;
  };
  const restartSecond = async () => {
    second = await startGateway(t(), instanceConfig(1));
  };

  it('control: without health checks, a killed instance keeps its share of new sessions, which fail', async () => {
    await loadBalancer();
    await killSecond();
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => download(200 + i, 15_000)));
    expect(results.filter((r) => r.code !== 0).length).toBeGreaterThan(0);
    await restartSecond();
  }, 90_000);

  /** The agent's pino lines so far, parsed. */
  const agentLines = (): Record<string, unknown>[] =>
    (agent?.output() ?? '').split('\n').flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  /** Polls (bounded) until the agent has logged a line that `match` accepts, from its line `from` on; returns it. */
  async function agentLogged(match: (line: Record<string, unknown>) => boolean, withinMs: number, from = 0): Promise<Record<string, unknown>> {
    const until = Date.now() + withinMs;
    for (;;) {
      const found = agentLines().slice(from).find(match);
      if (found !== undefined) return found;
      if (Date.now() > until) throw new Error(`the agent did not log it within ${withinMs} ms:\n${agent?.output().slice(-3000) ?? ''}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** 8m.bin through the VIP with curl, slowed so it runs for seconds; the data port its 227/229 named. */
  async function longDownload(i: number): Promise<{ code: number | null; port: number; sha: string | null; stderr: string }> {
    const local = join(env.work, `long${i}.bin`);
    const url = `ftp://${VIP}:21${remotePath('8m.bin')}`;
    const r = await t().exec(
      'client',
      'curl',
      ['-sS', '-v', '--max-time', '40', '--limit-rate', LONG_RATE, '--user', `${target().user}:${target().password}`, '--ftp-pasv', '--no-ftp-skip-pasv-ip', ...(i % 2 === 0 ? ['--disable-epsv'] : []), '-o', local, url],
      { timeoutMs: 45_000 },
    );
    const received = r.stderr.split('\n').filter((l) => l.startsWith('< ')).map((l) => l.slice(2).trimEnd());
    return { code: r.code, port: portOf(received), sha: r.code === 0 ? await sha256File(local) : null, stderr: r.stderr };
  }

  it(`health-checked: instance 1 SIGKILLed, new sessions all succeed on instance 0 within ${FALL_CHECKS} check intervals, its running downloads finish byte-exact`, async () => {
    await loadBalancer();
    const file = join(env.work, 'instance.json');
    const child = t().spawn('edge', process.execPath, [GATEWAY_CLI, '--balancer-agent', '--config', file, '--instances', INSTANCES.join(','), '--interval-ms', String(CHECK_INTERVAL_MS)]);
    let output = '';
    child.stdout?.setEncoding('utf8').on('data', (s: string) => (output += s));
    child.stderr?.setEncoding('utf8').on('data', (s: string) => (output += `[stderr] ${s}`));
    agent = { child, output: () => output };
    const both = JSON.stringify([...INSTANCES]);
    await agentLogged((l) => l.msg === 'control map updated' && JSON.stringify(l.up) === both, 10_000);

    // Small socket buffers on the data path (these namespaces only), so an instance relays each long download
    // for as long as the client takes to read it, instead of handing it all to the kernel at once.
    await execOrThrow(t(), 'client', 'sysctl', ['-q', '-w', `net.ipv4.tcp_rmem=${SMALL_SOCKET_BUFFERS}`]);
    await execOrThrow(t(), 'edge', 'sysctl', ['-q', '-w', `net.ipv4.tcp_wmem=${SMALL_SOCKET_BUFFERS}`]);
    const startsBefore = outputs().map((out) => out.split('\n').filter((l) => l.includes('"session start"')).length);
    const running = Array.from({ length: LONG_SESSIONS }, (_, i) => longDownload(i));
    // Every long session has logged in on one instance before the kill.
    const until = Date.now() + 15_000;
    while (outputs().reduce((n, out, i) => n + out.split('\n').filter((l) => l.includes('"session start"')).length - (startsBefore[i] ?? 0), 0) < LONG_SESSIONS) {
      if (Date.now() > until) throw new Error('the long sessions did not all start');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // their transfers are under way (about 8 s each)

    const killedAt = await killSecond();
    const down = await agentLogged((l) => l.msg === 'instance down' && l.instance === INSTANCES[1], FALL_CHECKS * CHECK_INTERVAL_MS + CHECK_MARGIN_MS + 5_000);
    const detectedMs = Number(down.time) - killedAt;
    console.log(`instances.e2e: the agent took instance 1 out ${detectedMs} ms after the kill (interval ${CHECK_INTERVAL_MS} ms, ${FALL_CHECKS} checks)`);
    expect(detectedMs).toBeLessThanOrEqual(FALL_CHECKS * CHECK_INTERVAL_MS + CHECK_MARGIN_MS);
    // New sessions from the bound on: every one succeeds, on instance 0 (its slice).
    const bound = killedAt + FALL_CHECKS * CHECK_INTERVAL_MS + CHECK_MARGIN_MS;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, bound - Date.now())));
    const fresh = await Promise.all(Array.from({ length: 16 }, (_, i) => download(300 + i, 20_000)));
    for (const [i, r] of fresh.entries()) {
      expect(r.code, `${describeResult(r)}\n${output.slice(-2000)}`).toBe(0);
      expect(await sha256File(join(env.work, `s${300 + i}.bin`))).toBe(expectedSha('1k.bin'));
      expect(sliceOf(portOf(receivedLines(r)))).toBe(0);
    }

    const long = await Promise.all(running);
    const onSurvivor = long.filter((r) => sliceOf(r.port) === 0);
    const onVictim = long.filter((r) => sliceOf(r.port) === 1);
    console.log(`instances.e2e: long downloads: ${onSurvivor.length} on instance 0, ${onVictim.length} on instance 1 (killed)`);
    expect(onSurvivor.length).toBeGreaterThan(0);
    for (const r of onSurvivor) {
      expect(r.code, r.stderr.slice(-2000)).toBe(0);
      expect(r.sha).toBe(expectedSha('8m.bin'));
    }
    // The survivor was relaying every one of them when instance 1 died: its 8 MiB transfers all ended after the kill.
    // (It logs a transfer once both of its sockets have closed, which can be just after curl exits: wait for the lines.)
    const survivorTransfers = () =>
      (outputs()[0] ?? '')
        .split('\n')
        .filter((l) => l.includes('"transfer done"'))
        .map((l) => JSON.parse(l) as { time: number; downBytes: number; ms: number })
        .filter((l) => l.downBytes === EIGHT_MIB);
    const logged = Date.now() + 5_000;
    while (survivorTransfers().length < onSurvivor.length && Date.now() < logged) await new Promise((resolve) => setTimeout(resolve, 100));
    const ended = survivorTransfers().map((l) => ({ afterKillMs: l.time - killedAt, ms: l.ms }));
    console.log(`instances.e2e: the survivor's 8 MiB transfers ended ${ended.map((e) => `${e.afterKillMs} ms after the kill (${e.ms} ms long)`).join(', ')}`);
    expect(ended).toHaveLength(onSurvivor.length);
    expect(ended.every((e) => e.afterKillMs > 0)).toBe(true);
    for (const r of onVictim) expect(r.code, 'a download on the killed instance was not cut: the kill came too late').not.toBe(0);
  }, 120_000);

  it(`health-checked: restarted, instance 1 gets new sessions again after ${RISE_CHECKS} good checks`, async () => {
    if (agent === undefined) throw new Error('the agent did not start');
    const before = agentLines().length;
    await restartSecond();
    const both = JSON.stringify([...INSTANCES]);
    const back = (l: Record<string, unknown>) => l.msg === 'control map updated' && JSON.stringify(l.up) === both;
    await agentLogged(back, RISE_CHECKS * CHECK_INTERVAL_MS + CHECK_MARGIN_MS + 5_000, before);
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => download(400 + i, 20_000)));
    for (const r of results) expect(r.code, describeResult(r)).toBe(0);
    const slices = results.map((r) => sliceOf(portOf(receivedLines(r))));
    expect(slices.filter((s) => s === 1).length).toBeGreaterThan(0);
    expect(slices.filter((s) => s === 0).length).toBeGreaterThan(0);
  }, 60_000);
});

// Issue 12: client identity across the edge, with HAProxy as the real PROXY
// protocol peer on both sides.
//
//   client ns 203.0.113.10 ──▶ HAProxy (edge ns, 203.0.113.2:21, send-proxy-v2 from 203.0.113.2)
//                               ──▶ gateway 203.0.113.1:2121 (listen.proxyProtocol v2, trusts 203.0.113.2)
//                               ──▶ vsftpd 192.0.2.10:21
//   data: client ──▶ 203.0.113.2:<pinhole> ──nftables DNAT, source kept──▶ 203.0.113.1:<pinhole>
//   (one public address: the balancer's; HAProxy carries the control port, an L4 rule the passive range)
//
//   client ──▶ gateway 203.0.113.1:2101/2102 (upstream.proxyProtocol v1/v2)
//          ──▶ HAProxy (server ns, 192.0.2.10:2101/2102, accept-proxy) ──▶ vsftpd 192.0.2.10:21
//
// In front: every passive and active cell works with pinholes bound to the
// real client, a connection from the balancer's own address to a pinhole is
// refused, and the same transfer through a gateway that ignores the header
// fails. Behind: HAProxy's log names the real client (203.0.113.10), and a
// site that sends no header is refused by it.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_BINARIES, describeResult, runClient, sha256, sha256File, supports, usedMode, type ClientKind, type Mode } from './lib/clients.js';
import { expectedSha, FILES, remotePath, uploadPath } from './lib/fixtures.js';
import { e2eConfig, startGateway, type GatewayConfig } from './lib/gateway.js';
import { HAPROXY_BINARY, startHaproxy, type RunningHaproxy } from './lib/haproxy.js';
import { assertPrereq, IN_CI, suitePrereq } from './lib/prereq.js';
import { startServer, type RunningServer } from './lib/servers.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR, execOrThrow, type Topology } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 60_000;
const NFT_BINARY = '/usr/sbin/nft';
const TEST_TIMEOUT_MS = 60_000;
const BALANCER = '203.0.113.2';
const BALANCED_PORT = 21;
const NAIVE_PORT = 2100;
const GW_BEHIND = { host: ADDR.edgePublic, port: 2121 };
const GW_NAIVE = { host: ADDR.edgePublic, port: 2122 };
const UPSTREAM_V1 = 2101;
const UPSTREAM_V2 = 2102;
const UPSTREAM_OFF = 2103;
const PASSIVE_BEHIND = { min: 50000, max: 50099 };

const base = suitePrereq('identity.e2e', { gateway: true });
const haproxyMissing = [HAPROXY_BINARY, NFT_BINARY]
  .filter((bin) => !existsSync(bin))
  .map((bin) => `${bin} (run: sudo bash .ci/install-e2e.sh)`)
  .join('\n');
const prereq = {
  ok: base.ok && haproxyMissing === '',
  reason: [base.reason, haproxyMissing].filter((r) => r !== '').join('\n'),
  skip: (!base.ok || haproxyMissing !== '') && !IN_CI,
};
if (prereq.skip && base.ok) console.warn(`[e2e] skipping identity.e2e; missing:\n  ${haproxyMissing}`);

/** The e2e site, five times: behind the balancer, naive behind it, and three sending headers (v1, v2, none) to HAProxy. */
function identityConfig(): GatewayConfig {
  const one = e2eConfig().sites[0];
  if (one === undefined) throw new Error('no e2e site');
  const ranges = (i: number) => ({ passivePorts: { min: 50000 + i * 200, max: 50099 + i * 200 }, activePorts: { min: 50100 + i * 200, max: 50199 + i * 200 } });
  const toHaproxy = (name: string, port: number, upstream: number, proxyProtocol: 'off' | 'v1' | 'v2', i: number) => ({
    ...one,
    ...ranges(i),
    name,
    listen: { host: ADDR.edgePublic, port },
    upstream: { host: ADDR.server, port: upstream, proxyProtocol },
  });
  return {
    ...e2eConfig(),
    dataPlane: { workers: 1 },
    sites: [
      { ...one, ...ranges(0), externalAddress: BALANCER, name: 'behind', listen: { ...GW_BEHIND, proxyProtocol: 'v2', trustedProxies: [`${BALANCER}/32`] } },
      { ...one, ...ranges(1), name: 'naive', listen: { ...GW_NAIVE }, timeouts: { pinholeAcceptMs: 2_000 } },
      toHaproxy('up-v1', UPSTREAM_V1, UPSTREAM_V1, 'v1', 2),
      toHaproxy('up-v2', UPSTREAM_V2, UPSTREAM_V2, 'v2', 3),
      { ...toHaproxy('up-off', UPSTREAM_OFF, UPSTREAM_V1, 'off', 4), timeouts: { greetingMs: 2_000 } },
    ],
  };
}

/** A control session in the client namespace: login, PASV, print the 227, wait for `signal`, then RETR over its own data connection. */
const HELD_PASV = `
import ftplib, hashlib, os, socket, sys, time
host, port, signal = sys.argv[1], int(sys.argv[2]), sys.argv[3]
f = ftplib.FTP()
f.connect(host, port, timeout=10)
f.login('anonymous', 'e2e')
f.voidcmd('TYPE I')
reply = f.sendcmd('PASV')
print(reply, flush=True)
for _ in range(400):
    if os.path.exists(signal): break
    time.sleep(0.05)
data_host, data_port = ftplib.parse227(reply)
s = socket.create_connection((data_host, data_port), timeout=10)
f.sendcmd('RETR /pub/1k.bin')
chunks = []
while True:
    b = s.recv(65536)
    if not b: break
    chunks.append(b)
s.close()
f.voidresp()
f.quit()
print('sha256=' + hashlib.sha256(b''.join(chunks)).hexdigest(), flush=True)
`;

/** From the edge namespace, as the balancer: connect to a pinhole from the balancer's address; print the bytes received before the close. */
const FROM_BALANCER = `
import socket, sys
s = socket.socket()
s.bind((sys.argv[3], 0))
s.settimeout(5)
s.connect((sys.argv[1], int(sys.argv[2])))
n = 0
try:
    while True:
        b = s.recv(65536)
        if not b: break
        n += len(b)
except (ConnectionResetError, socket.timeout) as e:
    print('ended=' + type(e).__name__)
print('bytes=%d' % n)
`;

/** Login and PWD over one control connection; print the last reply. */
const LOGIN_ONLY = `
import ftplib, sys
f = ftplib.FTP()
f.connect(sys.argv[1], int(sys.argv[2]), timeout=10)
f.login('anonymous', 'e2e')
print('pwd=' + f.pwd(), flush=True)
f.quit()
`;

/** The balancer's public address on the edge, and the L4 rule that steers the behind site's passive range from it to the gateway (source kept). */
async function balancerAddress(topo: Topology): Promise<void> {
  const range = `${PASSIVE_BEHIND.min}-${PASSIVE_BEHIND.max}`;
  const steps: string[][] = [
    ['ip', 'addr', 'add', `${BALANCER}/24`, 'dev', 'to-client'],
    ['nft', 'add', 'table', 'ip', 'balancer'],
    ['nft', 'add', 'chain', 'ip', 'balancer', 'pre', '{', 'type', 'nat', 'hook', 'prerouting', 'priority', 'dstnat', ';', '}'],
    ['nft', 'add', 'rule', 'ip', 'balancer', 'pre', 'ip', 'daddr', BALANCER, 'tcp', 'dport', range, 'dnat', 'to', ADDR.edgePublic],
  ];
  for (const [cmd, ...args] of steps) await execOrThrow(topo, 'edge', cmd ?? '', args);
}

describe.skipIf(prereq.skip)('client identity across the edge, with HAProxy (issue 12)', () => {
  let server: RunningServer | undefined;
  let front: RunningHaproxy | undefined;
  let back: RunningHaproxy | undefined;
  const env = useE2eSuite({
    prereq,
    workPrefix: 'ftpalg-e2e-identity-',
    hookTimeoutMs: HOOK_TIMEOUT_MS,
    startGateway: async (topo: Topology) => {
      await balancerAddress(topo);
      return startGateway(topo, identityConfig());
    },
  });
  const { t } = env;
  const python = (role: 'client' | 'edge', script: string, args: string[]) => t().exec(role, CLIENT_BINARIES.ftplib, ['-c', script, ...args], { timeoutMs: 30_000 });
  const logs = async () => `${env.gatewayLog(40)}\n--- haproxy front\n${front?.output() ?? ''}\n--- haproxy back\n${back?.output() ?? ''}\n${(await server?.logs()) ?? ''}`;

  beforeAll(async () => {
    assertPrereq(prereq);
    server = await startServer('vsftpd', t(), env.root?.dir ?? '');
    front = await startHaproxy(t(), 'edge', {
      balanced: { bind: `${BALANCER}:${BALANCED_PORT}`, server: `${GW_BEHIND.host}:${GW_BEHIND.port} send-proxy-v2 source ${BALANCER}` },
      naive: { bind: `${BALANCER}:${NAIVE_PORT}`, server: `${GW_NAIVE.host}:${GW_NAIVE.port} source ${BALANCER}` },
    });
    back = await startHaproxy(t(), 'server', {
      acceptV1: { bind: `${ADDR.server}:${UPSTREAM_V1} accept-proxy`, server: `${ADDR.server}:21` },
      acceptV2: { bind: `${ADDR.server}:${UPSTREAM_V2} accept-proxy`, server: `${ADDR.server}:21` },
    });
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await front?.stop();
    await back?.stop();
    await server?.stop();
  }, HOOK_TIMEOUT_MS);

  describe('HAProxy send-proxy-v2 in front of the gateway', () => {
    const MODES: readonly Mode[] = ['pasv', 'epsv', 'port', 'eprt'];
    const CLIENTS: readonly ClientKind[] = ['curl', 'lftp', 'ftplib'];
    const cases = CLIENTS.flatMap((client) => MODES.filter((mode) => supports(client, mode)).flatMap((mode) => (['get', 'put'] as const).map((op) => ({ client, mode, op }))));

    it.each(cases)(
      '$client $mode $op 8 MiB through the balancer, byte-exact',
      async ({ client, mode, op }) => {
        const tag = `identity-${client}-${mode}-${op}.bin`;
        const target = { host: BALANCER, port: BALANCED_PORT, user: server?.user ?? '', password: server?.password ?? '' };
        const local = op === 'get' ? join(env.work, tag) : join(env.root?.dir ?? '', 'pub', '8m.bin');
        const remote = op === 'get' ? remotePath('8m.bin') : uploadPath(tag);
        const r = await runClient(t().ns.client, { client, mode, op, target, remote, local });
        const arrived = await sha256File(op === 'get' ? local : (env.root?.uploaded(tag) ?? ''));
        const detail = `${describeResult(r)}\n${await logs()}`;
        expect(r.code, detail).toBe(0);
        expect(usedMode(r), detail).toBe(true);
        expect(arrived, detail).toBe(expectedSha('8m.bin'));
      },
      TEST_TIMEOUT_MS,
    );

    it('the gateway logs the carried client, via the balancer', async () => {
      const starts = env
        .gatewayLog(100_000)
        .split('\n')
        .filter((l) => l.includes('"session start"') && l.includes('"site":"behind"'));
      expect(starts.length).toBeGreaterThan(0);
      for (const line of starts) {
        expect(line).toContain(`"client":"${ADDR.client}"`);
        expect(line).toContain(`"via":"${BALANCER}"`);
      }
    });

    it(
      "a connection from the balancer's own address to a pinhole is refused; the client's then works",
      async () => {
        const signal = join(env.work, 'pasv-held');
        const child = t().spawn('client', CLIENT_BINARIES.ftplib, ['-c', HELD_PASV, BALANCER, String(BALANCED_PORT), signal]);
        let out = '';
        child.stdout?.setEncoding('utf8').on('data', (s: string) => (out += s));
        child.stderr?.setEncoding('utf8').on('data', (s: string) => (out += s));
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
        for (let i = 0; i < 200 && !out.includes('227'); i++) await new Promise((r) => setTimeout(r, 50));
        const m = /\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(out);
        expect(m, out).not.toBeNull();
        const port = Number(m?.[5]) * 256 + Number(m?.[6]);
        const stranger = await python('edge', FROM_BALANCER, [ADDR.edgePublic, String(port), BALANCER]);
        expect(stranger.stdout, stranger.stderr).toContain('bytes=0');
        await writeFile(signal, '');
        expect(await exited, out).toBe(0);
        expect(out).toContain(`sha256=${sha256(FILES['1k.bin'])}`);
        const refused = env.gatewayLog(100_000).split('\n').filter((l) => l.includes('wrong peer refused'));
        expect(refused.some((l) => l.includes(`"peer":"${BALANCER}"`) && l.includes(`"expected":"${ADDR.client}"`)), await logs()).toBe(true);
      },
      TEST_TIMEOUT_MS,
    );

    it(
      "the gateway's PROXY listener closes a client that connects to it directly (not a trusted balancer)",
      async () => {
        const r = await python('client', LOGIN_ONLY, [GW_BEHIND.host, String(GW_BEHIND.port)]);
        expect(r.code).not.toBe(0);
        expect(r.stdout).not.toContain('pwd=');
        expect(env.gatewayLog(100_000)).toMatch(new RegExp(`"peer":"${ADDR.client}","reason":"proxy-untrusted"`));
      },
      TEST_TIMEOUT_MS,
    );

    it(
      'control: the same passive download through a gateway that ignores the header fails',
      async () => {
        const local = join(env.work, 'naive.bin');
        const target = { host: BALANCER, port: NAIVE_PORT, user: server?.user ?? '', password: server?.password ?? '' };
        const r = await runClient(t().ns.client, { client: 'curl', mode: 'pasv', op: 'get', target, remote: remotePath('1k.bin'), local, timeoutMs: 12_000 });
        expect(r.code, describeResult(r)).not.toBe(0);
        expect(await sha256File(local)).not.toBe(expectedSha('1k.bin'));
      },
      TEST_TIMEOUT_MS,
    );
  });

  describe('HAProxy accept-proxy between the gateway and the upstream', () => {
    it.each([
      ['v1', UPSTREAM_V1, 'acceptV1'],
      ['v2', UPSTREAM_V2, 'acceptV2'],
    ])(
      '%s: HAProxy parses the header and logs the real client',
      async (_v, port, frontend) => {
        const before = back?.output().length ?? 0;
        const r = await python('client', LOGIN_ONLY, [ADDR.edgePublic, String(port)]);
        expect(r.code, `${r.stdout}${r.stderr}\n${await logs()}`).toBe(0);
        expect(r.stdout).toContain('pwd=/');
        for (let i = 0; i < 100 && !(back?.output().slice(before) ?? '').includes(`frontend=${frontend}`); i++) await new Promise((res) => setTimeout(res, 50));
        const line = (back?.output().slice(before) ?? '').split('\n').find((l) => l.includes(`frontend=${frontend}`));
        expect(line, await logs()).toMatch(new RegExp(`client=${ADDR.client.replace(/\./g, '\\.')}:\\d+ `));
      },
      TEST_TIMEOUT_MS,
    );

    it(
      'control: a site that sends no header is refused by HAProxy',
      async () => {
        const r = await python('client', LOGIN_ONLY, [ADDR.edgePublic, String(UPSTREAM_OFF)]);
        expect(r.code).not.toBe(0);
        expect(r.stdout).not.toContain('pwd=');
      },
      TEST_TIMEOUT_MS,
    );
  });
});

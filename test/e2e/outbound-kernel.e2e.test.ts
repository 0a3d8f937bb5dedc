// Issue 15 item 5 on the kernel plane: a transparent site's direct passive
// data (the client dials the server's own data port) through an edge whose
// forward chain is closed, `policy drop`, as `ftp-alg --nftables` prints it
// for dataPlane.kind "nftables". Each PASV/EPSV reply the gateway passes on
// admits exactly one connection of that client to that server port (a
// one-shot element of fwd4/fwd6, which marks the flow for the chain).
//
// client ns (inside) 203.0.113.10 / .11, 2001:db8:1::10 ── edge ns (masquerade,
// the generated rules) ── server ns 192.0.2.10, 2001:db8:2::10: vsftpd on both.
//
// The control: the same site on the relay plane, same rules, has no entries:
// its passive transfer is dropped by the chain. On the kernel plane it passes
// byte-exact (IPv4 and IPv6), while another client, another port and a
// second connection are dropped at the edge (they time out: the server would
// have answered them). Active mode goes through the kernel pinholes as ever.
// Afterwards the gateway's table holds no element.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasElements } from '../support/nftListing.js';
import { kernelTable } from './lib/kernelPlane.js';
import { describeResult, runClient, sha256File, usedMode, type ClientResult, type Family, type Mode } from './lib/clients.js';
import { expectedSha, remotePath, FILES } from './lib/fixtures.js';
import { jsonLines, startGateway, type OutboundGatewayConfig, type RunningGateway } from './lib/gateway.js';
import { loadGeneratedRules, PY_CONTROL } from './lib/outbound.js';
import { assertPrereq, suitePrereq } from './lib/prereq.js';
import { startServer, type RunningServer } from './lib/servers.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR, type Topology } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 60_000;
const PROBE = join(dirname(fileURLToPath(import.meta.url)), 'lib', 'ftpProbe.mjs');
const SITE_PORT = 2122;
const OTHER_CLIENT = '203.0.113.11';
const ACCEPT_MS = 10_000;
const CONTROL_IDLE_MS = 2_000;

/**
 * A slow download in the client namespace: EPSV, the data connection, RETR,
 * then 64 KiB every 60 ms (a small receive buffer), while the control
 * connection stays quiet for longer than the site's controlIdleMs. Prints the
 * reply to RETR, the bytes read and the final reply.
 */
const SLOW_GET = `${PY_CONTROL}
import re, sys, time
host, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
control(host, 21, 30)
reply()
cmd('USER ' + user); cmd('PASS ' + password); cmd('TYPE I')
port = int(re.search(r'\\|\\|\\|(\\d+)\\|', cmd('EPSV')).group(1))
d = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM)
d.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
d.settimeout(30)
d.connect((host, port))
print(cmd('RETR /pub/8m.bin'), flush=True)
n = 0
while True:
    b = d.recv(65536)
    if not b: break
    n += len(b)
    time.sleep(0.06)
print(n, flush=True)
print(reply(), flush=True)
`;

const prereq = suitePrereq('outbound-kernel.e2e', { gateway: true, tools: ['nft', 'conntrack', 'curl'] });

function config(kind: 'nftables' | 'relay'): OutboundGatewayConfig {
  const site = (name: string, host: string, clients: string, servers: string, first: number, controlIdleMs = 300_000) => ({
    name,
    role: 'transparent',
    listen: { host, port: SITE_PORT },
    clients: { allow: [clients], deny: [] },
    destinations: { allow: [servers], ports: [21] },
    externalAddress: host,
    passivePorts: { min: first, max: first + 99 },
    activePorts: { min: first + 100, max: first + 199 },
    timeouts: { pinholeAcceptMs: ACCEPT_MS, controlIdleMs },
  });
  return {
    log: { level: 'debug' },
    dataPlane: { kind },
    metrics: { listen: '127.0.0.1:0' },
    sites: [site('transparent', ADDR.edgePublic, '203.0.113.0/24', '192.0.2.0/24', 50000), site('transparent6', ADDR.edge6, '2001:db8:1::/64', '2001:db8:2::/64', 50200, CONTROL_IDLE_MS)],
  };
}

describe.skipIf(prereq.skip)('transparent sites on the kernel plane behind a closed forward chain (issue 15 item 5)', () => {
  const suite = useE2eSuite({ prereq, workPrefix: 'ftpalg-e2e-outbound-kernel-', hookTimeoutMs: HOOK_TIMEOUT_MS, layout: 'outbound' });
  const t = (): Topology => suite.t();
  const servers: Partial<Record<Family, RunningServer>> = {};
  let gateway: RunningGateway | undefined;
  let rules = '';
  let control: ClientResult | undefined;

  const target = (family: Family) => {
    const s = servers[family];
    return { host: family === 4 ? ADDR.server : ADDR.server6, port: 21, user: s?.user ?? '', password: s?.password ?? '' };
  };
  const get = (family: Family, mode: Mode, name: string) =>
    runClient(t().ns.client, { client: 'curl', mode, op: 'get', target: target(family), remote: remotePath('8m.bin'), local: join(suite.work, name), timeoutMs: 20_000 });

  beforeAll(async () => {
    assertPrereq(prereq);
    const root = suite.root;
    if (root === undefined) throw new Error('no root');
    servers[4] = await startServer('vsftpd', t(), root.dir);
    servers[6] = await startServer('vsftpd', t(), root.dir, { host: ADDR.server6 });
    const extra = await t().exec('client', 'ip', ['addr', 'add', `${OTHER_CLIENT}/24`, 'dev', 'to-edge']);
    if (extra.code !== 0) throw new Error(extra.stderr);
    rules = await loadGeneratedRules(t(), suite.work, config('nftables'));
    // The control: the relay plane has no forward entries; the closed chain drops its direct passive data.
    const relay = await startGateway(t(), config('relay'));
    control = await get(4, 'epsv', 'control.bin');
    await relay.stop();
    gateway = await startGateway(t(), config('nftables'));
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await gateway?.stop();
    for (const s of Object.values(servers)) await s?.stop();
  }, HOOK_TIMEOUT_MS);

  const gatewayTail = () => (gateway?.output() ?? '').split('\n').slice(-40).join('\n');
  const why = (r: ClientResult) => `${describeResult(r)}\n${gatewayTail()}`;
  const lines = (msg: string) => jsonLines(gateway?.output() ?? '').filter((l) => l.msg === msg);

  it('the edge\'s forward chain is closed (policy drop) and accepts the entries\' mark', () => {
    expect(rules).toContain('type filter hook forward priority filter; policy drop;');
    expect(rules).toContain('ct mark & 0x10000000 == 0x10000000 accept');
  });

  it('control: the same transfer on the relay plane (no entries) is dropped by the chain', () => {
    const r = control as ClientResult;
    expect(r.code, describeResult(r)).not.toBe(0);
    expect(r.transcript.some((l) => l.dir === 'received' && l.line.startsWith('229 ')), describeResult(r)).toBe(true);
  });

  it.each([
    [4, 'pasv'],
    [4, 'epsv'],
    [6, 'epsv'],
  ] as const)('IPv%s, %s: passes byte-exact through its one-shot entry', async (family, mode) => {
    const r = await get(family, mode, `direct-${family}-${mode}.bin`);
    expect(r.code, why(r)).toBe(0);
    expect(usedMode(r)).toBe(true);
    expect(await sha256File(join(suite.work, `direct-${family}-${mode}.bin`))).toBe(expectedSha('8m.bin'));
    // The server's own reply reached the client (no pinhole of the gateway's).
    const reply = r.transcript.find((l) => l.dir === 'received' && /^22[79] /.test(l.line))?.line ?? '';
    expect(reply).toMatch(mode === 'pasv' ? /\(192,0,2,10,/ : /\(\|\|\|40\d{3}\|\)/);
    const open = lines('forward entry open').at(-1);
    expect(open).toMatchObject({ client: family === 4 ? ADDR.client : ADDR.client6, server: target(family).host, plane: 'nftables' });
  }, TEST_TIMEOUT_MS);

  it('another client, another port and a second connection are dropped at the edge; the one admitted carries the file', async () => {
    const s = servers[4];
    const steps = [
      { op: 'control', host: ADDR.server, port: 21 },
      { op: 'send', line: `USER ${s?.user ?? ''}` },
      { op: 'send', line: `PASS ${s?.password ?? ''}` },
      { op: 'send', line: 'TYPE I' },
      { op: 'send', line: 'EPSV' },
      { op: 'dial', host: ADDR.server, port: 'last', from: OTHER_CLIENT, slot: 'other-client' },
      { op: 'dial', host: ADDR.server, port: 'last+1', slot: 'other-port' },
      { op: 'dial', host: ADDR.server, port: 'last', slot: 'first' },
      { op: 'dial', host: ADDR.server, port: 'last', slot: 'second' },
      { op: 'send', line: 'RETR /pub/8m.bin' },
      { op: 'read', slot: 'first' },
    ];
    const r = await t().exec('client', process.execPath, [PROBE, JSON.stringify(steps)], { timeoutMs: 40_000 });
    expect(r.code, r.stderr).toBe(0);
    const results = JSON.parse(r.stdout.trim().split('\n').pop() ?? '[]') as unknown[];
    expect(results[4]).toMatch(/^229 /);
    // Dropped (a timeout), not refused: the server would have answered each of them with a reset or an accept.
    expect(results.slice(5, 9)).toEqual(['timeout', 'timeout', 'connected', 'timeout']);
    expect(results[10]).toMatchObject({ bytes: FILES['8m.bin'].length, sha256: expectedSha('8m.bin') });
  }, TEST_TIMEOUT_MS);

  it('IPv6 (controlIdleMs 2 s): a direct transfer longer than that keeps its quiet control connection, the 226 arrives', async () => {
    const s = servers[6];
    const r = await t().exec('client', 'python3', ['-c', SLOW_GET, ADDR.server6, s?.user ?? '', s?.password ?? ''], { timeoutMs: 40_000 });
    const [retr, bytes, final] = r.stdout.trim().split('\n');
    expect(retr, r.stderr).toMatch(/^150 /);
    expect(Number(bytes)).toBe(FILES['8m.bin'].length);
    expect(final, gatewayTail()).toMatch(/^226 /);
    expect(lines('session end').filter((l) => l.reason === 'control-idle')).toEqual([]);
  }, TEST_TIMEOUT_MS);

  it('active mode still goes through the kernel pinholes (DNAT), accepted by the same chain', async () => {
    const r = await runClient(t().ns.client, { client: 'curl', mode: 'eprt', op: 'get', target: target(4), remote: remotePath('1k.bin'), local: join(suite.work, 'active.bin') });
    expect(r.code, why(r)).toBe(0);
    expect(await sha256File(join(suite.work, 'active.bin'))).toBe(expectedSha('1k.bin'));
    expect(lines('pinhole relayed')).toEqual([]);
  }, TEST_TIMEOUT_MS);

  it('counted as forward entries of the kernel plane, and none is left in the table', async () => {
    const text = (await t().exec('edge', 'curl', ['-sf', `http://${gateway?.metricsAddress() ?? ''}/metrics`])).stdout;
    const forward = text.split('\n').filter((l) => l.startsWith('ftp_alg_pinholes_by_plane_total') && l.includes('reason="forward"'));
    expect(forward.reduce((n, l) => n + Number(l.split(' ').pop()), 0)).toBeGreaterThanOrEqual(4);
    const deadline = Date.now() + 5_000;
    let listing = '';
    do {
      listing = await kernelTable(t());
    } while (hasElements(listing) && Date.now() < deadline);
    expect(listing).toContain('set fwd4');
    expect(hasElements(listing), listing).toBe(false);
  }, TEST_TIMEOUT_MS);
});

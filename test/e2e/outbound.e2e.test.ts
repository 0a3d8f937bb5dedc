// Issue 15: outbound sites, end to end, with the roles reversed.
//
// client ns (inside) 203.0.113.10, default route via the edge
//   ──▶ edge ns: 203.0.113.1 inside, 192.0.2.1 outside; forwards and masquerades
//       out of 192.0.2.1, no FTP conntrack helper; ftp-alg with two sites:
//       - "forward" on 203.0.113.1:2121 (the client names the server at login)
//       - "transparent" on 203.0.113.1:2122, fed by the redirect rule that
//         `ftp-alg --nftables` prints (inside clients dial the real server)
//   ──▶ server ns (outside) 192.0.2.10: vsftpd, no route back to the inside.
//
// Before the gateway runs, the same client in active mode straight through the
// NAT must fail (the server cannot reach an inside address, and a PORT naming
// one is refused): the negative control. Through either site every mode, get,
// put and list must pass byte-exact, and the server must see only 192.0.2.1.
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  describeResult,
  runClient,
  sha256File,
  unsupported,
  usedMode,
  type ClientKind,
  type ClientRequest,
  type ClientResult,
  type Mode,
} from './lib/clients.js';
import { FILES, expectedSha, remotePath, uploadPath } from './lib/fixtures.js';
import { startGateway, type OutboundGatewayConfig, type RunningGateway } from './lib/gateway.js';
import { assertPrereq, checkPrereq, GATEWAY_CLI, IN_CI } from './lib/prereq.js';
import { startServer, type RunningServer } from './lib/servers.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR, run, stopChild, type Topology } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 60_000;
const FORWARD_PORT = 2121;
const TRANSPARENT_PORT = 2122;
const INSIDE = ADDR.edgePublic; // the edge's inside address (clients' side)
const EXTERNAL = ADDR.edgePrivate; // the edge's outside address (servers' side)
const DENIED = '192.0.2.66';
/** ftp-srv, the second server outside, on a port both sites allow. */
const FTPSRV_PORT = 2100;
const FTPSRV_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'lib', 'ftpsrv_server.mjs');
const HOSTS = `127.0.0.1 localhost\n${ADDR.server} ftp.e2e.example\n169.254.169.254 metadata.e2e.example\n`;

function outboundPrereq() {
  const base = checkPrereq({ gateway: true });
  const missing = ['conntrack', 'nft'].filter((bin) => !['/usr/sbin', '/usr/bin', '/sbin'].some((d) => existsSync(join(d, bin))));
  const reason = [base.reason, ...missing.map((b) => `${b} (run: sudo bash .ci/install-e2e.sh)`)].filter((r) => r !== '').join('\n');
  const ok = reason === '';
  if (!ok && !IN_CI) console.warn(`[e2e] skipping outbound.e2e; missing:\n  ${reason.split('\n').join('\n  ')}`);
  return { ok, reason, skip: !ok && !IN_CI };
}

function outboundConfig(): OutboundGatewayConfig {
  return {
    log: { level: process.env.E2E_GATEWAY_LOG_LEVEL ?? 'info' },
    sites: [
      {
        name: 'forward',
        role: 'forward',
        listen: { host: INSIDE, port: FORWARD_PORT },
        destinations: { allow: ['192.0.2.0/24'], deny: [DENIED], ports: [21, FTPSRV_PORT] },
        externalAddress: INSIDE,
        passivePorts: { min: 50000, max: 50099 },
        activePorts: { min: 50100, max: 50199 },
      },
      {
        name: 'transparent',
        role: 'transparent',
        listen: { host: INSIDE, port: TRANSPARENT_PORT },
        clients: { allow: ['203.0.113.0/24'], deny: [] },
        destinations: { allow: ['0.0.0.0/0'], deny: [DENIED], ports: [21, FTPSRV_PORT] },
        externalAddress: INSIDE,
        passivePorts: { min: 50200, max: 50299 },
        activePorts: { min: 50300, max: 50399 },
      },
    ],
  };
}

/** Raw control lines from the client namespace: the last line of each reply (greeting first), "(closed)" at EOF. */
const PROBE = `
import socket, sys
host, port, lines = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
s = socket.create_connection((host, port), timeout=10)
f = s.makefile('rb')
def reply():
    while True:
        l = f.readline().decode('latin1').rstrip('\\r\\n')
        if not l: return '(closed)'
        if len(l) >= 4 and l[:3].isdigit() and l[3] == ' ': return l
print(reply(), flush=True)
for line in lines:
    s.sendall((line + '\\r\\n').encode('latin1'))
    print(reply(), flush=True)
print(reply() if lines == [] else '', flush=True)
`;

describe.skipIf(outboundPrereq().skip)('outbound sites (issue 15): clients inside, servers outside', () => {
  let server: RunningServer | undefined;
  let gateway: RunningGateway | undefined;
  let ftpSrv: ChildProcess | undefined;
  let hostsDir = '';
  const control: { active?: ClientResult; passive?: ClientResult } = {};

  const suite = useE2eSuite({
    prereq: outboundPrereq(),
    workPrefix: 'ftpalg-e2e-outbound-',
    hookTimeoutMs: HOOK_TIMEOUT_MS,
    layout: 'outbound',
  });
  const t = (): Topology => suite.t();

  beforeAll(async () => {
    assertPrereq(outboundPrereq());
    const root = suite.root;
    if (root === undefined) throw new Error('no root');
    server = await startServer('vsftpd', t(), root.dir);
    await writeFile(join(suite.work, 'up.bin'), FILES['1k.bin']);
    const srv = t().spawn('server', process.execPath, [FTPSRV_SCRIPT, root.dir, ADDR.server, String(FTPSRV_PORT)]);
    ftpSrv = srv;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`ftp-srv did not start: ${out}`)), 20_000);
      srv.stdout?.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      srv.stderr?.setEncoding('utf8').on('data', (d: string) => (out += d));
    });
    // The negative control: straight through the NAT, no gateway yet.
    const direct = (mode: Mode): Promise<ClientResult> =>
      runClient(t().ns.client, {
        client: 'curl',
        mode,
        op: 'get',
        target: { host: ADDR.server, port: 21, user: server?.user ?? '', password: server?.password ?? '' },
        remote: remotePath('1k.bin'),
        local: join(suite.work, `direct-${mode}.bin`),
        timeoutMs: 20_000,
      });
    control.active = await direct('port');
    control.passive = await direct('pasv');
    // The edge's resolver for the forward site's host names (ip netns exec mounts /etc/netns/<ns>/hosts).
    hostsDir = join('/etc/netns', t().ns.edge);
    await mkdir(hostsDir, { recursive: true });
    await writeFile(join(hostsDir, 'hosts'), HOSTS);
    // The generated ruleset (redirect for the transparent site, inbound filter), then the gateway.
    const config = outboundConfig();
    const file = join(suite.work, 'gateway.json');
    await writeFile(file, JSON.stringify(config));
    const rules = await run(process.execPath, [GATEWAY_CLI, '--nftables', '--config', file]);
    if (rules.code !== 0) throw new Error(`--nftables failed: ${rules.stderr}`);
    await writeFile(join(suite.work, 'rules.nft'), rules.stdout);
    const loaded = await t().exec('edge', 'nft', ['-f', join(suite.work, 'rules.nft')]);
    if (loaded.code !== 0) throw new Error(`nft -f failed: ${loaded.stderr}\n${rules.stdout}`);
    gateway = await startGateway(t(), config);
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await gateway?.stop();
    await server?.stop();
    if (ftpSrv !== undefined) await stopChild(ftpSrv);
    if (hostsDir !== '') await rm(hostsDir, { recursive: true, force: true });
  }, HOOK_TIMEOUT_MS);

  const why = (r: ClientResult) => `${describeResult(r)}\n${suite.gatewayLog(40)}`;

  it('negative control: without the gateway, active mode from inside fails; passive through the NAT works', () => {
    const active = control.active as ClientResult;
    const passive = control.passive as ClientResult;
    expect(active.code, describeResult(active)).not.toBe(0);
    expect(usedMode(active)).toBe(true);
    expect(passive.code, describeResult(passive)).toBe(0);
  });

  it('no FTP conntrack helper is attached to any flow on the edge', async () => {
    const ruleset = await t().exec('edge', 'nft', ['list', 'ruleset']);
    expect(ruleset.stdout).not.toMatch(/ct helper/);
    const flows = await t().exec('edge', 'conntrack', ['-L']);
    expect(flows.stdout).not.toMatch(/helper=ftp/);
  });

  type Site = 'forward' | 'transparent';
  const CASES: [Site, ClientKind, Mode][] = [];
  for (const site of ['forward', 'transparent'] as const) {
    for (const client of ['curl', 'lftp', 'ftplib'] as const) {
      for (const mode of ['pasv', 'epsv', 'port', 'eprt'] as const) {
        // lftp 4.9 sends PASV through ftp:proxy whatever ftp:prefer-epsv says (seen in its transcript).
        const lftpProxyEpsv = site === 'forward' && client === 'lftp' && mode === 'epsv';
        if (unsupported(client, mode) === undefined && !lftpProxyEpsv) CASES.push([site, client, mode]);
      }
    }
  }

  const request = (site: Site, client: ClientKind, mode: Mode, rest: Pick<ClientRequest, 'op' | 'remote' | 'local'>): ClientRequest => ({
    client,
    mode,
    ...rest,
    target: { host: ADDR.server, port: 21, user: server?.user ?? '', password: server?.password ?? '' },
    proxy: site === 'forward' ? { host: INSIDE, port: FORWARD_PORT } : undefined,
  });

  it.each(CASES)('%s site, %s, %s: get 8 MiB byte-exact', async (site, client, mode) => {
    const local = join(suite.work, `${site}-${client}-${mode}.bin`);
    const r = await runClient(t().ns.client, request(site, client, mode, { op: 'get', remote: remotePath('8m.bin'), local }));
    expect(r.code, why(r)).toBe(0);
    expect(usedMode(r), why(r)).toBe(true);
    expect(await sha256File(local)).toBe(expectedSha('8m.bin'));
    const pasv = r.transcript.find((l) => l.dir === 'received' && l.line.startsWith('227'));
    // A forward site answers with its own pinhole; a transparent one passes the server's reply on.
    if (pasv !== undefined) expect(pasv.line).toContain(site === 'forward' ? '(203,0,113,1,' : '(192,0,2,10,');
  }, TEST_TIMEOUT_MS);

  it.each(CASES.filter(([, client]) => client === 'curl'))('%s site, %s, %s: put and list', async (site, client, mode) => {
    const name = `${site}-${mode}.bin`;
    const put = await runClient(t().ns.client, request(site, client, mode, { op: 'put', remote: uploadPath(name), local: join(suite.work, 'up.bin') }));
    expect(put.code, why(put)).toBe(0);
    expect(await sha256File(suite.root?.uploaded(name) ?? '')).toBe(expectedSha('1k.bin'));
    const list = await runClient(t().ns.client, request(site, client, mode, { op: 'list', remote: '/pub/' }));
    expect(list.code, why(list)).toBe(0);
    for (const file of Object.keys(FILES)) expect(list.listing.join('\n')).toContain(file);
  }, TEST_TIMEOUT_MS);

  // ftp-srv: curl cannot carry a port in `-u user@host:port`, so through the forward site it is lftp and ftplib.
  const SRV_CASES = CASES.filter(([site, client, mode]) => (site === 'transparent' || client !== 'curl') && (client !== 'lftp' || mode === 'pasv'));
  it.each(SRV_CASES)('ftp-srv outside, %s site, %s, %s: get 1 KiB byte-exact', async (site, client, mode) => {
    const local = join(suite.work, `srv-${site}-${client}-${mode}.bin`);
    const r = await runClient(t().ns.client, {
      ...request(site, client, mode, { op: 'get', remote: remotePath('1k.bin'), local }),
      target: { host: ADDR.server, port: FTPSRV_PORT, user: 'anonymous', password: 'e2e' },
    });
    expect(r.code, why(r)).toBe(0);
    expect(usedMode(r), why(r)).toBe(true);
    expect(await sha256File(local)).toBe(expectedSha('1k.bin'));
  }, TEST_TIMEOUT_MS);

  it('forward site: a host name resolved by the edge (USER anonymous@ftp.e2e.example)', async () => {
    const local = join(suite.work, 'by-name.bin');
    const r = await runClient(t().ns.client, {
      ...request('forward', 'curl', 'epsv', { op: 'get', remote: remotePath('1k.bin'), local }),
      target: { host: 'ftp.e2e.example', port: 21, user: server?.user ?? '', password: server?.password ?? '' },
    });
    expect(r.code, why(r)).toBe(0);
    expect(await sha256File(local)).toBe(expectedSha('1k.bin'));
  }, TEST_TIMEOUT_MS);

  it('the server sees only the edge\'s external address, never an inside one', async () => {
    const logs = (await server?.logs()) ?? '';
    expect(logs).toContain(`Client "${EXTERNAL}"`);
    expect(logs).not.toContain(ADDR.client);
  });

  const probe = async (host: string, port: number, ...lines: string[]) => {
    const r = await t().exec('client', 'python3', ['-c', PROBE, host, String(port), ...lines], { timeoutMs: 20_000 });
    return r.stdout.split('\n').filter((l) => l !== '');
  };

  it.each([
    ['loopback', 'anonymous@127.0.0.1', /^530 .*loopback/],
    ['169.254.169.254', 'anonymous@169.254.169.254', /^530 .*link-local/],
    ['a host name resolving into link-local', 'anonymous@metadata.e2e.example', /^530 .*link-local/],
    ['denied', `anonymous@${DENIED}`, /^530 .*denied/],
    ['outside the allow list', 'anonymous@198.51.100.7', /^530 .*allowed list/],
    ['a port not allowed', `anonymous@${ADDR.server}:22`, /^530 .*port/],
  ])('forward site refuses %s with 530', async (_name, user, reply) => {
    const lines = await probe(INSIDE, FORWARD_PORT, `USER ${user}`);
    expect(lines[0]).toBe('220 ftp-alg ready.');
    expect(lines[1]).toMatch(reply);
  });

  it.each([
    ['denied', DENIED, 'destination-denied'],
    ['169.254.169.254 (allow 0.0.0.0/0)', '169.254.169.254', 'destination-link-local'],
  ])('transparent site refuses %s with 421, a log line and no connection', async (_name, host, reason) => {
    const lines = await probe(host, 21);
    expect(lines[0]).toMatch(/^421 /);
    expect(gateway?.output()).toContain(`"reason":"${reason}"`);
  });

  it('transparent site: a connection without an original destination (dialled the gateway itself) gets 421', async () => {
    const lines = await probe(INSIDE, TRANSPARENT_PORT);
    expect(lines[0]).toMatch(/^421 /);
    expect(gateway?.output()).toContain('"reason":"no-original-destination"');
  });
});

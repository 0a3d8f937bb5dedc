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
//
// The same over IPv6 (issue 9's pinholes untested there before): "forward6" and
// "transparent6" on [2001:db8:1::1], vsftpd on [2001:db8:2::10], the edge
// masquerading out of 2001:db8:2::1; EPRT straight through the NAT fails, EPSV
// and EPRT through either site pass byte-exact (forward: USER u@[2001:db8:2::10]).
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
  type Family,
  type Mode,
} from './lib/clients.js';
import { FILES, expectedSha, remotePath, uploadPath } from './lib/fixtures.js';
import { jsonLines, startGateway, type OutboundGatewayConfig, type RunningGateway } from './lib/gateway.js';
import { loadGeneratedRules, outboundRequest, PY_CONTROL, type OutboundSite as Site } from './lib/outbound.js';
import { assertPrereq, checkPrereq, IN_CI } from './lib/prereq.js';
import { startServer, type RunningServer } from './lib/servers.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR, stopChild, type Topology } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 60_000;
const FORWARD_PORT = 2121;
const TRANSPARENT_PORT = 2122;
const INSIDE = ADDR.edgePublic; // the edge's inside address (clients' side)
const EXTERNAL = ADDR.edgePrivate; // the edge's outside address (servers' side)
/** Per family: the edge's inside and outside addresses, the server, and the client's own address. */
const NET = {
  4: { inside: INSIDE, external: EXTERNAL, server: ADDR.server, client: ADDR.client },
  6: { inside: ADDR.edge6, external: ADDR.edgePrivate6, server: ADDR.server6, client: ADDR.client6 },
} as const;
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
      {
        name: 'forward6',
        role: 'forward',
        listen: { host: NET[6].inside, port: FORWARD_PORT },
        destinations: { allow: ['2001:db8:2::/64'], ports: [21] },
        externalAddress: NET[6].inside,
        passivePorts: { min: 50400, max: 50499 },
        activePorts: { min: 50500, max: 50599 },
      },
      {
        name: 'transparent6',
        role: 'transparent',
        listen: { host: NET[6].inside, port: TRANSPARENT_PORT },
        clients: { allow: ['2001:db8:1::/64'], deny: [] },
        destinations: { allow: ['2001:db8:2::/64'], ports: [21] },
        externalAddress: NET[6].inside,
        passivePorts: { min: 50600, max: 50699 },
        activePorts: { min: 50700, max: 50799 },
      },
    ],
  };
}

/** Raw control lines from the client namespace: the last line of each reply (greeting first), "(closed)" at EOF. */
const PROBE = `${PY_CONTROL}
import sys
host, port, lines = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
control(host, port, 10)
print(reply(), flush=True)
for line in lines:
    print(cmd(line), flush=True)
print(reply() if lines == [] else '', flush=True)
`;

describe.skipIf(outboundPrereq().skip)('outbound sites (issue 15): clients inside, servers outside', () => {
  let server: RunningServer | undefined;
  /** vsftpd on the server's IPv6 address. */
  let server6: RunningServer | undefined;
  let gateway: RunningGateway | undefined;
  let ftpSrv: ChildProcess | undefined;
  let hostsDir = '';
  const control: Record<Family, { active?: ClientResult; passive?: ClientResult; log?: Set<string> }> = { 4: {}, 6: {} };

  const suite = useE2eSuite({
    prereq: outboundPrereq(),
    workPrefix: 'ftpalg-e2e-outbound-',
    hookTimeoutMs: HOOK_TIMEOUT_MS,
    layout: 'outbound',
  });
  const t = (): Topology => suite.t();
  const target = (family: Family) => {
    const s = family === 4 ? server : server6;
    return { host: NET[family].server, port: 21, user: s?.user ?? '', password: s?.password ?? '' };
  };

  beforeAll(async () => {
    assertPrereq(outboundPrereq());
    const root = suite.root;
    if (root === undefined) throw new Error('no root');
    server = await startServer('vsftpd', t(), root.dir);
    server6 = await startServer('vsftpd', t(), root.dir, { host: ADDR.server6 });
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
    const direct = (mode: Mode, family: Family): Promise<ClientResult> =>
      runClient(t().ns.client, {
        client: 'curl',
        mode,
        op: 'get',
        target: target(family),
        remote: remotePath('1k.bin'),
        local: join(suite.work, `direct-${mode}.bin`),
        timeoutMs: 20_000,
      });
    control[4] = { active: await direct('port', 4), passive: await direct('pasv', 4) };
    control[6] = { active: await direct('eprt', 6), passive: await direct('epsv', 6) };
    // The IPv6 control's EPRT names the inside address: the server's log from here on must not.
    control[6].log = new Set(((await server6.logs()) ?? '').split('\n'));
    // The edge's resolver for the forward site's host names (ip netns exec mounts /etc/netns/<ns>/hosts).
    hostsDir = join('/etc/netns', t().ns.edge);
    await mkdir(hostsDir, { recursive: true });
    await writeFile(join(hostsDir, 'hosts'), HOSTS);
    // The generated ruleset (redirect for the transparent site, inbound filter), then the gateway.
    const config = outboundConfig();
    await loadGeneratedRules(t(), suite.work, config);
    gateway = await startGateway(t(), config);
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await gateway?.stop();
    await server?.stop();
    await server6?.stop();
    if (ftpSrv !== undefined) await stopChild(ftpSrv);
    if (hostsDir !== '') await rm(hostsDir, { recursive: true, force: true });
  }, HOOK_TIMEOUT_MS);

  const why = (r: ClientResult) => `${describeResult(r)}\n${suite.gatewayLog(40)}`;

  it.each([4, 6] as const)('negative control, IPv%s: without the gateway, active mode from inside fails; passive through the NAT works', (family) => {
    const active = control[family].active as ClientResult;
    const passive = control[family].passive as ClientResult;
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

  // IPv6 names no address in PASV/PORT: EPSV and EPRT there (RFC 2428).
  const CASES: [Site, ClientKind, Mode, Family][] = [];
  for (const family of [4, 6] as const) {
    for (const site of ['forward', 'transparent'] as const) {
      for (const client of ['curl', 'lftp', 'ftplib'] as const) {
        for (const mode of ['pasv', 'epsv', 'port', 'eprt'] as const) {
          // lftp 4.9 sends PASV through ftp:proxy whatever ftp:prefer-epsv says on IPv4 (seen in its transcript).
          const lftpProxyEpsv = family === 4 && site === 'forward' && client === 'lftp' && mode === 'epsv';
          const v6 = family === 4 || mode === 'epsv' || mode === 'eprt';
          if (v6 && unsupported(client, mode, family) === undefined && !lftpProxyEpsv) CASES.push([site, client, mode, family]);
        }
      }
    }
  }

  const request = (site: Site, client: ClientKind, mode: Mode, family: Family, rest: Pick<ClientRequest, 'op' | 'remote' | 'local'>): ClientRequest =>
    outboundRequest(site, client, mode, target(family), { host: NET[family].inside, port: FORWARD_PORT }, rest);

  it.each(CASES)('%s site, %s, %s, IPv%s: get 8 MiB byte-exact', async (site, client, mode, family) => {
    const local = join(suite.work, `${site}-${client}-${mode}-${family}.bin`);
    const r = await runClient(t().ns.client, request(site, client, mode, family, { op: 'get', remote: remotePath('8m.bin'), local }));
    expect(r.code, why(r)).toBe(0);
    expect(usedMode(r), why(r)).toBe(true);
    expect(await sha256File(local)).toBe(expectedSha('8m.bin'));
    const pasv = r.transcript.find((l) => l.dir === 'received' && l.line.startsWith('227'));
    // A forward site answers with its own pinhole; a transparent one passes the server's reply on.
    if (pasv !== undefined) expect(pasv.line).toContain(site === 'forward' ? '(203,0,113,1,' : '(192,0,2,10,');
    // An IPv6 server is named in brackets (curl, ftplib) or whole (lftp, which leaves port 21 out).
    const user = r.transcript.find((l) => l.dir === 'sent' && l.line.startsWith('USER'))?.line;
    if (site === 'forward' && family === 6) expect(user).toBe(`USER anonymous@${client === 'lftp' ? ADDR.server6 : `[${ADDR.server6}]`}`);
  }, TEST_TIMEOUT_MS);

  it.each(CASES.filter(([, client]) => client === 'curl'))('%s site, %s, %s, IPv%s: put and list', async (site, client, mode, family) => {
    const name = `${site}-${mode}-${family}.bin`;
    const put = await runClient(t().ns.client, request(site, client, mode, family, { op: 'put', remote: uploadPath(name), local: join(suite.work, 'up.bin') }));
    expect(put.code, why(put)).toBe(0);
    expect(usedMode(put), why(put)).toBe(true);
    expect(await sha256File(suite.root?.uploaded(name) ?? '')).toBe(expectedSha('1k.bin'));
    const list = await runClient(t().ns.client, request(site, client, mode, family, { op: 'list', remote: '/pub/' }));
    expect(list.code, why(list)).toBe(0);
    for (const file of Object.keys(FILES)) expect(list.listing.join('\n')).toContain(file);
  }, TEST_TIMEOUT_MS);

  it.each(['pasv', 'epsv'] as const)("transparent site, direct %s: each transfer's end is a `transfer done` line (command, time, the server's reply; no bytes: the gateway never sees them)", async (mode) => {
    const direct = () => jsonLines(gateway?.output() ?? '').filter((l) => l.msg === 'transfer done' && l.flow === 'direct');
    const before = direct().length;
    const r = await runClient(t().ns.client, request('transparent', 'curl', mode, 4, { op: 'get', remote: remotePath('1k.bin'), local: join(suite.work, `direct-line-${mode}.bin`) }));
    expect(r.code, why(r)).toBe(0);
    // The line is written before the 226 is passed on; reading the gateway's output may lag the client a little.
    const deadline = Date.now() + 5_000;
    while (direct().length === before && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    const lines = direct().slice(before);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ command: 'RETR', flow: 'direct', reply: 226 });
    expect(lines[0]).not.toHaveProperty('downBytes');
  }, TEST_TIMEOUT_MS);

  it('transparent site, direct pasv: a RETR the server refuses (550, no data connection) is no transfer and has no line', async () => {
    const direct = () => jsonLines(gateway?.output() ?? '').filter((l) => l.msg === 'transfer done' && l.flow === 'direct');
    const before = direct().length;
    const r = await runClient(t().ns.client, request('transparent', 'curl', 'pasv', 4, { op: 'get', remote: '/pub/absent.bin', local: join(suite.work, 'absent.bin') }));
    expect(r.code, why(r)).not.toBe(0);
    expect(r.transcript.some((l) => l.dir === 'received' && l.line.startsWith('550')), why(r)).toBe(true);
    // A later transfer's line shows the gateway's output has been read past this session.
    const ok = await runClient(t().ns.client, request('transparent', 'curl', 'pasv', 4, { op: 'get', remote: remotePath('1k.bin'), local: join(suite.work, 'after-absent.bin') }));
    expect(ok.code, why(ok)).toBe(0);
    const deadline = Date.now() + 5_000;
    while (direct().length === before && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(direct().slice(before).map((l) => l.reply)).toEqual([226]);
  }, TEST_TIMEOUT_MS);

  // ftp-srv: curl cannot carry a port in `-u user@host:port`, so through the forward site it is lftp and ftplib.
  const SRV_CASES = CASES.filter(([site, client, mode, family]) => family === 4 && (site === 'transparent' || client !== 'curl') && (client !== 'lftp' || mode === 'pasv'));
  it.each(SRV_CASES)('ftp-srv outside, %s site, %s, %s: get 1 KiB byte-exact', async (site, client, mode, family) => {
    const local = join(suite.work, `srv-${site}-${client}-${mode}.bin`);
    const r = await runClient(t().ns.client, {
      ...request(site, client, mode, family, { op: 'get', remote: remotePath('1k.bin'), local }),
      target: { host: ADDR.server, port: FTPSRV_PORT, user: 'anonymous', password: 'e2e' },
    });
    expect(r.code, why(r)).toBe(0);
    expect(usedMode(r), why(r)).toBe(true);
    expect(await sha256File(local)).toBe(expectedSha('1k.bin'));
  }, TEST_TIMEOUT_MS);

  it('forward site: a host name resolved by the edge (USER anonymous@ftp.e2e.example)', async () => {
    const local = join(suite.work, 'by-name.bin');
    const r = await runClient(t().ns.client, {
      ...request('forward', 'curl', 'epsv', 4, { op: 'get', remote: remotePath('1k.bin'), local }),
      target: { host: 'ftp.e2e.example', port: 21, user: server?.user ?? '', password: server?.password ?? '' },
    });
    expect(r.code, why(r)).toBe(0);
    expect(await sha256File(local)).toBe(expectedSha('1k.bin'));
  }, TEST_TIMEOUT_MS);

  it.each([4, 6] as const)('IPv%s: the server sees only the edge\'s external address, never an inside one', async (family) => {
    const { external, client } = NET[family];
    const seen = control[family].log ?? new Set<string>();
    const logs = ((await (family === 4 ? server : server6)?.logs()) ?? '').split('\n').filter((l) => !seen.has(l));
    expect(logs.filter((l) => l.includes(`Client "${external}"`)).length).toBeGreaterThan(CASES.filter((c) => c[3] === family).length);
    expect(logs.filter((l) => l.includes('Client "') && !l.includes(`Client "${external}"`))).toEqual([]);
    expect(logs.filter((l) => l.includes(client))).toEqual([]);
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

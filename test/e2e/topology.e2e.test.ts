// The e2e topology is real: the client cannot reach the private network, the
// edge does not forward, and each real server works when reached directly
// from the edge with each real client in each mode. The gateway is not
// involved here; this file proves the harness that passive.e2e.test.ts uses.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  describeResult,
  runClient,
  sha256File,
  usedMode,
  type ClientKind,
  type Mode,
  type Target,
} from './lib/clients.js';
import { expectedSha, remotePath, uploadPath, type FileName } from './lib/fixtures.js';
import { assertPrereq, suitePrereq } from './lib/prereq.js';
import { SERVER_KINDS, startServer, type RunningServer, type ServerKind } from './lib/servers.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 60_000;

const prereq = suitePrereq('topology.e2e');

interface DirectCase {
  client: ClientKind;
  mode: Mode;
  file: FileName;
}

// Every client in every mode it supports over IPv4, on files of each size.
const DOWNLOADS: readonly DirectCase[] = [
  { client: 'curl', mode: 'pasv', file: '8m.bin' },
  { client: 'curl', mode: 'epsv', file: '8m.bin' },
  { client: 'curl', mode: 'port', file: '8m.bin' },
  { client: 'curl', mode: 'eprt', file: '8m.bin' },
  { client: 'lftp', mode: 'pasv', file: '1k.bin' },
  { client: 'lftp', mode: 'epsv', file: '1k.bin' },
  { client: 'lftp', mode: 'port', file: '1k.bin' },
  { client: 'ftplib', mode: 'pasv', file: 'empty.bin' },
  { client: 'ftplib', mode: 'epsv', file: '1k.bin' },
  { client: 'ftplib', mode: 'port', file: '1k.bin' },
  { client: 'ftplib', mode: 'eprt', file: '1k.bin' },
];

const UPLOADS: readonly DirectCase[] = [
  { client: 'curl', mode: 'epsv', file: '8m.bin' },
  { client: 'lftp', mode: 'pasv', file: '1k.bin' },
  { client: 'ftplib', mode: 'port', file: '1k.bin' },
];

describe.skipIf(prereq.skip)('e2e topology and servers without the gateway', () => {
  const env = useE2eSuite({ prereq, workPrefix: 'ftpalg-e2e-topo-', hookTimeoutMs: HOOK_TIMEOUT_MS });
  const { t } = env;

  it('gives the client no route to the private network', async () => {
    const r = await t().exec('client', 'ip', ['route', 'get', ADDR.server]);
    expect(r.code, r.stdout + r.stderr).not.toBe(0);
    expect(r.stderr).toMatch(/unreachable/i);
    const routes = await t().exec('client', 'ip', ['-4', 'route', 'show']);
    expect(routes.stdout).not.toMatch(/default|192\.0\.2\./);
  });

  it('turns forwarding off in the edge', async () => {
    const r = await t().exec('edge', 'sysctl', ['-n', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding']);
    expect(r.stdout.trim().split('\n')).toEqual(['0', '0']);
  });

  it('lets the client reach the edge over IPv4 and IPv6', async () => {
    // Nothing listens on the edge: "connection refused" proves the packets
    // arrive (unreachable or a timeout would not).
    for (const host of [ADDR.edgePublic, `[${ADDR.edge6}]`]) {
      const r = await t().exec('client', 'curl', ['-sS', '-v', '--connect-timeout', '5', `ftp://${host}:21/`]);
      expect(r.code, `${host}: ${r.stderr}`).toBe(7);
      expect(r.stderr).toMatch(/refused/i);
    }
  });

  describe.each(SERVER_KINDS)('%s', (kind: ServerKind) => {
    let server: RunningServer | undefined;
    let target: Target;

    beforeAll(async () => {
      assertPrereq(prereq);
      server = await startServer(kind, t(), env.root?.dir ?? '');
      target = { host: server.host, port: server.port, user: server.user, password: server.password };
    }, HOOK_TIMEOUT_MS);

    afterAll(async () => {
      await server?.stop();
    }, HOOK_TIMEOUT_MS);

    const failure = async (text: string): Promise<string> => `${text}\n${(await server?.logs()) ?? ''}`;

    it('cannot be reached from the client namespace', async () => {
      const r = await runClient(t().ns.client, {
        client: 'curl',
        mode: 'pasv',
        op: 'get',
        target,
        remote: remotePath('1k.bin'),
        local: join(env.work, `${kind}-unreachable.bin`),
        timeoutMs: 15_000,
      });
      expect(r.code, describeResult(r)).toBe(7); // CURLE_COULDNT_CONNECT
      expect(r.stderr).toMatch(/unreachable/i);
      expect(await sha256File(join(env.work, `${kind}-unreachable.bin`))).toBeNull();
    }, TEST_TIMEOUT_MS);

    it.each(DOWNLOADS)(
      'edge downloads directly: $client $mode $file',
      async ({ client, mode, file }) => {
        const local = join(env.work, `${kind}-${client}-${mode}-${file}`);
        const r = await runClient(t().ns.edge, { client, mode, op: 'get', target, remote: remotePath(file), local });
        const msg = await failure(describeResult(r));
        expect(r.code, msg).toBe(0);
        expect(usedMode(r), msg).toBe(true);
        expect(await sha256File(local), msg).toBe(expectedSha(file));
      },
      TEST_TIMEOUT_MS,
    );

    it.each(UPLOADS)(
      'edge uploads directly: $client $mode $file',
      async ({ client, mode, file }) => {
        const name = `${kind}-${client}-${mode}-${file}`;
        const local = join(env.root?.dir ?? '', 'pub', file);
        const r = await runClient(t().ns.edge, { client, mode, op: 'put', target, remote: uploadPath(name), local });
        const msg = await failure(describeResult(r));
        expect(r.code, msg).toBe(0);
        expect(usedMode(r), msg).toBe(true);
        expect(await sha256File(env.root?.uploaded(name) ?? ''), msg).toBe(expectedSha(file));
      },
      TEST_TIMEOUT_MS,
    );

    it.each(['curl', 'lftp', 'ftplib'] as const)(
      'edge lists /pub directly: %s',
      async (client) => {
        const r = await runClient(t().ns.edge, { client, mode: 'pasv', op: 'list', target, remote: '/pub' });
        const msg = await failure(describeResult(r));
        expect(r.code, msg).toBe(0);
        expect(r.listing.join('\n'), msg).toContain('8m.bin');
      },
      TEST_TIMEOUT_MS,
    );
  });
});

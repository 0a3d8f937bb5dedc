// Issue 17: upstream health against a real server, in the NAT namespaces.
//
// client ns (203.0.113.10) ──▶ gateway in edge ns (203.0.113.1:21 and :2121)
//                               ──▶ ProFTPD in server ns (192.0.2.10:21)
//
// - Site "probed" (port 21) probes its idle upstream: ProFTPD's command log
//   must show each probe as a session that said QUIT and got 221, nothing else.
// - Site "pool" (port 2121) has two members, 192.0.2.11 first (an address of
//   the server namespace where nothing listens: connections are refused) and
//   ProFTPD: every curl download through it must succeed byte-exact, and the
//   dead member must be ejected by the sessions' own failures.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeResult, runClient, sha256File, type Target } from './lib/clients.js';
import { expectedSha, remotePath } from './lib/fixtures.js';
import { e2eConfig, type RunningGateway, startGateway } from './lib/gateway.js';
import { assertPrereq, suitePrereq } from './lib/prereq.js';
import { startServer, type RunningServer } from './lib/servers.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 60_000;
const DEAD_MEMBER = '192.0.2.11';
const POOL_PORT = 2121;
const PROBE_EVERY_MS = 400;

const prereq = suitePrereq('health.e2e', { gateway: true });

/** The gateway's JSON log lines. */
function logLines(gw: RunningGateway | undefined): Record<string, unknown>[] {
  return (gw?.output() ?? '').split('\n').flatMap((line) => {
    try {
      const v: unknown = JSON.parse(line);
      return typeof v === 'object' && v !== null ? [v as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}

/** `peer command code` lines of ProFTPD's command log. */
async function commandLog(server: RunningServer | undefined): Promise<string[]> {
  const logs = (await server?.logs()) ?? '';
  const at = logs.indexOf('proftpd-commands.log\n');
  if (at === -1) return [];
  const body = logs.slice(logs.indexOf('\n', at) + 1);
  return body.split('\n').filter((l) => /^\S+ [A-Z]+ \d{3}$/.test(l.trim()));
}

describe.skipIf(prereq.skip)('upstream health end to end (issue 17)', () => {
  const env = useE2eSuite({ prereq, workPrefix: 'ftpalg-e2e-health-', hookTimeoutMs: HOOK_TIMEOUT_MS });
  const { t } = env;
  let server: RunningServer | undefined;
  let gateway: RunningGateway | undefined;

  beforeAll(async () => {
    assertPrereq(prereq);
    server = await startServer('proftpd', t(), env.root?.dir ?? '');
    const dead = await t().exec('server', 'ip', ['addr', 'add', `${DEAD_MEMBER}/24`, 'dev', 'to-edge']);
    if (dead.code !== 0) throw new Error(`cannot add ${DEAD_MEMBER}: ${dead.stderr}`);
    const config = e2eConfig();
    const probed = config.sites[0];
    if (probed === undefined) throw new Error('no e2e site');
    config.sites = [
      { ...probed, name: 'probed', upstream: { host: ADDR.server, port: 21, health: { idleProbeMs: PROBE_EVERY_MS } } },
      {
        ...probed,
        name: 'pool',
        listen: { host: ADDR.edgePublic, port: POOL_PORT },
        upstream: { hosts: [DEAD_MEMBER, ADDR.server], port: 21 },
        passivePorts: { min: 50200, max: 50299 },
        activePorts: { min: 50300, max: 50399 },
      },
    ];
    gateway = await startGateway(t(), config);
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await gateway?.stop();
    await server?.stop();
  }, HOOK_TIMEOUT_MS);

  it(
    "ProFTPD's log shows every probe as a session that said QUIT and got 221",
    async () => {
      const deadline = Date.now() + 20_000;
      let lines = await commandLog(server);
      while (lines.length < 3 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        lines = await commandLog(server);
      }
      expect(lines.length, (await server?.logs()) ?? '').toBeGreaterThanOrEqual(3);
      // Only probes have reached the server so far: each is QUIT answered 221, from the edge's private address.
      expect(new Set(lines.map((l) => l.trim()))).toEqual(new Set([`${ADDR.edgePrivate} QUIT 221`]));
      expect(logLines(gateway).filter((l) => l.msg === 'upstream health changed')).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a pool of two with one member refusing connections: every client is served byte-exact, and the dead member is ejected',
    async () => {
      const target: Target = { host: ADDR.edgePublic, port: POOL_PORT, user: server?.user ?? '', password: server?.password ?? '' };
      for (let i = 0; i < 5; i++) {
        const local = `${env.work}/pool-${i}.bin`;
        const r = await runClient(t().ns.client, { client: 'curl', mode: 'pasv', op: 'get', target, remote: remotePath('1k.bin'), local });
        expect(r.code, `${describeResult(r)}\n${env.gatewayLog(40)}`).toBe(0);
        expect(await sha256File(local)).toBe(expectedSha('1k.bin'));
      }
      const changes = logLines(gateway).filter((l) => l.msg === 'upstream health changed');
      expect(changes).toEqual([expect.objectContaining({ site: 'pool', upstream: DEAD_MEMBER, from: 'up', to: 'ejected', reason: 'connect-refused' })]);
      const retries = logLines(gateway).filter((l) => l.msg === 'upstream failed, trying another');
      expect(retries).toHaveLength(3); // consecutiveFailures: the sessions that met the dead member, then no more
    },
    TEST_TIMEOUT_MS,
  );
});

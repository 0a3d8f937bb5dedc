// upstream.warm end to end: a site keeping two greeted connections to a real server (vsftpd, pure-ftpd with
// its multi-line greeting, proftpd) serves curl, lftp and ftplib sessions on them byte-exact; a session after
// the warm connections have aged out (warmMaxAgeMs) is served by their replacements; the gateway's counters
// show the sessions took warm connections, and no warm connection failed.
//
// client ns (203.0.113.10) ──▶ gateway in edge ns (203.0.113.1:21) ──▶ server ns (192.0.2.10:21)
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { describeResult, runClient, sha256File, type ClientKind } from './lib/clients.js';
import { expectedSha, remotePath, uploadPath } from './lib/fixtures.js';
import { e2eConfig, GATEWAY_PORT, jsonLines, startGateway, type RunningGateway } from './lib/gateway.js';
import { metricValue, scrapeMetrics } from './lib/kernelPlane.js';
import { assertPrereq, suitePrereq } from './lib/prereq.js';
import { SERVER_KINDS, startServer, type RunningServer, type ServerKind } from './lib/servers.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 60_000;
const WARM = 2;
const MAX_AGE_MS = 1_500;
const CLIENTS: readonly ClientKind[] = ['curl', 'lftp', 'ftplib'];

const prereq = suitePrereq('warm.e2e', { gateway: true });

describe.skipIf(prereq.skip)('warm upstream connections to real servers', () => {
  const env = useE2eSuite({ prereq, workPrefix: 'ftpalg-e2e-warm-', hookTimeoutMs: HOOK_TIMEOUT_MS });
  const { t } = env;

  describe.each(SERVER_KINDS)('%s', (kind: ServerKind) => {
    let server: RunningServer | undefined;
    let gateway: RunningGateway | undefined;
    const target = () => ({ host: ADDR.edgePublic, port: GATEWAY_PORT, user: server?.user ?? '', password: server?.password ?? '' });
    const metrics = async () => scrapeMetrics(t(), String(gateway?.metricsAddress()));
    const hits = async () => metricValue(await metrics(), 'ftp_alg_upstream_warm_takes_total', 'outcome="hit"');
    const ready = async () => metricValue(await metrics(), 'ftp_alg_upstream_warm_connections', `upstream="${ADDR.server}"`);
    const failed = (l: Record<string, unknown>) => l.msg === 'warm upstream connection failed; retrying with backoff';
    const detail = async () => `${env.gatewayLog(40)}\n${(await server?.logs()) ?? ''}`;

    /** Every warm connection ready again (the gauge), within a bound. */
    const waitReady = () => vi.waitFor(async () => expect(await ready()).toBeGreaterThanOrEqual(WARM), { timeout: 10_000, interval: 50 });

    beforeAll(async () => {
      assertPrereq(prereq);
      // The server first, so the gateway's first warm connections find it.
      server = await startServer(kind, t(), env.root?.dir ?? '');
      const config = e2eConfig();
      const site = config.sites[0];
      if (site === undefined) throw new Error('no site');
      config.metrics = { listen: '127.0.0.1:0' };
      config.sites = [{ ...site, upstream: { ...site.upstream, warm: WARM, warmMaxAgeMs: MAX_AGE_MS } }];
      gateway = await startGateway(t(), config);
    }, HOOK_TIMEOUT_MS);

    afterAll(async () => {
      await gateway?.stop();
      await server?.stop();
    }, HOOK_TIMEOUT_MS);

    it.each(CLIENTS)(
      '%s gets and puts byte-exact on warm connections',
      async (client) => {
        await waitReady();
        const before = await hits();
        const local = join(env.work, `${kind}-${client}-get.bin`);
        const got = await runClient(t().ns.client, { client, mode: 'pasv', op: 'get', target: target(), remote: remotePath('8m.bin'), local });
        expect(got.code, `${describeResult(got)}\n${await detail()}`).toBe(0);
        expect(await sha256File(local)).toBe(expectedSha('8m.bin'));
        await waitReady();
        const name = `${kind}-${client}-warm.bin`;
        const put = await runClient(t().ns.client, { client, mode: 'epsv', op: 'put', target: target(), remote: uploadPath(name), local: join(env.root?.dir ?? '', 'pub', '8m.bin') });
        expect(put.code, `${describeResult(put)}\n${await detail()}`).toBe(0);
        expect(await sha256File(env.root?.uploaded(name) ?? '')).toBe(expectedSha('8m.bin'));
        // lftp may open a second control connection of its own: at least one per transfer was warm.
        expect(await hits()).toBeGreaterThanOrEqual(before + 2);
      },
      TEST_TIMEOUT_MS,
    );

    it(
      'after the warm connections aged out, their replacements serve the next session',
      async () => {
        await waitReady();
        await new Promise((r) => setTimeout(r, MAX_AGE_MS * 2));
        await waitReady();
        const before = await hits();
        const local = join(env.work, `${kind}-aged.bin`);
        const r = await runClient(t().ns.client, { client: 'curl', mode: 'pasv', op: 'get', target: target(), remote: remotePath('1k.bin'), local });
        expect(r.code, `${describeResult(r)}\n${await detail()}`).toBe(0);
        expect(await sha256File(local)).toBe(expectedSha('1k.bin'));
        expect(await hits()).toBe(before + 1);
        expect(jsonLines(gateway?.output() ?? '').filter(failed), await detail()).toEqual([]);
      },
      TEST_TIMEOUT_MS,
    );
  });
});

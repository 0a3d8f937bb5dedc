// Issue 2: passive mode through the gateway, end to end.
//
// client ns (203.0.113.10) ──▶ gateway in edge ns (203.0.113.1:21)
//                               ──▶ real server in server ns (192.0.2.10:21)
//
// For each real server and each real client, PASV and EPSV downloads and
// uploads must arrive intact (sha256), the 227/229 the client sees must name
// the gateway's external address and a port of its passive range, and the
// same transfer straight to the server must fail (the client has no route).
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  describeResult,
  runClient,
  sha256File,
  usedMode,
  type ClientKind,
  type ClientResult,
  type Mode,
  type Target,
} from './lib/clients.js';
import { expectedSha, remotePath, uploadPath, type FileName } from './lib/fixtures.js';
import { GATEWAY_PASSIVE_PORTS, GATEWAY_PORT, startGateway } from './lib/gateway.js';
import { assertPrereq, suitePrereq } from './lib/prereq.js';
import { SERVER_KINDS, startServer, type RunningServer, type ServerKind } from './lib/servers.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 60_000;

const prereq = suitePrereq('passive.e2e', { gateway: true });

const CLIENTS: readonly ClientKind[] = ['curl', 'lftp', 'ftplib'];
const MODES: readonly Mode[] = ['pasv', 'epsv'];
type Transfer = 'get 8m' | 'get empty' | 'put 8m' | 'list';
const TRANSFERS: readonly Transfer[] = ['get 8m', 'put 8m', 'get empty', 'list'];

interface Case {
  client: ClientKind;
  mode: Mode;
  transfer: Transfer;
}
const CASES: Case[] = CLIENTS.flatMap((client) =>
  MODES.flatMap((mode) => TRANSFERS.map((transfer) => ({ client, mode, transfer }))),
);

interface Cell {
  server: ServerKind;
  client: ClientKind;
  column: string;
  ok: boolean;
  note: string;
}
const matrix: Cell[] = [];

/** The data address the client was told, from the last 227 or 229 it received. */
function advertised(r: ClientResult): { host: string | null; port: number } | null {
  for (const { dir, line } of [...r.transcript].reverse()) {
    if (dir !== 'received') continue;
    if (line.startsWith('227')) {
      const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(line);
      if (m === null) return null;
      const n = m.slice(1).map(Number);
      return { host: n.slice(0, 4).join('.'), port: (n[4] ?? 0) * 256 + (n[5] ?? 0) };
    }
    if (line.startsWith('229')) {
      const m = /\((.)\1\1(\d+)\1\)/.exec(line);
      return m === null || m[2] === undefined ? null : { host: null, port: Number(m[2]) };
    }
  }
  return null;
}

/** Every check of one transfer through the gateway; the first failure is the verdict. */
async function verdict(r: ClientResult, arrivedAt: string | null, want: FileName | null): Promise<string | null> {
  if (r.timedOut) return `timed out after ${r.ms} ms`;
  if (r.code !== 0) return `exit ${r.code ?? r.signal}`;
  if (!usedMode(r)) return `sent ${r.dataCommands.join(',') || 'no data command'}`;
  const adv = advertised(r);
  if (adv === null) return `no parsable ${r.request.mode === 'pasv' ? '227' : '229'} reply`;
  if (r.request.mode === 'pasv' && adv.host !== ADDR.edgePublic) return `227 names ${adv.host}`;
  if (adv.port < GATEWAY_PASSIVE_PORTS.min || adv.port > GATEWAY_PASSIVE_PORTS.max) {
    return `data port ${adv.port} outside ${GATEWAY_PASSIVE_PORTS.min}-${GATEWAY_PASSIVE_PORTS.max}`;
  }
  if (want !== null && arrivedAt !== null) {
    const got = await sha256File(arrivedAt);
    if (got === null) return 'nothing arrived';
    if (got !== expectedSha(want)) return 'sha256 mismatch';
  }
  if (r.request.op === 'list' && !r.listing.some((l) => l.includes('8m.bin'))) return 'listing lacks 8m.bin';
  return null;
}

function printMatrix(): void {
  const columns = [...new Set(matrix.map((c) => c.column))];
  const rows = [...new Set(matrix.map((c) => `${c.server} ${c.client}`))];
  const width = Math.max(14, ...columns.map((c) => c.length + 1));
  const lines = [`${'server client'.padEnd(20)}${columns.map((c) => c.padEnd(width)).join('')}`];
  for (const row of rows) {
    const cells = columns.map((col) => {
      const cell = matrix.find((c) => `${c.server} ${c.client}` === row && c.column === col);
      return (cell === undefined ? '-' : cell.ok ? 'pass' : 'FAIL').padEnd(width);
    });
    lines.push(`${row.padEnd(20)}${cells.join('')}`);
  }
  const failures = matrix.filter((c) => !c.ok).map((c) => `  ${c.server} ${c.client} ${c.column}: ${c.note}`);
  console.log(
    `\npassive e2e matrix (server × client × mode/transfer):\n${lines.join('\n')}\n` +
      (failures.length > 0 ? `failures:\n${failures.join('\n')}\n` : 'all passed\n'),
  );
}

describe.skipIf(prereq.skip)('gateway passive mode end to end (issue 2)', () => {
  const env = useE2eSuite({
    prereq,
    workPrefix: 'ftpalg-e2e-passive-',
    hookTimeoutMs: HOOK_TIMEOUT_MS,
    startGateway: (topo) => startGateway(topo),
    report: (gateway) => {
      if (matrix.length > 0) printMatrix();
      if (gateway !== undefined) console.log(`gateway exit after SIGTERM: ${JSON.stringify(gateway.exit())}`);
    },
  });
  const { t } = env;
  const gatewayLog = (): string => env.gatewayLog(60);

  describe.each(SERVER_KINDS)('%s', (kind: ServerKind) => {
    let server: RunningServer | undefined;
    let viaGateway: Target;
    let direct: Target;

    beforeAll(async () => {
      assertPrereq(prereq);
      server = await startServer(kind, t(), env.root?.dir ?? '');
      viaGateway = { host: ADDR.edgePublic, port: GATEWAY_PORT, user: server.user, password: server.password };
      direct = { host: server.host, port: server.port, user: server.user, password: server.password };
    }, HOOK_TIMEOUT_MS);

    afterAll(async () => {
      await server?.stop();
    }, HOOK_TIMEOUT_MS);

    it.each(CASES)(
      'through the gateway: $client $mode $transfer',
      async ({ client, mode, transfer }) => {
        const tag = `${kind}-${client}-${mode}-${transfer.replace(' ', '-')}`;
        let result: ClientResult;
        let arrivedAt: string | null = null;
        let want: FileName | null = null;
        if (transfer === 'put 8m') {
          want = '8m.bin';
          arrivedAt = env.root?.uploaded(`${tag}.bin`) ?? null;
          result = await runClient(t().ns.client, {
            client,
            mode,
            op: 'put',
            target: viaGateway,
            remote: uploadPath(`${tag}.bin`),
            local: join(env.root?.dir ?? '', 'pub', '8m.bin'),
          });
        } else if (transfer === 'list') {
          result = await runClient(t().ns.client, { client, mode, op: 'list', target: viaGateway, remote: '/pub' });
        } else {
          want = transfer === 'get 8m' ? '8m.bin' : 'empty.bin';
          arrivedAt = join(env.work, `${tag}.bin`);
          result = await runClient(t().ns.client, {
            client,
            mode,
            op: 'get',
            target: viaGateway,
            remote: remotePath(want),
            local: arrivedAt,
          });
        }
        const bad = await verdict(result, arrivedAt, want);
        matrix.push({ server: kind, client, column: `${mode} ${transfer}`, ok: bad === null, note: bad ?? '' });
        const detail = bad === null ? '' : `${describeResult(result)}\n${gatewayLog()}\n${(await server?.logs()) ?? ''}`;
        expect(bad, detail).toBeNull();
      },
      TEST_TIMEOUT_MS,
    );

    it.each(CLIENTS)(
      'the same download without the gateway fails: %s',
      async (client) => {
        const local = join(env.work, `${kind}-${client}-direct.bin`);
        const r = await runClient(t().ns.client, {
          client,
          mode: 'pasv',
          op: 'get',
          target: direct,
          remote: remotePath('1k.bin'),
          local,
          timeoutMs: 20_000,
        });
        const arrived = await sha256File(local);
        const failed = r.code !== 0 && arrived === null;
        matrix.push({
          server: kind,
          client,
          column: 'direct fails',
          ok: failed,
          note: failed ? '' : `direct transfer worked (exit ${r.code}): topology is not isolating`,
        });
        expect(failed, describeResult(r)).toBe(true);
      },
      TEST_TIMEOUT_MS,
    );
  });
});

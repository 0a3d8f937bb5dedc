// Issue 3: every data-connection mode through the gateway, end to end.
//
// client ns 203.0.113.10 / 2001:db8:1::10
//   ──▶ gateway in edge ns, listening on [::]:21 (dual stack) and [::]:2121
//   ──▶ real server in server ns, 192.0.2.10:21 (IPv4 only)
//
// The matrix is server × client × mode (PASV, EPSV, PORT, EPRT) × family of
// the client's control connection (IPv4, IPv6), each cell a download, an
// upload and a listing checked by sha256, on two sites of one gateway:
//
// - "client" (:21): upstreamDataMode "client"; active mode means the client
//   listens in the client namespace and the gateway connects to it from
//   203.0.113.1 (or 2001:db8:1::1), the only edge address the client can
//   reach.
// - "passive" (:2121): upstreamDataMode "passive", so PORT/EPRT from the
//   client become PASV/EPSV upstream. Its privateAddress is the edge's
//   127.0.0.1, which the server can neither reach nor accept in a PORT: if a
//   PORT/EPRT ever went upstream from this site, its cell would fail.
//
// A cell a client cannot produce says why (n/a). PASV over IPv6 cannot name
// an address, so the pass condition of that cell is the gateway's 522
// (RFC 2428 2); the same holds for PORT, which ftplib formats with an IPv6
// address anyway.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLIENT_KINDS,
  checkSetupReply,
  describeResult,
  replyTo,
  runClient,
  sha256,
  sha256File,
  unsupported,
  usedMode,
  type ClientKind,
  type ClientResult,
  type Family,
  type Mode,
  type Target,
} from './clients.js';
import { expectedSha, remotePath, uploadPath, type FileName } from './fixtures.js';
import { startGateway, type GatewayConfig } from './gateway.js';
import { assertPrereq, suitePrereq } from './prereq.js';
import { SERVER_KINDS, startServer, type RunningServer, type ServerKind } from './servers.js';
import { useE2eSuite } from './suite.js';
import { ADDR, enableForwarding } from './topology.js';

const HOOK_TIMEOUT_MS = 90_000;
const TEST_TIMEOUT_MS = 60_000;

/** Which plane the gateway forwards data with: the relay, or the kernel (nftables, with forwarding on in the edge). */
export type MatrixPlane = 'relay' | 'nftables';

type SiteKind = 'client' | 'passive';
interface SiteSpec {
  readonly name: string;
  readonly port: number;
  readonly passivePorts: { min: number; max: number };
  readonly activePorts: { min: number; max: number };
}
const SITES: Record<SiteKind, SiteSpec> = {
  client: { name: 'modes', port: 21, passivePorts: { min: 50000, max: 50099 }, activePorts: { min: 50100, max: 50199 } },
  passive: { name: 'modes-passive', port: 2121, passivePorts: { min: 50200, max: 50299 }, activePorts: { min: 50300, max: 50399 } },
};
const SITE_KINDS: readonly SiteKind[] = ['client', 'passive'];

function modesConfig(plane: MatrixPlane, level = process.env.E2E_GATEWAY_LOG_LEVEL ?? 'info'): GatewayConfig {
  const common = (site: SiteSpec) => ({
    name: site.name,
    listen: { host: '::', port: site.port },
    upstream: { host: ADDR.server, port: 21 },
    externalAddress: [ADDR.edgePublic, ADDR.edge6],
    passivePorts: { ...site.passivePorts },
    activePorts: { ...site.activePorts },
  });
  return {
    log: { level },
    dataPlane: { kind: plane },
    sites: [
      { ...common(SITES.client), upstreamDataMode: 'client' },
      { ...common(SITES.passive), upstreamDataMode: 'passive', privateAddress: '127.0.0.1' },
    ],
  };
}

const MODES: readonly Mode[] = ['pasv', 'epsv', 'port', 'eprt'];
const FAMILIES: readonly Family[] = [4, 6];
type Op = 'get' | 'put' | 'list';
const OPS: readonly Op[] = ['get', 'put', 'list'];
const VERB: Record<Mode, string> = { pasv: 'PASV', epsv: 'EPSV', port: 'PORT', eprt: 'EPRT' };

/** What a cell must show. */
type Expectation =
  | { readonly kind: 'transfer' }
  | { readonly kind: 'refused'; readonly code: RegExp; readonly why: string }
  | { readonly kind: 'n/a'; readonly why: string };

function expectation(client: ClientKind, mode: Mode, family: Family): Expectation {
  const cannot = unsupported(client, mode, family);
  if (cannot !== undefined) return { kind: 'n/a', why: cannot };
  if (family === 6 && mode === 'pasv') {
    return { kind: 'refused', code: /^522 /, why: 'PASV cannot name an IPv6 address: 522 (RFC 2428 2)' };
  }
  if (family === 6 && mode === 'port') {
    return { kind: 'refused', code: /^(501|504|522) /, why: 'PORT cannot name an IPv6 address; ftplib writes one into it anyway: refused' };
  }
  return { kind: 'transfer' };
}

interface Run {
  readonly site: SiteKind;
  readonly client: ClientKind;
  readonly mode: Mode;
  readonly family: Family;
  readonly op: Op;
  readonly file: FileName;
}

/** The one 8 MiB transfer per server: an active-mode upload over IPv6, where a lost FIN would truncate. */
const BIG: Omit<Run, 'file'> = { site: 'client', client: 'curl', mode: 'eprt', family: 6, op: 'put' };
const isBig = (r: Omit<Run, 'file'>): boolean =>
  r.site === BIG.site && r.client === BIG.client && r.mode === BIG.mode && r.family === BIG.family && r.op === BIG.op;

const RUNS: Run[] = SITE_KINDS.flatMap((site) =>
  CLIENT_KINDS.flatMap((client) =>
    MODES.flatMap((mode) =>
      FAMILIES.flatMap((family) => {
        const exp = expectation(client, mode, family);
        if (exp.kind === 'n/a') return [];
        const ops: readonly Op[] = exp.kind === 'refused' ? ['get'] : OPS;
        return ops.map((op) => ({ site, client, mode, family, op, file: isBig({ site, client, mode, family, op }) ? '8m.bin' : '1k.bin' }) as Run);
      }),
    ),
  ),
);

interface Outcome {
  readonly server: ServerKind;
  readonly run: Run;
  readonly ok: boolean;
  readonly note: string;
}
let outcomes: Outcome[] = [];

async function verdict(
  r: ClientResult,
  exp: Expectation,
  site: SiteSpec,
  check: { arrivedAt?: string; file?: FileName; listingSha?: string },
): Promise<string | null> {
  if (r.timedOut) return `timed out after ${r.ms} ms`;
  const verb = VERB[r.request.mode];
  if (exp.kind === 'refused') {
    if (r.code === 0) return 'the transfer ran where a refusal was expected';
    if (!r.dataCommands.includes(verb)) return `sent ${r.dataCommands.join(',') || 'no data command'}`;
    const reply = replyTo(r, verb);
    if (reply === null || !exp.code.test(reply)) return `${verb} answered "${reply ?? '(nothing)'}", expected ${exp.code}`;
    return null;
  }
  if (r.code !== 0) return `exit ${r.code ?? r.signal}`;
  if (!usedMode(r)) return `sent ${r.dataCommands.join(',') || 'no data command'}`;
  const bad = checkSetupReply(r, site.passivePorts);
  if (bad !== null) return bad;
  // ftplib reports the far end of its data connection: in every mode, the gateway's client-side address.
  const edge = r.request.target.host;
  if (r.request.client === 'ftplib' && (r.dataPeers.length === 0 || r.dataPeers.some((p) => p !== edge))) {
    return `data connection with ${r.dataPeers.join(',') || 'nobody'}, not ${edge}`;
  }
  if (check.file !== undefined && check.arrivedAt !== undefined) {
    const got = await sha256File(check.arrivedAt);
    if (got === null) return 'nothing arrived';
    if (got !== expectedSha(check.file)) return 'sha256 mismatch';
  }
  if (check.listingSha !== undefined && sha256(Buffer.from(r.listing.join('\n'))) !== check.listingSha) {
    return `listing differs from the direct one (${r.listing.length} lines)`;
  }
  return null;
}

// ---- the matrix -----------------------------------------------------------

function printMatrix(): void {
  const columns = FAMILIES.flatMap((family) => MODES.map((mode) => ({ mode, family })));
  const head = (c: { mode: Mode; family: Family }) => `${VERB[c.mode]}/v${c.family}`;
  const width = 12;
  const reasons = new Map<string, number>();
  const footnote = (why: string): string => {
    if (!reasons.has(why)) reasons.set(why, reasons.size + 1);
    return String(reasons.get(why));
  };
  const sections: string[] = [];
  for (const siteKind of SITE_KINDS) {
    const site = SITES[siteKind];
    const lines = [
      `upstreamDataMode "${siteKind}" (site ${site.name}, [::]:${site.port}):`,
      `${'server'.padEnd(11)}${'client'.padEnd(8)}${columns.map((c) => head(c).padEnd(width)).join('')}`,
    ];
    for (const server of SERVER_KINDS) {
      for (const client of CLIENT_KINDS) {
        const cells = columns.map(({ mode, family }) => {
          const exp = expectation(client, mode, family);
          if (exp.kind === 'n/a') return `n/a[${footnote(exp.why)}]`;
          const mine = outcomes.filter(
            (o) => o.server === server && o.run.site === siteKind && o.run.client === client && o.run.mode === mode && o.run.family === family,
          );
          const wanted = exp.kind === 'refused' ? 1 : OPS.length;
          if (mine.length < wanted) return mine.some((o) => !o.ok) ? 'FAIL' : 'not run';
          if (mine.some((o) => !o.ok)) return `FAIL(${mine.filter((o) => !o.ok).map((o) => o.run.op).join(',')})`;
          return exp.kind === 'refused' ? `pass[${footnote(exp.why)}]` : 'pass';
        });
        lines.push(`${server.padEnd(11)}${client.padEnd(8)}${cells.map((c) => c.padEnd(width)).join('')}`);
      }
    }
    sections.push(lines.join('\n'));
  }
  const notes = [...reasons].map(([why, n]) => `  [${n}] ${why}`);
  const failures = outcomes
    .filter((o) => !o.ok)
    .map((o) => `  ${o.server} ${o.run.site} ${o.run.client} ${VERB[o.run.mode]}/v${o.run.family} ${o.run.op}: ${o.note}`);
  const passed = outcomes.filter((o) => o.ok).length;
  console.log(
    `\nmodes e2e matrix (server × client × mode × family of the client's connection; upstream IPv4)\n` +
      `pass = download, upload and listing byte-exact by sha256; pass[n] = the refusal the protocol requires\n\n` +
      `${sections.join('\n\n')}\n\nnotes:\n${notes.join('\n')}\n` +
      `${passed}/${outcomes.length} client runs passed\n` +
      (failures.length > 0 ? `failures:\n${failures.join('\n')}\n` : 'no failures\n'),
  );
}

// ---- the suite ------------------------------------------------------------

/**
 * The matrix as one suite. `check` runs in the afterAll once the gateway has
 * stopped, with its whole output (the kernel plane's suite checks what was
 * relayed and what the kernel carried).
 */
export function defineModesMatrix(plane: MatrixPlane, check?: (gatewayOutput: string) => void): void {
  const prereq = suitePrereq(`modes.e2e (${plane})`, { gateway: true });
  outcomes = [];
  describe.skipIf(prereq.skip)(`every data-connection mode through the gateway, end to end (issue 3, ${plane} plane)`, () => {
  const env = useE2eSuite({
    prereq,
    workPrefix: 'ftpalg-e2e-modes-',
    hookTimeoutMs: HOOK_TIMEOUT_MS,
    startGateway: async (topo) => {
      if (plane === 'nftables') await enableForwarding(topo);
      return startGateway(topo, modesConfig(plane));
    },
    report: (gateway) => {
      if (outcomes.length > 0) printMatrix();
      check?.(gateway?.output() ?? '');
    },
  });
  const { t } = env;
  const gatewayLog = (): string => env.gatewayLog(40);

  describe.each(SERVER_KINDS)('%s', (kind: ServerKind) => {
    let server: RunningServer | undefined;
    /** sha256 of each client's listing of /pub made straight from the edge, without the gateway. */
    const listingSha = new Map<ClientKind, string>();

    beforeAll(async () => {
      assertPrereq(prereq);
      server = await startServer(kind, t(), env.root?.dir ?? '');
      const direct: Target = { host: server.host, port: server.port, user: server.user, password: server.password };
      for (const client of CLIENT_KINDS) {
        const r = await runClient(t().ns.edge, { client, mode: 'pasv', op: 'list', target: direct, remote: '/pub' });
        if (r.code !== 0 || !r.listing.some((l) => l.includes('8m.bin'))) {
          throw new Error(`reference listing from the edge failed:\n${describeResult(r)}\n${await server.logs()}`);
        }
        listingSha.set(client, sha256(Buffer.from(r.listing.join('\n'))));
      }
    }, HOOK_TIMEOUT_MS);

    afterAll(async () => {
      await server?.stop();
    }, HOOK_TIMEOUT_MS);

    it.concurrent.for(RUNS)(
      '$site: $client $mode IPv$family $op',
      { timeout: TEST_TIMEOUT_MS },
      async (run, { expect: check }) => {
        const site = SITES[run.site];
        const exp = expectation(run.client, run.mode, run.family);
        const target: Target = {
          host: run.family === 4 ? ADDR.edgePublic : ADDR.edge6,
          port: site.port,
          user: server?.user ?? '',
          password: server?.password ?? '',
        };
        const tag = `${kind}-${run.site}-${run.client}-${run.mode}-v${run.family}-${run.op}`;
        let result: ClientResult;
        let checks: { arrivedAt?: string; file?: FileName; listingSha?: string };
        if (run.op === 'get') {
          const local = join(env.work, `${tag}.bin`);
          result = await runClient(t().ns.client, { client: run.client, mode: run.mode, op: 'get', target, remote: remotePath(run.file), local });
          checks = { arrivedAt: local, file: run.file };
        } else if (run.op === 'put') {
          const name = `${tag}.bin`;
          result = await runClient(t().ns.client, {
            client: run.client,
            mode: run.mode,
            op: 'put',
            target,
            remote: uploadPath(name),
            local: join(env.root?.dir ?? '', 'pub', run.file),
          });
          checks = { arrivedAt: env.root?.uploaded(name), file: run.file };
        } else {
          result = await runClient(t().ns.client, { client: run.client, mode: run.mode, op: 'list', target, remote: '/pub' });
          checks = { listingSha: listingSha.get(run.client) };
        }
        const bad = await verdict(result, exp, site, checks);
        outcomes.push({ server: kind, run, ok: bad === null, note: bad ?? '' });
        const detail = bad === null ? '' : `${describeResult(result)}\n${gatewayLog()}\n${(await server?.logs())?.slice(-4000) ?? ''}`;
        check(bad, detail).toBeNull();
      },
    );
  });
  });
}

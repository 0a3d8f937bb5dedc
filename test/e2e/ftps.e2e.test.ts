// Issue 10: FTPS at the edge, end to end, with real servers and clients.
//
// client ns 203.0.113.10 / 2001:db8:1::10
//   ──▶ gateway in edge ns ([::], dual stack), one site per TLS policy
//   ──▶ server ns 192.0.2.10: a plain server on :21 (vsftpd, pure-ftpd,
//       proftpd in turn), or vsftpd speaking FTPS on :2121 (AUTH TLS) and
//       :9990 (implicit), both with require_ssl_reuse=YES (its default):
//       every data connection must resume the control connection's session.
//
// Sites (each on its own port and port ranges):
// - explicit   tls.client "optional", upstream plain              (matrix a)
// - required   tls.client "required", upstream plain              (a, and the cleartext USER control)
// - implicit   tls.implicit, upstream plain                       (c)
// - tlsUp      tls.upstream "explicit", upstreamCaFile = test CA   (b)
// - implicitUp tls.upstream "implicit", upstreamCaFile = test CA   (b, implicit upstream)
// - plain      no tls section: AUTH gets 534 (the negative control)
// - strangerUp like tlsUp, but upstreamCaFile is a CA that did not sign
//              vsftpd's certificate (the negative control of verification)
//
// Clients: curl (--ssl-reqd, ftps://), lftp (ftp:ssl-force, ssl-protect-data),
// Python ftplib FTP_TLS with prot_p(); each verifies the gateway's
// certificate against the test CA by IP address and protects every data
// connection. Each cell checks exit status, the mode really used, the
// rewritten 227/229, AUTH 234 (or no AUTH when implicit), PROT P 200, the TLS
// version curl and ftplib report, and the sha256 of what arrived.
//
// The same FTPS cells against the site without `tls` must fail with 534;
// a cleartext USER on the `required` site must never reach the upstream (the
// server's own command log shows it, and shows the same probe sent through
// the `explicit` site, so the check can fail); likewise no login reaches the
// FTPS vsftpd through the site that cannot verify it. Before the FTPS upstream cells,
// each client talks FTPS straight to the TLS vsftpd from the edge namespace:
// the server and client set-ups are proven without the gateway.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts, type CertFiles } from '../support/certs.js';
import {
  CLIENT_KINDS,
  checkSetupReply,
  describeResult,
  replyTo,
  runClient,
  sha256File,
  unsupported,
  usedMode,
  type ClientKind,
  type ClientRequest,
  type ClientResult,
  type Family,
  type Mode,
  type Target,
} from './lib/clients.js';
import { expectedSha, remotePath, uploadPath, type FileName } from './lib/fixtures.js';
import { startGateway, type GatewayConfig, type GatewaySiteTls, type RunningGateway } from './lib/gateway.js';
import { assertPrereq, suitePrereq } from './lib/prereq.js';
import { SERVER_KINDS, startServer, type RunningServer, type ServerKind } from './lib/servers.js';
import { useE2eSuite } from './lib/suite.js';
import { ADDR } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 60_000;
const LOG_POLL_MS = 100;
const LOG_WAIT_MS = 5_000;

const prereq = suitePrereq('ftps.e2e', { gateway: true, tls: true });

// ---- the gateway's sites and the upstreams ------------------------------------

type SiteKind = 'explicit' | 'required' | 'implicit' | 'tlsUp' | 'implicitUp' | 'plain' | 'strangerUp';
const SITE_KINDS: readonly SiteKind[] = ['explicit', 'required', 'implicit', 'tlsUp', 'implicitUp', 'plain', 'strangerUp'];
type Upstream = 'plain' | 'ftps-explicit' | 'ftps-implicit';

interface SiteSpec {
  readonly port: number;
  readonly passivePorts: { min: number; max: number };
  readonly activePorts: { min: number; max: number };
  readonly upstream: Upstream;
  /** The client side: explicit AUTH TLS, implicit TLS, or none (no `tls` section). */
  readonly clientTls: 'explicit' | 'implicit' | 'none';
  readonly title: string;
  readonly tls?: (certs: CertFiles) => GatewaySiteTls;
}

const ranges = (base: number) => ({ passivePorts: { min: base, max: base + 99 }, activePorts: { min: base + 100, max: base + 199 } });
// The gateway shows clients one certificate, the FTPS vsftpd another (same CA, both name every address here).
const edgeTls = (certs: CertFiles): GatewaySiteTls => ({ certFile: certs.certFile, keyFile: certs.keyFile });
const upstreamTls = (certs: CertFiles) => ({ certFile: certs.certFile2, keyFile: certs.keyFile2 });
const SITES: Record<SiteKind, SiteSpec> = {
  explicit: {
    port: 21, ...ranges(50000), upstream: 'plain', clientTls: 'explicit',
    title: 'client AUTH TLS → gateway (tls.client optional, upstream plain) → plain server',
    tls: (c) => ({ ...edgeTls(c), client: 'optional', upstream: 'plain' }),
  },
  required: {
    port: 2121, ...ranges(50200), upstream: 'plain', clientTls: 'explicit',
    title: 'client AUTH TLS → gateway (tls.client required, upstream plain) → plain server',
    tls: (c) => ({ ...edgeTls(c), client: 'required', upstream: 'plain' }),
  },
  implicit: {
    port: 990, ...ranges(50400), upstream: 'plain', clientTls: 'implicit',
    title: 'client implicit TLS → gateway (tls.implicit, upstream plain) → plain server',
    tls: (c) => ({ ...edgeTls(c), implicit: true, client: 'required', upstream: 'plain' }),
  },
  tlsUp: {
    port: 2021, ...ranges(50600), upstream: 'ftps-explicit', clientTls: 'explicit',
    title: 'client AUTH TLS → gateway (upstream explicit, CA verified) → vsftpd FTPS, require_ssl_reuse=YES',
    tls: (c) => ({ ...edgeTls(c), client: 'required', upstream: 'explicit', upstreamCaFile: c.caFile }),
  },
  implicitUp: {
    port: 2990, ...ranges(50800), upstream: 'ftps-implicit', clientTls: 'explicit',
    title: 'client AUTH TLS → gateway (upstream implicit, CA verified) → vsftpd implicit FTPS, require_ssl_reuse=YES',
    tls: (c) => ({ ...edgeTls(c), client: 'required', upstream: 'implicit', upstreamCaFile: c.caFile }),
  },
  plain: {
    port: 2020, ...ranges(51000), upstream: 'plain', clientTls: 'none',
    title: 'negative control: the same FTPS clients → a site without tls → plain server',
  },
  strangerUp: {
    port: 2022, ...ranges(51200), upstream: 'ftps-explicit', clientTls: 'explicit',
    title: 'negative control: the FTPS upstream verified against a CA that did not sign its certificate',
    tls: (c) => ({ ...edgeTls(c), client: 'required', upstream: 'explicit', upstreamCaFile: c.strangerCaFile }),
  },
};

/** The FTPS vsftpd instances in the server namespace, next to the plain server on :21. */
const FTPS_UPSTREAMS = {
  'ftps-explicit': { port: 2121, passivePorts: { min: 40200, max: 40300 }, implicit: false },
  'ftps-implicit': { port: 9990, passivePorts: { min: 40400, max: 40500 }, implicit: true },
} as const;
const UPSTREAM_PORT: Record<Upstream, number> = { plain: 21, 'ftps-explicit': 2121, 'ftps-implicit': 9990 };

function ftpsConfig(certs: CertFiles, level = process.env.E2E_GATEWAY_LOG_LEVEL ?? 'info'): GatewayConfig {
  return {
    log: { level },
    metrics: { listen: '127.0.0.1:0' },
    sites: SITE_KINDS.map((kind) => {
      const site = SITES[kind];
      return {
        name: `ftps-${kind}`,
        listen: { host: '::', port: site.port },
        upstream: { host: ADDR.server, port: UPSTREAM_PORT[site.upstream] },
        externalAddress: [ADDR.edgePublic, ADDR.edge6],
        passivePorts: { ...site.passivePorts },
        activePorts: { ...site.activePorts },
        ...(site.tls !== undefined && { tls: site.tls(certs) }),
      };
    }),
  };
}

// ---- the matrix -----------------------------------------------------------------

/** The upstream a cell runs against: a plain server of each kind, or the FTPS vsftpd. */
type UpstreamServer = ServerKind | 'vsftpd-ftps';
type Op = 'get' | 'put';
type TlsMax = '1.2' | '1.3';

interface Cell {
  readonly site: SiteKind;
  readonly server: UpstreamServer;
  readonly client: ClientKind;
  readonly mode: Mode;
  readonly family: Family;
  readonly tlsMax: TlsMax;
  readonly op: Op;
  readonly file: FileName;
}

const ALL_MODES: readonly Mode[] = ['pasv', 'epsv', 'port', 'eprt'];
const BOTH: readonly Op[] = ['get', 'put'];

/** Cells for every client that can use each mode over the family (PASV/PORT name no IPv6 address: left out on IPv6). */
function cells(
  site: SiteKind,
  server: UpstreamServer,
  modes: readonly Mode[],
  ops: readonly Op[],
  opts: { family?: Family; tlsMax?: TlsMax } = {},
): Cell[] {
  const family = opts.family ?? 4;
  const usable = (client: ClientKind, mode: Mode) =>
    unsupported(client, mode, family, true) === undefined && !(family === 6 && (mode === 'pasv' || mode === 'port'));
  return CLIENT_KINDS.flatMap((client) =>
    modes
      .filter((mode) => usable(client, mode))
      .flatMap((mode) => ops.map((op) => ({ site, server, client, mode, family, tlsMax: opts.tlsMax ?? '1.3', op, file: '1k.bin' as FileName }))),
  );
}

/** The 8 MiB transfers: an upload and a download per FTPS path, where a lost close would truncate. */
const BIG: ReadonlyArray<Partial<Cell>> = [
  { site: 'explicit', server: 'vsftpd', client: 'curl', mode: 'epsv', family: 4, op: 'put' },
  { site: 'explicit', server: 'vsftpd', client: 'lftp', mode: 'pasv', family: 4, op: 'get' },
  { site: 'implicit', server: 'vsftpd', client: 'ftplib', mode: 'epsv', family: 4, op: 'get' },
  { site: 'tlsUp', client: 'curl', mode: 'eprt', family: 4, op: 'put' },
  { site: 'tlsUp', client: 'lftp', mode: 'epsv', family: 4, op: 'get' },
  { site: 'tlsUp', client: 'ftplib', mode: 'port', family: 4, op: 'put' },
];
const isBig = (c: Cell): boolean => BIG.some((b) => Object.entries(b).every(([k, v]) => c[k as keyof Cell] === v));

const TRANSFER_CELLS: Cell[] = [
  ...SERVER_KINDS.flatMap((server) => [
    ...cells('explicit', server, ALL_MODES, BOTH),
    ...cells('implicit', server, ['pasv', 'epsv'], ['get']),
  ]),
  ...cells('explicit', 'vsftpd', ['epsv', 'eprt'], BOTH, { family: 6 }),
  ...cells('required', 'vsftpd', ['pasv', 'port'], BOTH),
  ...cells('required', 'vsftpd', ['epsv'], BOTH, { tlsMax: '1.2' }),
  ...cells('implicit', 'vsftpd', ['port', 'eprt'], BOTH),
  ...cells('implicit', 'vsftpd', ['pasv', 'epsv'], ['put']),
  ...cells('implicit', 'vsftpd', ['epsv'], ['get'], { family: 6 }),
  ...cells('tlsUp', 'vsftpd-ftps', ALL_MODES, BOTH),
  ...cells('tlsUp', 'vsftpd-ftps', ['epsv', 'eprt'], BOTH, { family: 6 }),
  ...cells('tlsUp', 'vsftpd-ftps', ['pasv'], BOTH, { tlsMax: '1.2' }),
  ...cells('implicitUp', 'vsftpd-ftps', ['pasv', 'epsv', 'port'], BOTH),
].map((c) => (isBig(c) ? { ...c, file: '8m.bin' } : c));

/** The negative control: each client's FTPS download against the site without tls. */
const REFUSED_CELLS: Cell[] = cells('plain', 'vsftpd', ['pasv'], ['get']);

interface Outcome {
  readonly cell: Cell;
  readonly ok: boolean;
  readonly note: string;
}
const outcomes: Outcome[] = [];
/** Each client straight to the FTPS vsftpd, without the gateway: what it did. */
const direct: Array<{ client: ClientKind; mode: Mode; upstream: Upstream; ok: boolean; note: string }> = [];
/** Every mode each client can use toward the explicit FTPS vsftpd, EPSV toward the implicit one. */
const DIRECT_CELLS = CLIENT_KINDS.flatMap((client) => [
  ...ALL_MODES.filter((mode) => unsupported(client, mode, 4, true) === undefined).map((mode) => ({ client, mode, upstream: 'ftps-explicit' as const })),
  { client, mode: 'epsv' as Mode, upstream: 'ftps-implicit' as const },
]);

const VERB: Record<Mode, string> = { pasv: 'PASV', epsv: 'EPSV', port: 'PORT', eprt: 'EPRT' };
const column = (c: Cell): string => `${VERB[c.mode]}/v${c.family}${c.tlsMax === '1.2' ? '/1.2' : ''}`;

function printMatrix(): void {
  const reasons = new Map<string, number>();
  const footnote = (why: string): string => {
    if (!reasons.has(why)) reasons.set(why, reasons.size + 1);
    return `n/a[${reasons.get(why)}]`;
  };
  const sections: string[] = [];
  for (const site of SITE_KINDS) {
    const mine = outcomes.filter((o) => o.cell.site === site);
    if (mine.length === 0) continue;
    const order = (c: Cell): number => ALL_MODES.indexOf(c.mode) + (c.family === 6 ? 10 : 0) + (c.tlsMax === '1.2' ? 20 : 0);
    const columns = [...new Set([...mine].sort((x, y) => order(x.cell) - order(y.cell)).map((o) => column(o.cell)))];
    const servers = [...new Set(mine.map((o) => o.cell.server))];
    const lines = [`${SITES[site].title} (site ftps-${site}, [::]:${SITES[site].port}):`, `${'server'.padEnd(13)}${'client'.padEnd(8)}${columns.map((c) => c.padEnd(15)).join('')}`];
    for (const server of servers) {
      for (const client of CLIENT_KINDS) {
        const row = columns.map((col) => {
          const runs = mine.filter((o) => o.cell.server === server && o.cell.client === client && column(o.cell) === col);
          const [, verb, family] = /^(\w+)\/v(\d)/.exec(col) ?? [];
          const mode = ALL_MODES.find((m) => VERB[m] === verb);
          const why = mode === undefined ? undefined : unsupported(client, mode, family === '6' ? 6 : 4, true);
          if (runs.length === 0) return why === undefined ? '-' : footnote(why);
          const bad = runs.filter((o) => !o.ok).map((o) => o.cell.op);
          if (bad.length > 0) return `FAIL(${bad.join(',')})`;
          return site === 'plain' ? 'refused 534' : [...new Set(runs.map((o) => o.cell.op))].sort().join('+');
        });
        lines.push(`${server.padEnd(13)}${client.padEnd(8)}${row.map((c) => c.padEnd(15)).join('')}`);
      }
    }
    sections.push(lines.join('\n'));
  }
  const directLines = direct.map((d) => `  ${d.client.padEnd(7)} ${VERB[d.mode]} → vsftpd ${d.upstream}: ${d.ok ? 'transfers' : `fails: ${d.note}`}`);
  const failures = outcomes.filter((o) => !o.ok).map((o) => `  ${o.cell.site} ${o.cell.server} ${o.cell.client} ${column(o.cell)} ${o.cell.op}: ${o.note}`);
  console.log(
    `\nFTPS e2e matrix (TLS 1.3 unless the column says 1.2; get+put = both byte-exact by sha256, every data connection PROT P)\n\n` +
      `${sections.join('\n\n')}\n\n` +
      (direct.length > 0 ? `without the gateway, from the edge namespace:\n${directLines.join('\n')}\n` : '') +
      (reasons.size > 0 ? `notes:\n${[...reasons].map(([why, n]) => `  [${n}] ${why}`).join('\n')}\n` : '') +
      `${outcomes.filter((o) => o.ok).length}/${outcomes.length} client runs passed\n` +
      (failures.length > 0 ? `failures:\n${failures.join('\n')}\n` : 'no failures\n'),
  );
}

// ---- what a client run must show ---------------------------------------------------

/** AUTH 234 (or no AUTH on an implicit connection), PROT P 200, and the TLS version curl and ftplib report. */
function checkTls(r: ClientResult, implicit: boolean, tlsMax: TlsMax): string | null {
  const sent = (re: RegExp) => r.transcript.some((l) => l.dir === 'sent' && re.test(l.line));
  if (implicit) {
    if (sent(/^AUTH /i)) return 'AUTH sent on an implicit connection';
  } else {
    const auth = replyTo(r, 'AUTH');
    if (auth === null || !auth.startsWith('234')) return `AUTH answered "${auth ?? '(nothing)'}"`;
  }
  if (!sent(/^PROT P$/i)) return 'no PROT P sent';
  const prot = replyTo(r, 'PROT');
  if (prot === null || !prot.startsWith('200')) return `PROT P answered "${prot ?? '(nothing)'}"`;
  const want = tlsMax === '1.2' ? 'TLSv1.2' : 'TLSv1.3';
  if (r.request.client !== 'lftp' && (r.tlsVersions.length === 0 || r.tlsVersions.some((v) => v !== want))) {
    return `TLS versions ${r.tlsVersions.join(',') || '(none reported)'}, expected ${want}`;
  }
  // curl resumes its control session on the data connection (a ticket under TLS 1.3, the session ID under
  // 1.2): the server's certificate comes once, on the control connection, when the resumption is accepted.
  if (r.request.client === 'curl' && (r.tlsVersions.length < 2 || r.tlsCertificates !== 1)) {
    return `${r.tlsVersions.length} TLS connections with ${r.tlsCertificates} full handshakes: the data connection did not resume the control session`;
  }
  return null;
}

async function checkArrived(arrivedAt: string | undefined, file: FileName): Promise<string | null> {
  const got = arrivedAt === undefined ? null : await sha256File(arrivedAt);
  if (got === null) return 'nothing arrived';
  return got === expectedSha(file) ? null : 'sha256 mismatch';
}

async function transferVerdict(r: ClientResult, cell: Cell, arrivedAt: string | undefined): Promise<string | null> {
  if (r.timedOut) return `timed out after ${r.ms} ms`;
  if (r.code !== 0) return `exit ${r.code ?? r.signal}`;
  if (!usedMode(r)) return `sent ${r.dataCommands.join(',') || 'no data command'}`;
  const site = SITES[cell.site];
  const bad = checkSetupReply(r, site.passivePorts) ?? checkTls(r, site.clientTls === 'implicit', cell.tlsMax);
  if (bad !== null) return bad;
  const edge = r.request.target.host;
  if (r.request.client === 'ftplib' && (r.dataPeers.length === 0 || r.dataPeers.some((p) => p !== edge))) {
    return `data connection with ${r.dataPeers.join(',') || 'nobody'}, not ${edge}`;
  }
  return checkArrived(arrivedAt, cell.file);
}

/** A site without tls: AUTH refused with 534, the client gives up, nothing transferred. */
async function refusedVerdict(r: ClientResult, arrivedAt: string | undefined): Promise<string | null> {
  if (r.timedOut) return `timed out after ${r.ms} ms`;
  if (r.code === 0) return 'the client went on without TLS';
  const auth = replyTo(r, 'AUTH');
  if (auth === null || !auth.startsWith('534')) return `AUTH answered "${auth ?? '(nothing)'}", expected 534`;
  if (r.dataCommands.length > 0) return `sent ${r.dataCommands.join(',')} after the refusal`;
  if (r.transcript.some((l) => l.dir === 'sent' && /^(USER|PASS) /i.test(l.line))) return 'logged in in cleartext';
  return arrivedAt !== undefined && existsSync(arrivedAt) && (await sha256File(arrivedAt)) === expectedSha('1k.bin')
    ? 'the file arrived anyway'
    : null;
}

/** The sum of a metric's samples in Prometheus text whose labels include `labels`. */
function sum(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = new Map([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) total += Number(m[3]);
  }
  return total;
}

// ---- the suite --------------------------------------------------------------------

describe.skipIf(prereq.skip)('FTPS through the gateway, end to end (issue 10)', () => {
  let certs: CertFiles | undefined;
  let gateway: RunningGateway | undefined;
  const env = useE2eSuite({
    prereq,
    workPrefix: 'ftpalg-e2e-ftps-',
    hookTimeoutMs: HOOK_TIMEOUT_MS,
    startGateway: async (topo) => {
      certs = await makeCerts();
      gateway = await startGateway(topo, ftpsConfig(certs));
      return gateway;
    },
    report: () => {
      if (outcomes.length > 0 || direct.length > 0) printMatrix();
    },
  });
  afterAll(async () => {
    await certs?.remove();
  });
  const { t } = env;
  const mustCerts = (): CertFiles => {
    if (certs === undefined) throw new Error('no certificates');
    return certs;
  };

  /** Runs one cell from the client namespace through the gateway; returns the result and where the file must be. */
  async function runCell(cell: Cell, server: RunningServer): Promise<{ result: ClientResult; arrivedAt: string | undefined }> {
    const site = SITES[cell.site];
    const target: Target = {
      host: cell.family === 4 ? ADDR.edgePublic : ADDR.edge6,
      port: site.port,
      user: server.user,
      password: server.password,
    };
    const tag = `${cell.server}-${cell.site}-${cell.client}-${cell.mode}-v${cell.family}-${cell.tlsMax}-${cell.op}`;
    const tls: ClientRequest['tls'] = { kind: site.clientTls === 'implicit' ? 'implicit' : 'explicit', caFile: mustCerts().caFile, maxVersion: cell.tlsMax };
    const base = { client: cell.client, mode: cell.mode, target, tls };
    if (cell.op === 'get') {
      const local = join(env.work, `${tag}.bin`);
      return { result: await runClient(t().ns.client, { ...base, op: 'get', remote: remotePath(cell.file), local }), arrivedAt: local };
    }
    const name = `${tag}.bin`;
    const local = join(env.root?.dir ?? '', 'pub', cell.file);
    return { result: await runClient(t().ns.client, { ...base, op: 'put', remote: uploadPath(name), local }), arrivedAt: env.root?.uploaded(name) };
  }

  async function checkCell(cell: Cell, server: RunningServer | undefined, check: typeof expect): Promise<void> {
    if (server === undefined) throw new Error('no server');
    const { result, arrivedAt } = await runCell(cell, server);
    const bad = cell.site === 'plain' ? await refusedVerdict(result, arrivedAt) : await transferVerdict(result, cell, arrivedAt);
    outcomes.push({ cell, ok: bad === null, note: bad ?? '' });
    const detail = bad === null ? '' : `${describeResult(result)}\n${env.gatewayLog(40)}\n${(await server.logs()).slice(-4000)}`;
    check(bad, detail).toBeNull();
  }

  /** A login as a user name of its own (which vsftpd logs, then refuses): through `site`, in cleartext or FTPS. */
  async function sendProbe(site: SiteKind, tls: ClientRequest['tls']): Promise<{ user: string; result: ClientResult }> {
    const user = `probe-${site}-${randomBytes(4).toString('hex')}`;
    const target: Target = { host: ADDR.edgePublic, port: SITES[site].port, user, password: 'secret' };
    return { user, result: await runClient(t().ns.client, { client: 'curl', mode: 'pasv', op: 'list', target, remote: '/pub', tls }) };
  }

  /**
   * `user` never reached vsftpd. The control probe, sent where it must get
   * through, shows up in the same log first, so this check can fail.
   */
  async function expectNeverLogged(server: RunningServer, user: string, control: { user: string; result: ClientResult }): Promise<void> {
    const deadline = Date.now() + LOG_WAIT_MS;
    let log = await server.logs();
    while (!log.includes(control.user) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, LOG_POLL_MS));
      log = await server.logs();
    }
    expect(log, `the control probe never reached vsftpd: its log cannot show a leak\n${describeResult(control.result)}`).toContain(`USER ${control.user}`);
    expect(log).not.toContain(user);
  }

  describe.each(SERVER_KINDS)('plain %s upstream', (kind: ServerKind) => {
    let server: RunningServer | undefined;

    beforeAll(async () => {
      assertPrereq(prereq);
      server = await startServer(kind, t(), env.root?.dir ?? '');
    }, HOOK_TIMEOUT_MS);

    afterAll(async () => {
      await server?.stop();
    }, HOOK_TIMEOUT_MS);

    const mine = [...TRANSFER_CELLS, ...REFUSED_CELLS].filter((c) => c.server === kind);
    it.concurrent.for(mine)('$site: $client $mode IPv$family TLS $tlsMax $op $file', { timeout: TEST_TIMEOUT_MS }, async (cell, { expect: check }) => {
      await checkCell(cell, server, check);
    });

    // vsftpd's command log is the witness (log_ftp_protocol); one server is enough.
    if (kind !== 'vsftpd') return;
    it('a required site refuses a clear data channel (PROT C); an optional one relays it', { timeout: TEST_TIMEOUT_MS }, async () => {
      if (server === undefined) throw new Error('no server');
      const tls: ClientRequest['tls'] = { kind: 'explicit', caFile: mustCerts().caFile, protectData: false };
      const run = async (site: SiteKind) => {
        const local = join(env.work, `prot-c-${site}.bin`);
        const target: Target = { host: ADDR.edgePublic, port: SITES[site].port, user: server?.user ?? '', password: server?.password ?? '' };
        return { local, result: await runClient(t().ns.client, { client: 'curl', mode: 'pasv', op: 'get', target, remote: remotePath('1k.bin'), local, tls }) };
      };
      const refused = await run('required');
      expect(refused.result.code, describeResult(refused.result)).not.toBe(0);
      expect(replyTo(refused.result, 'PROT C'), describeResult(refused.result)).toMatch(/^534 /);
      expect(existsSync(refused.local) && (await sha256File(refused.local)) === expectedSha('1k.bin')).toBe(false);
      const relayed = await run('explicit');
      expect(relayed.result.code, describeResult(relayed.result)).toBe(0);
      expect(replyTo(relayed.result, 'PROT C'), describeResult(relayed.result)).toMatch(/^200 /);
      expect(await checkArrived(relayed.local, '1k.bin')).toBeNull();
      // Only the control connection was TLS: one handshake.
      expect(relayed.result.tlsVersions, describeResult(relayed.result)).toEqual(['TLSv1.3']);
    });
    it('a cleartext USER on the required site never reaches the upstream', { timeout: TEST_TIMEOUT_MS }, async () => {
      if (server === undefined) throw new Error('no server');
      const refused = await sendProbe('required', undefined);
      expect(replyTo(refused.result, 'USER'), describeResult(refused.result)).toMatch(/^530 /);
      await expectNeverLogged(server, refused.user, await sendProbe('explicit', undefined));
    });
  });

  describe('vsftpd FTPS upstream (require_ssl_reuse=YES, TLS forced for login and data)', () => {
    const servers = new Map<Upstream, RunningServer>();

    beforeAll(async () => {
      assertPrereq(prereq);
      const c = mustCerts();
      for (const [upstream, spec] of Object.entries(FTPS_UPSTREAMS) as Array<[Upstream, (typeof FTPS_UPSTREAMS)['ftps-explicit']]>) {
        const tls = { ...upstreamTls(c), implicit: spec.implicit };
        servers.set(upstream, await startServer('vsftpd', t(), env.root?.dir ?? '', { port: spec.port, passivePorts: spec.passivePorts, tls }));
      }
    }, HOOK_TIMEOUT_MS);

    afterAll(async () => {
      for (const s of servers.values()) await s.stop();
    }, HOOK_TIMEOUT_MS);

    // Without the gateway: proves the FTPS server set-up and each client's
    // FTPS options. ftplib never resumes the control session on its data
    // connections, so vsftpd's require_ssl_reuse may refuse it here; it is
    // recorded, and through the gateway (which resumes for it) it must pass.
    it.for(DIRECT_CELLS)(
      'direct from the edge: $client $mode → vsftpd $upstream',
      { timeout: TEST_TIMEOUT_MS },
      async ({ client, upstream, mode }) => {
        const server = servers.get(upstream);
        if (server === undefined) throw new Error('no server');
        const local = join(env.work, `direct-${client}-${mode}-${upstream}.bin`);
        const target: Target = { host: server.host, port: server.port, user: server.user, password: server.password };
        const tls: ClientRequest['tls'] = { kind: upstream === 'ftps-implicit' ? 'implicit' : 'explicit', caFile: mustCerts().caFile };
        const r = await runClient(t().ns.edge, { client, mode, op: 'get', target, remote: remotePath('1k.bin'), local, tls });
        const bad =
          r.code !== 0 ? `exit ${r.code ?? r.signal}: ${r.transcript.filter((l) => /^[45]\d\d /.test(l.line)).map((l) => l.line).join(' | ')}` : ((await checkArrived(local, '1k.bin')) ?? checkTls(r, upstream === 'ftps-implicit', '1.3'));
        direct.push({ client, mode, upstream, ok: bad === null, note: bad ?? '' });
        if (client !== 'ftplib') expect(bad, `${describeResult(r)}\n${(await server.logs()).slice(-3000)}`).toBeNull();
        else expect(bad === null || /522 .*reuse/i.test(bad), `${describeResult(r)}`).toBe(true);
      },
    );

    it('an upstream whose certificate the site does not trust never gets the login', { timeout: TEST_TIMEOUT_MS }, async () => {
      const server = servers.get('ftps-explicit');
      if (server === undefined) throw new Error('no server');
      const tls: ClientRequest['tls'] = { kind: 'explicit', caFile: mustCerts().caFile };
      const refused = await sendProbe('strangerUp', tls);
      expect(refused.result.code, describeResult(refused.result)).not.toBe(0);
      await expectNeverLogged(server, refused.user, await sendProbe('tlsUp', tls));
      expect(env.gatewayLog(400)).toMatch(/"site":"ftps-strangerUp".*(certificate|CERT|verify)/i);
    });

    it.concurrent.for(TRANSFER_CELLS.filter((c) => c.server === 'vsftpd-ftps'))(
      '$site: $client $mode IPv$family TLS $tlsMax $op $file',
      { timeout: TEST_TIMEOUT_MS },
      async (cell, { expect: check }) => {
        await checkCell(cell, servers.get(SITES[cell.site].upstream), check);
      },
    );
  });
  // Last, once every cell above has run: what the gateway counted agrees with what the clients saw.
  it('the gateway counted TLS handshakes on the legs that carry TLS and none on the others, and holds no pinhole or session', { timeout: TEST_TIMEOUT_MS }, async () => {
    const addr = gateway?.metricsAddress();
    if (addr === undefined) throw new Error(`no "metrics listening" line\n${env.gatewayLog(20)}`);
    const scrape = async (): Promise<string> => {
      const r = await t().exec('edge', 'curl', ['-sS', '--max-time', '10', `http://${addr}/metrics`]);
      if (r.code !== 0) throw new Error(`scrape failed: ${r.stderr}`);
      return r.stdout;
    };
    // Sessions and pinholes end a moment after the clients exit.
    const deadline = Date.now() + LOG_WAIT_MS;
    let text = await scrape();
    while ((sum(text, 'ftp_alg_pinholes_open') > 0 || sum(text, 'ftp_alg_sessions_active') > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, LOG_POLL_MS));
      text = await scrape();
    }
    expect(sum(text, 'ftp_alg_pinholes_open'), 'pinholes left open').toBe(0);
    expect(sum(text, 'ftp_alg_sessions_active'), 'sessions left open').toBe(0);
    const transfers = outcomes.filter((o) => o.ok && o.cell.site !== 'plain');
    const toTlsUpstream = transfers.filter((o) => SITES[o.cell.site].upstream !== 'plain');
    const handshakes = (labels: Record<string, string>) => sum(text, 'ftp_alg_tls_handshakes_total', labels);
    expect(handshakes({ side: 'data-client', result: 'ok' }), 'protected client data connections').toBeGreaterThanOrEqual(transfers.length);
    expect(handshakes({ side: 'data-upstream', result: 'ok' }), 'protected upstream data connections').toBeGreaterThanOrEqual(toTlsUpstream.length);
    for (const site of SITE_KINDS.filter((k) => SITES[k].upstream === 'plain')) {
      expect(handshakes({ site: `ftps-${site}`, side: 'data-upstream' }), `TLS toward the cleartext upstream of ${site}`).toBe(0);
      expect(handshakes({ site: `ftps-${site}`, side: 'upstream' }), `TLS toward the cleartext upstream of ${site}`).toBe(0);
    }
    const counted = text.split('\n').filter((l) => l.startsWith('ftp_alg_tls_handshakes_total{site="ftps-strangerUp"')).join('\n');
    const logged = env.gatewayLog(100000).split('\n').filter((l) => l.includes('"site":"ftps-strangerUp"')).join('\n');
    expect(handshakes({ site: 'ftps-strangerUp', side: 'upstream', result: 'certificate' }), `the untrusted upstream refused; counted:\n${counted}\nlogged:\n${logged}`).toBeGreaterThanOrEqual(1);
    expect(handshakes({ site: 'ftps-tlsUp', side: 'upstream', result: 'certificate' })).toBe(0);
  });
});

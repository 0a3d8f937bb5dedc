// Upstream health costs session setup nothing (issue 17): ProFTPD behind the
// gateway in the NAT namespaces, one session every --gap-ms (greeting, login,
// QUIT) for --seconds per variant, and the setup times of each variant:
//
//   off          upstream.health.enabled false: no passive health, no probes
//   default      the default health settings (passive only: no probe while it works)
//   idle-probes  health.idleProbeMs 10000 (polite FTP probes of an idle member)
//   tcp-probe    --baseline CLI: an older build whose health check is a bare
//                TCP connect every 10 s (optional)
//   direct       no gateway: the same sessions from the edge namespace straight
//                to ProFTPD (what the server and the machine cost by themselves)
//
//   npx tsx bench/health.ts [--seconds 45] [--gap-ms 450] [--rounds 1] [--baseline /path/to/old/dist/cli.js]
//                           [--variants off,default,...] [--json FILE]
//
// As root, after `npm run build` and `.ci/install-e2e.sh`. Variants run in
// turn, their order rotating each round; the server's own log says how many
// connections it saw beyond the clients' sessions (the probes).
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRoot } from '../test/e2e/lib/fixtures.js';
import { e2eConfig, type GatewayConfig, startGateway } from '../test/e2e/lib/gateway.js';
import { assertPrereq, checkPrereq, GATEWAY_CLI } from '../test/e2e/lib/prereq.js';
import { startServer, type RunningServer } from '../test/e2e/lib/servers.js';
import { ADDR, createTopology, type Topology } from '../test/e2e/lib/topology.js';

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '45' },
    'gap-ms': { type: 'string', default: '450' },
    rounds: { type: 'string', default: '1' },
    baseline: { type: 'string' },
    variants: { type: 'string' },
    json: { type: 'string' },
  },
});
const SECONDS = Number(opt.seconds);
const AGENT = fileURLToPath(new URL('./lib/agent.mjs', import.meta.url));
const SETTLE_MS = 1_000;

interface Variant {
  readonly name: string;
  /** The gateway build; undefined: no gateway (direct). */
  readonly cli: string | undefined;
  readonly health: Record<string, unknown> | undefined;
}

interface Stats {
  p50ms: number;
  p90ms: number;
  p99ms: number;
  maxMs: number;
  meanMs: number;
  over100ms: number;
}

interface Sample {
  variant: string;
  round: number;
  sessions: number;
  errors: number;
  firstError: string;
  greeting: Stats;
  login: Stats;
  /** Connections the server logged beyond the clients' sessions. */
  extraConnections: number;
  /** QUIT commands the server logged beyond the clients' own. */
  extraQuits: number;
}

const ALL_VARIANTS: Variant[] = [
  { name: 'off', cli: GATEWAY_CLI, health: { enabled: false } },
  { name: 'default', cli: GATEWAY_CLI, health: {} },
  { name: 'idle-probes', cli: GATEWAY_CLI, health: { idleProbeMs: 10_000 } },
  ...(opt.baseline === undefined ? [] : [{ name: 'tcp-probe', cli: opt.baseline, health: undefined }]),
  { name: 'direct', cli: undefined, health: undefined },
];

const VARIANTS = ALL_VARIANTS.filter((v) => opt.variants === undefined || opt.variants.split(',').includes(v.name));

function config(variant: Variant): GatewayConfig {
  const c = e2eConfig('info'); // the "listening" line is info
  const site = c.sites[0];
  if (site === undefined) throw new Error('no e2e site');
  // The baseline build knows no health section; its default is the TCP check every 10 s.
  if (variant.health !== undefined) site.upstream = { ...site.upstream, health: variant.health };
  return c;
}

/** What the server logged so far: sessions opened and QUIT commands. */
async function serverCounts(server: RunningServer): Promise<{ opened: number; quits: number }> {
  const logs = await server.logs();
  return { opened: (logs.match(/FTP session opened/g) ?? []).length, quits: (logs.match(/ QUIT 221$/gm) ?? []).length };
}

async function measure(topo: Topology, server: RunningServer, variant: Variant, round: number): Promise<Sample> {
  const gateway = variant.cli === undefined ? undefined : await startGateway(topo, config(variant), variant.cli);
  try {
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const before = await serverCounts(server);
    const [from, ctl] = gateway === undefined ? (['edge', `${ADDR.server}:21`] as const) : (['client', `${ADDR.edgePublic}:21`] as const);
    const r = await topo.exec(
      from,
      process.execPath,
      [AGENT, 'paced', '--ctl', ctl, '--gap-ms', opt['gap-ms'] ?? '450', '--duration-ms', String(SECONDS * 1000), '--user', server.user, '--pass', server.password],
      { timeoutMs: SECONDS * 1000 + 60_000 },
    );
    if (r.code !== 0) throw new Error(`agent failed (${r.code}): ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Omit<Sample, 'variant' | 'round' | 'extraConnections' | 'extraQuits'>;
    const after = await serverCounts(server);
    return {
      variant: variant.name,
      round,
      ...out,
      extraConnections: after.opened - before.opened - out.sessions,
      extraQuits: after.quits - before.quits - out.sessions,
    };
  } finally {
    await gateway?.stop();
  }
}

function table(samples: Sample[]): string {
  const f = (n: number) => n.toFixed(1);
  const rows = samples.map(
    (s) =>
      `| ${s.variant} | ${s.round} | ${s.sessions} | ${s.errors} | ${f(s.greeting.p50ms)} | ${f(s.greeting.p99ms)} | ${f(s.greeting.maxMs)} | ${f(s.greeting.meanMs)} | ${s.greeting.over100ms} | ${f(s.login.p50ms)} | ${f(s.login.p99ms)} | ${f(s.login.maxMs)} | ${s.extraConnections} | ${s.extraQuits} |`,
  );
  return [
    '| variant | round | sessions | errors | greeting p50 ms | greeting p99 ms | greeting max ms | greeting mean ms | greetings > 100 ms | login p50 ms | login p99 ms | login max ms | extra connections seen by the server | extra QUITs |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

async function main(): Promise<void> {
  assertPrereq(checkPrereq({ gateway: true, clients: false }));
  const topo = await createTopology();
  const root = await createRoot();
  let server: RunningServer | undefined;
  const samples: Sample[] = [];
  try {
    server = await startServer('proftpd', topo, root.dir);
    const rounds = Number(opt.rounds);
    for (let round = 1; round <= rounds; round++) {
      const order = VARIANTS.map((_, i) => VARIANTS[(i + round - 1) % VARIANTS.length] as Variant);
      for (const variant of order) {
        const sample = await measure(topo, server, variant, round);
        samples.push(sample);
        console.error(`round ${round} ${variant.name}: ${sample.sessions} sessions, greeting p99 ${sample.greeting.p99ms.toFixed(1)} ms`);
      }
    }
  } finally {
    await server?.stop();
    await topo.destroy();
    await root.remove();
  }
  console.log(`\nProFTPD behind ftp-alg, one session every ${opt['gap-ms']} ms for ${SECONDS} s per variant:\n\n${table(samples)}\n`);
  if (opt.json !== undefined) writeFileSync(opt.json, JSON.stringify(samples, null, 2));
}

await main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

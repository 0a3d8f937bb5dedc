/**
 * The Grafana dashboard in deploy/grafana, checked against a real
 * Prometheus. Read as data: importable (a DS_PROMETHEUS data source input
 * used by every panel), the rows an operator expects, and every metric and
 * label its queries name exported by the gateway. Live: a Prometheus on
 * loopback scrapes an in-process gateway every second while it carries real
 * transfers (basic-ftp to ftp-srv), a refused session, a refused and an
 * expired pinhole, a wrong-peer connection, refused commands, a dead
 * upstream and a reload; then every panel query, with its template variables filled in,
 * must parse and return data, every template variable must find values, and
 * the alert rules loaded into that Prometheus must evaluate cleanly.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/index.js';
import { ControlClient } from '../../support/control.js';
import { connectClient, sha256 } from '../../support/ftpClient.js';
import { startGatewayWith } from '../../support/gateway.js';
import { useOpsRig } from '../../support/opsRig.js';
import { portRanges } from '../../support/ports.js';
import { assertToolPrereq, freeLoopbackPort, type QueryAnswer, type RunningPrometheus, startPrometheus, toolPrereq } from '../../support/prometheus.js';
import { gatewayMetrics, metricNames, nameProblems } from '../../support/promql.js';
import { parse227 } from '../../support/hostPort.js';

const DASHBOARD = fileURLToPath(new URL('../../../deploy/grafana/ftp-alg.json', import.meta.url));
const RULES = fileURLToPath(new URL('../../../deploy/prometheus/ftp-alg.rules.yml', import.meta.url));
const JOB = 'ftp-alg';
/** What Grafana puts in for the template variables (all values selected) and its built-in intervals. */
const VARIABLES: Record<string, string> = {
  $__rate_interval: '1m',
  $__interval: '15s',
  $__range: '5m',
  $job: JOB,
  $instance: '.*',
  $site: '.*',
};
/** Metrics of the kernel (nftables) data plane: no series while the relay is the only plane (checked below). */
const KERNEL_PLANE_METRICS = ['ftp_alg_pinholes_by_plane_total', 'ftp_alg_kernel_plane_errors_total'];
const DATA_DEADLINE_MS = 20_000;
const TEST_TIMEOUT_MS = 45_000;

interface Target {
  expr: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  type: string;
  title: string;
  id: number;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  __inputs: { name: string; type: string; pluginId: string }[];
  panels: Panel[];
  templating: { list: { name: string; query: { query: string } | string; datasource: { uid: string } }[] };
  annotations: { list: { expr?: string; datasource?: { uid: string } }[] };
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queries = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
const annotationQueries = dashboard.annotations.list.flatMap((a) => (a.expr === undefined ? [] : [{ panel: 'annotation', expr: a.expr }]));

function fill(expr: string): string {
  let out = expr;
  for (const [name, value] of Object.entries(VARIABLES).sort((a, b) => b[0].length - a[0].length)) out = out.split(name).join(value);
  return out;
}

function variableQuery(v: Dashboard['templating']['list'][number]): string {
  return typeof v.query === 'string' ? v.query : v.query.query;
}

describe('the dashboard, read as data', () => {
  it('is importable: one Prometheus data source input, used by every panel, query, variable and annotation', () => {
    expect(dashboard.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' })]);
    const users = [
      ...panels.filter((p) => p.type !== 'row').map((p) => p.datasource?.uid),
      ...panels.flatMap((p) => (p.targets ?? []).map((t) => t.datasource?.uid)),
      ...dashboard.templating.list.map((v) => v.datasource.uid),
      ...dashboard.annotations.list.filter((a) => a.expr !== undefined).map((a) => a.datasource?.uid),
    ];
    expect(users.length).toBeGreaterThan(30);
    expect(new Set(users)).toEqual(new Set(['${DS_PROMETHEUS}']));
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
  });

  it('has the rows an operator looks for', () => {
    const rows = panels.filter((p) => p.type === 'row').map((p) => p.title);
    expect(rows).toEqual(
      expect.arrayContaining(['Sessions', 'Pinholes and port pools', 'Throughput and transfers', 'Upstream health and latency', 'Refusals and peer input', 'Data plane and operations']),
    );
  });

  it.each([...queries, ...annotationQueries].map((q) => [q.panel, q.expr] as const))('%s: %s names only metrics and labels the gateway exports', (_panel, expr) => {
    expect(nameProblems(fill(expr), gatewayMetrics())).toEqual([]);
    expect(fill(expr)).not.toContain('$');
  });
});

const prereq = toolPrereq('dashboard.test.ts (a live Prometheus)', ['prometheus']);
type Range = { min: number; max: number };
const [passive, active, tightPassive, tightActive, deadPassive, deadActive] = portRanges(6, 8) as [Range, Range, Range, Range, Range, Range];
const FILE = randomBytes(256 * 1024 + 11);
const rig = useOpsRig({ 'file.bin': FILE });

describe.skipIf(prereq.skip)('the dashboard against a live Prometheus scraping a gateway under real traffic', () => {
  let prometheus: RunningPrometheus | undefined;

  beforeAll(async () => {
    assertToolPrereq(prereq);
  });

  afterAll(async () => {
    await prometheus?.stop();
  });

  it('every panel query parses and returns data; every variable finds values; the alert rules evaluate', async () => {
    const site = (name: string, p: Range, a: Range, extra: Record<string, unknown> = {}) => ({
      name,
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: rig.upstream.host, port: rig.upstream.port },
      externalAddress: '127.0.0.1',
      passivePorts: p,
      activePorts: a,
      ...extra,
    });
    const document = {
      metrics: { listen: '127.0.0.1:0' },
      sites: [
        site('files', passive, active, { clients: { allow: [], deny: ['127.0.0.2'] } }),
        // One passive port and a short accept deadline: a second PASV is refused, the first expires.
        site('tight', { min: tightPassive.min, max: tightPassive.min }, tightActive, { timeouts: { pinholeAcceptMs: 300 } }),
        // Passive health: the one session that meets the dead upstream takes it out (it is the last member: failing).
        site('dead', deadPassive, deadActive, { upstream: { host: '127.0.0.1', port: await freeLoopbackPort(), health: { consecutiveFailures: 1 } } }),
      ],
    };
    const g = (rig.gw = await startGatewayWith(document, 'silent'));
    const metrics = g.metrics();
    prometheus = await startPrometheus(`${metrics.host}:${metrics.port}`, { job: JOB, ruleFiles: [RULES] });
    await untilData(prometheus, `up{job="${JOB}"} == 1`); // scraped before the traffic, so counters have a before and an after

    await carryTraffic(g.portOf('files'), g.portOf('tight'), g.portOf('dead'));
    await g.gateway.reload(parseConfig({ log: { level: 'silent' }, ...document })); // the Reloads panel and annotation

    // Prometheus needs two scrapes after the traffic for every rate(); poll (bounded) until each query has data.
    const kernelPlane = (expr: string) => metricNames(expr).some((m) => KERNEL_PLANE_METRICS.includes(m));
    const all = [...queries, ...annotationQueries];
    const answers = await poll(async () => {
      const now = await Promise.all(all.map(async (q) => ({ ...q, answer: await (prometheus as RunningPrometheus).query(fill(q.expr)) })));
      return { value: now, done: now.every((a) => kernelPlane(a.expr) || hasData(a.answer)) };
    });
    for (const a of answers) {
      expect(a.answer, `${a.panel}: ${a.expr}`).toMatchObject({ status: 'success' });
      if (!kernelPlane(a.expr)) expect(hasData(a.answer), `${a.panel}: ${a.expr} returned no data`).toBe(true);
    }

    // The kernel-plane panels are empty only because the relay is the plane in use.
    const plane = await prometheus.query(`ftp_alg_data_plane{job="${JOB}"} == 1`);
    expect(resultOf(plane).map((s) => s.metric.kind)).toEqual(['relay']);

    // Every template variable finds values (label_values(selector, label) is what Grafana asks).
    for (const v of dashboard.templating.list) {
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(variableQuery(v));
      expect(m, variableQuery(v)).not.toBeNull();
      const found = resultOf(await prometheus.query(fill((m as RegExpExecArray)[1] as string))).map((s) => s.metric[(m as RegExpExecArray)[2] as string]);
      expect(found.filter((x) => x !== undefined).length, v.name).toBeGreaterThan(0);
    }
    const sites = resultOf(await prometheus.query('ftp_alg_ports_free')).map((s) => s.metric.site);
    expect(new Set(sites)).toEqual(new Set(['files', 'tight', 'dead']));

    // The alert rules evaluate against the live series without error, and the dead upstream shows.
    const rules = (await prometheus.get('/api/v1/rules')) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
    const evaluated = rules.data.groups.flatMap((group) => group.rules);
    expect(evaluated.length).toBeGreaterThan(10);
    for (const r of evaluated) expect(r, r.name).toMatchObject({ health: 'ok' });
    const alerts = (await prometheus.get('/api/v1/alerts')) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
    expect(alerts.data.alerts.filter((a) => a.labels.alertname === 'FtpAlgSiteUpstreamsDown').map((a) => a.labels.site)).toEqual(['dead']);
  }, TEST_TIMEOUT_MS);
});

/** Transfers both ways, then each kind of refusal and failure the dashboard shows. */
async function carryTraffic(files: number, tight: number, dead: number): Promise<void> {
  const client = await connectClient(files, 'PASV');
  expect(sha256(await client.download('file.bin'))).toBe(sha256(FILE));
  await client.upload(FILE, 'up.bin');
  expect(sha256(await client.download('up.bin'))).toBe(sha256(FILE));
  client.close();

  const denied = await ControlClient.connect(files, { localAddress: '127.0.0.2' });
  expect((await denied.reply()).code).toBe(421);
  await denied.closed;

  const holder = await rig.session(tight);
  expect((await holder.command('AUTH TLS')).code).toBe(534); // a command the gateway refuses itself
  expect((await holder.command('"NOOP"')).code).toBe(500); // peer input the codec rejects
  const pasv = await holder.command('PASV');
  expect(pasv.code).toBe(227);
  const { port } = parse227(pasv.text);
  const intruder = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }); // not the control client: refused
  intruder.on('error', () => undefined);
  await once(intruder, 'close');
  const second = await rig.session(tight);
  expect((await second.command('PASV')).code).toBe(425); // the only port is held
  // The holder's pinhole expires unused after pinholeAcceptMs: the queries below wait for it to show.

  const lost = await ControlClient.connect(dead);
  expect((await lost.reply()).code).toBe(421);
  await lost.closed;
}

/** Ask again every half second until `done`, or until DATA_DEADLINE_MS; the last answer either way. */
async function poll<T>(ask: () => Promise<{ value: T; done: boolean }>): Promise<T> {
  const deadline = Date.now() + DATA_DEADLINE_MS;
  for (;;) {
    const { value, done } = await ask();
    if (done || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function untilData(prometheus: RunningPrometheus, expr: string): Promise<void> {
  const answer = await poll(async () => {
    const value = await prometheus.query(expr);
    return { value, done: hasData(value) };
  });
  expect(hasData(answer), `${expr} returned no data`).toBe(true);
}

function resultOf(answer: QueryAnswer): { metric: Record<string, string>; value: readonly [number, string] }[] {
  if (answer.status !== 'success' || answer.data.resultType !== 'vector') return [];
  return answer.data.result as { metric: Record<string, string>; value: readonly [number, string] }[];
}

function hasData(answer: QueryAnswer): boolean {
  if (answer.status !== 'success') return false;
  if (answer.data.resultType === 'scalar') return true;
  return (answer.data.result as readonly unknown[]).length > 0;
}

/**
 * The data plane in two worker threads (`dataPlane.workers: 2`), run as the
 * built CLI in a child process: worker threads load dist/data/worker/dataWorker.js,
 * the workers' log lines (with `worker` and `port`) reach the child's stdout
 * where the test can read them, and the gateway's control loop is its own,
 * not the test's. 100 concurrent sessions with transfers all succeed
 * byte-exact; no pinhole port is served by two workers; metrics add up
 * across the workers; a NOOP round trip during 64 bulk transfers stays
 * bounded (asserted loosely; the figure is printed for the bench). The NOOP
 * session has its own site, upstream and client thread (opsProbe.ts), so the
 * only busy loop it crosses is the gateway's.
 */
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { Client } from 'basic-ftp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connectClient, sha256 } from '../../support/ftpClient.js';
import { type CliProcess, configFile, type ConfigFile, killStartedClis, type LogLine, metricsAddressOf, sitePort, startCli } from '../../support/cli.js';
import { Scrape } from '../../support/opsMetrics.js';
import { type ControlProbe, startControlProbe } from '../../support/opsProbe.js';
import { freePortOnAll, inRange, portRanges, rangeSize } from '../../support/ports.js';
import { parse227 } from '../../support/hostPort.js';
import { type TestUpstream, startUpstream } from '../../support/upstream.js';

type Range = { min: number; max: number };
const SITE = 'multi';
const PROBE_SITE = 'probe';
const WORKERS = 2;
const SESSIONS = 100;
const BULK_FLOWS = 64;
const BULK_BYTES = 4 * 1024 * 1024;
const NOOP_BOUND_MS = 1_000;
const [passivePorts, activePorts, upstreamPasv, probePorts] = portRanges(4, 190) as [Range, Range, Range, Range];

/** 64 KiB to 1 MiB, spread over the sessions. */
const FILES = Array.from({ length: SESSIONS }, (_, i) => randomBytes(64 * 1024 + ((i * 7_919) % 961) * 1024));
const BULK = randomBytes(BULK_BYTES);

let upstream: TestUpstream;
let file: ConfigFile;
let cli: CliProcess;
let port: number;
let metrics: { host: string; port: number };
let probe: ControlProbe;

beforeAll(async () => {
  upstream = await startUpstream({ host: '127.0.0.1', port: await freePortOnAll(['127.0.0.1']), pasv: upstreamPasv });
  FILES.forEach((data, i) => upstream.writeFile(`f${i}.bin`, data));
  upstream.writeFile('bulk.bin', BULK);
  probe = await startControlProbe();
  file = configFile({
    log: { level: 'info' },
    metrics: { listen: '127.0.0.1:0' },
    dataPlane: { workers: WORKERS },
    sites: [
      {
        name: SITE,
        listen: { host: '127.0.0.1', port: 0 },
        upstream: { host: upstream.host, port: upstream.port },
        externalAddress: '127.0.0.1',
        passivePorts,
        activePorts,
        limits: { maxSessions: 1_000, maxSessionsPerClient: 1_000, maxPinholesPerClient: 1_000 }, // every test client is 127.0.0.1
      },
      {
        name: PROBE_SITE,
        listen: { host: '127.0.0.1', port: 0 },
        upstream: { host: '127.0.0.1', port: probe.upstreamPort },
        passivePorts: { min: probePorts.min, max: probePorts.min + 9 },
        activePorts: { min: probePorts.min + 10, max: probePorts.min + 19 },
      },
    ],
  });
  cli = startCli(file.path);
  await cli.waitForMsg('started');
  port = await sitePort(cli, SITE);
  metrics = await metricsAddressOf(cli);
});

afterAll(async () => {
  if (cli !== undefined) {
    cli.signal('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([cli.exited, new Promise((resolve) => (timer = setTimeout(resolve, 5_000)))]);
    clearTimeout(timer);
  }
  await killStartedClis();
  await probe?.close();
  await upstream?.close();
  file?.remove();
});

function transferLines(from: number): (LogLine & { worker: number; port: number })[] {
  return cli.lines
    .slice(from)
    .filter((l): l is LogLine & { worker: number; port: number } => l.msg === 'transfer done' && typeof l.worker === 'number' && typeof l.port === 'number');
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

describe('data plane in 2 worker threads', () => {
  it('100 concurrent sessions with transfers all succeed byte-exact, and no port is served by two workers', async () => {
    const mark = cli.lines.length;
    const began = performance.now();
    const results = await Promise.all(
      FILES.map(async (data, i) => {
        const c = await connectClient(port, 'PASV');
        try {
          const got = await c.download(`f${i}.bin`);
          return { ok: sha256(got) === sha256(data), length: got.length, replies: [...c.passiveReplies] };
        } catch (err) {
          return { ok: false, length: 0, replies: [String(err)] };
        } finally {
          c.close();
        }
      }),
    );
    const ms = performance.now() - began;
    const bytes = FILES.reduce((n, f) => n + f.length, 0);
    console.log(`${SESSIONS} concurrent sessions, ${(bytes / 2 ** 20).toFixed(1)} MiB: ${ms.toFixed(0)} ms`);
    expect(results.filter((r) => !r.ok)).toEqual([]);

    // Every pinhole ran in a worker, and each port belongs to exactly one worker.
    await vi.waitFor(() => expect(transferLines(mark)).toHaveLength(SESSIONS), { timeout: 10_000 });
    const lines = transferLines(mark);
    const workersOfPort = new Map<number, Set<number>>();
    for (const l of lines) workersOfPort.set(l.port, (workersOfPort.get(l.port) ?? new Set()).add(l.worker));
    const shared = [...workersOfPort].filter(([, w]) => w.size > 1).map(([p]) => p);
    expect(shared).toEqual([]);
    const byWorker = new Map<number, Set<number>>();
    for (const l of lines) byWorker.set(l.worker, (byWorker.get(l.worker) ?? new Set()).add(l.port));
    expect([...byWorker.keys()].sort()).toEqual([0, 1]); // both workers relayed
    const [zero, one] = [byWorker.get(0) ?? new Set<number>(), byWorker.get(1) ?? new Set<number>()];
    expect([...zero].filter((p) => one.has(p))).toEqual([]);
    console.log(`transfers per worker: 0 → ${lines.filter((l) => l.worker === 0).length}, 1 → ${lines.filter((l) => l.worker === 1).length}`);

    // The ports the clients were given are the ports the workers served, all in the site's range.
    const given = results.flatMap((r) => r.replies.map((text) => parse227(text)));
    expect(given).toHaveLength(SESSIONS);
    for (const { address, port: p } of given) {
      expect(address).toBe('127.0.0.1');
      expect(inRange(p, passivePorts)).toBe(true);
      expect(workersOfPort.has(p)).toBe(true);
    }
    expect(lines.reduce((n, l) => n + Number(l.downBytes), 0)).toBe(bytes);

    // Metrics merge the workers' counters with the control loop's.
    await vi.waitFor(async () => {
      const s = await Scrape.from(metrics);
      expect(s.value('ftp_alg_sessions_active', { site: SITE })).toBe(0);
      expect(s.value('ftp_alg_ports_free', { site: SITE, dir: 'passive' })).toBe(rangeSize(passivePorts));
    });
    const s = await Scrape.from(metrics);
    expect(s.value('ftp_alg_sessions_total', { site: SITE })).toBe(SESSIONS);
    expect(s.value('ftp_alg_pinholes_opened_total', { site: SITE, dir: 'passive' })).toBe(SESSIONS);
    expect(s.value('ftp_alg_bytes_total', { site: SITE, flow: 'download' })).toBe(bytes);
    expect(s.value('ftp_alg_transfer_duration_seconds_count', { site: SITE })).toBe(SESSIONS);
  });

  it('the control loop answers a NOOP promptly during 64 bulk transfers', async () => {
    // The probe session runs in its own thread against its own upstream: the
    // round trip crosses the gateway's control loop and no other busy loop.
    const { greeting, login } = await probe.connect(await sitePort(cli, PROBE_SITE));
    expect(greeting).toMatch(/^220 /);
    expect(login).toMatch(/^230 /);
    const idle = await probe.measure(20);

    const clients: Client[] = [];
    try {
      for (let i = 0; i < BULK_FLOWS; i++) {
        const c = new Client(30_000);
        clients.push(c);
        await c.access({ host: '127.0.0.1', port, user: 'anonymous', password: 'bulk@ops' });
      }
      let receiving = 0;
      let busySamples: Promise<{ rtts: number[]; codes: number[] }> | undefined;
      let probing = false;
      let probed = false;
      const loopDelay = monitorEventLoopDelay({ resolution: 10 });
      loopDelay.enable();
      const began = performance.now();
      const downloads = clients.map(async (c) => {
        const chunks: Buffer[] = [];
        let started = false;
        const sink = new Writable({
          write(chunk: Buffer, _enc, done) {
            if (!started) {
              started = true;
              // Probe only while at least half of the flows are moving bytes.
              if (++receiving >= BULK_FLOWS / 2 && !probed) {
                probed = probing = true;
                probe.start();
              }
            }
            chunks.push(chunk);
            done();
          },
        });
        try {
          await c.downloadTo(sink, 'bulk.bin');
        } finally {
          if (started && --receiving < BULK_FLOWS / 2 && probing) {
            probing = false;
            busySamples = probe.stop();
          }
        }
        return sha256(Buffer.concat(chunks)) === sha256(BULK);
      });
      const ok = await Promise.all(downloads);
      const ms = performance.now() - began;
      loopDelay.disable();
      expect(ok.every(Boolean)).toBe(true);
      expect(busySamples).toBeDefined();
      const busy = await (busySamples as Promise<{ rtts: number[]; codes: number[] }>);
      expect(busy.codes.every((code) => code === 200)).toBe(true);

      const sorted = [...busy.rtts].sort((a, b) => a - b);
      const mib = (BULK_FLOWS * BULK_BYTES) / 2 ** 20;
      console.log(
        `NOOP round trip through the gateway's control loop, idle: p50 ${percentile([...idle.rtts].sort((a, b) => a - b), 50).toFixed(2)} ms (${idle.rtts.length} probes); ` +
          `during ${BULK_FLOWS} bulk flows (${busy.rtts.length} probes with >= ${BULK_FLOWS / 2} flows receiving): ` +
          `p50 ${percentile(sorted, 50).toFixed(1)} ms, p95 ${percentile(sorted, 95).toFixed(1)} ms, max ${(sorted[sorted.length - 1] ?? Number.NaN).toFixed(1)} ms; ` +
          `bulk ${mib} MiB in ${ms.toFixed(0)} ms (${(mib / (ms / 1000)).toFixed(0)} MiB/s through the gateway); ` +
          `test thread loop delay p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} ms`,
      );
      expect(busy.rtts.length).toBeGreaterThanOrEqual(3);
      expect(sorted[sorted.length - 1]).toBeLessThan(NOOP_BOUND_MS);
    } finally {
      for (const c of clients) c.close();
    }
  });
});

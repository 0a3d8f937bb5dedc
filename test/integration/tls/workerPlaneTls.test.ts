/**
 * With data workers (`dataPlane.workers`), a pinhole with a TLS leg runs on
 * the control loop (its TLS sockets and the site's session cache live
 * there) and says so in the log.
 * Uses the build (dist/), as worker threads load dist/data/worker/dataWorker.js.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { PinholeHandle, PinholeRequest } from '../../../src/data/DataPlane.js';
import { tlsSection, useTestCerts } from '../../support/certs.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { cleanupEachTest, clientControl, receiveAll, sendAll, sha256, startGatewayControl, startPlainUpstream, tlsClient } from '../../support/tlsPeers.js';
import { FILES } from '../../support/transferFiles.js';

const dist = (path: string) => new URL(`../../../dist/${path}`, import.meta.url).href;
const { WorkerDataPlane } = (await import(dist('data/worker/WorkerDataPlane.js'))) as typeof import('../../../src/data/worker/WorkerDataPlane.js');
const { ShardedPool } = (await import(dist('data/ShardedPool.js'))) as typeof import('../../../src/data/ShardedPool.js');
const { SiteTls } = (await import(dist('tls/SiteTls.js'))) as typeof import('../../../src/tls/SiteTls.js');
const { Metrics } = (await import(dist('observe/metrics.js'))) as typeof import('../../../src/observe/metrics.js');

const [passivePorts] = portRanges(1, 8) as [{ min: number; max: number }];
const testCerts = useTestCerts();
const cleanup = cleanupEachTest();

/** A pino logger whose lines the test can read. */
function recordingLog() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'debug' }, sink), lines };
}

describe('TLS pinholes with data workers', () => {
  it('run on the control loop, say so, and relay byte-exact; the port comes back', async () => {
    const { log, lines } = recordingLog();
    const metrics = new Metrics();
    const certs = testCerts();
    const siteTls = new SiteTls(tlsSection(certs), { site: 'main', metrics, log });
    const plane = new WorkerDataPlane(2, 'silent', log);
    cleanup.push(() => plane.close());
    const pool = new ShardedPool(passivePorts, plane.shards);
    const upstream = await startPlainUpstream();
    cleanup.push(() => upstream.close());
    const control = await startGatewayControl(siteTls);
    cleanup.push(() => control.close());
    const client = await clientControl(certs, control.port, 'TLSv1.3');
    cleanup.push(() => client.socket.destroy());

    const request: PinholeRequest = {
      site: 'main',
      dir: 'passive',
      client: { kind: 'listen', host: '127.0.0.1', pool, expectedPeer: '127.0.0.1' },
      upstream: { kind: 'connect', host: '127.0.0.1', port: upstream.port },
      acceptTimeoutMs: 5_000,
      dataIdleMs: 10_000,
      log,
      metrics,
      tls: { client: siteTls },
    };
    const pinhole: PinholeHandle = plane.pinhole(request);
    await pinhole.open();
    expect(lines.some((l) => l.msg === 'TLS pinholes run on the control loop; the data workers relay the others')).toBe(true);
    expect(lines.some((l) => l.why === 'tls' && l.plane === 'control-loop')).toBe(true);
    expect(pool.free).toBe(rangeSize(passivePorts) - 1);

    const data = tlsClient(certs, pinhole.clientPort as number, { maxVersion: 'TLSv1.3', session: client.session() });
    data.on('error', () => undefined);
    cleanup.push(() => data.destroy());
    const upstreamData = await upstream.next();
    const arrived = receiveAll(data);
    await new Promise<void>((resolve) => data.once('secureConnect', () => resolve()));
    const reused = data.isSessionReused();
    sendAll(upstreamData.socket, FILES['eight-mib.bin']);
    expect(sha256(await arrived)).toBe(sha256(FILES['eight-mib.bin']));
    expect(reused).toBe(true); // the session cache is the control loop's: only there can it resume
    await pinhole.closed();
    expect(pool.free).toBe(rangeSize(passivePorts));
  });
});

/**
 * The data planes driven directly, below the session: pinhole requests built
 * the way DataChannels builds them, and the worker plane loaded from dist/
 * (its threads run dist/data/worker/dataWorker.js; `npm test` builds first).
 * Types come from src/, so type checking does not need a build.
 */
import { existsSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';
import type { LegRequest, PinholeHandle, PinholeRequest } from '../../src/data/DataPlane.js';
import type { ShardedPool } from '../../src/data/ShardedPool.js';
import type * as WorkerModule from '../../src/data/worker/WorkerDataPlane.js';

const WORKER_PLANE = new URL('../../dist/data/worker/WorkerDataPlane.js', import.meta.url);

/** The built WorkerDataPlane class; fails with a clear message when dist/ is missing. */
export async function loadWorkerPlane(): Promise<typeof WorkerModule.WorkerDataPlane> {
  if (!existsSync(fileURLToPath(WORKER_PLANE))) throw new Error('dist/ is missing: run `npm run build` first');
  const module = (await import(WORKER_PLANE.href)) as typeof WorkerModule;
  return module.WorkerDataPlane;
}

export const quietLog = createLogger('silent');

/** A passive pinhole: the client leg listens on `pool` for 127.0.0.1, the upstream leg connects to `target`. */
export function passiveRequest(pool: ShardedPool, target: { host: string; port: number }, acceptTimeoutMs = 10_000): PinholeRequest {
  const client: LegRequest = { kind: 'listen', host: '127.0.0.1', pool, expectedPeer: '127.0.0.1' };
  return {
    site: 'test',
    dir: 'passive',
    client,
    upstream: { kind: 'connect', host: target.host, port: target.port },
    acceptTimeoutMs,
    dataIdleMs: 10_000,
    log: quietLog,
    metrics: new Metrics(),
  };
}

/** A pinhole whose two legs both listen (mode conversion: the gateway listens on both sides). */
export function twoListenerRequest(clientPool: ShardedPool, upstreamPool: ShardedPool): PinholeRequest {
  return {
    ...passiveRequest(clientPool, { host: '127.0.0.1', port: 1 }),
    upstream: { kind: 'listen', host: '127.0.0.1', pool: upstreamPool, expectedPeer: '127.0.0.1' },
  };
}

/** Connect to the pinhole's client port, send `payload` and end. */
export async function sendThrough(pinhole: PinholeHandle, payload: Buffer): Promise<void> {
  const socket = net.connect({ host: '127.0.0.1', port: pinhole.clientPort as number, allowHalfOpen: true });
  socket.on('error', () => undefined);
  socket.on('data', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.end(payload);
  await new Promise<void>((resolve) => socket.once('close', () => resolve()));
}

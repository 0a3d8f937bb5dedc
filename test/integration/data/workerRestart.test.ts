/**
 * A data worker that dies is replaced, every time (issue 11, defect 1). The
 * plane runs one worker; the test kills it (Worker.terminate, as a crash
 * would end it) three times. After each death: the pinholes it held close
 * (closed() resolves), their ports go back to the pool, the next pinhole
 * opens on the new worker and relays, and /metrics still hears from it.
 * Before the fix the second death was lost: the exit handler held its first
 * slot, so pinholes stayed open forever, ports leaked, and the next open()
 * waited for an answer from a dead worker. A worker that stops answering
 * is treated as dead: a bind it leaves unanswered restarts it, a scrape it
 * leaves unanswered leaves it out.
 */
import type { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { PinholeHandle } from '../../../src/data/DataPlane.js';
import { ShardedPool } from '../../../src/data/ShardedPool.js';
import type { WorkerDataPlane } from '../../../src/data/worker/WorkerDataPlane.js';
import { loadWorkerPlane, passiveRequest, quietLog, sendThrough } from '../../support/dataPlanes.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { type Listener, listen, within } from '../../support/traps.js';

/** Every Worker the plane starts, in order (the last one is the live one); a hung one swallows what it is sent. */
const started = vi.hoisted(() => [] as Worker[]);
const hung = vi.hoisted(() => new Set<Worker>());

vi.mock('node:worker_threads', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:worker_threads')>();
  class RecordedWorker extends real.Worker {
    constructor(...args: ConstructorParameters<typeof real.Worker>) {
      super(...args);
      started.push(this);
    }

    override postMessage(...args: Parameters<InstanceType<typeof real.Worker>['postMessage']>): void {
      if (!hung.has(this)) super.postMessage(...args);
    }
  }
  return { ...real, Worker: RecordedWorker, default: { ...real, Worker: RecordedWorker } };
});

const [range] = portRanges(1, 4) as [{ min: number; max: number }];
const SETTLE_MS = 5_000;

let plane: WorkerDataPlane;
let pool: ShardedPool;
let upstream: Listener;

beforeAll(async () => {
  const Plane = await loadWorkerPlane();
  plane = new Plane(1, 'silent', quietLog);
  pool = new ShardedPool(range, plane.shards);
  upstream = await listen('127.0.0.1');
});

afterAll(async () => {
  await plane?.close();
  await upstream?.close();
});

async function kill(): Promise<void> {
  const before = started.length;
  await (started.at(-1) as Worker).terminate();
  await vi.waitFor(() => expect(started.length).toBe(before + 1), { timeout: SETTLE_MS }); // replaced
}

async function openRelaying(payload: string): Promise<PinholeHandle> {
  const pinhole = plane.pinhole(passiveRequest(pool, upstream));
  await within(SETTLE_MS, 'open() on the live worker', pinhole.open());
  expect(pinhole.state).toBe('waiting');
  const seen = upstream.received().length;
  await sendThrough(pinhole, Buffer.from(payload));
  await within(SETTLE_MS, 'the relayed pinhole to close', pinhole.closed());
  expect(upstream.received().subarray(seen).toString()).toBe(payload);
  return pinhole;
}

async function expectAllPortsFree(): Promise<void> {
  await vi.waitFor(() => expect(pool.free).toBe(rangeSize(range)), { timeout: SETTLE_MS });
}

describe('a data worker that dies is replaced every time', () => {
  it.each([1, 2, 3])('death %i: its pinholes close, their ports come back, the new worker serves', async () => {
    const waiting = plane.pinhole(passiveRequest(pool, upstream));
    await within(SETTLE_MS, 'open()', waiting.open());
    expect(pool.free).toBe(rangeSize(range) - 1);

    await kill();
    await within(SETTLE_MS, "the dead worker's pinhole to close", waiting.closed());
    expect(waiting.state).toBe('closed');
    await expectAllPortsFree();

    await openRelaying(`after death ${started.length - 1}`);
    await expectAllPortsFree();
  });

  it('an open() in flight when the worker dies settles, and its port comes back', async () => {
    const pinhole = plane.pinhole(passiveRequest(pool, upstream));
    const opening = pinhole.open().then(
      () => 'opened',
      (err: Error) => err.message,
    );
    await kill();
    const outcome = await within(SETTLE_MS, 'open() to settle after the worker died', opening);
    if (outcome === 'opened') await within(SETTLE_MS, 'the pinhole to close', pinhole.closed());
    else expect(outcome).toMatch(/worker/);
    expect(pinhole.state).toBe('closed');
    await expectAllPortsFree();
    await openRelaying('after a death during open');
  });

  it('a hung worker: a scrape leaves it out after 1 s, an unanswered bind restarts it after 10 s', async () => {
    const stuck = started.at(-1) as Worker;
    hung.add(stuck);
    expect(await within(SETTLE_MS, 'metricsJson() from a hung worker', plane.metricsJson())).toEqual([[]]);
    const pinhole = plane.pinhole(passiveRequest(pool, upstream));
    const outcome = await within(15_000, 'open() on a hung worker', pinhole.open().then(() => 'opened', (err: Error) => err.message));
    expect(outcome).toMatch(/data worker exited/);
    await expectAllPortsFree();
    await vi.waitFor(() => expect(started.at(-1)).not.toBe(stuck), { timeout: SETTLE_MS });
    await openRelaying('after a hung worker was replaced');
  }, 30_000);

  it('metrics still come from the live worker after its predecessors died', async () => {
    const parts = await within(SETTLE_MS, 'metricsJson()', plane.metricsJson());
    expect(parts).toHaveLength(1);
    const names = (parts[0] as { name: string }[]).map((m) => m.name);
    expect(names).toContain('ftp_alg_pinholes_opened_total');
  });
});

/**
 * One allocate/bind path for both data planes (issue 11, defect 5). A port
 * some other program holds is set aside and another one tried, never the
 * same port again; a pool whose every port is held by others fails with a
 * PortInUseError naming how many ports were tried; a port goes back to its
 * pool only once its listener has closed, so it is never handed out while
 * still bound. Each row runs on the in-process plane and on worker threads.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type DataPlane, InProcessDataPlane, type PinholeHandle } from '../../../src/data/DataPlane.js';
import { ShardedPool } from '../../../src/data/ShardedPool.js';
import { loadWorkerPlane, passiveRequest, quietLog, sendThrough, twoListenerRequest } from '../../support/dataPlanes.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { type Listener, listen, within } from '../../support/traps.js';

type Range = { min: number; max: number };
const SETTLE_MS = 5_000;

const planes: [string, () => Promise<DataPlane>][] = [
  ['in process', async () => new InProcessDataPlane()],
  ['in 2 worker threads', async () => new (await loadWorkerPlane())(2, 'silent', quietLog)],
];

describe.each(planes)('port binding, data plane %s', (_name, makePlane) => {
  const [one, six, spare, other] = portRanges(4, 12) as [Range, Range, Range, Range];
  let plane: DataPlane;
  let upstream: Listener;
  const foreign: Listener[] = [];

  beforeAll(async () => {
    plane = await makePlane();
    upstream = await listen('127.0.0.1');
  });

  afterAll(async () => {
    for (const l of foreign.splice(0)) await l.close();
    await upstream?.close();
    await plane?.close();
  });

  async function openOutcome(pinhole: PinholeHandle): Promise<string> {
    return within(SETTLE_MS, 'open() to settle', pinhole.open()).then(
      () => 'opened',
      (err: Error & { code?: string }) => `${err.code}: ${err.message}`,
    );
  }

  it('a one-port pool whose port another program holds: one bind attempt, then PortInUseError', async () => {
    const range = { min: one.min, max: one.min + plane.shards - 1 };
    const pool = new ShardedPool(range, plane.shards);
    for (let port = range.min; port <= range.max; port++) foreign.push(await listen('127.0.0.1', port));
    const pinhole = plane.pinhole(passiveRequest(pool, upstream));
    const outcome = await openOutcome(pinhole);
    expect(outcome).toMatch(/^ERR_ALG_PORT_IN_USE: .*\b1 port\b/);
    expect(pinhole.state).toBe('closed');
    await vi.waitFor(() => expect(pool.free).toBe(rangeSize(range)), { timeout: SETTLE_MS });
  });

  it('a pool with one port free among ports held by other programs: every pinhole finds the free one', async () => {
    const range = { min: six.min, max: six.min + 6 * plane.shards - 1 };
    const pool = new ShardedPool(range, plane.shards);
    const held = new Set<number>();
    for (let port = range.min; port <= range.max; port++) {
      // Keep exactly one port of each shard free: the highest of its residue class.
      if (port + plane.shards <= range.max) {
        foreign.push(await listen('127.0.0.1', port));
        held.add(port);
      }
    }
    for (let i = 0; i < 10; i++) {
      const pinhole = plane.pinhole(passiveRequest(pool, upstream));
      expect(await openOutcome(pinhole)).toBe('opened');
      expect(held.has(pinhole.clientPort as number)).toBe(false);
      pinhole.close('test');
      await within(SETTLE_MS, 'close', pinhole.closed());
      await vi.waitFor(() => expect(pool.free).toBe(rangeSize(range)), { timeout: SETTLE_MS });
    }
  });

  it('a port is never handed out again before its listener has closed', async () => {
    const pool = new ShardedPool({ min: spare.min, max: spare.min + plane.shards - 1 }, plane.shards);
    const outcomes = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const first = plane.pinhole(passiveRequest(pool, upstream));
      expect(await openOutcome(first)).toBe('opened');
      if (i % 3 === 0) await sendThrough(first, Buffer.from(`transfer ${i}`)); // a pinhole that relayed
      first.close('replaced');
      const next = plane.pinhole(passiveRequest(pool, upstream));
      const outcome = await openOutcome(next);
      outcomes.add(outcome.replace(/:.*/, ''));
      next.close('test');
      await within(SETTLE_MS, 'close', Promise.all([first.closed(), next.closed()]));
      await vi.waitFor(() => expect(pool.free).toBe(plane.shards), { timeout: SETTLE_MS });
    }
    // Either the port was back (opened) or still held by the closing listener (exhausted): never "in use".
    expect([...outcomes].filter((o) => o !== 'opened' && o !== 'ERR_ALG_PORT_EXHAUSTED')).toEqual([]);
  });

  it('a pinhole closed before it was opened is closed at once, and keeps no port', async () => {
    const range = { min: one.min + 6, max: one.min + 6 + plane.shards - 1 };
    const pool = new ShardedPool(range, plane.shards);
    const pinhole = plane.pinhole(passiveRequest(pool, upstream));
    pinhole.close('session-end');
    await within(SETTLE_MS, 'closed() of a pinhole never opened', pinhole.closed());
    expect(await openOutcome(pinhole)).toBe('opened'); // a late open() is harmless
    expect(pinhole.state).toBe('closed');
    await vi.waitFor(() => expect(pool.free).toBe(rangeSize(range)), { timeout: SETTLE_MS });
  });

  it('a pinhole whose second leg cannot bind gives the first leg\'s port back', async () => {
    const clientPool = new ShardedPool({ min: other.min, max: other.min + plane.shards - 1 }, plane.shards);
    const upstreamRange = { min: other.min + 3, max: other.min + 3 + plane.shards - 1 };
    const upstreamPool = new ShardedPool(upstreamRange, plane.shards);
    for (let port = upstreamRange.min; port <= upstreamRange.max; port++) foreign.push(await listen('127.0.0.1', port));
    const pinhole = plane.pinhole(twoListenerRequest(clientPool, upstreamPool));
    expect(await openOutcome(pinhole)).toMatch(/^ERR_ALG_PORT_IN_USE/);
    await vi.waitFor(() => expect([clientPool.free, upstreamPool.free]).toEqual([plane.shards, plane.shards]), { timeout: SETTLE_MS });
    // The client leg's port is really free again: a new pinhole binds it.
    const next = plane.pinhole(passiveRequest(clientPool, upstream));
    expect(await openOutcome(next)).toBe('opened');
    next.close('test');
    await next.closed();
  });
});

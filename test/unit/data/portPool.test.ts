/**
 * PortPool: random, bounded, never twice while held (DESIGN.md "PortPool";
 * RFC 6056's spirit: a pinhole port must not be guessable).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PortPool } from '../../../src/data/PortPool.js';
import { ShardedPool } from '../../../src/data/ShardedPool.js';

/** A small seeded PRNG (mulberry32), so "random" tests are repeatable. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function drain(pool: PortPool): number[] {
  const out: number[] = [];
  for (let port = pool.allocate(); port !== undefined; port = pool.allocate()) out.push(port);
  return out;
}

const RANGE = { min: 40_000, max: 40_099 };
const SIZE = RANGE.max - RANGE.min + 1;

describe('PortPool: random choice', () => {
  it('does not hand out ports in sequence', () => {
    const ports = drain(new PortPool(RANGE, seeded(1)));
    const ascending = [...ports].sort((a, b) => a - b);
    expect(ports).not.toEqual(ascending);
    const steps = ports.slice(1).filter((p, i) => p === (ports[i] as number) + 1).length;
    expect(steps).toBeLessThan(10); // a sequential allocator would give 99
  });

  it('two pools with different random sources give different orders', () => {
    const a = drain(new PortPool(RANGE, seeded(1)));
    const b = drain(new PortPool(RANGE, seeded(2)));
    expect(a).not.toEqual(b);
    expect([...a].sort()).toEqual([...b].sort()); // same ports, different order
  });

  it('uses Math.random by default: the first ports of a large range are not consecutive', () => {
    const pool = new PortPool({ min: 20_000, max: 29_999 });
    const first = Array.from({ length: 8 }, () => pool.allocate() as number);
    expect(first.slice(1).every((p, i) => p === (first[i] as number) + 1)).toBe(false);
  });

  it('spreads picks over the whole range (every port chosen, none far above its share)', () => {
    const pool = new PortPool({ min: 30_000, max: 30_009 }, seeded(7));
    const counts = new Map<number, number>();
    for (let i = 0; i < 5_000; i++) {
      const port = pool.allocate() as number;
      counts.set(port, (counts.get(port) ?? 0) + 1);
      pool.release(port);
    }
    expect(counts.size).toBe(10);
    for (const n of counts.values()) expect(n).toBeGreaterThan(350); // expected 500 each
  });

  it('a random source returning 1 (or more) still picks a port inside the range', () => {
    const pool = new PortPool({ min: 5_000, max: 5_002 }, () => 1);
    expect(drain(pool).sort()).toEqual([5_000, 5_001, 5_002]);
  });
});

describe('PortPool: bounded', () => {
  it('never hands out more ports than the range holds, each once, all inside the range', () => {
    const pool = new PortPool(RANGE, seeded(3));
    const got = Array.from({ length: SIZE + 5 }, () => pool.allocate());
    const ports = got.filter((p): p is number => p !== undefined);
    expect(ports).toHaveLength(SIZE);
    expect(new Set(ports).size).toBe(SIZE);
    expect(ports.every((p) => p >= RANGE.min && p <= RANGE.max)).toBe(true);
    expect(pool.size).toBe(SIZE);
  });

  it('a one-port range holds exactly that port', () => {
    const pool = new PortPool({ min: 2_121, max: 2_121 });
    expect(pool.allocate()).toBe(2_121);
    expect(pool.allocate()).toBeUndefined();
  });

  it('accepts an explicit list of ports', () => {
    const pool = new PortPool([7_001, 7_003, 7_005], seeded(4));
    expect(drain(pool).sort()).toEqual([7_001, 7_003, 7_005]);
  });
});

describe('PortPool: exhaustion and release', () => {
  it('returns undefined once every port is held, and keeps doing so', () => {
    const pool = new PortPool({ min: 6_000, max: 6_001 });
    pool.allocate();
    pool.allocate();
    expect(pool.free).toBe(0);
    expect(pool.allocate()).toBeUndefined();
    expect(pool.allocate()).toBeUndefined();
  });

  it('release makes the port available again', () => {
    const pool = new PortPool({ min: 6_000, max: 6_002 }, seeded(5));
    const [a, b, c] = drain(pool) as [number, number, number];
    pool.release(b);
    expect(pool.free).toBe(1);
    expect(pool.isHeld(b)).toBe(false);
    expect(pool.allocate()).toBe(b);
    expect(pool.isHeld(b)).toBe(true);
    expect(pool.allocate()).toBeUndefined();
    expect([a, c].every((p) => pool.isHeld(p))).toBe(true);
  });

  it('a double release is a no-op: the port is not listed free twice', () => {
    const pool = new PortPool({ min: 6_000, max: 6_002 }, seeded(6));
    const ports = drain(pool);
    const port = ports[0] as number;
    pool.release(port);
    pool.release(port);
    expect(pool.free).toBe(1);
    expect(pool.size).toBe(3);
    expect(pool.allocate()).toBe(port);
    expect(pool.allocate()).toBeUndefined(); // a duplicate entry would hand it out twice
  });

  it('releasing a port that was never held (or is outside the range) is a no-op', () => {
    const pool = new PortPool({ min: 6_000, max: 6_002 });
    pool.release(6_001);
    pool.release(80);
    expect(pool.free).toBe(3);
    expect(pool.size).toBe(3);
  });
});

describe('PortPool: never hands out a held port (property)', () => {
  it('holds for any interleaving of allocate and release', () => {
    const op = fc.oneof(fc.constant({ kind: 'allocate' as const }), fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.array(op, { maxLength: 200 }), fc.integer(), (size, ops, seed) => {
        const pool = new PortPool({ min: 10_000, max: 10_000 + size - 1 }, seeded(seed));
        const held = new Set<number>();
        for (const o of ops) {
          if (o.kind === 'allocate') {
            const port = pool.allocate();
            if (held.size === size) {
              expect(port).toBeUndefined();
              continue;
            }
            expect(port).toBeDefined();
            expect(held.has(port as number)).toBe(false);
            expect(port).toBeGreaterThanOrEqual(10_000);
            expect(port).toBeLessThan(10_000 + size);
            held.add(port as number);
          } else {
            const port = 10_000 + (o.pick % size); // held or not: both must be safe
            pool.release(port);
            held.delete(port);
          }
          expect(pool.free).toBe(size - held.size);
          expect(pool.size).toBe(size);
        }
      }),
    );
  });
});

describe('ShardedPool: a reload that changes the range (issue 11, defect 4)', () => {
  it('ports the old pool holds stay taken in the new one and move over when released; overlapping ports are no longer handed out by the old pool', () => {
    const old = new ShardedPool({ min: 100, max: 103 }, 2);
    const held = [old.shard(0).allocate(), old.shard(1).allocate()] as number[];
    const next = new ShardedPool({ min: 102, max: 105 }, 2, old);
    const heldInNew = held.filter((p) => p >= 102);
    expect(next.free).toBe(4 - heldInNew.length);
    // the old pool now hands out only ports the new range does not cover
    const fromOld: number[] = [];
    for (let s = 0; s < 2; s++) for (let p = old.shard(s).allocate(); p !== undefined; p = old.shard(s).allocate()) fromOld.push(p);
    expect(fromOld.every((p) => p < 102)).toBe(true);
    for (const p of held) old.shard(p % 2).release(p);
    expect(next.free).toBe(4);
    const all: number[] = [];
    for (let s = 0; s < 2; s++) for (let p = next.shard(s).allocate(); p !== undefined; p = next.shard(s).allocate()) all.push(p);
    expect(all.sort()).toEqual([102, 103, 104, 105]);
  });
});

/** Accept fairness: admission work is bounded per event-loop turn and shared by the sites in turn. */
import { describe, expect, it } from 'vitest';
import { Admissions, Arrivals } from '../../../src/edge/admission.js';
import { PreLoginQueue, type EvictionScope } from '../../../src/edge/eviction.js';

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

class FakeSite {
  admitted = 0;
  constructor(public waiting: number) {}
  admitNext(): boolean {
    if (this.waiting === 0) return false;
    this.waiting--;
    this.admitted++;
    return true;
  }
}

describe('Admissions', () => {
  it('admits at most 16 connections a turn, and a quiet site waits behind no flood', async () => {
    const admissions = new Admissions();
    const flood = new FakeSite(1_000);
    const bystander = new FakeSite(1);
    admissions.wake(flood);
    admissions.wake(bystander);
    await nextTurn();
    expect(flood.admitted + bystander.admitted).toBe(16);
    expect(bystander.admitted).toBe(1); // served in the first turn, not after the flood's thousand
    let turns = 1;
    while (flood.waiting > 0 && turns < 200) {
      await nextTurn();
      turns++;
    }
    expect(flood.waiting).toBe(0);
    expect(turns).toBe(Math.ceil(1_001 / 16));
  });

  it('takes the sites in turn', async () => {
    const admissions = new Admissions();
    const sites = [new FakeSite(100), new FakeSite(100), new FakeSite(100), new FakeSite(100)];
    for (const s of sites) admissions.wake(s);
    await nextTurn();
    expect(sites.map((s) => s.admitted)).toEqual([4, 4, 4, 4]);
  });
});

describe('Arrivals', () => {
  it('is a FIFO that compacts as it goes', () => {
    const q = new Arrivals<number>();
    for (let i = 0; i < 5_000; i++) q.push(i);
    for (let i = 0; i < 4_000; i++) expect(q.shift()).toBe(i);
    q.push(5_000);
    expect(q.length).toBe(1_001);
    expect(q.drain()).toEqual(Array.from({ length: 1_001 }, (_, i) => 4_000 + i));
    expect(q.shift()).toBeUndefined();
  });
});

describe('PreLoginQueue', () => {
  class Member {
    evictedFor: EvictionScope | undefined;
    constructor(
      public loggedIn: boolean,
      public quiet: boolean,
    ) {}
    evict(scope: EvictionScope): void {
      this.evictedFor = scope;
    }
  }

  it('evicts the oldest member not logged in and quiet; logged-in members leave the queue, busy ones stay', () => {
    const q = new PreLoginQueue<Member>();
    const [a, b, c, d] = [new Member(true, true), new Member(false, false), new Member(false, true), new Member(false, true)];
    for (const m of [a, b, c, d]) q.add(m);
    expect(q.evictOldest('client')).toBe(true);
    expect(c.evictedFor).toBe('client');
    expect([a.evictedFor, b.evictedFor, d.evictedFor]).toEqual([undefined, undefined, undefined]);
    expect(q.size).toBe(2); // a (logged in) and c (evicted) left; b (busy) and d stay
    b.quiet = true;
    expect(q.evictOldest('site')).toBe(true);
    expect(b.evictedFor).toBe('site');
  });

  it('finds nobody when every member is logged in or busy', () => {
    const q = new PreLoginQueue<Member>();
    for (let i = 0; i < 10; i++) q.add(new Member(i % 2 === 0, false));
    expect(q.evictOldest('process')).toBe(false);
    expect(q.size).toBe(5);
  });
});

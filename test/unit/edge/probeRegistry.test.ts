/**
 * The process-wide probers, on a fake clock with a fake probe: one prober
 * per distinct upstream whatever the number of sites using it, a probe only
 * when some subscriber wants one, at that time plus 0-20% jitter, and the
 * result given to every subscriber.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ProbeResult, ProbeTarget } from '../../../src/edge/health/probe.js';
import { ProbeRegistry, type ProbeSubscriber } from '../../../src/edge/health/ProbeRegistry.js';

const TARGET = { host: '192.0.2.10', port: 21, login: undefined };

/** A subscriber that wants a probe at `at` (relative to the start) and records what it is told. */
function subscriber(at: number | undefined): ProbeSubscriber & { results: ProbeResult[]; elsewhere: number; at: number | undefined } {
  const start = performance.now();
  const s = {
    at,
    results: [] as ProbeResult[],
    elsewhere: 0,
    probeAt: () => (s.at === undefined ? undefined : start + s.at),
    probed: (result: ProbeResult) => {
      s.results.push(result);
      s.at = undefined; // satisfied until told otherwise
    },
    reachedElsewhere: () => {
      s.elsewhere++;
    },
  };
  return s;
}

let runs: { target: ProbeTarget; at: number }[];
let registry: ProbeRegistry;
let observed: [string, number][];

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  runs = [];
  observed = [];
  registry = new ProbeRegistry({
    run: (target) => {
      runs.push({ target, at: performance.now() });
      return Promise.resolve({ ok: true, ms: 3 });
    },
    random: () => 0.5,
    observe: (upstream, seconds) => observed.push([upstream, seconds]),
  });
});

afterEach(() => {
  registry.close();
  vi.useRealTimers();
});

describe('ProbeRegistry', () => {
  it('two sites on one upstream share one prober: one probe, both told', async () => {
    const a = subscriber(10_000);
    const b = subscriber(10_500);
    registry.subscribe(TARGET, 5_000, a);
    registry.subscribe(TARGET, 3_000, b);
    expect(registry.size).toBe(1);
    await vi.advanceTimersByTimeAsync(10_999);
    expect(runs).toHaveLength(0); // 10 s + 10% jitter (random 0.5 of 20%)
    await vi.advanceTimersByTimeAsync(1);
    expect(runs).toHaveLength(1);
    expect(runs[0]?.target).toMatchObject({ host: '192.0.2.10', port: 21, timeoutMs: 5_000 });
    expect(a.results).toHaveLength(1);
    expect(b.results).toHaveLength(1);
    expect(observed).toEqual([['192.0.2.10', 0.003]]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(runs).toHaveLength(1); // nobody wants another
  });

  it('distinct upstreams (address, port or check login) get distinct probers', () => {
    registry.subscribe(TARGET, 1_000, subscriber(undefined));
    registry.subscribe({ ...TARGET, port: 2121 }, 1_000, subscriber(undefined));
    registry.subscribe({ ...TARGET, host: '2001:db8::10' }, 1_000, subscriber(undefined));
    registry.subscribe({ ...TARGET, login: { user: 'health', password: 'x' } }, 1_000, subscriber(undefined));
    registry.subscribe(TARGET, 1_000, subscriber(undefined));
    expect(registry.size).toBe(4);
  });

  it('sends nothing while no subscriber wants a probe, and starts when one is woken', async () => {
    const a = subscriber(undefined);
    const sub = registry.subscribe(TARGET, 1_000, a);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(runs).toHaveLength(0);
    a.at = 600_000 + 2_000; // ejected now: a probe in 2 s
    sub.wake();
    await vi.advanceTimersByTimeAsync(2_199);
    expect(runs).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(runs).toHaveLength(1);
    expect(a.results).toHaveLength(1);
  });

  it('jitter delays a probe by 0-20% of its wait, never brings it earlier', async () => {
    for (const [random, due] of [
      [0, 1_000],
      [0.999, 1_199],
    ] as const) {
      const r = new ProbeRegistry({ run: () => Promise.resolve({ ok: true, ms: 1 }), random: () => random });
      const s = subscriber(1_000);
      r.subscribe(TARGET, 1_000, s);
      await vi.advanceTimersByTimeAsync(due - 1);
      expect(s.results).toHaveLength(0);
      await vi.advanceTimersByTimeAsync(1);
      expect(s.results).toHaveLength(1);
      r.close();
    }
  });

  it('a session reaching the upstream through one site counts for the others', () => {
    const a = subscriber(undefined);
    const b = subscriber(undefined);
    const subA = registry.subscribe(TARGET, 1_000, a);
    registry.subscribe(TARGET, 1_000, b);
    subA.reached();
    expect(a.elsewhere).toBe(0);
    expect(b.elsewhere).toBe(1);
  });

  it('the last subscriber leaving stops the prober', async () => {
    const a = subscriber(1_000);
    const sub = registry.subscribe(TARGET, 1_000, a);
    sub.cancel();
    expect(registry.size).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(runs).toHaveLength(0);
  });
});

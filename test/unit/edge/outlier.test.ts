/**
 * The passive health state machine, by tables: each row replays what
 * sessions and probes reported about a pool's members, at given times, and
 * names the transitions (each one a log line) and the state it ends in.
 */
import { describe, expect, it } from 'vitest';
import type { UpstreamOutcome } from '../../../src/control/Session.js';
import { type HealthPolicy, type MemberState, OutlierDetector } from '../../../src/edge/health/outlier.js';

const POLICY: HealthPolicy = { consecutiveFailures: 3, baseEjectionMs: 10_000, maxEjectionMs: 300_000, maxEjectedPercent: 50, idleProbeMs: 0 };

type Step =
  /** A session's attempt on a member. */
  | readonly ['report', string, UpstreamOutcome, number]
  /** A probe's result: 'ok' or why it failed. */
  | readonly ['probe', string, string, number]
  /** DNS changed the members. */
  | readonly ['members', readonly string[], number];

interface Row {
  readonly name: string;
  readonly hosts: readonly string[];
  readonly policy?: Partial<HealthPolicy>;
  readonly steps: readonly Step[];
  /** Every transition, as `host from->to reason (retry in ms)`. */
  readonly transitions: readonly string[];
  readonly states: Readonly<Record<string, MemberState>>;
  readonly failures?: Readonly<Record<string, number>>;
  readonly probeAt?: Readonly<Record<string, number | undefined>>;
}

const fail = (host: string, t: number, outcome: UpstreamOutcome = 'connect-refused'): Step => ['report', host, outcome, t];
const times = (n: number, host: string, t: number, outcome?: UpstreamOutcome): Step[] => Array.from({ length: n }, () => fail(host, t, outcome));

const ROWS: readonly Row[] = [
  {
    name: 'failures below the threshold leave a member up, counted',
    hosts: ['a', 'b'],
    steps: times(2, 'a', 0),
    transitions: [],
    states: { a: 'up', b: 'up' },
    failures: { a: 2, b: 0 },
    probeAt: { a: undefined },
  },
  {
    name: 'consecutive failures eject a member for the base time, and a probe is due then',
    hosts: ['a', 'b'],
    steps: [fail('a', 0, 'greeting-refused'), fail('a', 5, 'greeting-timeout'), fail('a', 7, 'greeting-refused')],
    transitions: ['a up->ejected greeting-refused (10000)'],
    states: { a: 'ejected', b: 'up' },
    failures: { a: 3 },
    probeAt: { a: 10_007, b: undefined },
  },
  {
    name: 'a success between failures starts the count again',
    hosts: ['a', 'b'],
    steps: [...times(2, 'a', 0), ['report', 'a', 'ok', 1], ...times(2, 'a', 2)],
    transitions: [],
    states: { a: 'up' },
    failures: { a: 2 },
  },
  {
    name: 'a probe that succeeds re-admits an ejected member',
    hosts: ['a', 'b'],
    steps: [...times(3, 'a', 0), ['probe', 'a', 'ok', 10_000]],
    transitions: ['a up->ejected connect-refused (10000)', 'a ejected->up probe-ok'],
    states: { a: 'up' },
    failures: { a: 0 },
    probeAt: { a: undefined },
  },
  {
    name: 'each failed probe doubles the wait before the next, quietly',
    hosts: ['a', 'b'],
    steps: [...times(3, 'a', 0), ['probe', 'a', 'connect-refused', 10_000], ['probe', 'a', 'greeting-timeout', 30_000]],
    transitions: ['a up->ejected connect-refused (10000)'],
    states: { a: 'ejected' },
    failures: { a: 5 },
    probeAt: { a: 70_000 },
  },
  {
    name: 'the wait is capped at maxEjectionMs',
    hosts: ['a', 'b'],
    policy: { maxEjectionMs: 30_000 },
    steps: [...times(3, 'a', 0), ['probe', 'a', 'connect-refused', 10_000], ['probe', 'a', 'connect-refused', 30_000], ['probe', 'a', 'connect-refused', 60_000]],
    transitions: ['a up->ejected connect-refused (10000)'],
    states: { a: 'ejected' },
    probeAt: { a: 90_000 },
  },
  {
    name: 'an ejection soon after a return lasts twice as long',
    hosts: ['a', 'b'],
    steps: [...times(3, 'a', 0), ['probe', 'a', 'ok', 10_000], ...times(3, 'a', 11_000)],
    transitions: ['a up->ejected connect-refused (10000)', 'a ejected->up probe-ok', 'a up->ejected connect-refused (20000)'],
    states: { a: 'ejected' },
    probeAt: { a: 31_000 },
  },
  {
    name: 'after maxEjectionMs back in service, the ejection time starts from the base again',
    hosts: ['a', 'b'],
    steps: [...times(3, 'a', 0), ['probe', 'a', 'ok', 10_000], ...times(3, 'a', 310_000)],
    transitions: ['a up->ejected connect-refused (10000)', 'a ejected->up probe-ok', 'a up->ejected connect-refused (10000)'],
    states: { a: 'ejected' },
  },
  {
    name: 'a lone member is never ejected: it is failing, probed on the back-off, and a session that works brings it back',
    hosts: ['a'],
    steps: [...times(5, 'a', 0, 'greeting-refused'), ['probe', 'a', 'greeting-refused', 10_000], ['report', 'a', 'ok', 12_000]],
    transitions: ['a up->failing greeting-refused (10000)', 'a failing->up ok'],
    states: { a: 'up' },
    failures: { a: 0 },
  },
  {
    name: 'a lone failing member waits longer after each failed probe',
    hosts: ['a'],
    steps: [...times(3, 'a', 0), ['probe', 'a', 'connect-refused', 10_000]],
    transitions: ['a up->failing connect-refused (10000)'],
    states: { a: 'failing' },
    probeAt: { a: 30_000 },
  },
  {
    name: 'the last member in service is never ejected',
    hosts: ['a', 'b'],
    steps: [...times(3, 'a', 0), ...times(3, 'b', 1)],
    transitions: ['a up->ejected connect-refused (10000)', 'b up->failing connect-refused (10000)'],
    states: { a: 'ejected', b: 'failing' },
  },
  {
    name: 'at most maxEjectedPercent of the pool is ejected (50% of 4: two)',
    hosts: ['a', 'b', 'c', 'd'],
    steps: [...times(3, 'a', 0), ...times(3, 'b', 0), ...times(3, 'c', 0)],
    transitions: ['a up->ejected connect-refused (10000)', 'b up->ejected connect-refused (10000)', 'c up->failing connect-refused (10000)'],
    states: { a: 'ejected', b: 'ejected', c: 'failing', d: 'up' },
  },
  {
    name: 'at least one member may always be ejected (10% of 3 rounds to one)',
    hosts: ['a', 'b', 'c'],
    policy: { maxEjectedPercent: 10 },
    steps: [...times(3, 'a', 0), ...times(3, 'b', 0)],
    transitions: ['a up->ejected connect-refused (10000)', 'b up->failing connect-refused (10000)'],
    states: { a: 'ejected', b: 'failing', c: 'up' },
  },
  {
    name: 'a failing member is ejected at its next failure once another member is back',
    hosts: ['a', 'b'],
    steps: [...times(3, 'a', 0), ...times(3, 'b', 0), ['probe', 'a', 'ok', 10_000], ['probe', 'b', 'connect-refused', 10_001]],
    transitions: [
      'a up->ejected connect-refused (10000)',
      'b up->failing connect-refused (10000)',
      'a ejected->up probe-ok',
      'b failing->ejected probe:connect-refused (20000)',
    ],
    states: { a: 'up', b: 'ejected' },
  },
  {
    name: 'an ejected member: a late session failure changes nothing, a late success brings it back',
    hosts: ['a', 'b'],
    steps: [...times(3, 'a', 0), fail('a', 100), ['report', 'a', 'ok', 200]],
    transitions: ['a up->ejected connect-refused (10000)', 'a ejected->up ok'],
    states: { a: 'up' },
  },
  {
    name: 'idle probes: due idleProbeMs after the last success, never earlier',
    hosts: ['a', 'b'],
    policy: { idleProbeMs: 5_000 },
    steps: [['members', ['a', 'b'], 1_000], ['report', 'a', 'ok', 3_000]],
    transitions: [],
    states: { a: 'up', b: 'up' },
    probeAt: { a: 8_000, b: 5_000 },
  },
  {
    name: 'an idle probe that failed is repeated an interval later, not at once',
    hosts: ['a', 'b'],
    policy: { idleProbeMs: 5_000 },
    steps: [['probe', 'a', 'connect-timeout', 5_000]],
    transitions: [],
    states: { a: 'up' },
    failures: { a: 1 },
    probeAt: { a: 10_000 },
  },
  {
    name: 'idle probes that fail count like session failures',
    hosts: ['a', 'b'],
    policy: { idleProbeMs: 5_000 },
    steps: [['probe', 'a', 'greeting-timeout', 5_000], ['probe', 'a', 'greeting-timeout', 10_000], ['probe', 'a', 'greeting-timeout', 15_000]],
    transitions: ['a up->ejected probe:greeting-timeout (10000)'],
    states: { a: 'ejected' },
    probeAt: { a: 25_000 },
  },
  {
    name: 'when DNS leaves only ejected members, one goes back in service as failing',
    hosts: ['a', 'b'],
    steps: [...times(3, 'a', 0), ['members', ['a'], 1]],
    transitions: ['a up->ejected connect-refused (10000)', 'a ejected->failing last-in-service'],
    states: { a: 'failing' },
  },
  {
    name: 'members added by DNS start up; reports about unknown members are ignored',
    hosts: ['a'],
    steps: [['members', ['a', 'c'], 0], ...times(3, 'x', 0), ...times(3, 'c', 1)],
    transitions: ['c up->ejected connect-refused (10000)'],
    states: { a: 'up', c: 'ejected' },
  },
];

function replay(row: Row): { detector: OutlierDetector; transitions: string[] } {
  const detector = new OutlierDetector({ ...POLICY, ...row.policy });
  const transitions: string[] = [];
  const note = (t: ReturnType<OutlierDetector['report']>) => {
    if (t !== undefined) transitions.push(`${t.host} ${t.from}->${t.to} ${t.reason}${t.retryInMs === undefined ? '' : ` (${t.retryInMs})`}`);
  };
  detector.setMembers(row.hosts, 0).forEach(note);
  for (const step of row.steps) {
    if (step[0] === 'report') note(detector.report(step[1], step[2], step[3]));
    else if (step[0] === 'probe') note(detector.probed(step[1], step[2], step[3]));
    else detector.setMembers(step[1], step[2]).forEach(note);
  }
  return { detector, transitions };
}

describe('OutlierDetector', () => {
  it.each(ROWS)('$name', (row) => {
    const { detector, transitions } = replay(row);
    expect(transitions).toEqual(row.transitions);
    for (const [host, state] of Object.entries(row.states)) expect(detector.health(host)?.state, host).toBe(state);
    for (const [host, n] of Object.entries(row.failures ?? {})) expect(detector.health(host)?.consecutiveFailures, host).toBe(n);
    for (const [host, at] of Object.entries(row.probeAt ?? {})) expect(detector.health(host)?.probeAt, host).toBe(at);
  });

  it('never leaves a pool with no member in service, whatever is reported', () => {
    const hosts = ['a', 'b', 'c'];
    const outcomes: UpstreamOutcome[] = ['connect-refused', 'connect-timeout', 'reset-before-greeting', 'greeting-timeout', 'greeting-refused', 'ok'];
    for (const percent of [1, 34, 50, 67, 100]) {
      const detector = new OutlierDetector({ ...POLICY, maxEjectedPercent: percent, consecutiveFailures: 1 });
      detector.setMembers(hosts, 0);
      let seed = percent;
      for (let t = 0; t < 500; t++) {
        seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
        const host = hosts[seed % 3] as string;
        const outcome = outcomes[(seed >> 4) % 7] ?? 'connect-refused'; // failures twice as likely as ok
        if ((seed >> 8) % 4 === 0) detector.probed(host, outcome, t * 1_000);
        else detector.report(host, outcome, t * 1_000);
        const ejected = hosts.filter((h) => detector.health(h)?.state === 'ejected').length;
        expect(hosts.some((h) => detector.inService(h))).toBe(true);
        expect(ejected).toBeLessThanOrEqual(Math.max(1, Math.floor((3 * percent) / 100)));
      }
    }
  });

  it('a reload keeps what the old pool knew of members still present', () => {
    const old = new OutlierDetector(POLICY);
    old.setMembers(['a', 'b'], 0);
    for (let i = 0; i < 3; i++) old.report('a', 'connect-refused', 0);
    const next = new OutlierDetector(POLICY);
    next.setMembers(['a', 'c'], 5);
    next.adopt(old);
    expect(next.health('a')).toMatchObject({ state: 'ejected', consecutiveFailures: 3, probeAt: 10_000 });
    expect(next.health('c')).toMatchObject({ state: 'up', consecutiveFailures: 0 });
    expect(next.health('b')).toBeUndefined();
  });
});

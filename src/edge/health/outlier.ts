/**
 * Passive outlier detection for the members of one upstream pool, in the
 * model of Envoy's outlier detection and HAProxy's `observe layer4`: real
 * sessions report what each attempt came to; `consecutiveFailures` failures
 * in a row eject a member for a time that doubles with each ejection that
 * follows soon after the last (capped at `maxEjectionMs`). An ejected member
 * comes back only when a probe (or a session that was already on its way)
 * finds it working.
 *
 * Never into "no upstream": a member is ejected only while another stays in
 * service and the ejected share stays within `maxEjectedPercent` (at least
 * one member may always go). A member that has failed enough but may not go
 * is `failing`: it still takes sessions (they get an honest 421), is
 * probed on the same back-off as an ejected one, and counts as not up.
 *
 * Pure: no sockets, no timers, no logger; the caller passes the time in
 * (any monotonic milliseconds) and acts on the transitions returned.
 */
import type { UpstreamOutcome } from '../../control/Session.js';

export type MemberState = 'up' | 'failing' | 'ejected';

export interface HealthPolicy {
  /** Failures in a row (sessions or probes) that take a member out. */
  readonly consecutiveFailures: number;
  /** The first ejection's length; each ejection that follows within maxEjectionMs of a re-admission doubles it. */
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  /** Most of the pool ejected at once, in percent (at least one member, never the last in service). */
  readonly maxEjectedPercent: number;
  /** Probe a member in service that nothing reached successfully for this long; 0: only ejected or failing members are probed. */
  readonly idleProbeMs: number;
}

export interface MemberHealth {
  readonly host: string;
  readonly state: MemberState;
  readonly consecutiveFailures: number;
  /** When a probe of this member tells something next (undefined: none is wanted). */
  readonly probeAt: number | undefined;
}

/** A change of state, to be logged once and counted. */
export interface Transition {
  readonly host: string;
  readonly from: MemberState;
  readonly to: MemberState;
  /** The outcome or probe result that caused it. */
  readonly reason: string;
  readonly consecutiveFailures: number;
  /** Entering `ejected` or `failing`: how long before the next probe may bring it back. */
  readonly retryInMs?: number;
}

interface Member {
  state: MemberState;
  failures: number;
  /** Doublings of the next ejection time. */
  level: number;
  /** Ejected or failing: when a probe is worth sending. */
  retryAt: number;
  /** Last success (session or probe), or when the member joined. */
  lastOkAt: number;
  /** Last probe, whatever its result (an idle probe that failed is not repeated at once). */
  probedAt: number;
  /** When it last came back from ejected or failing; undefined once forgiven. */
  backAt: number | undefined;
}

/** Bounds the doubling so 2 ** level stays a finite number. */
const MAX_LEVEL = 30;

export class OutlierDetector {
  private readonly members = new Map<string, Member>();

  constructor(private readonly policy: HealthPolicy) {}

  /** The pool's members now: new ones start up, gone ones are forgotten; one always stays in service. */
  setMembers(hosts: readonly string[], now: number): Transition[] {
    const wanted = new Set(hosts);
    for (const host of this.members.keys()) if (!wanted.has(host)) this.members.delete(host);
    for (const host of wanted) {
      if (!this.members.has(host)) this.members.set(host, { state: 'up', failures: 0, level: 0, retryAt: 0, lastOkAt: now, probedAt: now, backAt: undefined });
    }
    return this.keepOneInService();
  }

  /** Take over what `old` knew of the members both have (a reload replaced the pool). */
  adopt(old: OutlierDetector): void {
    for (const [host, m] of old.members) if (this.members.has(host)) this.members.set(host, { ...m });
    this.keepOneInService();
  }

  inService(host: string): boolean {
    const m = this.members.get(host);
    return m !== undefined && m.state !== 'ejected';
  }

  health(host: string): MemberHealth | undefined {
    const m = this.members.get(host);
    return m === undefined ? undefined : { host, state: m.state, consecutiveFailures: m.failures, probeAt: this.probeAt(m) };
  }

  all(): MemberHealth[] {
    return [...this.members.keys()].map((host) => this.health(host) as MemberHealth);
  }

  /** What a real session's attempt came to. */
  report(host: string, outcome: UpstreamOutcome, now: number): Transition | undefined {
    const m = this.members.get(host);
    if (m === undefined) return undefined;
    return outcome === 'ok' ? this.succeeded(host, m, now, outcome) : this.failed(host, m, now, outcome);
  }

  /** What a probe came to: 'ok', or the reason it failed. */
  probed(host: string, result: string, now: number): Transition | undefined {
    const m = this.members.get(host);
    if (m === undefined) return undefined;
    m.probedAt = now;
    if (result === 'ok') return this.succeeded(host, m, now, 'probe-ok');
    if (m.state === 'up') return this.failed(host, m, now, `probe:${result}`);
    // Still down: wait longer before the next probe, and eject a failing member if it now may go.
    m.failures++;
    m.retryAt = now + this.nextBackoff(m, now);
    return m.state === 'failing' && this.mayEject(host) ? this.move(host, m, 'ejected', `probe:${result}`, now) : undefined;
  }

  private succeeded(host: string, m: Member, now: number, reason: string): Transition | undefined {
    m.failures = 0;
    m.lastOkAt = now;
    if (m.state === 'up') return undefined;
    m.backAt = now;
    return this.move(host, m, 'up', reason, now);
  }

  private failed(host: string, m: Member, now: number, reason: string): Transition | undefined {
    m.failures++;
    // Ejected: a session that set out before the ejection; failing: already known, its probe is scheduled.
    if (m.state === 'ejected' || m.failures < this.policy.consecutiveFailures) return undefined;
    if (this.mayEject(host)) return this.move(host, m, 'ejected', reason, now, this.nextBackoff(m, now));
    if (m.state === 'failing') return undefined;
    return this.move(host, m, 'failing', reason, now, this.nextBackoff(m, now));
  }

  private move(host: string, m: Member, to: MemberState, reason: string, now: number, retryInMs?: number): Transition {
    const from = m.state;
    m.state = to;
    if (retryInMs !== undefined) m.retryAt = now + retryInMs;
    // The backoff just chosen as is; otherwise what is left of it, in whole ms (clock readings carry fractions).
    const waiting = to === 'up' ? undefined : (retryInMs ?? Math.max(0, Math.round(m.retryAt - now)));
    return { host, from, to, reason, consecutiveFailures: m.failures, ...(waiting === undefined ? {} : { retryInMs: waiting }) };
  }

  /** Another member stays in service, and the ejected share stays within its cap. */
  private mayEject(host: string): boolean {
    let ejected = 0;
    for (const [h, m] of this.members) if (h !== host && m.state === 'ejected') ejected++;
    const others = this.members.size - 1 - ejected;
    const cap = Math.max(1, Math.floor((this.members.size * this.policy.maxEjectedPercent) / 100));
    return others >= 1 && ejected + 1 <= cap;
  }

  /** The next ejection time; it starts again from the base once the member has stayed back for maxEjectionMs. */
  private nextBackoff(m: Member, now: number): number {
    const { baseEjectionMs, maxEjectionMs } = this.policy;
    if (m.backAt !== undefined && now - m.backAt >= maxEjectionMs) m.level = 0;
    m.backAt = undefined;
    const ms = Math.min(baseEjectionMs * 2 ** m.level, maxEjectionMs);
    m.level = Math.min(m.level + 1, MAX_LEVEL);
    return ms;
  }

  private probeAt(m: Member): number | undefined {
    if (m.state !== 'up') return m.retryAt;
    return this.policy.idleProbeMs > 0 ? Math.max(m.lastOkAt, m.probedAt) + this.policy.idleProbeMs : undefined;
  }

  /** Members left by DNS may leave only ejected ones: the one due soonest goes back in service, as failing. */
  private keepOneInService(): Transition[] {
    const members = [...this.members.entries()];
    if (members.length === 0 || members.some(([, m]) => m.state !== 'ejected')) return [];
    const [host, m] = members.reduce((a, b) => (b[1].retryAt < a[1].retryAt ? b : a));
    const from = m.state;
    m.state = 'failing';
    return [{ host, from, to: 'failing', reason: 'last-in-service', consecutiveFailures: m.failures }];
  }
}

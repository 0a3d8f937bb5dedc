/**
 * The upstream servers of a site. Each new session takes the member in
 * service with the fewest sessions (members failing but not ejectable come
 * last); the session keeps that host for its whole life, data connections
 * included, unless its attempt fails before the greeting, when it may take
 * another (`take(exclude)`, at most `maxAttempts` members). Members come
 * from the config, or from a DNS name resolved again periodically (a
 * Kubernetes headless Service).
 *
 * Health costs the upstream nothing while it works: sessions report what
 * each attempt came to (`report`), the OutlierDetector ejects a member after
 * consecutive failures, and the only probes sent are for ejected or failing
 * members (to bring them back) and, if configured, for members no session
 * reached within `idleProbeMs`. Probes go through the process's
 * ProbeRegistry, one prober per distinct upstream. One log line per state
 * change.
 */
import { lookup } from 'node:dns/promises';
import type { Socket } from 'node:net';
import type { UpstreamConfig } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { MemberGauge, Metrics } from '../observe/metrics.js';
import { normalise } from '../common/address.js';
import type { UpstreamChooser, UpstreamOutcome, WarmConnection } from '../control/Session.js';
import { OutlierDetector, type MemberState, type Transition } from './health/outlier.js';
import type { ProbeRegistry, ProbeSubscription } from './health/ProbeRegistry.js';
import { WarmUpstreams } from './WarmUpstreams.js';

export type { UpstreamOutcome } from '../control/Session.js';

export interface UpstreamPoolDeps {
  readonly site: string;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly probes: ProbeRegistry;
  /** What warm connections (`upstream.warm`) wait for and read, from the site. */
  readonly warm?: { readonly connectMs: number; readonly greetingMs: number; readonly maxLineBytes: number; readonly track?: (socket: Socket) => void };
}

export class UpstreamPool implements UpstreamChooser {
  readonly maxAttempts: number;
  private hosts: string[] = [];
  private readonly sessions = new Map<string, number>();
  /** Undefined when health is off: every member always takes sessions. */
  private readonly health: OutlierDetector | undefined;
  private readonly probing = new Map<string, ProbeSubscription>();
  private timers: NodeJS.Timeout[] = [];
  private running = false;
  /** Undefined unless upstream.warm is set. */
  private readonly warm: WarmUpstreams | undefined;

  constructor(
    private readonly config: UpstreamConfig,
    private readonly deps: UpstreamPoolDeps,
  ) {
    this.maxAttempts = config.maxAttempts;
    this.health = config.health.enabled ? new OutlierDetector(config.health) : undefined;
    const warm = deps.warm;
    this.warm =
      config.warm > 0 && warm !== undefined
        ? new WarmUpstreams({ port: config.port, perMember: config.warm, maxAgeMs: config.warmMaxAgeMs, ...warm, log: deps.log })
        : undefined;
    this.setHosts(configured(config));
  }

  get port(): number {
    return this.config.port;
  }

  /** Resolve the DNS name once, then keep re-resolving, and probe where it tells something. */
  async start(): Promise<void> {
    this.running = true;
    if (this.config.dns !== '') {
      await this.resolve();
      const timer = setInterval(() => void this.resolve(), this.config.resolveIntervalMs);
      timer.unref();
      this.timers.push(timer);
    }
    this.subscribeProbes();
    this.syncWarm();
  }

  stop(): void {
    this.running = false;
    this.warm?.stop();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const sub of this.probing.values()) sub.cancel();
    this.probing.clear();
  }

  /** A reload replaced the site: keep what was learnt about members that are still in the pool. */
  inherit(old: UpstreamPool): void {
    if (this.health === undefined || old.health === undefined) return;
    this.health.adopt(old.health);
    for (const sub of this.probing.values()) sub.wake();
  }

  /** True when some member is in service and not failing. */
  get ready(): boolean {
    if (this.health === undefined) return this.hosts.length > 0;
    return this.hosts.some((h) => this.health?.health(h)?.state === 'up');
  }

  /** Every member with its sessions and health, for logs and metrics. */
  snapshot(): { host: string; sessions: number; state: MemberState; consecutiveFailures: number }[] {
    return this.hosts.map((host) => {
      const h = this.health?.health(host);
      return { host, sessions: this.sessions.get(host) ?? 0, state: h?.state ?? 'up', consecutiveFailures: h?.consecutiveFailures ?? 0 };
    });
  }

  gauges(): MemberGauge[] {
    return this.snapshot().map((m) => ({
      site: this.deps.site,
      upstream: m.host,
      up: m.state === 'up',
      consecutiveFailures: m.consecutiveFailures,
      warm: this.warm?.readyFor(m.host) ?? 0,
    }));
  }

  /** The member for a new session or a retry (not one of `exclude`), now counted; undefined if none is in service. */
  take(exclude?: ReadonlySet<string>): string | undefined {
    let best: string | undefined;
    let bestRank = Infinity;
    for (const host of this.hosts) {
      if (exclude?.has(host) === true || (this.health !== undefined && !this.health.inService(host))) continue;
      const rank = (this.sessions.get(host) ?? 0) + (this.health?.health(host)?.state === 'failing' ? 1e9 : 0);
      if (rank < bestRank) {
        best = host;
        bestRank = rank;
      }
    }
    if (best !== undefined) this.sessions.set(best, (this.sessions.get(best) ?? 0) + 1);
    return best;
  }

  /** A warm connection to `host` (upstream.warm), now the session's; undefined if none is ready. */
  takeWarm(host: string): WarmConnection | undefined {
    if (this.warm === undefined) return undefined;
    const taken = this.warm.take(host);
    this.deps.metrics.upstreamWarmTakes.inc({ site: this.deps.site, outcome: taken === undefined ? 'miss' : 'hit' });
    return taken;
  }

  /** The session is done with `host` (it ended, or moved on to another member). */
  give(host: string): void {
    const n = this.sessions.get(host) ?? 0;
    if (n > 1) this.sessions.set(host, n - 1);
    else this.sessions.delete(host);
  }

  /** What a real session's attempt on `host` came to (passive health). */
  report(host: string, outcome: UpstreamOutcome): void {
    if (outcome === 'ok') this.warm?.reached(host);
    if (this.health === undefined) return;
    this.changed(this.health.report(host, outcome, performance.now()));
    if (outcome === 'ok') this.probing.get(host)?.reached();
  }

  private changed(t: Transition | undefined): void {
    if (t === undefined) return;
    const { log, metrics, site } = this.deps;
    const fields = { upstream: t.host, from: t.from, to: t.to, reason: t.reason, consecutiveFailures: t.consecutiveFailures, retryInMs: t.retryInMs };
    if (t.to === 'up') log.info(fields, 'upstream health changed');
    else log.warn(fields, 'upstream health changed');
    if (t.to === 'ejected') metrics.upstreamEjections.inc({ site, upstream: t.host });
    if (t.to !== 'up') this.probing.get(t.host)?.wake();
    this.syncWarm();
  }

  /** Warm connections are kept to the members in service only. */
  private syncWarm(): void {
    if (!this.running || this.warm === undefined) return;
    const health = this.health;
    this.warm.setMembers(health === undefined ? this.hosts : this.hosts.filter((h) => health.inService(h)));
  }

  private setHosts(hosts: string[]): void {
    this.hosts = hosts;
    for (const t of this.health?.setMembers(hosts, performance.now()) ?? []) this.changed(t);
    if (this.running) this.subscribeProbes();
    this.syncWarm();
  }

  /** One subscription per member with the process's probers; members gone are let go. */
  private subscribeProbes(): void {
    const health = this.health;
    if (health === undefined) return;
    for (const [host, sub] of this.probing) {
      if (this.hosts.includes(host)) continue;
      sub.cancel();
      this.probing.delete(host);
    }
    const { check, probeTimeoutMs } = this.config.health;
    const login = check.user === '' ? undefined : { user: check.user, password: check.password };
    // An upstream that reads PROXY headers gets one on probes too: LOCAL, the gateway speaking for itself.
    const proxy = this.config.proxyProtocol;
    const proxyHeader = proxy === 'off' ? undefined : proxy === 'v1' ? (1 as const) : (2 as const);
    for (const host of this.hosts) {
      if (this.probing.has(host)) continue;
      const sub = this.deps.probes.subscribe({ host, port: this.port, login, proxyHeader }, probeTimeoutMs, {
        probeAt: () => health.health(host)?.probeAt,
        probed: (result, now) => this.changed(health.probed(host, result.ok ? 'ok' : result.reason, now)),
        reachedElsewhere: (now) => this.changed(health.report(host, 'ok', now)),
      });
      this.probing.set(host, sub);
    }
  }

  private async resolve(): Promise<void> {
    let found: string[];
    try {
      found = (await lookup(this.config.dns, { all: true })).map((a) => normalise(a.address));
    } catch (err) {
      this.deps.log.warn({ dns: this.config.dns, err: { code: (err as NodeJS.ErrnoException).code } }, 'upstream name did not resolve; keeping the last members');
      return;
    }
    this.setHosts([...new Set([...configured(this.config), ...found])]);
  }
}

function configured(config: UpstreamConfig): string[] {
  return [...new Set([config.host, ...config.hosts])].filter((h) => h !== '');
}

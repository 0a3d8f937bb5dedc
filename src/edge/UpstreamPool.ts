/**
 * The upstream servers of a site. Each new session takes the member with
 * the fewest sessions among those that pass their health check; the
 * session keeps that host for its whole life, data connections included
 * (they go to the control connection's peer address). Members come from
 * the config, or from a DNS name resolved again periodically (a Kubernetes
 * headless Service).
 */
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import type { UpstreamConfig } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import { normalise } from '../common/address.js';
import type { UpstreamOutcome } from '../control/Session.js';

const MAX_ATTEMPTS = 3;

interface Member {
  readonly host: string;
  sessions: number;
  healthy: boolean;
}

export class UpstreamPool {
  private members = new Map<string, Member>();
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly config: UpstreamConfig,
    private readonly connectTimeoutMs: number,
    private readonly log: Logger,
  ) {
    for (const host of [config.host, ...config.hosts]) {
      if (host !== '') this.members.set(host, { host, sessions: 0, healthy: true });
    }
  }

  get port(): number {
    return this.config.port;
  }

  /** Resolve the DNS name once, then keep re-resolving and health-checking in the background. */
  async start(): Promise<void> {
    if (this.config.dns !== '') {
      await this.resolve();
      this.every(this.config.resolveIntervalMs, () => this.resolve());
    }
    this.every(this.config.healthCheckIntervalMs, () => this.checkAll());
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** True when at least one member is believed reachable. */
  get ready(): boolean {
    for (const m of this.members.values()) if (m.healthy) return true;
    return false;
  }

  snapshot(): { host: string; sessions: number; healthy: boolean }[] {
    return [...this.members.values()].map((m) => ({ ...m }));
  }

  /** How many members one session may try before its client gets 421. */
  get maxAttempts(): number {
    return Math.min(MAX_ATTEMPTS, Math.max(1, this.members.size));
  }

  /** The member for a new session or a retry (least sessions, healthy first, none of `exclude`), now counted. */
  take(exclude?: ReadonlySet<string>): string | undefined {
    let best: Member | undefined;
    for (const m of this.members.values()) {
      if (exclude?.has(m.host) === true) continue;
      if (best === undefined || rank(m) < rank(best)) best = m;
    }
    if (best === undefined) return undefined;
    best.sessions++;
    return best.host;
  }

  give(host: string): void {
    const m = this.members.get(host);
    if (m !== undefined && m.sessions > 0) m.sessions--;
  }

  /** What a session met on `host`: a failure marks it down until a health check passes. */
  report(host: string, outcome: UpstreamOutcome): void {
    if (outcome !== 'ok') this.markFailed(host);
  }

  private markFailed(host: string): void {
    const m = this.members.get(host);
    if (m !== undefined && m.healthy) {
      m.healthy = false;
      this.log.warn({ upstream: host }, 'upstream marked down');
    }
  }

  private every(ms: number, work: () => Promise<void>): void {
    const timer = setInterval(() => void work(), ms);
    timer.unref();
    this.timers.push(timer);
  }

  private async resolve(): Promise<void> {
    let found: string[];
    try {
      found = (await lookup(this.config.dns, { all: true })).map((a) => normalise(a.address));
    } catch (err) {
      this.log.warn({ dns: this.config.dns, err: { code: (err as NodeJS.ErrnoException).code } }, 'upstream name did not resolve; keeping the last members');
      return;
    }
    const next = new Map<string, Member>();
    for (const host of [this.config.host, ...this.config.hosts, ...found]) {
      if (host === '') continue;
      next.set(host, this.members.get(host) ?? { host, sessions: 0, healthy: true });
    }
    this.members = next;
  }

  private async checkAll(): Promise<void> {
    await Promise.all([...this.members.values()].map((m) => this.check(m)));
  }

  private check(member: Member): Promise<void> {
    return new Promise((resolve) => {
      const socket = net.connect({ host: member.host, port: this.config.port, timeout: this.connectTimeoutMs });
      const done = (healthy: boolean) => {
        socket.destroy();
        if (healthy !== member.healthy) this.log.info({ upstream: member.host, healthy }, 'upstream health changed');
        member.healthy = healthy;
        resolve();
      };
      socket.once('connect', () => done(true));
      socket.once('timeout', () => done(false));
      socket.once('error', () => done(false));
    });
  }
}

/** Healthy before unhealthy, then fewest sessions. */
function rank(m: Member): number {
  return (m.healthy ? 0 : 1_000_000_000) + m.sessions;
}

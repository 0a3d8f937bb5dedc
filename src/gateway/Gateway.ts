/**
 * The process: every site, the shared session budget, metrics, and the
 * lifecycle (start, drain, destroy). Counts are exposed so that tests and
 * operators can see that nothing leaks.
 */
import type { GatewayConfig } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import { Metrics } from '../observe/metrics.js';
import { Site, type SessionBudget } from './Site.js';

export interface GatewayStats {
  readonly sessions: number;
  readonly pinholes: number;
  readonly sites: Readonly<Record<string, { readonly passiveFree: number; readonly activeFree: number; readonly sessions: number }>>;
}

export class Gateway {
  readonly metrics = new Metrics();
  private readonly sites = new Map<string, Site>();
  private sessionsInUse = 0;
  private state: 'new' | 'running' | 'draining' | 'closed' = 'new';

  constructor(
    private config: GatewayConfig,
    readonly log: Logger,
  ) {
    this.metrics.freePorts = () =>
      [...this.sites.values()].flatMap((site) => [
        { site: site.name, dir: 'passive' as const, free: site.pools.passive.free },
        { site: site.name, dir: 'active' as const, free: site.pools.active.free },
      ]);
  }

  get running(): boolean {
    return this.state === 'running';
  }

  async start(): Promise<void> {
    for (const siteConfig of this.config.sites) {
      const site = new Site(siteConfig, { log: this.log, metrics: this.metrics, budget: this.budget });
      this.sites.set(siteConfig.name, site);
    }
    try {
      for (const site of this.sites.values()) await site.listen();
    } catch (err) {
      await this.stopListening();
      throw err;
    }
    this.state = 'running';
  }

  /** Bound listener of each site (port 0 in the config becomes the real port). */
  addresses(): Record<string, { host: string; port: number }> {
    const out: Record<string, { host: string; port: number }> = {};
    for (const [name, site] of this.sites) {
      const a = site.address();
      if (a !== undefined) out[name] = a;
    }
    return out;
  }

  stats(): GatewayStats {
    let sessions = 0;
    let pinholes = 0;
    const sites: Record<string, { passiveFree: number; activeFree: number; sessions: number }> = {};
    for (const [name, site] of this.sites) {
      sessions += site.sessions.size;
      for (const s of site.sessions) pinholes += s.pinholeCount;
      sites[name] = { passiveFree: site.pools.passive.free, activeFree: site.pools.active.free, sessions: site.sessions.size };
    }
    return { sessions, pinholes, sites };
  }

  /**
   * Graceful stop: stop accepting, let sessions end by themselves for up to
   * `drainTimeoutMs`, then end the rest. Idempotent.
   */
  async close(drainTimeoutMs = this.config.shutdown.drainTimeoutMs): Promise<void> {
    if (this.state === 'closed' || this.state === 'draining') return this.settled();
    this.state = 'draining';
    await this.stopListening();
    const sessions = this.stats().sessions;
    if (sessions > 0) this.log.info({ sessions, drainTimeoutMs }, 'draining');
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), drainTimeoutMs);
    });
    const outcome = await Promise.race([this.settled().then(() => 'drained' as const), deadline]);
    clearTimeout(timer);
    if (outcome === 'timeout') this.destroy();
    await this.settled();
    this.state = 'closed';
  }

  /** Immediate stop: every session and pinhole ends now. */
  destroy(): void {
    this.state = this.state === 'new' ? 'closed' : this.state;
    void this.stopListening();
    for (const site of this.sites.values()) site.endAll('shutdown');
  }

  private async settled(): Promise<void> {
    await Promise.all([...this.sites.values()].map((s) => s.settled()));
  }

  private async stopListening(): Promise<void> {
    await Promise.all([...this.sites.values()].map((s) => s.stopListening()));
  }

  private readonly budget: SessionBudget = {
    tryTake: () => {
      if (this.sessionsInUse >= this.config.limits.maxSessions) return false;
      this.sessionsInUse++;
      return true;
    },
    give: () => {
      this.sessionsInUse--;
    },
  };
}

/**
 * The process: every site, the shared session budget, metrics, and the
 * lifecycle (start, drain, destroy). Counts are exposed so that tests and
 * operators can see that nothing leaks.
 */
import type { Server } from 'node:http';
import { isDeepStrictEqual } from 'node:util';
import { AggregatorRegistry } from 'prom-client';
import type { Instance } from '../config/instance.js';
import type { GatewayConfig, SiteConfig } from '../config/types.js';
import { startHttp } from '../observe/httpServer.js';
import type { Logger } from '../observe/logger.js';
import { Metrics } from '../observe/metrics.js';
import { type DataPlane, InProcessDataPlane } from '../data/DataPlane.js';
import type { OwnEndpoint } from './destinations.js';
import { OwnConnections } from './loopGuard.js';
import { OwnEndpointsCache, ownEndpoints } from './outbound.js';
import { Site, type SessionBudget } from './Site.js';
import { PreLoginQueue } from './eviction.js';
import { Admissions } from './admission.js';
import { WorkerDataPlane } from '../data/worker/WorkerDataPlane.js';
import { ProbeRegistry } from './health/ProbeRegistry.js';
import { KernelDataPlane, kernelPlaneUsable } from '../data/nftables/KernelDataPlane.js';

const MIN_SWEEP_MS = 25;
const MAX_SWEEP_MS = 1_000;

export interface GatewayStats {
  readonly sessions: number;
  readonly pinholes: number;
  readonly sites: Readonly<Record<string, { readonly passiveFree: number; readonly activeFree: number; readonly sessions: number }>>;
}

export class Gateway {
  readonly metrics = new Metrics();
  /** Outgoing control connections of every site: one that arrives back at a listener is a loop. */
  private readonly ownConnections = new OwnConnections();
  /** What outbound sites never connect to (worked out at most once a second, and after each change of listeners). */
  private readonly own = new OwnEndpointsCache(() => ownEndpoints(this.config, { listeners: Object.values(this.addresses()), metrics: this.metricsAddress() }));
  private readonly sites = new Map<string, Site>();
  /** Sites replaced or removed by a reload, kept until their last session ends. */
  private readonly retired = new Set<Site>();
  private http: Server | undefined;
  private dataPlane: DataPlane;
  /** The upstream health probers of the whole process, shared by every site (and kept across reloads). */
  private readonly probes: ProbeRegistry;
  /** Which slice of every passive range this process serves; read at start, like the worker count. */
  private readonly instance: Instance;
  private sessionsInUse = 0;
  /** Connections accepted by every site are admitted a few per event-loop turn, the sites in turn. */
  private readonly admissions = new Admissions();
  private state: 'new' | 'running' | 'draining' | 'closed' = 'new';

  constructor(
    private config: GatewayConfig,
    readonly log: Logger,
  ) {
    this.instance = config.instance;
    const { workers, workerNice } = config.dataPlane;
    this.dataPlane = workers === 0 ? new InProcessDataPlane() : new WorkerDataPlane(workers, config.log.level, log, workerNice);
    this.metrics.freePorts = () =>
      [...this.sites.values()].flatMap((site) => [
        { site: site.name, dir: 'passive' as const, free: site.pools.passive.free, size: site.pools.passive.size },
        { site: site.name, dir: 'active' as const, free: site.pools.active.free, size: site.pools.active.size },
      ]);
    this.metrics.upstreams = () => [...this.sites.values()].flatMap((site) => site.upstreams.gauges());
    this.probes = new ProbeRegistry({ observe: (upstream, seconds) => this.metrics.upstreamProbeSeconds.observe({ upstream }, seconds) });
    this.metrics.siteRoles = () => [...this.sites.values()].map((site) => ({ site: site.name, role: site.config.role ?? 'reverse' }));
    this.metrics.initProcess('relay'); // both planes (in process, workers) relay in userspace
  }

  /** The plane that carries data connections ("relay" until start() has set up the kernel plane). */
  get dataPlaneKind(): 'relay' | 'nftables' {
    return this.dataPlane.kind;
  }

  get running(): boolean {
    return this.state === 'running';
  }

  private starting: Promise<void> | undefined;

  /** Start every site; a close() that comes meanwhile waits for the start to finish first. */
  start(): Promise<void> {
    this.starting ??= this.startSites();
    return this.starting;
  }

  private async startSites(): Promise<void> {
    await this.startDataPlane();
    for (const siteConfig of this.config.sites) this.sites.set(siteConfig.name, this.newSite(siteConfig));
    try {
      for (const site of this.sites.values()) await site.listen();
      if (this.config.metrics.listen !== '') this.http = await startHttp(this.config.metrics.listen, this.probe, this.log);
    } catch (err) {
      await this.stopListening();
      await this.stopHttp();
      throw err;
    }
    this.own.invalidate(); // every listener is bound now (port 0 in the config has become a real port)
    this.state = 'running';
    this.startSweep();
  }

  /**
   * `nftables`: the kernel plane or a failed start. `auto`: the kernel plane
   * when the process may drive it (CAP_NET_ADMIN, forwarding on) and it
   * starts; else the relay, with the reason logged.
   */
  private async startDataPlane(): Promise<void> {
    const wanted = this.config.dataPlane.kind;
    const check = kernelPlaneUsable();
    if (wanted === 'nftables' || (wanted === 'auto' && check.usable)) {
      const ranges = this.config.sites.flatMap((s) => [s.passivePorts, s.activePorts]);
      const kernel = new KernelDataPlane({ fallback: this.dataPlane, log: this.log, metrics: this.metrics, ranges });
      try {
        await kernel.start();
        this.dataPlane = kernel;
        this.metrics.kernelPlaneDriver.set({ driver: kernel.driver }, 1);
      } catch (err) {
        if (wanted === 'nftables') throw err;
        this.log.warn({ err }, 'kernel data plane unavailable; relaying');
      }
    } else if (wanted === 'auto') {
      this.log.info({ why: check.why }, 'kernel data plane not usable; relaying');
    }
    this.metrics.dataPlane.reset();
    this.metrics.dataPlane.set({ kind: this.dataPlane.kind }, 1);
    this.log.info({ dataPlane: this.dataPlane.kind, configured: wanted }, 'data plane');
  }

  private sweepTimer: NodeJS.Timeout | undefined;

  /** One timer wheel for every session's control idle deadline. */
  private startSweep(): void {
    const deadlines = this.config.sites.flatMap((s) => [s.timeouts.controlIdleMs, s.timeouts.loginMs].filter((ms) => ms > 0));
    const shortest = Math.min(...deadlines);
    const period = Math.max(MIN_SWEEP_MS, Math.min(MAX_SWEEP_MS, Math.floor(shortest / 4)));
    this.sweepTimer = setInterval(() => {
      const now = performance.now();
      for (const site of [...this.sites.values(), ...this.retired]) site.sweep(now);
    }, period);
    this.sweepTimer.unref();
  }

  /** Ready: running (not draining), every site listening with a reachable upstream. */
  readonly probe = {
    /** The gateway's metrics merged with the data-plane workers' (Prometheus text). */
    metrics: async (): Promise<{ contentType: string; body: string }> => {
      const own = this.metrics.registry;
      const parts = await this.dataPlane.metricsJson();
      if (parts.length === 0) return { contentType: own.contentType, body: await own.metrics() };
      const merged = AggregatorRegistry.aggregate([await own.getMetricsAsJSON(), ...parts] as Parameters<typeof AggregatorRegistry.aggregate>[0]);
      return { contentType: own.contentType, body: await merged.metrics() };
    },
    ready: () => {
      const sites: Record<string, boolean> = {};
      for (const [name, site] of this.sites) sites[name] = site.ready;
      const ready = this.state === 'running' && Object.values(sites).every(Boolean);
      return { ready, detail: { state: this.state, sites } };
    },
  };

  /**
   * Apply a validated config to new sessions. Sites removed stop listening
   * now; sites changed get a new Site (taking over the listener when its
   * address is unchanged); live sessions keep the settings they started with.
   */
  async reload(next: GatewayConfig): Promise<void> {
    if (this.state !== 'running') return;
    try {
      await this.apply(next);
    } catch (err) {
      this.metrics.reloaded(false);
      throw err;
    }
    this.metrics.reloaded(true);
  }

  private async apply(next: GatewayConfig): Promise<void> {
    const wanted = new Map(next.sites.map((s) => [s.name, s]));
    for (const [name, site] of this.sites) {
      if (wanted.has(name)) continue;
      this.sites.delete(name);
      this.retire(site);
      await site.stopListening();
      this.log.info({ site: name }, 'site removed');
    }
    for (const siteConfig of next.sites) await this.replaceSite(siteConfig);
    this.log.level = next.log.level;
    if (next.metrics.listen !== this.config.metrics.listen) {
      await closeHttp(this.http);
      this.http = next.metrics.listen === '' ? undefined : await startHttp(next.metrics.listen, this.probe, this.log);
    }
    this.config = next;
    this.log.info({ sites: next.sites.length }, 'configuration reloaded');
  }

  private async replaceSite(siteConfig: SiteConfig): Promise<void> {
    const old = this.sites.get(siteConfig.name);
    if (old !== undefined && isDeepStrictEqual(old.config, siteConfig)) {
      old.tls?.reload(); // the same file names, maybe renewed certificates (ACME)
      return;
    }
    const site = this.newSite(siteConfig, old);
    if (old !== undefined && sameListener(old.config.listen, siteConfig.listen) && old.listening) {
      await site.adopt(old);
    } else {
      if (old !== undefined) await old.stopListening();
      await site.listen();
    }
    if (old !== undefined) this.retire(old);
    this.sites.set(siteConfig.name, site);
    this.own.invalidate();
    this.log.info({ site: siteConfig.name, replaced: old !== undefined }, old === undefined ? 'site added' : 'site changed');
  }

  private newSite(siteConfig: SiteConfig, predecessor?: Site): Site {
    const deps = {
      log: this.log,
      metrics: this.metrics,
      budget: this.budget,
      dataPlane: this.dataPlane,
      probes: this.probes,
      admissions: this.admissions,
      instance: this.instance,
      ownEndpoints: () => this.ownEndpoints(),
      ownConnections: this.ownConnections,
    };
    return new Site(siteConfig, deps, predecessor);
  }

  /** What outbound sites never connect to: the gateway's own listeners and ranges. */
  private ownEndpoints(): readonly OwnEndpoint[] {
    return this.own.get(this.config);
  }

  private retire(site: Site): void {
    site.retire();
    this.retired.add(site);
    void site.settled().then(() => {
      if (site.sessions.size === 0) this.retired.delete(site);
    });
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

  /** Where the metrics endpoint is bound, if it is on (port 0 in the config becomes the real port). */
  metricsAddress(): { host: string; port: number } | undefined {
    const a = this.http?.address();
    return a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  stats(): GatewayStats {
    let sessions = 0;
    let pinholes = 0;
    const sites: Record<string, { passiveFree: number; activeFree: number; sessions: number }> = {};
    for (const site of [...this.sites.values(), ...this.retired]) {
      sessions += site.sessions.size;
      for (const s of site.sessions) pinholes += s.pinholeCount;
    }
    for (const [name, site] of this.sites) {
      sites[name] = { passiveFree: site.pools.passive.free, activeFree: site.pools.active.free, sessions: site.sessions.size };
    }
    return { sessions, pinholes, sites };
  }

  /**
   * Graceful stop: stop accepting, let sessions end by themselves for up to
   * `drainTimeoutMs`, then end the rest. Idempotent.
   */
  async close(drainTimeoutMs = this.config.shutdown.drainTimeoutMs): Promise<void> {
    this.closing ??= this.drain(drainTimeoutMs);
    return this.closing;
  }

  private closing: Promise<void> | undefined;

  private async drain(drainTimeoutMs: number): Promise<void> {
    await this.starting?.catch(() => undefined);
    this.state = 'draining';
    await this.stopListening();
    for (const site of [...this.sites.values(), ...this.retired]) site.drain();
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
    await this.stopHttp();
    await this.dataPlane.close();
    this.probes.close();
    clearInterval(this.sweepTimer);
    this.state = 'closed';
  }

  /** Immediate stop: every session and pinhole ends now. */
  destroy(): void {
    this.state = this.state === 'new' ? 'closed' : this.state;
    void this.stopListening();
    void this.stopHttp();
    void this.settled().then(() => this.dataPlane.close());
    for (const site of [...this.sites.values(), ...this.retired]) site.endAll();
  }

  private async settled(): Promise<void> {
    await Promise.all([...this.sites.values(), ...this.retired].map((s) => s.settled()));
  }

  private async stopListening(): Promise<void> {
    await Promise.all([...this.sites.values()].map((s) => s.stopListening()));
  }

  private async stopHttp(): Promise<void> {
    await closeHttp(this.http);
    this.http = undefined;
  }

  private readonly budget: SessionBudget = {
    tryTake: () => {
      if (this.sessionsInUse >= this.config.limits.maxSessions && !this.budget.preLogin.evictOldest('process')) return false;
      this.sessionsInUse++;
      return true;
    },
    give: () => {
      this.sessionsInUse--;
    },
    preLogin: new PreLoginQueue(),
  };
}

function closeHttp(server: Server | undefined): Promise<void> {
  if (server === undefined) return Promise.resolve();
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** One address and port: the listening socket can be kept (what is expected on it, such as a PROXY header, may change). */
function sameListener(a: { host: string; port: number }, b: { host: string; port: number }): boolean {
  return a.host === b.host && a.port === b.port;
}

/**
 * One site: a control listener, its upstream, its port pools and its
 * sessions. Admission (allow/deny, per-site, per-client and process-wide
 * limits) happens here, before a session exists.
 */
import net, { type Server, type Socket } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { type Instance, passiveSlice } from '../config/instance.js';
import type { PortRange, SiteConfig } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { isClientAllowed, normalise } from '../common/address.js';
import type { DataPlane } from '../data/DataPlane.js';
import { ShardedPool } from '../data/ShardedPool.js';
import { closeGracefully, Session, type UpstreamChooser } from '../control/Session.js';
import { CONNECTION_REFUSED, refusalReply } from '../control/replies.js';
import type { RouteResult } from '../control/Session.js';
import type { ControlSettings, RouteVerb } from '../control/types.js';
import { chooseRoute } from './routing.js';
import { SiteTls } from '../tls/SiteTls.js';
import type { ProxyHeader } from '../common/proxyProtocol.js';
import { carriedClient, type HeaderFailure, isTrustedProxy, receiveProxyHeader, upstreamHeader, withUpstreamDataHeader } from './proxyHeader.js';
import { UpstreamPool } from './UpstreamPool.js';
import type { ProbeRegistry } from './health/ProbeRegistry.js';
import { type Evictable, type EvictionScope, PreLoginQueue } from './eviction.js';
import { type AdmissionQueue, type Admissions, Arrivals } from './admission.js';
import { OriginalDestinations } from './conntrack.js';
import type { OwnEndpoint } from './destinations.js';
import type { OwnConnections } from './loopGuard.js';
import { type Lookup, forwardRoute, singleUpstream, systemLookup, transparentVerdict } from './outbound.js';

/** Accepted connections a site keeps waiting for admission; beyond them a connection is refused at once ("busy"). */
const MAX_WAITING = 1_024;

/** The PROXY header each connection from a balancer carried, kept while it waits for admission (across a reload too). */
const carriedHeaders = new WeakMap<Socket, ProxyHeader>();

/** Process-wide session budget shared by every site. */
export interface SessionBudget {
  /** A slot for a newcomer, evicting the process's oldest idle session not logged in when full; false: refuse. */
  tryTake(): boolean;
  give(): void;
  /** Every session of the process not yet logged in, oldest first (the process scope of eviction). */
  readonly preLogin: PreLoginQueue<Evictable>;
}

/** One admitted session, with what it counts against; the unit of eviction. */
class Tenant implements Evictable {
  constructor(
    readonly session: Session,
    readonly client: string,
    private readonly site: Site,
  ) {}

  get loggedIn(): boolean {
    return this.session.loggedIn;
  }

  get quiet(): boolean {
    return this.session.quiet;
  }

  evict(scope: EvictionScope): void {
    this.site.evict(this, scope);
  }
}

export class Site implements AdmissionQueue {
  readonly pools: { readonly passive: ShardedPool; readonly active: ShardedPool };
  readonly sessions = new Set<Session>();
  readonly upstreams: UpstreamPool;
  /** The passive ports this site's pinholes use: the configured range, or this instance's slice of it. */
  readonly passiveRange: PortRange;
  /** Sessions and pinholes per client address; shared with the site this one replaces on reload. */
  private readonly perClient: Map<string, number>;
  private readonly pinholesPerClient: Map<string, number>;
  /** Sessions not logged in, oldest first: of each client address (shared on reload, as the counts are), and of this site. */
  private readonly preLoginByClient: Map<string, PreLoginQueue<Tenant>>;
  private readonly preLogin = new PreLoginQueue<Tenant>();
  private readonly tenants = new Map<Session, Tenant>();
  /** Accepted, paused, not yet admitted: admitted a few per event-loop turn (admission.ts). */
  private readonly arrivals = new Arrivals<Socket>();
  private server: Server | undefined;
  private nextId = 0;
  private readonly log: Logger;
  /** What the control core decides with, taken from the config once. */
  private readonly settings: ControlSettings;
  /** TLS termination (a `tls` section); kept across reloads, with its ticket keys and session cache. */
  readonly tls: SiteTls | undefined;
  /** Connections whose PROXY header is still coming: cancelled by a drain or a stop. */
  private readonly arriving = new Set<() => void>();
  /** The data plane as this site's sessions use it (PROXY headers on upstream data connections when configured). */
  private readonly dataPlane: DataPlane;

  constructor(
    readonly config: SiteConfig,
    private readonly deps: {
      log: Logger;
      metrics: Metrics;
      budget: SessionBudget;
      dataPlane: DataPlane;
      probes: ProbeRegistry;
      admissions: Admissions;
      instance: Instance;
      /** Outbound sites: every address:port the gateway listens on (never a destination). */
      ownEndpoints?: () => readonly OwnEndpoint[];
      /** The gateway's own outgoing control connections: one arriving here is a loop. */
      ownConnections?: OwnConnections;
      /** Forward sites: how host names are resolved (tests give their own). */
      lookup?: Lookup;
    },
    /** The site of the same name this one replaces on reload: its live sessions' ports and counts carry over. */
    predecessor?: Site,
  ) {
    const shards = deps.dataPlane.shards;
    const pool = (range: PortRange, old: ShardedPool | undefined, oldRange: PortRange | undefined) =>
      old !== undefined && oldRange !== undefined && isDeepStrictEqual(range, oldRange) ? old : new ShardedPool(range, shards, old);
    // Behind one address with other instances, this one serves only its slice of the passive range.
    this.passiveRange = passiveSlice(config.passivePorts, deps.instance);
    this.pools = {
      passive: pool(this.passiveRange, predecessor?.pools.passive, predecessor?.passiveRange),
      active: pool(config.activePorts, predecessor?.pools.active, predecessor?.config.activePorts),
    };
    this.perClient = predecessor?.perClient ?? new Map();
    this.pinholesPerClient = predecessor?.pinholesPerClient ?? new Map();
    this.preLoginByClient = predecessor?.preLoginByClient ?? new Map();
    this.log = deps.log.child({ site: config.name });
    const track = deps.ownConnections?.track; // the loop guard learns every upstream control connection, warm ones too
    const warm = { connectMs: config.timeouts.upstreamConnectMs, greetingMs: config.timeouts.greetingMs, maxLineBytes: config.limits.maxLineBytes, track };
    this.upstreams = new UpstreamPool(config.upstream, { site: config.name, log: this.log, metrics: deps.metrics, probes: deps.probes, warm });
    if (predecessor !== undefined) this.upstreams.inherit(predecessor.upstreams); // what was learnt of its members
    this.settings = controlSettings(config);
    this.tls = siteTls(config, deps, predecessor?.tls);
    const { proxyProtocol, proxyProtocolData } = config.upstream;
    this.dataPlane = proxyProtocol !== 'off' && proxyProtocolData ? withUpstreamDataHeader(deps.dataPlane, versionOf(proxyProtocol)) : deps.dataPlane;
  }

  /** Listening, and some upstream believed reachable (an outbound site has no fixed upstream). */
  get ready(): boolean {
    return this.listening && (this.config.role !== undefined || this.upstreams.ready);
  }

  /** Transparent sites: original destinations from conntrack, while listening. */
  private origins: OriginalDestinations | undefined;

  get name(): string {
    return this.config.name;
  }

  /** Where the listener is bound (the port is the kernel's pick when the config says 0). */
  address(): { host: string; port: number } | undefined {
    const a = this.server?.address();
    return a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  get listening(): boolean {
    return this.server?.listening === true;
  }

  async listen(): Promise<void> {
    await this.upstreams.start();
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    server.on('error', (err) => this.log.error({ err }, 'listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.config.listen.host, port: this.config.listen.port, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    await this.startOrigins();
    const bound = this.address();
    const upstreams = this.upstreams.snapshot().map((m) => m.host);
    this.log.info({ host: bound?.host, port: bound?.port, role: this.config.role, upstreams, upstreamPort: this.upstreams.port, dns: this.config.upstream.dns || undefined }, 'listening');
  }

  /** Take over the listener of the site this one replaces (same address): no connection is refused meanwhile. */
  async adopt(old: Site): Promise<void> {
    const server = old.server;
    if (server === undefined) return this.listen();
    await this.upstreams.start();
    old.server = undefined;
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => this.accept(socket));
    this.server = server;
    for (const socket of old.arrivals.drain()) this.arrive(socket); // waiting connections are admitted on the new settings
    await this.startOrigins();
  }

  private async startOrigins(): Promise<void> {
    const port = this.address()?.port;
    if (this.config.role !== 'transparent' || port === undefined) return;
    const origins = new OriginalDestinations({ port, log: this.log });
    this.origins = origins;
    // Without the events, each accept asks `conntrack -L` (slower, still exact); without conntrack at all, every client gets 421.
    await origins.start().catch((err: Error) => this.log.error({ err: err.message }, 'conntrack events unavailable'));
  }

  private stopOrigins(): void {
    void this.origins?.close();
    this.origins = undefined;
  }

  /** Replaced by a reload: no new sessions; live ones finish here. */
  retire(): void {
    this.upstreams.stop();
    this.stopOrigins();
  }

  /** Stop accepting; sessions go on. */
  stopListening(): Promise<void> {
    this.upstreams.stop();
    this.stopOrigins();
    const server = this.server;
    if (server === undefined) return Promise.resolve();
    this.server = undefined;
    // close() stops accepting at once; its callback would wait for every live session, so it is not awaited.
    server.close();
    for (const socket of this.arrivals.drain()) this.refuse(socket, normalise(socket.remoteAddress), 'shutdown');
    return Promise.resolve();
  }

  /** A new connection: behind a balancer its PROXY header comes first, else it is the client. */
  private accept(socket: Socket): void {
    const { listen, timeouts } = this.config;
    if (listen.proxyProtocol === 'off') return this.arrive(socket);
    if (!isTrustedProxy(normalise(socket.remoteAddress), listen.trustedProxies)) return this.dropUnheaded(socket, { kind: 'untrusted' });
    const options = { accept: listen.proxyProtocol, timeoutMs: timeouts.proxyHeaderMs };
    const cancel = receiveProxyHeader(socket, options, (outcome) => {
      this.arriving.delete(cancel);
      if (outcome.ok) {
        carriedHeaders.set(socket, outcome.header);
        this.arrive(socket);
      } else {
        this.dropUnheaded(socket, outcome.failure);
      }
    });
    this.arriving.add(cancel);
  }

  /** No FTP is spoken to a connection without a valid header from a trusted balancer: it is closed, logged and counted. */
  private dropUnheaded(socket: Socket, failure: HeaderFailure): void {
    const peer = normalise(socket.remoteAddress);
    socket.on('error', () => undefined);
    socket.destroy();
    const received = 'received' in failure ? failure.received : undefined;
    if (failure.kind === 'truncated' && received === 0) {
      this.log.debug({ peer }, 'connection closed before a PROXY header'); // a balancer's bare TCP check
      return;
    }
    this.deps.metrics.sessionsRefused.inc({ site: this.name, reason: `proxy-${failure.kind}` });
    const detail = failure.kind === 'invalid' ? failure.reason : undefined;
    this.log.warn({ peer, reason: `proxy-${failure.kind}`, detail, received }, 'PROXY header refused, connection closed');
  }

  /** An accepted connection joins the queue; nothing is read from it until it is admitted. */
  private arrive(socket: Socket): void {
    if (this.arrivals.length >= MAX_WAITING) return this.refuse(socket, normalise(socket.remoteAddress), 'busy');
    socket.on('error', waitingError);
    this.arrivals.push(socket);
    this.deps.admissions.wake(this);
  }

  admitNext(): boolean {
    const socket = this.arrivals.shift();
    if (socket === undefined) return false;
    socket.off('error', waitingError);
    if (socket.destroyed) return true; // reset while it waited
    this.admit(socket);
    return true;
  }

  private admit(socket: Socket): void {
    const header = carriedHeaders.get(socket);
    const carried = carriedClient(header);
    const peer = normalise(socket.remoteAddress);
    const client = carried?.address ?? peer;
    if (this.deps.ownConnections?.isOwn(peer, socket.remotePort) === true) return this.refuseLoop(socket, client);
    const refusal = this.refusalFor(client);
    if (refusal !== undefined) {
      this.refuse(socket, client, refusal);
      return;
    }
    if (this.config.role === 'transparent') return void this.admitTransparent(socket, client);
    const routed = this.settings.greetFirst === true;
    const upstream = routed ? '' : this.upstreams.take();
    if (upstream === undefined) {
      this.refuse(socket, client, 'no-upstream');
      this.deps.budget.give();
      return;
    }
    this.startSession(socket, client, upstream, this.config.role === 'forward' ? singleUpstream(21) : this.upstreams);
  }

  /**
   * A transparent site's connection goes where the client dialled before the
   * edge redirected it (from conntrack), if the policy allows; else 421. The
   * budget slot is held meanwhile; the per-client count starts with the session.
   */
  private async admitTransparent(socket: Socket, client: string): Promise<void> {
    socket.on('error', () => undefined); // a reset while looking up is seen as `destroyed` below
    const began = performance.now();
    const origin = await this.origins?.lookup({
      client,
      clientPort: socket.remotePort ?? 0,
      local: normalise(socket.localAddress),
      localPort: socket.localPort ?? 0,
    });
    const lookupMs = performance.now() - began;
    const own = this.deps.ownEndpoints?.() ?? [];
    const refusal = origin === undefined ? 'no-original-destination' : transparentVerdict(this.config, origin.host, origin.port, own);
    if (refusal !== undefined || origin === undefined || socket.destroyed) {
      this.deps.budget.give();
      if (socket.destroyed) return;
      this.log.warn({ destination: origin === undefined ? undefined : `${origin.host}:${origin.port}`, lookupMs }, 'original destination refused');
      return this.refuse(socket, client, refusal ?? 'no-original-destination');
    }
    this.startSession(socket, client, origin.host, singleUpstream(origin.port), { lookupMs: roundMs(lookupMs) });
  }

  private startSession(socket: Socket, client: string, upstream: string, upstreams: UpstreamChooser, detail?: { lookupMs: number }): void {
    const id = (++this.nextId).toString(36);
    const header = carriedHeaders.get(socket);
    const carried = carriedClient(header);
    const session = new Session(
      {
        id,
        site: this.config,
        settings: this.settings,
        upstream,
        upstreams,
        route: this.routeFor(),
        tls: this.tls,
        pools: this.pools,
        dataPlane: this.dataPlane,
        clientPinholes: this.pinholeBudget(client),
        peer: carried,
        upstreamPreamble: this.preamble(socket, header),
        trackUpstream: this.deps.ownConnections?.track,
        log: this.log.child({ sid: id, client, upstream }),
        metrics: this.deps.metrics,
      },
      socket,
    );
    this.enlist(new Tenant(session, client, this));
    this.deps.metrics.sessionsTotal.inc({ site: this.name });
    this.deps.metrics.sessionsActive.inc({ site: this.name });
    const via = header === undefined ? undefined : normalise(socket.remoteAddress);
    session.log.info({ clientPort: carried?.port ?? socket.remotePort, via, ...detail }, 'session start');
    session.start();
  }

  /** Greet-first sites: a forward site's route (the server the client names), or routing by USER or HOST on a reverse site. */
  private routeFor(): ((verb: RouteVerb, arg: string) => Promise<RouteResult>) | undefined {
    if (this.config.role === 'forward') {
      return forwardRoute({ site: this.config, own: () => this.deps.ownEndpoints?.() ?? [], lookup: this.deps.lookup ?? systemLookup });
    }
    if (this.settings.greetFirst !== true) return undefined;
    return (verb, arg) => Promise.resolve(this.route(verb, arg));
  }

  /** Routing by USER or HOST (greet-first): the member for what the client named, counted like `take()`. */
  private route(verb: RouteVerb, arg: string): RouteResult {
    const inService = this.upstreams.snapshot().filter((m) => m.state !== 'ejected').map((m) => m.host);
    const choice = chooseRoute(this.config.routing, verb, arg, inService);
    if (choice.kind === 'refused') return { ok: false, reason: `route-${choice.reason}`, reply: refusalReply(choice.reason, verb) };
    const others = choice.kind === 'member' ? new Set(this.upstreams.snapshot().map((m) => m.host).filter((h) => h !== choice.host)) : undefined;
    const taken = this.upstreams.take(others);
    const host = choice.kind === 'member' ? choice.host : taken;
    if (host === undefined) return { ok: false, reason: 'route-no-upstream', reply: refusalReply('no-upstream', verb), end: true };
    if (taken !== undefined && taken !== host) this.upstreams.give(taken); // a mapped address outside the pool: nothing counted
    return { ok: true, host, port: this.upstreams.port, user: choice.replayUser };
  }

  /** Count a new session against its client, this site and the process (the budget slot is already taken). */
  private enlist(tenant: Tenant): void {
    const { session, client } = tenant;
    this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    this.sessions.add(session);
    this.tenants.set(session, tenant);
    let byClient = this.preLoginByClient.get(client);
    if (byClient === undefined) this.preLoginByClient.set(client, (byClient = new PreLoginQueue()));
    byClient.add(tenant);
    this.preLogin.add(tenant);
    this.deps.budget.preLogin.add(tenant);
    void session.closed().then(() => this.forget(tenant));
  }

  /** End `tenant` with 421 to make room in `scope`, and give back its counts at once (the newcomer takes them). */
  evict(tenant: Tenant, scope: EvictionScope): void {
    const { session } = tenant;
    this.deps.metrics.sessionsEvicted.inc({ site: this.name, scope });
    session.log.warn({ scope, ms: Date.now() - session.startedAt }, 'session evicted');
    session.end('evicted');
    this.forget(tenant);
  }

  /** The PROXY header each upstream control connection of this session begins with, if the site sends one. */
  private preamble(socket: Socket, header: ProxyHeader | undefined): (() => Buffer) | undefined {
    const mode = this.config.upstream.proxyProtocol;
    if (mode === 'off') return undefined;
    return () => upstreamHeader(versionOf(mode), socket, header);
  }

  private pinholeBudget(client: string): { tryTake(): boolean; give(): void } {
    const counts = this.pinholesPerClient;
    const limit = this.config.limits.maxPinholesPerClient;
    return {
      tryTake: () => {
        const held = counts.get(client) ?? 0;
        if (held >= limit) return false;
        counts.set(client, held + 1);
        return true;
      },
      give: () => {
        const left = (counts.get(client) ?? 1) - 1;
        if (left <= 0) counts.delete(client);
        else counts.set(client, left);
      },
    };
  }

  /** A connection from the gateway itself: an upstream that is (or resolves to, or is forwarded to) this gateway. */
  private refuseLoop(socket: Socket, client: string): void {
    this.log.error({ client, clientPort: socket.remotePort }, 'connection from this gateway itself: an upstream leads back to this site (a loop); check sites[].upstream');
    this.refuse(socket, client, 'upstream-loop');
  }

  /** 421 and close (RFC 959: service not available), a warn line and a metric. */
  private refuse(socket: Socket, client: string, reason: string): void {
    this.deps.metrics.sessionsRefused.inc({ site: this.name, reason });
    this.log.warn({ client, reason }, 'connection refused');
    socket.on('error', () => socket.destroy());
    socket.write(CONNECTION_REFUSED);
    closeGracefully(socket);
  }

  /**
   * Why the newcomer is refused, if it is. At a full cap the oldest idle
   * session not logged in of that scope is evicted instead; the client's
   * own scope first, since evicting there frees a place in the others too.
   */
  private refusalFor(client: string): string | undefined {
    const { clients, limits } = this.config;
    if (client === '' || !isClientAllowed(client, clients.allow, clients.deny)) return 'denied';
    if ((this.perClient.get(client) ?? 0) >= limits.maxSessionsPerClient && this.preLoginByClient.get(client)?.evictOldest('client') !== true) {
      return 'client-limit';
    }
    if (this.sessions.size >= limits.maxSessions && !this.preLogin.evictOldest('site')) return 'site-limit';
    if (!this.deps.budget.tryTake()) return 'process-limit';
    return undefined;
  }

  /** Give back what a session counted against; once, whether it was evicted or ended by itself. */
  private forget(tenant: Tenant): void {
    const { session, client } = tenant;
    if (this.tenants.get(session) !== tenant) return;
    this.tenants.delete(session);
    this.sessions.delete(session);
    const byClient = this.preLoginByClient.get(client);
    byClient?.delete(tenant);
    if (byClient?.size === 0) this.preLoginByClient.delete(client);
    this.preLogin.delete(tenant);
    this.deps.budget.preLogin.delete(tenant);
    this.deps.budget.give();
    this.deps.metrics.sessionsActive.dec({ site: this.name });
    this.deps.metrics.sessionEnds.inc({ site: this.name, reason: session.endReason ?? 'unknown' });
    const left = (this.perClient.get(client) ?? 1) - 1;
    if (left === 0) this.perClient.delete(client);
    else this.perClient.set(client, left);
  }

  /** One sweep over the sessions for idle control connections (one timer for all, not one each). */
  sweep(now: number): void {
    for (const session of this.sessions) session.checkIdle(now);
  }

  /** Connections still sending their PROXY header are closed. */
  private cutArriving(): void {
    for (const cancel of this.arriving) cancel();
    this.arriving.clear();
  }

  /** Drain: every session ends as soon as it is idle (no reply owed, no pinhole). */
  drain(): void {
    this.cutArriving();
    for (const session of this.sessions) session.drain();
  }

  /** End every session now. */
  endAll(): void {
    this.cutArriving();
    for (const session of this.sessions) session.end('shutdown');
  }

  async settled(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.closed()));
  }
}

/** A connection reset while it waits for admission: closed; admitNext skips it. */
function waitingError(this: Socket): void {
  this.destroy();
}

/** Milliseconds as a log line shows them: to the microsecond. */
function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function versionOf(mode: 'v1' | 'v2'): 1 | 2 {
  return mode === 'v1' ? 1 : 2;
}

/** The part of a site's config the control core needs. */
export function controlSettings(config: SiteConfig): ControlSettings {
  return {
    activeMode: config.activeMode,
    upstreamDataMode: config.upstreamDataMode,
    externalAddress: config.externalAddress,
    privateAddress: config.privateAddress,
    ftps: config.ftps,
    tls: config.tls && { client: config.tls.client, implicit: config.tls.implicit, upstream: config.tls.upstream, requireProtP: config.tls.requireProtP },
    greetFirst: config.role === 'forward' || config.routing.by !== 'none',
    passiveDirect: config.role === 'transparent' && config.transparentPassive === 'direct',
  };
}

/** The site's TLS: the predecessor's, reloaded with the new files, or a new one. */
function siteTls(config: SiteConfig, deps: { log: Logger; metrics: Metrics }, previous: SiteTls | undefined): SiteTls | undefined {
  if (config.tls === undefined) return undefined;
  if (previous !== undefined && previous.reload(config.tls).ok) return previous;
  return new SiteTls(config.tls, { site: config.name, metrics: deps.metrics, log: deps.log.child({ site: config.name }) });
}

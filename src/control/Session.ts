/**
 * One client control connection and its upstream control connection: the
 * I/O around the sans-IO core (protocol.ts). Session owns the sockets (and
 * their TLS), the line splitters, the greeting and idle deadlines and the
 * pinholes; it feeds the core every event and performs every action the
 * core returns, in order. `end(reason)` is the one teardown path.
 */
import net, { type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { normalise } from '../common/address.js';
import type { SiteConfig } from '../config/types.js';
import type { DataPlane, LegRequest, PinholeHandle } from '../data/DataPlane.js';
import type { PinholeTls } from '../data/tlsLeg.js';
import { logDirectTransfer } from '../data/transferLog.js';
import type { ShardedPool } from '../data/ShardedPool.js';
import { LineSplitter } from '../ftp/lineSplitter.js';
import { type Logger, loggableLine } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { failureReason } from '../tls/handshake.js';
import type { TlsClient, TlsServer } from '../tls/SiteTls.js';
import { ControlProtocol } from './protocol.js';
import { ReadGate } from './ReadGate.js';
import { farewellFor } from './replies.js';
import type { Action, ControlSettings, EndReason, ForwardSpec, LegSpec, Note, PinholeSpec, RouteVerb } from './types.js';

/** How a session's attempt on an upstream member went (passive health, issue 17). */
export type UpstreamOutcome =
  | 'ok'
  | 'connect-refused'
  | 'connect-timeout'
  | 'reset-before-greeting'
  | 'greeting-timeout'
  | 'greeting-refused';

/** The site's upstream members, as a session uses them. */
export interface UpstreamChooser {
  readonly port: number;
  /** How many members one session may try before it gives up. */
  readonly maxAttempts: number;
  take(exclude?: ReadonlySet<string>): string | undefined;
  give(host: string): void;
  report(host: string, outcome: UpstreamOutcome): void;
  /** A connection to `host` already made and greeted (upstream.warm), now the session's; undefined if none. */
  takeWarm?(host: string): WarmConnection | undefined;
}

/** An upstream control connection made ahead of the session: connected, greeted, its greeting's bytes unread by anyone. */
export interface WarmConnection {
  readonly socket: Socket;
  readonly greeting: Buffer;
}

/** Where a greet-first session goes, or why not (forward proxies, routing by user or host). */
export type RouteResult =
  | { readonly ok: true; readonly host: string; readonly port: number; readonly user?: string }
  | { readonly ok: false; readonly reason: string; readonly reply: Buffer; readonly end?: boolean };

/** TLS of the site, as a session uses it (src/tls builds it from the site's files); data legs use it as TlsServer/TlsClient. */
export interface SessionTls extends TlsServer, TlsClient {
  /** The TLS server end over a client socket (accepted, or after AUTH TLS). */
  serveClient(raw: Socket): TLSSocket;
  /** The TLS client end toward the upstream: over `socket` after AUTH TLS, or a new connection (implicit). */
  connectUpstream(options: { socket: Socket } | { host: string; port: number }): TLSSocket;
}

export interface SessionContext {
  readonly id: string;
  readonly site: SiteConfig;
  readonly settings: ControlSettings;
  /** The member the site chose for this session (already taken from `upstreams`); '' on a greet-first site. */
  readonly upstream: string;
  /** Greet-first sites: the upstream for what the client named (`verb` USER, HOST, SITE or OPEN with `arg`). */
  readonly route?: (verb: RouteVerb, arg: string, client: string) => Promise<RouteResult>;
  readonly upstreams: UpstreamChooser;
  readonly pools: { readonly passive: ShardedPool; readonly active: ShardedPool };
  readonly dataPlane: DataPlane;
  /** Pinholes of this client address across its sessions: take one before opening, give it back after. */
  readonly clientPinholes: { tryTake(): boolean; give(): void };
  readonly tls: SessionTls | undefined;
  /** The client as a PROXY protocol header named it (behind a balancer); default: the socket's peer. */
  readonly peer?: { readonly address: string; readonly port: number };
  /** Bytes written first on each upstream connection (a PROXY protocol header), made from its socket. */
  readonly upstreamPreamble?: (upstream: Socket) => Buffer | undefined;
  /** Told of each upstream control connection once it is up (the gateway's loop guard). */
  readonly trackUpstream?: (upstream: Socket) => void;
  readonly log: Logger;
  readonly metrics: Metrics;
}

interface Attached {
  readonly socket: Socket;
  readonly off: () => void;
}

const CLOSE_GRACE_MS = 2_000;

export class Session {
  readonly startedAt = Date.now();
  private readonly began = performance.now();
  private readonly core: ControlProtocol;
  private client: Socket;
  private clientIo: Attached | undefined;
  private readonly clientGate: ReadGate;
  private upstream: Socket | undefined;
  private upstreamIo: Attached | undefined;
  private upstreamGate: ReadGate | undefined;
  private upstreamHost: string;
  private upstreamReady = false;
  private readonly tried = new Set<string>();
  private upstreamTlsSession: Buffer | undefined;
  private greetingTimer: NodeJS.Timeout | undefined;
  private lastLineAt = performance.now();
  private draining = false;
  private ended = false;
  /** Why the session ended (the first reason given to `end`); undefined while it runs. */
  endReason: EndReason | undefined;
  private readonly pinholes = new Map<number, PinholeHandle>();
  private readonly endWaiters: (() => void)[] = [];
  private transfers = 0;
  /** Whether the newest data connection the client asked for goes straight to the server (a direct passive forward) or through a pinhole. */
  private newestData: 'direct' | 'pinhole' | undefined;
  /** A transfer command on a direct data connection, until the server's final reply: its verb, when it was sent, whether a 1xx opened it. */
  private direct: { readonly verb: string; readonly at: number; opened: boolean } | undefined;
  private readonly totals = { upBytes: 0, downBytes: 0 };
  readonly log: Logger;

  constructor(
    private readonly ctx: SessionContext,
    client: Socket,
  ) {
    this.log = ctx.log;
    this.client = client;
    this.clientGate = new ReadGate(client);
    this.upstreamHost = ctx.upstream;
    const address = ctx.peer?.address ?? normalise(client.remoteAddress);
    this.core = new ControlProtocol(ctx.settings, { address, local: normalise(client.localAddress) });
  }

  get pinholeCount(): number {
    return this.pinholes.size;
  }

  /** Logged in (a 230 to USER/PASS/ACCT): never evicted for a newcomer. */
  get loggedIn(): boolean {
    return this.core.loggedIn;
  }

  /** No transfer and no command owed a reply. */
  get quiet(): boolean {
    return this.core.idle && this.pinholes.size === 0;
  }

  /** Resolves when the session and every pinhole it opened are closed. */
  async closed(): Promise<void> {
    if (!this.ended) await new Promise<void>((resolve) => this.endWaiters.push(resolve));
    await Promise.all([...this.pinholes.values()].map((p) => p.closed()));
  }

  start(): void {
    const raw = this.client;
    raw.setNoDelay(true);
    this.clientGate.hold('core'); // nothing is read before the upstream greets
    if (this.ctx.settings.tls?.implicit === true && this.ctx.tls !== undefined) {
      this.client = this.ctx.tls.serveClient(raw);
      this.watchClientHandshake(this.client as TLSSocket);
    }
    this.attachClient(this.client);
    if (this.ctx.settings.greetFirst === true) this.run(this.core.start());
    else this.connectUpstream(this.upstreamHost);
  }

  // ---- sockets -------------------------------------------------------------

  private attachClient(socket: Socket): void {
    const splitter = new LineSplitter(this.ctx.site.limits.maxLineBytes, {
      line: (line) => this.onClientLine(line),
      fault: (kind) => this.run(this.core.clientFault(kind)),
    });
    const onData = (chunk: Buffer) => splitter.push(chunk);
    const onError = (err: Error) => this.end('client-error', undefined, err);
    const onEnd = () => this.onClientEnd();
    const onClose = () => this.end('client-closed');
    socket.on('data', onData).on('error', onError).on('end', onEnd).on('close', onClose);
    this.clientIo = {
      socket,
      off: () => socket.off('data', onData).off('error', onError).off('end', onEnd).off('close', onClose),
    };
  }

  private attachUpstream(socket: Socket): (chunk: Buffer) => void {
    const splitter = new LineSplitter(this.ctx.site.limits.maxLineBytes, {
      line: (line) => this.onUpstreamLine(line),
      fault: (kind) => this.run(this.core.upstreamFault(kind)),
    });
    const onData = (chunk: Buffer) => splitter.push(chunk);
    const onError = (err: Error) => this.onUpstreamGone(err);
    const onGone = () => this.onUpstreamGone();
    socket.on('data', onData).on('error', onError).on('end', onGone).on('close', onGone);
    this.upstreamIo = {
      socket,
      off: () => socket.off('data', onData).off('error', onError).off('end', onGone).off('close', onGone),
    };
    return onData;
  }

  private connectUpstream(host: string, port = this.ctx.upstreams.port): void {
    const { site, metrics, tls, settings } = this.ctx;
    this.tried.add(host);
    this.upstreamHost = host;
    const began = performance.now();
    const implicit = settings.tls?.upstream === 'implicit' && tls !== undefined;
    const warm = implicit || port !== this.ctx.upstreams.port ? undefined : this.ctx.upstreams.takeWarm?.(host);
    if (warm !== undefined) return this.adoptWarm(warm);
    const socket = implicit ? tls.connectUpstream({ host, port }) : net.connect({ host, port });
    socket.setTimeout(site.timeouts.upstreamConnectMs);
    this.upstream = socket;
    this.upstreamGate = new ReadGate(socket);
    if (implicit) this.watchUpstreamTls(socket as TLSSocket);
    const failed = (outcome: UpstreamOutcome, reason: EndReason) => (err?: Error) => {
      if (this.upstream !== socket || this.upstreamIo !== undefined) return;
      metrics.upstreamConnectFailures.inc({ site: site.name });
      if (err !== undefined) this.log.warn({ err: errFields(err), upstream: host }, 'upstream connect failed');
      this.retryOrEnd(outcome, reason);
    };
    socket.once('timeout', failed('connect-timeout', 'upstream-connect-timeout'));
    socket.once('error', failed('connect-refused', 'upstream-connect-failed'));
    socket.once(implicit ? 'secureConnect' : 'connect', () => {
      if (this.upstream !== socket || this.ended) return;
      socket.setTimeout(0);
      socket.setNoDelay(true);
      metrics.upstreamConnectSeconds.observe({ site: site.name }, (performance.now() - began) / 1000);
      const preamble = this.ctx.upstreamPreamble?.(socket);
      if (preamble !== undefined) socket.write(preamble);
      this.upstreamConnected(socket);
    });
  }

  /** A warm connection (made and greeted before this session): as if it had just connected, its greeting read first. */
  private adoptWarm(warm: WarmConnection): void {
    const { socket, greeting } = warm;
    this.upstream = socket;
    this.upstreamGate = new ReadGate(socket);
    this.upstreamConnected(socket)?.(greeting);
  }

  /** The upstream's control connection is up: its lines go to the core, which waits for the greeting. Returns its line feed. */
  private upstreamConnected(socket: Socket): ((bytes: Buffer) => void) | undefined {
    this.ctx.trackUpstream?.(socket);
    const feed = this.attachUpstream(socket);
    this.greetingTimer = setTimeout(() => this.retryOrEnd('greeting-timeout', 'greeting-timeout'), this.ctx.site.timeouts.greetingMs);
    this.run(this.core.upstreamConnected({ address: normalise(socket.remoteAddress), local: normalise(socket.localAddress) }));
    return this.ended || this.upstream !== socket ? undefined : feed;
  }

  /**
   * This upstream failed before the session was ready: the client has been
   * told nothing yet, so another member is tried while attempts are left.
   */
  private retryOrEnd(outcome: UpstreamOutcome, reason: EndReason, farewell?: Buffer): void {
    if (this.ended) return;
    const { upstreams } = this.ctx;
    upstreams.report(this.upstreamHost, outcome);
    this.dropUpstream();
    if (!this.core.upstreamLost()) return this.end(reason, farewell);
    const next = this.tried.size < upstreams.maxAttempts ? upstreams.take(this.tried) : undefined;
    if (next === undefined) return this.end(reason, farewell);
    this.log.info({ failed: this.upstreamHost, outcome, next }, 'upstream failed, trying another');
    upstreams.give(this.upstreamHost);
    this.connectUpstream(next);
  }

  /** Greet-first: ask the site where `USER alice@host` (or HOST, SITE, OPEN) goes, then connect there. */
  private async route(verb: RouteVerb, arg: string): Promise<void> {
    const route = this.ctx.route;
    const result: RouteResult =
      route === undefined ? { ok: false, reason: 'no-route', reply: farewellFor('upstream-connect-failed') as Buffer, end: true } : await route(verb, arg, this.core.endpoints.client);
    if (this.ended) return;
    if (!result.ok) {
      this.ctx.metrics.sessionsRefused.inc({ site: this.ctx.site.name, reason: result.reason });
      this.log.warn({ verb, reason: result.reason }, 'route refused');
      return this.run(this.core.routeRefused(result.reply, result.end === true));
    }
    this.log.info({ verb, upstream: result.host, upstreamPort: result.port }, 'route');
    this.run(this.core.routed(result.user));
    this.connectUpstream(result.host, result.port);
  }

  private dropUpstream(): void {
    clearTimeout(this.greetingTimer);
    this.upstreamIo?.off();
    this.upstreamIo = undefined;
    this.upstream?.on('error', () => undefined);
    this.upstream?.destroy();
    this.upstream = undefined;
  }

  // ---- events into the core --------------------------------------------------

  private onClientLine(raw: Buffer): void {
    if (this.ended) return;
    this.lastLineAt = performance.now();
    if (this.log.isLevelEnabled('debug')) this.log.debug({ line: loggableLine(raw.toString('latin1')) }, 'client line');
    this.run(this.core.clientLine(raw));
  }

  private onUpstreamLine(raw: Buffer): void {
    if (this.ended) return;
    if (this.log.isLevelEnabled('debug')) this.log.debug({ line: loggableLine(raw.toString('latin1')) }, 'upstream line');
    this.run(this.core.upstreamLine(raw));
    if (this.direct !== undefined) this.directReply(raw);
  }

  /** A direct transfer's 1xx opens it; the server's final reply ends it: one `transfer done` line, if it was opened. */
  private directReply(raw: Buffer): void {
    const direct = this.direct;
    if (direct === undefined) return;
    if (raw[0] === 0x31) direct.opened = true; // '1': 125/150, the data connection is open
    if (this.core.directTransfer) return; // still owed its final reply
    this.direct = undefined;
    const reply = Number(raw.toString('latin1', 0, 3));
    if (direct.opened) logDirectTransfer(this.log, this.ctx.metrics, { site: this.ctx.site.name, command: direct.verb, startedAt: direct.at, reply: Number.isInteger(reply) ? reply : 0 });
  }

  private onClientEnd(): void {
    // Ended already (the upstream said 221 and closed first): both sockets are closing; a second end()
    // of the upstream would only build an ERR_STREAM_ALREADY_FINISHED error, stack trace and all.
    if (this.ended) return;
    // Half-close: pass the FIN on, and let the upstream answer what it still owes.
    if (this.upstream !== undefined && this.upstreamReady) this.upstream.end();
    else this.end('client-closed');
  }

  private onUpstreamGone(err?: Error): void {
    if (this.ended) return;
    if (!this.upstreamReady) {
      this.retryOrEnd('reset-before-greeting', 'upstream-closed-greeting');
      return;
    }
    this.end(err === undefined ? 'upstream-closed' : 'upstream-error', undefined, err);
  }

  // ---- actions out of the core -----------------------------------------------

  private run(actions: Action[]): void {
    for (const action of actions) {
      if (this.ended && action.type !== 'end') break;
      this.perform(action);
    }
    if (!this.ended) {
      this.clientGate.set('core', !this.core.wantsClientInput);
      this.endIfDrained();
    }
  }

  private perform(action: Action): void {
    switch (action.type) {
      case 'toClient':
        return this.toClient(action.line);
      case 'toUpstream':
        return this.toUpstream(action.line);
      case 'openPinhole':
        this.newestData = 'pinhole';
        return void this.openPinhole(action.spec);
      case 'openForward':
        this.newestData = 'direct';
        return void this.openForward(action.spec);
      case 'closePinholes':
        return this.closePinholes(action.which, action.reason);
      case 'label':
        if (this.newestData === 'direct') this.direct = { verb: action.verb, at: performance.now(), opened: false };
        return this.label(action.verb);
      case 'note':
        return this.noteDown(action.note);
      case 'ready':
        this.upstreamReady = true;
        clearTimeout(this.greetingTimer);
        this.ctx.upstreams.report(this.upstreamHost, 'ok');
        return;
      case 'loggedIn':
        this.log.debug('logged in');
        return;
      case 'route':
        return void this.route(action.verb, action.arg);
      case 'upstreamRefused':
        clearTimeout(this.greetingTimer);
        return this.retryOrEnd('greeting-refused', 'upstream-refused', action.reply);
      case 'secureClient':
        return this.secureClient();
      case 'secureUpstream':
        return this.secureUpstream();
      case 'end':
        return this.end(action.reason, action.farewell);
    }
  }

  private toClient(line: Buffer): void {
    if (this.ended || !this.client.writable) return;
    if (!this.client.write(line)) this.upstreamGate?.holdUntilDrain('client-backpressure', this.client);
  }

  private toUpstream(line: Buffer): void {
    const upstream = this.upstream;
    if (upstream === undefined || !upstream.writable) return;
    if (!upstream.write(line)) this.clientGate.holdUntilDrain('upstream-backpressure', upstream);
  }

  private noteDown(note: Note): void {
    const { metrics, site } = this.ctx;
    switch (note.kind) {
      case 'refused':
        metrics.commandsRefused.inc({ site: site.name, verb: note.verb, reason: note.reason });
        this.log.warn({ verb: note.verb, reason: note.reason }, 'command refused');
        return;
      case 'rejected':
        metrics.parseRejects.inc({ site: site.name, side: note.side, kind: note.reason });
        this.log.warn({ side: note.side, kind: note.reason, detail: note.detail }, 'peer input refused');
        return;
      case 'pinhole-refused':
        metrics.pinholesRefused.inc({ site: site.name, reason: note.reason });
        this.log.warn({ reason: note.reason }, 'data connection refused');
        return;
      case 'discarded':
        metrics.parseRejects.inc({ site: site.name, side: note.side, kind: note.reason });
        this.log.warn({ side: note.side, reason: note.reason, lines: note.lines }, 'lines discarded');
        return;
    }
  }

  // ---- TLS on the control connections ------------------------------------------

  /** After the 234 to AUTH TLS is flushed: the client's next bytes are its TLS handshake. */
  private secureClient(): void {
    const tls = this.ctx.tls;
    const raw = this.client;
    if (tls === undefined) return this.end('internal-error');
    raw.write('', () => {
      if (this.ended) return;
      this.clientIo?.off();
      const secure = tls.serveClient(raw);
      this.client = secure;
      this.attachClient(secure);
      this.watchClientHandshake(secure);
    });
  }

  private watchClientHandshake(secure: TLSSocket): void {
    const { metrics, site } = this.ctx;
    // The gate takes the TLS socket only once its handshake is done: a paused TLS socket would stall it.
    secure.once('secure', () => {
      if (secure.destroyed) return; // refused after the handshake (a client certificate the CA did not sign): counted below
      this.clientGate.retarget(secure);
      metrics.tlsHandshakes.inc({ site: site.name, side: 'client', result: 'ok' });
      this.log.info({ tls: secure.getProtocol(), cipher: secure.getCipher().name, resumed: secure.isSessionReused() }, 'client TLS');
      this.run(this.core.clientSecured());
    });
    secure.once('error', (err: Error) => {
      const refusedPeer = /client certificate refused/.test(err.message);
      if (!refusedPeer && secure.getProtocol() !== null && secure.getProtocol() !== undefined) return;
      metrics.tlsHandshakes.inc({ site: site.name, side: 'client', result: refusedPeer ? 'certificate' : failureReason(err) });
    });
  }

  private secureUpstream(): void {
    const tls = this.ctx.tls;
    const raw = this.upstream;
    if (tls === undefined || raw === undefined) return this.end('internal-error');
    this.upstreamIo?.off();
    raw.on('error', () => undefined); // the TLS socket reports its errors
    const secure = tls.connectUpstream({ socket: raw });
    this.upstream = secure;
    this.upstreamGate = new ReadGate(secure);
    this.attachUpstream(secure);
    this.watchUpstreamTls(secure);
    secure.once('secureConnect', () => this.run(this.core.upstreamSecured()));
  }

  private watchUpstreamTls(secure: TLSSocket): void {
    const { metrics, site } = this.ctx;
    // The last session ticket is the one data connections resume (vsftpd require_ssl_reuse; TLS 1.3 sends it after the handshake).
    secure.on('session', (session: Buffer) => {
      this.upstreamTlsSession = session;
    });
    secure.once('secureConnect', () => {
      metrics.tlsHandshakes.inc({ site: site.name, side: 'upstream', result: 'ok' });
      this.log.info({ tls: secure.getProtocol(), cipher: secure.getCipher().name }, 'upstream TLS');
    });
    secure.once('error', (err: Error) => {
      if (secure.getProtocol() !== null && secure.getProtocol() !== undefined) return;
      metrics.tlsHandshakes.inc({ site: site.name, side: 'upstream', result: failureReason(err) });
      this.log.warn({ err: errFields(err) }, 'upstream TLS failed');
      if (this.upstream === secure && !this.upstreamReady) this.end('upstream-tls-failed');
    });
  }

  // ---- pinholes ----------------------------------------------------------------

  private async openPinhole(spec: PinholeSpec): Promise<void> {
    const { site, metrics, dataPlane } = this.ctx;
    if (!this.takePinholeSlot(spec.id)) return;
    const pinhole = dataPlane.pinhole({
      site: site.name,
      dir: spec.dir,
      client: this.leg(spec.client),
      upstream: this.leg(spec.upstream),
      acceptTimeoutMs: site.timeouts.pinholeAcceptMs,
      dataIdleMs: site.timeouts.dataIdleMs,
      log: this.log,
      metrics,
      tls: this.pinholeTls(spec),
    });
    await this.track(spec.id, pinhole);
  }

  /**
   * A transparent site's direct passive data: a plane that can admit exactly
   * that flow does (held like a pinhole: closed by a new PASV, ABOR, the end);
   * otherwise the edge's NAT carries it and there is nothing to hold.
   */
  private async openForward(spec: ForwardSpec): Promise<void> {
    const { site, metrics, dataPlane } = this.ctx;
    if (dataPlane.forward === undefined) return this.run(this.core.pinholeOpened(spec.id, { client: undefined, upstream: undefined }));
    if (!this.takePinholeSlot(spec.id)) return;
    const { client, server, port } = spec;
    const entry = dataPlane.forward({ site: site.name, client, server, port, acceptTimeoutMs: site.timeouts.pinholeAcceptMs, log: this.log, metrics });
    await this.track(spec.id, entry);
  }

  /** The session's and the client's pinhole limits; false (and the core told) when one is reached. */
  private takePinholeSlot(id: number): boolean {
    const { site, clientPinholes } = this.ctx;
    const refusal =
      this.pinholes.size >= site.limits.maxPinholesPerSession ? 'ERR_ALG_PINHOLE_LIMIT_SESSION' : !clientPinholes.tryTake() ? 'ERR_ALG_PINHOLE_LIMIT_CLIENT' : undefined;
    if (refusal !== undefined) this.run(this.core.pinholeFailed(id, refusal));
    return refusal === undefined;
  }

  /** Hold a pinhole until it closes; tell the core once it is open, or why not. */
  private async track(id: number, pinhole: PinholeHandle): Promise<void> {
    this.pinholes.set(id, pinhole);
    void pinhole.closed().then(() => this.pinholeClosed(id, pinhole));
    try {
      await pinhole.open();
    } catch (err) {
      pinhole.close('open-failed');
      const code = (err as { code?: unknown }).code;
      this.log.debug({ err: errFields(err as Error) }, 'pinhole open failed');
      return this.run(this.core.pinholeFailed(id, typeof code === 'string' ? code : 'ERR_ALG_BIND'));
    }
    if (this.ended) return pinhole.close('session-end'); // the session ended while the pinhole was being opened
    this.run(this.core.pinholeOpened(id, { client: pinhole.clientPort, upstream: pinhole.upstreamPort }));
  }

  /** PROT P legs: the client's under the site's certificate, the upstream's resuming the upstream control session. */
  private pinholeTls(spec: PinholeSpec): PinholeTls | undefined {
    const tls = this.ctx.tls;
    if (tls === undefined || (!spec.tls.client && !spec.tls.upstream)) return undefined;
    const upstream = { via: tls, target: { host: this.upstreamHost, session: this.upstreamTlsSession } };
    return { ...(spec.tls.client && { client: tls }), ...(spec.tls.upstream && { upstream }) };
  }

  private leg(spec: LegSpec): LegRequest {
    if (spec.kind === 'listen') return { kind: 'listen', host: spec.host, pool: this.ctx.pools[spec.pool], expectedPeer: spec.expectedPeer };
    return { kind: 'connect', host: spec.host, port: spec.port, localAddress: spec.localAddress, localPort: spec.fromPort20 === true ? 20 : undefined };
  }

  private pinholeClosed(id: number, pinhole: PinholeHandle): void {
    if (this.pinholes.get(id) !== pinhole) return;
    this.pinholes.delete(id);
    this.ctx.clientPinholes.give();
    const { up, down } = pinhole.bytes;
    if (up + down > 0 || pinhole.command !== '') this.transfers++;
    this.totals.upBytes += up;
    this.totals.downBytes += down;
    // A data connection closed: the control connection's idle time counts from now.
    this.lastLineAt = performance.now();
    this.endIfDrained();
  }

  private closePinholes(which: 'waiting' | 'all' | number, reason: string): void {
    for (const [id, p] of this.pinholes) {
      if (which === 'all' || which === id || (which === 'waiting' && p.state !== 'relaying')) p.close(reason);
    }
  }

  /** Name the newest pinhole after the transfer command that will use it. */
  private label(verb: string): void {
    let newest: PinholeHandle | undefined;
    for (const p of this.pinholes.values()) newest = p;
    if (newest !== undefined && newest.command === '') newest.command = verb;
  }

  // ---- deadlines and drain -------------------------------------------------------

  /**
   * Called by the site's sweep. Idle means no complete command line and
   * no transfer for controlIdleMs (bytes that never make a line do not
   * count: slowloris); a transfer's end starts the idle time afresh. A
   * session not logged in by loginMs ends too.
   */
  checkIdle(now: number): void {
    if (this.ended) return;
    const { controlIdleMs, loginMs } = this.ctx.site.timeouts;
    if (loginMs > 0 && !this.core.loggedIn && now - this.began >= loginMs) return this.end('login-timeout');
    if (now - this.lastLineAt < controlIdleMs) return;
    for (const p of this.pinholes.values()) if (p.state === 'relaying') return;
    if (this.core.directTransfer) {
      this.lastLineAt = now; // its end, within a sweep, starts the idle time afresh (as a pinhole's closing does)
      return;
    }
    this.end('control-idle');
  }

  /** The gateway is draining: end as soon as nothing is owed to the client and no data connection is open. */
  drain(): void {
    this.draining = true;
    this.endIfDrained();
  }

  private endIfDrained(): void {
    if (this.draining && !this.ended && this.core.idle && this.pinholes.size === 0) this.end('drained');
  }

  // ---- teardown ----------------------------------------------------------------

  /**
   * The one teardown path; idempotent, the first reason wins. Pinholes that
   * wait for a peer close now; a transfer under way when the control
   * connection ends normally is let finish (bounded by its idle deadline).
   */
  end(reason: EndReason, farewell: Buffer | undefined = farewellFor(reason), err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.endReason = reason;
    clearTimeout(this.greetingTimer);
    this.core.end(reason);
    const normal = reason === 'client-closed' || reason === 'upstream-closed';
    for (const p of this.pinholes.values()) if (!(normal && p.state === 'relaying')) p.close('session-end');
    if (farewell !== undefined && this.client.writable) this.client.write(farewell);
    closeGracefully(this.client);
    if (this.upstream !== undefined) closeGracefully(this.upstream);
    this.ctx.upstreams.give(this.upstreamHost);
    const failure = err !== undefined && !normal ? { err: errFields(err) } : {};
    // One line per session with its totals, once its last transfer is done.
    void this.closed().then(() =>
      this.log.info({ reason, ms: Date.now() - this.startedAt, transfers: this.transfers, ...this.totals, ...failure }, 'session end'),
    );
    for (const wake of this.endWaiters.splice(0)) wake();
  }
}

function errFields(err: Error): { code: unknown; message: string } {
  return { code: (err as NodeJS.ErrnoException).code, message: err.message };
}

/** Flush what is written, send FIN, and destroy if the peer does not finish in time. */
export function closeGracefully(socket: Socket): void {
  if (socket.destroyed) return;
  socket.on('error', () => undefined); // a peer's reset while closing is not news
  socket.end();
  socket.resume(); // discard what is still coming, so the peer's FIN is seen and the socket closes
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

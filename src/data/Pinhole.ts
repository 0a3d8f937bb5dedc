/**
 * A one-shot data forwarder. Each leg either listens (on a port its plane
 * binds through the one allocate/bind path, portBinding.ts; accepting
 * exactly one connection, only from the expected peer) or connects. Listening legs open first; once every listening leg has its
 * peer, the connecting legs connect; then bytes are relayed until both
 * directions end. One deadline covers everything before the relay starts.
 */
import type { Server, Socket } from 'node:net';
import { LazyChild, type Logger } from '../observe/logger.js';
import type { Direction, Metrics } from '../observe/metrics.js';
import { normalise } from '../common/address.js';
import type { Handshake } from '../tls/handshake.js';
import type { BoundListener } from './portBinding.js';
import { abort, adoptForRelay, relay, type RelayCounters } from './relay.js';
import { connectLeg, secureLeg, type PinholeTls } from './tlsLeg.js';
import { logTransfer } from './transferLog.js';
import { type ConnectionEnds, proxyHeaderFor } from '../common/proxyProtocol.js';

export type PinholeLeg =
  | {
      readonly kind: 'listen';
      readonly expectedPeer: string;
      /** Binds the leg's listener (in process: on a port of the site's pool; in a worker: the port bound for it). */
      readonly bind: () => Promise<BoundListener>;
    }
  | {
      readonly kind: 'connect';
      readonly host: string;
      readonly port: number;
      readonly localAddress?: string;
      readonly localPort?: number;
      /** Write a PROXY protocol header first, naming the other leg's peer (the client's end of the data connection). */
      readonly proxyHeader?: 1 | 2;
    };

export interface PinholeOptions {
  readonly site: string;
  /** `passive`: the client connects in; `active`: the upstream does. */
  readonly dir: Direction;
  readonly client: PinholeLeg;
  readonly upstream: PinholeLeg;
  readonly acceptTimeoutMs: number;
  readonly dataIdleMs: number;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Told when both legs are connected and bytes start to flow. */
  readonly onRelay?: () => void;
  /** Legs that carry TLS (FTPS under PROT P); see tlsLeg.ts. */
  readonly tls?: PinholeTls;
}

type LegName = 'client' | 'upstream';

interface Leg {
  readonly name: LegName;
  readonly spec: PinholeLeg;
  server?: Server;
  port?: number;
  /** Gives the port back, once the listener has closed. */
  release?: () => void;
  socket?: Socket;
  handshake?: Handshake;
  /** The TCP connection's ends, taken when it is there (before TLS or the relay's fast path take the socket over). */
  ends?: ConnectionEnds;
}

export type PinholeState = 'new' | 'waiting' | 'relaying' | 'closed';

export class Pinhole {
  state: PinholeState = 'new';
  /** The command the data connection serves (RETR, STOR, LIST…), once known. */
  command = '';
  private readonly legs: Record<LegName, Leg>;
  private deadline: NodeJS.Timeout | undefined;
  private counters: RelayCounters | undefined;
  private startedAt = 0;
  private closeReason = '';
  private readonly closeWaiters: (() => void)[] = [];
  /** The session's logger, with {port, dir} once open (made when a line is first written). */
  private readonly logs: LazyChild;

  constructor(private readonly options: PinholeOptions) {
    this.legs = {
      client: { name: 'client', spec: options.client },
      upstream: { name: 'upstream', spec: options.upstream },
    };
    this.logs = new LazyChild(options.log);
  }

  private get log(): Logger {
    return this.logs.log;
  }

  /** Port the client connects to (passive), if that leg listens. */
  get clientPort(): number | undefined {
    return this.legs.client.port;
  }

  /** Port the upstream connects to (active), if that leg listens. */
  get upstreamPort(): number | undefined {
    return this.legs.upstream.port;
  }

  get bytes(): { up: number; down: number } {
    return { up: this.counters?.aToB ?? 0, down: this.counters?.bToA ?? 0 };
  }

  /** Bind the listening legs; throws PortExhaustedError, PortInUseError or BindError. */
  async open(): Promise<void> {
    try {
      for (const leg of [this.legs.client, this.legs.upstream]) {
        if (leg.spec.kind === 'listen') await this.listen(leg, leg.spec);
      }
    } catch (err) {
      this.close('bind-failed');
      throw err;
    }
    if (this.state === 'closed') return;
    this.state = 'waiting';
    const { site, dir } = this.options;
    this.options.metrics.pinholesOpened.inc({ site, dir });
    this.options.metrics.pinholesOpen.inc({ site, dir });
    this.logs.bind({ port: this.legs.client.port ?? this.legs.upstream.port, dir });
    this.logs.at('debug').debug('pinhole open');
    this.deadline = setTimeout(() => this.close('accept-timeout'), this.options.acceptTimeoutMs);
    this.maybeConnect();
  }

  /** Idempotent: the first reason wins; ports return to their pool when the listeners have closed. */
  close(reason: string): void {
    if (this.state === 'closed') return;
    const wasOpen = this.state !== 'new';
    const relayed = this.state === 'relaying';
    this.state = 'closed';
    this.closeReason = reason;
    clearTimeout(this.deadline);
    const { site, dir, metrics } = this.options;
    if (wasOpen) metrics.pinholesOpen.dec({ site, dir });
    if (reason === 'accept-timeout' && !this.legs.client.socket && !this.legs.upstream.socket) {
      metrics.pinholesExpired.inc({ site, dir });
    }
    for (const leg of [this.legs.client, this.legs.upstream]) {
      leg.handshake?.abandon(reason === 'accept-timeout' ? 'timeout' : 'aborted');
      if (leg.socket !== undefined) abort(leg.socket); // a cut transfer must not look complete
      this.closeListener(leg);
    }
    if (relayed) this.logTransfer();
    else if (wasOpen) this.logs.at('debug').debug({ reason }, 'pinhole closed unused');
    for (const wake of this.closeWaiters.splice(0)) wake();
  }

  /** Resolves once the pinhole has closed, for whatever reason. */
  closed(): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  private async listen(leg: Leg, spec: Extract<PinholeLeg, { kind: 'listen' }>): Promise<void> {
    const { server, port, release } = await spec.bind();
    if (this.state === 'closed') {
      server.close(release);
      return;
    }
    leg.server = server;
    leg.port = port;
    leg.release = release;
    server.on('connection', (socket) => this.onConnection(leg, spec, socket));
    server.on('error', (err) => {
      this.log.error({ err }, 'pinhole listener failed');
      this.close('listener-error');
    });
  }

  private onConnection(leg: Leg, spec: Extract<PinholeLeg, { kind: 'listen' }>, socket: Socket): void {
    const peer = normalise(socket.remoteAddress);
    if (this.state !== 'waiting' || leg.socket !== undefined) {
      socket.destroy();
      return;
    }
    if (peer !== spec.expectedPeer) {
      socket.destroy();
      const { site, dir } = this.options;
      this.options.metrics.pinholesWrongPeer.inc({ site, dir });
      this.log.warn({ peer, expected: spec.expectedPeer, leg: leg.name }, 'pinhole connection from wrong peer refused');
      return;
    }
    leg.ends = endsOf(socket);
    const relayed = this.secure(leg, socket) ?? adoptForRelay(socket); // TLS, or onto the relay's fast read path
    leg.socket = relayed;
    relayed.on('error', () => this.close(`${leg.name}-error`));
    this.closeListener(leg);
    this.maybeConnect();
  }

  /** Stop listening; the port goes back to the pool once the listener is closed. */
  private closeListener(leg: Leg): void {
    const { server, release } = leg;
    if (server === undefined || release === undefined) return;
    leg.server = undefined;
    server.close(release);
  }

  private maybeConnect(): void {
    if (this.state !== 'waiting') return;
    const legs = [this.legs.client, this.legs.upstream];
    if (legs.some((l) => l.spec.kind === 'listen' && l.socket === undefined)) return;
    for (const leg of legs) {
      if (leg.spec.kind !== 'connect' || leg.socket !== undefined) continue;
      const { host, port, localAddress, localPort } = leg.spec;
      const socket = connectLeg(this.options.tls, leg.name, { host, port, localAddress, localPort, allowHalfOpen: true });
      leg.socket = socket;
      socket.once('connect', () => {
        if (this.state !== 'waiting') return;
        leg.ends = endsOf(socket);
        if (leg.name === 'upstream') this.writeProxyHeader(socket);
        this.secure(leg, socket);
        this.maybeStartRelay();
      });
      socket.on('error', (err) => {
        if (this.state === 'waiting') this.log.warn({ err, leg: leg.name, host, port }, 'pinhole connect failed');
        this.close(`${leg.name}-error`);
      });
    }
    this.maybeStartRelay();
  }

  /**
   * The client's end of the data connection, named to an upstream that reads
   * PROXY headers: first on the TCP connection, before any TLS. A client leg
   * still connecting (mode conversion) is named by where it connects to.
   */
  private writeProxyHeader(raw: Socket): void {
    const spec = this.legs.upstream.spec;
    if (spec.kind !== 'connect' || spec.proxyHeader === undefined) return;
    const client = this.legs.client;
    const target = client.spec.kind === 'connect' ? { remoteAddress: client.spec.host, remotePort: client.spec.port, localAddress: client.spec.localAddress } : {};
    raw.write(proxyHeaderFor(spec.proxyHeader, client.ends ?? target));
  }

  /** A TLS leg's handshake starts as soon as its TCP connection is there; its TLS socket replaces the raw one. */
  private secure(leg: Leg, raw: Socket): Socket | undefined {
    const handshake = secureLeg(this.options.tls, leg.name, raw);
    if (handshake === undefined) return undefined;
    leg.handshake = handshake;
    leg.socket = handshake.socket;
    handshake.socket.on('error', () => this.close(`${leg.name}-error`));
    handshake.onSettled((outcome) => {
      if (outcome.ok) return this.maybeStartRelay();
      if (this.state === 'waiting') this.log.warn({ leg: leg.name, reason: outcome.reason, err: outcome.error }, 'pinhole TLS handshake failed');
      this.close(`${leg.name}-tls-${outcome.reason}`);
    });
    return handshake.socket;
  }

  /** Once every leg is connected and every TLS leg has finished its handshake. */
  private maybeStartRelay(): void {
    const legs = [this.legs.client, this.legs.upstream];
    if (legs.some((l) => l.socket === undefined || l.socket.connecting || (l.handshake !== undefined && !l.handshake.secured))) return;
    this.startRelay();
  }

  private startRelay(): void {
    if (this.state !== 'waiting') return;
    clearTimeout(this.deadline);
    this.state = 'relaying';
    this.options.onRelay?.();
    this.startedAt = performance.now();
    const client = this.legs.client.socket as Socket;
    const upstream = this.legs.upstream.socket as Socket;
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true);
      socket.setTimeout(this.options.dataIdleMs, () => this.close('data-idle'));
    }
    this.counters = relay(client, upstream, (err) => this.close(err === undefined ? 'done' : 'relay-error'));
  }

  private logTransfer(): void {
    const { up, down } = this.bytes;
    const { site, metrics } = this.options;
    logTransfer(this.logs.at('info'), metrics, { site, command: this.command, up, down, startedAt: this.startedAt, reason: this.closeReason });
  }
}

function endsOf(socket: Socket): ConnectionEnds {
  return { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, localAddress: socket.localAddress, localPort: socket.localPort };
}

/**
 * One client control connection and its upstream control connection.
 *
 * Lines flow client → upstream and upstream → client through a LineQueue
 * each; every line passes byte-exact except the few in the intercept table
 * (`onCommand`). Replies are matched to commands by a FIFO (`pending`):
 * FTP answers in order, so the reply at the head of the FIFO answers the
 * oldest unanswered command; that, and not "the last line the client sent",
 * decides whether a 227/229 is rewritten, which keeps pipelined commands
 * right. `end(reason)` is the one teardown path.
 */
import net, { type Socket } from 'node:net';
import type { SiteConfig } from '../config/types.js';
import * as codes from '../ftp/codes.js';
import { type Command, parseCommand } from '../ftp/command.js';
import { LineSplitter } from '../ftp/lineSplitter.js';
import { formatReply, ReplyReader } from '../ftp/reply.js';
import { type Logger, loggableLine } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { DataChannels } from './DataChannels.js';
import { features } from './features.js';
import { LineQueue } from './LineQueue.js';
import { normalise } from '../common/address.js';
import type { DataPlane } from '../data/DataPlane.js';
import type { ShardedPool } from '../data/ShardedPool.js';

export interface FinalReply {
  readonly code: number;
  readonly text: string;
  readonly raw: Buffer;
  /** Earlier lines of a multi-line reply, when the command asked to collect them. */
  readonly parts: readonly Buffer[];
}

/** What to do with a final reply; returning RESEND means the handler sent a new command for the same entry. */
export type ReplyHandler = (reply: FinalReply) => void | Promise<void> | typeof RESEND;
export const RESEND = Symbol('resend');

interface Pending {
  readonly verb: string;
  handler?: ReplyHandler;
  /** Multi-line reply lines held back for the handler instead of forwarded. */
  collected?: Buffer[];
  /** A reply the gateway itself gives, in its turn. */
  readonly local?: Buffer;
  settle?: () => void;
}

export interface SessionContext {
  readonly id: string;
  readonly site: SiteConfig;
  /** The upstream chosen for this session; it keeps it to the end. */
  readonly upstream: { readonly host: string; readonly port: number };
  /** Told when the chosen upstream cannot be reached. */
  readonly upstreamFailed: (host: string) => void;
  readonly pools: { readonly passive: ShardedPool; readonly active: ShardedPool };
  readonly dataPlane: DataPlane;
  /** Pinholes of this client address across its sessions: take one before opening, give it back after. */
  readonly clientPinholes: { tryTake(): boolean; give(): void };
  readonly log: Logger;
  readonly metrics: Metrics;
}

/** Addresses of the two control connections, normalised (no `::ffff:`). */
export interface Endpoints {
  readonly client: string;
  readonly clientLocal: string;
  readonly upstream: string;
  readonly upstreamLocal: string;
}

const TRANSFER_VERBS = new Set(['RETR', 'STOR', 'STOU', 'APPE', 'LIST', 'NLST', 'MLSD']);
const CLOSE_GRACE_MS = 2_000;
const MAX_PENDING = 64;
const MAX_COLLECTED_LINES = 256;

export class Session {
  readonly startedAt = Date.now();
  private phase: 'connecting' | 'greeting' | 'ready' | 'ended' = 'connecting';
  private draining = false;
  private lastLineAt = performance.now();
  private upstream: Socket | undefined;
  private readonly pending: Pending[] = [{ verb: '(greeting)' }];
  /** The entry whose reply handler is running (for `resend`). */
  private handling: Pending | undefined;
  private readonly replies = new ReplyReader();
  private readonly clientLines: LineQueue;
  private upstreamLines: LineQueue | undefined;
  private greetingTimer: NodeJS.Timeout | undefined;
  private readonly data: DataChannels;
  private readonly endWaiters: (() => void)[] = [];
  endpoints: Endpoints;
  readonly log: Logger;

  constructor(
    private readonly ctx: SessionContext,
    private readonly client: Socket,
  ) {
    this.log = ctx.log;
    const addr = normalise(client.remoteAddress);
    this.endpoints = { client: addr, clientLocal: normalise(client.localAddress), upstream: '', upstreamLocal: '' };
    this.clientLines = new LineQueue(client, (line) => this.onClientLine(line), (err) => this.fail(err));
    this.data = new DataChannels(this, ctx);
  }

  get ended(): boolean {
    return this.phase === 'ended';
  }

  get pinholeCount(): number {
    return this.data.count;
  }

  /** Resolves when the session and every pinhole it opened are closed. */
  async closed(): Promise<void> {
    if (this.phase !== 'ended') await new Promise<void>((resolve) => this.endWaiters.push(resolve));
    await this.data.allClosed();
  }

  start(): void {
    const { site, metrics } = this.ctx;
    const client = this.client;
    client.pause(); // nothing is read before the upstream greets
    client.setNoDelay(true);
    client.on('error', (err) => this.end('client-error', undefined, err));
    client.on('end', () => this.onClientEnd());
    client.on('close', () => this.end('client-closed'));
    const splitter = new LineSplitter(site.limits.maxLineBytes, {
      line: (line) => this.clientLines.push(line),
      fault: (kind) => this.onClientFault(kind),
    });
    client.on('data', (chunk: Buffer) => splitter.push(chunk));

    const began = performance.now();
    const target = this.ctx.upstream;
    const upstream = net.connect({ host: target.host, port: target.port, timeout: site.timeouts.upstreamConnectMs });
    this.upstream = upstream;
    upstream.once('timeout', () => {
      if (this.phase !== 'connecting') return;
      metrics.upstreamConnectFailures.inc({ site: site.name });
      this.ctx.upstreamFailed(target.host);
      this.end('upstream-connect-timeout', formatReply(codes.SERVICE_NOT_AVAILABLE, 'Service not available, upstream unreachable.'));
    });
    upstream.once('connect', () => {
      metrics.upstreamConnectSeconds.observe({ site: site.name }, (performance.now() - began) / 1000);
      this.onUpstreamConnect(upstream);
    });
    upstream.on('error', (err) => {
      if (this.phase === 'connecting') {
        metrics.upstreamConnectFailures.inc({ site: site.name });
        this.ctx.upstreamFailed(target.host);
        this.log.warn({ err: { code: (err as NodeJS.ErrnoException).code, message: err.message } }, 'upstream connect failed');
        this.end('upstream-connect-failed', formatReply(codes.SERVICE_NOT_AVAILABLE, 'Service not available, upstream unreachable.'));
      } else {
        this.end('upstream-error', formatReply(codes.SERVICE_NOT_AVAILABLE, 'Upstream connection lost.'), err);
      }
    });
  }

  private onUpstreamConnect(upstream: Socket): void {
    if (this.phase === 'ended') return;
    upstream.setTimeout(0);
    upstream.setNoDelay(true);
    this.phase = 'greeting';
    this.endpoints = {
      ...this.endpoints,
      upstream: normalise(upstream.remoteAddress),
      upstreamLocal: normalise(upstream.localAddress),
    };
    this.greetingTimer = setTimeout(
      () => this.end('greeting-timeout', formatReply(codes.SERVICE_NOT_AVAILABLE, 'Service not available, upstream did not greet.')),
      this.ctx.site.timeouts.greetingMs,
    );
    this.upstreamLines = new LineQueue(upstream, (line) => this.onUpstreamLine(line), (err) => this.fail(err));
    const splitter = new LineSplitter(this.ctx.site.limits.maxLineBytes, {
      line: (line) => this.upstreamLines?.push(line),
      fault: (kind) => this.onUpstreamFault(kind),
    });
    upstream.on('data', (chunk: Buffer) => splitter.push(chunk));
    upstream.on('end', () => this.onUpstreamGone());
    upstream.on('close', () => this.onUpstreamGone());
  }

  // ---- client → upstream -------------------------------------------------

  private onClientLine(raw: Buffer): void | Promise<void> {
    if (this.phase === 'ended') return;
    this.lastLineAt = performance.now();
    if (this.log.isLevelEnabled('debug')) this.log.debug({ line: loggableLine(raw.toString('latin1')) }, 'client line');
    const parsed = parseCommand(raw);
    if (!parsed.ok) {
      if (parsed.reason === 'nul') {
        this.reject('client', 'nul', 'Syntax error, NUL in command.');
        return;
      }
      // Not a word of letters: refused here, never forwarded. Servers read such lines differently
      // (quotes stripped, TAB as a separator), and a "PORT" the gateway did not see must not reach one.
      this.reject('client', parsed.reason, 'Syntax error, command unrecognized.');
      return;
    }
    return this.onCommand(parsed.value, raw);
  }

  /** The intercept table: every verb not named here is forwarded byte-exact. */
  private onCommand(command: Command, raw: Buffer): void | Promise<void> {
    switch (command.verb) {
      case 'PASV':
      case 'EPSV':
        return this.data.onPassive(command);
      case 'PORT':
      case 'EPRT':
        return this.data.onActive(command);
      case 'AUTH':
        return this.onAuth(command);
      case 'FEAT':
        return this.forward(raw, 'FEAT', (reply) => this.toClient(features(reply, this.ctx.site)), true);
      case 'ABOR':
      case 'REIN':
        this.data.closeAll(command.verb);
        return this.forward(raw, command.verb);
      default:
        if (TRANSFER_VERBS.has(command.verb)) this.data.label(command.verb);
        return this.forward(raw, command.verb);
    }
  }

  private onAuth(command: Command): void {
    const policy = this.ctx.site.ftps;
    this.log.warn({ mechanism: command.arg.slice(0, 16), policy }, 'AUTH refused: TLS is not relayed by this gateway');
    this.ctx.metrics.commandsRefused.inc({ site: this.ctx.site.name, verb: 'AUTH', reason: 'ftps-policy' });
    const reply = formatReply(codes.AUTH_REFUSED_POLICY, 'Request denied for policy reasons: TLS not available through this gateway.');
    if (policy === 'deny') {
      this.end('ftps-denied', reply);
      return;
    }
    this.replyLocal(reply);
  }

  /** Send a line upstream; its reply is forwarded, or given to `handler`. */
  forward(line: Buffer, verb: string, handler?: ReplyHandler, collect = false): void {
    if (this.pending.length >= MAX_PENDING) {
      this.end('too-many-pipelined', formatReply(codes.SERVICE_NOT_AVAILABLE, 'Too many commands without reply.'));
      return;
    }
    this.pending.push({ verb, handler, collected: collect ? [] : undefined });
    this.toUpstream(line);
  }

  /** Like forward, but resolves only when the reply is handled: the next client line waits. */
  exchange(line: Buffer, verb: string, handler: ReplyHandler, collect = false): Promise<void> {
    return new Promise((resolve) => {
      this.forward(line, verb, handler, collect);
      const entry = this.pending[this.pending.length - 1];
      if (entry === undefined || entry.verb !== verb || this.phase === 'ended') return resolve();
      entry.settle = resolve;
    });
  }

  /**
   * From inside a reply handler: send a new command upstream in place of the
   * one just answered (a fallback, e.g. PASV after a refused EPSV). The
   * client keeps waiting until the new command's reply is handled.
   */
  resend(line: Buffer, verb: string, handler: ReplyHandler): typeof RESEND {
    const collected = this.handling?.collected === undefined ? undefined : [];
    this.pending.unshift({ verb, handler, settle: this.handling?.settle, collected });
    this.toUpstream(line);
    return RESEND;
  }

  /** A reply from the gateway itself, given after the replies still owed by the upstream. */
  replyLocal(line: Buffer): void {
    if (this.pending.length === 0) this.toClient(line);
    else this.pending.push({ verb: '(local)', local: line });
  }

  /** Refuse peer input: a reply, a warn line and a metric. */
  reject(side: 'client' | 'upstream', kind: string, text: string, code = codes.SYNTAX_ERROR): void {
    this.ctx.metrics.parseRejects.inc({ site: this.ctx.site.name, side, kind });
    this.log.warn({ side, kind }, 'peer input refused');
    this.replyLocal(formatReply(code, text));
  }

  refuse(verb: string, reason: string, code: number, text: string): void {
    this.ctx.metrics.commandsRefused.inc({ site: this.ctx.site.name, verb, reason });
    this.log.warn({ verb, reason }, 'command refused');
    this.replyLocal(formatReply(code, text));
  }

  private onClientFault(kind: string): void {
    this.reject('client', kind, 'Command line too long.');
  }

  private onClientEnd(): void {
    // Half-close: pass the FIN on, and let the upstream answer what it still owes.
    if (this.upstream !== undefined && this.phase !== 'connecting') this.upstream.end();
    else this.end('client-closed');
  }

  /**
   * Called by the site's sweep. Idle means no complete command line and
   * no transfer for controlIdleMs (bytes that never make a line do not
   * count: slowloris). A running transfer keeps the session alive, and its
   * end starts the idle time afresh (`noteTransferEnd`).
   */
  checkIdle(now: number): void {
    if (this.phase === 'ended' || now - this.lastLineAt < this.ctx.site.timeouts.controlIdleMs) return;
    if (this.data.transferring) return;
    this.end('control-idle', formatReply(codes.SERVICE_NOT_AVAILABLE, 'Idle timeout, closing control connection.'));
  }

  // ---- upstream → client -------------------------------------------------

  private onUpstreamLine(raw: Buffer): void | Promise<void> {
    if (this.phase === 'ended') return;
    if (this.log.isLevelEnabled('debug')) this.log.debug({ line: loggableLine(raw.toString('latin1')) }, 'upstream line');
    const line = this.replies.read(raw);
    if (line.kind === 'malformed') {
      this.ctx.metrics.parseRejects.inc({ site: this.ctx.site.name, side: 'upstream', kind: 'malformed-reply' });
      this.log.warn('upstream sent a line that is not a reply');
      this.toClient(raw);
      return;
    }
    if (line.kind === 'part' || line.code < 200) {
      const collected = this.pending[0]?.collected;
      if (line.kind === 'part' && collected !== undefined && collected.length < MAX_COLLECTED_LINES) collected.push(raw);
      else this.toClient(raw); // multi-line text and 1xx preliminaries answer nothing yet
      return;
    }
    const entry = this.pending.shift();
    if (entry === undefined) {
      this.toClient(raw); // unsolicited: passed on, never acted upon
      return;
    }
    const reply: FinalReply = { code: line.code, text: line.text, raw, parts: entry.collected ?? [] };
    const outcome = entry.verb === '(greeting)' ? this.onGreeting(reply) : this.handle(entry, reply);
    if (outcome instanceof Promise) return outcome.then(() => this.settled(entry));
    if (outcome !== RESEND) this.settled(entry);
  }

  private handle(entry: Pending, reply: FinalReply): void | Promise<void> | typeof RESEND {
    if (entry.handler === undefined) {
      for (const part of reply.parts) this.toClient(part);
      this.toClient(reply.raw);
      return;
    }
    this.handling = entry;
    try {
      return entry.handler(reply);
    } finally {
      this.handling = undefined;
    }
  }

  private settled(entry: Pending): void {
    entry.settle?.();
    while (this.pending[0]?.local !== undefined) {
      this.toClient((this.pending.shift() as Pending).local as Buffer);
    }
    this.endIfDrained();
  }

  /** A data connection closed: the control connection's idle time counts from now. */
  noteTransferEnd(): void {
    this.lastLineAt = performance.now();
    this.endIfDrained();
  }

  /** The gateway is draining: end as soon as nothing is owed to the client and no data connection is open. */
  drain(): void {
    this.draining = true;
    this.endIfDrained();
  }

  endIfDrained(): void {
    if (!this.draining || this.phase === 'ended') return;
    const idle = this.phase !== 'ready' || (this.pending.length === 0 && this.data.count === 0);
    if (idle) this.end('drained', formatReply(codes.SERVICE_NOT_AVAILABLE, 'Service closing for maintenance, please reconnect.'));
  }

  private onGreeting(reply: FinalReply): void {
    clearTimeout(this.greetingTimer);
    this.toClient(reply.raw);
    if (reply.code !== codes.SERVICE_READY) {
      this.end('upstream-refused');
      return;
    }
    this.phase = 'ready';
    this.client.resume();
  }

  private onUpstreamGone(): void {
    // Before its greeting, the client has been told nothing yet: say why the session ends.
    const farewell = this.phase === 'greeting' ? formatReply(codes.SERVICE_NOT_AVAILABLE, 'Service not available, upstream closed.') : undefined;
    this.end(this.phase === 'greeting' ? 'upstream-closed-greeting' : 'upstream-closed', farewell);
  }

  private onUpstreamFault(kind: string): void {
    this.ctx.metrics.parseRejects.inc({ site: this.ctx.site.name, side: 'upstream', kind });
    this.end('upstream-line-too-long', formatReply(codes.SERVICE_NOT_AVAILABLE, 'Upstream sent an invalid reply.'));
  }

  // ---- writing, with backpressure ----------------------------------------

  toClient(line: Buffer): void {
    if (this.phase === 'ended' && !this.client.writable) return;
    if (!this.client.write(line) && this.upstream !== undefined) holdUntilDrain(this.upstream, this.client);
  }

  private toUpstream(line: Buffer): void {
    const upstream = this.upstream;
    if (upstream === undefined || !upstream.writable) return;
    if (!upstream.write(line)) holdUntilDrain(this.client, upstream);
  }

  // ---- teardown ----------------------------------------------------------

  private fail(err: unknown): void {
    this.log.error({ err }, 'session failed: bug in the gateway');
    this.end('internal-error', formatReply(codes.SERVICE_NOT_AVAILABLE, 'Internal error, closing control connection.'));
  }

  /**
   * The one teardown path; idempotent, the first reason wins. Pinholes that
   * wait for a peer close now; a transfer under way when the control
   * connection ends normally is let finish (bounded by its idle deadline).
   */
  end(reason: string, farewell?: Buffer, err?: Error): void {
    if (this.phase === 'ended') return;
    this.phase = 'ended';
    clearTimeout(this.greetingTimer);
    this.clientLines.stop();
    this.upstreamLines?.stop();
    const normal = reason === 'client-closed' || reason === 'upstream-closed';
    this.data.endAll(normal);
    if (farewell !== undefined && this.client.writable) this.client.write(farewell);
    closeGracefully(this.client);
    if (this.upstream !== undefined) closeGracefully(this.upstream);
    const failure = err !== undefined && !normal ? { err: { code: (err as NodeJS.ErrnoException).code, message: err.message } } : {};
    // One line per session with its totals, once its last transfer is done.
    void this.data.allClosed().then(() =>
      this.log.info({ reason, ms: Date.now() - this.startedAt, transfers: this.data.transfers, ...this.data.totals, ...failure }, 'session end'),
    );
    for (const wake of this.endWaiters.splice(0)) wake();
    for (const entry of this.pending.splice(0)) entry.settle?.();
  }
}

function holdUntilDrain(source: Socket, sink: Socket): void {
  if (source.isPaused()) return;
  source.pause();
  sink.once('drain', () => source.resume());
}

/** Flush what is written, send FIN, and destroy if the peer does not finish in time. */
export function closeGracefully(socket: Socket): void {
  if (socket.destroyed) return;
  socket.end();
  socket.resume(); // discard what is still coming, so the peer's FIN is seen and the socket closes
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

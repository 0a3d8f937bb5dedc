/**
 * The sans-IO core of one FTP session (in the manner of h11 and of OpenBSD
 * ftp-proxy's single pending-command state): events in (a client line, an
 * upstream line, a pinhole opened or failed, a TLS handshake done), actions
 * out (a line to either side, a pinhole to open or close, TLS to start, the
 * end). No sockets, timers, promises or logger: Session performs the
 * actions, and the tables in test/unit/control drive this file directly.
 *
 * Client input is handled strictly in order. While a command waits for
 * something only the gateway can finish (a data connection being set up, a
 * TLS handshake, the greeting), later input waits in a bounded backlog and
 * Session stops reading the client socket. Every reply goes through one
 * FIFO (ReplyFifo), so replies reach the client in the order of the
 * commands, error paths included.
 */
import * as codes from '../ftp/codes.js';
import { type Command, parseCommand } from '../ftp/command.js';
import type { LineFault } from '../ftp/lineSplitter.js';
import { ReplyReader } from '../ftp/reply.js';
import { DataCommands } from './dataCommands.js';
import { features } from './features.js';
import { type RefusalReason, farewellFor, refusalReply } from './replies.js';
import { type Entry, type EntryOptions, ReplyFifo, type ReplyHandler } from './ReplyFifo.js';
import { Login } from './login.js';
import { Security } from './security.js';
import type { Action, ControlSettings, EndReason, Endpoints, FinalReply, ForwardSpec, Note, PinholePorts, PinholeSpec } from './types.js';

/** Commands in flight plus queued input, at most; more ends the session (a client that never reads). */
export const MAX_PENDING = 64;

const TRANSFER_VERBS = new Set(['RETR', 'STOR', 'STOU', 'APPE', 'LIST', 'NLST', 'MLSD']);
const LOGIN_VERBS = new Set(['USER', 'PASS', 'ACCT']);

type Input = { readonly line: Buffer } | { readonly fault: LineFault };

/** What dataCommands.ts and security.ts may do with the core. */
export interface Core {
  readonly settings: ControlSettings;
  readonly endpoints: Endpoints;
  readonly fifo: ReplyFifo;
  emit(action: Action): void;
  note(note: Note): void;
  /** Send `line` upstream for `entry` (new or resent); its reply goes to `handler`, or is passed on. */
  send(entry: Entry, line: Buffer, handler?: ReplyHandler): void;
  /** A new entry sent upstream at once. */
  forward(line: Buffer, verb: string, options?: EntryOptions): Entry | undefined;
  /** A refusal in the client's turn: a reply, a note; `fill` replaces `%` in the reply (default: the verb). */
  refuse(verb: string, reason: RefusalReason, fill?: string): void;
  /** Client input waits until `entry` completes. */
  holdInputUntil(entry: Entry): void;
  /** The entry has said all it will: it leaves the FIFO in its turn. */
  finish(entry: Entry): void;
  /** Drop queued client input (plaintext behind AUTH TLS). */
  discardBacklog(): void;
  /** Ask Session for a pinhole; `opened` or `failed` is called in the entry's turn. */
  openPinhole(spec: Omit<PinholeSpec, 'id'>, opened: (ports: PinholePorts, id: number) => void, failed: (code: string) => void): void;
  /** Ask Session to admit a direct data connection (one id space with pinholes); `opened` or `failed` in the entry's turn. */
  openForward(spec: Omit<ForwardSpec, 'id'>, opened: () => void, failed: (code: string) => void): void;
  end(reason: EndReason, farewell?: Buffer): void;
}

export class ControlProtocol implements Core {
  private phase: 'login' | 'connecting' | 'greeting' | 'ready' | 'ended' = 'connecting';
  readonly fifo: ReplyFifo;
  private replies = new ReplyReader();
  private readonly backlog: Input[] = [];
  /** The entry client input waits for, if any. */
  private holder: Entry | undefined;
  private out: Action[] = [];
  private readonly data: DataCommands;
  private readonly security: Security;
  private readonly pinholeWaiters = new Map<number, { opened: (p: PinholePorts, id: number) => void; failed: (code: string) => void }>();
  private nextPinholeId = 0;
  private greeting: Entry | undefined;
  private readonly login: Login;
  endpoints: Endpoints;
  loggedIn = false;

  constructor(
    readonly settings: ControlSettings,
    client: { readonly address: string; readonly local: string },
  ) {
    this.endpoints = { client: client.address, clientLocal: client.local, upstream: '', upstreamLocal: '' };
    this.fifo = new ReplyFifo((action) => this.out.push(action));
    this.security = new Security(this);
    this.data = new DataCommands(this, this.security);
    this.login = new Login(this);
    if (settings.greetFirst === true) {
      this.phase = 'login';
      this.greeting = undefined;
      this.holder = undefined;
    } else {
      this.greeting = this.newGreeting();
      this.holder = this.greeting;
    }
  }

  /** The first actions of a session: a greet-first site greets the client at once. */
  start(): Action[] {
    if (this.phase === 'login') this.login.greet();
    return this.take();
  }

  // ---- state Session reads -------------------------------------------------

  get ended(): boolean {
    return this.phase === 'ended';
  }

  get ready(): boolean {
    return this.phase === 'ready';
  }

  /** Session may read the client socket: nothing holds client input. */
  get wantsClientInput(): boolean {
    return this.phase !== 'ended' && this.holder === undefined && this.backlog.length === 0;
  }

  /** Nothing owed to the client and nothing queued (drain may end the session now). */
  get idle(): boolean {
    return this.phase !== 'ready' || (this.fifo.empty && this.backlog.length === 0);
  }

  /**
   * A transfer runs that no pinhole of the gateway carries: on a site whose passive data goes straight to
   * the server (passiveDirect), a transfer command still awaiting its final reply. The control connection
   * is quiet meanwhile, and must not be ended as idle under it.
   */
  get directTransfer(): boolean {
    return this.settings.passiveDirect === true && this.fifo.awaits(TRANSFER_VERBS);
  }

  /** The client control connection is TLS. */
  get clientSecure(): boolean {
    return this.security.clientSecure;
  }

  // ---- events --------------------------------------------------------------

  upstreamConnected(upstream: { readonly address: string; readonly local: string }): Action[] {
    if (this.phase === 'connecting' || this.phase === 'login') {
      this.endpoints = { ...this.endpoints, upstream: upstream.address, upstreamLocal: upstream.local };
      // Greet-first: the client was greeted already; the upstream's greeting is the gateway's to read.
      if (this.phase === 'login') this.greeting = this.newGreeting(true);
      this.phase = 'greeting';
    }
    return this.take();
  }

  /** Greet-first: Session found the route the client named and connects now; `user` is the USER the upstream gets. */
  routed(user: string | undefined): Action[] {
    this.login.routed(user);
    return this.take();
  }

  /** Greet-first: the route was refused; the client's command is answered with `reply` (and the session ends if `end`). */
  routeRefused(reply: Buffer, end: boolean): Action[] {
    this.login.refused(reply);
    if (end) this.end('route-refused');
    this.pump();
    return this.take();
  }

  /**
   * The upstream went away (or refused) before the session was ready: the
   * core is as new, nothing was said to the client, and Session may connect
   * to another upstream. False once the session is ready (or ended).
   */
  upstreamLost(): boolean {
    if (this.settings.greetFirst === true || (this.phase !== 'connecting' && this.phase !== 'greeting')) return false;
    this.phase = 'connecting';
    this.replies = new ReplyReader();
    this.fifo.clear();
    this.greeting = this.newGreeting();
    this.holder = this.greeting;
    this.security.reset();
    this.out = [];
    return true;
  }

  clientLine(raw: Buffer): Action[] {
    this.input({ line: raw });
    return this.take();
  }

  /** The splitter refused client input (a line too long). */
  clientFault(kind: LineFault): Action[] {
    this.input({ fault: kind });
    return this.take();
  }

  upstreamLine(raw: Buffer): Action[] {
    if (this.phase !== 'ended' && this.phase !== 'connecting') this.onUpstreamLine(raw);
    return this.take();
  }

  upstreamFault(kind: string): Action[] {
    this.note({ kind: 'rejected', side: 'upstream', reason: kind });
    this.end('upstream-line-too-long');
    return this.take();
  }

  pinholeOpened(id: number, ports: PinholePorts): Action[] {
    const waiter = this.pinholeWaiters.get(id);
    this.pinholeWaiters.delete(id);
    if (waiter !== undefined && this.phase !== 'ended') waiter.opened(ports, id);
    this.pump();
    return this.take();
  }

  /** `code`: the stable code of the error (common/errors.ts) or of the limit that refused it. */
  pinholeFailed(id: number, code: string): Action[] {
    const waiter = this.pinholeWaiters.get(id);
    this.pinholeWaiters.delete(id);
    if (waiter !== undefined && this.phase !== 'ended') waiter.failed(code);
    this.pump();
    return this.take();
  }

  /** The TLS handshake on the client control connection finished. */
  clientSecured(): Action[] {
    this.security.clientSecured();
    this.pump();
    return this.take();
  }

  /** The TLS handshake toward the upstream finished. */
  upstreamSecured(): Action[] {
    this.security.upstreamSecured();
    this.pump();
    return this.take();
  }

  private newGreeting(internal = false): Entry {
    return this.fifo.push('(greeting)', { collect: true, internal, handler: (entry, reply) => this.onGreeting(entry, reply) });
  }

  // ---- client input ----------------------------------------------------------

  private input(input: Input): void {
    if (this.phase === 'ended') return;
    if (this.holder !== undefined || this.backlog.length > 0) {
      if (this.backlog.length + this.fifo.length >= MAX_PENDING) {
        this.end('too-many-pipelined');
        return;
      }
      this.backlog.push(input);
      return;
    }
    this.handleInput(input);
  }

  private pump(): void {
    while (this.phase !== 'ended' && this.holder === undefined) {
      const next = this.backlog.shift();
      if (next === undefined) return;
      this.handleInput(next);
    }
  }

  /** Plaintext the client pipelined behind AUTH TLS is never acted upon (STARTTLS command injection). */
  discardBacklog(): void {
    if (this.backlog.length > 0) this.note({ kind: 'discarded', side: 'client', reason: 'plaintext-after-auth', lines: this.backlog.length });
    this.backlog.length = 0;
  }

  private handleInput(input: Input): void {
    if ('fault' in input) {
      this.reject('line-too-long', input.fault); // the splitter's one fault: a line over maxLineBytes
      return;
    }
    const parsed = parseCommand(input.line);
    if (!parsed.ok) {
      // Not a word of letters: refused here, never forwarded. Servers read such lines differently
      // (quotes stripped, TAB as a separator), and a "PORT" the gateway did not see must not reach one.
      this.reject(parsed.reason === 'nul' ? 'nul' : parsed.reason === 'empty' ? 'empty' : 'bad-verb', parsed.reason);
      return;
    }
    const command = parsed.value;
    const gate = this.security.gate(command.verb);
    if (gate !== undefined) {
      this.refuse(command.verb, gate);
      return;
    }
    if (this.security.handle(command)) return; // AUTH, PBSZ, PROT, CCC when the gateway answers them
    if (this.phase === 'login') this.login.handle(command);
    else this.dispatch(command, input.line);
  }

  /** The intercept table: every verb not named here is forwarded byte-exact. */
  private dispatch(command: Command, raw: Buffer): void {
    switch (command.verb) {
      case 'PASV':
      case 'EPSV':
        return this.data.passive(command);
      case 'PORT':
      case 'EPRT':
        return this.data.active(command);
      case 'FEAT':
        this.forward(raw, 'FEAT', {
          collect: true,
          handler: (entry, reply) => {
            this.fifo.deliver(entry, features(reply, this.settings));
            this.finish(entry);
          },
        });
        return;
      case 'ABOR':
      case 'REIN':
        this.emit({ type: 'closePinholes', which: 'all', reason: command.verb });
        if (command.verb === 'REIN') this.loggedIn = false;
        break;
      default:
        if (TRANSFER_VERBS.has(command.verb)) this.emit({ type: 'label', verb: command.verb });
    }
    this.forward(raw, command.verb);
  }

  private reject(reason: 'nul' | 'bad-verb' | 'empty' | 'line-too-long', detail: string): void {
    this.note({ kind: 'rejected', side: 'client', reason: detail });
    this.fifo.local('(rejected)', refusalReply(reason, ''));
  }

  // ---- upstream replies --------------------------------------------------------

  private onUpstreamLine(raw: Buffer): void {
    const line = this.replies.read(raw);
    const entry = this.fifo.answering();
    if (line.kind === 'malformed') {
      this.note({ kind: 'rejected', side: 'upstream', reason: 'malformed-reply' });
      this.toClientInTurn(entry, raw);
      return;
    }
    if (line.kind === 'part' || line.code < 200) {
      // Multi-line text and 1xx preliminaries answer nothing yet.
      if (entry === undefined || !this.fifo.collect(entry, raw)) this.toClientInTurn(entry, raw);
      return;
    }
    if (entry === undefined) {
      this.toClientInTurn(undefined, raw); // unsolicited: passed on, never acted upon
      return;
    }
    const reply: FinalReply = { code: line.code, text: line.text, raw, parts: entry.collected ?? [] };
    if (entry.dropped > 0) this.note({ kind: 'discarded', side: 'upstream', reason: 'reply-too-long', lines: entry.dropped });
    const handler = entry.handler;
    entry.state = 'waiting';
    entry.handler = undefined;
    entry.collected = entry.collected === undefined ? undefined : [];
    entry.dropped = 0;
    if (handler !== undefined) {
      handler(entry, reply); // it finishes the entry, resends for it, or leaves it waiting for an event
    } else {
      this.passOn(entry, reply);
      this.finish(entry);
    }
    this.pump();
  }

  /** The reply as the upstream gave it, and what it tells: a login. */
  passOn(entry: Entry, reply: FinalReply): void {
    for (const part of reply.parts) this.fifo.deliver(entry, part);
    this.fifo.deliver(entry, reply.raw);
    if (reply.code === codes.LOGGED_IN && LOGIN_VERBS.has(entry.verb) && !this.loggedIn) {
      this.loggedIn = true;
      this.fifo.deliver(entry, { type: 'loggedIn' });
    }
  }

  private toClientInTurn(entry: Entry | undefined, raw: Buffer): void {
    if (entry !== undefined) this.fifo.deliver(entry, raw);
    else if (this.phase === 'ready') this.emit({ type: 'toClient', line: raw });
  }

  private onGreeting(entry: Entry, reply: FinalReply): void {
    if (reply.code !== codes.SERVICE_READY) {
      // Session may try another upstream (upstreamLost), else the client gets the upstream's own words.
      this.emit({ type: 'upstreamRefused', reply: Buffer.concat([...reply.parts, reply.raw]) });
      return;
    }
    this.security.afterGreeting(() => {
      for (const part of reply.parts) this.fifo.deliver(entry, part);
      this.fifo.deliver(entry, reply.raw);
      this.phase = 'ready';
      this.emit({ type: 'ready' });
      this.finish(entry);
      this.login.connected();
      this.pump();
    });
  }

  // ---- Core ------------------------------------------------------------------

  emit(action: Action): void {
    this.out.push(action);
  }

  note(note: Note): void {
    this.out.push({ type: 'note', note });
  }

  send(entry: Entry, line: Buffer, handler?: ReplyHandler): void {
    entry.state = 'upstream';
    entry.handler = handler;
    this.emit({ type: 'toUpstream', line });
  }

  forward(line: Buffer, verb: string, options: EntryOptions = {}): Entry | undefined {
    if (this.fifo.length >= MAX_PENDING) {
      this.end('too-many-pipelined');
      return undefined;
    }
    const entry = this.fifo.push(verb, options);
    this.emit({ type: 'toUpstream', line });
    return entry;
  }

  refuse(verb: string, reason: RefusalReason, fill = verb): void {
    this.note({ kind: 'refused', verb, reason });
    this.fifo.local(verb, refusalReply(reason, fill));
  }

  holdInputUntil(entry: Entry): void {
    if (entry.state !== 'done') this.holder = entry;
  }

  openPinhole(spec: Omit<PinholeSpec, 'id'>, opened: (ports: PinholePorts, id: number) => void, failed: (code: string) => void): void {
    const id = ++this.nextPinholeId;
    this.pinholeWaiters.set(id, { opened, failed });
    this.emit({ type: 'openPinhole', spec: { ...spec, id } });
  }

  openForward(spec: Omit<ForwardSpec, 'id'>, opened: () => void, failed: (code: string) => void): void {
    const id = ++this.nextPinholeId;
    this.pinholeWaiters.set(id, { opened, failed });
    this.emit({ type: 'openForward', spec: { ...spec, id } });
  }

  finish(entry: Entry): void {
    this.fifo.complete(entry);
    if (entry === this.holder) this.holder = undefined;
  }

  end(reason: EndReason, farewell?: Buffer): void {
    if (this.phase === 'ended') return;
    this.phase = 'ended';
    this.backlog.length = 0;
    this.fifo.clear();
    this.holder = undefined;
    this.emit({ type: 'end', reason, farewell: farewell ?? farewellFor(reason) });
  }

  private take(): Action[] {
    const out = this.out;
    this.out = [];
    return out;
  }
}

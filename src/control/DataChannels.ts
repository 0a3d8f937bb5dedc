/**
 * The data-connection commands of one session: PASV, EPSV, PORT and EPRT
 * from the client, the upstream's answers to them, and the pinholes they
 * open. Every combination is one shape: decide the upstream command
 * (policy.ts), send it, and open a pinhole whose two legs each listen or
 * connect, then answer the client in the form it asked for.
 */
import * as codes from '../ftp/codes.js';
import { type Command, formatCommand } from '../ftp/command.js';
import {
  type HostPort,
  formatEpsvReply,
  formatEprt,
  formatHostPort,
  formatPasvReply,
  parseEprt,
  parseEpsvArg,
  parseEpsvReply,
  parseHostPort,
  parsePasvReply,
} from '../ftp/hostPort.js';
import type { Parsed } from '../ftp/result.js';
import { formatReply } from '../ftp/reply.js';
import { PinholeLimitError, PortExhaustedError } from '../common/errors.js';
import { familyOf } from '../common/address.js';
import type { LegRequest, PinholeHandle } from '../data/DataPlane.js';
import {
  MIN_DATA_PORT,
  type UpstreamSetup,
  checkActiveTarget,
  refusesExtension,
  upstreamSetupFor,
} from './policy.js';
import { type FinalReply, type ReplyHandler, RESEND, type Session, type SessionContext } from './Session.js';

type PassiveVerb = 'PASV' | 'EPSV';
type ActiveVerb = 'PORT' | 'EPRT';

/** The client's side of a data connection, as it asked for it. */
type ClientWish =
  | { readonly mode: 'passive'; readonly verb: PassiveVerb }
  | { readonly mode: 'active'; readonly verb: ActiveVerb; readonly target: { address: string; port: number } };

export class DataChannels {
  private readonly pinholes = new Set<PinholeHandle>();
  private readonly abilities = { epsv: true, eprt: true };
  private epsvAll = false;
  transfers = 0;
  readonly totals = { upBytes: 0, downBytes: 0 };

  constructor(
    private readonly session: Session,
    private readonly ctx: SessionContext,
  ) {}

  get count(): number {
    return this.pinholes.size;
  }

  get transferring(): boolean {
    for (const p of this.pinholes) if (p.state === 'relaying') return true;
    return false;
  }

  async allClosed(): Promise<void> {
    await Promise.all([...this.pinholes].map((p) => p.closed()));
  }

  /** Name the newest pinhole after the transfer command that will use it. */
  label(verb: string): void {
    let newest: PinholeHandle | undefined;
    for (const p of this.pinholes) newest = p;
    if (newest !== undefined && newest.command === '') newest.command = verb;
  }

  /** ABOR, REIN: every pinhole closes, transfers included. */
  closeAll(reason: string): void {
    for (const p of this.pinholes) p.close(reason);
  }

  /** End of session: waiting pinholes close; running transfers may finish if the end is normal. */
  endAll(letTransfersFinish: boolean): void {
    for (const p of this.pinholes) {
      if (!(letTransfersFinish && p.state === 'relaying')) p.close('session-end');
    }
  }

  /** A new data command replaces pinholes still waiting for their peer. */
  private closeWaiting(): void {
    for (const p of this.pinholes) if (p.state !== 'relaying') p.close('replaced');
  }

  // ---- client commands ---------------------------------------------------

  onPassive(command: Command): void | Promise<void> {
    const verb = command.verb as PassiveVerb;
    this.closeWaiting();
    if (verb === 'EPSV') {
      const arg = parseEpsvArg(command.arg);
      if (!arg.ok) return this.session.reject('client', 'epsv-arg', 'Syntax error in EPSV argument.', codes.SYNTAX_ERROR_ARGS);
      if (arg.value.kind === 'all') {
        this.epsvAll = true; // RFC 2428 4: from now on only EPSV; kept here, the upstream is not told
        return this.session.replyLocal(formatReply(codes.COMMAND_OK, 'EPSV ALL command successful.'));
      }
      if (arg.value.kind === 'family' && arg.value.family !== this.clientFamily) {
        return this.session.refuse('EPSV', 'family', codes.EXTENDED_PROTOCOL_NOT_SUPPORTED, `Network protocol not supported, use (${this.clientFamily === 4 ? 1 : 2})`);
      }
    } else {
      if (this.epsvAll) return this.session.refuse('PASV', 'epsv-all', codes.BAD_SEQUENCE, 'PASV not allowed after EPSV ALL.');
      if (this.clientFamily === 6 || this.externalV4() === undefined) {
        // RFC 2428: PASV names an IPv4 address; an IPv6 client could not reach the pinhole it names.
        return this.session.refuse('PASV', 'family', codes.EXTENDED_PROTOCOL_NOT_SUPPORTED, 'PASV needs IPv4, use EPSV.');
      }
    }
    return this.setup({ mode: 'passive', verb });
  }

  onActive(command: Command): void | Promise<void> {
    const verb = command.verb as ActiveVerb;
    this.closeWaiting();
    const site = this.ctx.site;
    if (this.epsvAll) return this.session.refuse(verb, 'epsv-all', codes.BAD_SEQUENCE, `${verb} not allowed after EPSV ALL.`);
    if (!site.activeMode.enabled) return this.session.refuse(verb, 'active-disabled', codes.NOT_IMPLEMENTED, 'Active mode is not allowed here, use PASV or EPSV.');
    const parsed: Parsed<HostPort> = verb === 'PORT' ? parseHostPort(command.arg) : parseEprt(command.arg);
    if (!parsed.ok) return this.session.reject('client', `${verb.toLowerCase()}-${parsed.reason}`, `Syntax error in ${verb} argument.`, codes.SYNTAX_ERROR_ARGS);
    const check = checkActiveTarget(parsed.value, this.session.endpoints.client, site.activeMode.clientAddress);
    if (!check.ok) {
      if (check.reason === 'family') {
        return this.session.refuse(verb, 'family', codes.EXTENDED_PROTOCOL_NOT_SUPPORTED, `Network protocol not supported, use (${this.clientFamily === 4 ? 1 : 2})`);
      }
      // RFC 2577: a data connection to a third host or a privileged port is a bounce attack.
      return this.session.refuse(verb, check.reason, codes.NOT_IMPLEMENTED_FOR_PARAM, `Illegal ${verb} command: data connections go to your own address and a port from ${MIN_DATA_PORT}.`);
    }
    return this.setup({ mode: 'active', verb, target: { address: check.address, port: check.port } });
  }

  // ---- the one shape -----------------------------------------------------

  private setup(wish: ClientWish): void | Promise<void> {
    const limit = this.ctx.site.limits.maxPinholesPerSession;
    if (this.pinholes.size >= limit) return this.failSetup(new PinholeLimitError(limit, 'session'));
    const upstreamVerb = upstreamSetupFor(wish.verb, this.ctx.site.upstreamDataMode, this.upstreamFamily, this.abilities);
    if (upstreamVerb === 'PASV' || upstreamVerb === 'EPSV') {
      // The reply is collected whole: only its last line counts, and a rewritten one replaces all of it.
      return this.session.exchange(formatCommand(upstreamVerb), upstreamVerb, this.onUpstreamPassive(wish, upstreamVerb), true);
    }
    return this.upstreamActive(wish, upstreamVerb);
  }

  /** Upstream listens: its 227/229 names the port; the gateway will connect to it. */
  private onUpstreamPassive(wish: ClientWish, sent: 'PASV' | 'EPSV'): ReplyHandler {
    return (reply: FinalReply) => {
      if (sent === 'EPSV' && refusesExtension(reply.code) && this.upstreamFamily === 4) {
        this.abilities.epsv = false; // RFC 2428 fallback: the upstream knows only PASV
        return this.session.resend(formatCommand('PASV'), 'PASV', this.onUpstreamPassive(wish, 'PASV'));
      }
      const expected = sent === 'PASV' ? codes.ENTERING_PASSIVE : codes.ENTERING_EXTENDED_PASSIVE;
      if (reply.code !== expected) return this.passOnFailure(wish, sent, reply);
      const port = this.upstreamDataPort(sent, reply.text);
      if (port === undefined) return this.session.toClient(formatReply(codes.CANT_OPEN_DATA, "Can't open data connection."));
      const upstreamLeg: LegRequest = { kind: 'connect', host: this.session.endpoints.upstream, port };
      return this.openAndAnswer(wish, upstreamLeg);
    };
  }

  /**
   * The port of the upstream's passive data listener. The address in a 227
   * is never used: the gateway connects only to the upstream's control
   * address (a 227 may carry a private, a zero or a foreign address).
   */
  private upstreamDataPort(sent: 'PASV' | 'EPSV', text: string): number | undefined {
    const parsed = sent === 'PASV' ? parsePasvReply(text) : parseEpsvReply(text);
    const port = !parsed.ok ? undefined : typeof parsed.value === 'number' ? parsed.value : parsed.value.port;
    if (port === undefined || port < MIN_DATA_PORT) {
      const kind = port === undefined ? `${sent === 'PASV' ? '227' : '229'}-${parsed.ok ? 'bad' : parsed.reason}` : 'privileged-data-port';
      this.ctx.metrics.parseRejects.inc({ site: this.ctx.site.name, side: 'upstream', kind });
      this.session.log.warn({ kind, reply: text.slice(0, 120) }, 'upstream passive reply refused');
      return undefined;
    }
    if (sent === 'PASV' && parsed.ok && typeof parsed.value !== 'number' && parsed.value.address !== this.session.endpoints.upstream) {
      this.session.log.debug({ advertised: parsed.value.address }, 'upstream 227 address ignored');
    }
    return port;
  }

  /** Upstream connects in: open the active pinhole first, then tell the upstream where it is. */
  private async upstreamActive(wish: ClientWish, sent: 'PORT' | 'EPRT'): Promise<void> {
    const privateAddress = this.privateAddress();
    const upstreamLeg: LegRequest = {
      kind: 'listen',
      host: privateAddress,
      pool: this.ctx.pools.active,
      expectedPeer: this.session.endpoints.upstream,
    };
    const pinhole = await this.open(wish, upstreamLeg);
    if (pinhole === undefined) return;
    const port = pinhole.upstreamPort as number;
    const announce = (verb: 'PORT' | 'EPRT') =>
      formatCommand(verb, verb === 'PORT' ? formatHostPort(privateAddress, port) : formatEprt(privateAddress, port));
    const onReply = (verb: 'PORT' | 'EPRT'): ReplyHandler => (reply) => {
      if (verb === 'EPRT' && refusesExtension(reply.code) && familyOf(privateAddress) === 4) {
        this.abilities.eprt = false;
        return this.session.resend(announce('PORT'), 'PORT', onReply('PORT'));
      }
      if (reply.code < 200 || reply.code >= 300) {
        pinhole.close('upstream-refused');
        return this.passOnFailure(wish, verb, reply);
      }
      this.answer(wish, pinhole, reply);
    };
    await this.session.exchange(announce(sent), sent, onReply(sent));
  }

  /** Open the pinhole whose upstream leg is given, then answer the client. */
  private async openAndAnswer(wish: ClientWish, upstreamLeg: LegRequest): Promise<void> {
    const pinhole = await this.open(wish, upstreamLeg);
    if (pinhole !== undefined) this.answer(wish, pinhole);
  }

  private async open(wish: ClientWish, upstreamLeg: LegRequest): Promise<PinholeHandle | undefined> {
    const { site, metrics } = this.ctx;
    const endpoints = this.session.endpoints;
    const clientLeg: LegRequest =
      wish.mode === 'passive'
        ? { kind: 'listen', host: endpoints.clientLocal, pool: this.ctx.pools.passive, expectedPeer: endpoints.client }
        : {
            kind: 'connect',
            host: wish.target.address,
            port: wish.target.port,
            localAddress: endpoints.clientLocal,
            localPort: site.activeMode.sourcePort20 ? 20 : undefined,
          };
    const pinhole = this.ctx.dataPlane.pinhole({
      site: site.name,
      dir: wish.mode,
      client: clientLeg,
      upstream: upstreamLeg,
      acceptTimeoutMs: site.timeouts.pinholeAcceptMs,
      dataIdleMs: site.timeouts.dataIdleMs,
      log: this.session.log,
      metrics,
    });
    if (!this.ctx.clientPinholes.tryTake()) {
      this.failSetup(new PinholeLimitError(site.limits.maxPinholesPerClient, 'client'), true);
      return undefined;
    }
    try {
      await pinhole.open();
    } catch (err) {
      this.ctx.clientPinholes.give();
      this.failSetup(err as Error, true);
      return undefined;
    }
    if (this.session.ended) {
      pinhole.close('session-end'); // the session ended while the pinhole was being opened
      this.ctx.clientPinholes.give();
      return undefined;
    }
    this.track(pinhole);
    return pinhole;
  }

  private track(pinhole: PinholeHandle): void {
    this.pinholes.add(pinhole);
    void pinhole.closed().then(() => {
      this.pinholes.delete(pinhole);
      this.ctx.clientPinholes.give();
      const { up, down } = pinhole.bytes;
      if (up + down > 0 || pinhole.command !== '') this.transfers++;
      this.totals.upBytes += up;
      this.totals.downBytes += down;
      this.session.noteTransferEnd();
    });
  }

  /** The client's answer, in the form it asked for. */
  private answer(wish: ClientWish, pinhole: PinholeHandle, upstreamReply?: FinalReply): void {
    if (wish.mode === 'active') {
      // The upstream's own 200 when it got the client's mode; ours when the mode was converted.
      const own = upstreamReply !== undefined && (wish.verb === 'PORT' || wish.verb === 'EPRT');
      this.session.toClient(own ? upstreamReply.raw : formatReply(codes.COMMAND_OK, `${wish.verb} command successful.`));
      return;
    }
    const port = pinhole.clientPort as number;
    if (wish.verb === 'EPSV') this.session.toClient(formatEpsvReply(port));
    else this.session.toClient(formatPasvReply(this.externalV4() as string, port));
  }

  /** The upstream refused: pass its reply on, or, for a command the client did not send, say it in the client's terms. */
  private passOnFailure(wish: ClientWish, sent: UpstreamSetup, reply: FinalReply): void {
    // A success of the wrong kind (a 227 to EPSV, a 229 to PASV) would hand the client the upstream's own
    // address: it is answered 425 like a refusal of a command the client did not send.
    const wrongSuccess = reply.code >= 200 && reply.code < 300;
    if (sent !== wish.verb || wrongSuccess) {
      if (wrongSuccess) this.session.log.warn({ sent, code: reply.code }, 'upstream answered a data command with the wrong success reply');
      return this.session.toClient(formatReply(codes.CANT_OPEN_DATA, "Can't open data connection."));
    }
    for (const part of reply.parts) this.session.toClient(part);
    this.session.toClient(reply.raw);
  }

  private failSetup(err: Error, inReply = false): void {
    const reason =
      err instanceof PortExhaustedError ? 'ports-exhausted' : err instanceof PinholeLimitError ? `${err.scope}-pinhole-limit` : 'bind-failed';
    this.ctx.metrics.pinholesRefused.inc({ site: this.ctx.site.name, reason });
    this.session.log.warn({ reason, err: { code: (err as { code?: string }).code, message: err.message } }, 'data connection refused');
    const reply = formatReply(codes.CANT_OPEN_DATA, "Can't open data connection: no free port.");
    if (inReply) this.session.toClient(reply);
    else this.session.replyLocal(reply);
  }

  // ---- addresses ---------------------------------------------------------

  private get clientFamily(): 4 | 6 {
    return familyOf(this.session.endpoints.client);
  }

  private get upstreamFamily(): 4 | 6 {
    return familyOf(this.session.endpoints.upstream);
  }

  /** The IPv4 address a 227 names: configured, or the client connection's local address. */
  private externalV4(): string | undefined {
    const ext = this.ctx.site.externalAddress;
    if (ext === 'auto') {
      const local = this.session.endpoints.clientLocal;
      return familyOf(local) === 4 ? local : undefined;
    }
    return ext.find((a) => familyOf(a) === 4);
  }

  private privateAddress(): string {
    const configured = this.ctx.site.privateAddress;
    return configured === 'auto' ? this.session.endpoints.upstreamLocal : configured;
  }
}


/**
 * PASV, EPSV, PORT and EPRT from the client, the upstream's answers to
 * them, and the pinholes they ask for. Every combination is one shape:
 * decide the upstream command (policy.ts), set up the upstream side, ask
 * Session for a pinhole whose two legs each listen or connect, then answer
 * the client in the form it asked for. Pure, like the rest of the core.
 */
import { familyOf } from '../common/address.js';
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
import { MIN_DATA_PORT, type UpstreamSetup, checkActiveTarget, refusesExtension, upstreamSetupFor } from './policy.js';
import type { Core } from './protocol.js';
import { LOCAL, pinholeFailure, refusalReply } from './replies.js';
import type { Entry, ReplyHandler } from './ReplyFifo.js';
import type { Security } from './security.js';
import type { FinalReply, LegSpec, PinholePorts } from './types.js';

type PassiveVerb = 'PASV' | 'EPSV';
type ActiveVerb = 'PORT' | 'EPRT';

/** The client's side of a data connection, as it asked for it. */
type ClientWish =
  | { readonly mode: 'passive'; readonly verb: PassiveVerb }
  | { readonly mode: 'active'; readonly verb: ActiveVerb; readonly target: { address: string; port: number } };

export class DataCommands {
  /** False once the upstream refused the extended command (RFC 2428 fallback to PASV/PORT). */
  private readonly abilities = { epsv: true, eprt: true };
  /** RFC 2428 4: after EPSV ALL only EPSV; kept here, the upstream is not told. */
  private epsvAll = false;

  constructor(
    private readonly core: Core,
    private readonly security: Security,
  ) {}

  passive(command: Command): void {
    const verb = command.verb as PassiveVerb;
    const core = this.core;
    core.emit({ type: 'closePinholes', which: 'waiting', reason: 'replaced' });
    if (verb === 'EPSV') {
      const arg = parseEpsvArg(command.arg);
      if (!arg.ok) return this.rejectArg('EPSV', 'epsv-arg');
      if (arg.value.kind === 'all') {
        this.epsvAll = true;
        core.fifo.local('EPSV', LOCAL.epsvAll);
        return;
      }
      if (arg.value.kind === 'family' && arg.value.family !== this.clientFamily) return core.refuse('EPSV', 'family', this.familyNumber());
    } else {
      if (this.epsvAll) return core.refuse('PASV', 'epsv-all');
      // RFC 2428: PASV names an IPv4 address; an IPv6 client could not reach the pinhole it names.
      if (this.clientFamily === 6 || this.externalV4() === undefined) return core.refuse('PASV', 'pasv-needs-ipv4');
    }
    const protection = this.security.dataGate();
    if (protection !== undefined) return core.refuse(verb, protection);
    if (core.settings.passiveDirect === true) return this.direct(verb, command.arg);
    this.setup({ mode: 'passive', verb });
  }

  /**
   * Transparent sites: the server's own passive reply, checked like any 227/229 and naming only the
   * server's control address, once the data plane admits the client's connection to that port.
   */
  private direct(verb: PassiveVerb, arg: string): void {
    const core = this.core;
    const entry = core.fifo.push(verb, { state: 'waiting', collect: true });
    core.holdInputUntil(entry);
    core.send(entry, formatCommand(verb, arg), (e, reply) => {
      const expected = verb === 'PASV' ? codes.ENTERING_PASSIVE : codes.ENTERING_EXTENDED_PASSIVE;
      if (reply.code !== expected) return this.passOnFailure(e, { mode: 'passive', verb }, verb, reply);
      const port = this.upstreamDataPort(verb, reply.text);
      if (port === undefined) return this.fail(e, LOCAL.cantOpen);
      const server = core.endpoints.upstream;
      const named = verb === 'PASV' ? parsePasvReply(reply.text) : undefined;
      const faithful = named === undefined || (named.ok && named.value.address === server);
      if (!faithful) core.note({ kind: 'rejected', side: 'upstream', reason: '227-foreign-address', detail: reply.text.slice(0, 120) });
      const answer = faithful ? Buffer.concat([...reply.parts, reply.raw]) : formatPasvReply(server, port);
      const admitted = () => {
        core.fifo.deliver(e, answer);
        core.finish(e);
      };
      core.openForward({ client: core.endpoints.client, server, port }, admitted, this.refused(e));
    });
  }

  active(command: Command): void {
    const verb = command.verb as ActiveVerb;
    const core = this.core;
    core.emit({ type: 'closePinholes', which: 'waiting', reason: 'replaced' });
    if (this.epsvAll) return core.refuse(verb, 'epsv-all');
    if (!core.settings.activeMode.enabled) return core.refuse(verb, 'active-disabled');
    const parsed: Parsed<HostPort> = verb === 'PORT' ? parseHostPort(command.arg) : parseEprt(command.arg);
    if (!parsed.ok) return this.rejectArg(verb, `${verb.toLowerCase()}-${parsed.reason}`);
    const check = checkActiveTarget(parsed.value, core.endpoints.client, core.settings.activeMode.clientAddress);
    // RFC 2577: a data connection to a third host or a privileged port is a bounce attack.
    if (!check.ok) return core.refuse(verb, check.reason, check.reason === 'family' ? this.familyNumber() : verb);
    const protection = this.security.dataGate();
    if (protection !== undefined) return core.refuse(verb, protection);
    this.setup({ mode: 'active', verb, target: { address: check.address, port: check.port } });
  }

  private rejectArg(verb: string, kind: string): void {
    this.core.note({ kind: 'rejected', side: 'client', reason: kind });
    this.core.fifo.local(verb, refusalReply('bad-arg', verb));
  }

  // ---- the one shape -----------------------------------------------------

  /** One entry for the client's command; client input waits until it is answered. */
  private setup(wish: ClientWish): void {
    const core = this.core;
    const sent = upstreamSetupFor(wish.verb, core.settings.upstreamDataMode, this.upstreamFamily, this.abilities);
    const entry = core.fifo.push(wish.verb, { state: 'waiting', collect: true });
    core.holdInputUntil(entry);
    if (sent === 'PASV' || sent === 'EPSV') {
      // The reply is collected whole: only its last line counts, and a rewritten one replaces all of it.
      core.send(entry, formatCommand(sent), this.onUpstreamPassive(wish, sent));
    } else {
      this.upstreamActive(entry, wish, sent);
    }
  }

  /** Upstream listens: its 227/229 names the port; the gateway will connect to it. */
  private onUpstreamPassive(wish: ClientWish, sent: 'PASV' | 'EPSV'): ReplyHandler {
    return (entry, reply) => {
      if (sent === 'EPSV' && refusesExtension(reply.code) && this.upstreamFamily === 4) {
        this.abilities.epsv = false; // RFC 2428 fallback: the upstream knows only PASV
        return this.core.send(entry, formatCommand('PASV'), this.onUpstreamPassive(wish, 'PASV'));
      }
      const expected = sent === 'PASV' ? codes.ENTERING_PASSIVE : codes.ENTERING_EXTENDED_PASSIVE;
      if (reply.code !== expected) return this.passOnFailure(entry, wish, sent, reply);
      const port = this.upstreamDataPort(sent, reply.text);
      if (port === undefined) return this.fail(entry, LOCAL.cantOpen);
      // From the upstream control connection's own address: servers refuse data from another one, and the kernel plane SNATs to it.
      const { upstream, upstreamLocal } = this.core.endpoints;
      this.open(entry, wish, { kind: 'connect', host: upstream, port, localAddress: upstreamLocal }, (ports) => this.answer(entry, wish, ports));
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
    if (port !== undefined && port >= MIN_DATA_PORT) return port;
    const kind = port === undefined ? `${sent === 'PASV' ? '227' : '229'}-${parsed.ok ? 'bad' : parsed.reason}` : 'privileged-data-port';
    this.core.note({ kind: 'rejected', side: 'upstream', reason: kind, detail: text.slice(0, 120) });
    return undefined;
  }

  /** Upstream connects in: open the active pinhole first, then tell the upstream where it is. */
  private upstreamActive(entry: Entry, wish: ClientWish, sent: 'PORT' | 'EPRT'): void {
    const privateAddress = this.privateAddress();
    const upstreamLeg: LegSpec = { kind: 'listen', host: privateAddress, pool: 'active', expectedPeer: this.core.endpoints.upstream };
    this.open(entry, wish, upstreamLeg, (ports, id) => {
      const port = ports.upstream as number;
      const announce = (verb: 'PORT' | 'EPRT') =>
        formatCommand(verb, verb === 'PORT' ? formatHostPort(privateAddress, port) : formatEprt(privateAddress, port));
      const onReply = (verb: 'PORT' | 'EPRT'): ReplyHandler => (e, reply) => {
        if (verb === 'EPRT' && refusesExtension(reply.code) && familyOf(privateAddress) === 4) {
          this.abilities.eprt = false;
          return this.core.send(e, announce('PORT'), onReply('PORT'));
        }
        if (reply.code < 200 || reply.code >= 300) {
          this.core.emit({ type: 'closePinholes', which: id, reason: 'upstream-refused' });
          return this.passOnFailure(e, wish, verb, reply);
        }
        this.answer(e, wish, ports, reply);
      };
      this.core.send(entry, announce(sent), onReply(sent));
    });
  }

  /** Ask for the pinhole whose upstream leg is given; `then` runs in the entry's turn once it is open. */
  private open(entry: Entry, wish: ClientWish, upstreamLeg: LegSpec, then: (ports: PinholePorts, id: number) => void): void {
    const { endpoints, settings } = this.core;
    const clientLeg: LegSpec =
      wish.mode === 'passive'
        ? { kind: 'listen', host: endpoints.clientLocal, pool: 'passive', expectedPeer: endpoints.client }
        : { kind: 'connect', host: wish.target.address, port: wish.target.port, localAddress: endpoints.clientLocal, fromPort20: settings.activeMode.sourcePort20 };
    this.core.openPinhole({ dir: wish.mode, client: clientLeg, upstream: upstreamLeg, tls: this.security.dataTls }, then, this.refused(entry));
  }

  /** A pinhole (or forward entry) that could not be opened: the client hears why, in the entry's turn. */
  private refused(entry: Entry): (code: string) => void {
    return (code) => {
      const failure = pinholeFailure(code);
      this.core.note({ kind: 'pinhole-refused', reason: failure.reason });
      this.fail(entry, failure.reply);
    };
  }

  /** The client's answer, in the form it asked for. */
  private answer(entry: Entry, wish: ClientWish, ports: PinholePorts, upstreamReply?: FinalReply): void {
    const core = this.core;
    if (wish.mode === 'active') {
      // The upstream's own 200 when it got the client's mode; ours when the mode was converted.
      core.fifo.deliver(entry, upstreamReply !== undefined ? upstreamReply.raw : LOCAL.activeOk(wish.verb));
    } else {
      const port = ports.client as number;
      core.fifo.deliver(entry, wish.verb === 'EPSV' ? formatEpsvReply(port) : formatPasvReply(this.externalV4() as string, port));
    }
    core.finish(entry);
  }

  /** The upstream refused: pass its reply on, or, for a command the client did not send, say it in the client's terms. */
  private passOnFailure(entry: Entry, wish: ClientWish, sent: UpstreamSetup, reply: FinalReply): void {
    // A success of the wrong kind (a 227 to EPSV, a 229 to PASV) would hand the client the upstream's own
    // address: it is answered 425 like a refusal of a command the client did not send.
    const wrongSuccess = reply.code >= 200 && reply.code < 300;
    if (sent !== wish.verb || wrongSuccess) {
      if (wrongSuccess) this.core.note({ kind: 'rejected', side: 'upstream', reason: 'wrong-success-reply', detail: `${sent} ${reply.code}` });
      return this.fail(entry, LOCAL.cantOpen);
    }
    for (const part of reply.parts) this.core.fifo.deliver(entry, part);
    this.core.fifo.deliver(entry, reply.raw);
    this.core.finish(entry);
  }

  private fail(entry: Entry, reply: Buffer): void {
    this.core.fifo.deliver(entry, reply);
    this.core.finish(entry);
  }

  // ---- addresses ---------------------------------------------------------

  private get clientFamily(): 4 | 6 {
    return familyOf(this.core.endpoints.client);
  }

  private get upstreamFamily(): 4 | 6 {
    return familyOf(this.core.endpoints.upstream);
  }

  /** RFC 2428's number for the client's family: 1 (IPv4) or 2 (IPv6). */
  private familyNumber(): string {
    return this.clientFamily === 4 ? '1' : '2';
  }

  /** The IPv4 address a 227 names: configured, or the client connection's local address. */
  private externalV4(): string | undefined {
    const ext = this.core.settings.externalAddress;
    if (ext === 'auto') {
      const local = this.core.endpoints.clientLocal;
      return familyOf(local) === 4 ? local : undefined;
    }
    return ext.find((a) => familyOf(a) === 4);
  }

  private privateAddress(): string {
    const configured = this.core.settings.privateAddress;
    return configured === 'auto' ? this.core.endpoints.upstreamLocal : configured;
  }
}

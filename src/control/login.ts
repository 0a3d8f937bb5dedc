/**
 * "Greet first, connect later": for sites that choose the upstream from
 * what the client says before it logs in (a forward proxy's `USER
 * user@host`, `SITE host` or `OPEN host`; RFC 7151 `HOST` for name-based
 * virtual hosting; per-user routing). The gateway greets the client
 * itself, answers what it can alone (FEAT, SYST, NOOP, HELP, QUIT; AUTH,
 * PBSZ and PROT are security.ts's, before any phase), asks Session for a route when the
 * client names one, and, once the chosen upstream has greeted, replays the
 * login so the client sees one consistent conversation.
 */
import * as codes from '../ftp/codes.js';
import { type Command, formatCommand } from '../ftp/command.js';
import { formatReply } from '../ftp/reply.js';
import type { Core } from './protocol.js';
import type { Entry } from './ReplyFifo.js';
import type { RouteVerb } from './types.js';

const ROUTE_VERBS = new Set<string>(['USER', 'HOST', 'SITE', 'OPEN']);

/** Where a route request stands. */
interface Pending {
  readonly entry: Entry;
  readonly verb: RouteVerb;
  /** The USER line the upstream gets once it has greeted, if the client's command was USER. */
  replayUser: string | undefined;
}

export class Login {
  private pending: Pending | undefined;

  constructor(private readonly core: Core) {}

  /** The gateway's own greeting. */
  greet(): void {
    this.core.fifo.local('(greeting)', formatReply(codes.SERVICE_READY, 'ftp-alg ready.'));
  }

  /** A command before any upstream is chosen. */
  handle(command: Command): void {
    const core = this.core;
    const { verb, arg } = command;
    if (ROUTE_VERBS.has(verb) && !(verb === 'SITE' && arg === '')) return this.route(verb as RouteVerb, arg);
    switch (verb) {
      case 'FEAT':
        return void core.fifo.local(verb, this.features());
      case 'SYST':
        return void core.fifo.local(verb, formatReply(codes.SYSTEM_TYPE, 'UNIX Type: L8'));
      case 'NOOP':
        return void core.fifo.local(verb, formatReply(codes.COMMAND_OK, 'NOOP ok.'));
      case 'HELP':
        return void core.fifo.local(verb, formatReply(codes.HELP_MESSAGE, 'Log in with USER and PASS.'));
      case 'QUIT':
        core.fifo.local(verb, formatReply(codes.CLOSING_CONTROL, 'Goodbye.'));
        return core.end('client-quit');
      case 'PASS':
      case 'ACCT':
        return core.refuse(verb, 'login-first');
    }
    core.refuse(verb, 'not-logged-in');
  }

  private route(verb: RouteVerb, arg: string): void {
    const entry = this.core.fifo.push(verb, { state: 'waiting' });
    this.core.holdInputUntil(entry);
    this.pending = { entry, verb, replayUser: undefined };
    this.core.emit({ type: 'route', verb, arg });
  }

  /** Session found the route: it connects now; `user` is what the upstream gets as USER (for a USER route). */
  routed(user: string | undefined): void {
    if (this.pending !== undefined) this.pending.replayUser = user;
  }

  /** Session refused the route: the client's command is answered with `reply`, and the client may try again. */
  refused(reply: Buffer): void {
    const pending = this.pending;
    this.pending = undefined;
    if (pending === undefined) return;
    this.core.fifo.deliver(pending.entry, reply);
    this.core.finish(pending.entry);
  }

  /** The chosen upstream greeted (and its TLS is up): replay the login, or confirm the route. */
  connected(): void {
    const pending = this.pending;
    this.pending = undefined;
    if (pending === undefined) return;
    if (pending.verb === 'USER' && pending.replayUser !== undefined) {
      this.core.send(pending.entry, formatCommand('USER', pending.replayUser));
      return;
    }
    this.core.fifo.deliver(pending.entry, formatReply(codes.SERVICE_READY, pending.verb === 'HOST' ? 'Host accepted.' : 'Connected.'));
    this.core.finish(pending.entry);
  }

  /** FEAT before login: what the gateway itself offers. */
  private features(): Buffer {
    const lines = ['211-Features:', ' EPSV'];
    if (this.core.settings.activeMode.enabled) lines.push(' EPRT');
    if (this.core.settings.tls !== undefined) lines.push(' AUTH TLS', ' PBSZ', ' PROT');
    lines.push(' HOST', '211 End');
    return Buffer.from(`${lines.join('\r\n')}\r\n`, 'latin1');
  }
}

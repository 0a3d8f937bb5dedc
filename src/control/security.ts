/**
 * FTPS (RFC 4217, RFC 2228) as the control core decides it: AUTH, PBSZ,
 * PROT and CCC from the client, the gate of a site that requires TLS, the
 * protection of data connections, and the gateway's own AUTH TLS, PBSZ and
 * PROT toward an upstream that speaks FTPS. The handshakes themselves are
 * Session's (`secureClient`, `secureUpstream` actions).
 *
 * Without a `tls` section a site keeps the old policy: AUTH is refused
 * (534, the client may fall back to cleartext) or the session is closed.
 */
import { formatCommand } from '../ftp/command.js';
import * as codes from '../ftp/codes.js';
import type { Command } from '../ftp/command.js';
import type { Core } from './protocol.js';
import { LOCAL, type RefusalReason } from './replies.js';
import type { Entry } from './ReplyFifo.js';

/** What a client may say before TLS on a `required` site. */
const ALLOWED_BEFORE_TLS = new Set(['AUTH', 'FEAT', 'NOOP', 'HELP', 'SYST', 'QUIT']);
const LOGIN_VERBS = new Set(['USER', 'PASS', 'ACCT']);
const SECURITY_VERBS = new Set(['AUTH', 'PBSZ', 'PROT', 'CCC']);
/** RFC 4217 4: TLS; SSL, TLS-C and TLS-P are the older names clients still send (curl starts with SSL). */
const MECHANISMS = new Set(['TLS', 'SSL', 'TLS-C', 'TLS-P']);

export class Security {
  /** The client control connection is TLS. */
  clientSecure: boolean;
  /** PROT P: the client's data connections are TLS. */
  private protectClientData = false;
  /** The client's AUTH, answered 234, until its handshake is done. */
  private authEntry: Entry | undefined;
  /** What to do when the upstream handshake is done. */
  private upstreamSecuredThen: (() => void) | undefined;

  constructor(private readonly core: Core) {
    this.clientSecure = core.settings.tls?.implicit === true;
  }

  /** Which legs of a new data connection carry TLS. */
  get dataTls(): { client: boolean; upstream: boolean } {
    const tls = this.core.settings.tls;
    return { client: this.protectClientData, upstream: tls !== undefined && tls.upstream !== 'plain' };
  }

  /** A refusal for `verb` while a `required` site still waits for TLS. */
  gate(verb: string): RefusalReason | undefined {
    const tls = this.core.settings.tls;
    if (tls === undefined || tls.client !== 'required' || this.clientSecure || ALLOWED_BEFORE_TLS.has(verb)) return undefined;
    return LOGIN_VERBS.has(verb) ? 'login-needs-tls' : 'needs-tls';
  }

  /** A refusal for a data command when the site wants protected data connections and PROT P was not sent. */
  dataGate(): RefusalReason | undefined {
    const tls = this.core.settings.tls;
    return tls !== undefined && tls.requireProtP && !this.protectClientData ? 'needs-prot-p' : undefined;
  }

  /** AUTH, PBSZ, PROT, CCC; false: not one of them, or not answered here (a site without TLS forwards PBSZ/PROT/CCC). */
  handle(command: Command): boolean {
    if (!SECURITY_VERBS.has(command.verb)) return false;
    const tls = this.core.settings.tls;
    if (command.verb === 'AUTH' && tls === undefined) {
      this.refuseAuth();
      return true;
    }
    if (tls === undefined) return false;
    switch (command.verb) {
      case 'AUTH':
        return this.auth(command.arg.toUpperCase());
      case 'PBSZ':
        return this.answer('PBSZ', this.clientSecure ? undefined : 'needs-auth', LOCAL.pbszOk);
      case 'PROT':
        return this.prot(command.arg.toUpperCase());
      default:
        this.core.refuse(command.verb, 'ccc-refused');
        return true;
    }
  }

  private refuseAuth(): void {
    if (this.core.settings.ftps === 'deny') {
      this.core.note({ kind: 'refused', verb: 'AUTH', reason: 'ftps-policy' });
      this.core.end('ftps-denied');
    } else {
      this.core.refuse('AUTH', 'ftps-policy');
    }
  }

  private auth(mechanism: string): boolean {
    if (!MECHANISMS.has(mechanism)) return this.answer('AUTH', 'auth-mechanism');
    if (this.clientSecure) return this.answer('AUTH', 'already-secure');
    const entry = this.core.fifo.push('AUTH', { state: 'waiting' });
    this.core.holdInputUntil(entry);
    this.authEntry = entry;
    this.core.fifo.deliver(entry, LOCAL.authOk);
    this.core.fifo.deliver(entry, { type: 'secureClient' });
    return true;
  }

  private prot(level: string): boolean {
    if (!this.clientSecure) return this.answer('PROT', 'needs-auth');
    if (level === 'P') {
      this.protectClientData = true;
      return this.answer('PROT', undefined, LOCAL.protP);
    }
    if (level === 'C') {
      if (this.core.settings.tls?.requireProtP === true) return this.answer('PROT', 'prot-c-refused');
      this.protectClientData = false;
      return this.answer('PROT', undefined, LOCAL.protC);
    }
    return this.answer('PROT', level === 'S' || level === 'E' ? 'prot-level' : 'bad-arg');
  }

  private answer(verb: string, refusal: RefusalReason | undefined, ok?: Buffer): boolean {
    if (refusal !== undefined) this.core.refuse(verb, refusal);
    else if (ok !== undefined) this.core.fifo.local(verb, ok);
    return true;
  }

  /** The client's handshake is done: what it sent in plaintext meanwhile is dropped, then input flows again. */
  clientSecured(): void {
    const entry = this.authEntry;
    if (entry === undefined) return;
    this.authEntry = undefined;
    this.clientSecure = true;
    this.core.discardBacklog();
    this.core.finish(entry);
  }

  /** After the upstream's 220: AUTH TLS, PBSZ 0 and PROT P upstream when the site speaks FTPS there, then `done`. */
  afterGreeting(done: () => void): void {
    const mode = this.core.settings.tls?.upstream ?? 'plain';
    if (mode === 'plain') return done();
    if (mode === 'implicit') return this.protectUpstream(done);
    this.core.forward(formatCommand('AUTH', 'TLS'), 'AUTH', {
      internal: true,
      handler: (entry, reply) => {
        if (reply.code !== codes.AUTH_OK) return this.core.end('upstream-tls-failed');
        this.upstreamSecuredThen = () => {
          this.core.finish(entry);
          this.protectUpstream(done);
        };
        this.core.emit({ type: 'secureUpstream' });
      },
    });
  }

  /** A new upstream is tried: its TLS set-up starts afresh. */
  reset(): void {
    this.upstreamSecuredThen = undefined;
  }

  upstreamSecured(): void {
    const then = this.upstreamSecuredThen;
    this.upstreamSecuredThen = undefined;
    then?.();
  }

  private protectUpstream(done: () => void): void {
    this.core.forward(formatCommand('PBSZ', '0'), 'PBSZ', { internal: true, handler: (entry) => this.core.finish(entry) });
    this.core.forward(formatCommand('PROT', 'P'), 'PROT', {
      internal: true,
      handler: (entry, reply) => {
        if (reply.code < 200 || reply.code >= 300) return this.core.end('upstream-tls-failed');
        this.core.finish(entry);
        done();
      },
    });
  }
}

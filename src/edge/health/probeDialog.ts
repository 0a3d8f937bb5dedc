/**
 * The conversation of one health probe, as a pure state machine (replies
 * in, the next line to send or the verdict out). A probe is an ordinary,
 * polite FTP session: the greeting (2xx), optionally `USER`/`PASS` and a
 * `NOOP`, then `QUIT` and its `221`, so the server logs a short session that
 * ended normally, not an aborted one. Once logged in, a failure still says
 * `QUIT` before giving its verdict.
 */
import * as codes from '../../ftp/codes.js';

export interface ProbeLogin {
  readonly user: string;
  readonly password: string;
}

/** What the probe found wrong, after the FTP conversation had started. */
export type DialogFailure = 'greeting-refused' | 'login-refused' | 'noop-refused' | 'quit-refused';

export type DialogStep =
  /** Write this line (CRLF included) and wait for its reply. */
  | { readonly send: string }
  /** Over: close the connection. */
  | { readonly verdict: 'ok' | DialogFailure };

type Awaiting = 'greeting' | 'USER' | 'PASS' | 'NOOP' | 'QUIT' | 'done';

export class ProbeDialog {
  private awaiting: Awaiting = 'greeting';
  private failure: DialogFailure | undefined;

  constructor(private readonly login: ProbeLogin | undefined) {}

  /** The command whose reply is awaited ('greeting' first). */
  get waitingFor(): Awaiting {
    return this.awaiting;
  }

  /** A final reply's code; undefined for a 1xx preliminary (keep waiting). */
  onReply(code: number): DialogStep | undefined {
    if (code < 200 || this.awaiting === 'done') return undefined;
    switch (this.awaiting) {
      case 'greeting':
        if (code >= 300) return this.over('greeting-refused'); // any 2xx greets (RFC 959 4.2)
        return this.login === undefined ? this.send('QUIT') : this.send('USER', this.login.user);
      case 'USER':
        if (code === codes.NEED_PASSWORD && this.login !== undefined) return this.send('PASS', this.login.password);
        return this.loggedIn(code);
      case 'PASS':
        return this.loggedIn(code);
      case 'NOOP':
        if (code !== codes.COMMAND_OK) this.failure = 'noop-refused';
        return this.send('QUIT');
      case 'QUIT':
        return this.over(this.failure ?? (code === codes.CLOSING_CONTROL ? 'ok' : 'quit-refused'));
    }
  }

  private loggedIn(code: number): DialogStep {
    if (code === codes.LOGGED_IN || code === codes.COMMAND_SUPERFLUOUS) return this.send('NOOP');
    this.failure = 'login-refused';
    return this.send('QUIT');
  }

  private send(verb: Exclude<Awaiting, 'greeting' | 'done'>, arg?: string): DialogStep {
    this.awaiting = verb;
    return { send: arg === undefined ? `${verb}\r\n` : `${verb} ${arg}\r\n` };
  }

  private over(verdict: 'ok' | DialogFailure): DialogStep {
    this.awaiting = 'done';
    return { verdict };
  }
}

/**
 * The upstream control connection's TLS session, for its data connections to
 * resume (vsftpd's require_ssl_reuse, ProFTPD without NoSessionReuseRequired).
 * Taken from the 'session' event, the last one winning: under TLS 1.3 the
 * tickets arrive after 'secureConnect' (vsftpd sends two), and a session read
 * with getSession() at 'secureConnect' cannot be resumed (research §1).
 */
import type { TLSSocket } from 'node:tls';

export class UpstreamSession {
  private latest: Buffer | undefined;

  constructor(control: TLSSocket) {
    control.on('session', (session: Buffer) => {
      this.latest = session;
    });
  }

  /** The session to resume; undefined until the upstream has sent one. */
  get session(): Buffer | undefined {
    return this.latest;
  }
}

/**
 * TLS on pinhole legs (FTPS data connections under PROT P). The client leg
 * is always a TLS server socket (RFC 4217: the FTP client is the TLS client
 * on data connections too, whoever opened the TCP connection), the upstream
 * leg always a TLS client that resumes the upstream control connection's
 * session. The pinhole keeps its rules, in this order:
 *
 * - the peer address is checked at accept, before any TLS byte is read;
 * - the other leg connects as soon as the TCP connection arrives, not after
 *   the handshake (ftplib starts TLS only after the 150 that vsftpd sends
 *   only once it has the data connection: waiting would deadlock);
 * - the relay starts once every leg's handshake is done; the accept deadline
 *   covers the handshakes, so a stalled or failed one closes the pinhole and
 *   frees its port, and is counted (ftp_alg_tls_handshakes_total);
 * - a TLS leg that ends ('end': close_notify or a bare FIN, which Node cannot
 *   tell apart) is passed on as a clean end (`end()`: close_notify then FIN
 *   toward a TLS peer); a reset or a TLS error is passed on as a reset, and
 *   a cut TLS leg is reset at the TCP level (`abort` in relay.ts).
 */
import net, { type NetConnectOpts, type Socket } from 'node:net';
import type { Handshake } from '../tls/handshake.js';
import type { TlsClient, TlsServer, UpstreamTarget } from '../tls/SiteTls.js';
import { connectForRelay } from './relay.js';

export interface PinholeTls {
  /** Protect the client leg: the gateway is the TLS server, with the site's certificate and session cache. */
  readonly client?: TlsServer;
  /** Protect the upstream leg: the gateway is the TLS client, resuming `target.session`. */
  readonly upstream?: { readonly via: TlsClient; readonly target: UpstreamTarget };
}

export type LegName = 'client' | 'upstream';

export function isTlsLeg(tls: PinholeTls | undefined, leg: LegName): boolean {
  return tls?.[leg] !== undefined;
}

/** Start the handshake of a TLS leg whose TCP connection has just arrived or connected; undefined for a plain leg. */
export function secureLeg(tls: PinholeTls | undefined, leg: LegName, raw: Socket): Handshake | undefined {
  if (leg === 'client') return tls?.client?.serve(raw, 'data-client');
  const upstream = tls?.upstream;
  return upstream?.via.connect(raw, 'data-upstream', upstream.target);
}

/** The TCP connection of a connecting leg: a plain one reads on the relay's fast path, a TLS one is handed to TLS. */
export function connectLeg(tls: PinholeTls | undefined, leg: LegName, options: NetConnectOpts): Socket {
  return isTlsLeg(tls, leg) ? net.connect(options) : connectForRelay(options);
}

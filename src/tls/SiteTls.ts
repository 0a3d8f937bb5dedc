/**
 * A site's TLS, both ways, built from its `tls` section.
 *
 * Toward clients the gateway is the TLS server: one SecureContext for the
 * control connections and every pinhole of the site, with shared ticket keys
 * and an explicit session ID context, plus a session store behind
 * newSession/resumeSession, so that a client resumes its control session on
 * its data connections under TLS 1.2 (by session ID or ticket) and TLS 1.3
 * (by ticket). Toward the upstream it is the TLS client: one client context
 * (the CA file or the system CAs, minVersion), no SNI for IP literals; each
 * data connection resumes the session the caller gives it: the upstream
 * control connection's, from its last 'session' event (control/Session keeps
 * it), as vsftpd's require_ssl_reuse demands.
 *
 * `reload()` reads the files again: new handshakes use the new context,
 * live connections keep theirs; a bad file keeps the old context.
 */
import { createHash, randomBytes } from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import tls, { type SecureContext, type TLSSocket } from 'node:tls';
import { normalise } from '../common/address.js';
import { readTlsMaterial, type TlsMaterial } from '../config/tlsFiles.js';
import type { SiteTlsConfig, TlsUpstreamMode } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics, TlsSide } from '../observe/metrics.js';
import { Handshake, type FailureReason } from './handshake.js';
import { SessionStore } from './sessionStore.js';

export type ServerSide = Extract<TlsSide, 'client' | 'data-client'>;
export type ClientSide = Extract<TlsSide, 'upstream' | 'data-upstream'>;

/** The gateway as TLS server toward a client, on an accepted or connected TCP socket. */
export interface TlsServer {
  serve(raw: Socket, side: ServerSide): Handshake;
}

export interface UpstreamTarget {
  /** The upstream's address: its certificate must name it. */
  readonly host: string;
  /** A session to resume (the upstream control connection's). */
  readonly session?: Buffer;
}

/** The gateway as TLS client toward the upstream, on a connected or accepted TCP socket. */
export interface TlsClient {
  connect(raw: Socket, side: ClientSide, target: UpstreamTarget): Handshake;
}

export type ReloadOutcome = { readonly ok: true } | { readonly ok: false; readonly reason: string };

interface Contexts {
  readonly server: SecureContext;
  readonly client: SecureContext;
  readonly requestCert: boolean;
  readonly material: TlsMaterial;
}

export interface SiteTlsDeps {
  readonly site: string;
  readonly metrics: Metrics;
  readonly log: Logger;
}

export class SiteTls implements TlsServer, TlsClient {
  /** Seals the tickets of every connection of the site, across reloads (a rotated certificate does not end resumption). */
  private readonly ticketKeys = randomBytes(48);
  private readonly sessionIdContext: string;
  private readonly sessions = new SessionStore();
  /** Carries newSession/resumeSession to the TLS sockets; it never listens. */
  private readonly cache = new tls.Server();
  private contexts: Contexts;

  constructor(
    private settings: SiteTlsConfig,
    private readonly deps: SiteTlsDeps,
  ) {
    // At most 32 bytes, the same in every process of a deployment of this site.
    this.sessionIdContext = createHash('sha256').update(`ftp-alg:${deps.site}`).digest('hex').slice(0, 32);
    this.contexts = this.build(settings);
    this.cache.on('newSession', (id: Buffer, data: Buffer, done: () => void) => {
      this.sessions.save(id, data);
      done();
    });
    this.cache.on('resumeSession', (id: Buffer, done: (err: Error | null, data: Buffer | null) => void) => {
      done(null, this.sessions.load(id) ?? null);
    });
  }

  /** The section in force (the last one that loaded). */
  get config(): SiteTlsConfig {
    return this.settings;
  }

  get upstreamMode(): TlsUpstreamMode {
    return this.settings.upstream;
  }

  /** For a log line: whose certificate the gateway shows, until when. */
  get certificate(): { subject: string; validTo: string } {
    const { leaf } = this.contexts.material;
    return { subject: leaf.subject, validTo: leaf.validTo };
  }

  serve(raw: Socket, side: ServerSide): Handshake {
    const socket = this.serverSocket(raw);
    const check = this.contexts.requestCert ? clientCertificateProblem : undefined;
    return new Handshake({ socket, raw, event: 'secure', check, record: (result) => this.count(side, result) });
  }

  connect(raw: Socket, side: ClientSide, target: UpstreamTarget): Handshake {
    const socket = this.clientSocket({ socket: raw, host: target.host }, target.session);
    return new Handshake({ socket, raw, event: 'secureConnect', record: (result) => this.count(side, result) });
  }

  /**
   * For control/Session (its SessionTls): the client control connection, after
   * AUTH TLS or from the first byte. Session watches and counts the handshake;
   * a client certificate the CA did not sign destroys the socket with an error
   * at 'secure', before Session's own 'secure' listener runs.
   */
  serveClient(raw: Socket): TLSSocket {
    const socket = this.serverSocket(raw);
    if (this.contexts.requestCert) {
      socket.once('secure', () => {
        if (clientCertificateProblem(socket) !== undefined) socket.destroy(new Error(`client certificate refused: ${String(socket.authorizationError)}`));
      });
    }
    return socket;
  }

  /** For control/Session: the upstream control connection, over its TCP socket (explicit) or a new one (implicit). */
  connectUpstream(options: { socket: Socket } | { host: string; port: number }): TLSSocket {
    return this.clientSocket(options);
  }

  private serverSocket(raw: Socket): TLSSocket {
    const { server, requestCert } = this.contexts;
    return new tls.TLSSocket(raw, { isServer: true, server: this.cache, secureContext: server, requestCert, rejectUnauthorized: requestCert });
  }

  private clientSocket(where: { socket: Socket; host?: string } | { host: string; port: number }, session?: Buffer): TLSSocket {
    // The certificate is checked against `host`, by default the address the socket is connected to; no SNI for an IP (RFC 6066).
    const host = where.host ?? ('socket' in where ? normalise(where.socket.remoteAddress) : undefined);
    return tls.connect({
      ...where,
      host,
      secureContext: this.contexts.client,
      ...(host !== undefined && isIP(host) === 0 && { servername: host }),
      rejectUnauthorized: !this.settings.upstreamInsecure,
      session,
    });
  }

  /**
   * Read the files again (SIGHUP, a renewed certificate): new handshakes use
   * the new files, live connections are untouched. A bad file keeps the old
   * context; the reason names the key.
   */
  reload(config: SiteTlsConfig = this.settings): ReloadOutcome {
    try {
      this.contexts = this.build(config);
      this.settings = config;
    } catch (err) {
      const reason = describe(err);
      this.deps.log.error({ site: this.deps.site, reason }, 'TLS reload failed; the previous certificate stays in use');
      return { ok: false, reason };
    }
    this.deps.log.info({ site: this.deps.site, ...this.certificate }, 'TLS certificate loaded');
    return { ok: true };
  }

  private build(config: SiteTlsConfig): Contexts {
    const material = readTlsMaterial(config);
    const server = tls.createSecureContext({
      cert: material.cert,
      key: material.key,
      ...(material.clientCa && { ca: material.clientCa }),
      minVersion: config.minVersion,
      ticketKeys: this.ticketKeys,
      sessionIdContext: this.sessionIdContext,
    });
    const client = tls.createSecureContext({
      ...(material.upstreamCa && { ca: material.upstreamCa }), // else the system CAs
      minVersion: config.minVersion,
    });
    return { server, client, requestCert: material.clientCa !== undefined, material };
  }

  private count(side: TlsSide, result: string): void {
    this.deps.metrics.tlsHandshakes.inc({ site: this.deps.site, side, result });
  }
}

/**
 * A TLS socket built by hand (not by tls.Server) does not check the client
 * certificate it asked for: tls.Server does it in its 'secure' handler with
 * the OpenSSL verify result. This does the same.
 */
function clientCertificateProblem(socket: TLSSocket): FailureReason | undefined {
  const ssl = (socket as unknown as { ssl?: { verifyError(): Error | null } | null }).ssl;
  if (ssl === undefined || ssl === null) return 'closed';
  const error = ssl.verifyError();
  socket.authorized = error === null;
  if (error === null) return undefined;
  socket.authorizationError = error;
  return 'certificate';
}

function describe(err: unknown): string {
  const key = (err as { key?: string }).key;
  const message = err instanceof Error ? err.message : String(err);
  return key === undefined ? message : `${key}: ${message}`;
}

/**
 * One TLS handshake, watched from start to its single outcome: "ok", or the
 * reason it failed, counted once in ftp_alg_tls_handshakes_total. The outcome
 * promise never rejects (a forgotten rejection must not crash the process).
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

export type HandshakeOutcome = { readonly ok: true } | { readonly ok: false; readonly reason: string; readonly error?: Error };

/** Why a handshake failed, in a small fixed set (metric label values). */
export type FailureReason =
  | 'timeout' // the owner's deadline passed first
  | 'aborted' // the owner gave up for another reason (session or pinhole closed)
  | 'closed' // the peer closed or reset before finishing
  | 'not-tls' // the peer spoke something else (cleartext FTP, HTTP)
  | 'version' // no TLS version in common (minVersion)
  | 'cipher' // no cipher in common
  | 'certificate' // a certificate missing, untrusted, expired or for another name
  | 'protocol'; // any other TLS error

const CERTIFICATE = /CERT|UNABLE_TO_|SELF_SIGNED|ALTNAME|PEER_DID_NOT_RETURN|UNKNOWN_CA|UNSUPPORTED_CERTIFICATE|ISSUER/;

export function failureReason(err: Error): FailureReason {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (/^(ECONNRESET|EPIPE|ECONNABORTED|ERR_SOCKET_CLOSED|ERR_STREAM_PREMATURE_CLOSE)$/.test(code)) return 'closed';
  if (/WRONG_VERSION_NUMBER|HTTP_REQUEST|UNKNOWN_PROTOCOL|PACKET_LENGTH_TOO_LONG|RECORD_LAYER_FAILURE/.test(code)) return 'not-tls';
  if (/UNSUPPORTED_PROTOCOL|PROTOCOL_VERSION|VERSION_TOO_LOW|NO_PROTOCOLS_AVAILABLE/.test(code)) return 'version';
  if (/NO_SHARED_CIPHER|NO_CIPHERS|HANDSHAKE_FAILURE/.test(code)) return 'cipher';
  if (CERTIFICATE.test(code)) return 'certificate';
  return 'protocol';
}

export interface HandshakeOptions {
  readonly socket: TLSSocket;
  /** The TCP socket under `socket`: reset to cut the connection without a FIN. */
  readonly raw: Socket;
  /** 'secure' on the server side, 'secureConnect' on the client side. */
  readonly event: 'secure' | 'secureConnect';
  /** After the event: a reason to refuse the peer (its certificate), or undefined. */
  readonly check?: (socket: TLSSocket) => FailureReason | undefined;
  /** Told the outcome once ('ok' or a reason), for the metric. */
  readonly record: (result: string) => void;
}

export class Handshake {
  readonly socket: TLSSocket;
  readonly outcome: Promise<HandshakeOutcome>;
  private settle: (outcome: HandshakeOutcome) => void = () => undefined;
  private result: HandshakeOutcome | undefined;
  private readonly listeners: ((outcome: HandshakeOutcome) => void)[] = [];

  constructor(private readonly options: HandshakeOptions) {
    this.socket = options.socket;
    this.outcome = new Promise((resolve) => {
      this.settle = resolve;
    });
    const { socket, raw, event, check } = options;
    carriers.set(socket, raw);
    raw.on('error', () => undefined); // reported by the TLS socket over it
    socket.once(event, () => {
      const refused = check?.(socket);
      if (refused === undefined) this.finish({ ok: true });
      else this.fail(refused);
    });
    socket.on('error', (error: Error) => this.fail(failureReason(error), error));
    socket.once('close', () => this.fail('closed'));
    socket.once('end', () => this.fail('closed')); // half-open sockets: a FIN mid-handshake does not close
  }

  /** The handshake finished and the peer was accepted. */
  get secured(): boolean {
    return this.result?.ok === true;
  }

  /** `listener` is told the outcome synchronously when it is known (at once if it already is). */
  onSettled(listener: (outcome: HandshakeOutcome) => void): void {
    if (this.result === undefined) this.listeners.push(listener);
    else listener(this.result);
  }

  /** Stop waiting (a deadline, the owner closing): fails the handshake if it is still running. */
  abandon(reason: 'timeout' | 'aborted'): void {
    this.fail(reason);
  }

  private fail(reason: FailureReason, error?: Error): void {
    if (this.result !== undefined) return;
    this.finish(error === undefined ? { ok: false, reason } : { ok: false, reason, error });
    cut(this.options.raw, this.socket);
  }

  private finish(outcome: HandshakeOutcome): void {
    if (this.result !== undefined) return;
    this.result = outcome;
    this.options.record(outcome.ok ? 'ok' : outcome.reason);
    this.settle(outcome);
    for (const listener of this.listeners.splice(0)) listener(outcome);
  }
}

/** The TCP socket under each TLS socket a Handshake watches. */
const carriers = new WeakMap<Socket, Socket>();

/**
 * Cut `socket` with a TCP reset if it is a TLS socket of ours; false if it is
 * not one (a TLS socket's own `resetAndDestroy` cannot reset: its handle is
 * the TLS layer, not TCP).
 */
export function resetTls(socket: Socket): boolean {
  const raw = carriers.get(socket);
  if (raw === undefined) return false;
  cut(raw, socket as TLSSocket);
  return true;
}

/** End a TLS connection with a TCP reset (no close_notify, no FIN): what a failed or cut transfer must look like. */
export function cut(raw: Socket, socket: TLSSocket): void {
  socket.pause();
  // Not from inside a TLS callback (a 'secure' handler refusing a certificate): closing
  // the TCP handle under a TLS layer still at work crashes the process. Next turn.
  setImmediate(() => {
    if (!raw.destroyed) {
      try {
        raw.resetAndDestroy();
      } catch {
        raw.destroy();
      }
    }
    socket.destroy();
  });
}

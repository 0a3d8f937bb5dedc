/**
 * The vocabulary of the control room: what the sans-IO core (protocol.ts)
 * is told, and the actions it asks Session to perform. Nothing here does
 * any I/O.
 */
import type { ClientAddressPolicy, UpstreamDataMode } from '../config/types.js';

/** Addresses of the two control connections, normalised (no `::ffff:`); '' until known. */
export interface Endpoints {
  readonly client: string;
  readonly clientLocal: string;
  readonly upstream: string;
  readonly upstreamLocal: string;
}

/** A complete reply of the upstream: its last line, and the earlier lines when they were collected. */
export interface FinalReply {
  readonly code: number;
  readonly text: string;
  readonly raw: Buffer;
  readonly parts: readonly Buffer[];
}

/** FTPS as the control core sees it (the files and certificates live in Session's TLS room). */
export interface ControlTls {
  /** `required`: nothing but AUTH, FEAT, NOOP, HELP, SYST, QUIT before TLS. */
  readonly client: 'optional' | 'required';
  /** The client control connection is TLS from its first byte (port 990 style). */
  readonly implicit: boolean;
  readonly upstream: 'plain' | 'explicit' | 'implicit';
  /** Data connections need `PROT P`. */
  readonly requireProtP: boolean;
}

/** The part of a site's configuration the core decides with. */
export interface ControlSettings {
  readonly activeMode: { readonly enabled: boolean; readonly clientAddress: ClientAddressPolicy; readonly sourcePort20: boolean };
  readonly upstreamDataMode: UpstreamDataMode;
  /** `auto`, or one address per family. */
  readonly externalAddress: readonly string[] | 'auto';
  /** `auto` (the upstream control connection's local address) or an address. */
  readonly privateAddress: string;
  /** Answer to AUTH when the site has no TLS. */
  readonly ftps: 'refuse' | 'deny';
  readonly tls: ControlTls | undefined;
  /**
   * The gateway greets the client itself and connects upstream only when the client names a route
   * (USER, HOST, SITE or OPEN): forward proxies and routing by user or host.
   */
  readonly greetFirst?: boolean;
  /**
   * Transparent outbound sites: PASV/EPSV go to the server and its reply reaches the client naming the
   * server's own control address (a 227 naming another host is rewritten to it; a privileged port is 425):
   * the client dials the server's data port itself, through the edge's NAT. No pinhole.
   */
  readonly passiveDirect?: boolean;
}

/** The commands that name a route on a greet-first site. */
export type RouteVerb = 'USER' | 'HOST' | 'SITE' | 'OPEN';

/** One leg of a pinhole: it listens for its peer, or connects to it. */
export type LegSpec =
  | { readonly kind: 'listen'; readonly host: string; readonly pool: 'passive' | 'active'; readonly expectedPeer: string }
  | {
      readonly kind: 'connect';
      readonly host: string;
      readonly port: number;
      readonly localAddress?: string;
      /** 20 when the site originates active data connections from port 20. */
      readonly fromPort20?: boolean;
    };

export interface PinholeSpec {
  readonly id: number;
  /** `passive`: the client connects in; `active`: the client is connected to. */
  readonly dir: 'passive' | 'active';
  readonly client: LegSpec;
  readonly upstream: LegSpec;
  /** Which legs carry TLS: the client's after `PROT P`, the upstream's when the gateway speaks FTPS upstream. */
  readonly tls: { readonly client: boolean; readonly upstream: boolean };
}

/** A transparent site's direct passive data connection: `client` dials `server`:`port` itself. */
export interface ForwardSpec {
  readonly id: number;
  readonly client: string;
  readonly server: string;
  readonly port: number;
}

/** Ports a pinhole listens on, once open. */
export interface PinholePorts {
  readonly client: number | undefined;
  readonly upstream: number | undefined;
}

/** Something Session logs and counts (the core has no logger). */
export type Note =
  /** A client command answered with a refusal by the gateway. */
  | { readonly kind: 'refused'; readonly verb: string; readonly reason: string }
  /** Peer input the codec or the core would not accept. */
  | { readonly kind: 'rejected'; readonly side: 'client' | 'upstream'; readonly reason: string; readonly detail?: string }
  /** A data connection that could not be set up. */
  | { readonly kind: 'pinhole-refused'; readonly reason: string }
  /** Lines dropped on purpose (plaintext pipelined behind AUTH TLS, reply lines beyond the collect cap). */
  | { readonly kind: 'discarded'; readonly side: 'client' | 'upstream'; readonly reason: string; readonly lines: number };

export type Action =
  | { readonly type: 'toClient'; readonly line: Buffer }
  | { readonly type: 'toUpstream'; readonly line: Buffer }
  /** The 234 to AUTH has just been written: start TLS on the client control connection. */
  | { readonly type: 'secureClient' }
  /** The upstream accepted AUTH TLS: start TLS toward it. */
  | { readonly type: 'secureUpstream' }
  | { readonly type: 'openPinhole'; readonly spec: PinholeSpec }
  /** Let the client's direct data connection to the server through (transparent sites' PASV/EPSV); answered like a pinhole. */
  | { readonly type: 'openForward'; readonly spec: ForwardSpec }
  /** Close pinholes: those still waiting for their peer, all of them, or one by id. */
  | { readonly type: 'closePinholes'; readonly which: 'waiting' | 'all' | number; readonly reason: string }
  /** The newest pinhole serves this transfer command (for logs). */
  | { readonly type: 'label'; readonly verb: string }
  | { readonly type: 'loggedIn' }
  /** Greet-first: the client named a route (`USER alice@ftp.example.org`, `HOST ftp.a.example`, ...). */
  | { readonly type: 'route'; readonly verb: RouteVerb; readonly arg: string }
  /** The upstream's greeting was not 220: try another upstream, or end with `reply`. */
  | { readonly type: 'upstreamRefused'; readonly reply: Buffer }
  /** The upstream greeted with 2xx (and its TLS is up if configured): the session is ready. */
  | { readonly type: 'ready' }
  | { readonly type: 'note'; readonly note: Note }
  /** End the session; `farewell` is written to the client first. */
  | { readonly type: 'end'; readonly reason: EndReason; readonly farewell?: Buffer };

/** Why a session ended; each has one farewell, chosen in replies.ts. */
export type EndReason =
  | 'client-closed'
  | 'client-quit'
  | 'route-refused'
  | 'client-error'
  | 'upstream-closed'
  | 'upstream-closed-greeting'
  | 'upstream-error'
  | 'upstream-connect-failed'
  | 'upstream-connect-timeout'
  | 'upstream-refused'
  | 'upstream-line-too-long'
  | 'upstream-tls-failed'
  | 'client-tls-failed'
  | 'greeting-timeout'
  | 'login-timeout'
  | 'control-idle'
  | 'too-many-pipelined'
  | 'ftps-denied'
  | 'drained'
  | 'evicted'
  | 'shutdown'
  | 'internal-error';

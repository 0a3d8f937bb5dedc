/** The validated, frozen configuration handed to the gateway. */

export interface PortRange {
  readonly min: number;
  readonly max: number;
}

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** What a listener expects first on a connection; what an upstream connection gets first. */
export type ProxyProtocolMode = 'off' | 'v1' | 'v2' | 'any';

export interface ListenConfig extends Endpoint {
  readonly proxyProtocol: ProxyProtocolMode;
  /** CIDR blocks whose PROXY headers are believed. */
  readonly trustedProxies: readonly string[];
}

export interface UpstreamConfig extends Endpoint {
  /** Pool members besides `host`; normalised. */
  readonly hosts: readonly string[];
  /** DNS name whose addresses form the pool; '' if none. */
  readonly dns: string;
  readonly resolveIntervalMs: number;
  /** Members one session may try. */
  readonly maxAttempts: number;
  readonly health: UpstreamHealthConfig;
  readonly proxyProtocol: Exclude<ProxyProtocolMode, 'any'>;
  readonly proxyProtocolData: boolean;
  /** Greeted connections kept ready per member (0: off); see edge/WarmUpstreams.ts. */
  readonly warm: number;
  readonly warmMaxAgeMs: number;
}

export interface UpstreamHealthConfig {
  readonly enabled: boolean;
  readonly consecutiveFailures: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectedPercent: number;
  readonly idleProbeMs: number;
  readonly probeTimeoutMs: number;
  readonly check: { readonly user: string; readonly password: string };
}

export type DataPlaneKind = 'relay' | 'nftables' | 'auto';
/** `reverse` fronts fixed upstreams; `forward` and `transparent` serve inside clients (outbound). */
export type SiteRole = 'reverse' | 'forward' | 'transparent';

/** Which servers an outbound site may connect to (as written in the config, normalised). */
export interface Destinations {
  /** Addresses and CIDR blocks (and, on forward sites, host names); empty: any public address. */
  readonly allow: readonly string[];
  readonly deny: readonly string[];
  /** Port numbers and "lo-hi" ranges. */
  readonly ports: readonly (number | string)[];
}

export type UpstreamDataMode = 'client' | 'passive' | 'active';

/** Routing on a reverse site by what the client says before login. */
export interface RoutingConfig {
  /** `none`: the gateway connects at once; `user`: by USER; `host`: by RFC 7151 HOST. */
  readonly by: 'none' | 'user' | 'host';
  /** User name → upstream address (exact match); other users by rendezvous hashing over the pool. */
  readonly users: Readonly<Record<string, string>>;
  /** HOST name (lower case) → upstream address. */
  readonly hosts: Readonly<Record<string, string>>;
}
export type FtpsPolicy = 'refuse' | 'deny';
export type ClientAddressPolicy = 'strict' | 'substitute';

export interface SiteTimeouts {
  /** Deadline for a PROXY protocol header. */
  readonly proxyHeaderMs: number;
  readonly upstreamConnectMs: number;
  readonly greetingMs: number;
  readonly controlIdleMs: number;
  /** Deadline to complete login (0: none). */
  readonly loginMs: number;
  readonly pinholeAcceptMs: number;
  readonly dataIdleMs: number;
}

export interface SiteLimits {
  readonly maxSessions: number;
  readonly maxSessionsPerClient: number;
  readonly maxPinholesPerSession: number;
  readonly maxPinholesPerClient: number;
  readonly maxLineBytes: number;
}

export type TlsClientPolicy = 'optional' | 'required';
export type TlsUpstreamMode = 'plain' | 'explicit' | 'implicit';
export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/** `sites[].tls`, validated: its files were readable and the key matched the certificate. */
export interface SiteTlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  readonly client: TlsClientPolicy;
  readonly implicit: boolean;
  readonly upstream: TlsUpstreamMode;
  /** '' for the system CAs. */
  readonly upstreamCaFile: string;
  readonly upstreamInsecure: boolean;
  /** '' for no client certificates. */
  readonly clientCaFile: string;
  readonly minVersion: TlsVersion;
  /** Resolved: the null default became `client === 'required'`. */
  readonly requireProtP: boolean;
  readonly allowCcc: boolean;
}

export interface SiteConfig {
  readonly name: string;
  /** Absent on reverse sites (the default), so their config reads back as it was written. */
  readonly role?: Exclude<SiteRole, 'reverse'>;
  /** Forward and transparent sites: the destination policy. */
  readonly destinations?: Destinations;
  /** Transparent sites: PASV/EPSV replies passed on (`direct`) or rewritten to a pinhole. */
  readonly transparentPassive?: 'direct' | 'pinhole';
  readonly listen: ListenConfig;
  readonly upstream: UpstreamConfig;
  /** `auto`, or one address per family (at most one IPv4 and one IPv6). */
  readonly externalAddress: readonly string[] | 'auto';
  /** Address the upstream sees for active-mode pinholes; `auto` is the upstream control connection's local address. */
  readonly privateAddress: string;
  readonly passivePorts: PortRange;
  readonly activePorts: PortRange;
  readonly upstreamDataMode: UpstreamDataMode;
  readonly activeMode: {
    readonly enabled: boolean;
    readonly clientAddress: ClientAddressPolicy;
    readonly sourcePort20: boolean;
  };
  readonly ftps: FtpsPolicy;
  /** TLS termination; absent: AUTH is answered per `ftps`. */
  readonly tls?: SiteTlsConfig;
  readonly clients: { readonly allow: readonly string[]; readonly deny: readonly string[] };
  readonly routing: RoutingConfig;
  readonly timeouts: SiteTimeouts;
  readonly limits: SiteLimits;
}

export type ControlPolicy = 'other' | 'rr' | 'fifo';

/** The control thread's scheduling (`controlPriority`). */
export interface ControlPriority {
  /** "other": the ordinary policy (only `nice` applies); "rr" or "fifo": real time at `priority`. */
  readonly policy: ControlPolicy;
  /** Real-time priority, 1-99, for rr and fifo. */
  readonly priority: number;
  /** Nice of the control thread, -20 to 0, for other. */
  readonly nice: number;
  /** CPUs the control thread is pinned to (the data workers take the others); []: unchanged. */
  readonly cpus: readonly number[];
}

export interface GatewayConfig {
  readonly log: { readonly level: string };
  readonly metrics: { readonly listen: string };
  readonly shutdown: { readonly drainTimeoutMs: number };
  readonly limits: { readonly maxSessions: number };
  readonly dataPlane: { readonly workers: number; readonly workerNice: number; readonly kind: DataPlaneKind };
  /** The control thread's scheduling, applied at start (policy "other" at nice 0: unchanged). */
  readonly controlPriority: ControlPriority;
  /** This instance among `count` behind one address (0 of 1: alone). */
  readonly instance: { readonly index: number; readonly count: number };
  readonly sites: readonly SiteConfig[];
}

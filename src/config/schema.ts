/**
 * The one configuration schema: global keys, and the schema every item of
 * `sites` is validated against (convict's source-array pattern).
 */
import {
  assertCidrList,
  assertRouteList,
  assertExternalAddress,
  assertIp,
  assertIpList,
  assertIpOrAuto,
  assertIpOrEmpty,
  assertListenAddressOrOff,
  assertPort,
  assertCount,
  assertNice,
  assertRaisingNice,
  assertRealtimePriority,
  assertCpuList,
  assertDestinationList,
  assertPortSpecList,
  assertPositiveInt,
  assertRangePort,
  assertBooleanOrNull,
  assertNonNegativeInt,
  assertPercent,
  assertLineText,
} from './formats.js';

const positive = (doc: string, value: number) => ({ doc, format: assertPositiveInt, default: value });
const range = (doc: string, min: number, max: number) => ({
  min: { doc: `${doc}: first port`, format: assertRangePort, default: min },
  max: { doc: `${doc}: last port`, format: assertRangePort, default: max },
});

export const siteSchema = {
  name: { doc: 'Name of the site, used in logs and metrics.', format: String, default: '' },
  role: {
    doc: 'What the site does: "reverse" fronts its upstream servers; "forward" is an explicit FTP proxy (USER user@host, SITE host, OPEN host); "transparent" serves inside clients whose tcp/21 the edge redirects to it (the server is the connection\'s original destination, from conntrack).',
    format: ['reverse', 'forward', 'transparent'],
    default: 'reverse',
  },
  destinations: {
    allow: {
      doc: 'Forward and transparent sites: servers that may be reached (addresses, CIDR blocks; host names on forward sites, resolved once per session); empty: any public address. Required on a forward site whose listener is not loopback.',
      format: assertDestinationList,
      default: [] as string[],
    },
    deny: { doc: 'Forward and transparent sites: servers refused, checked before allow (same forms).', format: assertDestinationList, default: [] as string[] },
    ports: { doc: 'Forward and transparent sites: destination ports allowed, numbers or "lo-hi" ranges.', format: assertPortSpecList, default: [21] as (number | string)[] },
  },
  transparentPassive: {
    doc: 'Transparent sites, PASV/EPSV: "direct" passes the server\'s reply on (its address checked) and the client dials the server through the edge\'s NAT; "pinhole" rewrites it to a passive pinhole on the gateway as on a reverse site.',
    format: ['direct', 'pinhole'],
    default: 'direct',
  },
  listen: {
    host: { doc: 'Address the control listener binds to.', format: assertIp, default: '0.0.0.0' },
    port: { doc: 'Port of the control listener (0: any free port).', format: assertPort, default: 21 },
    proxyProtocol: {
      doc: 'PROXY protocol header expected first on each client connection (behind a balancer): "off", "v1" (text), "v2" (binary) or "any"; the carried client address is then used for allow/deny, limits, pinholes, logs.',
      format: ['off', 'v1', 'v2', 'any'],
      default: 'off',
    },
    trustedProxies: {
      doc: 'CIDR blocks of the balancers allowed to send a PROXY header; a connection from any other address is closed unanswered. Required when proxyProtocol is on.',
      format: assertCidrList,
      default: [] as string[],
    },
  },
  upstream: {
    host: { doc: 'Address of the upstream FTP server (or use hosts, or dns).', format: assertIpOrEmpty, default: '' },
    port: { doc: 'Control port of the upstream FTP server(s).', format: assertPort, default: 21 },
    hosts: { doc: 'An upstream pool: addresses of several FTP servers; each session picks one.', format: assertIpList, default: [] as string[] },
    dns: { doc: 'An upstream pool by DNS name (e.g. a Kubernetes headless Service), re-resolved periodically.', format: String, default: '' },
    resolveIntervalMs: positive('How often the dns name is resolved again.', 30_000),
    healthCheckIntervalMs: {
      doc: 'Deprecated: the former TCP-connect check interval, now read as health.idleProbeMs when that is 0; 0: not set.',
      format: assertNonNegativeInt,
      default: 0,
    },
    maxAttempts: positive('Pool members one session may try before its client hears 421: a member that refuses, resets or does not greet is retried on another.', 3),
    health: {
      enabled: { doc: 'Passive health from real sessions, ejection and probes; false: every member always takes sessions.', format: Boolean, default: true },
      consecutiveFailures: positive('Failures in a row (connect refused or timed out, reset or no greeting, a 4xx/5xx greeting) that eject a member.', 3),
      baseEjectionMs: positive('First ejection time; it doubles with each ejection that follows within maxEjectionMs of the last return.', 10_000),
      maxEjectionMs: positive('Longest ejection time; also how long a member must stay back before its ejection time starts again from the base.', 300_000),
      maxEjectedPercent: { doc: 'Most of a pool ejected at once, in percent; at least one member may go, the last in service never does.', format: assertPercent, default: 50 },
      idleProbeMs: {
        doc: 'Probe a member no session reached successfully for this long; 0: only ejected or failing members are probed.',
        format: assertNonNegativeInt,
        default: 0,
      },
      probeTimeoutMs: positive('Deadline for a whole probe: connect, greeting, login if any, QUIT and 221.', 5_000),
      check: {
        user: { doc: 'Probes log in as this user and send NOOP before QUIT; "": greeting and QUIT only.', format: assertLineText, default: '' },
        password: { doc: 'Password of health.check.user.', format: assertLineText, default: '' },
      },
    },
    warm: {
      doc: 'Upstream control connections kept made and greeted ahead of sessions, per member in service: a new session takes one and its client hears the greeting at once, without waiting for the upstream to connect and greet (the upstream sees these connections idle before login; 0: off). Not with upstream.proxyProtocol, tls.upstream "implicit" or routing by user or host.',
      format: assertNonNegativeInt,
      default: 0,
    },
    warmMaxAgeMs: positive('A warm connection no session took within this time is closed (QUIT) and replaced: keep it under the upstream servers\' login timeout.', 20_000),
    proxyProtocol: {
      doc: 'PROXY protocol header written first on each upstream control connection, naming the client: "off", "v1" (text) or "v2" (binary).',
      format: ['off', 'v1', 'v2'],
      default: 'off',
    },
    proxyProtocolData: {
      doc: 'Also write the PROXY header on each data connection the gateway makes to the upstream (needs upstream.proxyProtocol).',
      format: Boolean,
      default: false,
    },
  },
  externalAddress: {
    doc: 'Address written into 227 replies and shown to clients: "auto" (local address of the client connection), an IP, or one IPv4 and one IPv6.',
    format: assertExternalAddress,
    default: 'auto' as string | string[],
  },
  privateAddress: {
    doc: 'Address active-mode pinholes bind to and announce upstream: "auto" (local address of the upstream connection) or an IP.',
    format: assertIpOrAuto,
    default: 'auto',
  },
  passivePorts: range('Ports of passive-mode pinholes (client connects in)', 50000, 50999),
  activePorts: range('Ports of active-mode pinholes (upstream connects in)', 51000, 51999),
  upstreamDataMode: {
    doc: 'How data connections are made upstream: "client" (as the client asked), "passive" (always PASV/EPSV), "active" (always PORT/EPRT).',
    format: ['client', 'passive', 'active'],
    default: 'client',
  },
  activeMode: {
    enabled: { doc: 'Accept PORT/EPRT from clients.', format: Boolean, default: true },
    clientAddress: {
      doc: 'PORT/EPRT naming another address than the control client: "strict" refuses it (RFC 2577), "substitute" uses the control client address instead.',
      format: ['strict', 'substitute'],
      default: 'strict',
    },
    sourcePort20: {
      doc: 'Originate active data connections to clients from port 20 (needs CAP_NET_BIND_SERVICE).',
      format: Boolean,
      default: false,
    },
  },
  ftps: {
    doc: 'Answer to AUTH TLS/SSL: "refuse" (534, clients may fall back to cleartext) or "deny" (534 and close).',
    format: ['refuse', 'deny'],
    default: 'refuse',
  },
  routing: {
    by: {
      doc: 'Choose the upstream by what the client says before login: "none" (connect at once), "user" (by USER: the users map, else consistent hashing over the pool), "host" (by RFC 7151 HOST: the hosts map).',
      format: ['none', 'user', 'host'],
      default: 'none',
    },
    users: {
      doc: 'For routing.by "user": a list of { user, upstream } (exact user name to upstream address); other users go by consistent hashing over the pool.',
      format: assertRouteList('user'),
      default: [] as { user: string; upstream: string }[],
    },
    hosts: { doc: 'For routing.by "host": a list of { name, upstream } (HOST name to upstream address).', format: assertRouteList('name'), default: [] as { name: string; upstream: string }[] },
  },
  clients: {
    allow: { doc: 'CIDR blocks allowed to connect (empty: everyone).', format: assertCidrList, default: [] as string[] },
    deny: { doc: 'CIDR blocks refused, checked before allow.', format: assertCidrList, default: [] as string[] },
  },
  timeouts: {
    proxyHeaderMs: positive('Deadline for the PROXY protocol header on a client connection (listen.proxyProtocol); after it the connection is closed.', 5_000),
    upstreamConnectMs: positive('Deadline to connect to the upstream control port.', 5_000),
    greetingMs: positive('Deadline for the upstream greeting (220).', 10_000),
    controlIdleMs: positive('Control connection idle time before the session ends (no transfer running).', 300_000),
    loginMs: {
      doc: 'Deadline to complete login (a 230 from the upstream) from the connection on; 0 turns it off.',
      format: 'nat',
      default: 30_000,
    },
    pinholeAcceptMs: positive('Deadline for the expected peer to connect to a pinhole.', 15_000),
    dataIdleMs: positive('Data connection idle time before the transfer is cut.', 120_000),
  },
  limits: {
    maxSessions: positive('Sessions at once on this site; when full, the oldest idle session not logged in makes room.', 1_000),
    maxSessionsPerClient: positive(
      'Sessions at once from one client address (a whole office behind one NAT, a sync tool with many connections); when full, its oldest idle session not logged in makes room.',
      128,
    ),
    maxPinholesPerSession: positive('Pinholes open at once in one session.', 2),
    maxPinholesPerClient: positive('Pinholes open at once for one client address, all its sessions together (one client never drains the pool).', 128),
    maxLineBytes: positive('Longest control line accepted, CRLF included.', 2_048),
  },
};

/**
 * `sites[].tls`: optional. Without it the site refuses or denies AUTH (the
 * `ftps` key); with it the gateway terminates TLS on both channels.
 */
export const tlsSchema = {
  certFile: { doc: 'PEM certificate chain the gateway shows its clients, on control and data connections.', format: String, default: '' },
  keyFile: { doc: 'PEM private key of certFile (unencrypted).', format: String, default: '' },
  client: {
    doc: 'Clients: "optional" (AUTH TLS accepted, cleartext allowed) or "required" (login and transfers only after AUTH TLS).',
    format: ['optional', 'required'],
    default: 'optional',
  },
  implicit: { doc: 'The site listener speaks TLS from the first byte (implicit FTPS, port 990 style).', format: Boolean, default: false },
  upstream: {
    doc: 'TLS toward the upstream: "plain" (none), "explicit" (AUTH TLS, PBSZ 0, PROT P) or "implicit" (TLS from the first byte).',
    format: ['plain', 'explicit', 'implicit'],
    default: 'plain',
  },
  upstreamCaFile: { doc: 'PEM CA bundle the upstream certificate is verified against; "" uses the system CAs.', format: String, default: '' },
  upstreamInsecure: { doc: 'Accept any upstream certificate, unverified (tests and labs only).', format: Boolean, default: false },
  clientCaFile: { doc: 'PEM CA bundle; when set, clients must present a certificate it signed (control and data connections).', format: String, default: '' },
  minVersion: { doc: 'Lowest TLS version accepted from clients and toward the upstream.', format: ['TLSv1.2', 'TLSv1.3'], default: 'TLSv1.2' },
  requireProtP: {
    doc: 'Transfers need PROT P (a protected data channel); null: true when client is "required", else false.',
    format: assertBooleanOrNull,
    default: null as boolean | null,
  },
  allowCcc: { doc: 'Accept CCC (the control channel back to cleartext after login). Reserved: CCC is refused with 534 either way for now.', format: Boolean, default: false },
};

export const rootSchema = {
  log: {
    level: {
      doc: 'Log level.',
      format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
    },
  },
  metrics: {
    listen: {
      doc: 'Address of the metrics and health HTTP listener, "host:port"; "" turns it off.',
      format: assertListenAddressOrOff,
      default: '',
    },
  },
  shutdown: {
    drainTimeoutMs: positive('On SIGTERM, how long running sessions may finish before they are closed.', 30_000),
  },
  limits: {
    maxSessions: positive('Sessions at once in the whole process; when full, the oldest idle session not logged in makes room.', 10_000),
  },
  instance: {
    index: {
      doc: 'This instance among several behind one public address, from 0; it serves only its slice of every passive range. Read at start.',
      format: 'nat',
      default: 0,
    },
    count: positive('How many instances share the public address (each passive range is cut into this many disjoint slices); 1: no slicing.', 1),
  },
  dataPlane: {
    workers: {
      doc: 'Worker threads that relay data connections (each owns a disjoint shard of every port range); 0 relays on the control loop. Set it to the number of cores minus one on a busy edge.',
      format: assertCount,
      default: 0,
    },
    workerNice: {
      doc: 'How much lower than the control loop the data workers run (Linux nice of their threads, 0-19): a worker busy relaying then never delays control replies. 0 runs them at the same priority.',
      format: assertNice,
      default: 10,
    },
    kind: {
      doc: 'What forwards data connections: "relay" (userspace, no privilege), "nftables" (the kernel forwards them; needs CAP_NET_ADMIN, IP forwarding, nft and conntrack), "auto" (nftables when the process has CAP_NET_ADMIN and forwarding is on, else relay). Read at start.',
      format: ['relay', 'nftables', 'auto'],
      default: 'relay',
    },
  },
  controlPriority: {
    policy: {
      doc: 'Scheduling of the control thread (Linux, read at start): "other" the ordinary policy, raised only by controlPriority.nice; "rr" or "fifo" real time at controlPriority.priority, so control replies wait for no ordinary thread of the machine (bulk transfers, the kernel\'s forwarding threads). Only the control thread is raised; threads and processes it starts run at the ordinary priority. Needs CAP_SYS_NICE (or RLIMIT_RTPRIO / RLIMIT_NICE); without it the gateway warns and runs unchanged.',
      format: ['other', 'rr', 'fifo'],
      default: 'other',
    },
    priority: { doc: 'Real-time priority of the control thread with policy rr or fifo, 1-99 (1 is enough to run before every ordinary thread).', format: assertRealtimePriority, default: 1 },
    nice: { doc: 'Nice of the control thread with policy other, -20 to 0 (0: unchanged).', format: assertRaisingNice, default: 0 },
    cpus: {
      doc: 'CPUs the control thread runs on (Linux, read at start), e.g. [0]; the data workers then run on the process\'s other CPUs. Pair it with the NIC\'s packet work steered to those other CPUs (RPS, IRQ affinity): the control thread\'s CPUs are then left to it. Needs no privilege. []: every CPU, unchanged.',
      format: assertCpuList,
      default: [] as number[],
    },
  },
  sites: {
    doc: 'The sites: one listener and upstream each.',
    format: 'site-array',
    default: [] as unknown[],
  },
};

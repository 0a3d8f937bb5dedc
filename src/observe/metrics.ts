/**
 * Every metric of the gateway, in one registry per gateway (so two gateways
 * in one process, as in tests, do not share counters).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export type Direction = 'passive' | 'active';
export type Flow = 'upload' | 'download';
/** Which connection a TLS handshake was on: the client's or the upstream's, control or data. */
export type TlsSide = 'client' | 'upstream' | 'data-client' | 'data-upstream';

/** One upstream pool member as the health metrics show it; `upstream` is its address. */
export interface MemberGauge {
  readonly site: string;
  readonly upstream: string;
  readonly up: boolean;
  readonly consecutiveFailures: number;
  /** Warm connections ready now (upstream.warm). */
  readonly warm: number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly sessionsActive: Gauge<'site'>;
  readonly sessionsTotal: Counter<'site'>;
  readonly sessionsRefused: Counter<'site' | 'reason'>;
  readonly pinholesOpen: Gauge<'site' | 'dir'>;
  readonly pinholesOpened: Counter<'site' | 'dir'>;
  readonly pinholesExpired: Counter<'site' | 'dir'>;
  readonly pinholesWrongPeer: Counter<'site' | 'dir'>;
  readonly pinholesRefused: Counter<'site' | 'reason'>;
  readonly portsFree: Gauge<'site' | 'dir'>;
  readonly bytes: Counter<'site' | 'flow'>;
  readonly transferSeconds: Histogram<'site'>;
  readonly upstreamConnectFailures: Counter<'site'>;
  readonly upstreamConnectSeconds: Histogram<'site'>;
  readonly parseRejects: Counter<'site' | 'side' | 'kind'>;
  readonly commandsRefused: Counter<'site' | 'verb' | 'reason'>;
  readonly tlsHandshakes: Counter<'site' | 'side' | 'result'>;
  readonly portsCapacity: Gauge<'site' | 'dir'>;
  readonly upstreamUp: Gauge<'site' | 'upstream'>;
  readonly upstreamEjections: Counter<'site' | 'upstream'>;
  readonly upstreamConsecutiveFailures: Gauge<'site' | 'upstream'>;
  readonly upstreamWarm: Gauge<'site' | 'upstream'>;
  readonly upstreamWarmTakes: Counter<'site' | 'outcome'>;
  readonly upstreamProbeSeconds: Histogram<'upstream'>;
  readonly dataPlane: Gauge<'kind'>;
  /** Counted by the kernel (nftables) data plane; the relay-only gateway has no such plane, so none yet. */
  readonly pinholesByPlane: Counter<'site' | 'plane' | 'reason'>;
  readonly kernelPlaneErrors: Counter<'op'>;
  readonly kernelPlaneDriver: Gauge<'driver'>;
  readonly reloads: Counter<'result'>;
  readonly lastReloadSuccessful: Gauge;
  readonly startTime: Gauge;
  readonly sessionsEvicted: Counter<'site' | 'scope'>;
  readonly sessionEnds: Counter<'site' | 'reason'>;
  /** Each site's role (1): outbound sites have no upstream series, and alerts on upstreams skip them. */
  readonly siteRole: Gauge<'site' | 'role'>;

  /** Filled in by the gateway: the free ports and size of every pool, read at scrape time. */
  freePorts: () => { site: string; dir: Direction; free: number; size: number }[] = () => [];
  /** Filled in by the gateway: every upstream member of every site, its health, read at scrape time. */
  upstreams: () => MemberGauge[] = () => [];
  /** Filled in by the gateway: every site's role, read at scrape time. */
  siteRoles: () => { site: string; role: string }[] = () => [];

  constructor() {
    const registers = [this.registry];
    this.sessionsActive = new Gauge({ name: 'ftp_alg_sessions_active', help: 'Sessions open now.', labelNames: ['site'], registers });
    this.sessionsTotal = new Counter({ name: 'ftp_alg_sessions_total', help: 'Sessions accepted.', labelNames: ['site'], registers });
    this.sessionsRefused = new Counter({ name: 'ftp_alg_sessions_refused_total', help: 'Connections refused, by reason.', labelNames: ['site', 'reason'], registers });
    this.pinholesOpen = new Gauge({ name: 'ftp_alg_pinholes_open', help: 'Pinholes open now.', labelNames: ['site', 'dir'], registers });
    this.pinholesOpened = new Counter({ name: 'ftp_alg_pinholes_opened_total', help: 'Pinholes opened.', labelNames: ['site', 'dir'], registers });
    this.pinholesExpired = new Counter({ name: 'ftp_alg_pinholes_expired_total', help: 'Pinholes closed unused at their accept deadline.', labelNames: ['site', 'dir'], registers });
    this.pinholesWrongPeer = new Counter({ name: 'ftp_alg_pinholes_wrong_peer_total', help: 'Connections to a pinhole from an unexpected address, refused.', labelNames: ['site', 'dir'], registers });
    this.pinholesRefused = new Counter({ name: 'ftp_alg_pinholes_refused_total', help: 'Pinholes not opened, by reason.', labelNames: ['site', 'reason'], registers });
    const metrics = this;
    this.portsFree = new Gauge({
      name: 'ftp_alg_ports_free',
      help: 'Free ports in the pinhole pool.',
      labelNames: ['site', 'dir'],
      registers,
      collect() {
        this.reset();
        for (const { site, dir, free } of metrics.freePorts()) this.set({ site, dir }, free);
      },
    });
    this.bytes = new Counter({ name: 'ftp_alg_bytes_total', help: 'Data bytes relayed.', labelNames: ['site', 'flow'], registers });
    this.transferSeconds = new Histogram({
      name: 'ftp_alg_transfer_duration_seconds',
      help: 'Duration of data transfers.',
      labelNames: ['site'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800],
      registers,
    });
    this.upstreamConnectFailures = new Counter({ name: 'ftp_alg_upstream_connect_failures_total', help: 'Failed upstream control connections.', labelNames: ['site'], registers });
    this.upstreamConnectSeconds = new Histogram({
      name: 'ftp_alg_upstream_connect_seconds',
      help: 'Time to connect to the upstream control port.',
      labelNames: ['site'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
    });
    this.parseRejects = new Counter({ name: 'ftp_alg_parse_rejects_total', help: 'Peer input refused by the codec, by side and kind.', labelNames: ['site', 'side', 'kind'], registers });
    this.commandsRefused = new Counter({ name: 'ftp_alg_commands_refused_total', help: 'Client commands answered with a refusal by the gateway.', labelNames: ['site', 'verb', 'reason'], registers });
    this.tlsHandshakes = new Counter({
      name: 'ftp_alg_tls_handshakes_total',
      help: 'TLS handshakes by side (client, upstream, data-client, data-upstream) and result (ok or why it failed).',
      labelNames: ['site', 'side', 'result'],
      registers,
    });
    this.portsCapacity = new Gauge({
      name: 'ftp_alg_ports_capacity',
      help: 'Ports in the pinhole pool (its range), so that 1 - free / capacity is the share in use.',
      labelNames: ['site', 'dir'],
      registers,
      collect() {
        this.reset();
        for (const { site, dir, size } of metrics.freePorts()) this.set({ site, dir }, size);
      },
    });
    const members = (name: string, help: string, value: (m: MemberGauge) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['site', 'upstream'] as const,
        registers,
        collect() {
          this.reset();
          for (const m of metrics.upstreams()) this.set({ site: m.site, upstream: m.upstream }, value(m));
        },
      });
    this.upstreamUp = members('ftp_alg_upstream_up', 'Upstream in service (1) or ejected or failing its checks (0).', (m) => (m.up ? 1 : 0));
    this.upstreamConsecutiveFailures = members(
      'ftp_alg_upstream_consecutive_failures',
      'Failures in a row met by sessions and probes of an upstream member.',
      (m) => m.consecutiveFailures,
    );
    this.upstreamWarm = members('ftp_alg_upstream_warm_connections', 'Warm upstream connections ready for new sessions (upstream.warm).', (m) => m.warm);
    this.upstreamWarmTakes = new Counter({
      name: 'ftp_alg_upstream_warm_takes_total',
      help: 'Sessions of sites with upstream.warm: "hit" took a warm connection, "miss" connected as without.',
      labelNames: ['site', 'outcome'],
      registers,
    });
    this.upstreamEjections = new Counter({ name: 'ftp_alg_upstream_ejections_total', help: 'Upstream members taken out of service by passive health.', labelNames: ['site', 'upstream'], registers });
    this.upstreamProbeSeconds = new Histogram({
      name: 'ftp_alg_upstream_probe_seconds',
      help: 'Duration of successful health probes (connect to 221), per upstream.',
      labelNames: ['upstream'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
    });
    this.siteRole = new Gauge({
      name: 'ftp_alg_site_role',
      help: 'Role of each site (1): "reverse" (fixed upstreams), "forward" or "transparent" (outbound: the server is chosen per session, no upstream series).',
      labelNames: ['site', 'role'],
      aggregator: 'max',
      registers,
      collect() {
        this.reset();
        for (const { site, role } of metrics.siteRoles()) this.set({ site, role }, 1);
      },
    });
    // Process-wide values are set by the gateway only; `max` keeps them when the workers' registries are merged in.
    this.dataPlane = new Gauge({ name: 'ftp_alg_data_plane', help: 'The data plane in use (1): "relay" or "nftables".', labelNames: ['kind'], aggregator: 'max', registers });
    this.pinholesByPlane = new Counter({
      name: 'ftp_alg_pinholes_by_plane_total',
      help: 'Pinholes by the plane that served them, and why: "kernel", or why one went to the relay ("family", "mode-conversion", "tls", "kernel-error", "source-port").',
      labelNames: ['site', 'plane', 'reason'],
      registers,
    });
    this.kernelPlaneDriver = new Gauge({
      name: 'ftp_alg_kernel_plane_driver',
      help: 'How the kernel data plane writes its elements (1): "netlink" (its own socket) or "nft" (a long-lived nft -i, slower: the netlink module did not load). No series on the relay plane.',
      labelNames: ['driver'],
      aggregator: 'max',
      registers,
    });
    this.kernelPlaneErrors = new Counter({ name: 'ftp_alg_kernel_plane_errors_total', help: 'Failed operations of the kernel data plane, by operation.', labelNames: ['op'], registers });
    this.reloads = new Counter({ name: 'ftp_alg_reloads_total', help: 'Configuration reloads (SIGHUP), by result: "ok" or "failed".', labelNames: ['result'], registers });
    this.lastReloadSuccessful = new Gauge({ name: 'ftp_alg_config_last_reload_successful', help: 'Whether the last reload succeeded (1) or failed (0): the running configuration is then older than the file.', aggregator: 'max', registers });
    this.startTime = new Gauge({ name: 'ftp_alg_start_time_seconds', help: 'Start time of the process, seconds since the Unix epoch.', aggregator: 'max', registers });
    this.sessionsEvicted = new Counter({
      name: 'ftp_alg_sessions_evicted_total',
      help: 'Sessions not logged in ended with 421 to admit a newcomer at a full cap, by scope (client, site, process).',
      labelNames: ['site', 'scope'],
      registers,
    });
    this.sessionEnds = new Counter({ name: 'ftp_alg_session_ends_total', help: 'Sessions ended, by reason (login-timeout, evicted, control-idle, ...).', labelNames: ['site', 'reason'], registers });
  }

  /** The process-wide values of the gateway process (not of its data workers). */
  initProcess(plane: 'relay' | 'nftables'): void {
    this.startTime.set(Math.round(performance.timeOrigin) / 1000);
    this.dataPlane.set({ kind: plane }, 1);
    this.lastReloadSuccessful.set(1);
    for (const result of ['ok', 'failed'] as const) this.reloads.inc({ result }, 0); // both series exist from the start, so increase() sees the first failure
  }

  reloaded(ok: boolean): void {
    this.reloads.inc({ result: ok ? 'ok' : 'failed' });
    this.lastReloadSuccessful.set(ok ? 1 : 0);
  }
}

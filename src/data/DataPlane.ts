/**
 * Where pinholes run. On the control loop (`InProcessDataPlane`, the default)
 * or in worker threads (`WorkerDataPlane`) so that bulk relaying never delays
 * accept() and control replies. Sessions see only `PinholeHandle`.
 */
import type { Logger } from '../observe/logger.js';
import type { Direction, Metrics } from '../observe/metrics.js';
import { Pinhole, type PinholeLeg, type PinholeState } from './Pinhole.js';
import { listenOnPool, poolLabel } from './portBinding.js';
import type { ShardedPool } from './ShardedPool.js';
import type { PinholeTls } from './tlsLeg.js';

export interface PinholeHandle {
  readonly state: PinholeState;
  /** The transfer command (RETR, STOR, LIST…) the data connection serves; '' until known. */
  command: string;
  readonly clientPort: number | undefined;
  readonly upstreamPort: number | undefined;
  readonly bytes: { readonly up: number; readonly down: number };
  open(): Promise<void>;
  close(reason: string): void;
  closed(): Promise<void>;
}

export type LegRequest =
  | { readonly kind: 'listen'; readonly host: string; readonly pool: ShardedPool; readonly expectedPeer: string }
  | Extract<PinholeLeg, { kind: 'connect' }>;

export interface PinholeRequest {
  readonly site: string;
  readonly dir: Direction;
  readonly client: LegRequest;
  readonly upstream: LegRequest;
  readonly acceptTimeoutMs: number;
  readonly dataIdleMs: number;
  readonly log: Logger;
  readonly metrics: Metrics;
  /**
   * Legs that carry TLS (FTPS with PROT P): `client`, the gateway is the TLS
   * server toward the client; `upstream`, the TLS client toward the upstream,
   * resuming the given session. Such a pinhole always runs on the control
   * loop, whatever the plane (its sockets and session cache live there).
   */
  readonly tls?: PinholeTls;
}

/**
 * A transparent site's direct passive data: the client dials the server's
 * own data port through the edge. A plane that can admit exactly that flow
 * (the kernel plane's forward entry) does so; others need nothing for it.
 */
export interface ForwardRequest {
  readonly site: string;
  readonly client: string;
  readonly server: string;
  readonly port: number;
  readonly acceptTimeoutMs: number;
  readonly log: Logger;
  readonly metrics: Metrics;
}

export interface DataPlane {
  /** What carries the bytes, for the start log line and `ftp_alg_data_plane{kind}`. */
  readonly kind: 'relay' | 'nftables';
  /** How many disjoint port shards the pools need (one per worker). */
  readonly shards: number;
  /** Set up what the plane needs before the first pinhole (a kernel table, helper processes). */
  start?(): Promise<void>;
  pinhole(request: PinholeRequest): PinholeHandle;
  /** Admit one direct flow (see ForwardRequest); absent: the edge's NAT carries it unaided. */
  forward?(request: ForwardRequest): PinholeHandle;
  /** Metrics kept by the data plane outside the gateway's own registry, as prom-client JSON. */
  metricsJson(): Promise<unknown[]>;
  close(): Promise<void>;
}

export class InProcessDataPlane implements DataPlane {
  readonly kind = 'relay';
  readonly shards = 1;

  pinhole(request: PinholeRequest, shard = 0): PinholeHandle {
    const label = poolLabel(request.site, request.dir);
    return new Pinhole({ ...request, client: inProcess(request.client, label, shard), upstream: inProcess(request.upstream, label, shard) });
  }

  async metricsJson(): Promise<unknown[]> {
    return [];
  }

  async close(): Promise<void> {}
}

/** A pinhole with a TLS leg: the worker plane runs it on the control loop. */
export function needsControlLoop(request: PinholeRequest): boolean {
  return request.tls?.client !== undefined || request.tls?.upstream !== undefined;
}

/** A listening leg binds on a shard of the pool (the only one, or one the worker plane picks), here on the control loop. */
function inProcess(leg: LegRequest, label: string, shard: number): PinholeLeg {
  if (leg.kind !== 'listen') return leg;
  const { pool, host, expectedPeer } = leg;
  return { kind: 'listen', expectedPeer, bind: () => listenOnPool(pool.shard(shard), host, label) };
}

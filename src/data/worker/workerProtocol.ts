/**
 * Messages between the control loop and the data-plane workers.
 *
 * Opening a pinhole: one `bind` per listening leg (the control loop picks the
 * port from the worker's shard, through the one allocate/bind path, and the
 * worker listens on exactly that port), then `open` with the legs. Each
 * listener's port is given back with `released` once it has closed.
 */
import type { Direction } from '../../observe/metrics.js';

export type LegName = 'client' | 'upstream';

/** What a worker is started with (its workerData). */
export interface WorkerSettings {
  /** Its slot, for log lines and shards. */
  readonly index: number;
  readonly logLevel: string;
  /** How much lower than the control loop its thread runs (Linux nice, 0-19). */
  readonly nice: number;
  /** The CPUs its thread moves to (those controlPriority.cpus left); undefined: the control thread's. */
  readonly cpus?: readonly number[] | undefined;
}

export type LegSpec =
  /** Listens on the port bound for this leg by an earlier `bind`. */
  | { readonly kind: 'listen'; readonly port: number; readonly expectedPeer: string }
  | { readonly kind: 'connect'; readonly host: string; readonly port: number; readonly localAddress?: string; readonly localPort?: number; readonly proxyHeader?: 1 | 2 };

export interface PinholeSpec {
  readonly site: string;
  readonly dir: Direction;
  readonly client: LegSpec;
  readonly upstream: LegSpec;
  readonly acceptTimeoutMs: number;
  readonly dataIdleMs: number;
  /** The session logger's bindings, so the worker's lines carry site, sid, client. */
  readonly bindings: Record<string, unknown>;
}

/** Messages that expect an `answer` carrying the same `req`. */
export type WorkerRequest =
  | { readonly t: 'bind'; readonly req: number; readonly id: number; readonly leg: LegName; readonly host: string; readonly port: number }
  | { readonly t: 'metrics'; readonly req: number };

export type ToWorker =
  | WorkerRequest
  | { readonly t: 'open'; readonly id: number; readonly spec: PinholeSpec }
  | { readonly t: 'close'; readonly id: number; readonly reason: string }
  | { readonly t: 'label'; readonly id: number; readonly command: string };

export interface WorkerAnswer {
  readonly t: 'answer';
  readonly req: number;
  /** Set when the request failed: the AlgError's code and message. */
  readonly error?: { readonly code: string; readonly message: string };
  /** The worker's metrics (prom-client JSON), for a `metrics` request. */
  readonly data?: unknown[];
}

export type FromWorker =
  | WorkerAnswer
  | { readonly t: 'relaying'; readonly id: number }
  | { readonly t: 'closed'; readonly id: number; readonly up: number; readonly down: number }
  | { readonly t: 'released'; readonly id: number; readonly port: number };

/** Messages between the control loop and the data-plane workers. */
import type { Direction } from '../../observe/metrics.js';

export type LegSpec =
  | { readonly kind: 'listen'; readonly host: string; readonly port: number; readonly expectedPeer: string }
  | { readonly kind: 'connect'; readonly host: string; readonly port: number; readonly localAddress?: string; readonly localPort?: number };

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

export type ToWorker =
  | { readonly t: 'open'; readonly id: number; readonly spec: PinholeSpec }
  | { readonly t: 'close'; readonly id: number; readonly reason: string }
  | { readonly t: 'label'; readonly id: number; readonly command: string }
  | { readonly t: 'metrics'; readonly req: number };

export type FromWorker =
  | { readonly t: 'opened'; readonly id: number }
  | { readonly t: 'failed'; readonly id: number; readonly code: string; readonly message: string }
  | { readonly t: 'relaying'; readonly id: number }
  | { readonly t: 'closed'; readonly id: number; readonly up: number; readonly down: number }
  | { readonly t: 'metrics'; readonly req: number; readonly data: unknown[] };

/**
 * What drives the elements of the gateway's table: one transaction of
 * element operations at a time (see ruleset.ts), every kernel answer checked.
 * Two drivers: netlink straight from the process, or a long-lived `nft -i`.
 */
import type { Counter, ElementOp } from './ruleset.js';

export interface ElementDriver {
  readonly name: 'netlink' | 'nft';
  /** Ready for `apply` (throws if it cannot start). */
  start(): void;
  /** Called once if the driver dies on its own (`nft` exiting); the plane restarts it. */
  onExit: (reason: string) => void;
  /**
   * Apply one transaction (all or nothing). Resolves with the counters of its
   * `get` ops, in order; rejects with a KernelPlaneError naming `op`.
   */
  apply(op: string, ops: readonly ElementOp[]): Promise<Counter[]>;
  /** Fail what is pending and end (bounded). */
  close(): Promise<void>;
}

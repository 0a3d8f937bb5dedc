/**
 * Several gateway instances behind one public address: each owns a disjoint
 * slice of every passive range, so the balancer can steer a client's data
 * connection to the instance that answered its PASV/EPSV. Slices are
 * contiguous (one port range per instance: one balancer rule each) and differ
 * in size by at most one port. Pure.
 */
import type { PortRange } from './types.js';

export interface Instance {
  /** This instance, from 0. */
  readonly index: number;
  /** How many instances share the address. */
  readonly count: number;
}

export const SINGLE_INSTANCE: Instance = { index: 0, count: 1 };

/** The part of `range` instance `index` of `count` owns (the whole range for a single instance). */
export function passiveSlice(range: PortRange, instance: Instance): PortRange {
  const size = range.max - range.min + 1;
  const first = range.min + Math.floor((instance.index * size) / instance.count);
  const next = range.min + Math.floor(((instance.index + 1) * size) / instance.count);
  return { min: first, max: next - 1 };
}

/** Every instance's slice of `range`, in instance order. */
export function passiveSlices(range: PortRange, count: number): PortRange[] {
  return Array.from({ length: count }, (_, index) => passiveSlice(range, { index, count }));
}

/**
 * The free ports of one site and direction. Ports are handed out at random
 * (RFC 6056 spirit: a pinhole port must not be predictable), never twice
 * while held, and come back with `release`.
 */
import type { PortRange } from '../config/types.js';

/** The pool that took over a pool's ports on reload. */
export interface PoolSuccessor {
  covers(port: number): boolean;
  adopt(port: number): void;
}

export class PortPool {
  /** Free ports, unordered; a random pick swaps the last into its place. */
  private readonly freePorts: number[];
  private readonly held = new Set<number>();
  /** After a reload replaced this pool: the pool that owns the ports both cover. */
  private successor: PoolSuccessor | undefined;

  /** Every port of the pool, free or not. */
  private readonly expected: ReadonlySet<number>;

  /** `taken`: ports of the range still held elsewhere (by the pool this one replaces); they come back by `adopt`. */
  constructor(
    ports: PortRange | readonly number[],
    private readonly random: () => number = Math.random,
    taken: (port: number) => boolean = () => false,
  ) {
    const all = Array.isArray(ports) ? [...(ports as readonly number[])] : rangeToList(ports as PortRange);
    this.expected = new Set(all);
    this.freePorts = all.filter((port) => !taken(port));
  }

  get size(): number {
    return this.expected.size;
  }

  get free(): number {
    return this.freePorts.length;
  }

  /** A random free port, now held; undefined when every port is held. */
  allocate(): number | undefined {
    const n = this.freePorts.length;
    if (n === 0) return undefined;
    const i = Math.min(n - 1, Math.floor(this.random() * n));
    const port = this.freePorts[i] as number;
    this.freePorts[i] = this.freePorts[n - 1] as number;
    this.freePorts.pop();
    this.held.add(port);
    return port;
  }

  release(port: number): void {
    if (!this.held.delete(port)) return; // idempotent: a second release is a no-op
    if (this.successor?.covers(port) === true) this.successor.adopt(port);
    else this.freePorts.push(port);
  }

  /**
   * A reload replaced this pool (its live sessions still use it): a port
   * belongs to one pool at a time, so the ports `successor` covers are not
   * handed out here any more, and those still held here go to it when
   * released (it keeps them taken meanwhile).
   */
  handOver(successor: PoolSuccessor): void {
    this.successor = successor;
    for (let i = this.freePorts.length - 1; i >= 0; i--) {
      if (successor.covers(this.freePorts[i] as number)) {
        this.freePorts[i] = this.freePorts[this.freePorts.length - 1] as number;
        this.freePorts.pop();
      }
    }
  }

  /** A port the predecessor pool held is free now: take it if it is ours. */
  adopt(port: number): void {
    if (this.expected.has(port) && !this.held.has(port) && !this.freePorts.includes(port)) this.freePorts.push(port);
  }

  isHeld(port: number): boolean {
    return this.held.has(port);
  }
}

function rangeToList(range: PortRange): number[] {
  const list: number[] = [];
  for (let p = range.min; p <= range.max; p++) list.push(p);
  return list;
}

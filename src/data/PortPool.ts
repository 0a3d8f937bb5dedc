/**
 * The free ports of one site and direction. Ports are handed out at random
 * (RFC 6056 spirit: a pinhole port must not be predictable), never twice
 * while held, and come back with `release`.
 */
import type { PortRange } from '../config/types.js';

export class PortPool {
  /** Free ports, unordered; a random pick swaps the last into its place. */
  private readonly freePorts: number[];
  private readonly held = new Set<number>();

  constructor(
    ports: PortRange | readonly number[],
    private readonly random: () => number = Math.random,
  ) {
    this.freePorts = Array.isArray(ports) ? [...(ports as readonly number[])] : rangeToList(ports as PortRange);
  }

  get size(): number {
    return this.freePorts.length + this.held.size;
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
    this.freePorts.push(port);
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

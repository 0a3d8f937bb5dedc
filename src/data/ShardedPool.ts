/**
 * A site's port range for one direction, cut into disjoint shards, one per
 * data-plane worker (one shard when pinholes run on the control loop). A
 * port belongs to exactly one shard, so no two workers ever bind it.
 */
import type { PortRange } from '../config/types.js';
import { PortPool } from './PortPool.js';

export class ShardedPool {
  private readonly shards: PortPool[];

  /** `predecessor`: the pool of the site this one replaces on reload; ports it still holds stay taken here. */
  constructor(range: PortRange, count: number, predecessor?: ShardedPool) {
    const lists: number[][] = Array.from({ length: Math.max(1, count) }, () => []);
    for (let port = range.min; port <= range.max; port++) lists[port % lists.length]?.push(port);
    const taken = (port: number) => predecessor?.isHeld(port) === true;
    this.shards = lists.map((ports) => new PortPool(ports, Math.random, taken));
    const successor = { covers: (port: number) => port >= range.min && port <= range.max, adopt: (port: number) => this.adopt(port) };
    if (predecessor !== undefined) for (const shard of predecessor.shards) shard.handOver(successor);
  }

  isHeld(port: number): boolean {
    return this.shard(port % this.shards.length).isHeld(port);
  }

  private adopt(port: number): void {
    this.shard(port % this.shards.length).adopt(port);
  }

  shard(index: number): PortPool {
    return this.shards[index % this.shards.length] as PortPool;
  }

  get free(): number {
    return this.shards.reduce((n, s) => n + s.free, 0);
  }

  get size(): number {
    return this.shards.reduce((n, s) => n + s.size, 0);
  }
}

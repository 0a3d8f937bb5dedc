/**
 * The gateway's own outgoing control connections, by their local address and
 * port, so that one arriving at a listener of ours is known for what it is: a
 * loop, an upstream that names or resolves to this gateway. Without the
 * check each session would open another one through the gateway itself, a
 * storm stopped only by the session caps.
 *
 * The key is the local end alone, not the whole 4-tuple: a loop through a
 * DNAT or REDIRECT rule arrives at another local address or port than the
 * one dialled. The local end is an address of this host, so no remote client
 * can share it; a local process (a client on the gateway's own host) could,
 * only if the kernel gave its connection the very port of a live upstream
 * connection from the same address, and it would then be told 421 once.
 */
import type { Socket } from 'node:net';
import { normalise } from '../common/address.js';

export class OwnConnections {
  private readonly ends = new Set<string>();

  /** A connected socket of the gateway's: its local end is known until it closes (a property: handed around as is). */
  readonly track = (socket: Socket): void => {
    const { localAddress, localPort } = socket;
    if (localAddress === undefined || localPort === undefined) return;
    const key = endKey(normalise(localAddress), localPort);
    if (this.ends.has(key)) return;
    this.ends.add(key);
    socket.once('close', () => this.ends.delete(key));
  };

  /** Whether an accepted connection, from this (normalised) address and port, is one of the gateway's own. */
  isOwn(address: string, port: number | undefined): boolean {
    return port !== undefined && this.ends.size > 0 && this.ends.has(endKey(address, port));
  }
}

function endKey(address: string, port: number): string {
  return `${address} ${port}`;
}

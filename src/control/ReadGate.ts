/**
 * The one owner of a socket's reading. Several things may want a socket
 * paused at once (the core is busy, the other side's write buffer is full,
 * the session is not ready yet); each holds it under its own reason, and
 * the socket reads again only when no reason is left.
 */
import type { Socket } from 'node:net';

export class ReadGate {
  private readonly reasons = new Set<string>();

  constructor(private socket: Socket) {}

  /** The socket changed (a TLS socket now wraps it): the same reasons apply to the new one. */
  retarget(socket: Socket): void {
    this.socket = socket;
    if (this.reasons.size > 0) socket.pause();
    else socket.resume();
  }

  hold(reason: string): void {
    this.reasons.add(reason);
    this.socket.pause();
  }

  release(reason: string): void {
    if (!this.reasons.delete(reason) || this.reasons.size > 0) return;
    this.socket.resume();
  }

  set(reason: string, held: boolean): void {
    if (held) {
      if (!this.reasons.has(reason)) this.hold(reason);
    } else {
      this.release(reason);
    }
  }

  /** Hold until `sink` drains its write buffer (once per reason: a second call while held adds nothing). */
  holdUntilDrain(reason: string, sink: Socket): void {
    if (this.reasons.has(reason)) return;
    this.hold(reason);
    sink.once('drain', () => this.release(reason));
  }
}

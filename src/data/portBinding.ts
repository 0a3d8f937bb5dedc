/**
 * The one allocate/bind path of both data planes (DESIGN.md "PortPool").
 * A listening leg takes a random port from its pool and binds it. A port
 * that another program holds (EADDRINUSE) is set aside, never tried twice
 * in one attempt, and another port is taken, up to MAX_BIND_ATTEMPTS
 * distinct ports; the set-aside ports go back to the pool afterwards (the
 * other program may let go of them). A bound port goes back to its pool
 * only once its listener has closed, so it is never handed out while bound.
 *
 * In process, `bind` listens on the port here; with worker threads, it asks
 * the worker that owns the pool's shard to listen on it (WorkerDataPlane).
 */
import net, { type Server } from 'node:net';
import { BindError, PortExhaustedError, PortInUseError } from '../common/errors.js';
import type { Direction } from '../observe/metrics.js';
import type { PortPool } from './PortPool.js';

/** Distinct ports tried for one listening leg before giving up with PortInUseError. */
export const MAX_BIND_ATTEMPTS = 8;

/** A pinhole listener bound on a port of a pool. */
export interface BoundListener {
  readonly server: Server;
  readonly port: number;
  /** Gives the port back; call it once the server has closed (`server.close(release)`). */
  readonly release: () => void;
}

/** How a pool is named in errors and logs. */
export function poolLabel(site: string, dir: Direction): string {
  return `${dir} ports of ${site}`;
}

/**
 * Take ports from `pool` until `bind` succeeds on one. `bind` rejects with
 * PortInUseError when another program holds the port; any other rejection
 * ends the attempt (its port goes back at once: nothing listens on it).
 * Throws PortExhaustedError when the pool had no free port at all.
 */
export async function bindFromPool<T>(pool: PortPool, bind: (port: number) => Promise<T>, label: string): Promise<{ port: number; bound: T }> {
  const inUse: number[] = [];
  try {
    while (inUse.length < MAX_BIND_ATTEMPTS) {
      const port = pool.allocate();
      if (port === undefined) break;
      try {
        return { port, bound: await bind(port) };
      } catch (err) {
        if (!(err instanceof PortInUseError)) {
          pool.release(port);
          throw err;
        }
        inUse.push(port);
      }
    }
  } finally {
    for (const port of inUse) pool.release(port);
  }
  if (inUse.length === 0) throw new PortExhaustedError(label);
  throw new PortInUseError(inUse.length);
}

/**
 * A pinhole listener on exactly `host`:`port`, paused on connect so the
 * relay can adopt the accepted socket before its first read. EADDRINUSE is
 * a PortInUseError, any other failure a BindError.
 */
export function listenExclusive(host: string, port: number): Promise<Server> {
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(err.code === 'EADDRINUSE' ? new PortInUseError(1) : new BindError(err.message));
    server.once('error', onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', onError);
      resolve(server);
    });
  });
}

/** In process: a listener on `host` and a port of `pool`. */
export async function listenOnPool(pool: PortPool, host: string, label: string): Promise<BoundListener> {
  const { port, bound: server } = await bindFromPool(pool, (p) => listenExclusive(host, p), label);
  return { server, port, release: () => pool.release(port) };
}

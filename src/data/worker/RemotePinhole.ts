/**
 * The control loop's view of a pinhole that lives in a worker. Its listening
 * legs are bound through the one allocate/bind path (portBinding.ts): the
 * port comes from the worker's shard of the pool, the worker listens on it.
 * A port goes back to the pool when the worker reports its listener closed
 * (`released`), or when the worker dies.
 */
import { type AlgError, BindError, PortInUseError } from '../../common/errors.js';
import type { LegRequest, PinholeHandle, PinholeRequest } from '../DataPlane.js';
import type { PinholeState } from '../Pinhole.js';
import type { PortPool } from '../PortPool.js';
import { bindFromPool, poolLabel } from '../portBinding.js';
import type { FromWorker, LegName, LegSpec, WorkerAnswer } from './workerProtocol.js';
import type { SlotPinhole, WorkerSlot } from './WorkerSlot.js';

/** A bind is one thread hop; a worker silent this long is hung and is restarted. */
const BIND_ANSWER_TIMEOUT_MS = 10_000;

export class RemotePinhole implements PinholeHandle, SlotPinhole {
  state: PinholeState = 'new';
  clientPort: number | undefined;
  upstreamPort: number | undefined;
  bytes = { up: 0, down: 0 };
  private label = '';
  /** Ports bound in the worker and not yet released, with their pools. */
  private readonly held = new Map<number, PortPool>();
  private readonly closeWaiters: (() => void)[] = [];
  private started = false;
  private finished = false;

  constructor(
    private readonly slot: WorkerSlot,
    private readonly request: PinholeRequest,
    private readonly id: number,
  ) {}

  get command(): string {
    return this.label;
  }

  set command(verb: string) {
    this.label = verb;
    if (this.state !== 'closed') this.slot.post({ t: 'label', id: this.id, command: verb });
  }

  async open(): Promise<void> {
    if (this.closedNow()) return; // closed before it was opened: nothing to bind
    this.started = true;
    this.slot.pinholes.set(this.id, this);
    this.slot.load++;
    try {
      for (const name of ['client', 'upstream'] as const) {
        if (this.closedNow()) break; // closed (or the worker died) while binding
        await this.bindLeg(name, this.request[name]);
      }
    } catch (err) {
      this.abandon();
      throw err;
    }
    if (this.closedNow()) return this.abandon();
    const { site, dir, acceptTimeoutMs, dataIdleMs } = this.request;
    const client = this.spec(this.request.client, this.clientPort);
    const upstream = this.spec(this.request.upstream, this.upstreamPort);
    const bindings = this.request.log.bindings();
    this.slot.post({ t: 'open', id: this.id, spec: { site, dir, client, upstream, acceptTimeoutMs, dataIdleMs, bindings } });
    this.state = 'waiting';
  }

  close(reason: string): void {
    if (this.state === 'closed') return;
    const opening = this.state === 'new';
    this.state = 'closed';
    if (!this.started) {
      this.finished = true; // never placed in the worker
      return;
    }
    // While binding, open() notices and abandons once the bind in flight is answered.
    if (!opening) this.slot.post({ t: 'close', id: this.id, reason });
  }

  closed(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  onMessage(m: Exclude<FromWorker, WorkerAnswer>): void {
    switch (m.t) {
      case 'relaying':
        if (this.state !== 'closed') this.state = 'relaying';
        break;
      case 'closed':
        this.bytes = { up: m.up, down: m.down };
        this.state = 'closed';
        this.finish();
        break;
      case 'released':
        this.held.get(m.port)?.release(m.port);
        this.held.delete(m.port);
        this.forgetWhenDone();
        break;
    }
  }

  lost(): void {
    this.state = 'closed';
    for (const [port, pool] of this.held) pool.release(port); // the worker's listeners died with it
    this.held.clear();
    this.finish();
  }

  /** Read afresh after each await (close() and lost() change it meanwhile). */
  private closedNow(): boolean {
    return this.state === 'closed';
  }

  private async bindLeg(name: LegName, leg: LegRequest): Promise<void> {
    if (leg.kind !== 'listen') return;
    const pool = leg.pool.shard(this.slot.index);
    const bind = async (port: number): Promise<void> => {
      const answer = await this.slot.call({ t: 'bind', id: this.id, leg: name, host: leg.host, port }, BIND_ANSWER_TIMEOUT_MS, 'restart');
      if (answer.error !== undefined) throw failure(answer.error.code, answer.error.message);
    };
    const { port } = await bindFromPool(pool, bind, poolLabel(this.request.site, this.request.dir));
    if (this.finished) {
      pool.release(port); // the worker died after binding it: its listener is gone
      return;
    }
    this.held.set(port, pool);
    if (name === 'client') this.clientPort = port;
    else this.upstreamPort = port;
  }

  private spec(leg: LegRequest, port: number | undefined): LegSpec {
    return leg.kind === 'listen' ? { kind: 'listen', port: port as number, expectedPeer: leg.expectedPeer } : leg;
  }

  /** Opening stopped: the worker closes what it bound (each port comes back as `released`). */
  private abandon(): void {
    this.state = 'closed';
    if (this.held.size > 0) this.slot.post({ t: 'close', id: this.id, reason: 'bind-failed' });
    this.finish();
  }

  private finish(): void {
    if (!this.finished) {
      this.finished = true;
      this.slot.load--;
      for (const wake of this.closeWaiters.splice(0)) wake();
    }
    this.forgetWhenDone();
  }

  /** The slot keeps the pinhole until it has closed and every port is back. */
  private forgetWhenDone(): void {
    if (this.finished && this.held.size === 0) this.slot.pinholes.delete(this.id);
  }
}

/** The worker's bind failure as the error the allocate/bind path expects. */
function failure(code: string, message: string): AlgError {
  return code === 'ERR_ALG_PORT_IN_USE' ? new PortInUseError(1) : new BindError(message);
}

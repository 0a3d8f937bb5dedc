/**
 * Pinholes in worker threads: the control loop keeps accept() and control
 * replies; each worker binds, accepts and relays the pinholes given to it.
 * Ports are allocated here from the worker's own shard of each pool, so a
 * port is only ever bound by one worker. Workers keep their own metrics,
 * merged into /metrics at scrape time.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from '../../observe/logger.js';
import { BindError, PortExhaustedError, PortInUseError } from '../../common/errors.js';
import type { DataPlane, LegRequest, PinholeHandle, PinholeRequest } from '../DataPlane.js';
import type { PinholeState } from '../Pinhole.js';
import type { PortPool } from '../PortPool.js';
import type { FromWorker, LegSpec, ToWorker } from './workerProtocol.js';

const MAX_BIND_ATTEMPTS = 8;


interface WorkerSlot {
  worker: Worker;
  readonly index: number;
  load: number;
}

export class WorkerDataPlane implements DataPlane {
  private readonly slots: WorkerSlot[] = [];
  private readonly handles = new Map<number, RemotePinhole>();
  private readonly metricWaiters = new Map<number, (data: unknown[]) => void>();
  private nextId = 0;
  private closing = false;

  constructor(
    readonly shards: number,
    private readonly logLevel: string,
    private readonly log: Logger,
  ) {
    for (let i = 0; i < shards; i++) this.slots.push(this.spawn(i));
  }

  pinhole(request: PinholeRequest): PinholeHandle {
    // Least loaded worker; ties go round the workers in turn.
    const start = this.nextId % this.slots.length;
    let slot = this.slots[start] as WorkerSlot;
    for (let i = 1; i < this.slots.length; i++) {
      const s = this.slots[(start + i) % this.slots.length] as WorkerSlot;
      if (s.load < slot.load) slot = s;
    }
    return new RemotePinhole(this, slot, request, ++this.nextId);
  }

  async metricsJson(): Promise<unknown[]> {
    const answers = this.slots.map(
      (slot) =>
        new Promise<unknown[]>((resolve) => {
          const req = ++this.nextId;
          const timer = setTimeout(() => resolve([]), 1_000);
          this.metricWaiters.set(req, (data) => {
            clearTimeout(timer);
            resolve(data);
          });
          this.post(slot, { t: 'metrics', req });
        }),
    );
    return Promise.all(answers);
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  register(id: number, handle: RemotePinhole): void {
    this.handles.set(id, handle);
  }

  forget(id: number): void {
    this.handles.delete(id);
  }

  post(slot: WorkerSlot, message: ToWorker): void {
    slot.worker.postMessage(message);
  }

  private spawn(index: number): WorkerSlot {
    const worker = new Worker(new URL('./dataWorker.js', import.meta.url), { workerData: { index, logLevel: this.logLevel } });
    const slot: WorkerSlot = { worker, index, load: 0 };
    worker.on('message', (m: FromWorker) => this.onMessage(m));
    worker.on('error', (err) => this.log.error({ err, worker: index }, 'data worker failed'));
    worker.on('exit', (code) => {
      for (const h of this.handles.values()) if (h.slot === slot) h.lost();
      if (this.closing) return;
      this.log.error({ worker: index, code }, 'data worker exited; starting a new one');
      const fresh = this.spawn(index);
      slot.worker = fresh.worker;
    });
    worker.unref();
    return slot;
  }

  private onMessage(m: FromWorker): void {
    if (m.t === 'metrics') {
      this.metricWaiters.get(m.req)?.(m.data);
      this.metricWaiters.delete(m.req);
      return;
    }
    this.handles.get(m.id)?.onMessage(m);
  }
}

/** The control loop's view of a pinhole that lives in a worker. */
class RemotePinhole implements PinholeHandle {
  state: PinholeState = 'new';
  clientPort: number | undefined;
  upstreamPort: number | undefined;
  bytes = { up: 0, down: 0 };
  private label = '';
  private held: { pool: PortPool; port: number }[] = [];
  private opening: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private readonly closeWaiters: (() => void)[] = [];
  private finished = false;

  constructor(
    private readonly plane: WorkerDataPlane,
    readonly slot: WorkerSlot,
    private readonly request: PinholeRequest,
    private readonly id: number,
  ) {}

  get command(): string {
    return this.label;
  }

  set command(verb: string) {
    this.label = verb;
    if (this.state !== 'closed') this.plane.post(this.slot, { t: 'label', id: this.id, command: verb });
  }

  async open(): Promise<void> {
    this.plane.register(this.id, this);
    this.slot.load++;
    try {
      await this.bind();
    } catch (err) {
      this.finish();
      throw err;
    }
  }

  /** Ask the worker to bind; another port on EADDRINUSE (a port some other program holds). */
  private async bind(): Promise<void> {
    for (let attempt = 0; attempt < MAX_BIND_ATTEMPTS; attempt++) {
      const client = this.leg(this.request.client);
      const upstream = this.leg(this.request.upstream);
      const { site, dir, acceptTimeoutMs, dataIdleMs } = this.request;
      const bindings = this.request.log.bindings();
      const outcome = await new Promise<'ok' | Error>((resolve) => {
        this.opening = { resolve: () => resolve('ok'), reject: (err) => resolve(err) };
        this.plane.post(this.slot, { t: 'open', id: this.id, spec: { site, dir, client, upstream, acceptTimeoutMs, dataIdleMs, bindings } });
      });
      this.opening = undefined;
      if (outcome === 'ok') {
        this.state = this.state === 'closed' ? 'closed' : 'waiting';
        return;
      }
      this.releasePorts();
      if (!(outcome instanceof PortInUseError)) throw outcome;
    }
    throw new PortInUseError(MAX_BIND_ATTEMPTS);
  }

  close(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.plane.post(this.slot, { t: 'close', id: this.id, reason });
  }

  closed(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  onMessage(m: FromWorker): void {
    switch (m.t) {
      case 'opened':
        this.opening?.resolve();
        break;
      case 'failed':
        this.opening?.reject(failure(m.code, m.message));
        break;
      case 'relaying':
        if (this.state !== 'closed') this.state = 'relaying';
        break;
      case 'closed':
        this.bytes = { up: m.up, down: m.down };
        this.state = 'closed';
        this.finish();
        break;
    }
  }

  /** The worker died: the pinhole is gone with it. */
  lost(): void {
    this.opening?.reject(new BindError('data worker exited'));
    this.state = 'closed';
    this.finish();
  }

  private leg(leg: LegRequest): LegSpec {
    if (leg.kind === 'connect') return leg;
    const pool = leg.pool.shard(this.slot.index);
    const port = pool.allocate();
    if (port === undefined) throw new PortExhaustedError(`${this.request.dir} ports of ${this.request.site}`);
    this.held.push({ pool, port });
    if (leg === this.request.client) this.clientPort = port;
    else this.upstreamPort = port;
    return { kind: 'listen', host: leg.host, port, expectedPeer: leg.expectedPeer };
  }

  private releasePorts(): void {
    for (const { pool, port } of this.held.splice(0)) pool.release(port);
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.releasePorts();
    this.slot.load--;
    this.plane.forget(this.id);
    for (const wake of this.closeWaiters.splice(0)) wake();
  }
}

function failure(code: string, message: string): Error {
  if (code === 'ERR_ALG_PORT_EXHAUSTED') return new PortExhaustedError(message);
  if (code === 'ERR_ALG_PORT_IN_USE') return new PortInUseError(1);
  return new BindError(message);
}

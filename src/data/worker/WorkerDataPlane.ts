/**
 * Pinholes in worker threads: the control loop keeps accept() and control
 * replies; each worker binds, accepts and relays the pinholes given to it.
 * Ports are allocated here from the worker's own shard of each pool, so a
 * port is only ever bound by one worker. A worker that dies is replaced in
 * its slot (WorkerSlot.ts). Workers keep their own metrics, merged into
 * /metrics at scrape time. Workers run `nice` below the control loop
 * (dataWorker.ts), so relaying never keeps a control reply off a CPU.
 */
import { otherThreadsCpus } from '../../common/controlCpus.js';
import type { Logger } from '../../observe/logger.js';
import { InProcessDataPlane, needsControlLoop, type DataPlane, type PinholeHandle, type PinholeRequest } from '../DataPlane.js';
import { RemotePinhole } from './RemotePinhole.js';
import { WorkerSlot } from './WorkerSlot.js';

/** How long a scrape waits for a worker's metrics before leaving them out. */
const METRICS_ANSWER_TIMEOUT_MS = 1_000;

export class WorkerDataPlane implements DataPlane {
  readonly kind = 'relay';
  private readonly slots: WorkerSlot[] = [];
  private nextId = 0;
  /** TLS pinholes: their TLS sockets and session cache live on the control loop. */
  private readonly local = new InProcessDataPlane();
  private localShard = 0;

  constructor(
    readonly shards: number,
    logLevel: string,
    private readonly log: Logger,
    nice = 0,
  ) {
    const cpus = otherThreadsCpus(); // the workers leave the control thread's CPUs, when it has its own
    for (let i = 0; i < shards; i++) this.slots.push(new WorkerSlot(i, { logLevel, nice, cpus }, log));
  }

  pinhole(request: PinholeRequest): PinholeHandle {
    if (needsControlLoop(request)) {
      // Ports come from one worker's shard in turn; allocation is central (here), so no worker binds them.
      if (this.localShard === 0) this.log.info('TLS pinholes run on the control loop; the data workers relay the others');
      const shard = this.localShard++ % this.slots.length;
      request.log.debug({ plane: 'control-loop', why: 'tls' }, 'TLS pinhole runs on the control loop, not in a data worker');
      return this.local.pinhole(request, shard);
    }
    // Least loaded worker; ties go round the workers in turn.
    const start = this.nextId % this.slots.length;
    let slot = this.slots[start] as WorkerSlot;
    for (let i = 1; i < this.slots.length; i++) {
      const s = this.slots[(start + i) % this.slots.length] as WorkerSlot;
      if (s.load < slot.load) slot = s;
    }
    return new RemotePinhole(slot, request, ++this.nextId);
  }

  async metricsJson(): Promise<unknown[]> {
    return Promise.all(
      this.slots.map((slot) =>
        slot.call({ t: 'metrics' }, METRICS_ANSWER_TIMEOUT_MS, 'fail').then(
          (answer) => answer.data ?? [],
          () => [], // a worker that is restarting or slow is left out of this scrape
        ),
      ),
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.stop()));
  }
}

/**
 * One data-plane worker thread and what depends on it: the pinholes it runs
 * and the requests it has not answered yet. The slot outlives its worker:
 * when a worker dies (however often), its pending requests fail, its
 * pinholes are lost (closed, their ports given back) and a new worker takes
 * its place in the same slot. A worker that died within RESTART_BACKOFF_MS
 * of its start is restarted after that delay, so a crash loop cannot spin.
 */
import { Worker } from 'node:worker_threads';
import { BindError } from '../../common/errors.js';
import type { Logger } from '../../observe/logger.js';
import type { FromWorker, ToWorker, WorkerAnswer, WorkerRequest, WorkerSettings } from './workerProtocol.js';

/** A worker that lived shorter than this is restarted after this long. */
const RESTART_BACKOFF_MS = 1_000;

/** What the slot needs of a pinhole running in its worker. */
export interface SlotPinhole {
  onMessage(m: Exclude<FromWorker, WorkerAnswer>): void;
  /** The worker died: the pinhole is gone with it. */
  lost(): void;
}

interface PendingCall {
  readonly resolve: (answer: WorkerAnswer) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** A request before the slot numbers it. */
type WithoutReq<R> = R extends unknown ? Omit<R, 'req'> : never;
type RequestBody = WithoutReq<WorkerRequest>;

export class WorkerSlot {
  /** Pinholes open (or opening) in this slot's worker, by id. */
  readonly pinholes = new Map<number, SlotPinhole>();
  /** Pinholes placed here and not closed yet: how the plane spreads new ones. */
  load = 0;
  private worker: Worker | undefined;
  private startedAt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly calls = new Map<number, PendingCall>();
  private nextReq = 0;
  private stopped = false;

  constructor(
    readonly index: number,
    private readonly settings: Omit<WorkerSettings, 'index'>,
    private readonly log: Logger,
  ) {
    this.start();
  }

  post(message: ToWorker): void {
    this.worker?.postMessage(message);
  }

  /**
   * Send a request; resolves with the worker's answer. Rejects with a
   * BindError when the worker dies first (or is not running). After
   * `timeoutMs` without an answer, `onTimeout` decides: `'fail'` rejects,
   * `'restart'` treats the worker as hung and restarts it (the request then
   * fails like every other one of the dead worker).
   */
  call(body: RequestBody, timeoutMs: number, onTimeout: 'fail' | 'restart'): Promise<WorkerAnswer> {
    const worker = this.worker;
    if (worker === undefined) return Promise.reject(new BindError('data worker is restarting'));
    const req = ++this.nextReq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (onTimeout === 'restart') {
          this.log.error({ worker: this.index, timeoutMs }, 'data worker did not answer; restarting it');
          void worker.terminate();
          return;
        }
        this.calls.delete(req);
        reject(new BindError('data worker did not answer'));
      }, timeoutMs);
      this.calls.set(req, { resolve, reject, timer });
      worker.postMessage({ ...body, req } as ToWorker);
    });
  }

  /** Stop for good: no restart; the worker's pinholes and requests end as in a death. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    await this.worker?.terminate();
  }

  private start(): void {
    const worker = new Worker(new URL('./dataWorker.js', import.meta.url), { workerData: { index: this.index, ...this.settings } satisfies WorkerSettings });
    this.worker = worker;
    this.startedAt = performance.now();
    // Events of a worker this slot has already replaced are ignored.
    worker.on('message', (m: FromWorker) => {
      if (worker === this.worker) this.onMessage(m);
    });
    worker.on('error', (err) => this.log.error({ err, worker: this.index }, 'data worker failed'));
    worker.on('exit', (code) => {
      if (worker === this.worker) this.onExit(code);
    });
    worker.unref();
  }

  private onMessage(m: FromWorker): void {
    if (m.t !== 'answer') {
      this.pinholes.get(m.id)?.onMessage(m);
      return;
    }
    const call = this.calls.get(m.req);
    if (call === undefined) return; // answered after its timeout
    this.calls.delete(m.req);
    clearTimeout(call.timer);
    call.resolve(m);
  }

  private onExit(code: number): void {
    this.worker = undefined;
    for (const call of this.calls.values()) {
      clearTimeout(call.timer);
      call.reject(new BindError('data worker exited'));
    }
    this.calls.clear();
    for (const pinhole of [...this.pinholes.values()]) pinhole.lost();
    if (this.stopped) return;
    const lived = performance.now() - this.startedAt;
    const delay = lived < RESTART_BACKOFF_MS ? RESTART_BACKOFF_MS : 0;
    this.log.error({ worker: this.index, code, restartInMs: delay }, 'data worker exited; starting a new one');
    this.restartTimer = setTimeout(() => {
      if (!this.stopped) this.start();
    }, delay);
    this.restartTimer.unref();
  }
}

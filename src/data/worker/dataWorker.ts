/**
 * A data-plane worker thread: listens on the ports the control loop binds
 * through it, opens the pinholes it is asked for, and reports their life
 * back, down to each port's release once its listener has closed. It runs
 * at a lower priority than the control loop: on a machine whose cores are
 * busy with bulk data, a control reply then waits for nobody's relaying.
 */
import type { Server } from 'node:net';
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../../observe/logger.js';
import { Metrics } from '../../observe/metrics.js';
import { setThreadCpus } from '../../common/controlCpus.js';
import { currentThreadId } from '../../common/controlPriority.js';
import { AlgError, BindError } from '../../common/errors.js';
import { Pinhole, type PinholeLeg } from '../Pinhole.js';
import { listenExclusive } from '../portBinding.js';
import type { FromWorker, LegName, LegSpec, PinholeSpec, ToWorker, WorkerRequest, WorkerSettings } from './workerProtocol.js';

const port = parentPort;
if (port === null) throw new Error('dataWorker runs only as a worker thread');
const { index, logLevel, nice, cpus } = workerData as WorkerSettings;
const log = createLogger(logLevel).child({ worker: index });
lowerPriority(nice);
leaveControlCpus(cpus);
const metrics = new Metrics();
const pinholes = new Map<number, Pinhole>();
/** Listeners bound for pinholes that are not open yet, by pinhole id and leg. */
const bound = new Map<number, Map<LegName, Server>>();

const send = (m: FromWorker) => port.postMessage(m);

/**
 * Run this thread `by` nice levels below the control loop (at most 19).
 * Linux keeps a nice value per thread, set through the thread's id; where
 * there is no /proc/thread-self to name it, the worker keeps the process's
 * priority (a process-wide setpriority would slow the control loop too).
 */
function lowerPriority(by: number): void {
  if (by === 0) return;
  try {
    const tid = currentThreadId();
    const niceness = Math.min(19, getPriority(tid) + by);
    setPriority(tid, niceness);
    log.info({ tid, nice: niceness }, 'data worker started');
  } catch (err) {
    log.warn({ err }, 'data worker runs at the control loop\'s priority: cannot lower its own');
  }
}

/** Move this thread to `cpus`, the CPUs the control thread left (controlPriority.cpus); undefined: stay. */
function leaveControlCpus(cpus: readonly number[] | undefined): void {
  if (cpus === undefined) return;
  try {
    const tid = currentThreadId();
    setThreadCpus(tid, cpus);
    log.info({ tid, cpus }, 'data worker CPUs set');
  } catch (err) {
    log.warn({ err, cpus }, 'data worker runs on the control thread\'s CPUs: cannot move it');
  }
}

port.on('message', (m: ToWorker) => {
  switch (m.t) {
    case 'bind':
      void bind(m);
      break;
    case 'open':
      void open(m.id, m.spec);
      break;
    case 'close':
      pinholes.get(m.id)?.close(m.reason);
      closeBound(m.id);
      break;
    case 'label': {
      const p = pinholes.get(m.id);
      if (p !== undefined && p.command === '') p.command = m.command;
      break;
    }
    case 'metrics':
      void metrics.registry.getMetricsAsJSON().then((data) => send({ t: 'answer', req: m.req, data }));
      break;
  }
});

async function bind(m: Extract<WorkerRequest, { t: 'bind' }>): Promise<void> {
  try {
    const server = await listenExclusive(m.host, m.port);
    const legs = bound.get(m.id) ?? new Map<LegName, Server>();
    bound.set(m.id, legs.set(m.leg, server));
    send({ t: 'answer', req: m.req });
  } catch (err) {
    const e = err instanceof AlgError ? err : new BindError(String(err));
    send({ t: 'answer', req: m.req, error: { code: e.code, message: e.message } });
  }
}

async function open(id: number, spec: PinholeSpec): Promise<void> {
  const pinhole = new Pinhole({
    site: spec.site,
    dir: spec.dir,
    client: leg(id, 'client', spec.client),
    upstream: leg(id, 'upstream', spec.upstream),
    acceptTimeoutMs: spec.acceptTimeoutMs,
    dataIdleMs: spec.dataIdleMs,
    log: log.child(spec.bindings),
    metrics,
    onRelay: () => send({ t: 'relaying', id }),
  });
  pinholes.set(id, pinhole);
  try {
    await pinhole.open();
  } catch (err) {
    log.error({ err, id }, 'pinhole failed to open on its bound ports'); // open() has closed it
  }
  await pinhole.closed();
  pinholes.delete(id);
  closeBound(id);
  const { up, down } = pinhole.bytes;
  send({ t: 'closed', id, up, down });
}

/** A listening leg takes the listener bound for it; its port is released to the control loop once it closes. */
function leg(id: number, name: LegName, spec: LegSpec): PinholeLeg {
  if (spec.kind === 'connect') return spec;
  const bind = async () => {
    const server = bound.get(id)?.get(name);
    bound.get(id)?.delete(name);
    if (server === undefined) throw new BindError(`no listener bound for the ${name} leg`);
    return { server, port: spec.port, release: () => send({ t: 'released', id, port: spec.port }) };
  };
  return { kind: 'listen', expectedPeer: spec.expectedPeer, bind };
}

/** Close listeners bound for a pinhole that will not use them. */
function closeBound(id: number): void {
  const legs = bound.get(id);
  bound.delete(id);
  for (const server of legs?.values() ?? []) {
    const { port: p } = server.address() as { port: number };
    server.close(() => send({ t: 'released', id, port: p }));
  }
}

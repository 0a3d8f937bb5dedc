/**
 * A data-plane worker thread: opens the pinholes the control loop asks
 * for, on the ports it was given, and reports their life back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../../observe/logger.js';
import { Metrics } from '../../observe/metrics.js';
import { AlgError } from '../../common/errors.js';
import { Pinhole, type PinholeLeg } from '../Pinhole.js';
import { PortPool } from '../PortPool.js';
import type { FromWorker, LegSpec, PinholeSpec, ToWorker } from './workerProtocol.js';

const port = parentPort;
if (port === null) throw new Error('dataWorker runs only as a worker thread');
const { index, logLevel } = workerData as { index: number; logLevel: string };
const log = createLogger(logLevel).child({ worker: index });
const metrics = new Metrics();
const pinholes = new Map<number, Pinhole>();

const send = (m: FromWorker) => port.postMessage(m);

port.on('message', (m: ToWorker) => {
  switch (m.t) {
    case 'open':
      void open(m.id, m.spec);
      break;
    case 'close':
      pinholes.get(m.id)?.close(m.reason);
      break;
    case 'label': {
      const p = pinholes.get(m.id);
      if (p !== undefined && p.command === '') p.command = m.command;
      break;
    }
    case 'metrics':
      void metrics.registry.getMetricsAsJSON().then((data) => send({ t: 'metrics', req: m.req, data }));
      break;
  }
});

async function open(id: number, spec: PinholeSpec): Promise<void> {
  const pinhole = new Pinhole({
    site: spec.site,
    dir: spec.dir,
    client: leg(spec.client),
    upstream: leg(spec.upstream),
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
    pinholes.delete(id);
    const e = err as AlgError;
    send({ t: 'failed', id, code: e.code ?? 'ERR_ALG_BIND', message: e.message });
    return;
  }
  send({ t: 'opened', id });
  await pinhole.closed();
  pinholes.delete(id);
  const { up, down } = pinhole.bytes;
  send({ t: 'closed', id, up, down });
}

/** A listening leg gets a pool of exactly the port the control loop allocated. */
function leg(spec: LegSpec): PinholeLeg {
  return spec.kind === 'listen' ? { kind: 'listen', host: spec.host, pool: new PortPool([spec.port]), expectedPeer: spec.expectedPeer } : spec;
}

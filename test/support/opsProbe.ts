/**
 * Measures the gateway's control loop from outside the test thread: a
 * worker thread (opsProbeWorker.mjs) runs a tiny scripted upstream and a raw
 * control client, and times NOOP round trips through a gateway site that
 * uses that upstream. The round trip then crosses no busy loop but the
 * gateway's, even while the test thread drives bulk transfers.
 */
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

type FromProbe =
  | { readonly t: 'upstream'; readonly port: number }
  | { readonly t: 'ready'; readonly greeting: string; readonly login: string }
  | { readonly t: 'samples'; readonly rtts: number[]; readonly codes: number[] };

export interface ControlProbe {
  /** The probe's scripted upstream (point a site at it). */
  readonly upstreamPort: number;
  /** Connect through the gateway and log in; resolves with the greeting and login replies. */
  connect(gatewayPort: number): Promise<{ greeting: string; login: string }>;
  /** Time `count` NOOPs back to back. */
  measure(count: number): Promise<{ rtts: number[]; codes: number[] }>;
  /** Start timing NOOPs back to back until `stop`. */
  start(): void;
  /** Stop, and get every round trip (ms) with its reply code. */
  stop(): Promise<{ rtts: number[]; codes: number[] }>;
  close(): Promise<void>;
}

export async function startControlProbe(): Promise<ControlProbe> {
  const worker = new Worker(new URL('./opsProbeWorker.mjs', import.meta.url));
  const next = async <T extends FromProbe['t']>(t: T): Promise<Extract<FromProbe, { t: T }>> => {
    for (let i = 0; i < 100; i++) {
      const [m] = (await once(worker, 'message')) as [FromProbe];
      if (m.t === t) return m as Extract<FromProbe, { t: T }>;
    }
    throw new Error(`the probe worker never sent "${t}"`);
  };
  const { port } = await next('upstream');
  let samples: Promise<Extract<FromProbe, { t: 'samples' }>> | undefined;
  return {
    upstreamPort: port,
    async connect(gatewayPort) {
      const ready = next('ready');
      worker.postMessage({ t: 'connect', port: gatewayPort });
      const { greeting, login } = await ready;
      return { greeting, login };
    },
    async measure(count) {
      const done = next('samples');
      worker.postMessage({ t: 'start', count });
      const { rtts, codes } = await done;
      return { rtts, codes };
    },
    start() {
      samples = next('samples');
      worker.postMessage({ t: 'start' });
    },
    async stop() {
      worker.postMessage({ t: 'stop' });
      if (samples === undefined) throw new Error('stop() before start()');
      const { rtts, codes } = await samples;
      return { rtts, codes };
    },
    async close() {
      worker.postMessage({ t: 'close' });
      await worker.terminate();
    },
  };
}

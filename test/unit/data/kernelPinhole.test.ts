/**
 * KernelPinhole's logging against a recording element driver and a stand-in
 * flow watch (no kernel: test/e2e/kernel.e2e.test.ts drives the real one).
 * The pinhole's child logger ({port, dir, plane}) is made only when a line
 * is written: pino's child() used to run on the PASV path of every pinhole.
 */
import { Writable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import type { FlowEvent } from '../../../src/data/nftables/flowEvents.js';
import type { ElementDriver } from '../../../src/data/nftables/ElementDriver.js';
import type { FlowListener, FlowWatch } from '../../../src/data/nftables/FlowWatch.js';
import { KernelPinhole } from '../../../src/data/nftables/KernelPinhole.js';
import type { Counter, ElementOp } from '../../../src/data/nftables/ruleset.js';
import { ShardedPool } from '../../../src/data/ShardedPool.js';
import { createLogger, type Logger } from '../../../src/observe/logger.js';
import { Metrics } from '../../../src/observe/metrics.js';

const CLIENT = '203.0.113.10';
const EDGE = '203.0.113.1';
const TARGET = { host: '192.0.2.10', port: 40001 };
const SOURCE = '192.0.2.1';

/** Records every transaction; a finish answers with counters of 3 packets and 1,000 bytes each way. */
class RecordingDriver implements ElementDriver {
  readonly name = 'netlink';
  readonly applied: string[] = [];
  onExit = (): void => undefined;
  start(): void {}
  async close(): Promise<void> {}
  async apply(op: string, _ops: readonly ElementOp[]): Promise<Counter[]> {
    this.applied.push(op);
    return op === 'finish' ? [{ packets: 3, bytes: 1_000 }, { packets: 3, bytes: 1_000 }] : [];
  }
}

/** The flow watch's two methods a pinhole uses; `emit` plays conntrack. */
class StandInFlows {
  private readonly listeners = new Map<string, FlowListener>();
  watch(address: string, port: number, listener: FlowListener): void {
    this.listeners.set(`${address}|${port}`, listener);
  }
  unwatch(address: string, port: number): void {
    this.listeners.delete(`${address}|${port}`);
  }
  emit(port: number, type: FlowEvent['type'], state: string): void {
    const orig = { src: CLIENT, dst: EDGE, sport: 33_000, dport: port };
    const reply = { src: TARGET.host, dst: SOURCE, sport: TARGET.port, dport: 33_000 };
    this.listeners.get(`${EDGE}|${port}`)?.({ type, state, orig, reply, id: '1' });
  }
}

function capture(level: string): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger(level, sink).child({ sid: 'a' }), lines };
}

function passive(log: Logger) {
  const pool = new ShardedPool({ min: 50_000, max: 50_009 }, 1);
  const flows = new StandInFlows();
  const driver = new RecordingDriver();
  const deps = { elements: driver, flows: flows as unknown as FlowWatch, cut: async () => undefined, onError: () => undefined, shards: 1 };
  const request = {
    site: 's',
    dir: 'passive' as const,
    client: { kind: 'listen' as const, host: EDGE, pool, expectedPeer: CLIENT },
    upstream: { kind: 'connect' as const, host: TARGET.host, port: TARGET.port, localAddress: SOURCE },
    acceptTimeoutMs: 10_000,
    dataIdleMs: 60_000,
    log,
    metrics: new Metrics(),
  };
  const legs = { listen: { name: 'client' as const, host: EDGE, pool, expectedPeer: CLIENT }, connect: { ...request.upstream } };
  return { pinhole: new KernelPinhole(deps, request, legs), flows, driver };
}

/** Open, carry one flow to its end (conntrack: NEW, then TIME_WAIT), and wait for the port's return. */
async function transfer(log: Logger): Promise<number> {
  const { pinhole, flows } = passive(log);
  await pinhole.open();
  const port = pinhole.clientPort as number;
  pinhole.command = 'RETR';
  flows.emit(port, 'NEW', 'SYN_SENT');
  expect(pinhole.state).toBe('relaying');
  flows.emit(port, 'UPDATE', 'TIME_WAIT');
  await pinhole.closed();
  return port;
}

describe('KernelPinhole logging', () => {
  it('opens without making a child logger: nothing is logged at warn, so none is ever made', async () => {
    const { log } = capture('warn');
    const child = vi.spyOn(log, 'child');
    const { pinhole } = passive(log);
    await pinhole.open();
    expect(pinhole.state).toBe('waiting');
    expect(child).not.toHaveBeenCalled();
    await transfer(log);
    expect(child).not.toHaveBeenCalled();
  });

  it('its lines still carry {port, dir, plane}: the open at debug, the transfer at info, with the byte counts', async () => {
    const { log, lines } = capture('debug');
    const port = await transfer(log);
    const open = lines.find((l) => l.msg === 'pinhole open');
    const done = lines.find((l) => l.msg === 'transfer done');
    expect(open).toMatchObject({ sid: 'a', port, dir: 'passive', plane: 'nftables', peer: CLIENT });
    expect(done).toMatchObject({ sid: 'a', port, dir: 'passive', plane: 'nftables', command: 'RETR', reason: 'done' });
    expect((done?.upBytes as number) > 0 && (done?.downBytes as number) > 0).toBe(true);
  });

  it('at info the open writes nothing and the transfer line is written with the bindings once', async () => {
    const { log, lines } = capture('info');
    const child = vi.spyOn(log, 'child');
    const port = await transfer(log);
    expect(lines.map((l) => l.msg)).toEqual(['transfer done']);
    expect(lines[0]).toMatchObject({ port, dir: 'passive', plane: 'nftables' });
    expect(child).toHaveBeenCalledTimes(1);
  });
});

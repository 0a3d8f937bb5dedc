/**
 * A session that ends while one of its pinholes is being opened. With the
 * data plane in worker threads, `open()` is a round trip to a worker, so
 * the client can vanish in between; here the in-process data plane is made
 * to answer late (its `open()` waits for the test) to reach the same
 * state on purpose. The pinhole must close, its port return, and the
 * client address's pinhole budget (maxPinholesPerClient) be given back:
 * otherwise an address loses a pinhole for good each time this happens.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { InProcessDataPlane, type PinholeHandle, type PinholeRequest } from '../../../src/data/DataPlane.js';
import { ControlClient } from '../../support/control.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { portRanges } from '../../support/ports.js';
import { within } from '../../support/traps.js';

type Range = { min: number; max: number };
const [passivePorts, activePorts] = portRanges(2, 10) as [Range, Range];
const pools = { passivePorts, activePorts };

let fake: FakeFtp;
let gw: TestGateway;

/** While set, every pinhole's open() waits for `release` first. */
let gate: { opened: () => void; release: Promise<void> } | undefined;
const proto = InProcessDataPlane.prototype as unknown as { pinhole: (request: PinholeRequest) => PinholeHandle };
const original = proto.pinhole;

beforeAll(async () => {
  proto.pinhole = function (this: InProcessDataPlane, request: PinholeRequest): PinholeHandle {
    const handle = original.call(this, request);
    const open = handle.open.bind(handle);
    handle.open = async () => {
      const g = gate;
      if (g !== undefined) {
        g.opened();
        await g.release;
      }
      return open();
    };
    return handle;
  };
  fake = await startFakeFtp();
});

afterAll(async () => {
  proto.pinhole = original;
  await fake.close();
});

beforeEach(async () => {
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, ...pools, limits: { maxPinholesPerClient: 1 } });
});

afterEach(async () => {
  gate = undefined;
  await gw.close();
});

async function session(): Promise<ControlClient> {
  const client = await ControlClient.connect(gw.port);
  expect((await client.reply()).code).toBe(220);
  await client.login();
  return client;
}

describe('the client vanishes while its pinhole is being opened', () => {
  it.each(['PASV', 'PORT 127,0,0,1,200,1'])('%s: the port and the per-client pinhole budget come back', async (command) => {
    let release: () => void = () => undefined;
    let opened: () => void = () => undefined;
    const openedNow = new Promise<void>((resolve) => {
      opened = resolve;
    });
    gate = { opened, release: new Promise<void>((resolve) => (release = resolve)) };
    const client = await session();
    await client.write(`${command}\r\n`);
    await within(3_000, 'open() to be called', openedNow);
    client.socket.resetAndDestroy();
    await vi.waitFor(() => expect(gw.gateway.stats().sessions).toBe(0));
    gate = undefined;
    release();
    await expectNoLeaks(gw.gateway, pools);

    // The address's one pinhole (maxPinholesPerClient: 1) must be free again.
    const next = await session();
    expect((await next.command('PASV')).code).toBe(227);
    next.destroy();
    await expectNoLeaks(gw.gateway, pools);
  });
});

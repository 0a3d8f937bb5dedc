/**
 * The rig of the fault tests that move whole files: a fake upstream
 * serving the given files, a gateway in front of it with two small port
 * pools, and a listener of the test's own for active mode. Each test's
 * clients and data sockets are destroyed after it, and then nothing may
 * be left in the gateway.
 */
import { type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { ControlClient } from './control.js';
import { startGateway, type TestGateway } from './gateway.js';
import { type FakeFtp, startFakeFtp } from './hostileUpstream.js';
import { expectNoLeaks } from './leaks.js';
import { portRanges } from './ports.js';
import { CLIENT, listen, type Listener } from './traps.js';
import { portArg } from './hostPort.js';

type Range = { min: number; max: number };

export interface TransferRig {
  readonly fake: FakeFtp;
  readonly gw: TestGateway;
  /** The test's own listener, where PORT sends the data connection. */
  readonly own: Listener;
  /** A logged-in session in binary mode, destroyed after the test. */
  session(): Promise<ControlClient>;
  /** Destroy `socket` after the test. */
  track<S extends Socket>(socket: S): S;
}

export interface TransferRigOptions {
  /** Checked after each test, once the gateway is known to hold nothing. */
  readonly afterEachCheck?: () => Promise<void>;
}

/** Registers the suite's hooks; the rig's peers exist from beforeAll on. */
export function useTransferRig(files: Record<string, Buffer>, options: TransferRigOptions = {}): TransferRig {
  const [passivePorts, activePorts] = portRanges(2, 10) as [Range, Range];
  const pools = { passivePorts, activePorts };
  let fake: FakeFtp | undefined;
  let gw: TestGateway | undefined;
  let own: Listener | undefined;
  const clients: ControlClient[] = [];
  const sockets: Socket[] = [];
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the transfer rig is used before beforeAll');
    return value;
  };

  beforeAll(async () => {
    fake = await startFakeFtp();
    for (const [name, body] of Object.entries(files)) fake.files.set(name, body);
    gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, ...pools });
    own = await listen(CLIENT);
  });

  afterAll(async () => {
    await gw?.close();
    await fake?.close();
    await own?.close();
  });

  afterEach(async () => {
    const upstream = started(fake);
    upstream.hooks.retr = (socket, data) => socket.end(data);
    for (const c of clients.splice(0)) c.destroy();
    for (const s of sockets.splice(0)) s.destroy();
    await expectNoLeaks(started(gw).gateway, pools);
    await options.afterEachCheck?.();
  });

  return {
    get fake() {
      return started(fake);
    },
    get gw() {
      return started(gw);
    },
    get own() {
      return started(own);
    },
    async session() {
      const client = await ControlClient.connect(started(gw).port);
      clients.push(client);
      expect((await client.reply()).code).toBe(220);
      await client.login();
      expect((await client.command('TYPE I')).code).toBe(200);
      return client;
    },
    track(socket) {
      sockets.push(socket);
      return socket;
    },
  };
}

/** PORT to the test's own listener. */
export async function portToOwn(client: ControlClient, own: Listener): Promise<void> {
  expect((await client.command(`PORT ${portArg('127.0.0.1', own.port)}`)).code).toBe(200);
}

/** Sends a transfer command (`RETR big.bin`) and expects the 150 that opens it. */
export async function startTransfer(client: ControlClient, command: string): Promise<void> {
  await client.write(`${command}\r\n`);
  expect((await client.reply()).code).toBe(150);
}

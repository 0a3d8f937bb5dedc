/**
 * A peer vanishing in the middle of an 8 MiB transfer, in every direction
 * and mode: the client drops its data connection, or everything; the
 * upstream resets its data connection, or everything. Each time the
 * pinhole closes both of its legs (the upstream's data socket is not left
 * open), the session goes on or ends as it should, and afterwards no
 * session, pinhole or port is left.
 */
import { randomBytes } from 'node:crypto';
import net, { type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ControlClient, parse227 } from '../../support/control.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks, MiB } from '../../support/leaks.js';
import { portRanges } from '../../support/ports.js';
import { CLIENT, listen, type Listener, within } from '../../support/traps.js';

type Range = { min: number; max: number };
const [passivePorts, activePorts] = portRanges(2, 10) as [Range, Range];
const pools = { passivePorts, activePorts };
const BIG = randomBytes(8 * MiB);

let fake: FakeFtp;
let gw: TestGateway;
let own: Listener;
const clients: ControlClient[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  fake = await startFakeFtp();
  fake.files.set('big.bin', BIG);
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, ...pools });
  own = await listen(CLIENT);
});

afterAll(async () => {
  await gw.close();
  await fake.close();
  await own.close();
});

afterEach(async () => {
  fake.hooks.retr = (socket, data) => socket.end(data);
  for (const c of clients.splice(0)) c.destroy();
  for (const s of sockets.splice(0)) s.destroy();
  await expectNoLeaks(gw.gateway, pools);
  await vi.waitFor(() => expect(fake.openDataSockets).toBe(0));
});

async function session(): Promise<ControlClient> {
  const client = await ControlClient.connect(gw.port);
  clients.push(client);
  expect((await client.reply()).code).toBe(220);
  await client.login();
  expect((await client.command('TYPE I')).code).toBe(200);
  return client;
}

interface DataEnd {
  socket: Socket;
  /** Bytes received so far. */
  received(): number;
  /** Resolves once `n` bytes have arrived (or the connection closed first). */
  atLeast(n: number): Promise<void>;
  closed: Promise<'end' | 'error'>;
}

function dataEnd(socket: Socket): DataEnd {
  sockets.push(socket);
  let bytes = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  let outcome: 'end' | 'error' = 'end';
  socket.on('data', (c: Buffer) => {
    bytes += c.length;
    for (const w of waiters.filter((x) => bytes >= x.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  socket.on('error', () => {
    outcome = 'error';
  });
  const closed = new Promise<'end' | 'error'>((resolve) =>
    socket.once('close', () => {
      for (const w of waiters.splice(0)) w.resolve();
      resolve(outcome);
    }),
  );
  return {
    socket,
    received: () => bytes,
    atLeast: (n) => (bytes >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))),
    closed,
  };
}

/** PASV and connect: the client's end of the data connection. */
async function passive(client: ControlClient): Promise<DataEnd> {
  const port = parse227((await client.command('PASV')).text).port;
  return dataEnd(net.connect({ host: CLIENT, port }));
}

/** PORT to the test's own listener; the data connection arrives once the transfer starts. */
async function active(client: ControlClient): Promise<() => Promise<DataEnd>> {
  expect((await client.command(`PORT 127,0,0,1,${own.port >> 8},${own.port & 0xff}`)).code).toBe(200);
  return async () => dataEnd(await own.connection());
}

/** Write `data` in 256 KiB pieces, respecting backpressure, until done or the socket is gone. */
async function upload(socket: Socket, data: Buffer): Promise<void> {
  for (let i = 0; i < data.length && !socket.destroyed; i += 256 * 1024) {
    if (!socket.write(data.subarray(i, i + 256 * 1024))) {
      await new Promise<void>((resolve) => {
        socket.once('drain', resolve);
        socket.once('close', resolve);
      });
    }
  }
}

describe('the client vanishes mid-transfer', () => {
  it('download (passive): the client drops the data connection; the session goes on', async () => {
    const client = await session();
    const data = await passive(client);
    await client.write('RETR big.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    await data.atLeast(MiB);
    data.socket.destroy();
    expect(data.received()).toBeLessThan(BIG.length);
    await within(5_000, 'the transfer reply', client.reply());
    expect((await client.command('NOOP')).code).toBe(200);
  });

  it('download (passive): the client drops everything', async () => {
    const client = await session();
    const data = await passive(client);
    await client.write('RETR big.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    await data.atLeast(MiB);
    data.socket.resetAndDestroy();
    client.socket.resetAndDestroy();
  });

  it('download (active): the client drops everything', async () => {
    const client = await session();
    const connected = await active(client);
    await client.write('RETR big.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    const data = await connected();
    await data.atLeast(MiB);
    data.socket.destroy();
    client.destroy();
  });

  it('upload (passive): the client drops the data connection half way; the session goes on', async () => {
    const client = await session();
    const data = await passive(client);
    await client.write('STOR up.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    await upload(data.socket, BIG.subarray(0, 2 * MiB)); // the rest is never sent
    // Reset once every byte sent has reached the upstream: what the gateway then sees is the reset itself.
    await within(5_000, '2 MiB upstream', fake.progressAtLeast('up.bin', 2 * MiB));
    data.socket.resetAndDestroy();
    expect((await within(5_000, 'uploaded', fake.uploaded('up.bin'))).length).toBe(2 * MiB);
    // The client's reset must reach the upstream as one: a FIN would tell it the (truncated) file is complete.
    expect(fake.uploadEnding('up.bin')).toBe('reset');
    await within(5_000, 'the transfer reply', client.reply());
    expect((await client.command('NOOP')).code).toBe(200);
  });

  it('upload (active): the client drops everything half way', async () => {
    const client = await session();
    const connected = await active(client);
    await client.write('STOR up-active.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    const data = await connected();
    await upload(data.socket, BIG.subarray(0, 2 * MiB));
    await within(5_000, '2 MiB upstream', fake.progressAtLeast('up-active.bin', 2 * MiB));
    data.socket.resetAndDestroy();
    client.socket.resetAndDestroy();
    await within(5_000, 'uploaded', fake.uploaded('up-active.bin'));
    expect(fake.uploadEnding('up-active.bin')).toBe('reset');
  });
});

describe('the upstream vanishes mid-transfer', () => {
  it('download (passive): the upstream resets its data connection; the client sees the cut; the session goes on', async () => {
    fake.hooks.retr = (socket, payload) => socket.write(payload.subarray(0, 2 * MiB), () => socket.resetAndDestroy());
    const client = await session();
    const data = await passive(client);
    await client.write('RETR big.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    // The upstream's reset must reach the client as one: a clean FIN would make the cut file look complete.
    expect(await within(5_000, 'the data connection to close', data.closed)).toBe('error');
    expect(data.received()).toBeLessThan(BIG.length);
    await within(5_000, 'the transfer reply', client.reply());
    expect((await client.command('NOOP')).code).toBe(200);
  });

  it('upload (passive): the upstream resets its data connection half way', async () => {
    const client = await session();
    const data = await passive(client);
    await client.write('STOR cut.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    const sending = upload(data.socket, BIG);
    await within(5_000, '1 MiB upstream', fake.progressAtLeast('cut.bin', MiB));
    fake.resetDataSockets();
    await within(5_000, 'the client data connection to close', data.closed);
    await sending;
    expect(fake.progress('cut.bin')).toBeLessThan(BIG.length);
    await within(5_000, 'the transfer reply', client.reply());
    expect((await client.command('NOOP')).code).toBe(200);
  });

  it('download (active): the upstream drops everything: 421 or close, and the client data connection closes', async () => {
    const client = await session();
    const connected = await active(client);
    await client.write('RETR big.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    const data = await connected();
    await data.atLeast(MiB);
    fake.resetDataSockets();
    fake.connections.at(-1)?.socket.resetAndDestroy();
    await within(5_000, 'the client data connection to close', data.closed);
    await within(5_000, 'the control connection to close', client.closed);
  });

  it('download (passive): the upstream control connection resets, its data connection too', async () => {
    const client = await session();
    const data = await passive(client);
    await client.write('RETR big.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    await data.atLeast(MiB);
    fake.connections.at(-1)?.socket.resetAndDestroy();
    fake.resetDataSockets();
    await within(5_000, 'the control connection to close', client.closed);
    await within(5_000, 'the data connection to close', data.closed);
  });
});

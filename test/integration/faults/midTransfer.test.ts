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
import { describe, expect, it, vi } from 'vitest';
import { type ControlClient } from '../../support/control.js';
import type { ScriptedConnection } from '../../support/scripted.js';
import { MiB } from '../../support/leaks.js';
import { CLIENT, within } from '../../support/traps.js';
import { portToOwn, startTransfer, useTransferRig } from '../../support/transferRig.js';
import { parse227 } from '../../support/hostPort.js';

const BIG = randomBytes(8 * MiB);

const rig = useTransferRig(
  { 'big.bin': BIG },
  { afterEachCheck: () => vi.waitFor(() => expect(rig.fake.openDataSockets).toBe(0)) },
);
const { session } = rig;

/** The transfer's reply comes, and the session still answers. */
async function expectSessionGoesOn(client: ControlClient): Promise<void> {
  await within(5_000, 'the transfer reply', client.reply());
  expect((await client.command('NOOP')).code).toBe(200);
}

/**
 * The session is over: the gateway closed its upstream control connection (the
 * session's, taken before the client vanished), the upstream's data socket is not
 * left open, and no session or pinhole is left.
 */
async function expectSessionEnded(upstreamControl: ScriptedConnection): Promise<void> {
  await within(5_000, "the session's upstream control connection closed", upstreamControl.closed);
  await vi.waitFor(() => expect(rig.fake.openDataSockets).toBe(0));
  await vi.waitFor(() => expect(rig.gw.gateway.stats()).toMatchObject({ sessions: 0, pinholes: 0 }));
}

/** The upstream control connection of the session opened last. */
function lastUpstreamControl(): ScriptedConnection {
  const conn = rig.fake.connections.at(-1);
  if (conn === undefined) throw new Error('no session reached the upstream');
  return conn;
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
  rig.track(socket);
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
  await portToOwn(client, rig.own);
  return async () => dataEnd(await rig.own.connection());
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
    await startTransfer(client, 'RETR big.bin');
    await data.atLeast(MiB);
    data.socket.destroy();
    expect(data.received()).toBeLessThan(BIG.length);
    await expectSessionGoesOn(client);
  });

  it('download (passive): the client drops everything', async () => {
    const client = await session();
    const data = await passive(client);
    await startTransfer(client, 'RETR big.bin');
    await data.atLeast(MiB);
    const upstreamControl = lastUpstreamControl();
    data.socket.resetAndDestroy();
    client.socket.resetAndDestroy();
    await expectSessionEnded(upstreamControl);
  });

  it('download (active): the client drops everything', async () => {
    const client = await session();
    const connected = await active(client);
    await startTransfer(client, 'RETR big.bin');
    const data = await connected();
    await data.atLeast(MiB);
    const upstreamControl = lastUpstreamControl();
    data.socket.destroy();
    client.destroy();
    await expectSessionEnded(upstreamControl);
  });

  it('upload (passive): the client drops the data connection half way; the session goes on', async () => {
    const client = await session();
    const data = await passive(client);
    await startTransfer(client, 'STOR up.bin');
    await upload(data.socket, BIG.subarray(0, 2 * MiB)); // the rest is never sent
    // Reset once every byte sent has reached the upstream: what the gateway then sees is the reset itself.
    await within(5_000, '2 MiB upstream', rig.fake.progressAtLeast('up.bin', 2 * MiB));
    data.socket.resetAndDestroy();
    expect((await within(5_000, 'uploaded', rig.fake.uploaded('up.bin'))).length).toBe(2 * MiB);
    // The client's reset must reach the upstream as one: a FIN would tell it the (truncated) file is complete.
    expect(rig.fake.uploadEnding('up.bin')).toBe('reset');
    await expectSessionGoesOn(client);
  });

  it('upload (active): the client drops everything half way', async () => {
    const client = await session();
    const connected = await active(client);
    await startTransfer(client, 'STOR up-active.bin');
    const data = await connected();
    await upload(data.socket, BIG.subarray(0, 2 * MiB));
    await within(5_000, '2 MiB upstream', rig.fake.progressAtLeast('up-active.bin', 2 * MiB));
    data.socket.resetAndDestroy();
    client.socket.resetAndDestroy();
    await within(5_000, 'uploaded', rig.fake.uploaded('up-active.bin'));
    expect(rig.fake.uploadEnding('up-active.bin')).toBe('reset');
  });
});

describe('the upstream vanishes mid-transfer', () => {
  it('download (passive): the upstream resets its data connection; the client sees the cut; the session goes on', async () => {
    rig.fake.hooks.retr = (socket, payload) => socket.write(payload.subarray(0, 2 * MiB), () => socket.resetAndDestroy());
    const client = await session();
    const data = await passive(client);
    await startTransfer(client, 'RETR big.bin');
    // The upstream's reset must reach the client as one: a clean FIN would make the cut file look complete.
    expect(await within(5_000, 'the data connection to close', data.closed)).toBe('error');
    expect(data.received()).toBeLessThan(BIG.length);
    await expectSessionGoesOn(client);
  });

  it('upload (passive): the upstream resets its data connection half way', async () => {
    const client = await session();
    const data = await passive(client);
    await startTransfer(client, 'STOR cut.bin');
    const sending = upload(data.socket, BIG);
    await within(5_000, '1 MiB upstream', rig.fake.progressAtLeast('cut.bin', MiB));
    rig.fake.resetDataSockets();
    await within(5_000, 'the client data connection to close', data.closed);
    await sending;
    expect(rig.fake.progress('cut.bin')).toBeLessThan(BIG.length);
    await expectSessionGoesOn(client);
  });

  it('download (active): the upstream drops everything: 421 or close, and the client data connection closes', async () => {
    const client = await session();
    const connected = await active(client);
    await startTransfer(client, 'RETR big.bin');
    const data = await connected();
    await data.atLeast(MiB);
    rig.fake.resetDataSockets();
    rig.fake.connections.at(-1)?.socket.resetAndDestroy();
    await within(5_000, 'the client data connection to close', data.closed);
    await within(5_000, 'the control connection to close', client.closed);
  });

  it('download (passive): the upstream control connection resets, its data connection too', async () => {
    const client = await session();
    const data = await passive(client);
    await startTransfer(client, 'RETR big.bin');
    await data.atLeast(MiB);
    rig.fake.connections.at(-1)?.socket.resetAndDestroy();
    rig.fake.resetDataSockets();
    await within(5_000, 'the control connection to close', client.closed);
    await within(5_000, 'the data connection to close', data.closed);
  });
});

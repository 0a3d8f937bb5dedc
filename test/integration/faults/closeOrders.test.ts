/**
 * Byte-exact transfers whatever order the peers close in. FTP stream mode
 * ends an upload with the client's FIN: a relay that turned the FIN into
 * a close, or dropped what it still held when the other side reset after
 * its FIN, would truncate files silently. Every case is checked by sha256
 * of what arrived.
 */
import { createHash, randomBytes } from 'node:crypto';
import net, { type Socket } from 'node:net';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { type ControlClient } from '../../support/control.js';
import { MiB } from '../../support/leaks.js';
import { CLIENT, within } from '../../support/traps.js';
import { portToOwn, startTransfer, useTransferRig } from '../../support/transferRig.js';
import { parse227 } from '../../support/hostPort.js';

const BIG = randomBytes(8 * MiB);
const SMALL = randomBytes(256 * 1024);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const rig = useTransferRig({ 'big.bin': BIG, 'small.bin': SMALL, 'empty.bin': Buffer.alloc(0) });
const { session } = rig;

async function passiveSocket(client: ControlClient): Promise<Socket> {
  const port = parse227((await client.command('PASV')).text).port;
  const socket = net.connect({ host: CLIENT, port, allowHalfOpen: true });
  socket.on('error', () => undefined);
  return rig.track(socket);
}

/** Everything read until the peer's FIN (then the client closes its side, as clients do). */
function readAll(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    socket.once('end', () => {
      socket.end();
      resolve(Buffer.concat(chunks));
    });
    socket.once('close', () => reject(new Error(`closed without FIN after ${Buffer.concat(chunks).length} bytes`)));
  });
}

describe('uploads end with the client FIN', () => {
  it('passive: 8 MiB, then half-close; the upstream gets every byte and the FIN', async () => {
    const client = await session();
    const data = await passiveSocket(client);
    await startTransfer(client, 'STOR half.bin');
    data.end(BIG);
    expect(sha(await within(10_000, 'upload', rig.fake.uploaded('half.bin')))).toBe(sha(BIG));
    await within(5_000, 'the data connection to close', once(data, 'close'));
    expect((await client.reply()).code).toBe(226);
  });

  it('active: 8 MiB from the client side of the data connection, then half-close', async () => {
    const client = await session();
    await portToOwn(client, rig.own);
    await startTransfer(client, 'STOR half-active.bin');
    const data = await rig.own.connection();
    data.end(BIG);
    expect(sha(await within(10_000, 'upload', rig.fake.uploaded('half-active.bin')))).toBe(sha(BIG));
    expect((await client.reply()).code).toBe(226);
  });

  it('the client resets after its FIN, once the upstream has every byte: the upload stands', async () => {
    const client = await session();
    const data = await passiveSocket(client);
    await startTransfer(client, 'STOR rst.bin');
    data.end(SMALL);
    await within(5_000, 'all bytes upstream', rig.fake.progressAtLeast('rst.bin', SMALL.length));
    data.resetAndDestroy();
    expect(sha(await within(5_000, 'upload', rig.fake.uploaded('rst.bin')))).toBe(sha(SMALL));
    expect((await client.command('NOOP')).code).toBeGreaterThan(0);
  });

  it('an empty upload: connect and FIN at once', async () => {
    const client = await session();
    const data = await passiveSocket(client);
    await startTransfer(client, 'STOR empty-up.bin');
    data.end();
    expect((await within(5_000, 'upload', rig.fake.uploaded('empty-up.bin'))).length).toBe(0);
    expect((await client.reply()).code).toBe(226);
  });
});

describe('downloads end with the upstream FIN', () => {
  it('8 MiB, read slowly: every byte, then the FIN', async () => {
    const client = await session();
    const data = await passiveSocket(client);
    await startTransfer(client, 'RETR big.bin');
    data.pause(); // let the gateway hold what it can, then read
    const body = readAll(data);
    setImmediate(() => data.resume());
    expect(sha(await within(10_000, 'download', body))).toBe(sha(BIG));
    expect((await within(5_000, '226', client.reply())).code).toBe(226);
  });

  it('the upstream resets instead of answering the client FIN: the download is complete, nothing left', async () => {
    rig.fake.hooks.retr = (socket, payload) => {
      socket.end(payload);
      socket.once('end', () => socket.resetAndDestroy());
    };
    const client = await session();
    const data = await passiveSocket(client);
    const body = readAll(data);
    await startTransfer(client, 'RETR small.bin');
    expect(sha(await within(5_000, 'download', body))).toBe(sha(SMALL));
    await within(5_000, 'the data connection to close', once(data, 'close'));
  });

  it('the client resets instead of answering the FIN: complete, nothing left', async () => {
    const client = await session();
    const data = await passiveSocket(client);
    const body = readAll(data);
    await startTransfer(client, 'RETR small.bin');
    expect(sha(await within(5_000, 'download', body))).toBe(sha(SMALL));
    data.resetAndDestroy();
    expect((await client.reply()).code).toBe(226);
  });

  it('an empty download: the FIN alone', async () => {
    const client = await session();
    const data = await passiveSocket(client);
    const body = readAll(data);
    await startTransfer(client, 'RETR empty.bin');
    expect((await within(5_000, 'download', body)).length).toBe(0);
    expect((await within(5_000, '226', client.reply())).code).toBe(226);
  });

  it('active: 8 MiB to the client listener, byte-exact', async () => {
    const client = await session();
    await portToOwn(client, rig.own);
    await startTransfer(client, 'RETR big.bin');
    const data = await rig.own.connection();
    const chunks: Buffer[] = [];
    data.on('data', (c: Buffer) => chunks.push(c));
    await within(10_000, 'download', once(data, 'end'));
    expect(sha(Buffer.concat(chunks))).toBe(sha(BIG));
    expect((await client.reply()).code).toBe(226);
  });
});

/**
 * The relay between the two legs of a data connection (src/data/relay.ts).
 *
 * Its fast path reads into windows of large slabs with `onread`, on sockets
 * it connects and on sockets a pinhole accepts (moved onto the fast path by
 * adoptForRelay, which uses Node internals: no Node release up to 24 lets a
 * listener give its accepted sockets `onread`). If a Node upgrade breaks
 * that move, the relay silently falls back to 64 KiB stream reads; the
 * first rows fail then, on whichever Node version CI runs them.
 *
 * Its counters count bytes delivered (written to the destination socket),
 * not bytes read: a transfer cut while the destination lags does not claim
 * the bytes it never passed on.
 */
import { randomBytes } from 'node:crypto';
import net, { type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { adoptForRelay, connectForRelay, relay, type RelayCounters } from '../../../src/data/relay.js';
import { within } from '../../support/traps.js';

const SLAB_MIN_BYTES = 256 * 1024; // DESIGN.md: a fresh 256 KiB-1 MiB buffer per read
const STREAM_READ_BYTES = 64 * 1024; // what a stream socket reads at most at once
const PAYLOAD = randomBytes(16 * 1024 * 1024);

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const undo of cleanup.splice(0)) undo();
});

function listening(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

/**
 * The two legs as a pinhole has them: `accepted`, taken by a listener made
 * like a pinhole's (pauseOnConnect) and adopted onto the fast path; and
 * `connected`, made by connectForRelay. Their peers are plain sockets the
 * test drives: `sender` (behind the accepted leg) and `receiver` (behind the
 * connected leg), paused until the test reads.
 */
async function legs(): Promise<{ accepted: Socket; connected: Socket; sender: Socket; receiver: Socket }> {
  const pinholeListener = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  const far = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  cleanup.push(() => pinholeListener.close(), () => far.close());
  const [pinholePort, farPort] = await Promise.all([listening(pinholeListener), listening(far)]);
  const acceptedNow = new Promise<Socket>((resolve) => pinholeListener.once('connection', resolve));
  const receiverNow = new Promise<Socket>((resolve) => far.once('connection', resolve));
  const sender = net.connect({ port: pinholePort, host: '127.0.0.1', allowHalfOpen: true });
  const connected = connectForRelay({ port: farPort, host: '127.0.0.1', allowHalfOpen: true });
  await Promise.all([new Promise((r) => sender.once('connect', r)), new Promise((r) => connected.once('connect', r))]);
  const accepted = adoptForRelay(await acceptedNow);
  const receiver = await receiverNow;
  for (const s of [accepted, connected, sender, receiver]) {
    s.on('error', () => undefined);
    cleanup.push(() => s.destroy());
  }
  return { accepted, connected, sender, receiver };
}

/** Record the chunks a relay writes into `socket`: their lengths and the size of the memory behind them. */
function recordWrites(socket: Socket): { lengths: number[]; backing: number[] } {
  const seen = { lengths: [] as number[], backing: [] as number[] };
  const write = socket.write.bind(socket) as (chunk: Buffer, cb?: (err?: Error | null) => void) => boolean;
  socket.write = ((chunk: Buffer, cb?: (err?: Error | null) => void) => {
    seen.lengths.push(chunk.length);
    seen.backing.push(chunk.buffer.byteLength);
    return write(chunk, cb);
  }) as typeof socket.write;
  return seen;
}

function receiveAll(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.resume();
  return new Promise((resolve) => socket.once('end', () => resolve(Buffer.concat(chunks))));
}

function relayed(a: Socket, b: Socket): { counters: RelayCounters; done: Promise<Error | undefined> } {
  let counters: RelayCounters = { aToB: 0, bToA: 0 };
  const done = new Promise<Error | undefined>((resolve) => {
    counters = relay(a, b, resolve);
  });
  return { counters, done };
}

describe(`relay fast path on Node ${process.versions.node}`, () => {
  it.each([
    ['an accepted socket (adoptForRelay)', 'up'],
    ['a connected socket (connectForRelay)', 'down'],
  ] as const)('reads from %s land in large slabs, more than a stream read at a time', async (_leg, direction) => {
    const { accepted, connected, sender, receiver } = await legs();
    const [from, into, source, sink] = direction === 'up' ? [accepted, connected, sender, receiver] : [connected, accepted, receiver, sender];
    const writes = recordWrites(into);
    source.resume(); // a receiver, now sending: let its 'end' arrive
    sink.resume();
    source.end(PAYLOAD);
    const arrived = receiveAll(sink);
    const { done } = relayed(from, into);
    expect((await within(15_000, '16 MiB through the relay', arrived)).equals(PAYLOAD)).toBe(true); // not toEqual: 16 MiB element by element
    sink.end(); // the other direction ends too: the relay is done once both have
    expect(await within(5_000, 'the relay to finish', done)).toBeUndefined();
    const small = writes.backing.filter((bytes) => bytes < SLAB_MIN_BYTES);
    expect(small).toEqual([]); // every chunk is a window of a slab
    const largest = Math.max(...writes.lengths);
    console.log(`Node ${process.versions.node}, ${_leg}: ${writes.lengths.length} reads, largest ${largest} bytes`);
    expect(largest).toBeGreaterThan(STREAM_READ_BYTES);
  });
});

describe('relay counters', () => {
  it('count bytes delivered to the destination, not bytes read from the source', async () => {
    const { accepted, connected, sender, receiver } = await legs(); // receiver stays paused: the destination lags
    const { counters, done } = relayed(accepted, connected);
    sender.end(PAYLOAD);
    // The relay reads ahead of what the destination has taken, up to its write budget.
    await vi.waitFor(() => expect(connected.writableLength).toBeGreaterThan(0), { timeout: 10_000, interval: 5 });
    const read = accepted.bytesRead;
    expect(counters.aToB).toBeLessThan(read);
    expect(counters.aToB).toBeLessThanOrEqual(read - connected.writableLength);

    const arrived = receiveAll(receiver);
    expect((await within(15_000, 'the rest to arrive', arrived)).equals(PAYLOAD)).toBe(true);
    receiver.end();
    expect(await within(5_000, 'the relay to finish', done)).toBeUndefined();
    expect(counters).toEqual({ aToB: PAYLOAD.length, bToA: 0 });
  });

  it('a transfer cut while the destination lags counts only what was delivered', async () => {
    const { accepted, connected, sender, receiver } = await legs();
    const { counters, done } = relayed(accepted, connected);
    sender.write(PAYLOAD);
    await vi.waitFor(() => expect(connected.writableLength).toBeGreaterThan(0), { timeout: 10_000, interval: 5 });
    receiver.resetAndDestroy(); // the destination's peer goes away
    expect(await within(5_000, 'the relay to fail', done)).toBeInstanceOf(Error);
    expect(counters.aToB).toBeLessThan(accepted.bytesRead);
  });
});

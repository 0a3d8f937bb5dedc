/**
 * Soak: many sessions with small transfers, in both directions and both
 * modes, about one in ten cut short (ABOR in the middle of a download, or
 * the client vanishing mid-transfer), 20 at a time. Afterwards no
 * session, pinhole or port is left, the upstream holds no data
 * connection, and the heap is about where it was after the warm-up.
 *
 * CI runs 1000 sessions (about 10 s); scale with SOAK_SESSIONS, e.g.
 *   SOAK_SESSIONS=20000 npx vitest run test/integration/faults/soak.test.ts
 */
import { createHash, randomBytes } from 'node:crypto';
import net, { type Socket } from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks, liveBytes, MiB } from '../../support/leaks.js';
import { portRanges } from '../../support/ports.js';
import { CLIENT, listen, within } from '../../support/traps.js';
import { parse227, parse229, portArg } from '../../support/hostPort.js';

type Range = { min: number; max: number };
const [passivePorts, activePorts] = portRanges(2, 100) as [Range, Range];
const pools = { passivePorts, activePorts };
const SESSIONS = Number(process.env.SOAK_SESSIONS ?? 1000);
const CONCURRENCY = 20;
const WARM_UP = Math.min(100, Math.floor(SESSIONS / 10));
const SMALL = randomBytes(16 * 1024);
const BIG = randomBytes(4 * MiB);
const CHUNK = 64 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let fake: FakeFtp;
let gw: TestGateway;

beforeAll(async () => {
  fake = await startFakeFtp();
  fake.files.set('small.bin', SMALL);
  fake.files.set('big.bin', BIG);
  // The big file goes out 64 KiB per turn, so that a cut always lands in the middle.
  fake.hooks.retr = (socket, data) => {
    if (data !== BIG) return socket.end(data);
    let offset = 0;
    const step = (): void => {
      if (socket.destroyed) return;
      if (offset >= data.length) return void socket.end();
      const more = socket.write(data.subarray(offset, offset + CHUNK));
      offset += CHUNK;
      if (more) setImmediate(step);
      else socket.once('drain', step);
    };
    step();
  };
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, ...pools, limits: { maxSessionsPerClient: 100 } });
});

afterAll(async () => {
  await gw?.close();
  await fake?.close();
});

type Kind = 'download' | 'upload' | 'abort' | 'vanish';

function plan(i: number): { kind: Kind; mode: 'PASV' | 'EPSV' | 'PORT' } {
  const kind: Kind = i % 10 === 3 ? 'abort' : i % 10 === 7 ? 'vanish' : i % 2 === 0 ? 'download' : 'upload';
  const mode = i % 5 === 1 ? 'PORT' : i % 2 === 0 ? 'PASV' : 'EPSV';
  return { kind, mode };
}

/** Set up the data connection the client's way; resolves with the client's end of it once the transfer has started. */
async function dataConnection(client: ControlClient, mode: 'PASV' | 'EPSV' | 'PORT', cleanup: (() => Promise<void>)[]): Promise<() => Promise<Socket>> {
  if (mode === 'PORT') {
    const own = await listen(CLIENT);
    cleanup.push(() => own.close());
    expect((await client.command(`PORT ${portArg('127.0.0.1', own.port)}`)).code).toBe(200);
    return () => own.connection();
  }
  const reply = await client.command(mode);
  const port = mode === 'PASV' ? parse227(reply.text).port : parse229(reply.text);
  const socket = net.connect({ host: CLIENT, port });
  socket.on('error', () => undefined);
  cleanup.push(async () => void socket.destroy());
  return async () => socket;
}

function collect(socket: Socket): { bytes: () => number; whole: Promise<Buffer> } {
  const chunks: Buffer[] = [];
  let n = 0;
  socket.on('data', (c: Buffer) => {
    chunks.push(c);
    n += c.length;
  });
  const whole = once(socket, 'end').then(() => Buffer.concat(chunks));
  whole.catch(() => undefined); // an aborted transfer is reset, and its whole is never awaited
  return { bytes: () => n, whole };
}

async function runSession(i: number): Promise<void> {
  const { kind, mode } = plan(i);
  const cleanup: (() => Promise<void>)[] = [];
  const client = await ControlClient.connect(gw.port);
  try {
    expect((await client.reply()).code).toBe(220);
    await client.login();
    expect((await client.command('TYPE I')).code).toBe(200);
    const connected = await dataConnection(client, mode, cleanup);
    if (kind === 'upload') {
      const path = `up-${i}.bin`;
      await client.write(`STOR ${path}\r\n`);
      expect((await client.reply()).code).toBe(150);
      (await connected()).end(SMALL);
      expect(sha(await fake.uploaded(path))).toBe(sha(SMALL));
      expect((await client.reply()).code).toBe(226);
      fake.forget(path);
    } else if (kind === 'download') {
      await client.write('RETR small.bin\r\n');
      expect((await client.reply()).code).toBe(150);
      const got = collect(await connected());
      expect(sha(await got.whole)).toBe(sha(SMALL));
      expect((await client.reply()).code).toBe(226);
    } else {
      await client.write('RETR big.bin\r\n');
      expect((await client.reply()).code).toBe(150);
      const socket = await connected();
      const got = collect(socket);
      await vi.waitFor(() => expect(got.bytes()).toBeGreaterThan(0), { interval: 5 });
      if (kind === 'vanish') {
        socket.destroy();
        client.destroy();
        return;
      }
      await client.write('ABOR\r\n');
      // 426 then 226 (RFC 959 ABOR), or 226 twice when the gateway's closing of the data
      // connection reached the upstream before the ABOR did.
      const codes = [(await client.reply()).code, (await client.reply()).code];
      expect([426, 226]).toContain(codes[0]);
      expect(codes[1]).toBe(226);
      socket.destroy();
    }
    expect((await client.command('QUIT')).code).toBe(221);
  } finally {
    client.destroy();
    for (const c of cleanup) await c();
  }
}

async function runAll(from: number, to: number): Promise<void> {
  let next = from;
  const worker = async () => {
    while (next < to) {
      const i = next++;
      await within(15_000, `session ${i} (${plan(i).kind} ${plan(i).mode})`, runSession(i));
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  // What the fake upstream keeps for its own bookkeeping is not the gateway's.
  fake.connections.splice(0);
  fake.dataPeers.splice(0);
  fake.activeTargets.splice(0);
}

describe('soak', () => {
  it(`${SESSIONS} sessions, ${CONCURRENCY} at a time, one in ten cut short: nothing left, heap flat`, async () => {
    const started = performance.now();
    await runAll(0, WARM_UP);
    await expectNoLeaks(gw.gateway, pools, 10_000);
    const before = liveBytes();
    await runAll(WARM_UP, SESSIONS);
    await expectNoLeaks(gw.gateway, pools, 10_000);
    await vi.waitFor(() => expect(fake.openDataSockets).toBe(0), { timeout: 10_000 });
    const after = liveBytes();
    const grown = after.heapUsed - before.heapUsed;
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `soak: ${SESSIONS} sessions in ${seconds.toFixed(1)} s; heap ${(before.heapUsed / MiB).toFixed(1)} -> ${(after.heapUsed / MiB).toFixed(1)} MiB ` +
        `(${grown >= 0 ? '+' : ''}${(grown / MiB).toFixed(2)} MiB), buffers ${(before.arrayBuffers / MiB).toFixed(1)} -> ${(after.arrayBuffers / MiB).toFixed(1)} MiB`,
    );
    // Generous: a per-session leak of even 8 KiB would show as 8 MiB over 1000 sessions.
    expect(grown).toBeLessThan(8 * MiB);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(8 * MiB);
  }, 120_000);
});

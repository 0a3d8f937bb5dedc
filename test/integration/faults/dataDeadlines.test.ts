/**
 * Data connections that never come or stall: a pinhole nobody connects to
 * closes at pinholeAcceptMs and its port goes back to the pool; a relay
 * with no byte in either direction for dataIdleMs is cut on both legs. A
 * transfer that keeps moving outlives the control idle deadline (the
 * session is not cut under a running transfer).
 */
import { randomBytes } from 'node:crypto';
import net, { type Socket } from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks, MiB } from '../../support/leaks.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { CLIENT, closedHow, listen, type Listener, probe, within } from '../../support/traps.js';
import { parse227, parse229, parseActiveLine, portArg } from '../../support/hostPort.js';

type Range = { min: number; max: number };
const [passivePorts, activePorts] = portRanges(2, 10) as [Range, Range];
const pools = { passivePorts, activePorts };
const ACCEPT_MS = 200;
const DATA_IDLE_MS = 300;

let fake: FakeFtp | undefined;
let gw: TestGateway | undefined;
let own: Listener | undefined;
const clients: ControlClient[] = [];
const sockets: Socket[] = [];
const timers: NodeJS.Timeout[] = [];

afterEach(async () => {
  for (const t of timers.splice(0)) clearInterval(t);
  for (const c of clients.splice(0)) c.destroy();
  for (const s of sockets.splice(0)) s.destroy();
  if (gw !== undefined) await expectNoLeaks(gw.gateway, pools);
  await gw?.close();
  gw = undefined;
  await fake?.close();
  fake = undefined;
  await own?.close();
  own = undefined;
});

async function start(timeouts: Record<string, number>): Promise<{ gw: TestGateway; fake: FakeFtp; client: ControlClient }> {
  fake = await startFakeFtp();
  fake.files.set('big.bin', randomBytes(4 * MiB));
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, ...pools, timeouts });
  const client = await ControlClient.connect(gw.port);
  clients.push(client);
  expect((await client.reply()).code).toBe(220);
  await client.login();
  return { gw, fake, client };
}

function track(socket: Socket): Socket {
  sockets.push(socket);
  socket.on('error', () => undefined);
  return socket;
}

describe('a pinhole nobody connects to', () => {
  it.each(['PASV', 'EPSV'] as const)('%s: closed at pinholeAcceptMs, port back, counted; the session goes on', async (verb) => {
    const { gw, fake, client } = await start({ pinholeAcceptMs: ACCEPT_MS });
    const started = performance.now();
    const reply = await client.command(verb);
    const port = verb === 'PASV' ? parse227(reply.text).port : parse229(reply.text);
    expect(gw.gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts) - 1);
    await vi.waitFor(() => expect(gw.gateway.stats().pinholes).toBe(0), { timeout: 3_000, interval: 10 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(ACCEPT_MS - 20);
    expect(await counterTotal(gw.gateway, 'ftp_alg_pinholes_expired_total')).toBe(1);
    await vi.waitFor(() => expect(gw.gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts)));
    expect((await probe(port, CLIENT)).outcome).toBe('refused');
    expect(fake.dataPeers).toEqual([]);
    expect((await client.command('NOOP')).code).toBe(200);
  });

  it('PORT whose upstream never connects: closed at pinholeAcceptMs, active port back', async () => {
    own = await listen(CLIENT);
    const { gw, fake, client } = await start({ pinholeAcceptMs: ACCEPT_MS });
    expect((await client.command(`PORT ${portArg('127.0.0.1', own.port)}`)).code).toBe(200);
    const announced = parseActiveLine(fake.connections.at(-1)?.lines.at(-1) ?? '');
    expect(gw.gateway.stats().sites[SITE]?.activeFree).toBe(rangeSize(activePorts) - 1);
    await vi.waitFor(() => expect(gw.gateway.stats().sites[SITE]?.activeFree).toBe(rangeSize(activePorts)), { timeout: 3_000 });
    expect((await probe(announced.port, CLIENT)).outcome).toBe('refused');
    expect(own.peers).toEqual([]);
  });
});

describe('a stalled data connection', () => {
  it('download: the upstream sends 1 MiB and then nothing; both legs are cut at dataIdleMs', async () => {
    const { gw, fake, client } = await start({ dataIdleMs: DATA_IDLE_MS });
    fake.hooks.retr = (socket, data) => socket.write(data.subarray(0, MiB)); // and never more, never FIN
    const port = parse227((await client.command('PASV')).text).port;
    const data = track(net.connect({ host: CLIENT, port }));
    const how = closedHow(data);
    let received = 0;
    data.on('data', (c: Buffer) => {
      received += c.length;
    });
    await client.write('RETR big.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    const started = performance.now();
    // Cut, not finished: a clean FIN would make the partial file look complete to the client.
    expect(await within(5_000, 'the data connection to be cut', how)).toBe('reset');
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThanOrEqual(MiB);
    expect(performance.now() - started).toBeGreaterThanOrEqual(DATA_IDLE_MS - 50);
    await vi.waitFor(() => expect(fake.openDataSockets).toBe(0));
    expect(gw.gateway.stats().pinholes).toBe(0);
  });

  it('upload: the client sends 64 KiB and then nothing; both legs are cut at dataIdleMs', async () => {
    const { fake, client } = await start({ dataIdleMs: DATA_IDLE_MS });
    const port = parse227((await client.command('PASV')).text).port;
    const data = track(net.connect({ host: CLIENT, port }));
    await client.write('STOR stall.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    data.write(randomBytes(64 * 1024));
    await within(5_000, 'the upstream to have the bytes', fake.progressAtLeast('stall.bin', 64 * 1024));
    await within(5_000, 'the data connection to be cut', closedHow(data));
    expect((await within(5_000, 'the upload to end upstream', fake.uploaded('stall.bin'))).length).toBe(64 * 1024);
    // Cut, not finished: a FIN would tell the upstream the file is complete.
    expect(fake.uploadEnding('stall.bin')).toBe('reset');
  });

  it('a transfer that keeps moving is not cut by the control idle deadline', async () => {
    const { client, fake } = await start({ controlIdleMs: 200, dataIdleMs: 2_000 });
    // 16 KiB every 25 ms for about 600 ms: the control connection is silent all along.
    fake.hooks.retr = (socket, data) => {
      let sent = 0;
      const timer = setInterval(() => {
        if (sent >= 24 * 16 * 1024) {
          clearInterval(timer);
          socket.end();
          return;
        }
        socket.write(data.subarray(sent, sent + 16 * 1024));
        sent += 16 * 1024;
      }, 25);
      timers.push(timer);
    };
    const port = parse227((await client.command('PASV')).text).port;
    const data = track(net.connect({ host: CLIENT, port }));
    let received = 0;
    data.on('data', (c: Buffer) => {
      received += c.length;
    });
    await client.write('RETR big.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    await within(5_000, 'the download to end', once(data, 'end'));
    expect(received).toBe(24 * 16 * 1024);
    expect((await within(5_000, '226', client.reply())).code).toBe(226);
    expect((await client.command('NOOP')).code).toBe(200);
  });
});

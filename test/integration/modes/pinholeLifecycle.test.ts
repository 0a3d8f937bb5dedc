/**
 * Pinholes of every kind close on a new PASV/EPSV/PORT/EPRT, on ABOR and
 * REIN, and at the end of the session; no listener outlives its accept
 * deadline (issue 3 item 5; DESIGN.md "Pinhole"). "Closed" is checked from
 * outside: the port refuses connections and is back in its pool. Probes
 * come from 127.0.0.2, an address no pinhole expects, so that a probe never
 * becomes a pinhole's peer.
 */
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { UpstreamDataMode } from '../../../src/config/types.js';
import { ControlClient } from '../../support/control.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { dataCommands, type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { eprtArg, parse227, parse229, parseActiveLine, portArg } from '../../support/hostPort.js';
import type { ScriptedConnection } from '../../support/scripted.js';
import { listen, type Listener, probe } from '../../support/traps.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
const PROBE_FROM = '127.0.0.2';
const ACCEPT_MS = 300;
/** Generous bound for timers and scheduling on a loaded CI machine. */
const SLACK_MS = 1_500;

type Verb = 'PASV' | 'EPSV' | 'PORT' | 'EPRT';
const VERBS: readonly Verb[] = ['PASV', 'EPSV', 'PORT', 'EPRT'];

let gw: TestGateway | undefined;
let fake: FakeFtp | undefined;
/** The gateway's control connection to the fake upstream, for the current session. */
let upstream: ScriptedConnection | undefined;
const cleanup: { close(): unknown }[] = [];

afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c.close();
  await gw?.close();
  gw = undefined;
  await fake?.close();
  fake = undefined;
  upstream = undefined;
});

/** A fake upstream whose `endless.bin` transfer never sends a byte nor ends (a transfer that runs until cut). */
async function session(site: Record<string, unknown> = {}): Promise<ControlClient> {
  fake = await startFakeFtp();
  fake.files.set('endless.bin', Buffer.alloc(0));
  fake.hooks.retr = () => undefined;
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, passivePorts, activePorts, ...site });
  const client = await ControlClient.greeted(gw.port);
  cleanup.push({ close: () => client.destroy() });
  upstream = await fake.connection();
  await client.login();
  return client;
}

/** Whether something accepts a connection on the port (a probe from PROBE_FROM, which no pinhole takes as its peer). */
async function portState(port: number): Promise<'listening' | 'refused'> {
  return (await probe(port, PROBE_FROM)).outcome === 'refused' ? 'refused' : 'listening';
}

/** The ports a data command made the gateway listen on: the client's (227/229) and the upstream's (PORT/EPRT sent upstream). */
async function openPinhole(client: ControlClient, verb: Verb): Promise<{ listening: number[]; own?: Listener }> {
  const lines = (upstream as ScriptedConnection).lines;
  const seen = dataCommands(lines).length;
  let own: Listener | undefined;
  const listening: number[] = [];
  if (verb === 'PASV' || verb === 'EPSV') {
    const reply = await client.command(verb);
    listening.push(verb === 'PASV' ? parse227(reply.text).port : parse229(reply.text));
  } else {
    own = await listen('127.0.0.1');
    cleanup.push(own);
    const arg = verb === 'PORT' ? portArg('127.0.0.1', own.port) : eprtArg('127.0.0.1', own.port);
    expect((await client.command(`${verb} ${arg}`)).code).toBe(200);
  }
  for (const line of dataCommands(lines).slice(seen)) {
    if (/^(PORT|EPRT) /.test(line)) listening.push(parseActiveLine(line).port);
  }
  for (const port of listening) expect(await portState(port)).toBe('listening');
  return { listening, own };
}

async function expectAllClosed(ports: readonly number[]): Promise<void> {
  const gateway = (gw as TestGateway).gateway;
  await vi.waitFor(() => {
    expect(gateway.stats().pinholes).toBe(0);
    expect(gateway.stats().sites[SITE]).toMatchObject({ passiveFree: rangeSize(passivePorts), activeFree: rangeSize(activePorts) });
  });
  for (const port of ports) expect(await portState(port)).toBe('refused');
}

describe('a new data command replaces the waiting pinhole', () => {
  describe.each(VERBS)('first %s', (first) => {
    it.each(VERBS)('then %s: the first pinhole\'s ports stop listening', async (second) => {
      const client = await session();
      const before = await openPinhole(client, first);
      expect(before.listening.length).toBeGreaterThan(0);
      const after = await openPinhole(client, second);
      for (const port of before.listening.filter((p) => !after.listening.includes(p))) {
        expect(await portState(port)).toBe('refused');
      }
      const gateway = (gw as TestGateway).gateway;
      await vi.waitFor(() => expect(gateway.stats().pinholes).toBe(1));
      const held = rangeSize(passivePorts) + rangeSize(activePorts) - after.listening.length;
      await vi.waitFor(() => {
        const site = gateway.stats().sites[SITE];
        expect((site?.passiveFree ?? 0) + (site?.activeFree ?? 0)).toBe(held);
      });
    });
  });
});

describe.each(['ABOR', 'REIN'] as const)('%s', (command) => {
  it.each(VERBS)('closes a waiting %s pinhole', async (verb) => {
    const client = await session();
    const { listening } = await openPinhole(client, verb);
    expect((await client.command(command)).code).toBeLessThan(300);
    await expectAllClosed(listening);
  });

  it('closes a running transfer too: the data connection is cut', async () => {
    const client = await session();
    const port = parse229((await client.command('EPSV')).text);
    const data = net.connect({ host: '127.0.0.1', port });
    data.on('error', () => undefined);
    const cut = new Promise((resolve) => data.once('close', resolve)); // a reset (not a FIN) is how a cut ends
    await once(data, 'connect');
    await vi.waitFor(() => expect(fake?.dataPeers).toHaveLength(1)); // both legs up: the pinhole relays
    await client.write('RETR endless.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    // ABOR: 426 then 226 (RFC 959), or 226 twice when the gateway's cut reached the upstream first; REIN: 220.
    const reply = await client.command(command);
    if (reply.code === 426) expect((await client.reply()).code).toBe(226);
    else expect(reply.code).toBeLessThan(300);
    await cut;
    await expectAllClosed([port]);
  });

  it('with upstreamDataMode "active", a client PASV\'s two listeners both close', async () => {
    const client = await session({ upstreamDataMode: 'active' });
    const { listening } = await openPinhole(client, 'PASV');
    expect(listening).toHaveLength(2);
    expect((await client.command(command)).code).toBeLessThan(300);
    await expectAllClosed(listening);
  });
});

describe('the end of the session closes its pinholes', () => {
  it.each(VERBS)('QUIT with a waiting %s pinhole', async (verb) => {
    const client = await session();
    const { listening } = await openPinhole(client, verb);
    expect((await client.command('QUIT')).code).toBe(221);
    await client.closed;
    await expectAllClosed(listening);
  });

  it.each(VERBS)('the client vanishing (reset) with a waiting %s pinhole', async (verb) => {
    const client = await session();
    const { listening } = await openPinhole(client, verb);
    client.socket.resetAndDestroy();
    await expectAllClosed(listening);
  });

  it('the upstream closing the control connection', async () => {
    const client = await session();
    const { listening } = await openPinhole(client, 'PASV');
    (upstream as ScriptedConnection).socket.destroy();
    await client.closed;
    await expectAllClosed(listening);
  });

  it('gateway.close(drain) ends a session that keeps its control connection open, within the drain bound', async () => {
    const client = await session();
    const { listening } = await openPinhole(client, 'EPSV');
    const started = Date.now();
    const closing = (gw as TestGateway).gateway.close(200);
    const outcome = await Promise.race([closing.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 200 + SLACK_MS))]);
    expect(outcome, 'Gateway.close() waited for the client to hang up').toBe('closed');
    expect(Date.now() - started).toBeLessThan(200 + SLACK_MS);
    await client.closed;
    for (const port of listening) expect(await portState(port)).toBe('refused');
  });
});

describe(`no listener outlives pinholeAcceptMs (${ACCEPT_MS} ms)`, () => {
  const MODES: readonly { mode: UpstreamDataMode; verb: Verb }[] = [
    ...VERBS.map((verb) => ({ mode: 'client' as const, verb })),
    { mode: 'active', verb: 'PASV' },
    { mode: 'active', verb: 'EPSV' },
  ];

  it.each(MODES)('upstreamDataMode $mode, client $verb: every port the gateway listened on closes at the deadline', async ({ mode, verb }) => {
    const client = await session({ upstreamDataMode: mode, timeouts: { pinholeAcceptMs: ACCEPT_MS } });
    const gateway = (gw as TestGateway).gateway;
    const expiredBefore = await counterTotal(gateway, 'ftp_alg_pinholes_expired_total');
    const started = Date.now();
    const { listening } = await openPinhole(client, verb);
    expect(listening.length).toBeGreaterThan(0);
    await vi.waitFor(() => expect(gateway.stats().pinholes).toBe(0), { timeout: ACCEPT_MS + SLACK_MS, interval: 20 });
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(ACCEPT_MS - 20);
    expect(elapsed).toBeLessThan(ACCEPT_MS + SLACK_MS);
    await expectAllClosed(listening);
    expect(await counterTotal(gateway, 'ftp_alg_pinholes_expired_total')).toBe(expiredBefore + 1);
    expect((await client.command('NOOP')).code).toBe(200); // the session outlives its pinhole
  });

  it('upstreamDataMode passive, client PORT: nothing listens at all (both legs dial out; a stall is bounded by dataIdleMs)', async () => {
    const client = await session({ upstreamDataMode: 'passive', timeouts: { pinholeAcceptMs: ACCEPT_MS } });
    const { listening } = await openPinhole(client, 'PORT');
    expect(listening).toEqual([]);
    expect(dataCommands((upstream as ScriptedConnection).lines).at(-1)).toBe('PASV'); // the gateway asked the upstream for a port instead
  });
});

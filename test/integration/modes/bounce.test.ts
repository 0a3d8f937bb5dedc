/**
 * FTP bounce (RFC 2577): a PORT/EPRT naming another host than the control
 * client, or a privileged port, is refused by the gateway itself, and
 * nothing is connected: the named host sees no connection, and the
 * upstream never hears a data command. Real servers refuse such a PORT
 * themselves (DESIGN.md), so the upstream here is scripted and accepts
 * anything, connecting at once to whatever a PORT names, and passes its
 * 227/229 data port on; with upstreamDataMode "passive" the gateway itself
 * would dial the named target right after the upstream's 227. On Linux
 * every 127.0.0.0/8 address is local: 127.0.0.2 is the third host.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { type DataSource, type ScriptedUpstream, startDataSource, startScriptedUpstream } from '../../support/scripted.js';
import { type DataListener, listenForData } from './dataPeers.js';
import { dataCommands, scriptedFtp } from './scriptedFtp.js';
import { eprtArg, portArg } from '../../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
const THIRD_HOST = '127.0.0.2';
const PAYLOAD = Buffer.from('bounced bytes\r\n');

let gw: TestGateway | undefined;
let scripted: ScriptedUpstream | undefined;
let source: DataSource | undefined;
let victim: DataListener | undefined;
const clients: ControlClient[] = [];

beforeEach(async () => {
  victim = await listenForData(THIRD_HOST);
  source = await startDataSource(PAYLOAD);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await gw?.close();
  gw = undefined;
  await scripted?.close();
  await source?.close();
  await victim?.close();
});

async function start(upstreamDataMode: 'client' | 'passive' | 'active', site: Record<string, unknown> = {}): Promise<ControlClient> {
  const ftp = scriptedFtp({ dataPort: source?.port, activeSend: PAYLOAD });
  scripted = await startScriptedUpstream({ respond: ftp.respond });
  gw = await startGateway({ upstream: { host: scripted.host, port: scripted.port }, passivePorts, activePorts, upstreamDataMode, ...site });
  const client = await ControlClient.greeted(gw.port);
  clients.push(client);
  await client.login();
  return client;
}

interface Attempt {
  readonly name: string;
  /** The line, given the victim's port. */
  readonly line: (victimPort: number) => string;
  readonly code: number;
  readonly reason: string;
}

const ATTEMPTS: readonly Attempt[] = [
  { name: 'PORT to a third host', line: (p) => `PORT ${portArg(THIRD_HOST, p)}`, code: 504, reason: 'bounce-host' },
  { name: 'EPRT to a third host', line: (p) => `EPRT ${eprtArg(THIRD_HOST, p)}`, code: 504, reason: 'bounce-host' },
  { name: 'EPRT with "!" delimiters to a third host', line: (p) => `EPRT !1!${THIRD_HOST}!${p}!`, code: 504, reason: 'bounce-host' },
  { name: 'PORT to a privileged port of the client (25)', line: () => `PORT ${portArg('127.0.0.1', 25)}`, code: 504, reason: 'privileged-port' },
  { name: 'EPRT to port 1023 of the client', line: () => `EPRT ${eprtArg('127.0.0.1', 1023)}`, code: 504, reason: 'privileged-port' },
  { name: 'PORT to a privileged port of a third host', line: () => `PORT ${portArg(THIRD_HOST, 21)}`, code: 504, reason: 'privileged-port' },
  { name: 'EPRT naming IPv6 from an IPv4 client (family)', line: (p) => `EPRT ${eprtArg('::1', p)}`, code: 522, reason: 'family' },
];

describe.each(['client', 'passive', 'active'] as const)('upstreamDataMode %s: a bounce attempt is refused and nothing is connected', (mode) => {
  it.each(ATTEMPTS)('$name → $code', async ({ line, code, reason }) => {
    const client = await start(mode);
    const gateway = (gw as TestGateway).gateway;
    const refusedBefore = await counterTotal(gateway, 'ftp_alg_commands_refused_total');
    const reply = await client.command(line((victim as DataListener).port));
    expect(reply.code).toBe(code);
    expect(reply.lines).toHaveLength(1);
    expect(await counterTotal(gateway, 'ftp_alg_commands_refused_total')).toBe(refusedBefore + 1);
    const text = await gateway.metrics.registry.getSingleMetricAsString('ftp_alg_commands_refused_total');
    expect(text).toContain(`reason="${reason}"`);

    // The refused command opened nothing and the session goes on: a transfer
    // command now has no data connection to use, and nothing was dialled.
    await client.write('RETR file.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    expect((await client.command('NOOP')).code).toBe(200);
    expect(gateway.stats().pinholes).toBe(0);
    expect(gateway.stats().sites[SITE]).toMatchObject({ activeFree: rangeSize(activePorts), passiveFree: rangeSize(passivePorts) });
    const conn = await (scripted as ScriptedUpstream).connection();
    expect(dataCommands(conn.lines)).toEqual([]);
    expect((source as DataSource).peers).toEqual([]);
    expect((victim as DataListener).connections).toEqual([]);
  });

  it('after a refused bounce, a PORT to the client itself still works', async () => {
    const client = await start(mode);
    expect((await client.command(`PORT ${portArg(THIRD_HOST, (victim as DataListener).port)}`)).code).toBe(504);
    const own = await listenForData('127.0.0.1');
    try {
      expect((await client.command(`PORT ${portArg('127.0.0.1', own.port)}`)).code).toBe(200);
      await client.write('RETR file.bin\r\n');
      expect((await client.reply()).code).toBe(150);
      expect((await (await own.next()).received).toString()).toBe(PAYLOAD.toString());
      expect((victim as DataListener).connections).toEqual([]);
    } finally {
      await own.close();
    }
  });
});

describe('activeMode.clientAddress "substitute" (clients behind their own NAT)', () => {
  it.each(['client', 'passive'] as const)(
    'upstreamDataMode %s: a PORT naming a private address connects to the control client\'s address instead',
    async (mode) => {
      const client = await start(mode, { activeMode: { clientAddress: 'substitute' } });
      const own = await listenForData('127.0.0.1');
      try {
        expect((await client.command(`PORT ${portArg('10.1.2.3', own.port)}`)).code).toBe(200);
        await client.write('RETR file.bin\r\n');
        expect((await client.reply()).code).toBe(150);
        const conn = await own.next();
        expect((await conn.received).toString()).toBe(PAYLOAD.toString());
        expect(conn.peer).toBe('127.0.0.1');
      } finally {
        await own.close();
      }
    },
  );

  it('a privileged port is still refused', async () => {
    const client = await start('client', { activeMode: { clientAddress: 'substitute' } });
    expect((await client.command(`PORT ${portArg('10.1.2.3', 25)}`)).code).toBe(504);
    expect((await client.command(`EPRT ${eprtArg('127.0.0.1', 1023)}`)).code).toBe(504);
    expect(dataCommands((await (scripted as ScriptedUpstream).connection()).lines)).toEqual([]);
  });
});

describe('activeMode.enabled false', () => {
  it.each(['PORT', 'EPRT'] as const)('%s is refused with 502 and nothing goes upstream', async (verb) => {
    const client = await start('client', { activeMode: { enabled: false } });
    const own = await listenForData('127.0.0.1');
    try {
      const arg = verb === 'PORT' ? portArg('127.0.0.1', own.port) : eprtArg('127.0.0.1', own.port);
      expect((await client.command(`${verb} ${arg}`)).code).toBe(502);
      expect((await client.command('EPSV')).code).toBe(229); // passive mode still works
      expect(dataCommands((await (scripted as ScriptedUpstream).connection()).lines)).toEqual(['EPSV']);
      expect(own.connections).toEqual([]);
    } finally {
      await own.close();
    }
  });
});

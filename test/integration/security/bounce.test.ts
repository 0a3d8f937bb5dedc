/**
 * FTP bounce (RFC 2577): a PORT/EPRT naming another host than the control
 * client, or a privileged port, is refused by the gateway itself with 5xx,
 * in every upstreamDataMode, and nothing is connected: the named host sees
 * no connection, the gateway dials nothing, and the upstream never hears a
 * data command. Real servers refuse such a PORT themselves (DESIGN.md), so
 * the upstream here is hostile: it connects at once to whatever a PORT
 * names, and a PORT that got through would show as a connection on the
 * trap (with upstreamDataMode "passive" the gateway itself would dial the
 * named target right after the upstream's 227). Each attack is followed, in
 * the same session, by a legitimate PORT whose connection is awaited: by
 * then a bounced connection would have arrived too. On Linux every
 * 127.0.0.0/8 address is local: 127.0.0.2 is the third host.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient, loggedInClient } from '../../support/control.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { eprtArg, portArg } from '../../support/hostPort.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { CLIENT, type Listener, listen, listenPrivileged, listenTwins, recordGatewayConnects, THIRD_HOST } from '../../support/traps.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
const pools = { passivePorts, activePorts };
const REFUSED = 'ftp_alg_commands_refused_total';
const MODES = ['client', 'passive', 'active'] as const;
type Mode = (typeof MODES)[number];

let fake: FakeFtp;
let gw: TestGateway | undefined;
let own: Listener;
let trap: Listener;
let privileged: Listener;
const clients: ControlClient[] = [];

beforeAll(async () => {
  fake = await startFakeFtp();
  fake.hooks.connectOnPort = true; // a bouncing upstream: connects wherever PORT says, at once
  fake.files.set('file.bin', Buffer.from('the file\r\n'));
  own = await listen(CLIENT);
  trap = await listen(THIRD_HOST);
  privileged = await listenPrivileged(CLIENT);
});

afterAll(async () => {
  await Promise.all([fake.close(), own.close(), trap.close(), privileged.close()]);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  if (gw !== undefined) await expectNoLeaks(gw.gateway, pools);
  await gw?.close();
  gw = undefined;
});

async function start(upstreamDataMode: Mode, site: Record<string, unknown> = {}): Promise<{ gateway: TestGateway; client: ControlClient }> {
  const gateway = await startGateway({ upstream: { host: fake.host, port: fake.port }, ...pools, upstreamDataMode, ...site });
  gw = gateway;
  return { gateway, client: await loggedInClient(gateway.port, clients) };
}

/** Data commands the upstream has heard, over all its connections. */
const dataLines = () => fake.connections.flatMap((c) => c.lines).filter((l) => /^(PORT|EPRT|PASV|EPSV)\b/i.test(l));

// Each row: the attack (given the trap's and the privileged listener's ports), the reply code, the counted reason.
const ATTACKS: [string, (trapPort: number, privilegedPort: number) => string, number, string][] = [
  ['PORT to a third host', (t) => `PORT ${portArg(THIRD_HOST, t)}`, 504, 'bounce-host'],
  ['EPRT to a third host', (t) => `EPRT ${eprtArg(THIRD_HOST, t)}`, 504, 'bounce-host'],
  ['EPRT to a third host, with "!" delimiters', (t) => `EPRT !1!${THIRD_HOST}!${t}!`, 504, 'bounce-host'],
  ['PORT to 0.0.0.0', (t) => `PORT ${portArg('0.0.0.0', t)}`, 504, 'bounce-host'],
  ['lower-case port to a third host', (t) => `port ${portArg(THIRD_HOST, t)}`, 504, 'bounce-host'],
  ['PORT to a privileged port of the client itself', (_t, p) => `PORT ${portArg(CLIENT, p)}`, 504, 'privileged-port'],
  ['EPRT to a privileged port of the client itself', (_t, p) => `EPRT ${eprtArg(CLIENT, p)}`, 504, 'privileged-port'],
  ['EPRT to port 1023 of the client (the highest privileged port)', () => `EPRT ${eprtArg(CLIENT, 1023)}`, 504, 'privileged-port'],
  ['PORT to port 21 of a third host', () => `PORT ${portArg(THIRD_HOST, 21)}`, 504, 'privileged-port'],
  ['EPRT naming an IPv6 host to an IPv4 client', (t) => `EPRT ${eprtArg('::1', t)}`, 522, 'family'],
];

describe.each(MODES)('upstreamDataMode %s: a bounce attempt is refused and nothing is connected', (mode) => {
  it.each(ATTACKS)('%s', async (_name, attack, code, reason) => {
    const { gateway, client } = await start(mode);
    const refusedBefore = await counterTotal(gateway.gateway, REFUSED);
    const heardBefore = dataLines().length;
    const record = recordGatewayConnects();
    try {
      const reply = await client.command(attack(trap.port, privileged.port));
      expect(reply.code).toBe(code);
      expect(reply.lines).toHaveLength(1);
      expect(await counterTotal(gateway.gateway, REFUSED)).toBe(refusedBefore + 1);
      expect(await gateway.gateway.metrics.registry.getSingleMetricAsString(REFUSED)).toContain(`reason="${reason}"`);
      expect(gateway.gateway.stats().pinholes).toBe(0);
      expect(gateway.gateway.stats().sites[SITE]).toMatchObject({ activeFree: rangeSize(activePorts), passiveFree: rangeSize(passivePorts) });
      expect(dataLines()).toHaveLength(heardBefore); // the upstream never heard it

      // The refused command set nothing up: a transfer now has no data connection.
      expect((await client.command('RETR file.bin')).code).toBe(425);

      // The same session, a PORT to itself: accepted, and the connection arrives.
      const ownBefore = own.peers.length;
      expect((await client.command(`PORT ${portArg(CLIENT, own.port)}`)).code).toBe(200);
      (await own.connection()).destroy();
      expect(own.peers.slice(ownBefore)).toEqual([CLIENT]);

      expect(trap.peers).toEqual([]);
      expect(privileged.peers).toEqual([]);
      expect(dataLines()).toHaveLength(heardBefore + 1); // the gateway's own PORT or PASV for the legitimate one
      // The gateway dialled the upstream (control, and in passive mode its data port) and the client: nothing else.
      const dialled = record.targets.filter((t) => !(t.host === fake.host && t.port === fake.port));
      expect(dialled).toContainEqual({ host: CLIENT, port: own.port });
      const upstreamData = (t: { host: string; port: number }) => mode === 'passive' && t.host === fake.host && t.port >= 1024 && t.port !== trap.port;
      expect(dialled.every((t) => (t.host === CLIENT && t.port === own.port) || upstreamData(t))).toBe(true);
      expect(dialled).toHaveLength(mode === 'passive' ? 2 : 1);
    } finally {
      record.stop();
    }
  });
});

describe('activeMode.clientAddress "substitute" (clients behind their own NAT)', () => {
  it.each(['client', 'passive'] as const)(
    'upstreamDataMode %s: a PORT naming a third host connects to the control client instead',
    async (mode) => {
      const twins = await listenTwins();
      try {
        const { client } = await start(mode, { activeMode: { clientAddress: 'substitute' } });
        expect((await client.command(`PORT ${portArg(THIRD_HOST, twins.port)}`)).code).toBe(200);
        (await twins.right.connection()).destroy();
        expect(twins.right.peers).toEqual([CLIENT]);
        expect(twins.trap.peers).toEqual([]);
      } finally {
        await twins.right.close();
        await twins.trap.close();
      }
    },
  );

  it('a privileged port is still refused, and nothing goes upstream', async () => {
    const { client } = await start('client', { activeMode: { clientAddress: 'substitute' } });
    const heardBefore = dataLines().length;
    expect((await client.command(`PORT ${portArg(THIRD_HOST, privileged.port)}`)).code).toBe(504);
    expect((await client.command(`EPRT ${eprtArg(CLIENT, 1023)}`)).code).toBe(504);
    expect(dataLines()).toHaveLength(heardBefore);
    expect(privileged.peers).toEqual([]);
  });
});

describe('activeMode.enabled false', () => {
  it.each(['PORT', 'EPRT'] as const)('%s is refused with 502 and nothing goes upstream', async (verb) => {
    const { client } = await start('client', { activeMode: { enabled: false } });
    const heardBefore = dataLines().length;
    const ownBefore = own.peers.length;
    const arg = verb === 'PORT' ? portArg(CLIENT, own.port) : eprtArg(CLIENT, own.port);
    expect((await client.command(`${verb} ${arg}`)).code).toBe(502);
    expect((await client.command('EPSV')).code).toBe(229); // passive mode still works
    expect(dataLines().slice(heardBefore)).toEqual(['EPSV']);
    expect(own.peers).toHaveLength(ownBefore);
  });
});

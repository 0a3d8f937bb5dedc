/**
 * Attack 1, FTP bounce (RFC 2577): a PORT/EPRT naming a third host or a
 * privileged port is refused with 5xx; nothing is connected and the
 * upstream never hears a PORT. The upstream here is hostile: it connects
 * to whatever a PORT names at once, so a PORT that got through would show
 * as a connection on the trap. Each attack is followed, in the same
 * session, by a legitimate PORT whose connection is awaited: by then a
 * bounced connection would have arrived too.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient, loggedInClient } from '../../support/control.js';
import { counterTotal, startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { portRanges } from '../../support/ports.js';
import { CLIENT, type Listener, listen, listenPrivileged, listenTwins, recordGatewayConnects, THIRD_HOST } from '../../support/traps.js';
import { portArg } from '../../support/hostPort.js';

const [passivePorts, activePorts, substitutePassive, substituteActive] = portRanges(4, 10) as [
  { min: number; max: number },
  { min: number; max: number },
  { min: number; max: number },
  { min: number; max: number },
];

let fake: FakeFtp;
let gw: TestGateway;
let own: Listener;
let trap: Listener;
let privileged: Listener;
const clients: ControlClient[] = [];

beforeAll(async () => {
  fake = await startFakeFtp();
  fake.hooks.connectOnPort = true; // a bouncing upstream: connects wherever PORT says, at once
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, passivePorts, activePorts });
  own = await listen(CLIENT);
  trap = await listen(THIRD_HOST);
  privileged = await listenPrivileged(CLIENT);
});

afterAll(async () => {
  await gw.close();
  await Promise.all([fake.close(), own.close(), trap.close(), privileged.close()]);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await expectNoLeaks(gw.gateway, { passivePorts, activePorts });
});

const session = (port: number) => loggedInClient(port, clients);

const portLines = () => fake.connections.flatMap((c) => c.lines).filter((l) => /^(PORT|EPRT)\b/i.test(l));

describe('PORT/EPRT to another host or a privileged port is refused, and nothing is connected', () => {
  const rows: [string, () => string, number, string][] = [
    ['PORT to a third host', () => `PORT ${portArg(THIRD_HOST, trap.port)}`, 504, 'bounce-host'],
    ['EPRT to a third host', () => `EPRT |1|${THIRD_HOST}|${trap.port}|`, 504, 'bounce-host'],
    ['EPRT to a third host, with another delimiter', () => `EPRT !1!${THIRD_HOST}!${trap.port}!`, 504, 'bounce-host'],
    ['PORT to 0.0.0.0', () => `PORT ${portArg('0.0.0.0', trap.port)}`, 504, 'bounce-host'],
    ['PORT to a privileged port of the client itself', () => `PORT ${portArg(CLIENT, privileged.port)}`, 504, 'privileged-port'],
    ['EPRT to a privileged port of the client itself', () => `EPRT |1|${CLIENT}|${privileged.port}|`, 504, 'privileged-port'],
    ['PORT to port 21 of a third host', () => `PORT ${portArg(THIRD_HOST, 21)}`, 504, 'privileged-port'],
    ['lower-case port to a third host', () => `port ${portArg(THIRD_HOST, trap.port)}`, 504, 'bounce-host'],
    ['EPRT naming an IPv6 host to an IPv4 client', () => `EPRT |2|::1|${trap.port}|`, 522, 'family'],
  ];

  it.each(rows)('%s', async (_name, command, code, reason) => {
    const metric = 'ftp_alg_commands_refused_total';
    const refusedBefore = await counterTotal(gw.gateway, metric);
    const portLinesBefore = portLines().length;
    const record = recordGatewayConnects();
    try {
      const client = await session(gw.port);
      const reply = await client.command(command());
      expect(reply.code).toBe(code);
      expect(gw.gateway.stats().pinholes).toBe(0);
      expect(portLines()).toHaveLength(portLinesBefore); // the upstream never heard it

      // The same session, a PORT to itself: accepted, and the connection arrives.
      expect((await client.command(`PORT ${portArg(CLIENT, own.port)}`)).code).toBe(200);
      const legit = await own.connection();
      legit.destroy();

      expect(trap.peers).toEqual([]);
      expect(privileged.peers).toEqual([]);
      expect(portLines()).toHaveLength(portLinesBefore + 1); // the gateway's own PORT for the legitimate one
      expect(record.targets).toEqual([
        { host: fake.host, port: fake.port }, // the upstream control connection
        { host: CLIENT, port: own.port }, // the legitimate active data connection
      ]);
      const text = await gw.gateway.metrics.registry.getSingleMetricAsString(metric);
      expect(text).toContain(`reason="${reason}"`);
      expect(await counterTotal(gw.gateway, metric)).toBe(refusedBefore + 1);
    } finally {
      record.stop();
    }
  });
});

describe('activeMode.clientAddress "substitute"', () => {
  it('a PORT naming a third host connects to the control client instead; a privileged port is still refused', async () => {
    const pools = { passivePorts: substitutePassive, activePorts: substituteActive };
    const site = await startGateway({
      upstream: { host: fake.host, port: fake.port },
      ...pools,
      activeMode: { clientAddress: 'substitute' },
    });
    const twins = await listenTwins();
    try {
      const client = await session(site.port);
      expect((await client.command(`PORT ${portArg(THIRD_HOST, privileged.port)}`)).code).toBe(504);
      expect((await client.command(`PORT ${portArg(THIRD_HOST, twins.port)}`)).code).toBe(200);
      (await twins.right.connection()).destroy();
      expect(twins.right.peers).toEqual([CLIENT]);
      expect(twins.trap.peers).toEqual([]);
      expect(privileged.peers).toEqual([]);
      client.destroy();
      await expectNoLeaks(site.gateway, pools);
    } finally {
      await site.close();
      await twins.right.close();
      await twins.trap.close();
    }
  });
});

/**
 * Attack 3, a hostile or broken upstream: whatever address its 227 names
 * (a third host, 0.0.0.0, a private host), the gateway connects only to
 * the upstream's control-connection address; a data port below 1024 (or
 * 0) is refused with 425 and nothing is opened or connected.
 *
 * The upstream's data port P is served twice: by a listener on 127.0.0.1
 * (the upstream's own address) that sends the payload, and by a trap on
 * 127.0.0.2. A gateway that believed the 227 would reach the trap.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient, loggedInClient, readDataConnection } from '../../support/control.js';
import { sha256 } from '../../support/ftpClient.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { CLIENT, type Listener, listenPrivileged, listenTwins, recordGatewayConnects, within } from '../../support/traps.js';
import { parse227, parse229, portArg } from '../../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
const PAYLOAD = randomBytes(128 * 1024);

let fake: FakeFtp;
let gw: TestGateway;
let right: Listener;
let trap: Listener;
let privileged: Listener;
const clients: ControlClient[] = [];

beforeAll(async () => {
  fake = await startFakeFtp();
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, passivePorts, activePorts });
  const twins = await listenTwins({ payload: PAYLOAD });
  right = twins.right;
  trap = twins.trap;
  privileged = await listenPrivileged(CLIENT);
});

afterAll(async () => {
  await gw.close();
  await Promise.all([fake.close(), right.close(), trap.close(), privileged.close()]);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await expectNoLeaks(gw.gateway, { passivePorts, activePorts });
  expect(trap.peers).toEqual([]);
  expect(privileged.peers).toEqual([]);
});

const session = () => loggedInClient(gw.port, clients);

/** The upstream answers the next PASV/EPSV with `text`, whatever data port it opened itself. */
function upstreamAnswers(text: (port: number) => string): void {
  fake.hooks.pasv = () => `${text(right.port)}\r\n`;
  fake.hooks.epsv = () => `${text(right.port)}\r\n`;
}

describe('the address in a 227 is never used: the gateway connects to the upstream it already knows', () => {
  const rows: [string, 'PASV' | 'EPSV', (p: number) => string][] = [
    ['227 naming a third host', 'PASV', (p) => `227 Entering Passive Mode (${portArg('127.0.0.2', p)}).`],
    ['227 naming 0.0.0.0', 'PASV', (p) => `227 Entering Passive Mode (${portArg('0.0.0.0', p)}).`],
    ['227 naming a private host, "=" form (RFC 1123)', 'PASV', (p) => `227 =${portArg('10.0.0.1', p)}`],
    ['227 naming a third host, no parentheses', 'PASV', (p) => `227 Entering Passive Mode ${portArg('127.0.0.2', p)}`],
    ['227 naming the broadcast address', 'PASV', (p) => `227 Entering Passive Mode (${portArg('255.255.255.255', p)})`],
    ['229 with "|"', 'EPSV', (p) => `229 Entering Extended Passive Mode (|||${p}|)`],
    ['229 with "!"', 'EPSV', (p) => `229 Entering Extended Passive Mode (!!!${p}!)`],
  ];

  it.each(rows)('%s', async (_name, verb, answer) => {
    upstreamAnswers(answer);
    const rightBefore = right.peers.length;
    const record = recordGatewayConnects();
    try {
      const client = await session();
      const reply = await client.command(verb);
      const port = verb === 'PASV' ? parse227(reply.text).port : parse229(reply.text);
      if (verb === 'PASV') expect(parse227(reply.text).address).toBe(CLIENT); // the gateway's own external address
      expect(sha256(await within(5_000, 'download', readDataConnection(port)))).toBe(sha256(PAYLOAD));
      expect(right.peers.slice(rightBefore)).toEqual([CLIENT]);
      expect(record.targets).toEqual([
        { host: fake.host, port: fake.port },
        { host: fake.host, port: right.port },
      ]);
    } finally {
      record.stop();
    }
  });
});

describe('a data port below 1024, or 0, is refused with 425; nothing is opened or connected', () => {
  const rows: [string, 'PASV' | 'EPSV', () => string][] = [
    ['227 naming port 21 of the upstream', 'PASV', () => `227 Entering Passive Mode (${portArg(CLIENT, 21)}).`],
    ['227 naming a privileged port that listens', 'PASV', () => `227 Entering Passive Mode (${portArg(CLIENT, privileged.port)}).`],
    ['227 naming port 1023', 'PASV', () => `227 Entering Passive Mode (${portArg(CLIENT, 1023)}).`],
    ['227 naming port 0', 'PASV', () => `227 Entering Passive Mode (${portArg(CLIENT, 0)}).`],
    ['229 naming a privileged port that listens', 'EPSV', () => `229 Entering Extended Passive Mode (|||${privileged.port}|)`],
    ['229 naming port 0', 'EPSV', () => '229 Entering Extended Passive Mode (|||0|)'],
  ];

  it.each(rows)('%s', async (_name, verb, answer) => {
    fake.hooks.pasv = () => `${answer()}\r\n`;
    fake.hooks.epsv = () => `${answer()}\r\n`;
    const rejectsBefore = await counterTotal(gw.gateway, 'ftp_alg_parse_rejects_total');
    const record = recordGatewayConnects();
    try {
      const client = await session();
      expect((await client.command(verb)).code).toBe(425);
      expect(gw.gateway.stats().pinholes).toBe(0);
      expect(gw.gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts));
      expect(record.targets).toEqual([{ host: fake.host, port: fake.port }]);
      expect(await counterTotal(gw.gateway, 'ftp_alg_parse_rejects_total')).toBe(rejectsBefore + 1);
      expect((await client.command('NOOP')).code).toBe(200); // the session goes on
    } finally {
      record.stop();
    }
  });

  it('the port boundary: 1024 is accepted', async () => {
    fake.hooks.pasv = () => `227 Entering Passive Mode (${portArg(CLIENT, 1024)}).\r\n`;
    const client = await session();
    expect((await client.command('PASV')).code).toBe(227);
    expect(gw.gateway.stats().pinholes).toBe(1);
  });
});

/**
 * Attack 4, unsolicited or spoofed replies: only a 227/229 that answers
 * the client's pending PASV/EPSV (matched by the reply FIFO) is acted on.
 * A 227/229 answering something else or nothing, a 227 line inside a
 * multi-line reply, a PORT line from the upstream, PORT or 227 text in a
 * file name or an error message: passed on as they are, and nothing is
 * opened (no pinhole, no port taken, no connection made).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ControlClient, loggedInClient, readDataConnection } from '../../support/control.js';
import { sha256 } from '../../support/ftpClient.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { type Listener, listenTwins, recordGatewayConnects, THIRD_HOST, within } from '../../support/traps.js';
import { parse227, pasvReply, portArg } from '../../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
const PAYLOAD = randomBytes(64 * 1024);

let fake: FakeFtp;
let gw: TestGateway;
let right: Listener;
let trap: Listener;
const clients: ControlClient[] = [];

beforeAll(async () => {
  fake = await startFakeFtp();
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, passivePorts, activePorts });
  ({ right, trap } = await listenTwins({ payload: PAYLOAD }));
});

afterAll(async () => {
  await gw.close();
  await Promise.all([fake.close(), right.close(), trap.close()]);
});

afterEach(async () => {
  fake.hooks.reply = undefined;
  for (const c of clients.splice(0)) c.destroy();
  await expectNoLeaks(gw.gateway, { passivePorts, activePorts });
  expect(trap.peers).toEqual([]);
});

const session = () => loggedInClient(gw.port, clients);

const spoof227 = () => pasvReply(THIRD_HOST, trap.port);
const spoof229 = () => `229 Entering Extended Passive Mode (|||${trap.port}|)\r\n`;

/** Nothing opened, nothing connected but the control connection, no command refused. */
async function expectNothingOpened(record: { targets: unknown[] }, refusedBefore: number): Promise<void> {
  const stats = gw.gateway.stats();
  expect(stats.pinholes).toBe(0);
  expect(stats.sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts));
  expect(stats.sites[SITE]?.activeFree).toBe(rangeSize(activePorts));
  expect(record.targets).toHaveLength(1);
  expect(await counterTotal(gw.gateway, 'ftp_alg_commands_refused_total')).toBe(refusedBefore);
}

describe('replies that do not answer a pending PASV/EPSV open nothing and pass unchanged', () => {
  const rows: [string, string, () => string][] = [
    ['an unsolicited 227 after the reply to NOOP', 'NOOP', () => `200 NOOP ok.\r\n${spoof227()}`],
    ['an unsolicited 229 after the reply to NOOP', 'NOOP', () => `200 NOOP ok.\r\n${spoof229()}`],
    ['a 227 as the answer to NOOP', 'NOOP', spoof227],
    ['a 229 as the answer to SYST', 'SYST', spoof229],
    ['a 227 line inside a multi-line reply to HELP', 'HELP', () => `214-Help follows\r\n${spoof227()}214 End\r\n`],
    ['a 227 line inside a multi-line reply to STAT', 'STAT', () => `211-Status\r\n ${spoof227()}${spoof229()}211 End\r\n`],
    ['a PORT line sent by the upstream', 'NOOP', () => `PORT ${portArg('127.0.0.2', trap.port)}\r\n200 NOOP ok.\r\n`],
    ['an EPRT line sent by the upstream', 'NOOP', () => `EPRT |1|127.0.0.2|${trap.port}|\r\n200 NOOP ok.\r\n`],
    ['PORT text in an error message', 'RETR x', () => `550 PORT ${portArg('127.0.0.2', trap.port)} not found\r\n`],
    ['227 text in an error message', 'RETR x', () => `500 ${spoof227()}`],
    ['229 text in a 425', 'LIST', () => `425 ${spoof229()}`],
  ];

  it.each(rows)('%s', async (_name, command, answer) => {
    const text = answer();
    fake.hooks.reply = (line) => (line === command ? text : undefined);
    const refusedBefore = await counterTotal(gw.gateway, 'ftp_alg_commands_refused_total');
    const record = recordGatewayConnects();
    try {
      const client = await session();
      await client.write(`${command}\r\nMODE S\r\n`);
      // The spoof, byte-exact, then the MODE's own reply (which proves the spoof was handled).
      const expected = Buffer.from(`${text}200 OK.\r\n`, 'latin1');
      const got = await within(5_000, 'replies', client.readBytes(expected.length));
      expect(got.toString('latin1')).toBe(expected.toString('latin1'));
      await expectNothingOpened(record, refusedBefore);
    } finally {
      record.stop();
    }
  });
});

describe('PORT and PASV text in a file name is forwarded as it is and opens nothing', () => {
  const names = [
    'STOR PORT 127,0,0,2,4,1',
    'RETR PORT 127,0,0,2,4,1',
    'MKD EPRT |1|127.0.0.2|1025|',
    'CWD PASV',
    'DELE 227 Entering Passive Mode (127,0,0,2,4,1)',
    'SITE EPSV',
  ];

  it.each(names)('%s', async (line) => {
    const refusedBefore = await counterTotal(gw.gateway, 'ftp_alg_commands_refused_total');
    const record = recordGatewayConnects();
    try {
      const client = await session();
      const upstream = fake.connections.at(-1);
      const reply = await client.command(line);
      expect(reply.code).not.toBe(504);
      expect(upstream?.lines.at(-1)).toBe(line); // byte-exact: verb and argument as sent
      await expectNothingOpened(record, refusedBefore);
    } finally {
      record.stop();
    }
  });
});

describe('pipelined commands: the FIFO, not the last command sent, decides what a 227 answers', () => {
  it('NOOP and PASV in one segment; a spoofed 227 answering NOOP passes unchanged, the real one is rewritten', async () => {
    fake.hooks.reply = (line) => (line === 'NOOP' ? spoof227() : undefined);
    fake.hooks.pasv = () => pasvReply('127.0.0.1', right.port);
    const client = await session();
    await client.write('NOOP\r\nPASV\r\n');
    const first = await client.reply();
    expect(first.raw.toString('latin1')).toBe(spoof227());
    const second = await client.reply();
    expect(second.code).toBe(227);
    const pinhole = parse227(second.text);
    expect(pinhole.address).toBe('127.0.0.1');
    expect(pinhole.port).toBeGreaterThanOrEqual(passivePorts.min);
    expect(pinhole.port).toBeLessThanOrEqual(passivePorts.max);
    expect(gw.gateway.stats().pinholes).toBe(1);
    expect(sha256(await within(5_000, 'download', readDataConnection(pinhole.port)))).toBe(sha256(PAYLOAD));
  });

  it('a PASV answered by a multi-line 227 whose address is only on the first line: one well-formed 425, nothing opened', async () => {
    fake.hooks.pasv = () => `227-Entering Passive Mode (${portArg('127.0.0.1', right.port)})\r\n227 Done\r\n`;
    const refusedBefore = await counterTotal(gw.gateway, 'ftp_alg_commands_refused_total');
    const record = recordGatewayConnects();
    try {
      const client = await session();
      const start = client.received().length;
      await client.write('PASV\r\n');
      const answer = () => client.received().subarray(start).toString('latin1');
      await vi.waitFor(() => expect(answer()).toMatch(/^\d{3} [^\r\n]*\r\n/m), { timeout: 3_000 });
      // A client reads a reply that opened with "227-" up to a line starting "227 ": a 425 after it
      // leaves the client waiting, and the first line hands it the upstream's own data address.
      expect(answer()).toMatch(/^425 [^\r\n]*\r\n$/);
      await expectNothingOpened(record, refusedBefore);
    } finally {
      record.stop();
    }
  });
});

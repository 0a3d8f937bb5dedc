/**
 * Attack 6, malformed input from either side: over-long lines, NUL, Telnet
 * IAC, non-UTF-8 bytes, numeric overflow. Each gets a clean FTP error (or,
 * from the upstream, 421 and close), never a crash (the gateway runs in
 * this process: a throw would fail the run), never unbounded memory, and
 * nothing of it reaches the other side unless it is forwarded byte-exact
 * on purpose.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { counterTotal, startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks, liveBytes, MiB } from '../../support/leaks.js';
import { portRanges } from '../../support/ports.js';
import { recordGatewayConnects, within } from '../../support/traps.js';
import { pasvReply } from '../../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
const MAX_LINE = 512;

let fake: FakeFtp;
let gw: TestGateway;
const clients: ControlClient[] = [];

beforeAll(async () => {
  fake = await startFakeFtp();
  gw = await startGateway({
    upstream: { host: fake.host, port: fake.port },
    passivePorts,
    activePorts,
    limits: { maxLineBytes: MAX_LINE },
  });
});

afterAll(async () => {
  await gw.close();
  await fake.close();
});

afterEach(async () => {
  fake.hooks.reply = undefined;
  fake.hooks.pasv = (port) => pasvReply('127.0.0.1', port);
  fake.hooks.epsv = (port) => `229 Entering Extended Passive Mode (|||${port}|)\r\n`;
  for (const c of clients.splice(0)) c.destroy();
  await expectNoLeaks(gw.gateway, { passivePorts, activePorts });
});

async function session(): Promise<{ client: ControlClient; upstream: () => Buffer }> {
  const client = await ControlClient.connect(gw.port);
  clients.push(client);
  expect((await client.reply()).code).toBe(220);
  const conn = fake.connections.at(-1);
  if (conn === undefined) throw new Error('no upstream connection');
  return { client, upstream: () => conn.received() };
}

const latin1 = (b: Buffer) => b.toString('latin1');

describe('client lines the gateway refuses: an FTP error, nothing forwarded, the session goes on', () => {
  const rows: [string, string, number][] = [
    ['a line one byte over the cap', `USER ${'x'.repeat(MAX_LINE - 6)}\r\n`, 500],
    ['a line far over the cap', `${'A'.repeat(5 * MAX_LINE)}\r\n`, 500],
    ['NUL inside the verb', 'NO\0OP\r\n', 500],
    ['NUL inside the argument', 'USER a\0b\r\n', 500],
    ['NUL alone', '\0\r\n', 500],
    ['NUL after a PORT', 'PORT 127,0,0,1,4,1\0\r\n', 500],
    ['NUL hidden behind IAC', 'USER \xff\0x\r\n', 500],
    ['PORT with a port field past 255 (0,65557)', 'PORT 127,0,0,1,0,65557\r\n', 501],
    ['PORT with an octet past 255', 'PORT 127,0,0,256,4,1\r\n', 501],
    ['PORT whose port overflows 65535 (256,1)', 'PORT 127,0,0,1,256,1\r\n', 501],
    ['PORT with a 400-digit octet', `PORT ${'1'.repeat(400)},0,0,1,4,1\r\n`, 501],
    ['PORT with a 400-digit port field', `PORT 127,0,0,1,4,${'9'.repeat(400)}\r\n`, 501],
    ['PORT with leading zeros past 3 digits', 'PORT 0127,0,0,1,4,1\r\n', 501],
    ['PORT with seven fields', 'PORT 127,0,0,1,4,1,7\r\n', 501],
    ['PORT with five fields', 'PORT 127,0,0,1,4\r\n', 501],
    ['PORT with a negative octet', 'PORT -127,0,0,1,4,1\r\n', 501],
    ['PORT with an exponent', 'PORT 127,0,0,1,4,1e1\r\n', 501],
    ['PORT in hex', 'PORT 0x7f,0,0,1,4,1\r\n', 501],
    ['PORT with no argument', 'PORT\r\n', 501],
    ['EPRT with port 65536', 'EPRT |1|127.0.0.1|65536|\r\n', 501],
    ['EPRT with a 400-digit port', `EPRT |1|127.0.0.1|${'9'.repeat(400)}|\r\n`, 501],
    ['EPRT with an octet past 255', 'EPRT |1|127.0.0.256|2000|\r\n', 501],
    ['EPRT with a short IPv4 form', 'EPRT |1|127.1|2000|\r\n', 501],
    ['EPRT with family 3', 'EPRT |3|127.0.0.1|2000|\r\n', 501],
    ['EPRT with a negative port', 'EPRT |1|127.0.0.1|-1|\r\n', 501],
    ['EPRT with a scoped IPv6 address', 'EPRT |2|fe80::1%eth0|2000|\r\n', 501],
    ['EPRT with a control character as delimiter', 'EPRT \x01\x011\x01127.0.0.1\x012000\x01\r\n', 501],
    ['EPSV with family 3', 'EPSV 3\r\n', 501],
    ['EPSV with a 400-digit family', `EPSV ${'1'.repeat(400)}\r\n`, 501],
  ];

  it.each(rows)('%s', async (_name, line, code) => {
    const { client, upstream } = await session();
    const sentBefore = upstream().length;
    const record = recordGatewayConnects();
    try {
      await client.write(line);
      const reply = await within(3_000, 'reply', client.reply());
      expect(reply.code).toBe(code);
      expect(reply.raw.subarray(0, -2).includes(0)).toBe(false); // the gateway's reply carries no NUL
      expect(upstream().length).toBe(sentBefore); // nothing forwarded
      expect((await client.command('NOOP')).code).toBe(200);
      expect(record.targets).toHaveLength(0); // the control connection was made before the record
      expect(gw.gateway.stats().pinholes).toBe(0);
    } finally {
      record.stop();
    }
  });

  it('a line of exactly the cap is forwarded', async () => {
    const { client, upstream } = await session();
    const line = `USER ${'x'.repeat(MAX_LINE - 7)}\r\n`;
    expect(line.length).toBe(MAX_LINE);
    expect((await client.command(line.slice(0, -2))).code).toBe(331);
    expect(latin1(upstream())).toBe(line);
  });
});

describe('Telnet IAC cannot hide an intercepted verb', () => {
  const rows: [string, string, number, RegExp][] = [
    ['IAC IP before PORT', '\xff\xf4PORT 127,0,0,2,4,1\r\n', 504, /PORT/],
    ['IAC NOP inside the verb', 'P\xff\xf1ORT 127,0,0,2,4,1\r\n', 504, /PORT|P.*ORT/],
    ['IAC WILL ECHO before EPRT', '\xff\xfb\x01EPRT |1|127.0.0.2|1025|\r\n', 504, /EPRT/],
    ['IAC NOP inside AUTH', 'AU\xff\xf1TH TLS\r\n', 534, /TH TLS/],
  ];

  it.each(rows)('%s', async (_name, line, code, forbidden) => {
    const { client, upstream } = await session();
    await client.write(line);
    expect((await within(3_000, 'reply', client.reply())).code).toBe(code);
    expect(latin1(upstream())).not.toMatch(forbidden);
    expect((await client.command('NOOP')).code).toBe(200);
  });
});

describe('bytes the gateway has no reason to refuse are forwarded byte-exact', () => {
  const rows: [string, string][] = [
    ['IAC IAC inside a file name', 'STOR f\xff\xffo\r\n'],
    ['Telnet IP and Synch before ABOR', '\xff\xf4\xff\xf2ABOR\r\n'],
    ['invalid UTF-8 in a file name', 'STOR \xc3\x28\xa0\xa1.bin\r\n'],
    ['high bytes and a bare CR', 'MKD \x80\xfe\xfd\rx\r\n'],
  ];

  it.each(rows)('%s', async (_name, line) => {
    const { client, upstream } = await session();
    await client.write(line);
    await within(3_000, 'reply', client.reply());
    expect(latin1(upstream())).toBe(line);
  });
});

describe('replies the gateway refuses: 425, nothing opened, nothing connected', () => {
  const rows: [string, 'PASV' | 'EPSV', string][] = [
    ['227 with a port field past 255 (0,65557)', 'PASV', '227 Entering Passive Mode (127,0,0,1,0,65557).'],
    ['227 whose port overflows 65535 (256,1)', 'PASV', '227 Entering Passive Mode (127,0,0,1,256,1).'],
    ['227 with an octet past 255', 'PASV', '227 Entering Passive Mode (127,0,0,300,4,1).'],
    ['227 with a 400-digit octet', 'PASV', `227 Entering Passive Mode (${'1'.repeat(400)},0,0,1,4,1).`],
    ['227 with a 400-digit port field', 'PASV', `227 Entering Passive Mode (127,0,0,1,4,${'9'.repeat(400)}).`],
    ['227 with five numbers', 'PASV', '227 Entering Passive Mode (127,0,0,1,4).'],
    ['227 with seven numbers', 'PASV', '227 Entering Passive Mode (127,0,0,1,4,1,5).'],
    ['227 with a negative number', 'PASV', '227 Entering Passive Mode (127,0,0,1,-4,1).'],
    ['227 with no numbers', 'PASV', '227 Entering Passive Mode.'],
    ['227 with a NUL in the numbers', 'PASV', '227 Entering Passive Mode (127,0,0,1,4\0,1).'],
    ['229 with port 65536', 'EPSV', '229 Entering Extended Passive Mode (|||65536|)'],
    ['229 with a 400-digit port', 'EPSV', `229 Entering Extended Passive Mode (|||${'9'.repeat(400)}|)`],
    ['229 with an empty port', 'EPSV', '229 Entering Extended Passive Mode (||||)'],
    ['229 with a negative port', 'EPSV', '229 Entering Extended Passive Mode (|||-1|)'],
    ['229 with mixed delimiters', 'EPSV', '229 Entering Extended Passive Mode (|!|2000|)'],
    ['229 with no parenthesis', 'EPSV', '229 Entering Extended Passive Mode |||2000|'],
  ];

  it.each(rows)('%s', async (_name, verb, text) => {
    fake.hooks.pasv = () => `${text}\r\n`;
    fake.hooks.epsv = () => `${text}\r\n`;
    const { client } = await session();
    const record = recordGatewayConnects();
    try {
      expect((await within(3_000, 'reply', client.command(verb))).code).toBe(425);
      expect(gw.gateway.stats().pinholes).toBe(0);
      expect((await client.command('NOOP')).code).toBe(200);
      expect(record.targets).toHaveLength(0); // the control connection was made before the record
    } finally {
      record.stop();
    }
  });
});

describe('upstream lines', () => {
  it('an over-long reply line: 421 to the client, both connections closed', async () => {
    fake.hooks.reply = (line) => (line === 'SYST' ? `215 ${'U'.repeat(2 * MAX_LINE)}\r\n` : undefined);
    const before = await counterTotal(gw.gateway, 'ftp_alg_parse_rejects_total');
    const { client } = await session();
    const conn = fake.connections.at(-1);
    await client.write('SYST\r\n');
    expect((await within(3_000, 'reply', client.reply())).code).toBe(421);
    await within(3_000, 'client closed', client.closed);
    await within(3_000, 'upstream closed', conn?.closed ?? Promise.resolve());
    expect(latin1(client.received())).not.toContain('UUUU');
    expect(await counterTotal(gw.gateway, 'ftp_alg_parse_rejects_total')).toBe(before + 1);
  });

  it('1 MiB of reply without a line end: 421 and close', async () => {
    fake.hooks.reply = (line) => (line === 'SYST' ? `215 ${'U'.repeat(MiB)}` : undefined);
    const { client } = await session();
    await client.write('SYST\r\n');
    expect((await within(3_000, 'reply', client.reply())).code).toBe(421);
    await within(3_000, 'client closed', client.closed);
  });

  it('garbage, NUL, IAC and high bytes in replies are passed on, and the session goes on', async () => {
    const odd = 'garbage that is no reply\r\n200 N\0OP \xff\xf4 \xc3\x28\r\n';
    fake.hooks.reply = (line) => (line === 'NOOP' ? odd : undefined);
    const { client } = await session();
    await client.write('NOOP\r\n');
    expect(latin1(await within(3_000, 'replies', client.readBytes(odd.length)))).toBe(odd);
    expect((await client.command('SYST')).code).toBe(215);
  });

  it('a reply with a bad code (099, 600, 2x0) is passed on and answers nothing', async () => {
    const odd = '099 low\r\n600 high\r\n2x0 letters\r\n';
    fake.hooks.reply = (line) => (line === 'NOOP' ? `${odd}200 NOOP ok.\r\n` : undefined);
    const { client } = await session();
    await client.write('NOOP\r\nSYST\r\n');
    expect(latin1(await within(3_000, 'replies', client.readBytes(odd.length)))).toBe(odd);
    expect((await client.reply()).code).toBe(200);
    expect((await client.reply()).code).toBe(215); // the FIFO is still in step
  });
});

describe('memory stays bounded', () => {
  it('20 MiB from the client without a line end: one 500, a few MiB at most held, others still served', async () => {
    const { client, upstream } = await session();
    const baseline = liveBytes();
    const chunk = Buffer.alloc(MiB, 0x41);
    for (let i = 0; i < 20; i++) await client.write(chunk);
    // While the line is still open: what the gateway holds now is what an unbounded buffer would grow.
    const other = await session();
    expect((await other.client.command('NOOP')).code).toBe(200);
    const during = liveBytes();
    const grown = during.heapUsed + during.arrayBuffers - (baseline.heapUsed + baseline.arrayBuffers);
    console.log(`memory held during a 20 MiB line: ${(grown / MiB).toFixed(2)} MiB`);
    expect(grown).toBeLessThan(6 * MiB);

    await client.write('\r\nNOOP\r\n');
    expect((await within(5_000, 'reply', client.reply())).code).toBe(500);
    expect((await within(5_000, 'reply', client.reply())).code).toBe(200);
    expect(latin1(client.received()).match(/^500 /gm)).toHaveLength(1); // one refusal, not one per read
    expect(latin1(upstream())).toBe('NOOP\r\n');
  });

  it('a client pipelining more than the gateway will queue is cut with 421', async () => {
    const { client, upstream } = await session();
    await client.write('NOOP\r\n'.repeat(200));
    await within(5_000, 'client closed', client.closed);
    expect(latin1(client.received())).toMatch(/^421 /m);
    expect(upstream().length).toBeLessThan(200 * 6); // not everything was forwarded
  });
});

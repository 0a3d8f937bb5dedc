/**
 * IPv6 clients in front of an IPv4 upstream (issue 3 items 2 and 3), on
 * loopback: a site listening on ::1, and a dual-stack site on :: with one
 * external address of each family. EPSV and EPRT |2| carry data byte-exact;
 * the upstream gets IPv4 commands; PASV and PORT, which can only name IPv4,
 * are answered 522 (RFC 2428 2: "network protocol not supported") to an
 * IPv6 client, as are EPSV 1 and EPRT |1|.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ControlClient, readDataConnection } from '../../support/control.js';
import { sha256 } from '../../support/ftpClient.js';
import { SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { inRange, portRanges, rangeSize } from '../../support/ports.js';
import { dataCommands, type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { eprtArg, parse227, parse229, parseActiveLine, portArg } from '../../support/hostPort.js';
import { putFiles, startUpstream, type TestUpstream } from '../../support/upstream.js';
import { dial, listen } from '../../support/traps.js';

const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];

/** Whether this host can listen on ::1 (containers without IPv6 cannot). */
async function loopback6(): Promise<string | undefined> {
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '::1', resolve);
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return undefined;
  } catch (err) {
    return `cannot listen on ::1 (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
}

const unavailable = await loopback6();
if (unavailable !== undefined && !IN_CI) console.warn(`[modes/ipv6] skipping: ${unavailable}`);

const FILES = { 'one-kib.bin': randomBytes(1024), 'eight-mib.bin': randomBytes(8 * 1024 * 1024) } as const;
type Name = keyof typeof FILES;
const NAMES = Object.keys(FILES) as Name[];

const cleanup: { close(): unknown }[] = [];

/** Clients and listeners first: a gateway's close() waits for its sessions. */
async function closeOpen(): Promise<void> {
  for (const c of cleanup.splice(0).reverse()) await c.close();
}

afterEach(closeOpen);

/** A client logged in over `host` (::1 unless told), in binary mode. */
async function loggedInFrom(port: number, host = '::1'): Promise<ControlClient> {
  const client = await ControlClient.connect(port, { host });
  cleanup.push({ close: () => client.destroy() });
  const greeting = await client.reply();
  expect(greeting.code).toBe(220);
  await client.login();
  expect((await client.command('TYPE I')).code).toBe(200);
  return client;
}

describe.skipIf(unavailable !== undefined && !IN_CI)('an IPv6 client (::1) and an IPv4 upstream (ftp-srv on 127.0.0.1)', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    upstream = await startUpstream();
    putFiles(upstream, FILES);
    gw = await startGateway({ listen: { host: '::1', port: 0 }, upstream: { host: upstream.host, port: upstream.port }, passivePorts, activePorts });
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  afterEach(async () => {
    await closeOpen();
    await vi.waitFor(() => {
      expect(gw.gateway.stats().pinholes).toBe(0);
      expect(gw.gateway.stats().sites[SITE]).toMatchObject({ activeFree: rangeSize(activePorts), passiveFree: rangeSize(passivePorts) });
    });
  });

  it.each(NAMES)('EPSV: downloads %s byte-exact over [::1]', async (name) => {
    const client = await loggedInFrom(gw.port);
    const reply = await client.command('EPSV');
    expect(reply.code).toBe(229);
    const port = parse229(reply.text);
    expect(inRange(port, passivePorts)).toBe(true);
    await client.write(`RETR ${name}\r\n`);
    const data = readDataConnection(port, { host: '::1' });
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await data)).toBe(sha256(FILES[name]));
    expect((await client.reply()).code).toBe(226);
  });

  it.each(NAMES)('EPSV: uploads %s byte-exact over [::1]', async (name) => {
    const client = await loggedInFrom(gw.port);
    const port = parse229((await client.command('EPSV')).text);
    const target = `v6-epsv-${name}`;
    await client.write(`STOR ${target}\r\n`);
    const sent = dial('::1', port, { send: FILES[name] });
    expect((await client.reply()).code).toBe(150);
    expect((await sent).connected).toBe(true);
    expect((await client.reply()).code).toBe(226);
    expect(sha256(readFileSync(join(upstream.root, target)))).toBe(sha256(FILES[name]));
  });

  it.each(NAMES)('EPRT |2|::1|port|: downloads %s byte-exact, the gateway connecting from ::1', async (name) => {
    const client = await loggedInFrom(gw.port);
    const own = await listen('::1');
    cleanup.push(own);
    expect((await client.command(`EPRT ${eprtArg('::1', own.port)}`)).code).toBe(200);
    await client.write(`RETR ${name}\r\n`);
    expect((await client.reply()).code).toBe(150);
    const conn = await own.next();
    expect(sha256(await conn.received)).toBe(sha256(FILES[name]));
    expect(conn.peer).toBe('::1');
    expect((await client.reply()).code).toBe(226);
  });

  it.each(NAMES)('EPRT |2|::1|port|: uploads %s byte-exact', async (name) => {
    const client = await loggedInFrom(gw.port);
    const own = await listen('::1', 0, { payload: FILES[name] });
    cleanup.push(own);
    expect((await client.command(`EPRT ${eprtArg('::1', own.port)}`)).code).toBe(200);
    const target = `v6-eprt-${name}`;
    await client.write(`STOR ${target}\r\n`);
    expect((await client.reply()).code).toBe(150);
    expect((await client.reply()).code).toBe(226);
    expect(sha256(readFileSync(join(upstream.root, target)))).toBe(sha256(FILES[name]));
  });

  it('lists the folder with EPSV', async () => {
    const client = await loggedInFrom(gw.port);
    const port = parse229((await client.command('EPSV')).text);
    await client.write('LIST\r\n');
    const data = readDataConnection(port, { host: '::1' });
    expect((await client.reply()).code).toBe(150);
    const listing = (await data).toString('utf8');
    for (const name of NAMES) expect(listing).toContain(name);
    expect((await client.reply()).code).toBe(226);
  });

  it.each([
    { line: 'PASV', why: 'PASV names only IPv4' },
    { line: 'EPSV 1', why: 'EPSV for IPv4 on an IPv6 connection' },
    { line: `PORT ${portArg('127.0.0.1', 40000)}`, why: 'PORT names only IPv4' },
    { line: `EPRT ${eprtArg('127.0.0.1', 40000)}`, why: 'EPRT |1| on an IPv6 connection' },
  ])('$line → 522 ($why), and the session goes on', async ({ line }) => {
    const client = await loggedInFrom(gw.port);
    const reply = await client.command(line);
    expect(reply.code).toBe(522);
    // RFC 2428 2 and 3: a 522 to EPRT/EPSV names the protocols the server supports.
    if (line !== 'PASV') expect(reply.text).toMatch(/\(2\)/);
    expect(gw.gateway.stats().pinholes).toBe(0);
    expect((await client.command('NOOP')).code).toBe(200);
  });

  it('EPSV 2 is accepted', async () => {
    const client = await loggedInFrom(gw.port);
    const reply = await client.command('EPSV 2');
    expect(reply.code).toBe(229);
    expect(inRange(parse229(reply.text), passivePorts)).toBe(true);
  });

  it('EPRT |2| naming another IPv6 host is a bounce: 504', async () => {
    const client = await loggedInFrom(gw.port);
    expect((await client.command(`EPRT ${eprtArg('2001:db8::99', 40000)}`)).code).toBe(504);
    expect(gw.gateway.stats().pinholes).toBe(0);
  });
});

describe.skipIf(unavailable !== undefined && !IN_CI)('what an IPv4 upstream is sent for an IPv6 client (fake upstream)', () => {
  let gw: TestGateway | undefined;
  let fake: FakeFtp;

  afterEach(async () => {
    await closeOpen();
    await gw?.close();
    gw = undefined;
  });

  /** A fake IPv4 upstream that refuses the verbs of `refuse`, a gateway on ::1 in front of it, a logged-in IPv6 client. */
  async function start(refuse: FakeFtp['hooks']['refuse'] = {}): Promise<ControlClient> {
    if (unavailable !== undefined) throw new Error(unavailable);
    fake = await startFakeFtp();
    cleanup.push(fake);
    fake.hooks.refuse = refuse;
    gw = await startGateway({ listen: { host: '::1', port: 0 }, upstream: { host: fake.host, port: fake.port }, passivePorts, activePorts });
    return loggedInFrom(gw.port);
  }

  it('client EPRT |2| → upstream EPRT |1| naming the gateway\'s IPv4 private address', async () => {
    const client = await start();
    expect((await client.command(`EPRT ${eprtArg('::1', 40000)}`)).code).toBe(200);
    const [line] = dataCommands((await fake.connection()).lines);
    const target = parseActiveLine(line ?? '');
    expect(target.address).toBe('127.0.0.1');
    expect(line).toMatch(/^EPRT \|1\|127\.0\.0\.1\|\d+\|$/);
    expect(inRange(target.port, activePorts)).toBe(true);
  });

  it('client EPRT |2| → upstream PORT when the upstream refuses EPRT (502); data flows', async () => {
    const payload = Buffer.from('v6 client, v4 upstream, PORT\r\n');
    const client = await start({ EPRT: 502 });
    fake.files.set('file.bin', payload);
    const own = await listen('::1');
    cleanup.push(own);
    expect((await client.command(`EPRT ${eprtArg('::1', own.port)}`)).code).toBe(200);
    const sent = dataCommands((await fake.connection()).lines);
    expect(sent.map((l) => l.split(' ')[0])).toEqual(['EPRT', 'PORT']);
    const port = parseActiveLine(sent[1] ?? '');
    await client.write('RETR file.bin\r\n'); // the upstream connects to the PORT's target now
    expect((await client.reply()).code).toBe(150);
    const conn = await own.next();
    expect(fake.activeTargets).toEqual([{ host: '127.0.0.1', port: port.port }]);
    expect((await conn.received).toString()).toBe(payload.toString());
    expect(conn.peer).toBe('::1');
  });

  it('client EPSV → upstream PASV when the upstream refuses EPSV (500); the client gets 229', async () => {
    const client = await start({ EPSV: 500 });
    expect((await client.command('EPSV')).code).toBe(229);
    expect(dataCommands((await fake.connection()).lines)).toEqual(['EPSV', 'PASV']);
    expect((await client.command('NOOP')).code).toBe(200);
  });

  it('PASV, EPSV 1, PORT and EPRT |1| from the IPv6 client send nothing upstream', async () => {
    const client = await start();
    for (const line of ['PASV', 'EPSV 1', `PORT ${portArg('127.0.0.1', 40000)}`, `EPRT ${eprtArg('127.0.0.1', 40000)}`]) {
      expect((await client.command(line)).code).toBe(522);
    }
    expect((await client.command('NOOP')).code).toBe(200);
    expect(dataCommands((await fake.connection()).lines)).toEqual([]);
  });
});

describe.skipIf(unavailable !== undefined && !IN_CI)('a dual-stack site on :: with externalAddress ["127.0.0.1", "::1"]', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;
  const PAYLOAD = FILES['one-kib.bin'];

  beforeAll(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    upstream = await startUpstream();
    writeFileSync(join(upstream.root, 'one-kib.bin'), PAYLOAD);
    gw = await startGateway({
      listen: { host: '::', port: 0 },
      externalAddress: ['127.0.0.1', '::1'],
      upstream: { host: upstream.host, port: upstream.port },
      passivePorts,
      activePorts,
    });
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it('an IPv4 client on the dual-stack listener: PASV names the IPv4 external address and carries the data', async () => {
    const client = await loggedInFrom(gw.port, '127.0.0.1');
    const reply = await client.command('PASV');
    expect(reply.code).toBe(227);
    const { address, port } = parse227(reply.text);
    expect(address).toBe('127.0.0.1');
    await client.write('RETR one-kib.bin\r\n');
    const data = readDataConnection(port, { host: address });
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await data)).toBe(sha256(PAYLOAD));
  });

  it('an IPv4 client on the dual-stack listener: PORT works and the data comes from 127.0.0.1', async () => {
    const client = await loggedInFrom(gw.port, '127.0.0.1');
    const own = await listen('127.0.0.1');
    cleanup.push(own);
    expect((await client.command(`PORT ${portArg('127.0.0.1', own.port)}`)).code).toBe(200);
    await client.write('RETR one-kib.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    const conn = await own.next();
    expect(sha256(await conn.received)).toBe(sha256(PAYLOAD));
    expect(conn.peer).toBe('127.0.0.1');
  });

  it('an IPv6 client: EPSV works', async () => {
    const client = await loggedInFrom(gw.port, '::1');
    const port = parse229((await client.command('EPSV')).text);
    await client.write('RETR one-kib.bin\r\n');
    const data = readDataConnection(port, { host: '::1' });
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await data)).toBe(sha256(PAYLOAD));
  });

  it('an IPv6 client: PASV → 522, even though the site has an IPv4 external address (its pinhole could not be reached over IPv4)', async () => {
    const client = await loggedInFrom(gw.port, '::1');
    const reply = await client.command('PASV');
    expect(reply.code, reply.text).toBe(522);
    expect((await client.command('NOOP')).code).toBe(200);
    await vi.waitFor(() => expect(gw.gateway.stats().pinholes).toBe(0));
  });
});

describe.skipIf(unavailable !== undefined && !IN_CI)('an IPv4 client (127.0.0.1) and an IPv6 upstream (fake on ::1)', () => {
  const PAYLOAD = FILES['one-kib.bin'];
  let gw: TestGateway | undefined;
  let upstream: FakeFtp;
  /** Lines the upstream received on the session's control connection. */
  const upstreamLines = () => upstream.connections[0]?.lines ?? [];

  afterEach(async () => {
    await closeOpen();
    await gw?.close();
    gw = undefined;
    await upstream?.close();
  });

  /** A fake upstream on ::1 serving `file.bin` and refusing the verbs of `refuse`, a gateway in front, a logged-in IPv4 client. */
  async function start(refuse: FakeFtp['hooks']['refuse'] = {}): Promise<ControlClient> {
    if (unavailable !== undefined) throw new Error(unavailable);
    upstream = await startFakeFtp({ host: '::1' });
    upstream.files.set('file.bin', PAYLOAD);
    upstream.hooks.refuse = refuse;
    gw = await startGateway({ upstream: { host: '::1', port: upstream.port }, passivePorts, activePorts });
    return loggedInFrom(gw.port, '127.0.0.1');
  }

  it('client PASV → upstream EPSV (PASV cannot reach an IPv6 upstream); the 227 names the IPv4 side and carries the data', async () => {
    const client = await start();
    const reply = await client.command('PASV');
    expect(reply.code).toBe(227);
    const { address, port } = parse227(reply.text);
    expect(address).toBe('127.0.0.1');
    expect(dataCommands(upstreamLines())).toEqual(['EPSV']);
    await client.write('RETR file.bin\r\n');
    const data = readDataConnection(port);
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await data)).toBe(sha256(PAYLOAD));
    expect(upstream.dataPeers).toEqual(['::1']);
  });

  it('client PORT → upstream EPRT |2| naming the gateway\'s IPv6 private address; the upstream\'s connection reaches the client', async () => {
    const client = await start();
    const own = await listen('127.0.0.1');
    cleanup.push(own);
    expect((await client.command(`PORT ${portArg('127.0.0.1', own.port)}`)).code).toBe(200);
    const [line] = dataCommands(upstreamLines());
    expect(line).toMatch(/^EPRT \|2\|::1\|\d+\|$/);
    const pinhole = parseActiveLine(line ?? '').port;
    expect(inRange(pinhole, activePorts)).toBe(true);
    await client.write('RETR file.bin\r\n'); // the upstream connects to the EPRT's target now
    expect((await client.reply()).code).toBe(150);
    const conn = await own.next();
    expect(sha256(await conn.received)).toBe(sha256(PAYLOAD));
    expect(conn.peer).toBe('127.0.0.1');
    expect(upstream.activeTargets).toEqual([{ host: '::1', port: pinhole }]);
  });

  it('an IPv6 upstream that refuses EPSV has no PASV to fall back to: the client gets a 425 and the session goes on', async () => {
    const client = await start({ EPSV: 500 });
    expect((await client.command('PASV')).code).toBe(425);
    expect(dataCommands(upstreamLines())).toEqual(['EPSV']);
    expect((await client.command('NOOP')).code).toBe(200);
    expect(gw?.gateway.stats().pinholes).toBe(0);
  });
});

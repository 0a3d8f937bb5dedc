/**
 * A forward site over real sockets on loopback (issue 15): the gateway greets
 * first, learns the server from `USER user@host:port` (or SITE/OPEN), checks it
 * and connects; transfers in every mode are byte-exact; every refused class
 * answers 530 (421 at the third), is logged and counted, and connects nowhere.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Client } from 'basic-ftp';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { configFile, startCli } from '../../support/cli.js';
import { ControlClient } from '../../support/control.js';
import { startGatewayWith, type TestGateway } from '../../support/gateway.js';
import { downloadToBuffer, sha256 } from '../../support/ftpClient.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { FILES, NAMES } from '../../support/transferFiles.js';
import { putFiles, startUpstream, type TestUpstream } from '../../support/upstream.js';
import { eprtArg, portArg } from '../../support/hostPort.js';
import { listen } from '../../support/traps.js';

type Range = { min: number; max: number };
const [passivePorts, activePorts, passive2, active2] = portRanges(4, 20) as [Range, Range, Range, Range];

let upstream: TestUpstream;
let gw: TestGateway;
let gateway: TestGateway['gateway'];
let port: number;
/** A second site allowing 0.0.0.0/0 and ::/0, any port: loopback and link-local must still be refused. */
let openPort: number;
/** A listener the refused destinations would reach: it must never see a connection. */
let trap: net.Server;
let trapPort: number;
let trapHits = 0;
const open: { close(): unknown }[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  putFiles(upstream, FILES);
  trap = net.createServer((s) => {
    trapHits++;
    s.destroy();
  });
  await new Promise<void>((resolve) => trap.listen(0, '127.0.0.2', resolve));
  trapPort = (trap.address() as net.AddressInfo).port;
  gw = await startGatewayWith(
    {
      sites: [
        {
          name: 'fw',
          role: 'forward',
          listen: { host: '127.0.0.1', port: 0 },
          destinations: { allow: ['127.0.0.0/8'], deny: ['127.0.0.2'], ports: ['1024-65535'] },
          passivePorts,
          activePorts,
        },
        {
          name: 'fw-open',
          role: 'forward',
          listen: { host: '127.0.0.1', port: 0 },
          destinations: { allow: ['0.0.0.0/0', '::/0'], ports: ['1-65535'] },
          passivePorts: passive2,
          activePorts: active2,
        },
      ],
    },
    'silent',
  );
  gateway = gw.gateway;
  port = gw.portOf('fw');
  openPort = gw.portOf('fw-open');
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
  await new Promise<void>((resolve) => trap.close(() => resolve()));
});

afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
  await vi.waitFor(() => {
    expect(gateway.stats().pinholes).toBe(0);
    expect(gateway.stats().sites.fw).toMatchObject({ activeFree: rangeSize(activePorts), passiveFree: rangeSize(passivePorts) });
  });
});

async function refusedCount(reason: string): Promise<number> {
  const metric = gateway.metrics.registry.getSingleMetric('ftp_alg_sessions_refused_total');
  const values = (await metric?.get())?.values ?? [];
  return values.filter((v) => v.labels.reason === reason).reduce((sum, v) => sum + v.value, 0);
}

async function basic(mode: 'PASV' | 'EPSV'): Promise<Client> {
  const client = new Client(10_000);
  open.push({ close: () => client.close() });
  client.ftp.ipFamily = mode === 'PASV' ? 4 : 6; // basic-ftp: 4 sends PASV, 6 sends EPSV
  await client.access({ host: '127.0.0.1', port, user: `anonymous@127.0.0.1:${upstream.port}`, password: 'guest' });
  return client;
}

/** ftp-srv logs anonymous in at USER (230); a server asking for a password answers 331 first. */
async function login(client: ControlClient, user: string): Promise<void> {
  const reply = await client.command(`USER ${user}`);
  if (reply.code === 331) expect((await client.command('PASS guest')).code).toBe(230);
  else expect(reply.code).toBe(230);
}

describe('forward site: the server named at login', () => {
  it('greets before any upstream exists and answers FEAT, SYST alone', async () => {
    const client = await ControlClient.connect(port);
    open.push({ close: () => client.destroy() });
    expect((await client.reply()).text).toBe('220 ftp-alg ready.');
    expect((await client.command('SYST')).code).toBe(215);
    expect((await client.command('FEAT')).lines).toContain(' EPSV');
    expect((await client.command('LIST')).code).toBe(530);
  });

  it.each(['PASV', 'EPSV'] as const)('USER user@host:port, %s: get, put and list, byte-exact', async (mode) => {
    const client = await basic(mode);
    for (const name of NAMES) expect(sha256(await downloadToBuffer(client, name))).toBe(sha256(FILES[name]));
    await client.uploadFrom(Readable.from([FILES['one-kib.bin']]), `up-${mode}.bin`);
    expect(sha256(readFileSync(join(upstream.root, `up-${mode}.bin`)))).toBe(sha256(FILES['one-kib.bin']));
    const names = (await client.list()).map((f) => f.name);
    for (const name of NAMES) expect(names).toContain(name);
  });

  it.each(['PORT', 'EPRT'] as const)('%s from the client: an active pinhole, the upstream connects in, byte-exact', async (verb) => {
    const client = await ControlClient.connect(port);
    open.push({ close: () => client.destroy() });
    await client.reply();
    await login(client, `anonymous@127.0.0.1:${upstream.port}`);
    expect((await client.command('TYPE I')).code).toBe(200);
    const l = await listen('127.0.0.1');
    open.push(l);
    expect((await client.command(verb === 'PORT' ? `PORT ${portArg(l.host, l.port)}` : `EPRT ${eprtArg(l.host, l.port)}`)).code).toBe(200);
    await client.write('RETR eight-mib.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    const conn = await l.next();
    expect(sha256(await conn.received)).toBe(sha256(FILES['eight-mib.bin']));
    expect((await client.reply()).code).toBe(226);
  });

  it.each([
    ['SITE', (p: number) => `SITE 127.0.0.1 ${p}`],
    ['OPEN', (p: number) => `OPEN 127.0.0.1:${p}`],
  ] as const)('%s host names the server; USER then goes through as it is', async (_verb, line) => {
    const client = await ControlClient.connect(port);
    open.push({ close: () => client.destroy() });
    await client.reply();
    expect((await client.command(line(upstream.port))).code).toBe(220);
    await login(client, 'anonymous');
    expect((await client.command('PWD')).code).toBe(257);
  });
});

describe('forward site: refusals are prompt, counted, and connect nowhere', () => {
  const rows: [string, () => number, () => string, string, RegExp][] = [
    ['denied (deny wins over allow)', () => port, () => `USER u@127.0.0.2:${trapPort}`, 'destination-denied', /^530 Destination refused: that server is denied\.$/],
    ['a port outside ports', () => port, () => 'USER u@127.0.0.1:21', 'destination-port', /^530 .*port is not allowed/],
    ['the gateway\'s own listener', () => port, () => `USER u@127.0.0.1:${port}`, 'destination-gateway-itself', /^530 .*the gateway itself/],
    ['the gateway\'s own passive range', () => port, () => `USER u@127.0.0.1:${passivePorts.min}`, 'destination-gateway-itself', /^530 .*the gateway itself/],
    ['outside the allow list', () => port, () => 'USER u@192.0.2.10:2121', 'destination-not-allowed', /^530 .*not in the allowed list/],
    ['loopback with allow 0.0.0.0/0', () => openPort, () => `USER u@127.0.0.2:${trapPort}`, 'destination-loopback', /^530 .*loopback/],
    ['IPv6 loopback with allow ::/0', () => openPort, () => `USER u@[::1]:${trapPort}`, 'destination-loopback', /^530 .*loopback/],
    ['a host name resolving into loopback (localhost)', () => openPort, () => `USER u@localhost:${trapPort}`, 'destination-loopback', /^530 .*loopback/],
    ['169.254.169.254 with allow 0.0.0.0/0', () => openPort, () => 'USER u@169.254.169.254:80', 'destination-link-local', /^530 .*link-local/],
    ['multicast', () => openPort, () => 'USER u@224.0.0.1:21', 'destination-multicast', /^530 .*multicast/],
    ['unspecified', () => openPort, () => 'USER u@0.0.0.0:21', 'destination-unspecified', /^530 .*unspecified/],
    ['no server named', () => port, () => 'USER anonymous', 'bad-target', /^530 Name the server/],
  ];
  it.each(rows)('%s', async (_name, sitePort, line, reason, text) => {
    const before = await refusedCount(reason);
    const hits = trapHits;
    const client = await ControlClient.connect(sitePort());
    open.push({ close: () => client.destroy() });
    await client.reply();
    const began = performance.now();
    const reply = await client.command(line());
    expect(reply.text).toMatch(text);
    expect(performance.now() - began).toBeLessThan(2_000);
    expect(await refusedCount(reason)).toBe(before + 1);
    // The client may name another server on the same session.
    expect((await client.command(`USER anonymous@127.0.0.1:${upstream.port}`)).code).toBe(sitePort() === port ? 230 : 530);
    expect(trapHits).toBe(hits);
  });

  it('the third refusal in a session is 421 and the end', async () => {
    const client = await ControlClient.connect(port);
    open.push({ close: () => client.destroy() });
    await client.reply();
    expect((await client.command('USER a@127.0.0.1:21')).code).toBe(530);
    expect((await client.command('USER a@127.0.0.1:21')).code).toBe(530);
    expect((await client.command('USER a@127.0.0.1:21')).code).toBe(421);
    await client.closed;
  });
});

describe('forward site: never an open proxy', () => {
  it('without an allow list on a listener that is not loopback, the gateway refuses to start (exit 78), naming the key', async () => {
    const file = configFile({ sites: [{ name: 'open', role: 'forward', listen: { host: '0.0.0.0', port: 0 } }] }, 'open.json');
    const result = await startCli(file.path).exited;
    file.remove();
    expect(result.code).toBe(78);
    expect(`${result.stdout}${result.stderr}`).toMatch(/sites\[0\]\.destinations\.allow: .*open proxy/);
  });
});

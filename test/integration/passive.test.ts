/**
 * Passive mode through the gateway to a real FTP server (ftp-srv): LIST,
 * download and upload of 0 B, 1 KiB and 8 MiB, byte-exact by sha256, in
 * PASV and EPSV with basic-ftp; and the raw 227/229 the gateway writes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ControlClient, readDataConnection } from '../support/control.js';
import { connectClient, type PassiveMode, type RecordingClient, sha256 } from '../support/ftpClient.js';
import { SITE, startGateway, type TestGateway } from '../support/gateway.js';
import { inRange, portRanges, rangeSize } from '../support/ports.js';
import { FILES, NAMES } from '../support/transferFiles.js';
import { putFiles, startUpstream, type TestUpstream } from '../support/upstream.js';
import { parse227, parse229 } from '../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 20) as [{ min: number; max: number }, { min: number; max: number }];

let upstream: TestUpstream;
let gw: TestGateway;
const clients: { destroy(): void }[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  putFiles(upstream, FILES);
});

afterAll(async () => {
  await upstream.close();
});

beforeEach(async () => {
  gw = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, passivePorts, activePorts });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await gw.close();
});

function track(c: RecordingClient): RecordingClient {
  clients.push({ destroy: () => c.close() });
  return c;
}

/** The reply names the gateway's own address and a port of the site's passive range. */
function expectRewritten(mode: PassiveMode, reply: string): void {
  if (mode === 'PASV') {
    const { address, port } = parse227(reply);
    expect(address).toBe('127.0.0.1');
    expect(inRange(port, passivePorts)).toBe(true);
  } else {
    expect(inRange(parse229(reply), passivePorts)).toBe(true);
  }
}

describe.each<PassiveMode>(['PASV', 'EPSV'])('basic-ftp through the gateway in %s', (mode) => {
  it('lists the folder', async () => {
    const c = track(await connectClient(gw.port, mode));
    const list = await c.client.list();
    const sizes = Object.fromEntries(list.map((f) => [f.name, f.size]));
    for (const name of NAMES) expect(sizes[name]).toBe(FILES[name].length);
    expect(c.passiveReplies).toHaveLength(1);
    expectRewritten(mode, c.passiveReplies[0] as string);
  });

  it.each(NAMES)('downloads %s byte-exact', async (name) => {
    const c = track(await connectClient(gw.port, mode));
    const got = await c.download(name);
    expect(got.length).toBe(FILES[name].length);
    expect(sha256(got)).toBe(sha256(FILES[name]));
    expectRewritten(mode, c.passiveReplies[0] as string);
  });

  it.each(NAMES)('uploads %s byte-exact', async (name) => {
    const c = track(await connectClient(gw.port, mode));
    const target = `up-${mode}-${name}`;
    const res = await c.upload(FILES[name], target);
    expect(res.code).toBe(226);
    const stored = readFileSync(join(upstream.root, target));
    expect(stored.length).toBe(FILES[name].length);
    expect(sha256(stored)).toBe(sha256(FILES[name]));
    expectRewritten(mode, c.passiveReplies[0] as string);
  });

  it('runs several transfers in one session, each through a fresh pinhole', async () => {
    const c = track(await connectClient(gw.port, mode));
    for (const name of NAMES) expect(sha256(await c.download(name))).toBe(sha256(FILES[name]));
    await c.upload(FILES['one-kib.bin'], `again-${mode}.bin`);
    expect(sha256(await c.download(`again-${mode}.bin`))).toBe(sha256(FILES['one-kib.bin']));
    expect(c.passiveReplies).toHaveLength(NAMES.length + 2);
    await expect.poll(() => gw.gateway.stats().pinholes).toBe(0);
    await expect.poll(() => gw.gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts));
  });
});

describe('the raw passive replies the gateway writes', () => {
  it('PASV: "227 Entering Passive Mode (127,0,0,1,p1,p2)." with a port of the passive range, and that port carries the data', async () => {
    const client = await ControlClient.greeted(gw.port);
    clients.push(client);
    await client.login();
    expect((await client.command('TYPE I')).code).toBe(200);
    const pasv = await client.command('PASV');
    expect(pasv.raw.toString('latin1')).toMatch(/^227 Entering Passive Mode \(127,0,0,1,\d{1,3},\d{1,3}\)\.\r\n$/);
    const { port } = parse227(pasv.text);
    expect(inRange(port, passivePorts)).toBe(true);
    expect(gw.gateway.stats().pinholes).toBe(1);
    expect(gw.gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts) - 1);

    await client.write('RETR one-kib.bin\r\n');
    const data = readDataConnection(port);
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await data)).toBe(sha256(FILES['one-kib.bin']));
    expect((await client.reply()).code).toBe(226);
  });

  it('EPSV: "229 Entering Extended Passive Mode (|||port|)" with a port of the passive range', async () => {
    const client = await ControlClient.greeted(gw.port);
    clients.push(client);
    await client.login();
    const epsv = await client.command('EPSV');
    expect(epsv.raw.toString('latin1')).toMatch(/^229 Entering Extended Passive Mode \(\|\|\|\d+\|\)\r\n$/);
    const port = parse229(epsv.text);
    expect(inRange(port, passivePorts)).toBe(true);

    await client.write('LIST\r\n');
    const data = readDataConnection(port);
    expect((await client.reply()).code).toBe(150);
    const listing = (await data).toString('utf8');
    for (const name of NAMES) expect(listing).toContain(name);
    expect((await client.reply()).code).toBe(226);
  });

  it('a second PASV replaces the waiting pinhole: its port goes back to the pool', async () => {
    const client = await ControlClient.greeted(gw.port);
    clients.push(client);
    await client.login();
    const first = parse227((await client.command('PASV')).text).port;
    const second = parse227((await client.command('PASV')).text).port;
    expect(inRange(second, passivePorts)).toBe(true);
    await expect.poll(() => gw.gateway.stats().pinholes).toBe(1);
    await expect.poll(() => gw.gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts) - 1);
    if (first !== second) {
      // The replaced pinhole no longer listens.
      await expect(readDataConnection(first)).rejects.toThrow(/ECONNREFUSED/);
    }
  });
});

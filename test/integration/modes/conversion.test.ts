/**
 * Data-mode conversion per site (`upstreamDataMode`, issue 3 item 4): with
 * "passive" the upstream only ever gets PASV/EPSV, whatever the client
 * sent, and the gateway dials both sides; with "active" it only ever gets
 * PORT/EPRT; with "client" (the default) it gets the client's own command.
 * A fake upstream shows exactly what went upstream; ftp-srv shows that
 * real transfers work in each conversion.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { UpstreamDataMode } from '../../../src/config/types.js';
import { ControlClient, readDataConnection } from '../../support/control.js';
import { connectClient, sha256 } from '../../support/ftpClient.js';
import { SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { inRange, portRanges, rangeSize } from '../../support/ports.js';
import { dataCommands, pasvNaming, startFakeFtp } from '../../support/hostileUpstream.js';
import { eprtArg, parse227, parse229, portArg } from '../../support/hostPort.js';
import { putFiles, startUpstream, type TestUpstream } from '../../support/upstream.js';
import { listen, type Listener } from '../../support/traps.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
type Verb = 'PASV' | 'EPSV' | 'PORT' | 'EPRT';
const PAYLOAD = randomBytes(64 * 1024);

let gw: TestGateway | undefined;
const cleanup: { close(): unknown }[] = [];

afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c.close();
  await gw?.close();
  gw = undefined;
});

/** What the upstream gets for each client command, per upstreamDataMode (IPv4 upstream that speaks EPSV/EPRT). */
const TABLE: readonly { mode: UpstreamDataMode; client: Verb; upstream: Verb }[] = [
  { mode: 'client', client: 'PASV', upstream: 'PASV' },
  { mode: 'client', client: 'EPSV', upstream: 'EPSV' },
  { mode: 'client', client: 'PORT', upstream: 'PORT' },
  { mode: 'client', client: 'EPRT', upstream: 'EPRT' },
  { mode: 'passive', client: 'PASV', upstream: 'PASV' },
  { mode: 'passive', client: 'EPSV', upstream: 'EPSV' },
  { mode: 'passive', client: 'PORT', upstream: 'PASV' },
  { mode: 'passive', client: 'EPRT', upstream: 'EPSV' },
  { mode: 'active', client: 'PASV', upstream: 'PORT' },
  { mode: 'active', client: 'EPSV', upstream: 'EPRT' },
  { mode: 'active', client: 'PORT', upstream: 'PORT' },
  { mode: 'active', client: 'EPRT', upstream: 'EPRT' },
];

describe('what the upstream is sent, and the data path through each conversion (fake upstream)', () => {
  it.each(TABLE)('upstreamDataMode $mode: client $client → upstream $upstream; the bytes arrive', async ({ mode, client: verb, upstream: upVerb }) => {
    const fake = await startFakeFtp();
    cleanup.push(fake);
    fake.files.set('file.bin', PAYLOAD);
    fake.hooks.pasv = pasvNaming('10.9.8.7'); // an address the gateway must ignore
    gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, passivePorts, activePorts, upstreamDataMode: mode });
    const client = await ControlClient.greeted(gw.port);
    cleanup.push({ close: () => client.destroy() });
    await client.login();

    let received: Promise<Buffer>;
    if (verb === 'PASV' || verb === 'EPSV') {
      const reply = await client.command(verb);
      let port: number;
      if (verb === 'PASV') {
        expect(reply.code).toBe(227);
        const hp = parse227(reply.text);
        expect(hp.address).toBe('127.0.0.1');
        port = hp.port;
      } else {
        expect(reply.code).toBe(229);
        port = parse229(reply.text);
      }
      expect(inRange(port, passivePorts)).toBe(true);
      received = readDataConnection(port);
    } else {
      const own: Listener = await listen('127.0.0.1');
      cleanup.push(own);
      const arg = verb === 'PORT' ? portArg('127.0.0.1', own.port) : eprtArg('127.0.0.1', own.port);
      expect((await client.command(`${verb} ${arg}`)).code).toBe(200);
      received = own.next().then((c) => c.received);
    }
    await client.write('RETR file.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await received)).toBe(sha256(PAYLOAD));

    const upstream = await fake.connection();
    const sent = dataCommands(upstream.lines).map((l) => l.split(' ')[0]);
    expect(sent).toEqual([upVerb]);
    if (mode === 'passive') expect(sent.some((v) => v === 'PORT' || v === 'EPRT')).toBe(false);
    if (mode === 'active') expect(sent.some((v) => v === 'PASV' || v === 'EPSV')).toBe(false);
    // A passive upstream leg dials the upstream's control address, never the 227's (10.9.8.7).
    if (upVerb === 'PASV' || upVerb === 'EPSV') expect(fake.dataPeers).toEqual(['127.0.0.1']);
    else expect(fake.activeTargets).toHaveLength(1);
  });
});

describe.each(['passive', 'active'] as const)('upstreamDataMode %s with a real upstream (ftp-srv)', (mode) => {
  const FILES = { 'one-kib.bin': randomBytes(1024), 'eight-mib.bin': randomBytes(8 * 1024 * 1024) } as const;
  type Name = keyof typeof FILES;
  const NAMES = Object.keys(FILES) as Name[];
  let upstream: TestUpstream;
  let site: TestGateway;

  beforeAll(async () => {
    upstream = await startUpstream();
    putFiles(upstream, FILES);
    site = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, passivePorts, activePorts, upstreamDataMode: mode });
  });

  afterAll(async () => {
    await site.close();
    await upstream.close();
  });

  afterEach(async () => {
    await vi.waitFor(() => {
      expect(site.gateway.stats().pinholes).toBe(0);
      expect(site.gateway.stats().sites[SITE]).toMatchObject({ activeFree: rangeSize(activePorts), passiveFree: rangeSize(passivePorts) });
    });
  });

  describe.each(['PORT', 'EPRT'] as const)('client %s (raw lines)', (verb) => {
    it.each(NAMES)('downloads %s byte-exact', async (name) => {
      const client = await ControlClient.greeted(site.port);
      cleanup.push({ close: () => client.destroy() });
      await client.login();
      await client.command('TYPE I');
      const own = await listen('127.0.0.1');
      cleanup.push(own);
      const arg = verb === 'PORT' ? portArg('127.0.0.1', own.port) : eprtArg('127.0.0.1', own.port);
      expect((await client.command(`${verb} ${arg}`)).code).toBe(200);
      await client.write(`RETR ${name}\r\n`);
      expect((await client.reply()).code).toBe(150);
      const conn = await own.next();
      expect(sha256(await conn.received)).toBe(sha256(FILES[name]));
      expect(conn.peer).toBe('127.0.0.1');
      expect((await client.reply()).code).toBe(226);
    });

    it.each(NAMES)('uploads %s byte-exact', async (name) => {
      const client = await ControlClient.greeted(site.port);
      cleanup.push({ close: () => client.destroy() });
      await client.login();
      await client.command('TYPE I');
      const own = await listen('127.0.0.1', 0, { payload: FILES[name] });
      cleanup.push(own);
      const arg = verb === 'PORT' ? portArg('127.0.0.1', own.port) : eprtArg('127.0.0.1', own.port);
      expect((await client.command(`${verb} ${arg}`)).code).toBe(200);
      const target = `${mode}-${verb}-${name}`;
      await client.write(`STOR ${target}\r\n`);
      expect((await client.reply()).code).toBe(150);
      expect((await client.reply()).code).toBe(226);
      expect(sha256(readFileSync(join(upstream.root, target)))).toBe(sha256(FILES[name]));
    });
  });

  describe.each(['PASV', 'EPSV'] as const)('client %s (basic-ftp)', (verb) => {
    it.each(NAMES)('downloads %s byte-exact', async (name) => {
      const c = await connectClient(site.port, verb);
      cleanup.push({ close: () => c.close() });
      expect(sha256(await c.download(name))).toBe(sha256(FILES[name]));
      expect(c.passiveReplies[0]).toMatch(verb === 'PASV' ? /^227 / : /^229 /);
    });

    it.each(NAMES)('uploads %s byte-exact', async (name) => {
      const c = await connectClient(site.port, verb);
      cleanup.push({ close: () => c.close() });
      const target = `${mode}-${verb}-${name}`;
      expect((await c.upload(FILES[name], target)).code).toBe(226);
      expect(sha256(readFileSync(join(upstream.root, target)))).toBe(sha256(FILES[name]));
    });

    it('lists the folder', async () => {
      const c = await connectClient(site.port, verb);
      cleanup.push({ close: () => c.close() });
      const names = (await c.client.list()).map((f) => f.name);
      for (const name of NAMES) expect(names).toContain(name);
    });
  });
});

/**
 * Hot reload. In process: a site's passive range and external address are
 * changed under live sessions with transfers in flight (an 8 MiB download
 * the client has stopped reading, an 8 MiB upload stopped half-way); the
 * transfers finish byte-exact, the live sessions' next PASV keeps the old
 * settings, a new session gets the new ones (raw 227). Through the CLI:
 * SIGHUP with an invalid file is refused with an error line and changes
 * nothing; SIGHUP with a valid one adds a site that listens.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/index.js';
import { type CliProcess, configFile, sitePort, startCli } from '../../support/cli.js';
import { startGatewayWith } from '../../support/gateway.js';
import { useOpsRig } from '../../support/opsRig.js';
import { download, pacedDownload, pacedUpload, pasv } from '../../support/opsTransfer.js';
import { inRange, portRanges, rangeSize } from '../../support/ports.js';
import { parse227 } from '../../support/hostPort.js';

type Range = { min: number; max: number };
const [oldPassive, newPassive, activePorts, secondPassive, secondActive] = portRanges(5, 12) as [Range, Range, Range, Range, Range];
const OLD_EXTERNAL = '198.51.100.7';
const NEW_EXTERNAL = '203.0.113.9';
const BIG = randomBytes(8 * 1024 * 1024);
const SMALL = randomBytes(64 * 1024 + 1);
const PAUSE_AT_BYTES = 256 * 1024;

const rig = useOpsRig({ 'big.bin': BIG, 'small.bin': SMALL });
const { session } = rig;

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

function site(name: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: rig.upstream.host, port: rig.upstream.port },
    externalAddress: OLD_EXTERNAL,
    passivePorts: oldPassive,
    activePorts,
    ...overrides,
  };
}

/** The 227 names `address` and a port of `range`, in the gateway's own words. */
function expect227(line: string, address: string, range: Range): void {
  expect(line).toMatch(/^227 Entering Passive Mode \((\d+,){5}\d+\)\.?\r\n$/);
  const named = parse227(line);
  expect(named.address).toBe(address);
  expect(inRange(named.port, range)).toBe(true);
}

async function refused(port: number): Promise<boolean> {
  const socket = net.connect({ host: '127.0.0.1', port });
  try {
    await once(socket, 'connect');
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ECONNREFUSED';
  } finally {
    socket.destroy();
  }
}

describe('reload in process', () => {
  it('changes the passive range and external address for new sessions; live transfers finish byte-exact on the old settings', async () => {
    const g = (rig.gw = await startGatewayWith({ sites: [site('edge')] }));
    const port = g.portOf('edge');

    const downloader = await session(port);
    const liveDownload = await pacedDownload(downloader, 'big.bin', PAUSE_AT_BYTES);
    expect227(liveDownload.passive.line, OLD_EXTERNAL, oldPassive);
    await liveDownload.paused;
    const uploader = await session(port);
    const liveUpload = await pacedUpload(uploader, 'up.bin', BIG, BIG.length / 2);
    expect227(liveUpload.passive.line, OLD_EXTERNAL, oldPassive);
    expect(g.gateway.stats()).toMatchObject({ sessions: 2, pinholes: 2 });

    await g.gateway.reload(parseConfig({ log: { level: 'info' }, sites: [site('edge', { passivePorts: newPassive, externalAddress: NEW_EXTERNAL })] }));
    expect(g.lines.some((l) => l.msg === 'site changed' && l.site === 'edge')).toBe(true);
    expect(g.portOf('edge')).toBe(port); // the listener was taken over, not reopened

    // A new session: the new range and address, and a transfer through them.
    const fresh = await session(port);
    const freshPassive = await pasv(fresh);
    expect227(freshPassive.line, NEW_EXTERNAL, newPassive);
    const freshDownload = await download(fresh, 'small.bin');
    expect227(freshDownload.passive.line, NEW_EXTERNAL, newPassive);
    expect(freshDownload.reply.code).toBe(226);
    expect(sha(freshDownload.data)).toBe(sha(SMALL));

    // The live transfers, still on the old site's pinholes, complete byte-exact.
    const downloaded = await liveDownload.finish();
    expect(downloaded.reply.code).toBe(226);
    expect(downloaded.data.length).toBe(BIG.length);
    expect(sha(downloaded.data)).toBe(sha(BIG));
    expect((await liveUpload.finish()).code).toBe(226);
    expect(sha(readFileSync(join(rig.upstream.root, 'up.bin')))).toBe(sha(BIG));

    // The live sessions' next data connections keep the settings they started with.
    const again = await download(downloader, 'small.bin');
    expect227(again.passive.line, OLD_EXTERNAL, oldPassive);
    expect(sha(again.data)).toBe(sha(SMALL));
    expect227((await pasv(uploader)).line, OLD_EXTERNAL, oldPassive);
    expect227((await pasv(fresh)).line, NEW_EXTERNAL, newPassive);

    for (const c of [downloader, uploader, fresh]) await c.command('QUIT');
    await expect.poll(() => g.gateway.stats().sessions).toBe(0);
    await expect.poll(() => g.gateway.stats().sites.edge?.passiveFree).toBe(rangeSize(newPassive));
  });

  it('a reload that removes a site with a live session returns at once, and a site added with it listens', async () => {
    const g = (rig.gw = await startGatewayWith({ sites: [site('old')] }));
    const oldPort = g.portOf('old');
    const live = await session(oldPort);

    const reload = g.gateway.reload(parseConfig({ log: { level: 'info' }, sites: [site('new', { passivePorts: newPassive })] }));
    expect(await refused(oldPort)).toBe(true); // a removed site stops listening at once
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      reload.then(() => 'reloaded'),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve('still waiting for the removed site\'s live session to end'), 3_000);
      }),
    ]);
    clearTimeout(timer);
    expect(outcome).toBe('reloaded');
    expect(Object.keys(g.gateway.addresses())).toEqual(['new']);
    const fresh = await session(g.portOf('new'));
    expect227((await pasv(fresh)).line, OLD_EXTERNAL, newPassive);
    expect((await live.command('NOOP')).code).toBe(200); // the live session goes on
  });
});

describe('reload in process: listener changes under a live session', () => {
  it('moving a site to another port opens the new listener at once while a live session goes on', async () => {
    const g = (rig.gw = await startGatewayWith({ sites: [site('edge')] }));
    const oldPort = g.portOf('edge');
    const live = await session(oldPort);
    const newPort = await unusedPort();

    const reload = g.gateway.reload(parseConfig({ log: { level: 'info' }, sites: [site('edge', { listen: { host: '127.0.0.1', port: newPort } })] }));
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      reload.then(() => 'reloaded'),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve('still waiting for the old listener\'s live session to end'), 3_000);
      }),
    ]);
    clearTimeout(timer);
    expect(outcome).toBe('reloaded');
    expect(g.gateway.addresses().edge?.port).toBe(newPort);
    expect(await refused(oldPort)).toBe(true);
    const fresh = await session(newPort);
    expect((await fresh.command('NOOP')).code).toBe(200);
    expect((await live.command('NOOP')).code).toBe(200);
  });
});

/** A port free on 127.0.0.1 now: bound on port 0 by a throwaway listener, then closed. */
async function unusedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('SIGHUP through the CLI', () => {
  function document(sites: Record<string, unknown>[]): Record<string, unknown> {
    return { log: { level: 'info' }, shutdown: { drainTimeoutMs: 2_000 }, sites };
  }

  it('refuses an invalid file with an error line and keeps serving; a valid change then adds a listening site', async () => {
    rig.file = configFile(document([site('main')]));
    const cli: CliProcess = startCli(rig.file.path);
    await cli.waitForMsg('started');
    const mainPort = await sitePort(cli, 'main');
    const live = await session(mainPort);
    expect227((await pasv(live)).line, OLD_EXTERNAL, oldPassive);

    // Invalid: min above max. Refused, logged as an error, nothing changes.
    rig.file.write(document([site('main', { passivePorts: { min: oldPassive.max, max: oldPassive.min }, externalAddress: NEW_EXTERNAL })]));
    let mark = cli.lines.length;
    cli.signal('SIGHUP');
    const refusal = await cli.waitForMsg('reload refused: invalid configuration; the running one stays', { from: mark });
    expect(refusal.level).toBe(50);
    expect(String(refusal.problem)).toMatch(/sites\[0\]\.passivePorts/);
    expect(cli.lines.slice(mark).some((l) => l.msg === 'configuration reloaded' || l.msg === 'site changed')).toBe(false);
    const after = await session(mainPort);
    expect227((await pasv(after)).line, OLD_EXTERNAL, oldPassive);
    expect((await live.command('NOOP')).code).toBe(200);

    // Valid: main unchanged, a second site added.
    rig.file.write(document([site('main'), site('second', { passivePorts: secondPassive, activePorts: secondActive, externalAddress: NEW_EXTERNAL })]));
    mark = cli.lines.length;
    cli.signal('SIGHUP');
    await cli.waitForLine((l) => l.msg === 'site added' && l.site === 'second', { from: mark });
    const secondPort = await sitePort(cli, 'second', mark);
    await cli.waitForMsg('configuration reloaded', { from: mark });
    const second = await session(secondPort);
    const fetched = await download(second, 'small.bin');
    expect227(fetched.passive.line, NEW_EXTERNAL, secondPassive);
    expect(sha(fetched.data)).toBe(sha(SMALL));
    // The first site was left alone: same listener, same settings, live session intact.
    expect(cli.lines.slice(mark).some((l) => l.site === 'main' && (l.msg === 'site changed' || l.msg === 'listening'))).toBe(false);
    expect227((await pasv(live)).line, OLD_EXTERNAL, oldPassive);
    const third = await session(mainPort);
    expect227((await pasv(third)).line, OLD_EXTERNAL, oldPassive);

    for (const c of [live, after, second, third]) await c.command('QUIT');
    cli.signal('SIGTERM');
    expect((await cli.exited).code).toBe(0);
  });
});

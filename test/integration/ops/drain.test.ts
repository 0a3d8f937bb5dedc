/**
 * Graceful drain of the CLI (`node dist/cli.js --config FILE`) on SIGTERM:
 * an in-flight 8 MiB download finishes byte-exact, new connections are
 * refused at once, /readyz turns 503, and the process exits 0 when the
 * session is done; a second SIGTERM exits at once with 1; the drain is
 * bounded by shutdown.drainTimeoutMs (in process and through the CLI).
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { type CliExit, type CliProcess, configFile, metricsAddressOf, sitePort, startCli } from '../../support/cli.js';
import { startGatewayWith } from '../../support/gateway.js';
import { useOpsRig } from '../../support/opsRig.js';
import { httpGet } from '../../support/opsMetrics.js';
import { pacedDownload } from '../../support/opsTransfer.js';
import { portRanges } from '../../support/ports.js';

type Range = { min: number; max: number };
const [passivePorts, activePorts] = portRanges(2, 12) as [Range, Range];
const BIG = randomBytes(8 * 1024 * 1024);
const PAUSE_AT_BYTES = 256 * 1024;
const STOPPING = 'stopping: no new sessions, waiting for running ones';

const rig = useOpsRig({ 'big.bin': BIG });
const { session } = rig;

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

function site(): Record<string, unknown> {
  return {
    name: 'main',
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: rig.upstream.host, port: rig.upstream.port },
    passivePorts,
    activePorts,
  };
}

async function startGatewayCli(drainTimeoutMs: number): Promise<{ cli: CliProcess; port: number }> {
  rig.file = configFile({ log: { level: 'info' }, metrics: { listen: '127.0.0.1:0' }, shutdown: { drainTimeoutMs }, sites: [site()] });
  const cli = startCli(rig.file.path);
  await cli.waitForMsg('started'); // signal handlers are installed right after this line
  return { cli, port: await sitePort(cli, 'main') };
}

/** The connect error code, or 'connected'. */
async function connectOutcome(port: number): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port });
  try {
    await once(socket, 'connect');
    return 'connected';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'error';
  } finally {
    socket.destroy();
  }
}

/** The exit, or a rejection naming what was awaited after `ms`. */
function exitWithin(cli: CliProcess, ms: number, what: string): Promise<CliExit> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    cli.exited.finally(() => clearTimeout(timer)),
    new Promise<CliExit>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`ftp-alg did not exit within ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

describe('SIGTERM drain through the CLI', () => {
  it('lets an in-flight 8 MiB download finish byte-exact, refuses new connections, turns /readyz 503, then exits 0', async () => {
    const { cli, port } = await startGatewayCli(20_000);
    const metrics = await metricsAddressOf(cli);
    expect((await httpGet(metrics, '/readyz')).status).toBe(200);
    const c = await session(port);
    const transfer = await pacedDownload(c, 'big.bin', PAUSE_AT_BYTES);
    await transfer.paused;

    cli.signal('SIGTERM');
    await cli.waitForMsg(STOPPING);
    await vi.waitFor(async () => expect(await connectOutcome(port)).toBe('ECONNREFUSED'));
    const ready = await httpGet(metrics, '/readyz');
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body)).toMatchObject({ ready: false, state: 'draining' });

    const { data, reply } = await transfer.finish();
    expect(reply.code).toBe(226);
    expect(data.length).toBe(BIG.length);
    expect(sha(data)).toBe(sha(BIG));
    expect(await connectOutcome(port)).toBe('ECONNREFUSED');

    await c.command('QUIT');
    const began = performance.now();
    const exit = await exitWithin(cli, 5_000, 'after the last session quit');
    expect(exit.code).toBe(0);
    expect(performance.now() - began).toBeLessThan(5_000); // well before drainTimeoutMs (20 s)
    expect(cli.lines.some((l) => l.msg === 'transfer done' && l.downBytes === BIG.length)).toBe(true);
    expect(cli.lines.some((l) => l.msg === 'stopped')).toBe(true);
  });

  it('a second SIGTERM exits at once with code 1, cutting the transfer', async () => {
    const { cli, port } = await startGatewayCli(20_000);
    const c = await session(port);
    const transfer = await pacedDownload(c, 'big.bin', PAUSE_AT_BYTES);
    await transfer.paused;

    cli.signal('SIGTERM');
    await cli.waitForMsg(STOPPING);
    const began = performance.now();
    cli.signal('SIGTERM');
    const exit = await exitWithin(cli, 3_000, 'after the second SIGTERM');
    const ms = performance.now() - began;
    expect(exit.code).toBe(1);
    expect(ms).toBeLessThan(3_000);
    expect(cli.lines.some((l) => l.msg === 'second signal: exiting now')).toBe(true);
    console.log(`second SIGTERM to exit: ${ms.toFixed(0)} ms`);

    // The session was ended, not finished: 421 on the control connection, never the 226.
    const farewell = await c.reply();
    expect(farewell.code).toBe(421);
    await c.closed;
    const socket = transfer.socket;
    socket.resume();
    if (!socket.readableEnded && !socket.destroyed) {
      await new Promise<void>((resolve) => {
        socket.once('end', () => resolve());
        socket.once('close', () => resolve());
        socket.once('error', () => resolve());
      });
    }
    console.log(`data bytes that reached the client of ${BIG.length}: ${socket.bytesRead}`);
    expect(socket.bytesRead).toBeLessThan(BIG.length);
  });

  it('is bounded: a session still open at shutdown.drainTimeoutMs is closed and the process exits 0', async () => {
    const drainMs = 1_000;
    const { cli, port } = await startGatewayCli(drainMs);
    const idle = await session(port);

    cli.signal('SIGTERM');
    await cli.waitForMsg(STOPPING);
    const began = performance.now();
    const exit = await exitWithin(cli, drainMs + 4_000, `drainTimeoutMs is ${drainMs} and one idle session stayed open`);
    expect(exit.code).toBe(0);
    console.log(`drain of an idle session with drainTimeoutMs ${drainMs}: exited after ${(performance.now() - began).toFixed(0)} ms`);
    const farewell = await idle.reply();
    expect(farewell.code).toBe(421);
  });
});

describe('Gateway.close in process', () => {
  it('close(drainMs) ends a session that outlives the bound and resolves soon after it', async () => {
    const g = (rig.gw = await startGatewayWith({ sites: [site()] }, 'warn'));
    const idle = await session(g.portOf('main'));
    const drainMs = 300;
    const began = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      g.gateway.close(drainMs).then(() => 'closed'),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve('close() still pending: the drain bound was not applied'), drainMs + 3_000);
      }),
    ]);
    clearTimeout(timer);
    expect(outcome).toBe('closed');
    expect(performance.now() - began).toBeLessThan(drainMs + 3_000);
    expect((await idle.reply()).code).toBe(421);
    rig.gw = undefined;
  });
});

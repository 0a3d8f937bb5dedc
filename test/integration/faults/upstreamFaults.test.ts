/**
 * Faults on the upstream control connection: nothing listening, an
 * address that does not answer, a reset on accept, a refusing greeting,
 * a greeting cut off half way (a partial line, or a multi-line reply
 * never finished), a close mid-session. Each ends with 421 (or the
 * upstream's own refusal) and a close, and nothing is left behind.
 */
import net, { type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { counterTotal, startGateway, type TestGateway } from '../../support/gateway.js';
import { startFakeFtp } from '../../support/hostileUpstream.js';
import { usePerTestGateway } from '../../support/perTestGateway.js';
import { refusedPort } from '../../support/ports.js';
import { within } from '../../support/traps.js';

let server: Server | undefined;

afterEach(() => {
  // Registered before the rig's afterEach, so it runs after it: the raw upstream goes last.
  server?.close();
  server = undefined;
});

const rig = usePerTestGateway();

/** A raw upstream whose accepted sockets `onConnection` mistreats. */
async function rawUpstream(onConnection: (socket: Socket) => void): Promise<number> {
  server = net.createServer((s) => {
    s.on('error', () => undefined);
    onConnection(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

async function through(upstream: { host: string; port: number }, site: Record<string, unknown> = {}): Promise<ControlClient> {
  rig.gw = await startGateway({ upstream, ...rig.pools, ...site });
  const client = await ControlClient.connect(rig.gw.port);
  rig.track(client);
  return client;
}

/** What the client got before the close: every byte, as text. */
async function untilClosed(client: ControlClient): Promise<string> {
  await within(5_000, 'the client connection to close', client.closed);
  return client.received().toString('latin1');
}

describe('the upstream cannot be reached', () => {
  it('nothing listens: 421 and close, counted', async () => {
    const client = await through({ host: '127.0.0.1', port: await refusedPort() });
    expect(await untilClosed(client)).toMatch(/^421 [^\r\n]*\r\n$/);
    expect(await counterTotal((rig.gw as TestGateway).gateway, 'ftp_alg_upstream_connect_failures_total')).toBe(1);
  });

  it('an address that does not answer: 421 at upstreamConnectMs (or at once if unroutable)', async () => {
    const client = await through({ host: '192.0.2.1', port: 21 }, { timeouts: { upstreamConnectMs: 200 } });
    expect(await untilClosed(client)).toMatch(/^421 [^\r\n]*\r\n$/);
  });

  it('the upstream resets the connection on accept: 421 and close', async () => {
    const port = await rawUpstream((s) => s.resetAndDestroy());
    const client = await through({ host: '127.0.0.1', port });
    expect(await untilClosed(client)).toMatch(/^421 [^\r\n]*\r\n$/);
  });
});

describe('the greeting', () => {
  it('a refusing greeting (421) is passed on, then the close', async () => {
    rig.fake = await startFakeFtp({ greeting: '421 Too many users.\r\n' });
    const client = await through({ host: rig.fake.host, port: rig.fake.port });
    expect(await untilClosed(client)).toBe('421 Too many users.\r\n');
  });

  it('a 530 greeting is passed on, then the close', async () => {
    rig.fake = await startFakeFtp({ greeting: '530 Not allowed from your address.\r\n' });
    const client = await through({ host: rig.fake.host, port: rig.fake.port });
    expect(await untilClosed(client)).toBe('530 Not allowed from your address.\r\n');
  });

  it('the upstream closes without a word: 421 and close', async () => {
    const port = await rawUpstream((s) => s.end());
    const client = await through({ host: '127.0.0.1', port });
    expect(await untilClosed(client)).toMatch(/^421 [^\r\n]*\r\n$/);
  });

  it('the upstream closes in the middle of its greeting line: 421 and close, no partial line', async () => {
    const port = await rawUpstream((s) => s.end('220 Welc'));
    const client = await through({ host: '127.0.0.1', port });
    expect(await untilClosed(client)).toMatch(/^421 [^\r\n]*\r\n$/);
  });

  it('the upstream closes in the middle of a multi-line greeting: the client is told 421', async () => {
    const port = await rawUpstream((s) => s.end('220-Welcome\r\n220-to the server\r\n'));
    const client = await through({ host: '127.0.0.1', port });
    const got = await untilClosed(client);
    // A greeting is held until it is complete (another upstream may still be tried): the client sees only the 421,
    // never an open 220- reply.
    expect(got).toMatch(/^421 [^\r\n]*\r\n$/);
  });

  it('the upstream resets in the middle of its greeting: 421 and close', async () => {
    const port = await rawUpstream((s) => {
      s.write('220-Welcome\r\n');
      s.once('drain', () => undefined);
      setImmediate(() => s.resetAndDestroy());
    });
    const client = await through({ host: '127.0.0.1', port });
    expect(await untilClosed(client)).toMatch(/421 [^\r\n]*\r\n$/);
  });
});

describe('mid-session', () => {
  it('the upstream closes between commands: the session ends and the client is closed', async () => {
    rig.fake = await startFakeFtp();
    const client = await through({ host: rig.fake.host, port: rig.fake.port });
    expect((await client.reply()).code).toBe(220);
    await client.login();
    (await rig.fake.connection()).socket.end();
    await within(5_000, 'close', client.closed);
  });

  it('the upstream resets while a PASV is pending: 421 and close, no pinhole', async () => {
    rig.fake = await startFakeFtp();
    rig.fake.hooks.reply = (line, conn) => {
      if (line === 'PASV') conn.socket.resetAndDestroy();
      return undefined;
    };
    const client = await through({ host: rig.fake.host, port: rig.fake.port });
    expect((await client.reply()).code).toBe(220);
    await client.login();
    await client.write('PASV\r\n');
    expect(await untilClosed(client)).toMatch(/\r\n421 [^\r\n]*\r\n$/);
  });
});

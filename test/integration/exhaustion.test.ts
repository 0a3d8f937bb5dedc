/**
 * Running out of pinhole ports is not fatal (STYLE.md "Sockets, time and
 * failure"): the client gets 425, the session goes on, and the ports come
 * back when the sessions holding them end or their accept deadline passes.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../support/control.js';
import { connectClient, sha256 } from '../support/ftpClient.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../support/gateway.js';
import { inRange, portRanges } from '../support/ports.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';
import { parse227 } from '../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 2) as [{ min: number; max: number }, { min: number; max: number }];
const PAYLOAD = randomBytes(1024);
const MAX_SESSIONS_TRIED = 5;

let upstream: TestUpstream;
let gw: TestGateway | undefined;
const clients: ControlClient[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  writeFileSync(join(upstream.root, 'file.bin'), PAYLOAD);
});

afterAll(async () => {
  await upstream.close();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await gw?.close();
  gw = undefined;
});

async function session(port: number): Promise<ControlClient> {
  const client = await ControlClient.greeted(port);
  clients.push(client);
  await client.login();
  return client;
}

describe('passive port exhaustion', () => {
  it('answers 425 when the range is used up, keeps the session, and recovers when the holders end', async () => {
    gw = await startGateway({
      upstream: { host: upstream.host, port: upstream.port },
      passivePorts,
      activePorts,
      limits: { maxPinholesPerSession: 10 },
    });
    const holders: ControlClient[] = [];
    let refused: ControlClient | undefined;
    for (let i = 0; i < MAX_SESSIONS_TRIED && refused === undefined; i++) {
      const client = await session(gw.port);
      const reply = await client.command('PASV');
      if (reply.code === 425) {
        refused = client;
      } else {
        expect(reply.code).toBe(227);
        expect(inRange(parse227(reply.text).port, passivePorts)).toBe(true);
        holders.push(client);
      }
    }
    expect(holders).toHaveLength(2); // the range holds two ports
    expect(refused).toBeDefined();
    const stuck = refused as ControlClient;
    expect(gw.gateway.stats().sites[SITE]?.passiveFree).toBe(0);
    expect(await counterTotal(gw.gateway, 'ftp_alg_pinholes_refused_total')).toBe(1);

    // The refused session goes on.
    expect((await stuck.command('NOOP')).code).toBe(200);
    expect((await stuck.command('PWD')).code).toBe(257);

    // The holders leave; their ports come back.
    for (const h of holders) {
      expect((await h.command('QUIT')).code).toBe(221);
      await h.closed;
    }
    await vi.waitFor(() => {
      const stats = gw?.gateway.stats();
      expect(stats?.sites[SITE]?.passiveFree).toBe(2);
      expect(stats?.pinholes).toBe(0);
    });

    // The session that was refused can now open a data connection…
    const again = await stuck.command('PASV');
    expect(again.code).toBe(227);
    expect(inRange(parse227(again.text).port, passivePorts)).toBe(true);
    expect((await stuck.command('QUIT')).code).toBe(221);
    await vi.waitFor(() => expect(gw?.gateway.stats().sites[SITE]?.passiveFree).toBe(2));

    // …and a fresh client transfers.
    const c = await connectClient(gw.port, 'PASV');
    try {
      expect(sha256(await c.download('file.bin'))).toBe(sha256(PAYLOAD));
    } finally {
      c.close();
    }
    await vi.waitFor(() => expect(gw?.gateway.stats()).toMatchObject({ sessions: 0, pinholes: 0, sites: { [SITE]: { passiveFree: 2 } } }));
  });

  it('EPSV is refused with 425 too, and the session goes on', async () => {
    gw = await startGateway({
      upstream: { host: upstream.host, port: upstream.port },
      passivePorts,
      activePorts,
      limits: { maxPinholesPerSession: 10 },
    });
    const a = await session(gw.port);
    const b = await session(gw.port);
    const c = await session(gw.port);
    expect((await a.command('EPSV')).code).toBe(229);
    expect((await b.command('EPSV')).code).toBe(229);
    expect((await c.command('EPSV')).code).toBe(425);
    expect((await c.command('NOOP')).code).toBe(200);
  });

  it('a pinhole nobody connects to expires at its accept deadline and its port comes back', async () => {
    gw = await startGateway({
      upstream: { host: upstream.host, port: upstream.port },
      passivePorts,
      activePorts,
      timeouts: { pinholeAcceptMs: 150 },
    });
    const client = await session(gw.port);
    expect((await client.command('PASV')).code).toBe(227);
    expect((await client.command('PASV')).code).toBe(227);
    expect(gw.gateway.stats().pinholes).toBe(1);
    await vi.waitFor(() => {
      expect(gw?.gateway.stats().pinholes).toBe(0);
      expect(gw?.gateway.stats().sites[SITE]?.passiveFree).toBe(2);
    });
    expect(await counterTotal(gw.gateway, 'ftp_alg_pinholes_expired_total')).toBe(1);
    expect((await client.command('NOOP')).code).toBe(200);
  });
});

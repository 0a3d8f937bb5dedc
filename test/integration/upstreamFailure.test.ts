/**
 * When the upstream cannot serve, the client hears 421 (RFC 959: service
 * not available, closing control connection) and the connection closes;
 * nothing is left behind.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../support/control.js';
import { counterTotal, startGateway, type TestGateway } from '../support/gateway.js';
import { portRanges, refusedPort } from '../support/ports.js';
import { type ScriptedUpstream, startScriptedUpstream } from '../support/scripted.js';

const [passivePorts, activePorts] = portRanges(2, 5) as [{ min: number; max: number }, { min: number; max: number }];

let gw: TestGateway | undefined;
let scripted: ScriptedUpstream | undefined;
const clients: ControlClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await gw?.close();
  gw = undefined;
  await scripted?.close();
  scripted = undefined;
});

async function connect(port: number): Promise<ControlClient> {
  const client = await ControlClient.connect(port);
  clients.push(client);
  return client;
}

describe('upstream down', () => {
  it('answers 421 and closes when nothing listens on the upstream port', async () => {
    gw = await startGateway({ upstream: { host: '127.0.0.1', port: await refusedPort() }, passivePorts, activePorts });
    const client = await connect(gw.port);
    const reply = await client.reply();
    expect(reply.code).toBe(421);
    await client.closed;
    expect(client.received().toString('latin1')).toBe(reply.raw.toString('latin1')); // nothing else was sent
    expect(await counterTotal(gw.gateway, 'ftp_alg_upstream_connect_failures_total')).toBe(1);
    await vi.waitFor(() => expect(gw?.gateway.stats().sessions).toBe(0));
  });

  it('a session ended before the greeting lets go of its client socket: close() does not wait for it', async () => {
    gw = await startGateway({ upstream: { host: '127.0.0.1', port: await refusedPort() }, passivePorts, activePorts });
    const client = await connect(gw.port);
    expect((await client.reply()).code).toBe(421);
    await client.closed; // our FIN is sent at once (allowHalfOpen is off here)
    await vi.waitFor(() => expect(gw?.gateway.stats().sessions).toBe(0));
    const started = performance.now();
    await gw.close();
    gw = undefined;
    // The gateway has the client's FIN; the socket should be gone, not held for the 2 s close grace.
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('keeps answering 421 to every new client while the upstream stays down', async () => {
    gw = await startGateway({ upstream: { host: '127.0.0.1', port: await refusedPort() }, passivePorts, activePorts });
    for (let i = 0; i < 3; i++) {
      const client = await connect(gw.port);
      expect((await client.reply()).code).toBe(421);
      await client.closed;
    }
    await vi.waitFor(() => expect(gw?.gateway.stats().sessions).toBe(0));
  });

  it('commands sent before the 421 are not answered by anything else', async () => {
    gw = await startGateway({ upstream: { host: '127.0.0.1', port: await refusedPort() }, passivePorts, activePorts });
    const client = await connect(gw.port);
    await client.write('USER anonymous\r\nPASV\r\n');
    expect((await client.reply()).code).toBe(421);
    await client.closed;
    expect(gw.gateway.stats().pinholes).toBe(0);
  });
});

describe('upstream greeting', () => {
  it('answers 421 and closes both sides when the upstream never greets', async () => {
    scripted = await startScriptedUpstream({ greeting: null });
    gw = await startGateway({
      upstream: { host: scripted.host, port: scripted.port },
      passivePorts,
      activePorts,
      timeouts: { greetingMs: 150 },
    });
    const started = performance.now();
    const client = await connect(gw.port);
    const upstreamSide = await scripted.connection();
    await client.write('USER anonymous\r\n'); // held by the gateway until the greeting: never sent
    const reply = await client.reply();
    expect(reply.code).toBe(421);
    expect(performance.now() - started).toBeGreaterThanOrEqual(100);
    await client.closed;
    await upstreamSide.closed;
    expect(upstreamSide.received().length).toBe(0);
    await vi.waitFor(() => expect(gw?.gateway.stats().sessions).toBe(0));
  });

  it('passes a refusing greeting (421) on and closes', async () => {
    scripted = await startScriptedUpstream({ greeting: '421 Too many users, try later.\r\n' });
    gw = await startGateway({ upstream: { host: scripted.host, port: scripted.port }, passivePorts, activePorts });
    const client = await connect(gw.port);
    const reply = await client.reply();
    expect(reply.raw.toString('latin1')).toBe('421 Too many users, try later.\r\n');
    await client.closed;
  });

  it('passes a multi-line greeting on byte-exact, with 120 preliminaries before it', async () => {
    const greeting = '120 Service ready in 1 minute.\r\n220-Welcome\r\n220-  to the (10,0,0,1,4,1) server\r\n220 Ready.\r\n';
    scripted = await startScriptedUpstream({ greeting });
    gw = await startGateway({ upstream: { host: scripted.host, port: scripted.port }, passivePorts, activePorts });
    const client = await connect(gw.port);
    const bytes = await client.readBytes(greeting.length);
    expect(bytes.toString('latin1')).toBe(greeting);
    expect((await client.command('NOOP')).code).toBe(200);
  });
});

describe('upstream goes away mid-session', () => {
  it('the client connection closes and the session ends', async () => {
    scripted = await startScriptedUpstream();
    gw = await startGateway({ upstream: { host: scripted.host, port: scripted.port }, passivePorts, activePorts });
    const client = await connect(gw.port);
    expect((await client.reply()).code).toBe(220);
    const upstreamSide = await scripted.connection();
    expect((await client.command('NOOP')).code).toBe(200);
    upstreamSide.socket.destroy();
    await client.closed;
    await vi.waitFor(() => expect(gw?.gateway.stats().sessions).toBe(0));
  });
});

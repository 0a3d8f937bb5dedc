/**
 * upstream.warm: greeted upstream connections kept ahead of sessions. A
 * session's client hears a greeting the upstream sent before the client
 * came, and its commands go on that same connection; what the upstream
 * closes, refuses or says while a connection waits is never handed to a
 * session; aged connections are said goodbye to (QUIT) and replaced; none
 * is left after close.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { counterTotal, startGateway, type TestGateway } from '../../support/gateway.js';
import { portRanges } from '../../support/ports.js';
import { startScriptedUpstream, type ScriptedUpstream } from '../../support/scripted.js';

const [passivePorts, activePorts] = portRanges(2, 5) as [{ min: number; max: number }, { min: number; max: number }];

let gw: TestGateway | undefined;
let upstream: ScriptedUpstream | undefined;
const clients: ControlClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await gw?.close();
  gw = undefined;
  await upstream?.close();
  upstream = undefined;
});

/** An upstream whose greetings are numbered by connection: "220 greeting #k" (k from 0), or what `greet` says for k. */
async function numbered(greet?: (k: number) => string): Promise<ScriptedUpstream> {
  let k = 0;
  return startScriptedUpstream({
    greeting: () => {
      const n = k++;
      return greet?.(n) ?? `220 greeting #${n}\r\n`;
    },
  });
}

async function warmGateway(up: ScriptedUpstream, warm: number, extra: Record<string, unknown> = {}): Promise<TestGateway> {
  return startGateway({ upstream: { host: up.host, port: up.port, warm, ...extra }, passivePorts, activePorts });
}

async function connect(port: number): Promise<ControlClient> {
  const client = await ControlClient.connect(port);
  clients.push(client);
  return client;
}

/** Index of the upstream connection whose greeting is `text`. */
const greetingIndex = (text: string) => Number(/#(\d+)/.exec(text)?.[1] ?? -1);

describe('warm upstream connections', () => {
  it('are made and greeted before any client comes; a session takes one and its commands go on it', async () => {
    upstream = await numbered();
    gw = await warmGateway(upstream, 2);
    await vi.waitFor(() => expect(upstream?.connections.length).toBe(2)); // no client yet
    const client = await connect(gw.port);
    const greeting = await client.reply();
    expect(greeting.code).toBe(220);
    const k = greetingIndex(greeting.text);
    expect(k === 0 || k === 1).toBe(true);
    expect((await client.command('USER alice')).code).toBe(200);
    expect(upstream.connections[k]?.lines).toEqual(['USER alice']);
    // Refilled at once: a third connection, and the other warm one untouched.
    await vi.waitFor(() => expect(upstream?.connections.length).toBe(3));
    expect(upstream.connections[1 - k]?.lines).toEqual([]);
    expect(await counterTotal(gw.gateway, 'ftp_alg_upstream_warm_takes_total')).toBe(1);
    const scrape = await gw.gateway.metrics.registry.getSingleMetricAsString('ftp_alg_upstream_warm_connections');
    expect(scrape).toContain(`ftp_alg_upstream_warm_connections{site="test",upstream="${upstream.host}"} 2`);
  });

  it('a connection the upstream closes while it waits is replaced and never given to a session', async () => {
    upstream = await numbered();
    gw = await warmGateway(upstream, 1);
    const first = await upstream.connection();
    await vi.waitFor(() => expect(upstream?.connections.length).toBe(1));
    first.socket.end(); // the server's login timeout, say
    await vi.waitFor(() => expect(upstream?.connections.length).toBe(2));
    const client = await connect(gw.port);
    const greeting = await client.reply();
    expect(greetingIndex(greeting.text)).toBe(1);
    expect((await client.command('NOOP')).code).toBe(200);
  });

  it('a connection the upstream writes to while it waits (a 421) is replaced and never given to a session', async () => {
    upstream = await numbered();
    gw = await warmGateway(upstream, 1);
    const first = await upstream.connection();
    // Wait until the gateway has read the greeting (the warm gauge shows it ready), then speak unasked.
    const ready = async () => (await gw?.gateway.metrics.registry.getSingleMetricAsString('ftp_alg_upstream_warm_connections')) ?? '';
    await vi.waitFor(async () => expect(await ready()).toMatch(/ 1$/m));
    first.write('421 Timeout.\r\n');
    await vi.waitFor(() => expect(upstream?.connections.length).toBe(2));
    const client = await connect(gw.port);
    expect(greetingIndex((await client.reply()).text)).toBe(1);
    expect(client.received().toString('latin1')).not.toContain('421');
  });

  it('a member that does not greet with 220 gets no warm session: the client connects as without, and health counts nothing', async () => {
    upstream = await numbered((k) => (k < 2 ? '421 Too many users.\r\n' : `220 greeting #${k}\r\n`));
    gw = await warmGateway(upstream, 2);
    await vi.waitFor(() => expect(upstream?.connections.length).toBe(2));
    const client = await connect(gw.port);
    const greeting = await client.reply();
    expect(greeting.code).toBe(220);
    expect(greetingIndex(greeting.text)).toBeGreaterThanOrEqual(2);
    expect((await client.command('NOOP')).code).toBe(200);
    expect(await counterTotal(gw.gateway, 'ftp_alg_upstream_connect_failures_total')).toBe(0);
    const failures = await gw.gateway.metrics.registry.getSingleMetricAsString('ftp_alg_upstream_consecutive_failures');
    expect(failures).toMatch(/ 0$/m);
  });

  it('a connection no session took within warmMaxAgeMs is said goodbye to with QUIT and replaced', async () => {
    upstream = await numbered();
    gw = await warmGateway(upstream, 1, { warmMaxAgeMs: 200 });
    const first = await upstream.connection();
    await vi.waitFor(() => expect(first.lines).toEqual(['QUIT']), { timeout: 3_000 });
    await first.closed; // the gateway closes after the 221 (the scripted server answers 200 here)
    await vi.waitFor(() => expect(upstream?.connections.length).toBeGreaterThanOrEqual(2), { timeout: 3_000 });
  });

  it('close() ends every warm connection', async () => {
    upstream = await numbered();
    gw = await warmGateway(upstream, 3);
    await vi.waitFor(() => expect(upstream?.connections.length).toBe(3));
    await gw.close();
    gw = undefined;
    await Promise.all(upstream.connections.map((c) => c.closed));
    expect(upstream.connections.length).toBe(3);
  });
});

describe('warm upstream connections, backoff', () => {
  it('a member whose warm connections failed is filled again as soon as a session reaches it', async () => {
    // The first two connections are refused with 421: the next warm attempt waits 0.5-1 s, unless a session greets first.
    upstream = await numbered((k) => (k < 2 ? '421 Not yet.\r\n' : `220 greeting #${k}\r\n`));
    gw = await warmGateway(upstream, 2);
    await vi.waitFor(() => expect(upstream?.connections.length).toBe(2));
    const client = await connect(gw.port); // a miss: connection #2, greeted
    expect(greetingIndex((await client.reply()).text)).toBe(2);
    // Filled at once after that greeting, well before the backoff ends.
    await vi.waitFor(() => expect(upstream?.connections.length).toBe(5), { timeout: 300, interval: 10 }); // 2 refused, the session, 2 warm
  });
});

/**
 * Attack 7, resource exhaustion by time: connections that hold a session
 * without using it. An upstream that never greets is cut at greetingMs; a
 * client that sends nothing is cut at controlIdleMs (many at once, too).
 *
 * Slowloris (a byte at a time, never a whole line): an idle deadline kept
 * with Node's socket timeout restarts on every byte read and never fires.
 * Two defences are asked for here: the session cap per client address
 * (maxSessionsPerClient: one address cannot hold the site; the line cap
 * only bounds memory, not time), and a time bound per session: one that
 * completes no command line within controlIdleMs ends, whatever bytes
 * trickle in.
 */
import { describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { type TestGateway } from '../../support/gateway.js';
import { usePerTestGateway } from '../../support/perTestGateway.js';
import { CLIENT, OTHER_CLIENT, within } from '../../support/traps.js';

const IDLE_MS = 300;

const rig = usePerTestGateway();

async function start(site: Record<string, unknown>, greeting?: string | null): Promise<TestGateway> {
  return (await rig.start(site, {}, greeting)).gw;
}

async function connect(port: number, from = CLIENT): Promise<ControlClient> {
  const client = await ControlClient.connect(port, { localAddress: from });
  rig.track(client);
  return client;
}

/** Write one byte every `everyMs` until stopped (the attack's own pace, not a wait). */
function trickle(client: ControlClient, bytes: string, everyMs: number): void {
  let i = 0;
  const timer = setInterval(() => {
    if (client.socket.destroyed || !client.socket.writable) return clearInterval(timer);
    client.socket.write(bytes.charAt(i++ % bytes.length), 'latin1');
  }, everyMs);
  rig.track({ destroy: () => clearInterval(timer) });
}

describe('deadlines', () => {
  it('an upstream that never greets: 421 at greetingMs, both sides closed', async () => {
    const g = await start({ timeouts: { greetingMs: 200 } }, null);
    const started = performance.now();
    const client = await connect(g.port);
    const upstream = await rig.fake?.connection();
    expect((await within(3_000, '421', client.reply())).code).toBe(421);
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
    await within(3_000, 'client closed', client.closed);
    await within(3_000, 'upstream closed', upstream?.closed ?? Promise.resolve());
  });

  it('50 silent clients: each gets 421 at controlIdleMs and is closed', async () => {
    const g = await start({ timeouts: { controlIdleMs: IDLE_MS }, limits: { maxSessionsPerClient: 50 } });
    const silent = await Promise.all(Array.from({ length: 50 }, () => connect(g.port)));
    const started = performance.now();
    for (const c of silent) expect((await within(3_000, 'greeting', c.reply())).code).toBe(220);
    for (const c of silent) {
      const reply = await within(3_000, 'idle 421', c.reply());
      expect(reply.code).toBe(421);
      await within(3_000, 'closed', c.closed);
    }
    expect(performance.now() - started).toBeGreaterThanOrEqual(IDLE_MS - 50);
  });

  it('a command restarts the idle deadline', async () => {
    const g = await start({ timeouts: { controlIdleMs: IDLE_MS } });
    const client = await connect(g.port);
    expect((await client.reply()).code).toBe(220);
    const started = performance.now();
    // Three NOOPs, each sent when the previous is answered plus a third of the deadline.
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve) => setTimeout(resolve, IDLE_MS / 3)); // the client's own pace
      expect((await client.command('NOOP')).code).toBe(200);
    }
    expect(performance.now() - started).toBeGreaterThan(IDLE_MS);
    expect((await within(3_000, 'idle 421', client.reply())).code).toBe(421);
  });
});

describe('the login deadline (timeouts.loginMs, issue 13)', () => {
  it('a session that keeps sending commands but never logs in is cut at loginMs with 421', async () => {
    const g = await start({ timeouts: { loginMs: 400, controlIdleMs: 60_000 } });
    const client = await connect(g.port);
    expect((await client.reply()).code).toBe(220);
    const started = performance.now();
    for (let i = 0; i < 20 && !client.socket.destroyed; i++) {
      const reply = await within(3_000, 'a reply', client.command('NOOP'));
      if (reply.code === 421) break;
      await new Promise<void>((resolve) => setTimeout(resolve, 50)); // the client's own pace
    }
    expect(client.received().toString('latin1')).toMatch(/\r\n421 Login timeout/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(300);
    await within(3_000, 'closed', client.closed);
  });

  it('a logged-in session is not cut at loginMs', async () => {
    const g = await start({ timeouts: { loginMs: 300, controlIdleMs: 60_000 } });
    const client = await connect(g.port);
    expect((await client.reply()).code).toBe(220);
    await client.login();
    // A second session that never logs in, opened after the first logged in: its 421 proves the
    // first one's login deadline has passed too (an event to wait on, not a sleep).
    const witness = await connect(g.port);
    expect((await witness.reply()).code).toBe(220);
    expect((await within(3_000, 'the witness cut at loginMs', witness.reply())).code).toBe(421);
    expect((await client.command('NOOP')).code).toBe(200);
    expect(client.received().toString('latin1')).not.toMatch(/421/);
  });
});

describe('slowloris on the control channel', () => {
  it('one address holds at most maxSessionsPerClient sessions; another client is served meanwhile', async () => {
    const g = await start({ timeouts: { controlIdleMs: IDLE_MS }, limits: { maxSessionsPerClient: 3 } });
    const loris: ControlClient[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await connect(g.port);
      expect((await c.reply()).code).toBe(220);
      trickle(c, 'USER slow', 50);
      loris.push(c);
    }
    // Never logged in, no command complete: each newcomer past the cap evicted the oldest (issue 13).
    await within(3_000, 'the two oldest evicted', Promise.all(loris.slice(0, 2).map((c) => c.closed)));
    for (const c of loris.slice(0, 2)) expect(c.received().toString('latin1')).toMatch(/\r\n421 Too many connections/);
    expect(g.gateway.stats().sessions).toBe(3);
    const other = await connect(g.port, OTHER_CLIENT);
    expect((await other.reply()).code).toBe(220);
    expect((await other.command('NOOP')).code).toBe(200);
  });

  it('a client that trickles bytes but completes no line is cut at controlIdleMs', async () => {
    const g = await start({ timeouts: { controlIdleMs: IDLE_MS } });
    const client = await connect(g.port);
    expect((await client.reply()).code).toBe(220);
    const started = performance.now();
    trickle(client, 'USER nobody-ever-finishes-this-line ', 50);
    // Bound: ten times the deadline (with a per-byte idle timer this never ends).
    await within(10 * IDLE_MS, 'the slowloris session to end', client.closed).catch((err: Error) => {
      throw new Error(`${err.message}: still open after ${Math.round(performance.now() - started)} ms of 1 byte / 50 ms`);
    });
    expect(client.received().toString('latin1')).toMatch(/\r\n421 /);
    await vi.waitFor(() => expect(g.gateway.stats().sessions).toBe(0));
  });
});

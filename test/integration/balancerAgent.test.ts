/**
 * The balancer's health-check agent against real HTTP listeners on loopback
 * (port 0) standing in for instances' /readyz, with the nft step recorded
 * instead of run (test/e2e/instances.e2e.test.ts runs it with nft and real
 * instances): an instance that stops answering, answers 503 or times out
 * leaves the control map after FALL_CHECKS checks; it comes back after
 * RISE_CHECKS good checks; one odd check changes nothing; the map is written
 * only when it changes, and again after a failed write.
 */
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { controlMapUpdate } from '../../src/deploy/balancer.js';
import { BalancerAgent, FALL_CHECKS, REWRITE_EVERY_CHECKS, RISE_CHECKS } from '../../src/deploy/BalancerAgent.js';
import { createLogger } from '../../src/observe/logger.js';

const A = '192.0.2.21';
const B = '192.0.2.22';

/** A /readyz stand-in whose answer the test sets: a status, or no answer at all (hang). */
interface FakeInstance {
  url: string;
  answer: number | 'hang';
  server: Server;
}

const servers: Server[] = [];

async function fakeInstance(): Promise<FakeInstance> {
  const fake: FakeInstance = { url: '', answer: 200, server: http.createServer() };
  fake.server.on('request', (req, res) => {
    if (fake.answer === 'hang') return; // the agent's timeout ends it
    res.writeHead(req.url === '/readyz' ? fake.answer : 404).end();
  });
  await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
  fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}/readyz`;
  servers.push(fake.server);
  return fake;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

afterEach(async () => {
  await Promise.all(servers.splice(0).filter((s) => s.listening).map(closeServer));
});

interface Rig {
  agent: BalancerAgent;
  written: string[];
  logs: Record<string, unknown>[];
  failWrites: boolean;
}

function rig(urls: string[], intervalMs = 2_000): Rig {
  const r: Rig = { agent: undefined as unknown as BalancerAgent, written: [], logs: [], failWrites: false };
  const log = createLogger('info', { write: (line: string) => void r.logs.push(JSON.parse(line) as Record<string, unknown>) });
  r.agent = new BalancerAgent({
    instances: [A, B],
    urls,
    intervalMs,
    log,
    apply: async (script) => {
      if (r.failWrites) throw new Error('nft: No such file or directory');
      r.written.push(script);
    },
  });
  return r;
}

const logged = (r: Rig, msg: string) => r.logs.filter((l) => l.msg === msg);

describe('BalancerAgent', () => {
  it('writes the map with both instances up, then only when it changes', async () => {
    const [a, b] = [await fakeInstance(), await fakeInstance()];
    const r = rig([a.url, b.url]);
    await r.agent.check();
    await r.agent.check();
    expect(r.written).toEqual([controlMapUpdate([A, B])]);
  });

  it.each([
    ['stops listening (connection refused)', async (f: FakeInstance) => closeServer(f.server)],
    ['answers 503 (draining)', async (f: FakeInstance) => void (f.answer = 503)],
    ['does not answer within the interval', async (f: FakeInstance) => void (f.answer = 'hang')],
  ])(`an instance that %s leaves the control map after ${FALL_CHECKS} checks`, async (_name, fail) => {
    const [a, b] = [await fakeInstance(), await fakeInstance()];
    const r = rig([a.url, b.url], 500);
    await r.agent.check();
    await fail(b);
    for (let i = 1; i < FALL_CHECKS; i += 1) await r.agent.check();
    expect(r.written).toEqual([controlMapUpdate([A, B])]);
    await r.agent.check();
    expect(r.written).toEqual([controlMapUpdate([A, B]), controlMapUpdate([A, A])]);
    expect(logged(r, 'instance down')).toEqual([expect.objectContaining({ instance: B, level: 40 })]);
  });

  it('one failed check between good ones changes nothing', async () => {
    const [a, b] = [await fakeInstance(), await fakeInstance()];
    const r = rig([a.url, b.url]);
    await r.agent.check();
    b.answer = 503;
    await r.agent.check();
    b.answer = 200;
    await r.agent.check();
    b.answer = 503;
    await r.agent.check();
    expect(r.written).toEqual([controlMapUpdate([A, B])]);
    expect(logged(r, 'instance down')).toEqual([]);
  });

  it(`a recovered instance returns after ${RISE_CHECKS} good checks in a row, not one`, async () => {
    const [a, b] = [await fakeInstance(), await fakeInstance()];
    const r = rig([a.url, b.url]);
    b.answer = 503;
    await r.agent.check();
    expect(r.written).toEqual([controlMapUpdate([A, A])]);
    b.answer = 200;
    await r.agent.check();
    b.answer = 503; // flapping: the count starts again
    await r.agent.check();
    b.answer = 200;
    for (let i = 1; i < RISE_CHECKS; i += 1) await r.agent.check();
    expect(r.written).toEqual([controlMapUpdate([A, A])]);
    await r.agent.check();
    expect(r.written).toEqual([controlMapUpdate([A, A]), controlMapUpdate([A, B])]);
    expect(logged(r, 'instance up').map((l) => l.instance)).toEqual([A, B]);
  });

  it('with no instance up, every slot goes to its owner, and says so', async () => {
    const [a, b] = [await fakeInstance(), await fakeInstance()];
    a.answer = 500;
    b.answer = 503;
    const r = rig([a.url, b.url]);
    await r.agent.check();
    expect(r.written).toEqual([controlMapUpdate([A, B])]);
    expect(logged(r, 'no instance is up: every control slot goes to its owner')).toHaveLength(1);
  });

  it(`an unchanged map is written again every ${REWRITE_EVERY_CHECKS} checks (a ruleset reloaded under the agent is corrected), without a log line`, async () => {
    const [a, b] = [await fakeInstance(), await fakeInstance()];
    const r = rig([a.url, b.url]);
    b.answer = 503;
    for (let i = 0; i < REWRITE_EVERY_CHECKS; i += 1) await r.agent.check();
    expect(r.written).toEqual([controlMapUpdate([A, A])]);
    await r.agent.check();
    expect(r.written).toEqual([controlMapUpdate([A, A]), controlMapUpdate([A, A])]);
    expect(logged(r, 'control map updated')).toHaveLength(1);
  });

  it('a failed write is logged (once) and tried again at every check', async () => {
    const [a, b] = [await fakeInstance(), await fakeInstance()];
    const r = rig([a.url, b.url]);
    r.failWrites = true;
    for (let i = 0; i < 3; i += 1) await r.agent.check();
    expect(r.written).toEqual([]);
    expect(logged(r, 'control map not updated (is the balancer ruleset loaded?); trying again next check')).toHaveLength(1); // once, not every check
    r.failWrites = false;
    await r.agent.check();
    expect(r.written).toEqual([controlMapUpdate([A, B])]);
  });

  it('start() checks at once and on every interval; stop() ends the loop', async () => {
    const [a, b] = [await fakeInstance(), await fakeInstance()];
    const r = rig([a.url, b.url]);
    let rounds = 0;
    const written = new Promise<void>((resolve) => {
      const probe = (url: string, timeoutMs: number) => {
        rounds += 1;
        if (rounds === 6) resolve();
        return fetch(url, { signal: AbortSignal.timeout(timeoutMs) }).then(
          (res) => (res.ok ? { ok: true as const } : { ok: false as const, reason: String(res.status) }),
          (err: Error) => ({ ok: false as const, reason: err.message }),
        );
      };
      r.agent = new BalancerAgent({ instances: [A, B], urls: [a.url, b.url], intervalMs: 150, log: createLogger('silent'), probe, apply: async (s) => void r.written.push(s) });
    });
    r.agent.start();
    await written; // three rounds of two probes
    await r.agent.stop();
    const after = rounds;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(rounds).toBe(after);
    expect(r.written).toEqual([controlMapUpdate([A, B])]);
  });
});

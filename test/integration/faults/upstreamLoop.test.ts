/**
 * An upstream that leads back to the gateway itself (a typo, a host name
 * that resolves to the edge): each session would open another one through
 * the gateway, a storm stopped only by the caps (session 20's CI failure
 * was this, by accident: a released port taken by the gateway under test).
 * The gateway knows its own outgoing control connections and refuses one
 * that arrives at a listener: 421 to the session that made it, whose client
 * is told 421 in turn, a log line at error, a metric; warm connections too.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { counterTotal, type TestGateway, startGatewayWith } from '../../support/gateway.js';
import { freePortOnAll, portRanges } from '../../support/ports.js';
import { within } from '../../support/traps.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
let gw: TestGateway | undefined;
const clients: ControlClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await gw?.close();
  gw = undefined;
});

/** A gateway whose one site's upstream is its own listener. */
async function looped(upstream: Record<string, unknown> = {}): Promise<TestGateway> {
  const port = await freePortOnAll(['127.0.0.1']);
  const site = { name: 'loop', listen: { host: '127.0.0.1', port }, upstream: { host: '127.0.0.1', port, ...upstream }, passivePorts, activePorts };
  gw = await startGatewayWith({ sites: [site] });
  return gw;
}

async function refusals(g: TestGateway, reason: string): Promise<number> {
  const metric = g.gateway.metrics.registry.getSingleMetric('ftp_alg_sessions_refused_total');
  const { values } = (await metric?.get()) ?? { values: [] };
  return values.filter((v) => v.labels.reason === reason).reduce((n, v) => n + v.value, 0);
}

describe('an upstream that is the gateway itself', () => {
  it('the looped connection is refused: the client hears 421 and is closed, one session, logged and counted', async () => {
    const g = await looped();
    const client = await ControlClient.connect(g.port);
    clients.push(client);
    await within(5_000, 'the client connection to close', client.closed);
    expect(client.received().toString('latin1')).toMatch(/^421 [^\r\n]*\r\n$/);
    expect(await refusals(g, 'upstream-loop')).toBe(1);
    expect(await counterTotal(g.gateway, 'ftp_alg_sessions_total')).toBe(1);
    expect(g.lines.filter((l) => l.level === 50 && String(l.msg).includes('loop'))).toHaveLength(1);
    await vi.waitFor(() => expect(g.gateway.stats().sessions).toBe(0), { timeout: 5_000 });
  });

  it('warm connections to itself are refused too, and never become sessions', async () => {
    const g = await looped({ warm: 1 });
    await vi.waitFor(async () => expect(await refusals(g, 'upstream-loop')).toBeGreaterThanOrEqual(1), { timeout: 5_000 });
    expect(await counterTotal(g.gateway, 'ftp_alg_sessions_total')).toBe(0);
    expect(g.gateway.stats().sessions).toBe(0);
  });
});

/**
 * Regression tests for issue 11's defects 2 and 3, over real sockets:
 * replies reach the client in the order of its commands on every error
 * path, a multi-line reply longer than the collect cap stays whole and in
 * order, and client input queued while the upstream delays a 227 is
 * bounded. Each failed against the gateway before the sans-IO core.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { portRanges } from '../../support/ports.js';
import { type ScriptedUpstream, startScriptedUpstream } from '../../support/scripted.js';

type Range = { min: number; max: number };
const [passivePorts, activePorts] = portRanges(2, 10) as [Range, Range];
const pools = { passivePorts, activePorts };

let gw: TestGateway | undefined;
let upstream: ScriptedUpstream | undefined;
const clients: ControlClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.socket.destroy();
  if (gw !== undefined) await expectNoLeaks(gw.gateway, pools);
  await gw?.close();
  await upstream?.close();
  gw = undefined;
  upstream = undefined;
});

async function client(): Promise<ControlClient> {
  const c = await ControlClient.greeted((gw as TestGateway).port);
  clients.push(c);
  return c;
}

/** Reads `n` replies and returns their codes. */
async function codes(c: ControlClient, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await c.reply()).code);
  return out;
}

describe('replies stay in the order of the commands (issue 11, defect 2)', () => {
  it('NOOP then PORT refused by the per-client pinhole budget: 200 before 425', async () => {
    upstream = await startScriptedUpstream({ respond: (line) => (line.startsWith('PASV') ? '227 Entering Passive Mode (127,0,0,1,200,10).\r\n' : '200 OK\r\n') });
    gw = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, ...pools, limits: { maxPinholesPerClient: 1 } });
    const first = await client();
    expect((await first.command('PASV')).code).toBe(227); // holds the client's one pinhole
    const second = await client();
    await second.write('NOOP\r\nPORT 127,0,0,1,200,20\r\n');
    expect(await codes(second, 2)).toEqual([200, 425]);
  });

  it('PASV, NOOP and a line too long pipelined behind a slow 227: 227, 200, 500', async () => {
    upstream = await startScriptedUpstream({
      respond: (line, conn) => {
        if (!line.startsWith('PASV')) return '200 OK\r\n';
        setTimeout(() => conn.write('227 Entering Passive Mode (127,0,0,1,200,10).\r\n'), 100);
        return undefined;
      },
    });
    gw = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, ...pools, limits: { maxLineBytes: 512 } });
    const c = await client();
    await c.write(`PASV\r\nNOOP\r\n${'X'.repeat(600)}\r\n`);
    expect(await codes(c, 2)).toEqual([227, 200]);
    expect((await c.reply()).text).toBe('500 Command line too long.');
  });

  it('a FEAT reply longer than the collect cap reaches the client whole: header first, End last, nothing in between out of turn', async () => {
    const feat = ['211-Features:', ...Array.from({ length: 300 }, (_, i) => ` X-FEATURE-${i}`), '211 End'].join('\r\n');
    upstream = await startScriptedUpstream({ respond: (line) => (line === 'FEAT' ? `${feat}\r\n` : '200 OK\r\n') });
    gw = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, ...pools });
    const c = await client();
    const { lines } = await c.command('FEAT');
    expect(lines[0]).toBe('211-Features:');
    expect(lines.at(-1)).toBe('211 End');
    expect(lines.filter((l) => l.startsWith('211'))).toHaveLength(2);
    expect((await c.command('NOOP')).code).toBe(200); // and the session goes on
  });
});

describe('client input is bounded while a data command waits (issue 11, defect 3)', () => {
  it('an upstream that never answers PASV, a client that pipelines hundreds of commands: 421 and close, not a growing queue', async () => {
    upstream = await startScriptedUpstream({ respond: (line) => (line.startsWith('PASV') ? undefined : '200 OK\r\n') });
    gw = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, ...pools });
    const c = await client();
    await c.write(`PASV\r\n${'NOOP\r\n'.repeat(500)}`);
    const reply = await c.reply();
    expect(reply.code).toBe(421);
    await c.closed;
    const conn = await upstream.connection();
    expect(conn.lines.filter((l) => l === 'NOOP')).toHaveLength(0);
  });
});

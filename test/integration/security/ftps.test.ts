/**
 * Attack 8, FTPS: the gateway must never pass AUTH through blind (it would
 * then see nothing of the session and break every transfer). By default
 * ("refuse") AUTH TLS/SSL get 534, so clients that allow it fall back to
 * cleartext, and the session goes on; "deny" answers 534 and closes. The
 * upstream never sees an AUTH line either way, and the refusal is
 * counted.
 */
import { describe, expect, it } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { counterTotal, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp } from '../../support/hostileUpstream.js';
import { usePerTestGateway } from '../../support/perTestGateway.js';
import { within } from '../../support/traps.js';

const rig = usePerTestGateway();

function start(ftps?: 'refuse' | 'deny'): Promise<{ gw: TestGateway; fake: FakeFtp }> {
  return rig.start(ftps === undefined ? {} : { ftps });
}

async function session(port: number): Promise<ControlClient> {
  const client = await ControlClient.connect(port);
  rig.track(client);
  expect((await client.reply()).code).toBe(220);
  return client;
}

const sawAuth = (f: FakeFtp) => f.connections.some((c) => /AUTH|TLS|SSL/i.test(c.received().toString('latin1')));
const refusals = (g: TestGateway) => counterTotal(g.gateway, 'ftp_alg_commands_refused_total');

describe('ftps: "refuse" (the default)', () => {
  it.each(['AUTH TLS', 'AUTH SSL', 'auth tls', 'Auth Tls-C', 'AUTH', '\xff\xf4\xff\xf2AUTH TLS'])('%j: 534, the session goes on in cleartext', async (line) => {
    const { gw, fake } = await start();
    const client = await session(gw.port);
    const reply = await client.command(line);
    expect(reply.code).toBe(534);
    expect((await client.command('NOOP')).code).toBe(200);
    await client.login();
    expect(sawAuth(fake)).toBe(false);
    expect(await refusals(gw)).toBe(1);
    const text = await gw.gateway.metrics.registry.getSingleMetricAsString('ftp_alg_commands_refused_total');
    expect(text).toContain('verb="AUTH"');
  });

  it('pipelined around slow replies, the 534 keeps its place among them', async () => {
    const { gw, fake } = await start();
    // The upstream holds its answer to the first NOOP until the second one arrives (after the AUTH).
    let held = false;
    fake.hooks.reply = (line) => {
      if (line !== 'NOOP') return undefined;
      if (!held) {
        held = true;
        return '';
      }
      return '200 first\r\n200 second\r\n';
    };
    const client = await session(gw.port);
    await client.write('NOOP\r\nAUTH TLS\r\nNOOP\r\n');
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await within(3_000, 'reply', client.reply())).text);
    expect(codes[0]).toBe('200 first');
    expect(codes[1]).toMatch(/^534 /);
    expect(codes[2]).toBe('200 second');
    expect(sawAuth(fake)).toBe(false);
  });
});

describe('ftps: "deny"', () => {
  it.each(['AUTH TLS', 'AUTH SSL'])('%s: 534, then the session is closed', async (line) => {
    const { gw, fake } = await start('deny');
    const client = await session(gw.port);
    await client.login();
    const reply = await client.command(line);
    expect(reply.code).toBe(534);
    await within(3_000, 'close', client.closed);
    expect(sawAuth(fake)).toBe(false);
    expect(await refusals(gw)).toBe(1);
  });
});

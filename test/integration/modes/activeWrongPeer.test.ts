/**
 * An active pinhole (the port the gateway names in the PORT/EPRT it sends
 * upstream) accepts one connection, only from the upstream's address
 * (STYLE.md; OpenBSD pf "max 1"). The upstream is scripted so that the test
 * reads the announced port from the line it received and plays both the
 * stranger (127.0.0.2) and the upstream (127.0.0.1) itself.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { inRange, portRanges, rangeSize } from '../../support/ports.js';
import { type ScriptedConnection, type ScriptedUpstream, startScriptedUpstream } from '../../support/scripted.js';
import { type DataListener, dial, listenForData, probe } from './dataPeers.js';
import { scriptedFtp } from './scriptedFtp.js';
import { eprtArg, parseActiveLine, portArg } from '../../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
const STRANGER = '127.0.0.2';
const PAYLOAD = Buffer.from('the file the upstream sends\r\n');

let gw: TestGateway | undefined;
let scripted: ScriptedUpstream | undefined;
let own: DataListener | undefined;
const clients: ControlClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await own?.close();
  await gw?.close();
  gw = undefined;
  await scripted?.close();
});

/** Log in, send the client's PORT/EPRT, and return the port the upstream was told. */
async function announced(verb: 'PORT' | 'EPRT'): Promise<{ client: ControlClient; upstream: ScriptedConnection; port: number }> {
  scripted = await startScriptedUpstream({ respond: scriptedFtp().respond });
  gw = await startGateway({ upstream: { host: scripted.host, port: scripted.port }, passivePorts, activePorts });
  own = await listenForData('127.0.0.1');
  const client = await ControlClient.greeted(gw.port);
  clients.push(client);
  await client.login();
  const arg = verb === 'PORT' ? portArg('127.0.0.1', own.port) : eprtArg('127.0.0.1', own.port);
  expect((await client.command(`${verb} ${arg}`)).code).toBe(200);
  const upstream = await scripted.connection();
  const line = upstream.lines.find((l) => /^(PORT|EPRT) /.test(l));
  if (line === undefined) throw new Error(`upstream got no PORT/EPRT: ${upstream.lines.join(' | ')}`);
  const target = parseActiveLine(line);
  expect(target.verb).toBe(verb);
  expect(target.address).toBe('127.0.0.1'); // the upstream connection's local address (privateAddress auto)
  expect(inRange(target.port, activePorts)).toBe(true);
  return { client, upstream, port: target.port };
}

describe.each(['PORT', 'EPRT'] as const)('an active pinhole opened by %s', (verb) => {
  it('refuses a connection from another address; nothing reaches the client; the upstream then gets through', async () => {
    const { port } = await announced(verb);
    const gateway = (gw as TestGateway).gateway;
    const before = await counterTotal(gateway, 'ftp_alg_pinholes_wrong_peer_total');

    const stranger = await dial('127.0.0.1', port, { localAddress: STRANGER, send: Buffer.from('forged upload\r\n') });
    expect(stranger.connected).toBe(true);
    expect(stranger.received.length).toBe(0);
    expect(await counterTotal(gateway, 'ftp_alg_pinholes_wrong_peer_total')).toBe(before + 1);
    const text = await gateway.metrics.registry.getSingleMetricAsString('ftp_alg_pinholes_wrong_peer_total');
    expect(text).toMatch(new RegExp(`ftp_alg_pinholes_wrong_peer_total\\{site="${SITE}",dir="active"\\} 1`));
    expect(gateway.stats().pinholes).toBe(1); // still waiting for the upstream
    expect(own?.connections).toEqual([]); // the gateway did not connect on to the client

    // The upstream, from its own address, is relayed to the client.
    const upstreamData = await dial('127.0.0.1', port, { localAddress: '127.0.0.1', send: PAYLOAD });
    const conn = await (own as DataListener).next();
    expect((await conn.received).toString()).toBe(PAYLOAD.toString());
    expect(conn.peer).toBe('127.0.0.1');
    expect(upstreamData.connected).toBe(true);
    expect(own?.connections).toHaveLength(1);
    await vi.waitFor(() => expect(gateway.stats().sites[SITE]?.activeFree).toBe(rangeSize(activePorts)));
  });

  it('accepts only one connection: once the upstream is in, the port listens no more', async () => {
    const { port } = await announced(verb);
    const first = dial('127.0.0.1', port, { localAddress: '127.0.0.1', send: PAYLOAD });
    const conn = await (own as DataListener).next();
    expect(await probe('127.0.0.1', port)).toBe('refused');
    expect((await conn.received).toString()).toBe(PAYLOAD.toString());
    expect((await first).connected).toBe(true);
  });

  it('strangers, however many, do not use up the pinhole', async () => {
    const { port } = await announced(verb);
    for (let i = 0; i < 3; i++) {
      const stranger = await dial('127.0.0.1', port, { localAddress: STRANGER });
      expect(stranger.received.length).toBe(0);
    }
    expect(own?.connections).toEqual([]);
    await dial('127.0.0.1', port, { localAddress: '127.0.0.1', send: PAYLOAD });
    expect((await (await (own as DataListener).next()).received).toString()).toBe(PAYLOAD.toString());
    await vi.waitFor(() => expect((gw as TestGateway).gateway.stats().pinholes).toBe(0));
  });
});

/**
 * An upstream that answers EPSV with a 227 (or PASV with a 229) would hand
 * the client the upstream's own address if the reply passed through: the
 * client gets 425 instead, and nothing is opened.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { PortRange } from '../../../src/config/types.js';
import { ControlClient } from '../../support/control.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { startScriptedUpstream, type ScriptedUpstream } from '../../support/scripted.js';

let gw: TestGateway | undefined;
let up: ScriptedUpstream | undefined;

afterEach(async () => {
  await gw?.close();
  await up?.close();
  gw = undefined;
  up = undefined;
});

describe('a success of the wrong kind to a data command', () => {
  it.each([
    ['EPSV', '227 Entering Passive Mode (192,0,2,77,195,80).\r\n'],
    ['PASV', '229 Entering Extended Passive Mode (|||50000|)\r\n'],
  ])('%s answered with %j: 425, nothing opened, no upstream address shown', async (verb, answer) => {
    up = await startScriptedUpstream({ respond: (line) => (line.toUpperCase().startsWith(verb) ? answer : '200 OK\r\n') });
    const [passive, active] = portRanges(2, 4) as [PortRange, PortRange];
    gw = await startGateway({ upstream: { host: up.host, port: up.port }, passivePorts: passive, activePorts: active });
    const client = await ControlClient.connect(gw.port);
    expect((await client.reply()).code).toBe(220);
    const reply = await client.command(verb);
    expect(reply.code).toBe(425);
    expect(reply.text).not.toContain('192,0,2,77');
    expect(gw.gateway.stats().pinholes).toBe(0);
    expect(gw.gateway.stats().sites.test?.passiveFree).toBe(rangeSize(passive));
    client.destroy();
  });
});

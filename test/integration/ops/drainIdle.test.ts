/**
 * Drain ends sessions at their first idle moment: an idle session gets a
 * 421 at once, a session with a transfer running keeps it to the end and
 * is closed right after.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ControlClient, readDataConnection } from '../../support/control.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { portRanges } from '../../support/ports.js';
import type { PortRange } from '../../../src/config/types.js';
import { startUpstream, type TestUpstream } from '../../support/upstream.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse227 } from '../../support/hostPort.js';

let gw: TestGateway | undefined;
let up: TestUpstream | undefined;

afterEach(async () => {
  await gw?.close();
  await up?.close();
  gw = undefined;
  up = undefined;
});

describe('drain closes sessions when they are idle', () => {
  it('an idle session gets 421 as the drain starts; a transferring one finishes its transfer first', async () => {
    up = await startUpstream();
    const body = Buffer.alloc(2 * 1024 * 1024, 7);
    writeFileSync(join(up.root, 'f.bin'), body);
    const [passive, active] = portRanges(2, 8) as [PortRange, PortRange];
    gw = await startGateway({ upstream: { host: up.host, port: up.port }, passivePorts: passive, activePorts: active });

    const idle = await ControlClient.connect(gw.port);
    expect((await idle.reply()).code).toBe(220);
    await idle.login();

    const busy = await ControlClient.connect(gw.port);
    expect((await busy.reply()).code).toBe(220);
    await busy.login();
    await busy.command('TYPE I');
    const { port } = parse227((await busy.command('PASV')).text);
    const data = readDataConnection(port);
    await busy.write('RETR f.bin\r\n');
    expect((await busy.reply()).code).toBe(150);

    const closing = gw.gateway.close(20_000);
    expect((await idle.reply()).code).toBe(421);
    await idle.closed;

    expect((await data).equals(body)).toBe(true);
    expect((await busy.reply()).code).toBe(226);
    expect((await busy.reply()).code).toBe(421);
    await busy.closed;
    await closing;
    gw = undefined;
  });
});

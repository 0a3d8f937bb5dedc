/**
 * The transfer log (issue 6): one structured line per data transfer with
 * site, session, client, upstream, direction, command, bytes, duration and
 * rate; one line per session with its totals; PASS never in clear.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { PortRange } from '../../../src/config/types.js';
import { ControlClient } from '../../support/control.js';
import { connectClient } from '../../support/ftpClient.js';
import { startGatewayWith, type TestGateway } from '../../support/gateway.js';
import { portRanges } from '../../support/ports.js';
import { startUpstream, type TestUpstream } from '../../support/upstream.js';

let gw: TestGateway | undefined;
let up: TestUpstream | undefined;

afterEach(async () => {
  await gw?.close();
  await up?.close();
  gw = undefined;
  up = undefined;
});

type Line = Record<string, unknown>;

describe('transfer log', () => {
  it('one line per transfer and one per session, with every field; PASS masked', async () => {
    up = await startUpstream();
    const body = randomBytes(300_000);
    writeFileSync(join(up.root, 'f.bin'), body);
    const [passive, active] = portRanges(2, 8) as [PortRange, PortRange];
    gw = await startGatewayWith(
      { sites: [{ name: 'logged', listen: { host: '127.0.0.1', port: 0 }, upstream: { host: up.host, port: up.port }, passivePorts: passive, activePorts: active }] },
      'debug',
    );
    const { lines } = gw;
    const client = await connectClient(gw.port, 'EPSV');
    expect((await client.download('f.bin')).equals(body)).toBe(true);
    await client.upload(body.subarray(0, 1000), 'u.bin');
    client.close();

    await vi.waitFor(() => expect(lines.some((l) => l.msg === 'session end')).toBe(true));
    const transfers = lines.filter((l) => l.msg === 'transfer done');
    expect(transfers).toHaveLength(2);
    const [down, upl] = transfers as [Line, Line];
    for (const t of transfers) {
      expect(t).toMatchObject({ site: 'logged', client: '127.0.0.1', upstream: '127.0.0.1', dir: 'passive', reason: 'done' });
      expect(typeof t.sid).toBe('string');
      expect(typeof t.port).toBe('number'); // the pinhole's own bindings (a child logger made at the end, not at PASV)
      expect(typeof t.ms).toBe('number');
      expect(typeof t.bytesPerSec).toBe('number');
    }
    expect(down).toMatchObject({ command: 'RETR', flow: 'download', downBytes: body.length, upBytes: 0 });
    expect(upl).toMatchObject({ command: 'STOR', flow: 'upload', upBytes: 1000, downBytes: 0 });
    // At debug the pinhole's open and its transfer carry the same {port, dir}.
    const opened = lines.filter((l) => l.msg === 'pinhole open');
    expect(opened.map((l) => [l.port, l.dir])).toEqual(transfers.map((t) => [t.port, t.dir]));
    const end = lines.find((l) => l.msg === 'session end') as Line;
    expect(end).toMatchObject({ site: 'logged', transfers: 2, downBytes: body.length, upBytes: 1000 });
    // debug shows every control line, with the password masked at the source
    const control = await ControlClient.connect(gw.port);
    expect((await control.reply()).code).toBe(220);
    await control.write('USER someone\r\nPASS s3cret-w0rd\r\n');
    await control.reply();
    await vi.waitFor(() => expect(lines.filter((l) => l.msg === 'client line').map((l) => l.line)).toContain('PASS ***'));
    expect(JSON.stringify(lines)).not.toContain('s3cret-w0rd');
    control.destroy();
  });
});

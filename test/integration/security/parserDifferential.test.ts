/**
 * The gateway and the upstream must agree on which command a line is.
 * A line whose verb the gateway cannot read (not letters only) is
 * forwarded byte-exact as an unknown command today; but real servers read
 * some of those lines as a verb the gateway intercepts:
 *
 * - ftp-srv (our own test upstream) removes every `"` before parsing:
 *   `"PORT" h,p` and `P"ORT h,p` are PORT to it;
 * - ProFTPD splits words at any white space and reads `"…"` as one word
 *   (pr_str_get_word): `PORT<TAB>h,p`, `PORT<VT>h,p` and `"AUTH" TLS`
 *   are PORT and AUTH to it.
 *
 * So the bounce check (attack 1) and the FTPS policy (attack 8) can be
 * walked around. These tests ask that such a line never reaches the
 * upstream: the gateway either refuses it (500) or reads it the way the
 * lenient server does and applies its checks.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient, loggedInClient } from '../../support/control.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { portRanges } from '../../support/ports.js';
import { CLIENT, type Listener, listenPrivileged, within } from '../../support/traps.js';
import { startUpstream, type TestUpstream } from '../../support/upstream.js';
import { portArg } from '../../support/hostPort.js';

type Range = { min: number; max: number };
const [passivePorts, activePorts, srvPassive, srvActive] = portRanges(4, 10) as [Range, Range, Range, Range];
const SECRET = randomBytes(4096);

let fake: FakeFtp;
let gw: TestGateway;
const clients: ControlClient[] = [];

beforeAll(async () => {
  fake = await startFakeFtp();
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, passivePorts, activePorts });
});

afterAll(async () => {
  await gw.close();
  await fake.close();
});

afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
});

const session = (port: number) => loggedInClient(port, clients);

describe('a verb the gateway cannot read never reaches the upstream', () => {
  const rows: [string, string][] = [
    ['"PORT" (ftp-srv strips quotes; ProFTPD reads a quoted word)', '"PORT" 127,0,0,2,4,1'],
    ['P"ORT (ftp-srv strips quotes)', 'P"ORT 127,0,0,2,4,1'],
    ['PORT<TAB> (ProFTPD splits at any white space)', 'PORT\t127,0,0,2,4,1'],
    ['PORT<VT> (ProFTPD: isspace)', 'PORT\x0b127,0,0,2,4,1'],
    ['"EPRT"', '"EPRT" |1|127.0.0.2|1025|'],
    ['"AUTH" TLS', '"AUTH" TLS'],
    ['AUTH<TAB>TLS', 'AUTH\tTLS'],
    ['"PASV" (the upstream would answer with its own address, unrewritten)', '"PASV"'],
  ];

  it.each(rows)('%s', async (_name, line) => {
    const client = await session(gw.port);
    const upstream = fake.connections.at(-1);
    const reply = await within(3_000, 'reply', client.command(line));
    expect(reply.code).toBeGreaterThanOrEqual(500);
    expect(upstream?.received().toString('latin1')).not.toContain(line);
  });
});

describe('with ftp-srv as the upstream', () => {
  let srv: TestUpstream;
  let srvGateway: TestGateway;
  let trap: Listener;

  beforeAll(async () => {
    srv = await startUpstream();
    writeFileSync(join(srv.root, 'secret.bin'), SECRET);
    srvGateway = await startGateway({ upstream: { host: srv.host, port: srv.port }, passivePorts: srvPassive, activePorts: srvActive });
    trap = await listenPrivileged(CLIENT);
  });

  afterAll(async () => {
    await srvGateway.close();
    await srv.close();
    await trap.close();
  });

  it('"PORT" to a privileged port of the gateway host does not get the upstream to connect there', async () => {
    const client = await session(srvGateway.port);
    const port = portArg('127.0.0.1', trap.port);
    expect((await client.command(`PORT ${port}`)).code).toBe(504); // the plain form is refused
    const quoted = await client.command(`"PORT" ${port}`);
    await client.write('RETR secret.bin\r\n');
    const retr = await within(10_000, 'RETR reply', client.reply());
    if (retr.code === 150) await within(10_000, 'RETR end', client.reply());
    expect(trap.peers).toEqual([]); // ftp-srv connected to the gateway host's port below 1024
    expect(trap.received().length).toBe(0);
    expect(quoted.code).toBeGreaterThanOrEqual(500);
    client.destroy();
    await expectNoLeaks(srvGateway.gateway, { passivePorts: srvPassive, activePorts: srvActive });
  });
});

/**
 * Routing by USER and by HOST (issue 12, item 3) on a pool of two scripted
 * upstreams (127.0.0.2 and 127.0.0.3, one port): the gateway greets the
 * client itself, picks the member from what the client names, replays the
 * login there, and the client sees one conversation.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { portRanges } from '../../support/ports.js';
import { type ScriptedUpstream, startScriptedUpstream } from '../../support/scripted.js';

type Range = { min: number; max: number };
const [passivePorts, activePorts] = portRanges(2, 10) as [Range, Range];

let gw: TestGateway | undefined;
const members: ScriptedUpstream[] = [];
const clients: ControlClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await gw?.close();
  gw = undefined;
  for (const m of members.splice(0)) await m.close();
});

/** Two members that greet with their own address and accept anyone. */
async function pool(): Promise<[ScriptedUpstream, ScriptedUpstream]> {
  const respond = (line: string) => (line.startsWith('USER') ? '331 Password please\r\n' : line.startsWith('PASS') ? '230 In\r\n' : '200 OK\r\n');
  const a = await startScriptedUpstream({ host: '127.0.0.2', greeting: '220 member-a\r\n', respond });
  const b = await startScriptedUpstream({ host: '127.0.0.3', port: a.port, greeting: '220 member-b\r\n', respond });
  members.push(a, b);
  return [a, b];
}

async function session(port: number): Promise<ControlClient> {
  const c = await ControlClient.connect(port);
  clients.push(c);
  return c;
}

/** Which member saw `USER <user>`. */
function landedOn(user: string): string[] {
  return members.filter((m) => m.connections.some((c) => c.lines.includes(`USER ${user}`))).map((m) => m.host);
}

describe('routing by USER', () => {
  it('the gateway greets first; each user always lands on the same member; the login is replayed there', async () => {
    const [a] = await pool();
    gw = await startGateway({ upstream: { host: '', hosts: ['127.0.0.2', '127.0.0.3'], port: a.port }, passivePorts, activePorts, routing: { by: 'user' } });
    for (const user of ['alice', 'bob', 'carol', 'dave']) {
      for (let i = 0; i < 3; i++) {
        const c = await session(gw.port);
        expect((await c.reply()).text).toBe('220 ftp-alg ready.');
        expect((await c.command(`USER ${user}`)).code).toBe(331);
        expect((await c.command('PASS x')).code).toBe(230);
        expect((await c.command('NOOP')).code).toBe(200);
        c.destroy();
      }
      expect(landedOn(user)).toHaveLength(1);
    }
    expect(new Set(['alice', 'bob', 'carol', 'dave'].flatMap(landedOn)).size).toBeGreaterThan(0);
  });

  it('an explicit user map wins over hashing', async () => {
    const [a] = await pool();
    gw = await startGateway({
      upstream: { host: '', hosts: ['127.0.0.2', '127.0.0.3'], port: a.port },
      passivePorts,
      activePorts,
      routing: { by: 'user', users: [{ user: 'erin', upstream: '127.0.0.3' }, { user: 'frank', upstream: '127.0.0.2' }] },
    });
    for (const user of ['erin', 'frank']) {
      const c = await session(gw.port);
      await c.reply();
      expect((await c.command(`USER ${user}`)).code).toBe(331);
    }
    expect(landedOn('erin')).toEqual(['127.0.0.3']);
    expect(landedOn('frank')).toEqual(['127.0.0.2']);
  });

  it('commands before USER are answered by the gateway and reach no upstream', async () => {
    const [a, b] = await pool();
    gw = await startGateway({ upstream: { host: '', hosts: ['127.0.0.2', '127.0.0.3'], port: a.port }, passivePorts, activePorts, routing: { by: 'user' } });
    const c = await session(gw.port);
    await c.reply();
    expect((await c.command('SYST')).code).toBe(215);
    expect((await c.command('LIST')).code).toBe(530);
    expect((await c.command('PASS early')).code).toBe(503);
    expect(a.connections.length + b.connections.length).toBe(0);
  });
});

describe('routing by HOST (RFC 7151)', () => {
  it('HOST picks the member; a name not configured gets 504 and the client may try again', async () => {
    const [a] = await pool();
    gw = await startGateway({
      upstream: { host: '', hosts: ['127.0.0.2', '127.0.0.3'], port: a.port },
      passivePorts,
      activePorts,
      routing: { by: 'host', hosts: [{ name: 'ftp.b.example', upstream: '127.0.0.3' }] },
    });
    const c = await session(gw.port);
    await c.reply();
    expect((await c.command('HOST ftp.unknown.example')).code).toBe(504);
    expect((await c.command('HOST ftp.b.example')).code).toBe(220);
    expect((await c.command('USER gina')).code).toBe(331);
    expect(landedOn('gina')).toEqual(['127.0.0.3']);
  });
});

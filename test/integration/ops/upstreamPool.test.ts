/**
 * A site whose upstream is a pool of three ftp-srv servers, one on each of
 * 127.0.0.1, 127.0.0.2 and 127.0.0.3 (all local on Linux), sharing one
 * control port as the pool's members do. Sessions spread over the three; a
 * dead member costs no client a 421 (its attempts are retried on another
 * member) and is ejected after `consecutiveFailures`, or found down by idle
 * probes before any session pays; and every data connection of a session
 * reaches the upstream its control connection chose (each server's own
 * login and transfer events say so, and each serves different bytes).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Client } from 'basic-ftp';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { downloadToBuffer, sha256 } from '../../support/ftpClient.js';
import { type CapturedLine, counterTotal, startGatewayWith, type TestGateway } from '../../support/gateway.js';
import { freePortOnAll, portRanges } from '../../support/ports.js';
import { type TestUpstream, startUpstream } from '../../support/upstream.js';

const SITE = 'pool';
const HOSTS = ['127.0.0.1', '127.0.0.2', '127.0.0.3'] as const;
type Host = (typeof HOSTS)[number];
const [passivePorts, activePorts, ...upstreamPasv] = portRanges(5, 16) as { min: number; max: number }[];

let port = 0;
const upstreams = new Map<Host, TestUpstream>();
const blobs = new Map<Host, Buffer>();
let gw: TestGateway | undefined;
const closers: (() => void)[] = [];

async function startMember(host: Host, index: number): Promise<TestUpstream> {
  const server = await startUpstream({ host, port, pasv: upstreamPasv[index] as { min: number; max: number } });
  server.writeFile('who.txt', host);
  server.writeFile('blob.bin', blobs.get(host) as Buffer);
  upstreams.set(host, server);
  return server;
}

beforeEach(async () => {
  port = await freePortOnAll(HOSTS);
  for (const [i, host] of HOSTS.entries()) {
    blobs.set(host, randomBytes(128 * 1024 + i));
    await startMember(host, i);
  }
});

afterEach(async () => {
  for (const close of closers.splice(0)) close();
  await gw?.close();
  gw = undefined;
  await Promise.all([...upstreams.values()].map((u) => u.close()));
  upstreams.clear();
});

async function startPool(health: Record<string, unknown> = {}): Promise<TestGateway> {
  gw = await startGatewayWith({
    sites: [
      {
        name: SITE,
        listen: { host: '127.0.0.1', port: 0 },
        upstream: { hosts: [...HOSTS], port, health },
        passivePorts,
        activePorts,
        limits: { maxSessionsPerClient: 50 },
      },
    ],
  });
  return gw;
}

/** The "upstream health changed" line that took `host` to `to`, if logged. */
function healthChange(lines: readonly CapturedLine[], host: Host, to: string): CapturedLine | undefined {
  return lines.find((l) => l.msg === 'upstream health changed' && l.upstream === host && l.to === to);
}

function member(host: Host): TestUpstream {
  return upstreams.get(host) as TestUpstream;
}

/** Which member saw the login made as `user`. */
function loggedInAt(user: string): Host[] {
  return HOSTS.filter((h) => upstreams.get(h)?.logins.some((l) => l.user === user) === true);
}

function loginsPerMember(): Record<Host, number> {
  return Object.fromEntries(HOSTS.map((h) => [h, upstreams.get(h)?.logins.length ?? 0])) as Record<Host, number>;
}

/** basic-ftp through the gateway, logging in with a user name that names the session. */
async function ftpClient(user: string): Promise<Client> {
  const client = new Client(10_000);
  closers.push(() => client.close());
  await client.access({ host: '127.0.0.1', port: gw?.portOf(SITE), user, password: 'ops' });
  return client;
}

/** A raw control connection: the greeting's code (220 through, 421 refused). */
async function greetingCode(): Promise<{ code: number; client: ControlClient }> {
  const c = await ControlClient.connect(gw?.portOf(SITE) ?? 0);
  closers.push(() => c.destroy());
  return { code: (await c.reply()).code, client: c };
}

describe('upstream pool', () => {
  it('spreads sessions over the three members, and every data connection of a session reaches its member', async () => {
    await startPool();
    const sessions = 6;
    const clients: Client[] = [];
    for (let i = 0; i < sessions; i++) clients.push(await ftpClient(`session-${i}`)); // held open: least-sessions spreads them
    expect(loginsPerMember()).toEqual({ '127.0.0.1': 2, '127.0.0.2': 2, '127.0.0.3': 2 });

    await Promise.all(
      clients.map(async (client, i) => {
        const who = (await downloadToBuffer(client, 'who.txt')).toString();
        const blob = await downloadToBuffer(client, 'blob.bin');
        await client.uploadFrom(Readable.from([Buffer.from(`from session ${i}`)]), `session-${i}.txt`);
        await client.list();
        const [home, ...others] = loggedInAt(`session-${i}`);
        expect(others).toEqual([]);
        expect(who).toBe(home);
        expect(sha256(blob)).toBe(sha256(blobs.get(home as Host) as Buffer));
        for (const h of HOSTS) expect(existsSync(join(member(h).root, `session-${i}.txt`))).toBe(h === home);
        const login = member(home as Host).logins.find((l) => l.user === `session-${i}`);
        expect(login?.transfers.map((t) => t.split(' ')[0])).toEqual(['RETR', 'RETR', 'STOR']);
      }),
    );
    // Each member served exactly the transfers of its own sessions.
    for (const h of HOSTS) {
      const transfers = member(h).logins.flatMap((l) => l.transfers);
      expect(transfers).toHaveLength(2 * 3);
      expect(transfers.every((t) => t.startsWith(`RETR ${member(h).root}`) || t.startsWith(`STOR ${member(h).root}`))).toBe(true);
    }
  });

  it('a dead member costs no client a 421: each attempt on it is retried on another, and it is ejected after 3 failures', async () => {
    const g = await startPool(); // defaults: no probes at all, the sessions' failures must take it out
    await member('127.0.0.2').close();
    const codes: number[] = [];
    for (let i = 0; i < 7; i++) {
      const { code, client } = await greetingCode();
      codes.push(code);
      if (code === 220) await client.login(); // held open
    }
    expect(codes).toEqual([220, 220, 220, 220, 220, 220, 220]);
    const logins = loginsPerMember();
    expect(logins['127.0.0.2']).toBe(0);
    expect(logins['127.0.0.1'] + logins['127.0.0.3']).toBe(7);
    // Least sessions sends every new session to the empty dead member first, until it is ejected.
    expect(await counterTotal(g.gateway, 'ftp_alg_upstream_connect_failures_total')).toBe(3);
    expect(await counterTotal(g.gateway, 'ftp_alg_upstream_ejections_total')).toBe(1);
    expect(healthChange(g.lines, '127.0.0.2', 'ejected')).toMatchObject({ from: 'up', reason: 'connect-refused', consecutiveFailures: 3, retryInMs: 10_000 });
    expect(g.lines.filter((l) => l.msg === 'upstream health changed')).toHaveLength(1);
  });

  it('skips a member idle probes find down, and takes it back when it returns', async () => {
    const g = await startPool({ idleProbeMs: 100, baseEjectionMs: 100, maxEjectionMs: 400 });
    await member('127.0.0.2').close();
    await vi.waitFor(() => expect(healthChange(g.lines, '127.0.0.2', 'ejected')).toBeDefined(), { timeout: 5_000 });
    for (let i = 0; i < 4; i++) {
      const { code, client } = await greetingCode();
      expect(code).toBe(220); // no session pays for the dead member
      await client.login();
    }
    expect(loginsPerMember()).toEqual({ '127.0.0.1': 2, '127.0.0.2': 0, '127.0.0.3': 2 });
    expect(await counterTotal(g.gateway, 'ftp_alg_upstream_connect_failures_total')).toBe(0);

    await startMember('127.0.0.2', 1);
    await vi.waitFor(() => expect(healthChange(g.lines, '127.0.0.2', 'up')).toMatchObject({ from: 'ejected', reason: 'probe-ok' }), { timeout: 5_000 });
    const { code, client } = await greetingCode();
    expect(code).toBe(220);
    await client.login();
    expect(member('127.0.0.2').logins).toHaveLength(1); // fewest sessions: the member that came back
  });
});

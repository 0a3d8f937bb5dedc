/**
 * Active mode through the gateway to a real FTP server (ftp-srv): the
 * client sends PORT or EPRT naming its own listener, the gateway announces
 * an active pinhole upstream, the upstream connects in, and the gateway
 * connects on to the client (DESIGN.md, "Rewrites"). Downloads, uploads and
 * listings must arrive byte-exact, from the gateway's client-side address,
 * and leave no pinhole or port behind. basic-ftp cannot do active mode, so
 * the control lines are raw and the data listener is the test's own; curl
 * (`-P`) is the real client.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { sha256 } from '../../support/ftpClient.js';
import { SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import { FILES, NAMES } from '../../support/transferFiles.js';
import { putFiles, startUpstream, type TestUpstream } from '../../support/upstream.js';
import { eprtArg, portArg } from '../../support/hostPort.js';
import { listen, type Listener } from '../../support/traps.js';

type Range = { min: number; max: number };
/** Pools of the main site, and of the sourcePort20 site. */
const [passivePorts, activePorts, passive20, active20] = portRanges(4, 20) as [Range, Range, Range, Range];
const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

type ActiveVerb = 'PORT' | 'EPRT';
const VERBS: readonly ActiveVerb[] = ['PORT', 'EPRT'];

let upstream: TestUpstream;
let gw: TestGateway;
const open: { close(): unknown }[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  putFiles(upstream, FILES);
  gw = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, passivePorts, activePorts });
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
});

afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
  // Every transfer leaves nothing behind: no pinhole, every port back in its pool.
  await vi.waitFor(() => {
    expect(gw.gateway.stats().pinholes).toBe(0);
    expect(gw.gateway.stats().sites[SITE]).toMatchObject({ activeFree: rangeSize(activePorts), passiveFree: rangeSize(passivePorts) });
  });
});

async function loggedIn(): Promise<ControlClient> {
  const client = await ControlClient.greeted(gw.port);
  open.push({ close: () => client.destroy() });
  await client.login();
  expect((await client.command('TYPE I')).code).toBe(200);
  return client;
}

async function listener(send?: Buffer): Promise<Listener> {
  const l = await listen('127.0.0.1', 0, { payload: send });
  open.push(l);
  return l;
}

function announce(verb: ActiveVerb, l: Listener): string {
  return verb === 'PORT' ? `PORT ${portArg(l.host, l.port)}` : `EPRT ${eprtArg(l.host, l.port)}`;
}

describe.each(VERBS)('active mode with %s, raw control lines', (verb) => {
  it.each(NAMES)('downloads %s byte-exact; the data connection comes from the gateway', async (name) => {
    const client = await loggedIn();
    const l = await listener();
    const reply = await client.command(announce(verb, l));
    expect(reply.code).toBe(200);
    await client.write(`RETR ${name}\r\n`);
    expect((await client.reply()).code).toBe(150);
    const conn = await l.next();
    const got = await conn.received;
    expect(got.length).toBe(FILES[name].length);
    expect(sha256(got)).toBe(sha256(FILES[name]));
    expect(conn.peer).toBe('127.0.0.1');
    expect((await client.reply()).code).toBe(226);
    expect(l.connections).toHaveLength(1);
  });

  it.each(NAMES)('uploads %s byte-exact (the FIN ends the upload)', async (name) => {
    const client = await loggedIn();
    const l = await listener(FILES[name]);
    expect((await client.command(announce(verb, l))).code).toBe(200);
    const target = `up-${verb}-${name}`;
    await client.write(`STOR ${target}\r\n`);
    expect((await client.reply()).code).toBe(150);
    expect((await client.reply()).code).toBe(226);
    const stored = readFileSync(join(upstream.root, target));
    expect(stored.length).toBe(FILES[name].length);
    expect(sha256(stored)).toBe(sha256(FILES[name]));
  });

  it('lists the folder', async () => {
    const client = await loggedIn();
    const l = await listener();
    expect((await client.command(announce(verb, l))).code).toBe(200);
    await client.write('LIST\r\n');
    expect((await client.reply()).code).toBe(150);
    const listing = (await (await l.next()).received).toString('utf8');
    for (const name of NAMES) expect(listing).toContain(name);
    expect((await client.reply()).code).toBe(226);
  });

  it('runs several transfers in one session, each through a fresh active pinhole', async () => {
    const client = await loggedIn();
    for (const name of NAMES) {
      const l = await listener();
      expect((await client.command(announce(verb, l))).code).toBe(200);
      await client.write(`RETR ${name}\r\n`);
      expect((await client.reply()).code).toBe(150);
      expect(sha256(await (await l.next()).received)).toBe(sha256(FILES[name]));
      expect((await client.reply()).code).toBe(226);
    }
  });
});

describe('a pinhole of the active range is what the upstream is told', () => {
  it('while PORT waits for its transfer, one active port is held and no passive one', async () => {
    const client = await loggedIn();
    const l = await listener();
    expect((await client.command(`PORT ${portArg(l.host, l.port)}`)).code).toBe(200);
    expect(gw.gateway.stats().pinholes).toBe(1);
    expect(gw.gateway.stats().sites[SITE]).toMatchObject({ activeFree: rangeSize(activePorts) - 1, passiveFree: rangeSize(passivePorts) });
    await client.write('RETR one-kib.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await (await l.next()).received)).toBe(sha256(FILES['one-kib.bin']));
    expect((await client.reply()).code).toBe(226);
  });
});

// ---- curl, a real client, in active mode -------------------------------------

const CURL = ['/usr/bin/curl', '/usr/local/bin/curl'].find((p) => existsSync(p));
if (CURL === undefined && !IN_CI) console.warn('[modes/active] skipping the curl cases: curl is not installed');

interface CurlRun {
  code: number;
  stderr: string;
  /** Control lines curl sent, from its -v trace. */
  sent: string[];
}

function curl(args: string[]): Promise<CurlRun> {
  return new Promise((resolve) => {
    execFile(CURL ?? 'curl', ['-sS', '-v', '--max-time', '20', ...args], (err, _stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      const sent = stderr
        .split('\n')
        .filter((l) => l.startsWith('> '))
        .map((l) => l.slice(2).trim());
      resolve({ code, stderr, sent });
    });
  });
}

describe.skipIf(CURL === undefined && !IN_CI)('curl -P 127.0.0.1 through the gateway', () => {
  let work = '';
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'ftp-alg-curl-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const verbFlags: Record<ActiveVerb, string[]> = { PORT: ['-P', '127.0.0.1', '--disable-eprt'], EPRT: ['-P', '127.0.0.1'] };

  it.each(VERBS)('%s: downloads 8 MiB byte-exact', async (verb) => {
    const out = join(work, `down-${verb}.bin`);
    const r = await curl([...verbFlags[verb], '-o', out, `ftp://127.0.0.1:${gw.port}/eight-mib.bin`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.sent.filter((l) => /^(PORT|EPRT|PASV|EPSV)/.test(l)).map((l) => l.split(' ')[0])).toEqual([verb]);
    expect(sha256(readFileSync(out))).toBe(sha256(FILES['eight-mib.bin']));
  });

  it.each(VERBS)('%s: uploads 8 MiB byte-exact', async (verb) => {
    const src = join(work, 'eight-mib.bin');
    writeFileSync(src, FILES['eight-mib.bin']);
    const r = await curl([...verbFlags[verb], '-T', src, `ftp://127.0.0.1:${gw.port}/curl-up-${verb}.bin`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.sent.filter((l) => /^(PORT|EPRT|PASV|EPSV)/.test(l)).map((l) => l.split(' ')[0])).toEqual([verb]);
    expect(sha256(readFileSync(join(upstream.root, `curl-up-${verb}.bin`)))).toBe(sha256(FILES['eight-mib.bin']));
  });
});

// ---- activeMode.sourcePort20 ------------------------------------------------

const ROOT = process.getuid?.() === 0;
if (!ROOT && !IN_CI) console.warn('[modes/active] skipping sourcePort20: binding port 20 needs root (or CAP_NET_BIND_SERVICE)');

describe.skipIf(!ROOT && !IN_CI)('activeMode.sourcePort20', () => {
  let site: TestGateway;

  beforeAll(async () => {
    site = await startGateway({
      upstream: { host: upstream.host, port: upstream.port },
      passivePorts: passive20,
      activePorts: active20,
      activeMode: { sourcePort20: true },
    });
  });

  afterAll(async () => {
    await site.close();
  });

  it('the data connection to the client comes from port 20 (RFC 959 L-1)', async () => {
    const client = await ControlClient.greeted(site.port);
    open.push({ close: () => client.destroy() });
    await client.login();
    await client.command('TYPE I');
    const l = await listener();
    expect((await client.command(`PORT ${portArg(l.host, l.port)}`)).code).toBe(200);
    await client.write('RETR one-kib.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    const conn = await l.next();
    expect(sha256(await conn.received)).toBe(sha256(FILES['one-kib.bin']));
    expect(conn.peer).toBe('127.0.0.1');
    expect(conn.peerPort).toBe(20);
    expect((await client.reply()).code).toBe(226);
  });
});

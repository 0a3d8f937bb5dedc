/**
 * Translation for upstreams that lack the RFC 2428 commands (issue 3 item
 * 3): an upstream that answers EPSV or EPRT with 500, 502 or 522 is asked
 * again with PASV or PORT, transparently: the client still gets the 229 or
 * 200 it asked for, its next command is served, and the gateway remembers
 * for the rest of the session. FEAT stays truthful to what the client can
 * use through the gateway: EPSV and EPRT are offered (translated), TLS is
 * not (it is not relayed).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ControlClient, readDataConnection } from '../../support/control.js';
import { sha256 } from '../../support/ftpClient.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { inRange, portRanges } from '../../support/ports.js';
import { dataCommands, type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { eprtArg, parse229, parseActiveLine } from '../../support/hostPort.js';
import { startUpstream, type TestUpstream } from '../../support/upstream.js';
import { listen, type Listener } from '../../support/traps.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
const PAYLOAD = Buffer.from('payload through a translated data connection\r\n');
const REFUSALS = [500, 502, 522] as const;

let gw: TestGateway | undefined;
const cleanup: { close(): unknown }[] = [];

afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c.close();
  await gw?.close();
  gw = undefined;
});

/** What the upstream refuses (by verb, with a code) and lists in FEAT. */
interface Upstream {
  readonly refuse?: Partial<Record<'EPSV' | 'EPRT' | 'PASV', number>>;
  readonly feat?: readonly string[];
}

/** A fake upstream serving `file.bin`, set up as `upstream` says, a gateway in front, a logged-in client. */
async function through(upstream: Upstream, site: Record<string, unknown> = {}): Promise<{ client: ControlClient; fake: FakeFtp }> {
  const fake = await startFakeFtp();
  cleanup.push(fake);
  fake.files.set('file.bin', PAYLOAD);
  fake.hooks.refuse = { ...upstream.refuse };
  fake.hooks.feat = upstream.feat ?? ['AUTH TLS', 'PBSZ', 'PROT', 'SIZE', 'MDTM', 'UTF8'];
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, passivePorts, activePorts, ...site });
  const client = await ControlClient.greeted(gw.port);
  cleanup.push({ close: () => client.destroy() });
  await client.login();
  return { client, fake };
}

describe.each(REFUSALS)('an upstream that answers EPSV with %i', (code) => {
  it('is asked PASV instead; the client gets a 229 that carries the data', async () => {
    const { client, fake } = await through({ refuse: { EPSV: code } });
    const reply = await client.command('EPSV');
    expect(reply.code).toBe(229);
    expect(reply.raw.toString('latin1')).toMatch(/^229 Entering Extended Passive Mode \(\|\|\|\d+\|\)\r\n$/);
    const port = parse229(reply.text);
    expect(inRange(port, passivePorts)).toBe(true);
    const upstream = await fake.connection();
    expect(dataCommands(upstream.lines)).toEqual(['EPSV', 'PASV']);
    expect(client.received().toString('latin1')).not.toContain(`${code} `); // the refusal stayed with the gateway

    await client.write('RETR file.bin\r\n');
    const data = readDataConnection(port);
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await data)).toBe(sha256(PAYLOAD));
  });

  it('the session goes on after the fallback: the next command is answered', async () => {
    const { client } = await through({ refuse: { EPSV: code } });
    expect((await client.command('EPSV')).code).toBe(229);
    expect((await client.command('NOOP')).code).toBe(200);
  });

  it('the gateway remembers: a second EPSV goes upstream as PASV at once', async () => {
    const { client, fake } = await through({ refuse: { EPSV: code } });
    expect((await client.command('EPSV')).code).toBe(229);
    expect((await client.command('EPSV')).code).toBe(229);
    expect(dataCommands((await fake.connection()).lines)).toEqual(['EPSV', 'PASV', 'PASV']);
  });

  it('with upstreamDataMode "passive", a client EPRT is carried out as PASV after the refused EPSV', async () => {
    const { client, fake } = await through({ refuse: { EPSV: code } }, { upstreamDataMode: 'passive' });
    const own = await listen('127.0.0.1');
    cleanup.push(own);
    expect((await client.command(`EPRT ${eprtArg('127.0.0.1', own.port)}`)).code).toBe(200);
    await client.write('RETR file.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await (await own.next()).received)).toBe(sha256(PAYLOAD));
    expect(dataCommands((await fake.connection()).lines)).toEqual(['EPSV', 'PASV']);
  });
});

describe.each(REFUSALS)('an upstream that answers EPRT with %i', (code) => {
  it('is sent PORT for the same pinhole; the client gets 200 and the data arrives', async () => {
    const { client, fake } = await through({ refuse: { EPRT: code } });
    const own: Listener = await listen('127.0.0.1');
    cleanup.push(own);
    const reply = await client.command(`EPRT ${eprtArg('127.0.0.1', own.port)}`);
    expect(reply.code).toBe(200);
    const upstream = await fake.connection();
    const sent = dataCommands(upstream.lines);
    expect(sent.map((l) => l.split(' ')[0])).toEqual(['EPRT', 'PORT']);
    const [eprt, port] = sent.map(parseActiveLine) as [ReturnType<typeof parseActiveLine>, ReturnType<typeof parseActiveLine>];
    expect(port.port).toBe(eprt.port);
    expect(port.address).toBe('127.0.0.1');
    expect(inRange(port.port, activePorts)).toBe(true);
    expect((await client.command('NOOP')).code).toBe(200);

    // At RETR the upstream connects to the port named in the PORT: relayed to the client.
    await client.write('RETR file.bin\r\n');
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await (await own.next()).received)).toBe(sha256(PAYLOAD));
    expect(fake.activeTargets).toEqual([{ host: '127.0.0.1', port: port.port }]);
  });

  it('the gateway remembers: a second EPRT goes upstream as PORT at once', async () => {
    const { client, fake } = await through({ refuse: { EPRT: code } });
    const own = await listen('127.0.0.1');
    cleanup.push(own);
    expect((await client.command(`EPRT ${eprtArg('127.0.0.1', own.port)}`)).code).toBe(200);
    expect((await client.command(`EPRT ${eprtArg('127.0.0.1', own.port)}`)).code).toBe(200);
    const verbs = dataCommands((await fake.connection()).lines).map((l) => l.split(' ')[0]);
    expect(verbs).toEqual(['EPRT', 'PORT', 'PORT']);
  });
});

describe('a refusal that is not "unknown command" is passed on, not retried', () => {
  it('EPSV answered 425 reaches the client as 425; PASV is not tried', async () => {
    const { client, fake } = await through({ refuse: { EPSV: 425 } });
    expect((await client.command('EPSV')).code).toBe(425);
    expect(dataCommands((await fake.connection()).lines)).toEqual(['EPSV']);
    expect((await client.command('NOOP')).code).toBe(200);
    expect(gw?.gateway.stats().pinholes).toBe(0);
  });

  it('an upstream that refuses PASV too: the client gets one failure reply and the session goes on', async () => {
    const { client, fake } = await through({ refuse: { EPSV: 502, PASV: 502 } });
    const reply = await client.command('EPSV');
    expect(reply.code).toBeGreaterThanOrEqual(400);
    expect((await client.command('NOOP')).code).toBe(200);
    expect(dataCommands((await fake.connection()).lines)).toEqual(['EPSV', 'PASV']);
    expect(gw?.gateway.stats().pinholes).toBe(0);
  });
});

describe('EPSV ALL (RFC 2428 4): from then on only EPSV', () => {
  it.each([
    { line: 'PASV', code: 503 },
    { line: 'PORT 127,0,0,1,156,64', code: 503 },
    { line: 'EPRT |1|127.0.0.1|40000|', code: 503 },
  ])('$line is refused with $code, EPSV still works, nothing of it goes upstream', async ({ line, code }) => {
    const { client, fake } = await through({});
    expect((await client.command('EPSV ALL')).code).toBe(200);
    expect((await client.command(line)).code).toBe(code);
    expect(gw?.gateway.stats().pinholes).toBe(0);
    const reply = await client.command('EPSV');
    expect(reply.code).toBe(229);
    await client.write('RETR file.bin\r\n');
    const data = readDataConnection(parse229(reply.text));
    expect((await client.reply()).code).toBe(150);
    expect(sha256(await data)).toBe(sha256(PAYLOAD));
    expect(dataCommands((await fake.connection()).lines)).toEqual(['EPSV']);
  });
});

describe('FEAT through the gateway', () => {
  it('adds EPSV and EPRT, withdraws AUTH/PBSZ/PROT, keeps the rest byte-exact', async () => {
    const { client } = await through({ feat: ['AUTH TLS', 'PBSZ', 'PROT', 'SIZE', 'MDTM', 'REST STREAM'] });
    const reply = await client.command('FEAT');
    expect(reply.code).toBe(211);
    const features = reply.lines.slice(1, -1).map((l) => l.trim().split(' ')[0]);
    expect(features).toEqual(expect.arrayContaining(['EPSV', 'EPRT', 'SIZE', 'MDTM', 'REST']));
    for (const tls of ['AUTH', 'PBSZ', 'PROT']) expect(features).not.toContain(tls);
    expect(reply.lines).toContain(' REST STREAM');
    expect(reply.lines[0]).toBe('211-Features:');
    expect(reply.text).toBe('211 End');
  });

  it('lists EPSV and EPRT once when the upstream lists them too', async () => {
    const { client } = await through({ feat: ['EPSV', 'EPRT', 'SIZE'] });
    const features = (await client.command('FEAT')).lines.slice(1, -1).map((l) => l.trim());
    expect(features.filter((f) => f === 'EPSV')).toHaveLength(1);
    expect(features.filter((f) => f === 'EPRT')).toHaveLength(1);
  });

  it('does not offer EPRT when the site refuses active mode', async () => {
    const { client } = await through({ feat: ['EPRT', 'SIZE'] }, { activeMode: { enabled: false } });
    const features = (await client.command('FEAT')).lines.slice(1, -1).map((l) => l.trim());
    expect(features).toContain('EPSV');
    expect(features).not.toContain('EPRT');
    expect((await client.command('EPRT |1|127.0.0.1|40000|')).code).toBe(502);
  });

  it('AUTH TLS is refused (534) so that clients fall back to cleartext, and nothing goes upstream', async () => {
    const { client, fake } = await through({});
    expect((await client.command('AUTH TLS')).code).toBe(534);
    expect((await client.command('NOOP')).code).toBe(200);
    expect((await fake.connection()).lines.some((l) => l.startsWith('AUTH'))).toBe(false);
  });

  it('through ftp-srv (which lists EPSV/EPRT itself) the list is truthful', async () => {
    const upstream: TestUpstream = await startUpstream();
    cleanup.push(upstream);
    gw = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, passivePorts, activePorts });
    const client = await ControlClient.greeted(gw.port);
    cleanup.push({ close: () => client.destroy() });
    const reply = await client.command('FEAT');
    expect(reply.code).toBe(211);
    const features = reply.lines.slice(1, -1).map((l) => l.trim().split(' ')[0]);
    expect(features).toEqual(expect.arrayContaining(['EPSV', 'EPRT']));
    for (const tls of ['AUTH', 'PBSZ', 'PROT']) expect(features).not.toContain(tls);
  });
});

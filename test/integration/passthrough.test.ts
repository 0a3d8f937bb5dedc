/**
 * Everything not in the intercept table passes byte-exact, both ways; a
 * 227 is rewritten only when it answers the client's pending PASV
 * (DESIGN.md "Protocol facts that bite"). A scripted upstream records the
 * exact bytes it receives and sends replies no real server would.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ControlClient, readDataConnection } from '../support/control.js';
import { sha256 } from '../support/ftpClient.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../support/gateway.js';
import { inRange, portRanges, rangeSize } from '../support/ports.js';
import { type DataSource, type Responder, type ScriptedUpstream, startDataSource, startScriptedUpstream } from '../support/scripted.js';
import { parse227, parse229, pasvReply } from '../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
const GREETING = '220 scripted upstream\r\n';

let scripted: ScriptedUpstream;
let gw: TestGateway | undefined;
let respond: Responder;
const sources: DataSource[] = [];
const clients: ControlClient[] = [];

beforeEach(async () => {
  respond = () => '200 OK\r\n';
  scripted = await startScriptedUpstream({ greeting: GREETING, respond: (line, conn) => respond(line, conn) });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await gw?.close();
  gw = undefined;
  await scripted.close();
  for (const s of sources.splice(0)) await s.close();
});

async function gatewayWith(extra: Record<string, unknown> = {}): Promise<TestGateway> {
  gw = await startGateway({ upstream: { host: scripted.host, port: scripted.port }, passivePorts, activePorts, ...extra });
  return gw;
}

async function greetedClient(port: number): Promise<ControlClient> {
  const client = await ControlClient.greeted(port);
  clients.push(client);
  return client;
}

async function dataSource(payload: Buffer): Promise<DataSource> {
  const source = await startDataSource(payload);
  sources.push(source);
  return source;
}

const bytewise = (text: string): Buffer[] => [...Buffer.from(text, 'latin1')].map((b) => Buffer.from([b]));
const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');

/** Write each chunk as its own write (with NODELAY each is its own segment, or close to it). */
async function writeEach(client: ControlClient, chunks: readonly Buffer[]): Promise<void> {
  client.socket.setNoDelay(true);
  for (const chunk of chunks) await client.write(chunk);
}

describe('client → upstream: byte-exact', () => {
  it('forwards every line exactly as sent, however the bytes are cut', async () => {
    const { port } = await gatewayWith();
    const client = await greetedClient(port);
    const upstreamSide = await scripted.connection();
    const lines = [
      'NOOP\r\n',
      'SITE X\r\n',
      'noop\r\n', // RFC 959 5.3: verbs are case-insensitive; the case is kept
      'NoOp\r\n',
      '  NOOP   \r\n', // spaces kept
      'NOOP\n', // bare LF
      'SITE CHMOD 644 caf\xe9.txt\r\n', // a latin1 byte
      'RETR dir/a\rb.txt\r\n', // a bare CR inside a pathname
      'XYZZY an unknown verb\r\n',
      'XMKD new dir\r\n', // RFC 775 (a verb outside the intercept table)
      '\xff\xf4\xff\xf2ABOR\r\n', // RFC 959 4.1.3: Telnet IP and Synch before ABOR
      'STAT /some/dir with spaces\r\n',
      'SYST\r\nHELP\r\nMODE S\r\n', // three commands in one write
    ];
    const chunks: Buffer[] = [
      ...lines.slice(0, 11).map(latin1),
      ...bytewise(lines[11] as string), // one command, one byte per write
      latin1(lines[12] as string),
      ...[latin1('TYPE'), latin1(' I\r'), latin1('\nNO'), latin1('OP\r\n')], // cut inside the CRLF and across commands
    ];
    const sent = Buffer.concat(chunks);
    const commands = sent.toString('latin1').split('\n').length - 1;
    await writeEach(client, chunks);
    for (let i = 0; i < commands; i++) expect((await client.reply()).code).toBe(200);
    expect(upstreamSide.received().toString('latin1')).toBe(sent.toString('latin1'));
    expect(upstreamSide.received().equals(sent)).toBe(true);
  });

  it('forwards a line at the length limit and refuses one past it without forwarding it', async () => {
    const { port } = await gatewayWith({ limits: { maxLineBytes: 64 } });
    const client = await greetedClient(port);
    const upstreamSide = await scripted.connection();
    const atLimit = `SITE ${'a'.repeat(64 - 'SITE '.length - 2)}\r\n`;
    expect(atLimit.length).toBe(64);
    const tooLong = `SITE ${'b'.repeat(100)}\r\n`;
    expect((await client.command(atLimit.slice(0, -2))).code).toBe(200);
    await client.write(tooLong);
    expect((await client.reply()).code).toBe(500);
    expect((await client.command('NOOP')).code).toBe(200);
    expect(upstreamSide.received().toString('latin1')).toBe(`${atLimit}NOOP\r\n`);
  });

  it('refuses a line with NUL and does not forward it', async () => {
    const { port } = await gatewayWith();
    const client = await greetedClient(port);
    const upstreamSide = await scripted.connection();
    await client.write(latin1('USER a\0b\r\n'));
    expect((await client.reply()).code).toBe(500);
    expect((await client.command('NOOP')).code).toBe(200);
    expect(upstreamSide.received().toString('latin1')).toBe('NOOP\r\n');
  });
});

describe('upstream → client: byte-exact', () => {
  it('passes multi-line replies on exactly, however the upstream cuts them', async () => {
    const replies: Record<string, string> = {
      HELP: '214-The following commands are recognized.\r\n ABOR ACCT ALLO APPE\r\n 214 is not the end\r\n214 Help OK.\r\n',
      STAT: '211-Status:\r\n227 Entering Passive Mode (10,0,0,1,4,1).\r\n200 still text\r\n211 End of status.\r\n',
      SYST: '215 UNIX Type: L8\r\n',
      MDTM: '213-a\n213 bare LF endings\n', // bare LF, kept
      SITE: '200-\xe9t\xe9\r\n200 ok\r\n', // latin1 bytes
      RETR: '150 Opening\r\n550 No such file.\r\n', // a preliminary then the final reply
    };
    respond = (line, conn) => {
      const verb = line.split(' ')[0] ?? '';
      const reply = replies[verb] ?? '200 OK\r\n';
      if (verb === 'STAT' || verb === 'HELP') {
        conn.socket.setNoDelay(true);
        for (const b of bytewise(reply)) conn.write(b); // one byte per write
        return undefined;
      }
      return reply;
    };
    const { port } = await gatewayWith();
    const client = await greetedClient(port);
    for (const verb of Object.keys(replies)) {
      const expected = replies[verb] as string;
      await client.write(`${verb} x\r\n`);
      const got = await client.readBytes(expected.length);
      expect(got.toString('latin1')).toBe(expected);
    }
    expect((await client.command('NOOP')).raw.toString('latin1')).toBe('200 OK\r\n');
    expect(client.received().toString('latin1')).toBe(`${GREETING}${Object.values(replies).join('')}200 OK\r\n`);
  });
});

describe('a 227 the client did not ask for opens nothing', () => {
  it('a 227 answering NOOP is passed on unchanged', async () => {
    const source = await dataSource(randomBytes(16));
    const unsolicited = pasvReply('127.0.0.1', source.port);
    respond = (line) => (line === 'NOOP' ? unsolicited : '200 OK\r\n');
    const { port, gateway } = await gatewayWith();
    const client = await greetedClient(port);
    const reply = await client.command('NOOP');
    expect(reply.raw.toString('latin1')).toBe(unsolicited);
    expect(gateway.stats().pinholes).toBe(0);
    expect(gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts));
    expect(await counterTotal(gateway, 'ftp_alg_pinholes_opened_total')).toBe(0);
    expect(source.peers).toEqual([]);
  });

  it('a 227 sent out of the blue (no command pending) is passed on unchanged', async () => {
    const { port, gateway } = await gatewayWith();
    const client = await greetedClient(port);
    const upstreamSide = await scripted.connection();
    const unsolicited = pasvReply('10.0.0.1', 50_000);
    upstreamSide.write(unsolicited);
    expect((await client.reply()).raw.toString('latin1')).toBe(unsolicited);
    expect((await client.command('NOOP')).code).toBe(200);
    expect(gateway.stats().pinholes).toBe(0);
    expect(gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts));
    expect(await counterTotal(gateway, 'ftp_alg_pinholes_opened_total')).toBe(0);
  });

  it('pipelined "PASV, NOOP": only the reply to PASV is rewritten, the 227 answering NOOP passes unchanged', async () => {
    const source = await dataSource(randomBytes(16));
    const toNoop = pasvReply('10.9.9.9', 40_000, 'Not what you asked for');
    respond = (line) => (line === 'PASV' ? pasvReply('127.0.0.1', source.port) : line === 'NOOP' ? toNoop : '200 OK\r\n');
    const { port, gateway } = await gatewayWith();
    const client = await greetedClient(port);
    await client.write('PASV\r\nNOOP\r\n');
    const pasv = await client.reply();
    expect(pasv.code).toBe(227);
    expect(inRange(parse227(pasv.text).port, passivePorts)).toBe(true);
    expect((await client.reply()).raw.toString('latin1')).toBe(toNoop);
    expect(gateway.stats().pinholes).toBe(1);
  });
});

describe('a hostile 227 answering PASV', () => {
  it.each([
    ['its private address', '10.0.0.5'],
    ['0.0.0.0', '0.0.0.0'],
    ['a foreign host', '203.0.113.9'],
  ])('naming %s: the gateway connects only to the upstream control address', async (_name, advertised) => {
    const payload = randomBytes(4096);
    const source = await dataSource(payload);
    respond = (line) => (line === 'PASV' ? pasvReply(advertised, source.port) : '200 OK\r\n');
    const { port } = await gatewayWith();
    const client = await greetedClient(port);
    const pasv = await client.command('PASV');
    const rewritten = parse227(pasv.text);
    expect(rewritten.address).toBe('127.0.0.1');
    expect(inRange(rewritten.port, passivePorts)).toBe(true);
    expect(sha256(await readDataConnection(rewritten.port))).toBe(sha256(payload));
    expect(source.peers).toEqual(['127.0.0.1']);
  });

  it.each([
    ['227 =h1,…,p2 (no parentheses)', (p: number) => `227 =127,0,0,1,${p >> 8},${p & 0xff}\r\n`],
    ['227 bare host-port', (p: number) => `227 Entering Passive Mode 127,0,0,1,${p >> 8},${p & 0xff}\r\n`],
  ])('understands the variant %s (RFC 1123 4.1.2.6)', async (_name, format) => {
    const payload = randomBytes(100);
    const source = await dataSource(payload);
    respond = (line) => (line === 'PASV' ? format(source.port) : '200 OK\r\n');
    const { port } = await gatewayWith();
    const client = await greetedClient(port);
    const pasv = await client.command('PASV');
    expect(pasv.raw.toString('latin1')).toMatch(/^227 Entering Passive Mode \(127,0,0,1,\d+,\d+\)\.\r\n$/);
    expect((await readDataConnection(parse227(pasv.text).port)).equals(payload)).toBe(true);
  });

  it.each([
    ['a privileged data port (25)', pasvReply('127.0.0.1', 25)],
    ['an octet above 255', '227 Entering Passive Mode (127,0,0,1,300,1).\r\n'],
    ['no host-port at all', '227 Entering Passive Mode.\r\n'],
    ['port 0', '227 Entering Passive Mode (127,0,0,1,0,0).\r\n'],
  ])('refuses %s with 425 and opens nothing', async (_name, hostile) => {
    respond = (line) => (line === 'PASV' ? hostile : '200 OK\r\n');
    const { port, gateway } = await gatewayWith();
    const client = await greetedClient(port);
    expect((await client.command('PASV')).code).toBe(425);
    expect(gateway.stats().pinholes).toBe(0);
    expect(gateway.stats().sites[SITE]?.passiveFree).toBe(rangeSize(passivePorts));
    expect((await client.command('NOOP')).code).toBe(200);
  });

  it('names the configured external address, while the pinhole listens where the client reached the gateway', async () => {
    const payload = randomBytes(100);
    const source = await dataSource(payload);
    respond = (line) => (line === 'PASV' ? pasvReply('10.0.0.5', source.port) : '200 OK\r\n');
    const { port } = await gatewayWith({ externalAddress: '203.0.113.1' });
    const client = await greetedClient(port);
    const pasv = await client.command('PASV');
    const rewritten = parse227(pasv.text);
    expect(rewritten.address).toBe('203.0.113.1');
    expect(inRange(rewritten.port, passivePorts)).toBe(true);
    expect((await readDataConnection(rewritten.port)).equals(payload)).toBe(true);
  });
});

describe('EPSV ALL (RFC 2428 4)', () => {
  it('then PASV, PORT and EPRT are refused with 503 and nothing of them reaches the upstream; EPSV still works', async () => {
    const payload = randomBytes(256);
    const source = await dataSource(payload);
    respond = (line) => (line === 'EPSV' ? `229 Entering Extended Passive Mode (|||${source.port}|)\r\n` : '200 OK\r\n');
    const { port, gateway } = await gatewayWith();
    const client = await greetedClient(port);
    const upstreamSide = await scripted.connection();
    expect((await client.command('EPSV ALL')).code).toBe(200);
    const pasv = await client.command('PASV');
    expect(pasv.code).toBe(503);
    expect((await client.command('PORT 127,0,0,1,200,10')).code).toBe(503);
    expect((await client.command('EPRT |1|127.0.0.1|51210|')).code).toBe(503);
    expect((await client.command('pasv')).code).toBe(503); // any case
    expect((await client.command('NOOP')).code).toBe(200);
    expect(gateway.stats().pinholes).toBe(0);
    const verbs = upstreamSide.lines.map((l) => l.split(' ')[0]?.toUpperCase());
    expect(verbs).not.toContain('PASV');
    expect(verbs).not.toContain('PORT');
    expect(verbs).not.toContain('EPRT');
    expect(verbs).toContain('NOOP');

    const epsv = await client.command('EPSV');
    expect(epsv.code).toBe(229);
    const dataPort = parse229(epsv.text);
    expect(inRange(dataPort, passivePorts)).toBe(true);
    expect((await readDataConnection(dataPort)).equals(payload)).toBe(true);
  });
});

describe('pinholes end with their session', () => {
  it('a waiting pinhole closes and its port returns when the client leaves', async () => {
    const source = await dataSource(randomBytes(8));
    respond = (line) => (line === 'PASV' ? pasvReply('127.0.0.1', source.port) : '200 OK\r\n');
    const { port, gateway } = await gatewayWith();
    const client = await greetedClient(port);
    const dataPort = parse227((await client.command('PASV')).text).port;
    expect(gateway.stats().pinholes).toBe(1);
    client.destroy();
    await vi.waitFor(() => {
      expect(gateway.stats()).toMatchObject({ sessions: 0, pinholes: 0, sites: { [SITE]: { passiveFree: rangeSize(passivePorts) } } });
    });
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: dataPort });
      s.once('connect', () => {
        s.destroy();
        resolve('accepted');
      });
      s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });
});

/**
 * Attack 5, segmentation and pipelining: a TCP read is not a line. Each
 * fixture is sent to a fresh session one command at a time, awaiting each
 * reply (the reference), then all at once (pipelined), then cut in two at
 * every byte offset, then one byte per read; every way, the upstream must
 * receive the same bytes and the client the same replies. Fixtures carry
 * bare LF, bare CR inside an argument, extra spaces, lower-case verbs,
 * Telnet IAC, and the intercepted verbs (whose pinhole ports are random,
 * so they are masked before comparing).
 *
 * "Each piece is a separate read" is made certain, not hoped for: after
 * writing a piece the test awaits the gateway's line splitter having been
 * fed exactly the bytes sent so far (test/support/traps.ts).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { portRanges } from '../../support/ports.js';
import { type LineInputWatch, watchLineInput, within } from '../../support/traps.js';

const [passivePorts, activePorts] = portRanges(2, 20) as [{ min: number; max: number }, { min: number; max: number }];

let fake: FakeFtp;
let gw: TestGateway;
let watch: LineInputWatch;

beforeAll(async () => {
  fake = await startFakeFtp();
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, passivePorts, activePorts });
  watch = watchLineInput();
});

afterAll(async () => {
  watch.stop();
  await gw.close();
  await fake.close();
});

afterEach(async () => {
  await expectNoLeaks(gw.gateway, { passivePorts, activePorts });
});

interface Fixture {
  readonly name: string;
  /** One command per entry, terminator included. */
  readonly commands: readonly string[];
  /** The reply codes the client gets, in order. */
  readonly codes: readonly number[];
  /** What the upstream receives (pinhole ports masked): intercepted verbs in the gateway's own form, the rest byte-exact. */
  readonly upstream: string;
}

const FIXTURES: readonly Fixture[] = [
  {
    name: 'a login and a passive set-up',
    commands: ['USER anonymous\r\n', 'PASS secret\r\n', 'TYPE I\r\n', 'PASV\r\n', 'NOOP\r\n'],
    codes: [331, 230, 200, 227, 200],
    upstream: 'USER anonymous\r\nPASS secret\r\nTYPE I\r\nPASV\r\nNOOP\r\n',
  },
  {
    name: 'lower case, bare LF, extra spaces',
    commands: ['user anonymous\n', 'pass  se cret \r\n', '   type i\r\n', 'epsv\n', 'nOoP   \r\n'],
    codes: [331, 230, 200, 229, 200],
    upstream: 'user anonymous\npass  se cret \r\n   type i\r\nEPSV\r\nnOoP   \r\n',
  },
  {
    name: 'active mode, a bare CR inside a path, an unknown verb',
    commands: ['USER a\r\n', 'PORT 127,0,0,1,200,10\r\n', 'RETR dir/a\rb.txt\r\n', 'XYZZY plugh\r\n'],
    codes: [331, 200, 550, 502],
    upstream: 'USER a\r\nPORT 127,0,0,1,p1,p2\r\nRETR dir/a\rb.txt\r\nXYZZY plugh\r\n',
  },
  {
    name: 'Telnet IAC before ABOR, EPSV ALL, then PASV and EPRT refused',
    commands: ['\xff\xf4\xff\xf2ABOR\r\n', 'EPSV ALL\r\n', 'EPSV\r\n', 'PASV\r\n', 'eprt |1|127.0.0.1|51210|\r\n'],
    codes: [226, 200, 229, 503, 503],
    upstream: '\xff\xf4\xff\xf2ABOR\r\nEPSV\r\n',
  },
];

interface Transcript {
  readonly client: string;
  readonly upstream: string;
}

/** Pinhole ports are drawn at random: mask them. */
function mask(text: string): string {
  return text
    .replace(/\(127,0,0,1,\d+,\d+\)/g, '(127,0,0,1,p1,p2)')
    .replace(/\(\|\|\|\d+\|\)/g, '(|||port|)')
    .replace(/PORT 127,0,0,1,\d+,\d+/g, 'PORT 127,0,0,1,p1,p2');
}

/** A fresh session; `send` writes the fixture its way; the transcript once every reply has come. */
async function transcript(fixture: Fixture, send: (client: ControlClient) => Promise<string[]>): Promise<Transcript> {
  watch.reset();
  const client = await ControlClient.connect(gw.port);
  client.socket.setNoDelay(true); // each piece leaves at once (no Nagle wait for the previous one's ACK)
  try {
    const greeting = await client.reply();
    expect(greeting.code).toBe(220);
    const upstream = fake.connections.at(-1);
    if (upstream === undefined) throw new Error('no upstream connection');
    const replies = await send(client);
    for (let i = replies.length; i < fixture.codes.length; i++) replies.push((await within(3_000, `reply ${i + 1}`, client.reply())).raw.toString('latin1'));
    return { client: mask(replies.join('')), upstream: mask(upstream.received().toString('latin1')) };
  } finally {
    client.destroy();
  }
}

/** Write `pieces` one by one, each read by the gateway before the next is written. */
function inPieces(pieces: readonly Buffer[]): (client: ControlClient) => Promise<string[]> {
  return async (client) => {
    let sent = Buffer.alloc(0);
    for (const piece of pieces) {
      if (piece.length === 0) continue;
      await client.write(piece);
      sent = Buffer.concat([sent, piece]);
      await within(3_000, `the gateway reading ${JSON.stringify(sent.toString('latin1'))}`, watch.fed(sent));
    }
    return [];
  };
}

describe.each(FIXTURES)('$name', (fixture) => {
  const bytes = Buffer.from(fixture.commands.join(''), 'latin1');
  let reference: Transcript;

  it('one command at a time, each reply awaited (the reference)', async () => {
    reference = await transcript(fixture, async (client) => {
      const replies: string[] = [];
      for (const command of fixture.commands) {
        await client.write(command);
        replies.push((await within(3_000, command, client.reply())).raw.toString('latin1'));
      }
      return replies;
    });
    expect(reference.upstream).toBe(fixture.upstream);
    expect(reference.client.split('\r\n').filter((l) => /^\d{3} /.test(l)).map((l) => Number(l.slice(0, 3)))).toEqual(fixture.codes);
  });

  it('all commands in one segment', async () => {
    expect(await transcript(fixture, inPieces([bytes]))).toEqual(reference);
  });

  it('cut in two at every byte offset', async () => {
    for (let offset = 1; offset < bytes.length; offset++) {
      const got = await transcript(fixture, inPieces([bytes.subarray(0, offset), bytes.subarray(offset)]));
      expect(got, `cut at ${offset}`).toEqual(reference);
    }
  });

  it('one byte per read', async () => {
    const pieces = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
    expect(await transcript(fixture, inPieces(pieces))).toEqual(reference);
  });
});

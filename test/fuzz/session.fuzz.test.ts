/**
 * Whole sessions, fuzzed (fast-check): a random stream of client lines
 * (PASV, EPSV, PORT and EPRT to good and bad targets, AUTH, ABOR, REIN,
 * garbage, NUL, IAC, over-long lines, lower case, bare LF) cut at random
 * points, against an upstream answering every line from a random script
 * (227/229 naming foreign, zero, private or privileged targets, multi-line
 * replies, garbage, unsolicited extra replies). The client then connects
 * to whatever pinholes it was given, from the right address or a wrong
 * one, and goes away in a random manner.
 *
 * Invariants, every run: no crash (the gateway runs in this process); the
 * session and all its pinholes end and every port is back in its pool;
 * the gateway connected only to the upstream's address or to the client's
 * own address, never to a port below 1024, never to the third host.
 *
 * CI runs 60 sessions (a few seconds). A longer run, e.g.:
 *   FUZZ_RUNS=5000 npx vitest run test/fuzz/session.fuzz.test.ts
 * A failure prints fast-check's seed and path; replay it with
 *   FUZZ_SEED=<seed> FUZZ_PATH=<path> npx vitest run test/fuzz/session.fuzz.test.ts
 */
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../support/control.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../support/hostileUpstream.js';
import { expectNoLeaks } from '../support/leaks.js';
import { inRange, portRanges } from '../support/ports.js';
import {
  CLIENT,
  type Listener,
  listen,
  listenPrivileged,
  listenTwins,
  OTHER_CLIENT,
  type OutboundRecord,
  recordGatewayConnects,
  THIRD_HOST,
  within,
} from '../support/traps.js';
import { parseEpsvReply, parsePasvReply } from '../../src/ftp/hostPort.js';
import { portArg } from '../support/hostPort.js';

type Range = { min: number; max: number };
const [passivePorts, activePorts] = portRanges(2, 20) as [Range, Range];
const pools = { passivePorts, activePorts };
const RUNS = Number(process.env.FUZZ_RUNS ?? 60);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
const PATH = process.env.FUZZ_PATH;
/** The client connects from here; the gateway listens on 127.0.0.1. */
const FROM = OTHER_CLIENT;

let fake: FakeFtp;
let gw: TestGateway;
let record: OutboundRecord;
/** The upstream's data port, served on 127.0.0.1 (right) and 127.0.0.2 (trap). */
let data: { right: Listener; trap: Listener; port: number };
/** The client's own data listener (PORT/EPRT targets that are fine). */
let own: Listener;
let privilegedUpstream: Listener;
let privilegedClient: Listener;
/** The upstream's answers for the current run: to PASV/EPSV, and to anything else it does not serve itself; each cycled. */
let script: { passive: ((line: string) => string)[]; other: ((line: string) => string)[] } = { passive: [], other: [] };
let passiveAt = 0;
let otherAt = 0;
/** Served by the fake upstream's own logic (login, transfers, PORT/EPRT, which it connects back to on RETR). */
const SERVED = /^(USER|PASS|PORT|EPRT|RETR|STOR|LIST|QUIT|TYPE)\b/i;

beforeAll(async () => {
  fake = await startFakeFtp();
  data = await listenTwins({ payload: Buffer.from('data from the upstream\r\n') });
  own = await listen(FROM);
  privilegedUpstream = await listenPrivileged(CLIENT);
  privilegedClient = await listenPrivileged(FROM);
  fake.files.set('f', Buffer.from('a small file\r\n'));
  fake.hooks.connectOnPort = true; // hostile: it connects wherever a PORT/EPRT it receives says, at once
  fake.hooks.reply = (line) => {
    if (line === 'NOOP sentinel') return '200 sentinel-ok\r\n';
    if (SERVED.test(line)) return undefined;
    const passive = /^(PASV|EPSV)\b/i.test(line);
    const list = passive ? script.passive : script.other;
    const answer = list[(passive ? passiveAt++ : otherAt++) % Math.max(1, list.length)];
    return answer === undefined ? '200 OK\r\n' : answer(line);
  };
  gw = await startGateway({
    upstream: { host: fake.host, port: fake.port },
    ...pools,
    timeouts: { pinholeAcceptMs: 2_000, dataIdleMs: 2_000, controlIdleMs: 5_000 },
    limits: { maxLineBytes: 512 },
  });
  record = recordGatewayConnects();
});

afterAll(async () => {
  record.stop();
  await gw.close();
  await Promise.all([fake.close(), data.right.close(), data.trap.close(), own.close(), privilegedUpstream.close(), privilegedClient.close()]);
});


// ---- the client's side -------------------------------------------------

/** A target for PORT/EPRT: named lazily, the listeners' ports are known only at run time. */
const target = fc.constantFrom<() => [string, number]>(
  () => [FROM, own.port], // fine
  () => [FROM, own.port],
  () => [FROM, privilegedClient.port], // privileged
  () => [THIRD_HOST, data.port], // third host
  () => ['0.0.0.0', own.port],
  () => [CLIENT, own.port], // the gateway's own address: another host than the client
  () => [FROM, 0],
);

const command: fc.Arbitrary<() => string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('PASV', 'EPSV', 'PASV', 'EPSV', 'EPSV ALL', 'EPSV 1', 'EPSV 2').map((c) => () => c) },
  { weight: 3, arbitrary: fc.constantFrom('NOOP', 'ABOR', 'REIN', 'FEAT', 'SYST', 'RETR f').map((c) => () => c) },
  { weight: 2, arbitrary: fc.constantFrom('AUTH TLS', 'AUTH SSL', 'USER a', 'PASS b', 'RETR f', 'STOR PORT 127,0,0,2,4,1', 'LIST', 'QUIT').map((c) => () => c) },
  { weight: 3, arbitrary: target.map((t) => () => `PORT ${portArg(...t())}`) },
  { weight: 2, arbitrary: fc.tuple(target, fc.constantFrom('|', '!', '#')).map(([t, d]) => () => `EPRT ${d}1${d}${t()[0]}${d}${t()[1]}${d}`) },
  { weight: 1, arbitrary: fc.tuple(fc.array(fc.nat(999), { minLength: 4, maxLength: 8 })).map(([n]) => () => `PORT ${n.join(',')}`) },
  { weight: 2, arbitrary: fc.string({ unit: fc.nat(255).map((c) => String.fromCharCode(c)), maxLength: 40 }).map((s) => () => s) },
  { weight: 1, arbitrary: fc.constantFrom('A'.repeat(600), 'NO\0OP', '\xff\xf4\xff\xf2ABOR', 'P\xff\xf1ORT 127,0,0,2,4,1', '"PORT" 127,0,0,2,4,1').map((c) => () => c) },
);

/** A line: a command, maybe lower-cased or padded, with one of the terminators (or none: it runs into the next). */
const clientLine = fc.tuple(command, fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', ''), fc.constantFrom('as is', 'lower', 'padded')).map(
  ([c, end, style]) => () => {
    const text = c();
    const styled = style === 'lower' ? text.toLowerCase() : style === 'padded' ? `  ${text.replace(' ', '   ')} ` : text;
    return `${styled}${end}`;
  },
);

// ---- the upstream's side -----------------------------------------------

const upstreamAddress = fc.constantFrom(CLIENT, THIRD_HOST, '0.0.0.0', '10.0.0.1', '255.255.255.255');
const upstreamPort = fc.oneof(
  { weight: 3, arbitrary: fc.constant(() => data.port) },
  { weight: 3, arbitrary: fc.constantFrom<() => number>(() => privilegedUpstream.port, () => 21, () => 0) },
);

/** Answers to the PASV/EPSV the gateway sends: mostly usable ports, at every kind of address. */
const passiveReply: fc.Arbitrary<(line: string) => string> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.tuple(upstreamAddress, upstreamPort, fc.constantFrom('|', '!')).map(([a, p, d]) => (line: string) =>
      /^EPSV/i.test(line) ? `229 Entering Extended Passive Mode (${d}${d}${d}${p()}${d})\r\n` : `227 Entering Passive Mode (${portArg(a, p())}).\r\n`,
    ),
  },
  { weight: 5, arbitrary: fc.tuple(upstreamAddress, upstreamPort).map(([a, p]) => () => `227 Entering Passive Mode (${portArg(a, p())}).\r\n`) },
  { weight: 1, arbitrary: fc.tuple(upstreamAddress, upstreamPort).map(([a, p]) => () => `227 =${portArg(a, p())}\r\n`) },
  { weight: 3, arbitrary: fc.tuple(upstreamPort, fc.constantFrom('|', '!')).map(([p, d]) => () => `229 Entering Extended Passive Mode (${d}${d}${d}${p()}${d})\r\n`) },
  { weight: 1, arbitrary: fc.constant(() => `227-Entering Passive Mode (${portArg(THIRD_HOST, data.port)})\r\n227 Entering Passive Mode (${portArg(CLIENT, data.port)}).\r\n`) },
  { weight: 1, arbitrary: fc.constant(() => `200 OK\r\n227 Entering Passive Mode (${portArg(THIRD_HOST, data.port)}).\r\n`) }, // and one unsolicited
  { weight: 1, arbitrary: fc.constant(() => '227 Entering Passive Mode (127,0,0,1,0,65557).\r\n') },
  { weight: 1, arbitrary: fc.constantFrom('500 What?\r\n', '502 No.\r\n', '425 No data.\r\n', 'garbage\r\n200 OK\r\n').map((r) => () => r) },
);

/** Answers to anything else: mostly plain, some spoofed, some odd. */
const otherReply: fc.Arbitrary<(line: string) => string> = fc.oneof(
  { weight: 4, arbitrary: fc.constant(() => '200 OK\r\n') },
  { weight: 1, arbitrary: fc.tuple(upstreamAddress, upstreamPort).map(([a, p]) => () => `227 Entering Passive Mode (${portArg(a, p())}).\r\n`) },
  { weight: 1, arbitrary: fc.constant(() => `200 OK\r\n227 Entering Passive Mode (${portArg(THIRD_HOST, data.port)}).\r\n`) }, // one unsolicited
  { weight: 1, arbitrary: fc.constant(() => `214-Help\r\n227 Entering Passive Mode (${portArg(THIRD_HOST, data.port)}).\r\n214 End\r\n`) },
  { weight: 1, arbitrary: fc.constant(() => `PORT ${portArg(THIRD_HOST, data.port)}\r\n200 OK\r\n`) },
  { weight: 1, arbitrary: fc.constantFrom('500 What?\r\n', '502 No.\r\n', '150 Here it comes.\r\n226 Done.\r\n', 'garbage\r\n200 OK\r\n').map((r) => () => r) },
);

// ---- one run -----------------------------------------------------------

interface Run {
  readonly lines: (() => string)[];
  readonly cuts: number[];
  readonly passiveReplies: ((line: string) => string)[];
  readonly otherReplies: ((line: string) => string)[];
  /** Calm runs answer everything but PASV/EPSV with a plain 200, so that the FIFO stays in step and pinholes open. */
  readonly calm: boolean;
  /** Each run ends with a data connection set up this way and a RETR, so that pinholes open and relay. */
  readonly finale: () => string;
  readonly dataFrom: 'right' | 'wrong';
  readonly leave: 'destroy' | 'end' | 'quit';
}

const run: fc.Arbitrary<Run> = fc.record({
  lines: fc.array(clientLine, { minLength: 1, maxLength: 12 }),
  cuts: fc.array(fc.nat(400), { maxLength: 6 }),
  passiveReplies: fc.array(passiveReply, { minLength: 1, maxLength: 6 }),
  otherReplies: fc.array(otherReply, { minLength: 1, maxLength: 6 }),
  calm: fc.boolean(),
  finale: fc.oneof(
    fc.constantFrom('PASV', 'EPSV').map((c) => () => c),
    target.map((t) => () => `PORT ${portArg(...t())}`),
    target.map((t) => () => `EPRT |1|${t()[0]}|${t()[1]}|`),
  ),
  dataFrom: fc.constantFrom('right', 'right', 'wrong'),
  leave: fc.constantFrom('destroy', 'end', 'quit'),
});

/** Ports of the gateway's own 227/229 answers (what the client would connect to). */
function pinholePorts(text: string): number[] {
  const ports: number[] = [];
  // The gateway's own 227/229 always parse; a hostile reply passed on verbatim may not, and is no pinhole.
  for (const line of text.split('\n')) {
    const pasv = /^227 Entering Passive Mode \(127,0,0,1,\d+,\d+\)\.\r$/.test(line) ? parsePasvReply(line) : undefined;
    if (pasv?.ok === true) ports.push(pasv.value.port);
    const epsv = /^229 Entering Extended Passive Mode \(\|\|\|\d+\|\)\r$/.test(line) ? parseEpsvReply(line) : undefined;
    if (epsv?.ok === true) ports.push(epsv.value);
  }
  return ports.filter((p) => inRange(p, passivePorts));
}

/** Connect to a pinhole, read what comes for a moment, and go: the bytes received. */
function visit(port: number, from: string): Promise<number> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: CLIENT, port, localAddress: from });
    let bytes = 0;
    socket.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(bytes);
    };
    const timer = setTimeout(done, 200);
    socket.on('error', done);
    socket.on('end', done);
    socket.on('close', done);
  });
}

async function oneSession(r: Run): Promise<void> {
  script = { passive: r.passiveReplies, other: r.calm ? [] : r.otherReplies };
  passiveAt = 0;
  otherAt = 0;
  const targetsBefore = record.targets.length;
  const client = await ControlClient.connect(gw.port, { localAddress: FROM });
  client.socket.setNoDelay(true);
  try {
    expect((await within(3_000, 'greeting', client.reply())).code).toBe(220);
    const bytes = Buffer.from(`${r.lines.map((l) => l()).join('')}\r\n${r.finale()}\r\nRETR f\r\n`, 'latin1');
    let start = 0;
    for (const cut of [...new Set(r.cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)) {
      if (cut > start) await client.write(bytes.subarray(start, cut)).catch(() => undefined);
      start = Math.max(start, cut);
    }
    await client.write(Buffer.concat([bytes.subarray(start), Buffer.from('\r\nNOOP sentinel\r\n')])).catch(() => undefined);
    // Until the sentinel's answer or the close, whichever comes; a bound, not a requirement.
    await within(
      1_500,
      'sentinel',
      new Promise<void>((resolve) => {
        const check = () => {
          if (client.received().includes('sentinel-ok')) resolve();
        };
        client.socket.on('data', check);
        void client.closed.then(() => resolve());
        check();
      }),
    ).catch(() => undefined);
    const from = r.dataFrom === 'right' ? FROM : THIRD_HOST;
    const received = await Promise.all(pinholePorts(client.received().toString('latin1')).map((p) => visit(p, from)));
    if (from !== FROM) expect(received.every((n) => n === 0), 'a stranger got data from a pinhole').toBe(true);
  } finally {
    if (r.leave === 'destroy') client.destroy();
    else if (r.leave === 'end') client.socket.end();
    else client.socket.end('QUIT\r\n');
  }
  // Invariants.
  await expectNoLeaks(gw.gateway, pools, 6_000);
  client.destroy();
  for (const t of record.targets.slice(targetsBefore)) {
    const ok = (t.host === fake.host || t.host === FROM) && t.port >= 1024;
    expect(ok, `the gateway connected to ${t.host}:${t.port}`).toBe(true);
  }
  expect(data.trap.peers).toEqual([]);
  expect(privilegedUpstream.peers).toEqual([]);
  expect(privilegedClient.peers).toEqual([]);
}

describe('session fuzz', () => {
  it(`${RUNS} random sessions: no crash, nothing left, no connection to anything but the upstream or the client`, async () => {
    await fc.assert(
      fc.asyncProperty(run, (r) => oneSession(r)),
      { numRuns: RUNS, seed: SEED, path: PATH, endOnFailure: true },
    );
  }, Math.max(60_000, RUNS * 1_000));
});

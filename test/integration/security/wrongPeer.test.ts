/**
 * Data-port stealing and wrong peers: a pinhole accepts exactly one
 * connection, only from its expected peer (the control client for
 * passive, the upstream for active; STYLE.md, OpenBSD pf "max 1",
 * ftpserverlib's IP match). A stranger that connects first is closed
 * without a byte and without the gateway connecting anywhere for it, and
 * counted by direction; the rightful peer then transfers; once it is in,
 * the port listens no more. Pinhole ports are drawn at random from the
 * range, so the next one cannot be guessed from the last. On Linux every
 * 127.0.0.0/8 address is local: 127.0.0.2 and 127.0.0.3 play strangers.
 */
import { once } from 'node:events';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient, loggedInClient, readDataConnection } from '../../support/control.js';
import { sha256 } from '../../support/ftpClient.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { type FakeFtp, startFakeFtp } from '../../support/hostileUpstream.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { inRange, portRanges, rangeSize } from '../../support/ports.js';
import { CLIENT, listen, OTHER_CLIENT, probe, recordGatewayConnects, THIRD_HOST } from '../../support/traps.js';
import { eprtArg, parse227, parse229, parseActiveLine, portArg } from '../../support/hostPort.js';

const [passivePorts, activePorts] = portRanges(2, 200) as [{ min: number; max: number }, { min: number; max: number }];
const PAYLOAD = randomBytes(256 * 1024);
const WRONG_PEER = 'ftp_alg_pinholes_wrong_peer_total';

let fake: FakeFtp;
let gw: TestGateway;
const clients: ControlClient[] = [];

beforeAll(async () => {
  fake = await startFakeFtp();
  fake.files.set('secret.bin', PAYLOAD);
  gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, passivePorts, activePorts });
});

afterAll(async () => {
  await gw.close();
  await fake.close();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await expectNoLeaks(gw.gateway, { passivePorts, activePorts });
});

const session = () => loggedInClient(gw.port, clients);

/** The wrong-peer counter of one direction, as exposed. */
async function wrongPeers(dir: 'passive' | 'active'): Promise<number> {
  const text = await gw.gateway.metrics.registry.getSingleMetricAsString(WRONG_PEER);
  const m = new RegExp(`${WRONG_PEER}\\{site="${SITE}",dir="${dir}"\\} (\\d+)`).exec(text);
  return m === null ? 0 : Number(m[1]);
}

describe('a stranger connecting to a passive pinhole first', () => {
  it.each(['PASV', 'EPSV'] as const)('%s: is closed without data, nothing is connected for it, and the client then downloads', async (verb) => {
    const wrongBefore = await counterTotal(gw.gateway, WRONG_PEER);
    const passiveBefore = await wrongPeers('passive');
    const peersBefore = fake.dataPeers.length;
    const record = recordGatewayConnects();
    try {
      const client = await session();
      const reply = await client.command(verb);
      const port = verb === 'PASV' ? parse227(reply.text).port : parse229(reply.text);

      for (const stranger of [THIRD_HOST, OTHER_CLIENT, THIRD_HOST]) {
        expect(await probe(port, stranger, Buffer.from('stolen upload'))).toEqual({ outcome: 'closed', bytes: 0 });
      }
      expect(await counterTotal(gw.gateway, WRONG_PEER)).toBe(wrongBefore + 3);
      expect(await wrongPeers('passive')).toBe(passiveBefore + 3);
      expect(fake.dataPeers).toHaveLength(peersBefore); // the gateway did not connect upstream for them
      expect(record.targets).toHaveLength(1); // the control connection only
      expect(gw.gateway.stats().pinholes).toBe(1); // still waiting for the client

      await client.write('RETR secret.bin\r\n');
      const data = readDataConnection(port);
      // 150 means the upstream's data connection is up, so the gateway accepted the client's before:
      // from then on the port listens no more, for anyone.
      expect((await client.reply()).code).toBe(150);
      expect((await probe(port, CLIENT)).outcome).toBe('refused');
      expect(sha256(await data)).toBe(sha256(PAYLOAD));
      expect((await client.reply()).code).toBe(226);
      expect(fake.uploads.size).toBe(0); // the stranger's bytes went nowhere
      expect((await probe(port, THIRD_HOST)).outcome).toBe('refused');
    } finally {
      record.stop();
    }
  });
});

describe('a stranger connecting to an active pinhole first', () => {
  it.each(['PORT', 'EPRT'] as const)('%s: is closed; the client gets nothing from it; the upstream then connects and the client downloads', async (verb) => {
    const wrongBefore = await counterTotal(gw.gateway, WRONG_PEER);
    const activeBefore = await wrongPeers('active');
    const own = await listen(CLIENT);
    try {
      const client = await session();
      const arg = verb === 'PORT' ? portArg(CLIENT, own.port) : eprtArg(CLIENT, own.port);
      expect((await client.command(`${verb} ${arg}`)).code).toBe(200);
      const announced = parseActiveLine(fake.connections.at(-1)?.lines.at(-1) ?? '');
      expect(announced.verb).toBe(verb);
      expect(announced.address).toBe(CLIENT); // the gateway's private address
      const pinhole = announced.port;
      expect(inRange(pinhole, activePorts)).toBe(true);

      for (const stranger of [THIRD_HOST, OTHER_CLIENT, THIRD_HOST]) {
        expect(await probe(pinhole, stranger, Buffer.from('forged download'))).toEqual({ outcome: 'closed', bytes: 0 });
      }
      expect(await counterTotal(gw.gateway, WRONG_PEER)).toBe(wrongBefore + 3);
      expect(await wrongPeers('active')).toBe(activeBefore + 3);
      expect(gw.gateway.stats().pinholes).toBe(1); // still waiting for the upstream
      expect(own.peers).toEqual([]); // the gateway did not connect to the client for them

      await client.write('RETR secret.bin\r\n'); // the fake upstream now connects to the pinhole
      expect((await client.reply()).code).toBe(150);
      const socket = await own.connection();
      // The upstream is in: the port listens no more, not even for the upstream's address.
      expect((await probe(pinhole, CLIENT)).outcome).toBe('refused');
      await once(socket, 'end');
      expect(sha256(own.received())).toBe(sha256(PAYLOAD));
      expect(own.peers).toEqual([CLIENT]);
      expect((await client.reply()).code).toBe(226);
    } finally {
      await own.close();
    }
  });
});

describe('pinhole ports are not predictable', () => {
  it('60 PASVs in a row draw ports spread over the range, not in sequence', async () => {
    const client = await session();
    const ports: number[] = [];
    for (let i = 0; i < 60; i++) ports.push(parse227((await client.command('PASV')).text).port);
    expect(ports.every((p) => inRange(p, passivePorts))).toBe(true);
    const distinct = new Set(ports).size;
    const successors = ports.slice(1).filter((p, i) => p === (ports[i] as number) + 1 || p === (ports[i] as number) - 1).length;
    expect(distinct).toBeGreaterThanOrEqual(40); // 60 draws from 200: about 52 distinct
    expect(successors).toBeLessThan(6); // sequential allocation would give 59
    expect(Math.max(...ports) - Math.min(...ports)).toBeGreaterThan(rangeSize(passivePorts) / 2);
  });

  it('a connection to a port of the range that no pinhole holds is refused', async () => {
    const client = await session();
    const open = parse227((await client.command('PASV')).text).port;
    const other = open === passivePorts.min ? passivePorts.min + 1 : passivePorts.min;
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect({ host: CLIENT, port: other });
      s.once('connect', () => {
        s.destroy();
        resolve('accepted');
      });
      s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });
});

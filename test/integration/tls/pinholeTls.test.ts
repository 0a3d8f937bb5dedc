/**
 * TLS legs on pinholes (issue 10 items 5 and 6), with real TLS peers on
 * loopback: plain↔TLS, TLS↔plain and TLS↔TLS, 0 B / 1 KiB / 8 MiB both
 * ways by sha256, under TLS 1.2 and 1.3; the upstream refuses data
 * connections that do not resume its control session (vsftpd's
 * require_ssl_reuse) and the client resumes its own control session; the
 * peer check comes before the handshake; a stalled or failed handshake
 * frees the port and is counted.
 */
import net, { type Socket } from 'node:net';
import { once } from 'node:events';
import tls, { type SecureVersion, type TLSSocket } from 'node:tls';
import { describe, expect, it, vi } from 'vitest';
import type { PortRange, SiteTlsConfig } from '../../../src/config/types.js';
import { InProcessDataPlane, type PinholeHandle, type PinholeRequest } from '../../../src/data/DataPlane.js';
import { ShardedPool } from '../../../src/data/ShardedPool.js';
import { createLogger } from '../../../src/observe/logger.js';
import { Metrics } from '../../../src/observe/metrics.js';
import { SiteTls } from '../../../src/tls/SiteTls.js';
import { type CertFiles, tlsSection, useTestCerts } from '../../support/certs.js';
import { portRanges, rangeSize } from '../../support/ports.js';
import {
  cleanupEachTest,
  clientControl,
  closed,
  receiveAll,
  sendAll,
  sha256,
  startGatewayControl,
  startPlainUpstream,
  startTlsUpstream,
  tlsClient,
  type TlsUpstream,
} from '../../support/tlsPeers.js';
import { FILES, NAMES } from '../../support/transferFiles.js';

const SITE = 'main';
const [passivePorts, activePorts] = portRanges(2, 8) as [PortRange, PortRange];
const log = createLogger(process.env.TEST_LOG ?? 'silent');

const testCerts = useTestCerts();
const cleanup = cleanupEachTest();
let certs: CertFiles;
let metrics: Metrics;
let siteTls: SiteTls;
let pools: { passive: ShardedPool; active: ShardedPool };

function setUp(extra: Partial<SiteTlsConfig> = {}): void {
  certs = testCerts();
  metrics = new Metrics();
  siteTls = new SiteTls(tlsSection(certs, { upstream: 'explicit', upstreamCaFile: certs.caFile, ...extra }), { site: SITE, metrics, log });
  pools = { passive: new ShardedPool(passivePorts, 1), active: new ShardedPool(activePorts, 1) };
}

/** Handshakes counted per side and result, e.g. { 'data-client ok': 1 }. */
async function handshakes(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const { labels, value } of (await metrics.tlsHandshakes.get()).values) counts[`${labels.side} ${labels.result}`] = value;
  return counts;
}

async function expectPortsBack(): Promise<void> {
  await vi.waitFor(() => {
    expect(pools.passive.free).toBe(rangeSize(passivePorts));
    expect(pools.active.free).toBe(rangeSize(activePorts));
  });
}

/** The gateway's TLS control connection to `upstream`, and the session its data connections resume. */
async function upstreamControl(upstream: TlsUpstream): Promise<{ session: Buffer | undefined }> {
  const raw = net.connect({ host: '127.0.0.1', port: upstream.port });
  await once(raw, 'connect');
  const handshake = siteTls.connect(raw, 'upstream', { host: '127.0.0.1' });
  // As control/Session does: the last 'session' event wins (TLS 1.3 tickets come after the handshake).
  const kept: { session: Buffer | undefined } = { session: undefined };
  handshake.socket.on('session', (session: Buffer) => {
    kept.session = session;
  });
  cleanup.push(() => handshake.socket.destroy());
  expect(await handshake.outcome).toEqual({ ok: true });
  await vi.waitFor(() => expect(kept.session).toBeDefined());
  return kept;
}

type Kind = 'plain' | 'tls';

interface Rig {
  readonly pinhole: PinholeHandle;
  readonly upstream: TlsUpstream;
  /** The client's data connection to the pinhole's client port. */
  connectClient(options?: { localAddress?: string }): ClientData;
}

interface ClientData {
  readonly socket: Socket | TLSSocket;
  /** Connected, and for TLS the handshake done: an FTPS client sends nothing before. */
  readonly ready: Promise<void>;
  /** Whether the TLS handshake resumed the client's control session. */
  reused(): boolean;
}

/** A passive pinhole with the given legs; the client's control session is kept for its data connection to resume. */
async function rig(clientKind: Kind, upstreamKind: Kind, version: SecureVersion, extra: Partial<PinholeRequest> = {}): Promise<Rig> {
  const upstream = upstreamKind === 'tls' ? await startTlsUpstream(certs, { maxVersion: version, requireReuse: true }) : await startPlainUpstream();
  cleanup.push(() => upstream.close());
  const upstreamSession = upstreamKind === 'tls' ? await upstreamControl(upstream) : undefined;
  let clientSession: Buffer | undefined;
  if (clientKind === 'tls') {
    const control = await startGatewayControl(siteTls);
    cleanup.push(() => control.close());
    const client = await clientControl(certs, control.port, version);
    cleanup.push(() => client.socket.destroy());
    clientSession = client.session();
  }
  const plane = new InProcessDataPlane();
  const pinhole = plane.pinhole({
    site: SITE,
    dir: 'passive',
    client: { kind: 'listen', host: '127.0.0.1', pool: pools.passive, expectedPeer: '127.0.0.1' },
    upstream: { kind: 'connect', host: '127.0.0.1', port: upstream.port },
    acceptTimeoutMs: 5_000,
    dataIdleMs: 10_000,
    log,
    metrics,
    tls: {
      ...(clientKind === 'tls' && { client: siteTls }),
      ...(upstreamSession !== undefined && { upstream: { via: siteTls, target: { host: '127.0.0.1', session: upstreamSession.session } } }),
    },
    ...extra,
  });
  cleanup.push(() => pinhole.close('test-end'));
  await pinhole.open();
  const port = pinhole.clientPort as number;
  return {
    pinhole,
    upstream,
    connectClient(options = {}) {
      const socket =
        clientKind === 'tls'
          ? tlsClient(certs, port, { maxVersion: version, session: clientSession, localAddress: options.localAddress })
          : net.connect({ host: '127.0.0.1', port, localAddress: options.localAddress });
      socket.on('error', () => undefined);
      cleanup.push(() => socket.destroy());
      let reused = false;
      const ready = once(socket, clientKind === 'tls' ? 'secureConnect' : 'connect').then(() => {
        reused = clientKind === 'tls' && (socket as TLSSocket).isSessionReused();
      });
      ready.catch(() => undefined); // awaited by the tests that need it; an intruder's fails
      return { socket, ready, reused: () => reused };
    },
  };
}

const LEGS: Array<[Kind, Kind]> = [
  ['plain', 'tls'],
  ['tls', 'plain'],
  ['tls', 'tls'],
];
const VERSIONS: SecureVersion[] = ['TLSv1.2', 'TLSv1.3'];
const CASES = VERSIONS.flatMap((version) =>
  LEGS.flatMap(([client, upstream]) => NAMES.flatMap((name) => (['download', 'upload'] as const).map((way) => ({ version, client, upstream, name, way })))),
);

describe('a TLS pinhole relays byte-exact, resuming sessions on both sides', () => {
  it.each(CASES)('$version client $client ↔ upstream $upstream, $way $name', async ({ version, client, upstream: upstreamKind, name, way }) => {
    setUp();
    const { pinhole, upstream, connectClient } = await rig(client, upstreamKind, version);
    const data = connectClient();
    const upstreamData = await upstream.next();
    const file = FILES[name];
    const arrived = way === 'download' ? receiveAll(data.socket) : receiveAll(upstreamData.socket);
    await data.ready;
    sendAll(way === 'download' ? upstreamData.socket : data.socket, file);
    expect(sha256(await arrived)).toBe(sha256(file));
    await pinhole.closed();
    await expectPortsBack();

    // Resumption, checked where it is decided: the upstream's data socket, the client's data socket.
    if (upstreamKind === 'tls') expect(upstreamData.reused).toBe(true);
    expect(upstream.refusedForNoReuse).toBe(0);
    if (client === 'tls') expect(data.reused()).toBe(true);
    const counted = await handshakes();
    if (client === 'tls') expect(counted['data-client ok']).toBe(1);
    if (upstreamKind === 'tls') expect(counted['data-upstream ok']).toBe(1);
    expect(Object.keys(counted).filter((k) => !k.endsWith(' ok'))).toEqual([]);
    expect(pinhole.bytes).toEqual(way === 'download' ? { up: 0, down: file.length } : { up: file.length, down: 0 });
  });
});

describe('session reuse is what the upstream checks', () => {
  it.each(VERSIONS)('%s: a data connection without the control session is refused by the upstream (the check can fail)', async (version) => {
    setUp();
    const upstream = await startTlsUpstream(certs, { maxVersion: version, requireReuse: true });
    cleanup.push(() => upstream.close());
    await upstreamControl(upstream);
    const pinhole = new InProcessDataPlane().pinhole({
      site: SITE,
      dir: 'passive',
      client: { kind: 'listen', host: '127.0.0.1', pool: pools.passive, expectedPeer: '127.0.0.1' },
      upstream: { kind: 'connect', host: '127.0.0.1', port: upstream.port },
      acceptTimeoutMs: 5_000,
      dataIdleMs: 10_000,
      log,
      metrics,
      tls: { upstream: { via: siteTls, target: { host: '127.0.0.1' } } }, // no session given
    });
    await pinhole.open();
    const client = net.connect({ host: '127.0.0.1', port: pinhole.clientPort as number });
    client.on('error', () => undefined);
    cleanup.push(() => client.destroy());
    await pinhole.closed();
    expect(upstream.refusedForNoReuse).toBe(1);
    await expectPortsBack();
  });
});

describe('the peer check and the deadline come before and around the handshake', () => {
  it('a wrong peer is refused before any TLS byte, and the rightful client still gets through', async () => {
    setUp();
    const { pinhole, upstream, connectClient } = await rig('tls', 'tls', 'TLSv1.3');
    const intruder = connectClient({ localAddress: '127.0.0.2' }).socket;
    let intruderSecure = false;
    intruder.once('secureConnect', () => {
      intruderSecure = true;
    });
    await closed(intruder);
    expect(intruderSecure).toBe(false);
    expect((await metrics.pinholesWrongPeer.get()).values[0]?.value).toBe(1);
    expect((await handshakes())['data-client ok']).toBeUndefined();
    expect(Object.keys(await handshakes()).some((k) => k.startsWith('data-client'))).toBe(false); // no handshake was even tried

    const data = connectClient().socket;
    const upstreamData = await upstream.next();
    const arrived = receiveAll(data);
    sendAll(upstreamData.socket, FILES['one-kib.bin']);
    expect(sha256(await arrived)).toBe(sha256(FILES['one-kib.bin']));
    await pinhole.closed();
    await expectPortsBack();
  });

  it('the upstream leg connects when the client TCP connection arrives, before its handshake (ftplib starts TLS only after the 150)', async () => {
    setUp();
    const { pinhole, upstream } = await rig('tls', 'plain', 'TLSv1.3');
    const raw = net.connect({ host: '127.0.0.1', port: pinhole.clientPort as number });
    cleanup.push(() => raw.destroy());
    await once(raw, 'connect');
    // No TLS byte sent yet, and the upstream already has its data connection (where vsftpd would send its 150).
    const upstreamData = await upstream.next();
    const client = tls.connect({ socket: raw, host: '127.0.0.1', ca: await certs.read(certs.caFile) });
    client.on('error', () => undefined);
    const arrived = receiveAll(client);
    await once(client, 'secureConnect');
    sendAll(upstreamData.socket, FILES['one-kib.bin']);
    expect(sha256(await arrived)).toBe(sha256(FILES['one-kib.bin']));
    await pinhole.closed();
    await expectPortsBack();
  });

  it('a client that connects and never starts TLS is cut at the accept deadline; the port is freed and the handshake counted', async () => {
    setUp();
    const { pinhole } = await rig('tls', 'plain', 'TLSv1.3', { acceptTimeoutMs: 300 });
    const silent = net.connect({ host: '127.0.0.1', port: pinhole.clientPort as number });
    const silentEnd = new Promise<string>((resolve) => {
      silent.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      silent.once('close', () => resolve('close'));
    });
    cleanup.push(() => silent.destroy());
    await pinhole.closed();
    await expectPortsBack();
    expect(await silentEnd).toBe('ECONNRESET'); // a reset, never a FIN that could look like an empty file
    expect((await handshakes())['data-client timeout']).toBe(1);
  });

  it('a cleartext client on a TLS leg fails the handshake at once; the port is freed and the reason counted', async () => {
    setUp();
    const { pinhole } = await rig('tls', 'plain', 'TLSv1.3');
    const plain = net.connect({ host: '127.0.0.1', port: pinhole.clientPort as number });
    plain.on('error', () => undefined);
    cleanup.push(() => plain.destroy());
    plain.write('hello in cleartext\r\n');
    const started = performance.now();
    await pinhole.closed();
    expect(performance.now() - started).toBeLessThan(4_000); // well before the 5 s accept deadline
    await expectPortsBack();
    expect((await handshakes())['data-client not-tls']).toBe(1);
  });

  it('an active pinhole (the upstream connects in) protects both legs too', async () => {
    setUp();
    const upstream = await startTlsUpstream(certs, { maxVersion: 'TLSv1.3', requireReuse: true });
    cleanup.push(() => upstream.close());
    const kept = await upstreamControl(upstream);
    const control = await startGatewayControl(siteTls);
    cleanup.push(() => control.close());
    const clientCtl = await clientControl(certs, control.port, 'TLSv1.3');
    cleanup.push(() => clientCtl.socket.destroy());
    // The client listens (PORT); its data connection is a TLS client on the accepted socket.
    const clientListener = net.createServer();
    clientListener.listen(0, '127.0.0.1');
    await once(clientListener, 'listening');
    cleanup.push(() => new Promise((resolve) => clientListener.close(resolve)));
    const clientPort = (clientListener.address() as net.AddressInfo).port;
    const accepted = once(clientListener, 'connection').then(([raw]) => raw as Socket);

    const pinhole = new InProcessDataPlane().pinhole({
      site: SITE,
      dir: 'active',
      client: { kind: 'connect', host: '127.0.0.1', port: clientPort },
      upstream: { kind: 'listen', host: '127.0.0.1', pool: pools.active, expectedPeer: '127.0.0.1' },
      acceptTimeoutMs: 5_000,
      dataIdleMs: 10_000,
      log,
      metrics,
      tls: { client: siteTls, upstream: { via: siteTls, target: { host: '127.0.0.1', session: kept.session } } },
    });
    cleanup.push(() => pinhole.close('test-end'));
    await pinhole.open();
    // The upstream connects to the active pinhole and is the TLS server on it, resuming by ticket.
    const upRaw = net.connect({ host: '127.0.0.1', port: pinhole.upstreamPort as number });
    cleanup.push(() => upRaw.destroy());
    await once(upRaw, 'connect');
    const upData = upstream.serveOn(upRaw);
    const raw = await accepted;
    const clientData = tls.connect({ socket: raw, host: '127.0.0.1', ca: await certs.read(certs.caFile), session: clientCtl.session() });
    clientData.on('error', () => undefined);
    const arrived = receiveAll(upData);
    await once(clientData, 'secureConnect');
    sendAll(clientData, FILES['eight-mib.bin']);
    expect(sha256(await arrived)).toBe(sha256(FILES['eight-mib.bin']));
    expect(clientData.isSessionReused()).toBe(true);
    expect(upData.isSessionReused()).toBe(true);
    await pinhole.closed();
    await expectPortsBack();
  });
});

describe('certificate reload while a transfer runs', () => {
  it('the running transfer completes byte-exact; the next data connection shows the new certificate and still resumes the control session', async () => {
    setUp();
    const first = await rig('tls', 'tls', 'TLSv1.3');
    const data = first.connectClient();
    const upstreamData = await first.upstream.next();
    await data.ready;
    const file = FILES['eight-mib.bin'];
    const arrived = receiveAll(data.socket);
    const half = file.length / 2;
    upstreamData.socket.write(file.subarray(0, half));
    // The first half is on its way (or arrived) when the files change.
    await vi.waitFor(() => expect(first.pinhole.bytes.down).toBeGreaterThan(0));
    expect(siteTls.reload({ ...siteTls.config, certFile: certs.certFile2, keyFile: certs.keyFile2 })).toEqual({ ok: true });
    sendAll(upstreamData.socket, file.subarray(half));
    expect(sha256(await arrived)).toBe(sha256(file));
    await first.pinhole.closed();

    // A fresh client data handshake (no session) sees the rotated certificate; one that resumes still resumes.
    const second = await rig('tls', 'plain', 'TLSv1.3');
    const fresh = tlsClient(certs, second.pinhole.clientPort as number, { maxVersion: 'TLSv1.3' });
    fresh.on('error', () => undefined);
    cleanup.push(() => fresh.destroy());
    await once(fresh, 'secureConnect');
    expect(fresh.getPeerCertificate().subject.CN).toBe('ftp-alg test server (rotated)');
    fresh.destroy();
    await second.pinhole.closed();
    const third = await rig('tls', 'plain', 'TLSv1.3');
    const resumed = third.connectClient();
    const thirdUpstream = await third.upstream.next();
    await resumed.ready;
    expect(resumed.reused()).toBe(true);
    const arrivedAgain = receiveAll(resumed.socket);
    sendAll(thirdUpstream.socket, FILES['one-kib.bin']);
    expect(sha256(await arrivedAgain)).toBe(sha256(FILES['one-kib.bin']));
    await third.pinhole.closed();
    await expectPortsBack();
  });
});

describe('a cut is passed on as a reset, never as a clean end', () => {
  /** How a socket ended: 'end' (a FIN or close_notify: "file complete") or an error code such as ECONNRESET. */
  function ending(socket: Socket): Promise<string> {
    return new Promise((resolve) => {
      socket.on('data', () => undefined);
      socket.once('end', () => resolve('end'));
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
  }

  it('a plain upstream that resets mid-download: the TLS client sees a reset, not close_notify', async () => {
    setUp();
    const { pinhole, upstream, connectClient } = await rig('tls', 'plain', 'TLSv1.3');
    const data = connectClient();
    const upstreamData = await upstream.next();
    await data.ready;
    const clientEnd = ending(data.socket);
    upstreamData.socket.write(FILES['one-kib.bin']);
    await vi.waitFor(() => expect(pinhole.bytes.down).toBe(1024));
    upstreamData.socket.resetAndDestroy();
    expect(await clientEnd).toBe('ECONNRESET');
    await pinhole.closed();
    await expectPortsBack();
  });

  it('a TLS client whose TCP connection resets mid-upload: the TLS upstream sees a reset, not close_notify', async () => {
    setUp();
    const { pinhole, upstream } = await rig('tls', 'tls', 'TLSv1.3');
    const raw = net.connect({ host: '127.0.0.1', port: pinhole.clientPort as number });
    cleanup.push(() => raw.destroy());
    const client = tls.connect({ socket: raw, host: '127.0.0.1', ca: await certs.read(certs.caFile) });
    client.on('error', () => undefined);
    const upstreamData = await upstream.next();
    const upstreamEnd = ending(upstreamData.socket);
    await once(client, 'secureConnect');
    client.write(FILES['one-kib.bin']);
    await vi.waitFor(() => expect(pinhole.bytes.up).toBe(1024));
    raw.resetAndDestroy();
    expect(await upstreamEnd).toBe('ECONNRESET');
    await pinhole.closed();
    await expectPortsBack();
  });
});

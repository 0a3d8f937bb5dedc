/**
 * SiteTls on its own, with real TLS peers: client resumption by session ID
 * (what curl does under TLS 1.2), client certificates when a CA is set,
 * upstream certificate verification, and certificate reload under a live
 * connection (new handshakes get the new certificate; a bad file keeps the
 * old one, and the reason names the key).
 */
import { once } from 'node:events';
import net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { describe, expect, it, vi } from 'vitest';
import type { SiteTlsConfig } from '../../../src/config/types.js';
import { createLogger } from '../../../src/observe/logger.js';
import { Metrics } from '../../../src/observe/metrics.js';
import type { ServerSide } from '../../../src/tls/SiteTls.js';
import { SiteTls } from '../../../src/tls/SiteTls.js';
import { type CertFiles, tlsSection, useTestCerts } from '../../support/certs.js';
import { cleanupEachTest, clientControl, closed, startGatewayControl, startTlsUpstream, tlsClient } from '../../support/tlsPeers.js';

const log = createLogger('silent');
const testCerts = useTestCerts();
const cleanup = cleanupEachTest();
let certs: CertFiles;
let metrics: Metrics;

function siteTls(extra: Partial<SiteTlsConfig> = {}): SiteTls {
  certs = testCerts();
  metrics = new Metrics();
  return new SiteTls(tlsSection(certs, { upstream: 'explicit', upstreamCaFile: certs.caFile, ...extra }), { site: 'main', metrics, log });
}

async function listen(tls: SiteTls, side: ServerSide = 'client'): Promise<number> {
  const control = await startGatewayControl(tls, side);
  cleanup.push(() => control.close());
  return control.port;
}

async function handshakes(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const { labels, value } of (await metrics.tlsHandshakes.get()).values) counts[`${labels.side} ${labels.result}`] = value;
  return counts;
}

/** Connect; 'ok' with whether the session was resumed and the certificate's CN, or the error. */
async function attempt(port: number, options: Parameters<typeof tlsClient>[2]): Promise<{ ok: boolean; reused?: boolean; cn?: string; socket: TLSSocket }> {
  const socket = tlsClient(certs, port, options);
  cleanup.push(() => socket.destroy());
  const outcome = await new Promise<boolean>((resolve) => {
    socket.once('secureConnect', () => resolve(true));
    socket.once('error', () => resolve(false));
  });
  if (!outcome) return { ok: false, socket };
  const reused = socket.isSessionReused();
  const cn = String(socket.getPeerCertificate().subject?.CN);
  // TLS 1.3: the server may still refuse the client's certificate after the client's 'secureConnect'; an echo proves it did not.
  socket.write('ping');
  const answered = await new Promise<boolean>((resolve) => {
    socket.once('data', () => resolve(true));
    socket.once('close', () => resolve(false));
    socket.once('error', () => resolve(false));
  });
  return answered ? { ok: true, reused, cn, socket } : { ok: false, socket };
}

describe('clients resume their control session on data connections', () => {
  it('TLS 1.2 by session ID alone (no tickets, as curl does against Node): the shared session store', async () => {
    const tls = siteTls();
    const control = await clientControl(certs, await listen(tls), 'TLSv1.2', { noTickets: true });
    cleanup.push(() => control.socket.destroy());
    const data = await attempt(await listen(tls, 'data-client'), { maxVersion: 'TLSv1.2', noTickets: true, session: control.session() });
    expect(data).toMatchObject({ ok: true, reused: true });

    // Another site's cache does not know the session: the check can fail.
    const other = siteTls();
    const stranger = await attempt(await listen(other, 'data-client'), { maxVersion: 'TLSv1.2', noTickets: true, session: control.session() });
    expect(stranger).toMatchObject({ ok: true, reused: false });
  });

  it.each(['TLSv1.2', 'TLSv1.3'] as const)('%s with a ticket, sealed with the site-wide ticket keys', async (version) => {
    const tls = siteTls();
    const control = await clientControl(certs, await listen(tls), version);
    cleanup.push(() => control.socket.destroy());
    expect(await attempt(await listen(tls, 'data-client'), { maxVersion: version, session: control.session() })).toMatchObject({ ok: true, reused: true });
  });
});

describe('client certificates, when clientCaFile is set', () => {
  it.each(['TLSv1.2', 'TLSv1.3'] as const)('%s: a certificate from the CA passes; none or a stranger\'s fails, counted as "certificate"', async (version) => {
    const tls = siteTls({ clientCaFile: certs.caFile });
    const port = await listen(tls);
    expect((await attempt(port, { maxVersion: version, identity: [certs.clientCertFile, certs.clientKeyFile] })).ok).toBe(true);
    expect((await attempt(port, { maxVersion: version, identity: [certs.strangerCertFile, certs.strangerKeyFile] })).ok).toBe(false);
    expect((await attempt(port, { maxVersion: version })).ok).toBe(false);
    await vi.waitFor(async () => expect(await handshakes()).toEqual({ 'client ok': 1, 'client certificate': 2 }));
  });

  it('without clientCaFile no certificate is asked for', async () => {
    const tls = siteTls();
    expect((await attempt(await listen(tls), { maxVersion: 'TLSv1.3' })).ok).toBe(true);
  });
});

describe('the upstream certificate is verified', () => {
  async function upstreamHandshake(tls: SiteTls): Promise<{ ok: boolean; reason?: string }> {
    const upstream = await startTlsUpstream(certs, { maxVersion: 'TLSv1.3', requireReuse: false });
    cleanup.push(() => upstream.close());
    const raw = net.connect({ host: '127.0.0.1', port: upstream.port });
    await once(raw, 'connect');
    const handshake = tls.connect(raw, 'upstream', { host: '127.0.0.1' });
    cleanup.push(() => handshake.socket.destroy());
    const outcome = await handshake.outcome;
    return outcome.ok ? { ok: true } : { ok: false, reason: outcome.reason };
  }

  it('against upstreamCaFile: the right CA passes, another fails as "certificate"', async () => {
    expect(await upstreamHandshake(siteTls())).toEqual({ ok: true });
    expect(await upstreamHandshake(siteTls({ upstreamCaFile: certs.strangerCaFile }))).toEqual({ ok: false, reason: 'certificate' });
    expect(await handshakes()).toEqual({ 'upstream certificate': 1 });
  });

  it('against the system CAs when upstreamCaFile is "" (a test CA is not one of them), or not at all with upstreamInsecure', async () => {
    expect(await upstreamHandshake(siteTls({ upstreamCaFile: '' }))).toEqual({ ok: false, reason: 'certificate' });
    expect(await upstreamHandshake(siteTls({ upstreamCaFile: '', upstreamInsecure: true }))).toEqual({ ok: true });
  });
});

describe('reload', () => {
  it('a new certificate serves new handshakes while a live connection goes on; a bad key keeps the current one', async () => {
    const tls = siteTls();
    const port = await listen(tls);
    const live = await attempt(port, { maxVersion: 'TLSv1.3' });
    expect(live).toMatchObject({ ok: true, cn: 'ftp-alg test server' });

    expect(tls.reload({ ...tls.config, certFile: certs.certFile2, keyFile: certs.keyFile2 })).toEqual({ ok: true });
    expect(await attempt(port, { maxVersion: 'TLSv1.3' })).toMatchObject({ ok: true, cn: 'ftp-alg test server (rotated)' });

    const bad = tls.reload({ ...tls.config, certFile: certs.certFile2, keyFile: certs.lonelyKeyFile });
    expect(bad.ok).toBe(false);
    expect(bad.ok === false && bad.reason).toMatch(/^keyFile: .* does not match the certificate/);
    const unreadable = tls.reload({ ...tls.config, certFile: `${certs.dir}/missing.crt` });
    expect(unreadable.ok === false && unreadable.reason).toMatch(/^certFile: cannot read .*ENOENT/);
    expect(await attempt(port, { maxVersion: 'TLSv1.3' })).toMatchObject({ ok: true, cn: 'ftp-alg test server (rotated)' });

    // The connection made before the reloads still carries bytes both ways.
    live.socket.write('still here');
    const [echo] = (await once(live.socket, 'data')) as [Buffer];
    expect(echo.toString()).toBe('still here');
    live.socket.end();
    await closed(live.socket);
  });

  it('a session from before a reload is still resumed after it (same ticket keys and session cache)', async () => {
    const tls = siteTls();
    const control = await clientControl(certs, await listen(tls), 'TLSv1.3');
    cleanup.push(() => control.socket.destroy());
    expect(tls.reload({ ...tls.config, certFile: certs.certFile2, keyFile: certs.keyFile2 })).toEqual({ ok: true });
    expect(await attempt(await listen(tls, 'data-client'), { maxVersion: 'TLSv1.3', session: control.session() })).toMatchObject({ ok: true, reused: true });
  });
});

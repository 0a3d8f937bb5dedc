/**
 * FTPS end to end through the gateway (issue 10): basic-ftp with
 * `secure: true` (AUTH TLS) and `secure: 'implicit'` to ftp-srv, plain and
 * FTPS upstream, PASV and EPSV, 0 B / 1 KiB / 8 MiB both ways by sha256,
 * every data connection under PROT P. (basic-ftp has no active mode; TLS
 * on active pinholes is covered in pinholeTls.test.ts.)
 */
import { copyFileSync, readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { Readable } from 'node:stream';
import { Client, enterPassiveModeIPv4, enterPassiveModeIPv6, type FTPContext } from 'basic-ftp';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/index.js';
import { counterTotal, SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { downloadToBuffer, sha256 } from '../../support/ftpClient.js';
import { portRanges } from '../../support/ports.js';
import { putFiles, startUpstream, type TestUpstream } from '../../support/upstream.js';
import { type CertFiles, useTestCerts } from '../../support/certs.js';
import { cleanupEachTest } from '../../support/tlsPeers.js';
import { ControlClient } from '../../support/control.js';
import { startScriptedUpstream } from '../../support/scripted.js';
import { FILES, NAMES } from '../../support/transferFiles.js';

const [passivePorts, activePorts] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];
const testCerts = useTestCerts();
const cleanup = cleanupEachTest();

type Secure = true | 'implicit';
type Upstream = 'plain' | 'explicit' | 'implicit';

async function gatewayFor(certs: CertFiles, upstream: TestUpstream, secure: Secure, upstreamTls: Upstream): Promise<TestGateway> {
  const gw = await startGateway({
    upstream: { host: upstream.host, port: upstream.port },
    passivePorts,
    activePorts,
    tls: {
      certFile: certs.certFile,
      keyFile: certs.keyFile,
      implicit: secure === 'implicit',
      upstream: upstreamTls,
      ...(upstreamTls !== 'plain' && { upstreamCaFile: certs.caFile }),
      client: 'required',
    },
  });
  cleanup.push(() => gw.close());
  return gw;
}

async function ftpsClient(certs: CertFiles, port: number, secure: Secure, mode: 'PASV' | 'EPSV'): Promise<Client> {
  const client = new Client(10_000);
  const enter = mode === 'PASV' ? enterPassiveModeIPv4 : enterPassiveModeIPv6;
  client.prepareTransfer = (ftp: FTPContext) => enter(ftp);
  cleanup.push(() => client.close());
  await client.access({ host: '127.0.0.1', port, user: 'anonymous', password: 'ftps@example.org', secure, secureOptions: { ca: readFileSync(certs.caFile) } });
  return client;
}

async function tlsUpstream(certs: CertFiles, tls: Upstream): Promise<TestUpstream> {
  const pem = { key: readFileSync(certs.keyFile), cert: readFileSync(certs.certFile) };
  const upstream = tls === 'plain' ? await startUpstream() : await startUpstream({ tls: pem, implicit: tls === 'implicit' });
  cleanup.push(() => upstream.close());
  return upstream;
}

const CASES = (['implicit', true] as const).flatMap((secure) =>
  (['plain', 'explicit', 'implicit'] as const).flatMap((upstream) => (['PASV', 'EPSV'] as const).map((mode) => ({ secure, upstream, mode }))),
);

describe('FTPS through the gateway', () => {
  it.each(CASES)('secure $secure, upstream $upstream, $mode: 0 B / 1 KiB / 8 MiB both ways', async ({ secure, upstream: upstreamTls, mode }) => {
    const certs = testCerts();
    const upstream = await tlsUpstream(certs, upstreamTls);
    putFiles(upstream, FILES);
    const gw = await gatewayFor(certs, upstream, secure, upstreamTls);
    const client = await ftpsClient(certs, gw.port, secure, mode);
    for (const name of NAMES) {
      expect(sha256(await downloadToBuffer(client, name))).toBe(sha256(FILES[name]));
      await client.uploadFrom(Readable.from([FILES[name]]), `up-${name}`);
      expect(sha256(readFileSync(`${upstream.root}/up-${name}`))).toBe(sha256(FILES[name]));
    }
    // Every data connection was TLS toward the client, and toward the upstream when it speaks FTPS.
    const handshakes = (await gw.gateway.metrics.tlsHandshakes.get()).values;
    const count = (side: string) => handshakes.filter((v) => v.labels.side === side && v.labels.result === 'ok').reduce((n, v) => n + v.value, 0);
    expect(count('client')).toBe(1);
    expect(count('data-client')).toBe(NAMES.length * 2);
    expect(count('data-upstream')).toBe(upstreamTls === 'plain' ? 0 : NAMES.length * 2);
    expect(await counterTotal(gw.gateway, 'ftp_alg_pinholes_open')).toBe(0);
  });
});


describe('FTPS site policies through the gateway', () => {
  it('with clientCaFile, a client without a certificate is refused and one with a certificate from the CA gets through', async () => {
    const certs = testCerts();
    const upstream = await tlsUpstream(certs, 'plain');
    putFiles(upstream, { 'one-kib.bin': FILES['one-kib.bin'] });
    const gw = await startGateway({
      upstream: { host: upstream.host, port: upstream.port },
      passivePorts,
      activePorts,
      tls: { certFile: certs.certFile, keyFile: certs.keyFile, clientCaFile: certs.caFile, client: 'required' },
    });
    cleanup.push(() => gw.close());
    await expect(ftpsClient(certs, gw.port, true, 'EPSV')).rejects.toThrow();
    const identity = { cert: readFileSync(certs.clientCertFile), key: readFileSync(certs.clientKeyFile) };
    const client = new Client(10_000);
    cleanup.push(() => client.close());
    await client.access({ host: '127.0.0.1', port: gw.port, user: 'anonymous', password: 'x', secure: true, secureOptions: { ca: readFileSync(certs.caFile), ...identity } });
    expect(sha256(await downloadToBuffer(client, 'one-kib.bin'))).toBe(sha256(FILES['one-kib.bin']));
  });

  it('a reload re-reads renewed certificate files: new sessions get the new certificate, a live session goes on', async () => {
    const certs = testCerts();
    const upstream = await tlsUpstream(certs, 'plain');
    putFiles(upstream, { 'one-kib.bin': FILES['one-kib.bin'] });
    const live = { certFile: `${certs.dir}/live.crt`, keyFile: `${certs.dir}/live.key` };
    copyFileSync(certs.certFile, live.certFile);
    copyFileSync(certs.keyFile, live.keyFile);
    const site = { upstream: { host: upstream.host, port: upstream.port }, passivePorts, activePorts, tls: { ...live } };
    const gw = await startGateway(site);
    cleanup.push(() => gw.close());
    const before = await ftpsClient(certs, gw.port, true, 'EPSV');
    const cn = (c: Client) => (c.ftp.socket as TLSSocket).getPeerCertificate().subject.CN;
    expect(cn(before)).toBe('ftp-alg test server');

    // An ACME renewal: the same file names, new contents; then SIGHUP's reload with the unchanged config.
    copyFileSync(certs.certFile2, live.certFile);
    copyFileSync(certs.keyFile2, live.keyFile);
    await gw.gateway.reload(parseConfig({ log: { level: 'silent' }, sites: [{ name: SITE, listen: { host: '127.0.0.1', port: 0 }, ...site }] }));

    const after = await ftpsClient(certs, gw.port, true, 'EPSV');
    expect(cn(after)).toBe('ftp-alg test server (rotated)');
    expect(sha256(await downloadToBuffer(before, 'one-kib.bin'))).toBe(sha256(FILES['one-kib.bin']));
    expect(sha256(await downloadToBuffer(after, 'one-kib.bin'))).toBe(sha256(FILES['one-kib.bin']));
  });
});

describe('a "required" site keeps cleartext credentials off the wire', () => {
  it('USER and PASS before AUTH TLS are answered by the gateway and never reach the upstream', async () => {
    const certs = testCerts();
    const scripted = await startScriptedUpstream();
    cleanup.push(() => scripted.close());
    const gw = await startGateway({
      upstream: { host: scripted.host, port: scripted.port },
      passivePorts,
      activePorts,
      tls: { certFile: certs.certFile, keyFile: certs.keyFile, client: 'required' },
    });
    cleanup.push(() => gw.close());
    const client = await ControlClient.greeted(gw.port);
    cleanup.push(() => client.destroy());
    const upstreamControl = await scripted.connection();
    expect((await client.command('USER alice')).code).toBe(530);
    expect((await client.command('PASS secret')).code).toBe(530);
    expect((await client.command('NOOP')).code).toBe(200); // the session goes on, and the upstream still answers what is allowed
    expect(upstreamControl.lines.some((l) => /^(USER|PASS)/i.test(l))).toBe(false);
    expect(upstreamControl.received().includes('secret')).toBe(false);
  });
});

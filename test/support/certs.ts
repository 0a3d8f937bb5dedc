/**
 * Test certificates, made at test time with the `openssl` CLI in a temp
 * directory: a tiny CA, server certificates for the loopback and
 * documentation addresses (two of them, for rotation), a client certificate
 * signed by the CA, one signed by a stranger CA, and a key that matches no
 * certificate. P-256 keys: fast to make, fast to handshake.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll } from 'vitest';
import type { SiteTlsConfig } from '../../src/config/types.js';

const run = promisify(execFile);

/**
 * Addresses a server certificate names: loopback for integration tests, documentation ranges for the netns
 * suites (test/e2e/lib/topology.ts: the edge's 203.0.113.1 and 2001:db8:1::1, the upstream's 192.0.2.10).
 */
const SERVER_IPS = ['127.0.0.1', '::1', '192.0.2.1', '192.0.2.10', '198.51.100.1', '198.51.100.10', '203.0.113.1', '203.0.113.10', '2001:db8::1', '2001:db8::10', '2001:db8:1::1'];

export interface CertFiles {
  readonly dir: string;
  /** The CA that signed the server and client certificates. */
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** A second server certificate and key (same CA), for rotation tests. */
  readonly certFile2: string;
  readonly keyFile2: string;
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  /** A CA that signed none of the server certificates: an upstream verified against it fails. */
  readonly strangerCaFile: string;
  /** A client certificate from a CA the gateway does not trust. */
  readonly strangerCertFile: string;
  readonly strangerKeyFile: string;
  /** A key that belongs to no certificate above. */
  readonly lonelyKeyFile: string;
  read(file: string): Promise<Buffer>;
  remove(): Promise<void>;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

async function newKey(dir: string, name: string): Promise<string> {
  await openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', name]);
  return join(dir, name);
}

async function signed(dir: string, name: string, cn: string, ca: string, extensions: string): Promise<[string, string]> {
  const key = await newKey(dir, `${name}.key`);
  await openssl(dir, ['req', '-new', '-key', key, '-subj', `/CN=${cn}`, '-out', `${name}.csr`]);
  await writeFile(join(dir, `${name}.ext`), extensions);
  await openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', String(Date.now() + Math.floor(Math.random() * 1e6)),
    '-days', '2', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`,
  ]);
  return [join(dir, `${name}.crt`), key];
}

async function authority(dir: string, name: string, cn: string): Promise<string> {
  const key = await newKey(dir, `${name}.key`);
  await openssl(dir, [
    'req', '-x509', '-new', '-key', key, '-subj', `/CN=${cn}`, '-days', '2', '-sha256',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', `${name}.crt`,
  ]);
  return join(dir, `${name}.crt`);
}

export async function makeCerts(): Promise<CertFiles> {
  const dir = await mkdtemp(join(tmpdir(), 'ftp-alg-certs-'));
  const caFile = await authority(dir, 'ca', 'ftp-alg test CA');
  const strangerCaFile = await authority(dir, 'stranger-ca', 'someone else');
  const serverExt = `basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=${SERVER_IPS.map((ip) => `IP:${ip}`).join(',')}\n`;
  const clientExt = 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n';
  const [[certFile, keyFile], [certFile2, keyFile2], [clientCertFile, clientKeyFile], [strangerCertFile, strangerKeyFile]] = await Promise.all([
    signed(dir, 'server', 'ftp-alg test server', 'ca', serverExt),
    signed(dir, 'server2', 'ftp-alg test server (rotated)', 'ca', serverExt),
    signed(dir, 'client', 'ftp-alg test client', 'ca', clientExt),
    signed(dir, 'stranger', 'stranger client', 'stranger-ca', clientExt),
  ]);
  const lonelyKeyFile = await newKey(dir, 'lonely.key');
  return {
    dir,
    caFile,
    certFile,
    keyFile,
    certFile2,
    keyFile2,
    clientCertFile,
    clientKeyFile,
    strangerCaFile,
    strangerCertFile,
    strangerKeyFile,
    lonelyKeyFile,
    read: (file) => readFile(file),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Certificates made once for the calling test file (beforeAll) and removed after it (afterAll). */
export function useTestCerts(): () => CertFiles {
  let made: CertFiles | undefined;
  beforeAll(async () => {
    made = await makeCerts();
  });
  afterAll(async () => {
    await made?.remove();
  });
  return () => {
    if (made === undefined) throw new Error('certificates are made in beforeAll');
    return made;
  };
}

/** A validated-looking `tls` section on these certificates: every key at its default, `extra` on top. */
export function tlsSection(certs: CertFiles, extra: Partial<SiteTlsConfig> = {}): SiteTlsConfig {
  return {
    certFile: certs.certFile,
    keyFile: certs.keyFile,
    client: 'optional',
    implicit: false,
    upstream: 'plain',
    upstreamCaFile: '',
    upstreamInsecure: false,
    clientCaFile: '',
    minVersion: 'TLSv1.2',
    requireProtP: false,
    allowCcc: false,
    ...extra,
  };
}

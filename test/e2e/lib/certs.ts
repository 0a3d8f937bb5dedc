// TLS material for the FTPS suites, made at test time with the `openssl` CLI
// in a scratch directory: a test CA, a certificate for the server namespace
// (192.0.2.10, shown by vsftpd to the gateway) and one for the edge's client
// side (203.0.113.1 and 2001:db8:1::1, shown by the gateway to clients).
// Clients and the gateway verify against the CA, by IP address (no SNI names
// an IP). P-256 keys: quick to make and to handshake.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADDR, run } from './topology.js';

const VALID_DAYS = '2';
const OPENSSL_TIMEOUT_MS = 20_000;

export interface KeyPair {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface E2eCerts {
  readonly dir: string;
  /** The CA that signed both certificates below. */
  readonly caFile: string;
  /** The upstream's certificate: IP 192.0.2.10. */
  readonly server: KeyPair;
  /** The gateway's certificate toward clients: IP 203.0.113.1 and 2001:db8:1::1. */
  readonly edge: KeyPair;
  remove(): Promise<void>;
}

async function openssl(dir: string, args: readonly string[]): Promise<void> {
  const r = await run('openssl', args, { cwd: dir, timeoutMs: OPENSSL_TIMEOUT_MS });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
}

async function newKey(dir: string, name: string): Promise<string> {
  await openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`]);
  return join(dir, `${name}.key`);
}

/** A leaf certificate for `ips`, signed by the CA in `dir`. */
async function leaf(dir: string, name: string, ips: readonly string[]): Promise<KeyPair> {
  const keyFile = await newKey(dir, name);
  await openssl(dir, ['req', '-new', '-key', keyFile, '-subj', `/CN=ftp-alg e2e ${name}`, '-out', `${name}.csr`]);
  const ext = [
    'basicConstraints=CA:FALSE',
    'keyUsage=digitalSignature',
    'extendedKeyUsage=serverAuth',
    `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(',')}`,
    '',
  ].join('\n');
  await writeFile(join(dir, `${name}.ext`), ext);
  await openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', VALID_DAYS, '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`,
  ]);
  return { certFile: join(dir, `${name}.crt`), keyFile };
}

export async function createCerts(): Promise<E2eCerts> {
  const dir = await mkdtemp(join(tmpdir(), 'ftpalg-e2e-certs-'));
  try {
    const caKey = await newKey(dir, 'ca');
    await openssl(dir, [
      'req', '-x509', '-new', '-key', caKey, '-subj', '/CN=ftp-alg e2e test CA', '-days', VALID_DAYS, '-sha256',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', 'ca.crt',
    ]);
    const server = await leaf(dir, 'server', [ADDR.server]);
    const edge = await leaf(dir, 'edge', [ADDR.edgePublic, ADDR.edge6]);
    return { dir, caFile: join(dir, 'ca.crt'), server, edge, remove: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

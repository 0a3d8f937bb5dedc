// TLS material for the FTPS figures, made with the openssl CLI: a CA, a
// certificate for the upstream (vsftpd, 192.0.2.10) and one for the edge
// (203.0.113.1). P-256 keys, as the e2e suite uses.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { must } from './proc.mjs';
import { ADDR } from './topology.mjs';

// Every path is absolute (the CA's serial file lands next to ca.crt).
const openssl = (args) => must('openssl', args, { timeoutMs: 20_000 });

async function ecKey(dir, name) {
  const file = join(dir, `${name}.key`);
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
  return file;
}

async function signedFor(dir, name, ip) {
  const keyFile = await ecKey(dir, name);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const certFile = join(dir, `${name}.crt`);
  await openssl(['req', '-new', '-key', keyFile, '-subj', `/CN=bench ${name}`, '-out', csr]);
  await writeFile(ext, `basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:${ip}\n`);
  await openssl(['x509', '-req', '-in', csr, '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-days', '2', '-sha256', '-extfile', ext, '-out', certFile]);
  return { certFile, keyFile };
}

/** Writes the CA and both certificates into `dir`. */
export async function makeCerts(dir) {
  const caKey = await ecKey(dir, 'ca');
  const caFile = join(dir, 'ca.crt');
  await openssl(['req', '-x509', '-new', '-key', caKey, '-subj', '/CN=bench CA', '-days', '2', '-sha256', '-out', caFile]);
  return { caFile, server: await signedFor(dir, 'server', ADDR.server), edge: await signedFor(dir, 'edge', ADDR.edgePublic) };
}

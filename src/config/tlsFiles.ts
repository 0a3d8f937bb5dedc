/**
 * The files of a site's `tls` section, read and checked: each readable, the
 * certificate a certificate, the key a key that matches it, each CA bundle
 * at least one certificate. Used by validation (a bad file refuses the
 * config, naming the key) and by every reload (a bad file keeps the old
 * context). Synchronous: it runs at start-up and on SIGHUP only.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { SiteTlsConfig } from './types.js';

export type TlsFileKey = 'certFile' | 'keyFile' | 'clientCaFile' | 'upstreamCaFile';

/** A file of the tls section that cannot be used; `key` names it. */
export class TlsFileError extends Error {
  readonly code = 'ERR_ALG_TLS_FILE';
  override readonly name = 'TlsFileError';

  constructor(
    readonly key: TlsFileKey,
    message: string,
  ) {
    super(message);
  }
}

export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Absent: no client certificates asked for. */
  readonly clientCa?: Buffer;
  /** Absent: the system CAs. */
  readonly upstreamCa?: Buffer;
  /** The leaf certificate, for logs (subject, expiry). */
  readonly leaf: X509Certificate;
}

export function readTlsMaterial(tls: Pick<SiteTlsConfig, TlsFileKey>): TlsMaterial {
  const cert = read(tls, 'certFile');
  const key = read(tls, 'keyFile');
  const leaf = certificate(cert, 'certFile');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new TlsFileError('keyFile', `${tls.keyFile} is not a PEM private key (${(err as Error).message})`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsFileError('keyFile', `${tls.keyFile} does not match the certificate in ${tls.certFile}`);
  }
  const clientCa = optionalCa(tls, 'clientCaFile');
  const upstreamCa = optionalCa(tls, 'upstreamCaFile');
  return { cert, key, leaf, ...(clientCa && { clientCa }), ...(upstreamCa && { upstreamCa }) };
}

function read(tls: Pick<SiteTlsConfig, TlsFileKey>, key: TlsFileKey): Buffer {
  const path = tls[key];
  if (path === '') throw new TlsFileError(key, 'must name a PEM file');
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TlsFileError(key, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The first certificate of a PEM bundle. */
function certificate(pem: Buffer, key: TlsFileKey): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new TlsFileError(key, `holds no PEM certificate (${(err as Error).message})`);
  }
}

function optionalCa(tls: Pick<SiteTlsConfig, TlsFileKey>, key: 'clientCaFile' | 'upstreamCaFile'): Buffer | undefined {
  if (tls[key] === '') return undefined;
  const pem = read(tls, key);
  certificate(pem, key);
  return pem;
}

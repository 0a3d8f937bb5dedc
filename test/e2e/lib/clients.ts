// Real FTP clients run inside a namespace: curl, lftp and Python's ftplib.
// Each is forced to honour the address in a 227 (the default of modern
// clients is to ignore it, which hides a broken rewrite) and to use exactly
// the data-connection mode asked for; the transcript of control lines is
// parsed so a test can assert which mode really ran.
//
// With `tls` each speaks FTPS as strictly as it can: explicit (AUTH TLS) or
// implicit (TLS from the first byte), the control connection and every data
// connection protected (PBSZ 0, PROT P), the server certificate verified
// against a CA by its IP address, never a fallback to cleartext.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDR, exec, type ExecResult } from './topology.js';

export type ClientKind = 'curl' | 'lftp' | 'ftplib';
export type Mode = 'pasv' | 'epsv' | 'port' | 'eprt';
export type Op = 'get' | 'put' | 'list' | 'nlst';

export const CLIENT_KINDS: readonly ClientKind[] = ['curl', 'lftp', 'ftplib'];
export const CLIENT_BINARIES: Record<ClientKind, string> = {
  curl: 'curl',
  lftp: 'lftp',
  ftplib: existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3',
};
const FTPLIB_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'ftplib_client.py');

/** Hard bound on one client run: a broken data path fails, never hangs. */
export const CLIENT_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_S = 10;

export interface Target {
  host: string;
  port: number;
  user: string;
  password: string;
}

export interface ClientTls {
  /** "explicit": AUTH TLS on the control connection; "implicit": TLS from the first byte. */
  kind: 'explicit' | 'implicit';
  /** PEM CA the server certificate must chain to. */
  caFile: string;
  /** Highest TLS version offered ("1.3" unless told). */
  maxVersion?: '1.2' | '1.3';
  /** curl only: false protects the control connection alone (`--ftp-ssl-control`: PROT C, data in clear). */
  protectData?: boolean;
}

export interface ClientRequest {
  client: ClientKind;
  mode: Mode;
  op: Op;
  target: Target;
  /** Absolute path on the server, e.g. /pub/1k.bin or /upload/x.bin. */
  remote: string;
  /** Local file to write (get) or read (put). */
  local?: string;
  /**
   * An FTP proxy (a forward site) the client goes through to `target`, in its
   * own proxy mode: lftp's `ftp:proxy`, curl's and ftplib's `USER user@host`.
   */
  proxy?: { host: string; port: number };
  timeoutMs?: number;
  /** FTPS; cleartext FTP when absent. */
  tls?: ClientTls;
}

export interface ControlLine {
  dir: 'sent' | 'received';
  line: string;
}

export interface ClientResult extends ExecResult {
  request: ClientRequest;
  /** Control-channel lines the client printed, in order. */
  transcript: ControlLine[];
  /** Data-connection commands the client sent (PASV, EPSV, PORT, EPRT). */
  dataCommands: string[];
  /** For list/nlst: the listing lines. */
  listing: string[];
  /** ftplib only: the address at the other end of each data connection. */
  dataPeers: string[];
  /** TLS versions the client reported, one per TLS connection (curl and ftplib; lftp prints none). */
  tlsVersions: string[];
  /**
   * curl only: server certificates received, one per full handshake. A
   * connection that resumed an earlier session receives none, so one
   * certificate over several TLS connections means every data connection
   * resumed the control connection's session.
   */
  tlsCertificates: number;
}

const DATA_VERBS = new Set(['PASV', 'EPSV', 'PORT', 'EPRT']);
const EXPECTED_VERB: Record<Mode, string> = { pasv: 'PASV', epsv: 'EPSV', port: 'PORT', eprt: 'EPRT' };

export type Family = 4 | 6;

let curlVersion: string | undefined;
/** The installed curl's version ("7.88.1"), or "" when it cannot be run. */
function installedCurl(): string {
  if (curlVersion === undefined) {
    try {
      curlVersion = /^curl (\S+)/.exec(execFileSync(CLIENT_BINARIES.curl, ['--version'], { encoding: 'utf8' }))?.[1] ?? '';
    } catch {
      curlVersion = '';
    }
  }
  return curlVersion;
}

/**
 * Why a client cannot be made to send a mode's command on a control
 * connection of the given family (over FTPS when `tls`), or undefined when
 * it can. PASV and PORT name only IPv4 addresses, so on IPv6 curl and lftp
 * send EPSV and EPRT instead, whatever they are told.
 */
export function unsupported(client: ClientKind, mode: Mode, family: Family = 4, tls = false): string | undefined {
  if (client === 'lftp' && mode === 'eprt' && family === 4) return 'lftp sends EPRT only on an IPv6 control connection';
  if (tls && client === 'curl' && (mode === 'port' || mode === 'eprt') && /^7\.8[78]\./.test(installedCurl())) {
    return `curl ${installedCurl()} accepts an active data connection under PROT P but never starts TLS on it (curl/curl#10666; fails straight to vsftpd too)`;
  }
  if (family === 6 && client !== 'ftplib' && (mode === 'pasv' || mode === 'port')) {
    const instead = mode === 'pasv' ? 'EPSV' : 'EPRT';
    return `${client} sends ${instead} instead of ${mode.toUpperCase()} on IPv6 (${mode.toUpperCase()} names only IPv4)`;
  }
  return undefined;
}

/** Whether a client can be made to use a mode over a family (IPv4 unless told). */
export function supports(client: ClientKind, mode: Mode, family: Family = 4): boolean {
  return unsupported(client, mode, family) === undefined;
}

export function familyOfHost(host: string): Family {
  return host.includes(':') ? 6 : 4;
}

export function expectedVerb(mode: Mode): string {
  return EXPECTED_VERB[mode];
}

/** True when the client sent the mode's command and no other data command. */
export function usedMode(result: ClientResult): boolean {
  const want = EXPECTED_VERB[result.request.mode];
  return result.dataCommands.length > 0 && result.dataCommands.every((v) => v === want);
}

function hostInUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function curlTlsArgs(tls: ClientTls | undefined): string[] {
  if (tls === undefined) return [];
  return [tls.protectData === false ? '--ftp-ssl-control' : '--ssl-reqd', '--cacert', tls.caFile, '--tls-max', tls.maxVersion ?? '1.3'];
}

function curlArgs(req: ClientRequest): string[] {
  const { target } = req;
  const scheme = req.tls?.kind === 'implicit' ? 'ftps' : 'ftp';
  // `--user` ends the user at its first colon: a user naming an IPv6 server (a forward site's
  // `u@[2001:db8::1]`) travels percent-encoded in the URL instead, which curl decodes.
  const inUrl = target.user.includes(':');
  const credentials = inUrl ? `${encodeURIComponent(target.user)}:${encodeURIComponent(target.password)}@` : '';
  const url = `${scheme}://${credentials}${hostInUrl(target.host)}:${target.port}${req.remote}`;
  const args = [
    '-sS',
    '-v',
    '--max-time', String(Math.floor((req.timeoutMs ?? CLIENT_TIMEOUT_MS) / 1000) - 2),
    '--connect-timeout', String(CONNECT_TIMEOUT_S),
    ...(inUrl ? [] : ['--user', `${target.user}:${target.password}`]),
    '--no-ftp-skip-pasv-ip', // honour the address in a 227
    ...curlTlsArgs(req.tls),
  ];
  switch (req.mode) {
    case 'pasv':
      args.push('--ftp-pasv', '--disable-epsv');
      break;
    case 'epsv':
      args.push('--ftp-pasv');
      break;
    case 'port':
      args.push('--ftp-port', '-', '--disable-eprt');
      break;
    case 'eprt':
      args.push('--ftp-port', '-');
      break;
  }
  switch (req.op) {
    case 'get':
      args.push('-o', mustLocal(req), url);
      break;
    case 'put':
      args.push('-T', mustLocal(req), url);
      break;
    case 'list':
      args.push(url.endsWith('/') ? url : `${url}/`);
      break;
    case 'nlst':
      args.push('--list-only', url.endsWith('/') ? url : `${url}/`);
      break;
  }
  return args;
}

function lftpTlsSettings(tls: ClientTls | undefined): string[] {
  if (tls === undefined) return ['set ftp:ssl-allow no'];
  const priority = tls.maxVersion === '1.2' ? 'NORMAL:-VERS-ALL:+VERS-TLS1.2' : 'NORMAL';
  return [
    'set ftp:ssl-allow yes',
    'set ftp:ssl-force yes',
    'set ftp:ssl-protect-data yes',
    'set ftp:ssl-protect-list yes',
    'set ssl:verify-certificate yes',
    'set ssl:check-hostname yes',
    `set ssl:ca-file ${tls.caFile}`,
    `set ssl:priority ${priority}`,
  ];
}

function lftpScript(req: ClientRequest): string {
  const { target, proxy } = req;
  const scheme = req.tls?.kind === 'implicit' ? 'ftps' : 'ftp';
  const passive = req.mode === 'pasv' || req.mode === 'epsv';
  const lines = [
    'set cmd:fail-exit yes',
    'set cmd:interactive no',
    'set net:max-retries 1',
    'set net:persist-retries 0',
    `set net:timeout ${CONNECT_TIMEOUT_S}`,
    'set net:reconnect-interval-base 1',
    ...lftpTlsSettings(req.tls),
    `set ftp:passive-mode ${passive ? 'on' : 'off'}`,
    `set ftp:prefer-epsv ${req.mode === 'epsv' ? 'yes' : 'no'}`,
    'set ftp:ignore-pasv-address no',
    'set ftp:fix-pasv-address no',
    'set xfer:clobber on',
    ...(proxy === undefined ? [] : [`set ftp:proxy ftp://${hostInUrl(proxy.host)}:${proxy.port}`]),
    // Port 21 is left out: through ftp:proxy lftp sends `USER user@host:port` for a port in the URL, which
    // for an IPv6 host is the unbracketed, ambiguous `u@2001:db8::10:21` (taken as one address).
    `open -u ${target.user},${target.password} ${scheme}://${hostInUrl(target.host)}${target.port === 21 ? '' : `:${target.port}`}`,
  ];
  switch (req.op) {
    case 'get':
      lines.push(`get ${req.remote} -o ${mustLocal(req)}`);
      break;
    case 'put':
      lines.push(`put ${mustLocal(req)} -o ${req.remote}`);
      break;
    case 'list':
      lines.push(`ls ${req.remote}`);
      break;
    case 'nlst':
      lines.push(`nlist ${req.remote}`);
      break;
  }
  lines.push('bye');
  return lines.join('; ');
}

function ftplibArgs(req: ClientRequest): string[] {
  const { target } = req;
  const args = [
    FTPLIB_SCRIPT,
    '--host', target.host,
    '--port', String(target.port),
    '--user', target.user,
    '--password', target.password,
    '--mode', req.mode,
    '--op', req.op,
    '--remote', req.remote,
    '--timeout', String(CONNECT_TIMEOUT_S),
  ];
  if (req.local !== undefined) args.push('--local', req.local);
  if (req.tls !== undefined) {
    args.push('--tls', req.tls.kind, '--ca-file', req.tls.caFile, '--tls-max', req.tls.maxVersion ?? '1.3');
  }
  return args;
}

function mustLocal(req: ClientRequest): string {
  if (req.local === undefined) throw new Error(`${req.op} needs a local path`);
  return req.local;
}

/** Control lines from each client's own debug format. */
function parseTranscript(
  client: ClientKind,
  r: ExecResult,
): { transcript: ControlLine[]; listing: string[]; dataPeers: string[]; tlsVersions: string[]; tlsCertificates: number } {
  const transcript: ControlLine[] = [];
  const listing: string[] = [];
  const dataPeers: string[] = [];
  const tlsVersions: string[] = [];
  let tlsCertificates = 0;
  if (client === 'curl') {
    for (const line of r.stderr.split('\n')) {
      if (line.startsWith('> ')) transcript.push({ dir: 'sent', line: line.slice(2).trimEnd() });
      else if (line.startsWith('< ')) transcript.push({ dir: 'received', line: line.slice(2).trimEnd() });
      const tls = /^\* SSL connection using (TLSv[\d.]+)/.exec(line);
      if (tls?.[1] !== undefined) tlsVersions.push(tls[1]);
      if (/^\* TLSv[\d.]+ \(IN\), TLS handshake, Certificate \(11\)/.test(line)) tlsCertificates++;
    }
    listing.push(...r.stdout.split('\n').filter((l) => l.length > 0));
  } else if (client === 'lftp') {
    for (const line of r.stderr.split('\n')) {
      if (line.startsWith('---> ')) transcript.push({ dir: 'sent', line: line.slice(5).trimEnd() });
      else if (line.startsWith('<--- ')) transcript.push({ dir: 'received', line: line.slice(5).trimEnd() });
    }
    listing.push(...r.stdout.split('\n').filter((l) => l.length > 0));
  } else {
    for (const line of r.stdout.split('\n')) {
      const m = /^\*(cmd|put|resp|data|peer|tls)\* (.*)$/.exec(line);
      if (m === null || m[1] === undefined || m[2] === undefined) continue;
      if (m[1] === 'tls') {
        tlsVersions.push(m[2]);
        continue;
      }
      const body = m[1] === 'data' || m[1] === 'peer' ? m[2] : unquotePython(m[2]);
      if (m[1] === 'cmd') transcript.push({ dir: 'sent', line: body });
      else if (m[1] === 'resp') transcript.push({ dir: 'received', line: body });
      else if (m[1] === 'data') listing.push(body);
      else if (m[1] === 'peer') dataPeers.push(body);
    }
  }
  return { transcript, listing, dataPeers, tlsVersions, tlsCertificates };
}

function unquotePython(repr: string): string {
  return repr.length >= 2 && (repr.startsWith("'") || repr.startsWith('"')) ? repr.slice(1, -1) : repr;
}

/** Runs one client operation inside the namespace `ns`. Never throws for a failed transfer. */
export async function runClient(ns: string, request: ClientRequest): Promise<ClientResult> {
  const req = viaProxy(request);
  const family = familyOfHost(req.target.host);
  const why = unsupported(req.client, req.mode, family);
  if (why !== undefined) throw new Error(`${req.client} cannot use ${req.mode} over IPv${family}: ${why}`);
  const timeoutMs = req.timeoutMs ?? CLIENT_TIMEOUT_MS;
  let result: ExecResult;
  if (req.client === 'curl') {
    result = await exec(ns, CLIENT_BINARIES.curl, curlArgs(req), { timeoutMs });
  } else if (req.client === 'lftp') {
    result = await exec(ns, CLIENT_BINARIES.lftp, ['-d', '-c', lftpScript(req)], { timeoutMs });
  } else {
    result = await exec(ns, CLIENT_BINARIES.ftplib, ftplibArgs(req), { timeoutMs });
  }
  const { transcript, listing, dataPeers, tlsVersions, tlsCertificates } = parseTranscript(req.client, result);
  const dataCommands = transcript
    .filter((l) => l.dir === 'sent')
    .map((l) => (l.line.split(' ')[0] ?? '').toUpperCase())
    .filter((verb) => DATA_VERBS.has(verb));
  return { ...result, request, transcript, dataCommands, listing, dataPeers, tlsVersions, tlsCertificates };
}

/** The final reply the client received after it sent `verb` (the first time), or null. */
export function replyTo(r: ClientResult, verb: string): string | null {
  const at = r.transcript.findIndex((l) => l.dir === 'sent' && l.line.toUpperCase().startsWith(verb));
  if (at === -1) return null;
  for (const l of r.transcript.slice(at + 1)) {
    if (l.dir === 'received' && /^\d{3} /.test(l.line)) return l.line;
    if (l.dir === 'sent') return null;
  }
  return null;
}

/**
 * What is wrong with the reply to the mode's data command, through the
 * gateway: a 227 must name the edge's public address and, like a 229, a port
 * of the site's passive range; PORT and EPRT must get 200. Null when right.
 */
export function checkSetupReply(r: ClientResult, passivePorts: { min: number; max: number }): string | null {
  const verb = EXPECTED_VERB[r.request.mode];
  const reply = replyTo(r, verb);
  if (reply === null) return `no reply to ${verb}`;
  const inRange = (port: number) => port >= passivePorts.min && port <= passivePorts.max;
  if (verb === 'PASV') {
    const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(reply);
    if (!reply.startsWith('227 ') || m === null) return `PASV answered "${reply}"`;
    const n = m.slice(1).map(Number);
    const host = n.slice(0, 4).join('.');
    const port = (n[4] ?? 0) * 256 + (n[5] ?? 0);
    if (host !== ADDR.edgePublic) return `227 names ${host}`;
    if (!inRange(port)) return `227 port ${port} outside the site's passive range`;
  } else if (verb === 'EPSV') {
    const m = /\((.)\1\1(\d+)\1\)/.exec(reply);
    if (!reply.startsWith('229 ') || m === null) return `EPSV answered "${reply}"`;
    if (!inRange(Number(m[2]))) return `229 port ${m[2]} outside the site's passive range`;
  } else if (!reply.startsWith('200 ')) {
    return `${verb} answered "${reply}"`;
  }
  return null;
}

/** curl and ftplib reach a proxied target by logging in to the proxy as `user@host[:port]`; lftp has its own setting. */
function viaProxy(req: ClientRequest): ClientRequest {
  const { proxy, target } = req;
  if (proxy === undefined || req.client === 'lftp') return req;
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  const user = `${target.user}@${host}${target.port === 21 ? '' : `:${target.port}`}`;
  return { ...req, target: { ...target, host: proxy.host, port: proxy.port, user } };
}

export async function sha256File(path: string): Promise<string | null> {
  if (!existsSync(path)) return null;
  return sha256(await readFile(path));
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** One readable block for a failure message: command, exit, transcript, output. */
export function describeResult(r: ClientResult): string {
  const { client, mode, op, remote, target } = r.request;
  return [
    `${client} ${mode} ${op} ${remote} via ${target.host}:${target.port}${r.request.tls === undefined ? '' : ` (FTPS ${r.request.tls.kind})`}: exit ${r.code ?? r.signal}` +
      `${r.timedOut ? ' (timed out)' : ''} in ${r.ms} ms`,
    `data commands: ${r.dataCommands.join(', ') || '(none)'}`,
    '--- stdout',
    r.stdout.slice(-4000),
    '--- stderr',
    r.stderr.slice(-6000),
  ].join('\n');
}

// Real FTP servers in the server namespace, bound to 192.0.2.10:21, with
// their own private address in every 227 (no NAT options of any kind).
//
// - vsftpd: the Debian package; anonymous login (as Debian's `ftp` user),
//   upload allowed.
// - pure-ftpd, proftpd: unpacked from Debian packages into .e2e-cache/ by
//   .ci/install-e2e.sh; a virtual user from a passwd-style file of our own,
//   mapped to `nobody`, chrooted into the root directory.
// Each runs in the foreground and is stopped by its pid.
//
// vsftpd can also serve FTPS (`tls`): explicit (AUTH TLS) or implicit, with
// TLS required for the anonymous login and every data connection, and data
// connections that must resume the control connection's TLS session
// (`require_ssl_reuse=YES`, its default). A second server may run next to
// the first on another port and passive range (`port`, `passivePorts`), and
// on the server's IPv6 address instead (`host`: ADDR.server6, vsftpd only).
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { vsftpdTlsOptions } from '../../../bench/lib/vsftpdTls.mjs';
import { ADDR, run, stopChild, type Topology } from './topology.js';

export type ServerKind = 'vsftpd' | 'pure-ftpd' | 'proftpd';
export const SERVER_KINDS: readonly ServerKind[] = ['vsftpd', 'pure-ftpd', 'proftpd'];

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const CACHE_DIR = join(REPO_ROOT, '.e2e-cache');

export const SERVER_BINARIES: Record<ServerKind, string> = {
  vsftpd: '/usr/sbin/vsftpd',
  'pure-ftpd': join(CACHE_DIR, 'pure-ftpd/usr/sbin/pure-ftpd'),
  proftpd: join(CACHE_DIR, 'proftpd-core/usr/sbin/proftpd'),
};
const PURE_PW = join(CACHE_DIR, 'pure-ftpd/usr/bin/pure-pw');

export const PASSIVE_PORTS = { min: 40000, max: 40100 } as const;
const FTP_PORT = 21;

export interface ServerTls {
  readonly certFile: string;
  readonly keyFile: string;
  /** TLS from the first byte (port 990 style) instead of AUTH TLS. */
  readonly implicit?: boolean;
}

export interface ServerOptions {
  /** Address in the server namespace (ADDR.server unless told; an IPv6 one for vsftpd only). */
  readonly host?: string;
  /** Control port in the server namespace (21 unless told). */
  readonly port?: number;
  readonly passivePorts?: { readonly min: number; readonly max: number };
  /** FTPS (vsftpd only). */
  readonly tls?: ServerTls;
}

interface Listen {
  readonly host: string;
  readonly port: number;
  readonly passivePorts: { readonly min: number; readonly max: number };
}
const NOBODY_UID = 65534;
const NOGROUP_GID = 65534;
const READY_TIMEOUT_MS = 10_000;
const READY_POLL_MS = 50;

// The virtual user of pure-ftpd and proftpd. The hash is sha256-crypt with
// the minimum of rounds, so a login costs well under a millisecond.
const VIRTUAL_USER = 'e2e';
const VIRTUAL_PASSWORD = 'e2e-pass';
const VIRTUAL_HASH = '$5$rounds=1000$e2esalt0$.0.rz5wB2QYnhehiyJ0fyQsG.dS1CJZaR5JgyWaJ3tA';

export interface RunningServer {
  kind: ServerKind;
  host: string;
  port: number;
  user: string;
  password: string;
  pid: number;
  /** What the server printed and logged so far, for failure reports. */
  logs(): Promise<string>;
  stop(): Promise<void>;
}

/** Files every root directory holds, under /pub, and the upload directory. */
export const UPLOAD_DIR = 'upload';
export const PUB_DIR = 'pub';

/**
 * Makes a root directory that all three servers accept as a chroot: owned by
 * root and not writable by the login user, with a writable upload directory.
 */
export async function prepareRoot(files: Readonly<Record<string, Buffer>>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'ftpalg-e2e-root-'));
  await chmod(root, 0o755);
  await mkdir(join(root, PUB_DIR), { mode: 0o755 });
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(root, PUB_DIR, name), content, { mode: 0o644 });
  }
  // Writable by whichever user each server maps the login to.
  const upload = join(root, UPLOAD_DIR);
  await mkdir(upload);
  await chown(upload, NOBODY_UID, NOGROUP_GID);
  await chmod(upload, 0o777);
  return root;
}

interface Launch {
  args: string[];
  user: string;
  password: string;
  logFiles: string[];
}

function vsftpdTls(tls: ServerTls | undefined): string[] {
  return tls === undefined ? ['ssl_enable=NO'] : vsftpdTlsOptions({ ...tls, debug: true });
}

async function configureVsftpd(rootDir: string, dir: string, listen: Listen, tls?: ServerTls): Promise<Launch> {
  const empty = join(dir, 'empty');
  await mkdir(empty, { mode: 0o755 });
  const log = join(dir, 'vsftpd.log');
  const conf = [
    ...(listen.host.includes(':') ? ['listen=NO', 'listen_ipv6=YES', `listen_address6=${listen.host}`] : ['listen=YES', 'listen_ipv6=NO', `listen_address=${listen.host}`]),
    `listen_port=${listen.port}`,
    'background=NO',
    'anonymous_enable=YES',
    'local_enable=NO',
    'no_anon_password=NO',
    `anon_root=${rootDir}`,
    // vsftpd enters the anonymous user's home before anon_root, so this must
    // be a user with an existing home: Debian's vsftpd package creates `ftp`.
    'ftp_username=ftp',
    'nopriv_user=nobody',
    'write_enable=YES',
    'anon_upload_enable=YES',
    'anon_mkdir_write_enable=NO',
    'anon_other_write_enable=NO',
    'anon_umask=022',
    'pasv_enable=YES',
    `pasv_min_port=${listen.passivePorts.min}`,
    `pasv_max_port=${listen.passivePorts.max}`,
    'port_enable=YES',
    'connect_from_port_20=NO',
    'seccomp_sandbox=NO',
    `secure_chroot_dir=${empty}`,
    'xferlog_enable=YES',
    'xferlog_std_format=NO',
    'log_ftp_protocol=YES',
    `vsftpd_log_file=${log}`,
    'dirmessage_enable=NO',
    'tcp_wrappers=NO',
    'hide_ids=YES',
    'idle_session_timeout=60',
    'data_connection_timeout=30',
    'accept_timeout=30',
    'connect_timeout=30',
    ...vsftpdTls(tls),
    '',
  ].join('\n');
  const file = join(dir, 'vsftpd.conf');
  await writeFile(file, conf, { mode: 0o600 });
  return { args: [file], user: 'anonymous', password: 'e2e', logFiles: [log] };
}

async function configurePureFtpd(rootDir: string, dir: string, listen: Listen): Promise<Launch> {
  // pure-pw's passwd format; "/./" in the home directory marks the chroot.
  const passwd = join(dir, 'pureftpd.passwd');
  const pdb = join(dir, 'pureftpd.pdb');
  const fields = [VIRTUAL_USER, VIRTUAL_HASH, String(NOBODY_UID), String(NOGROUP_GID), '', `${rootDir}/./`];
  await writeFile(passwd, `${fields.join(':')}${':'.repeat(12)}\n`, { mode: 0o600 });
  const r = await run(PURE_PW, ['mkdb', pdb, '-f', passwd], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`pure-pw mkdb failed (${r.code}): ${r.stderr}`);
  return {
    args: [
      '-S', `${ADDR.server},${listen.port}`,
      '-4', // IPv4 only
      '-l', `puredb:${pdb}`,
      '-E', // no anonymous
      '-A', // chroot everyone
      '-H', // do not resolve names
      '-p', `${listen.passivePorts.min}:${listen.passivePorts.max}`,
      // pure-ftpd caps clients at half the passive range
      '-c', String(Math.floor((listen.passivePorts.max - listen.passivePorts.min + 1) / 2)),
      '-C', '50',
      '-I', '60',
      '-U', '022:022',
      '-g', join(dir, 'pure-ftpd.pid'),
      '-f', 'none', // no syslog
    ],
    user: VIRTUAL_USER,
    password: VIRTUAL_PASSWORD,
    logFiles: [],
  };
}

async function configureProftpd(rootDir: string, dir: string, listen: Listen): Promise<Launch> {
  const passwd = join(dir, 'ftpd.passwd');
  const group = join(dir, 'ftpd.group');
  const log = join(dir, 'proftpd.log');
  // Every command with its reply code and the peer (health probes must be seen to end with QUIT / 221).
  const commandLog = join(dir, 'proftpd-commands.log');
  await writeFile(passwd, `${VIRTUAL_USER}:${VIRTUAL_HASH}:${NOBODY_UID}:${NOGROUP_GID}::${rootDir}:/bin/false\n`, {
    mode: 0o600,
  });
  await writeFile(group, `nogroup:x:${NOGROUP_GID}:\n`, { mode: 0o600 });
  const conf = [
    'ServerType standalone',
    'ServerName "ftp-alg e2e"',
    `DefaultAddress ${ADDR.server}`,
    'SocketBindTight on',
    `Port ${listen.port}`,
    'UseIPv6 off',
    'DefaultServer on',
    'User nobody',
    'Group nogroup',
    'Umask 022',
    `PidFile ${join(dir, 'proftpd.pid')}`,
    `ScoreboardFile ${join(dir, 'proftpd.scoreboard')}`,
    `SystemLog ${log}`,
    'TransferLog none',
    'LogFormat commands "%a %m %s"',
    `ExtendedLog ${commandLog} ALL commands`,
    'WtmpLog off',
    'UseReverseDNS off',
    'DelayEngine off',
    'ControlsEngine off',
    'AuthOrder mod_auth_file.c',
    `AuthUserFile ${passwd}`,
    `AuthGroupFile ${group}`,
    'RequireValidShell off',
    'DefaultRoot ~',
    `PassivePorts ${listen.passivePorts.min} ${listen.passivePorts.max}`,
    'AllowOverwrite on',
    'MaxInstances 50',
    'TimeoutIdle 60',
    'TimeoutNoTransfer 60',
    '',
  ].join('\n');
  const file = join(dir, 'proftpd.conf');
  await writeFile(file, conf, { mode: 0o600 });
  return { args: ['--nodaemon', '-c', file], user: VIRTUAL_USER, password: VIRTUAL_PASSWORD, logFiles: [log, commandLog] };
}

/** An address as /proc/net/tcp{,6} prints it: each 32-bit word little-endian, in hex. */
function procAddress(host: string): string {
  const hex = host.includes(':')
    ? ipv6Hex(host)
    : host
        .split('.')
        .map((o) => Number(o).toString(16).padStart(2, '0'))
        .join('');
  const words = hex.match(/.{8}/g) ?? [];
  return words.map((w) => (w.match(/../g) ?? []).reverse().join('')).join('').toUpperCase();
}

function ipv6Hex(host: string): string {
  const [head = '', tail = ''] = host.split('::');
  const parts = (x: string) => (x === '' ? [] : x.split(':'));
  const groups = [...parts(head), ...Array<string>(8 - parts(head).length - parts(tail).length).fill('0'), ...parts(tail)];
  return groups.map((g) => g.padStart(4, '0')).join('');
}

/** True when /proc/<pid>/net/tcp or tcp6 (the pid's namespace) has our listener. */
async function isListening(pid: number, host: string, port: number): Promise<boolean> {
  const local = `${procAddress(host)}:${port.toString(16).padStart(4, '0').toUpperCase()}`;
  let table: string;
  try {
    table = await readFile(`/proc/${pid}/net/tcp${host.includes(':') ? '6' : ''}`, 'utf8');
  } catch {
    return false;
  }
  return table.split('\n').some((line) => {
    const cols = line.trim().split(/\s+/);
    return cols[1] === local && cols[3] === '0A'; // TCP_LISTEN
  });
}

async function waitReady(child: ChildProcess, listen: Listen, output: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited before listening (${child.exitCode ?? child.signalCode}):\n${output()}`);
    }
    if (child.pid !== undefined && (await isListening(child.pid, listen.host, listen.port))) return;
    if (Date.now() > deadline) throw new Error(`server not listening after ${READY_TIMEOUT_MS} ms:\n${output()}`);
    await new Promise((r) => setTimeout(r, READY_POLL_MS));
  }
}

const CONFIGURE: Record<ServerKind, (rootDir: string, dir: string, listen: Listen, tls?: ServerTls) => Promise<Launch>> = {
  vsftpd: configureVsftpd,
  'pure-ftpd': configurePureFtpd,
  proftpd: configureProftpd,
};

/** Starts one server in the topology's server namespace on 192.0.2.10:21 (or the address and port asked for). */
export async function startServer(kind: ServerKind, topo: Topology, rootDir: string, options: ServerOptions = {}): Promise<RunningServer> {
  if (options.tls !== undefined && kind !== 'vsftpd') throw new Error(`FTPS is set up for vsftpd only, not ${kind}`);
  const host = options.host ?? ADDR.server;
  if (host !== ADDR.server && kind !== 'vsftpd') throw new Error(`another address is set up for vsftpd only, not ${kind}`);
  const listen: Listen = { host, port: options.port ?? FTP_PORT, passivePorts: options.passivePorts ?? PASSIVE_PORTS };
  const dir = await mkdtemp(join(tmpdir(), `ftpalg-e2e-${kind}-`));
  await chmod(dir, 0o755);
  const launch = await CONFIGURE[kind](rootDir, dir, listen, options.tls);
  const child = topo.spawn('server', SERVER_BINARIES[kind], launch.args);
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (output += s));
  const logs = async (): Promise<string> => {
    let text = `--- ${kind} stdout/stderr\n${output}`;
    for (const f of launch.logFiles) {
      const body = existsSync(f) ? await readFile(f, 'utf8') : '(missing)';
      text += `\n--- ${f}\n${body}`;
    }
    return text;
  };
  try {
    await waitReady(child, listen, () => output);
  } catch (err) {
    await stopChild(child);
    const detail = await logs();
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${kind}: ${(err as Error).message}\n${detail}`);
  }
  let stopped = false;
  return {
    kind,
    host,
    port: listen.port,
    user: launch.user,
    password: launch.password,
    pid: child.pid ?? -1,
    logs,
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

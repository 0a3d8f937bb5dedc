// The programs the bench runs: vsftpd and the raw upstream in the server
// namespace; haproxy and ftp-alg in the edge namespace.
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NOFILE, nsRun, start, stop, waitFor } from './proc.mjs';
import { vsftpdTlsOptions } from './vsftpdTls.mjs';
import { ADDR } from './topology.mjs';

export const PORTS = {
  ftp: 21,
  rawControl: 2121,
  rawData: 45000,
  haproxyRawData: 46000,
  haproxyRawControl: 2122,
  haproxyFtp: 2100,
  vsftpdPassive: { min: 40000, max: 44999 },
  /** vsftpd speaking FTPS (AUTH TLS), and the gateway's FTPS site in front of it. */
  ftps: 990,
  vsftpdFtpsPassive: { min: 46100, max: 46999 },
};

const READY_TRIES = 100;
const READY_EVERY_MS = 100;
const RAWSERVER = fileURLToPath(new URL('./rawserver.mjs', import.meta.url));

/** Waits until every TCP port of `ports` listens in `ns` (bounded). */
export async function waitListening(ns, ports, child) {
  for (let i = 0; i < READY_TRIES; i++) {
    if (child !== undefined && child.exitCode !== null) throw new Error(`exited (${child.exitCode}): ${child.tail().slice(-1500)}`);
    const r = await nsRun(ns, 'ss', ['-ltnH'], { timeoutMs: 5_000 });
    if (ports.every((p) => new RegExp(`:${p}\\s`).test(r.stdout))) return;
    await new Promise((resolve) => setTimeout(resolve, READY_EVERY_MS));
  }
  throw new Error(`ports ${ports.join(', ')} not listening in ${ns} after ${(READY_TRIES * READY_EVERY_MS) / 1000} s`);
}

/** vsftpd on PORTS.ftp, or with `tls` ({ certFile, keyFile }) FTPS on PORTS.ftps. */
export async function startVsftpd(topo, dir, root, tls) {
  const empty = join(dir, 'vsftpd-empty');
  await mkdir(empty, { recursive: true, mode: 0o755 });
  const port = tls === undefined ? PORTS.ftp : PORTS.ftps;
  const passive = tls === undefined ? PORTS.vsftpdPassive : PORTS.vsftpdFtpsPassive;
  const conf = [
    'listen=YES',
    'listen_ipv6=NO',
    `listen_address=${ADDR.server}`,
    `listen_port=${port}`,
    'background=NO',
    'anonymous_enable=YES',
    'local_enable=NO',
    'no_anon_password=YES',
    `anon_root=${root}`,
    'ftp_username=ftp',
    'nopriv_user=nobody',
    'write_enable=YES',
    'anon_upload_enable=YES',
    'anon_umask=022',
    'pasv_enable=YES',
    `pasv_min_port=${passive.min}`,
    `pasv_max_port=${passive.max}`,
    'port_enable=YES',
    'connect_from_port_20=NO',
    'seccomp_sandbox=NO',
    `secure_chroot_dir=${empty}`,
    'xferlog_enable=NO',
    'dirmessage_enable=NO',
    'tcp_wrappers=NO',
    'hide_ids=YES',
    'max_clients=0',
    'max_per_ip=0',
    'idle_session_timeout=300',
    'data_connection_timeout=120',
    ...(tls === undefined ? [] : vsftpdTlsOptions(tls)),
    '',
  ].join('\n');
  const file = join(dir, `vsftpd-${port}.conf`);
  await writeFile(file, conf, { mode: 0o600 });
  const child = start(topo.ns.server, '/usr/sbin/vsftpd', [file], { nofile: true });
  await waitListening(topo.ns.server, [port], child);
  return child;
}

export async function startRawServer(topo) {
  const child = start(topo.ns.server, process.execPath, [RAWSERVER, ADDR.server, String(PORTS.rawControl), String(PORTS.rawData)], { nofile: true });
  await waitFor(child, /ready/, 10_000);
  return child;
}

export async function startHaproxy(topo, dir) {
  const fwd = (name, port, to) => [
    `frontend ${name}`,
    `  bind ${ADDR.edgePublic}:${port}`,
    `  default_backend ${name}`,
    `backend ${name}`,
    `  server upstream ${ADDR.server}:${to}`,
  ];
  const maxconn = Math.min(40_000, Math.floor((NOFILE - 256) / 2));
  const conf = [
    'global',
    `  maxconn ${maxconn}`,
    'defaults',
    '  mode tcp',
    `  maxconn ${maxconn}`,
    '  timeout connect 5s',
    '  timeout client 10m',
    '  timeout server 10m',
    ...fwd('raw_data', PORTS.haproxyRawData, PORTS.rawData),
    ...fwd('raw_control', PORTS.haproxyRawControl, PORTS.rawControl),
    ...fwd('ftp_control', PORTS.haproxyFtp, PORTS.ftp),
    '',
  ].join('\n');
  const file = join(dir, 'haproxy.cfg');
  await writeFile(file, conf);
  const child = start(topo.ns.edge, 'haproxy', ['-db', '-f', file], { nofile: true });
  await waitListening(topo.ns.edge, [PORTS.haproxyRawData, PORTS.haproxyRawControl, PORTS.haproxyFtp], child);
  return child;
}

/**
 * ftp-alg's config: site "b" in front of vsftpd, site "raw" in front of the
 * raw upstream, and with `certs` site "ftps" terminating TLS on both sides in
 * front of the FTPS vsftpd (upstream explicit, verified against the CA).
 */
export function gatewayConfig(extra = {}, certs = undefined) {
  const SESSIONS = 20_000;
  // `siteExtra` (bench only): keys for every site, its `upstream` keys merged into each site's upstream.
  const { siteExtra = {}, ...root } = extra;
  const { upstream: upstreamExtra = {}, ...siteKeys } = siteExtra;
  const site = (name, port, passive, active) => ({
    name,
    ...siteKeys,
    listen: { host: ADDR.edgePublic, port },
    upstream: { host: ADDR.server, port, ...upstreamExtra },
    externalAddress: ADDR.edgePublic,
    passivePorts: passive,
    activePorts: active,
    limits: { maxSessions: SESSIONS, maxSessionsPerClient: SESSIONS, maxPinholesPerClient: 2_000 },
  });
  return {
    log: { level: 'warn' },
    limits: { maxSessions: SESSIONS },
    sites: [
      site('b', PORTS.ftp, { min: 50000, max: 50999 }, { min: 51000, max: 51999 }),
      site('raw', PORTS.rawControl, { min: 52000, max: 52999 }, { min: 53000, max: 53999 }),
      ...(certs === undefined ? [] : [ftpsSite(site('ftps', PORTS.ftps, { min: 54000, max: 54999 }, { min: 55000, max: 55999 }), certs)]),
    ],
    ...root,
  };
}

function ftpsSite(site, certs) {
  const tls = { certFile: certs.edge.certFile, keyFile: certs.edge.keyFile, client: 'required', upstream: 'explicit', upstreamCaFile: certs.caFile };
  return { ...site, tls };
}

export async function startGateway(topo, dir, name, cli, extra, nodeArgs = [], certs = undefined) {
  // `node` (bench only): the node binary this variant's gateway runs on (default: the bench's own).
  const { node = process.execPath, ...config } = extra ?? {};
  const file = join(dir, `${name}.json`);
  await writeFile(file, JSON.stringify(gatewayConfig(config, certs), null, 2));
  await chmod(file, 0o644);
  const child = start(topo.ns.edge, node, [...nodeArgs, cli, '--config', file], { nofile: true });
  await waitListening(topo.ns.edge, [PORTS.ftp, PORTS.rawControl, ...(certs === undefined ? [] : [PORTS.ftps])], child);
  return child;
}

export { stop };

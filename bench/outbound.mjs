#!/usr/bin/env node
// Issue 15 target: outbound transfers through a transparent site ≥ 0.9× the
// kernel ALG behind masquerade, for the same transfers, in the same run.
//
//   client ns (inside)        edge ns                          server ns (outside)
//   203.0.113.10/24 ──veth── 203.0.113.1/24
//   default via the edge      192.0.2.1/24 ──veth── masquerade  192.0.2.10/24, vsftpd
//                             forwarding on                     no route back inside
//
// The client always runs the same curl against ftp://192.0.2.10/ (it does not
// know what the edge does); the edge is, in turn:
//   kernel      the kernel ALG: nf_conntrack_ftp + nf_nat_ftp assigned by an nft
//               `ct helper set` rule to inside clients' tcp/21, masquerade; no gateway
//   relay       masquerade and the redirect of tcp/21 to a transparent site of
//               ftp-alg on its userspace relay plane
//   nft         the same transparent site on the kernel data plane
//               (dataPlane.kind "nftables")
// Passive transfers of a transparent site ("direct") leave through the NAT as
// in the kernel variant; active ones go through the gateway's active pinhole
// (a listener on the relay plane, a DNAT map element on the kernel plane).
//
// Before the timed rounds, every variant moves a smaller file once in every
// mode and direction and its sha256 is checked; uploads are checked in every
// round. Rounds rotate the variant order; the figures are medians and ratios
// to the kernel variant of the same run. Run as root after `npm run build`:
//   node bench/outbound.mjs [--smoke] [--rounds N] [--modes pasv,epsv,port,eprt]
//                           [--variants kernel,relay,nft] [--max-minutes M] [--json FILE]
//                           [--base DIR] [--steps] [--warm N] [--ftp-alg-node-args ARGS]
// --ftp-alg-node-args: node options for every gateway (e.g. `--cpu-prof --cpu-prof-dir=DIR`).
// --base DIR: a second build of ftp-alg (DIR/dist/cli.js, e.g. main in a
// detached worktree) adds the variants relay-base and nft-base, run in the
// same rounds for A/B (name them in --variants; default: all four).
// --warm N (default 200; 0: none): every freshly started gateway first serves N
// sessions of a Python ftplib client (login, a 4 KiB download by PASV, EPSV,
// PORT or EPRT in turn, quit), so the timed transfers meet a gateway that has
// run its session code before, as a gateway in service has: the gateway is
// restarted for every round, and without this its first few sessions ran
// V8's not yet compiled code, which was most of the setup gap to the kernel
// ALG (`--warm 0` shows it).
// --steps: a table of where each variant's session time goes, step by step,
// from curl's own trace (`-v --trace-time`: the time each command left and
// each reply arrived), medians over every timed transfer of that variant.
// Everything it starts it stops, and it deletes its namespaces, on success,
// failure or a signal.
import { rmSync } from 'node:fs';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { patternHash } from './lib/fastio.mjs';
import { ftpRoot, scratchDir, sha256File, writePatternFile } from './lib/ftpRoot.mjs';
import { cpuSeconds, median } from './lib/measure.mjs';
import { startVsftpd, waitListening } from './lib/peers.mjs';
import { nsMust, nsRun, runMain, start, stop } from './lib/proc.mjs';
import { ADDR, createTopology, destroyAllSync, kernelHelperStatus } from './lib/topology.mjs';

const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
const CLI = join(REPO, 'dist/cli.js');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SITE_PORT = 2122;
const TABLE = 'ftpalg_outbound';
const GATEWAY_VARIANTS = ['relay', 'nft', 'relay-base', 'nft-base'];
const ALL_VARIANTS = ['kernel', ...GATEWAY_VARIANTS];

const { values: opt } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    modes: { type: 'string', default: 'pasv,epsv,port,eprt' },
    variants: { type: 'string' },
    'max-minutes': { type: 'string', default: '10' },
    json: { type: 'string' },
    base: { type: 'string' },
    steps: { type: 'boolean', default: false },
    warm: { type: 'string', default: '200' },
    'ftp-alg-node-args': { type: 'string' },
  },
});

const P = opt.smoke ? { rounds: 1, fileBytes: 8 * MiB, checkBytes: 2 * MiB } : { rounds: 5, fileBytes: 256 * MiB, checkBytes: 32 * MiB };
if (opt.rounds !== undefined) P.rounds = Number(opt.rounds);
const MODES = opt.modes.split(',');
const BASE_CLI = opt.base === undefined ? undefined : join(resolve(opt.base), 'dist/cli.js');
const VARIANTS = (opt.variants ?? (BASE_CLI === undefined ? 'kernel,relay,nft' : ALL_VARIANTS.join(','))).split(',');
for (const m of MODES) if (!['pasv', 'epsv', 'port', 'eprt'].includes(m)) throw new Error(`--modes: unknown mode ${m}`);
for (const v of VARIANTS) if (!ALL_VARIANTS.includes(v)) throw new Error(`--variants: unknown variant ${v} (${ALL_VARIANTS.join(', ')})`);
if (!VARIANTS.includes('kernel')) throw new Error('--variants: the kernel variant is the baseline of every ratio');
if (VARIANTS.some((v) => v.endsWith('-base')) && BASE_CLI === undefined) throw new Error('--variants: the -base variants need --base DIR');
const WARM_SESSIONS = Number(opt.warm);
if (!Number.isInteger(WARM_SESSIONS) || WARM_SESSIONS < 0 || WARM_SESSIONS > 5_000) throw new Error('--warm: 0 to 5000 sessions');
const WARM_SECONDS = 60;
const startedAt = Date.now();
const deadline = startedAt + Number(opt['max-minutes']) * 60_000;
const log = (msg) => process.stderr.write(`[outbound ${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`);

// ---- the edge in each variant ------------------------------------------------

const MASQUERADE = `
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "to-server" masquerade
  }`;
// The kernel ALG as a router would run it: the helper on inside clients' FTP control connections only.
const HELPER = `
  ct helper ftp-standard { type "ftp" protocol tcp; l3proto ip; }
  chain helpers {
    type filter hook prerouting priority filter; policy accept;
    iifname "to-client" ct state new tcp dport 21 ct helper set "ftp-standard"
  }`;
// What \`ftp-alg --nftables\` prints for a transparent site (its clients' tcp/21 to the listener).
const REDIRECT = `
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "to-client" ip saddr 203.0.113.0/24 fib daddr type != local tcp dport 21 redirect to :${SITE_PORT}
  }`;

/** The inside/outside layout on the bench topology: the client routes via the edge, the server knows only its link. */
async function outboundLayout(topo) {
  await nsMust(topo.ns.server, 'ip', ['route', 'del', 'default']);
  await nsMust(topo.ns.client, 'ip', ['route', 'add', 'default', 'via', ADDR.edgePublic]);
  await nsMust(topo.ns.edge, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
}

async function edgeRules(topo, variant) {
  await nsRun(topo.ns.edge, 'nft', ['delete', 'table', 'ip', TABLE], { timeoutMs: 10_000 });
  const file = join(workDir, 'edge.nft');
  await writeFile(file, `table ip ${TABLE} {${MASQUERADE}${variant === 'kernel' ? HELPER : REDIRECT}\n}\n`);
  await nsMust(topo.ns.edge, 'nft', ['-f', file]);
  // Conntrack entries of the last variant would carry its helper or redirect: start clean.
  await nsRun(topo.ns.edge, 'conntrack', ['-F'], { timeoutMs: 10_000 });
}

function gatewayConfig(variant) {
  return {
    log: { level: 'info' },
    dataPlane: { kind: variant.startsWith('nft') ? 'nftables' : 'relay' },
    sites: [
      {
        name: 'transparent',
        role: 'transparent',
        listen: { host: ADDR.edgePublic, port: SITE_PORT },
        clients: { allow: ['203.0.113.0/24'], deny: [] },
        destinations: { allow: [ADDR.privateNet], deny: [], ports: [21] },
        transparentPassive: 'direct',
        externalAddress: ADDR.edgePublic,
        passivePorts: { min: 50000, max: 50999 },
        activePorts: { min: 51000, max: 51999 },
      },
    ],
  };
}

// ---- state and teardown ------------------------------------------------------

let topo;
let workDir;
const procs = { vsftpd: undefined, gateway: undefined };

async function stopGateway() {
  const child = procs.gateway;
  procs.gateway = undefined;
  await stop(child);
  return child;
}

/** The original-destination lookup of each session a gateway started (its `session start` lines), ms. */
function lookups(child) {
  const out = [];
  for (const m of (child?.output() ?? '').matchAll(/"lookupMs":([0-9.e+-]+)/g)) out.push(Number(m[1]));
  return warmed.has(child) ? out.slice(WARM_SESSIONS) : out;
}

async function teardown() {
  await stopGateway();
  await stop(procs.vsftpd);
  procs.vsftpd = undefined;
  await topo?.destroy();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
}

function lastResort() {
  destroyAllSync();
  if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
}

/** Switches the edge to `variant`: its rules, and a fresh gateway for the transparent ones. */
async function use(variant, { warmUp = true } = {}) {
  await stopGateway();
  await edgeRules(topo, variant);
  if (variant === 'kernel') return;
  const file = join(workDir, `${variant}.json`);
  await writeFile(file, JSON.stringify(gatewayConfig(variant)));
  await chmod(file, 0o644);
  const cli = variant.endsWith('-base') ? BASE_CLI : CLI;
  const nodeArgs = opt['ftp-alg-node-args'] === undefined ? [] : opt['ftp-alg-node-args'].split(' ');
  const child = start(topo.ns.edge, process.execPath, [...nodeArgs, cli, '--config', file], { nofile: true });
  await waitListening(topo.ns.edge, [SITE_PORT], child);
  procs.gateway = child;
  if (warmUp) await warm(variant);
}

// Sessions through the transparent site, each mode in turn; bounded in count and in time.
const WARM_CLIENT = `
import ftplib, socket, sys, time
n, host, me, bound = int(sys.argv[1]), sys.argv[2], sys.argv[3], time.monotonic() + float(sys.argv[4])
def drain(s):
    while s.recv(65536): pass
    s.close()
done = 0
for i in range(n):
    if time.monotonic() > bound: break
    f = ftplib.FTP(timeout=10)
    f.connect(host, 21)
    f.login('anonymous', 'warm@example.org')
    f.cwd('pub')
    f.voidcmd('TYPE I')
    mode = i % 4
    if mode == 0:
        f.set_pasv(True)
        f.retrbinary('RETR warm.bin', lambda b: None)
    elif mode == 1:
        s = socket.create_connection((host, ftplib.parse229(f.sendcmd('EPSV'), (host, 21))[1]), timeout=10)
        f.sendcmd('RETR warm.bin'); drain(s); f.voidresp()
    else:
        l = socket.create_server((me, 0)); l.settimeout(10)
        if mode == 2: f.sendport(me, l.getsockname()[1])
        else: f.sendeprt(me, l.getsockname()[1])
        f.sendcmd('RETR warm.bin'); s, _ = l.accept(); l.close(); drain(s); f.voidresp()
    f.quit()
    done += 1
print(done)
`;

/** --warm: the fresh gateway serves WARM_SESSIONS sessions before it is timed; they must all succeed. */
async function warm(variant) {
  if (WARM_SESSIONS === 0) return;
  const args = ['-c', WARM_CLIENT, String(WARM_SESSIONS), ADDR.server, ADDR.client, String(WARM_SECONDS)];
  const r = await nsRun(topo.ns.client, 'python3', args, { timeoutMs: (WARM_SECONDS + 30) * 1000 });
  if (r.code !== 0) throw new Error(`warm-up via ${variant} failed (${r.code}): ${r.stderr.trim().slice(-1500)}\n${procs.gateway?.output().slice(-3000) ?? ''}`);
  const done = Number(r.stdout.trim());
  if (done < WARM_SESSIONS) notes.push(`${variant}: warm-up stopped at ${done} of ${WARM_SESSIONS} sessions (${WARM_SECONDS} s bound)`);
  warmed.add(procs.gateway);
}

/** Gateways whose log begins with warm-up sessions (their lookups are not the timed sessions'). */
const warmed = new Set();

// ---- transfers ---------------------------------------------------------------

const CURL_MODE = {
  pasv: ['--disable-epsv', '--no-ftp-skip-pasv-ip'],
  epsv: [],
  port: ['--disable-eprt', '--ftp-port', ADDR.client],
  eprt: ['--ftp-port', ADDR.client],
};

let seq = 0;

/**
 * One curl transfer straight at the server (what the client believes): MiB/s
 * over the whole session (`rate`) and over the data phase alone (`dataRate`,
 * after curl's pretransfer point), and the setup before it (`setupMs`: connect,
 * login, PASV/PORT). `check`: the small file, sha256 both ways.
 */
async function curl(variant, mode, dir, check) {
  const bytes = check ? P.checkBytes : P.fileBytes;
  const file = check ? 'check.bin' : 'big.bin';
  const name = `u-${process.pid}-${seq++}.bin`;
  const got = join(workDir, `down-${seq}.bin`);
  const args = ['-sS', '-v', '--trace-time', '--max-time', '300', '-u', 'anonymous:bench@example.org', '-w', '%{size_download} %{size_upload} %{time_total} %{time_pretransfer}', ...CURL_MODE[mode]];
  if (dir === 'down') args.push('-o', check ? got : '/dev/null', `ftp://${ADDR.server}/pub/${file}`);
  else args.push('-T', join(workDir, file), `ftp://${ADDR.server}/upload/${name}`);
  const what = `curl ${mode} ${dir} via ${variant}`;
  const r = await nsRun(topo.ns.client, 'curl', args, { timeoutMs: 310_000 });
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr.trim()}\n${procs.gateway?.output().slice(-3000) ?? ''}`);
  const [down, up, secs, pre] = r.stdout.trim().split(' ').map(Number);
  const moved = dir === 'down' ? down : up;
  if (moved !== bytes) throw new Error(`${what}: ${moved} of ${bytes} bytes`);
  const arrived = dir === 'up' ? join(workDir, 'root/upload', name) : check ? got : undefined;
  if (arrived !== undefined) {
    const digest = await sha256File(arrived);
    await rm(arrived, { force: true });
    if (digest !== patternHash(bytes)) throw new Error(`${what}: the file arrived with another sha256`);
  }
  if (opt.steps && check && dir === 'down' && !traced.has(`${variant}.${mode}`)) {
    traced.add(`${variant}.${mode}`);
    log(`curl trace, ${what}:\n${r.stderr.trim()}`);
  }
  return { rate: bytes / MiB / secs, dataRate: bytes / MiB / (secs - pre), setupMs: pre * 1000, steps: curlSteps(r.stderr) };
}

const traced = new Set();

/**
 * Where a curl session's time went, from its `-v --trace-time` lines
 * (`HH:MM:SS.µs` then `*` info, `>` a command sent, `<` a reply line read):
 * `connect` (first line to "Connected"), `greeting` (to the 220), each command
 * to its final reply (named by its verb, summed if sent twice, so `RETR`/`STOR`
 * is the time to the 150, which in active mode includes the server's data
 * connect), `curl` (the gaps between a reply and curl's next command, the
 * client's own time), and `to226` (the 150 to the 226: the data phase).
 * The steps before the 150 add up to the session's setup, the client's
 * time included. Total: a trace it cannot read gives {}.
 */
function curlSteps(stderr) {
  const events = [];
  for (const line of stderr.split(/\r?\n/)) {
    const m = /^(\d\d):(\d\d):(\d\d(?:\.\d+)?) ([*<>]) ?(.*)$/.exec(line);
    if (m !== null) events.push({ ms: ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000, kind: m[4], text: m[5].trim() });
  }
  const steps = {};
  const add = (name, ms) => {
    steps[name] = (steps[name] ?? 0) + ms;
  };
  if (events.length === 0) return steps;
  let mark = events[0].ms; // when the step under way began
  let pending = 'connect'; // its name; undefined: curl's own time since the last reply
  for (const e of events) {
    if (pending === 'connect' && e.kind === '*' && e.text.startsWith('Connected to')) {
      add('connect', e.ms - mark);
      [mark, pending] = [e.ms, 'greeting'];
    } else if (e.kind === '>') {
      if (pending === undefined) add('curl', e.ms - mark);
      [mark, pending] = [e.ms, e.text.split(' ')[0].toUpperCase()];
    } else if (e.kind === '<' && /^\d{3} /.test(e.text) && pending !== undefined && pending !== 'connect') {
      const code = e.text.slice(0, 3);
      add(pending, e.ms - mark);
      // The 150 opens the data phase; the 226 (or any final reply after it) closes it.
      [mark, pending] = [e.ms, code === '150' || code === '125' ? 'to226' : undefined];
    }
  }
  return steps;
}

// ---- samples -----------------------------------------------------------------

const samples = {};
const notes = [];
function record(figure, variant, value) {
  if (value === undefined || !Number.isFinite(value)) return;
  ((samples[figure] ??= {})[variant] ??= []).push(value);
}

/** Each mode each way once with the small file, sha256 checked; the kernel plane must carry active pinholes itself. */
async function checkVariant(variant) {
  for (const mode of MODES) for (const dir of ['down', 'up']) await curl(variant, mode, dir, true);
  if (variant === 'kernel') {
    // Active transfers can only have passed through the helper (the server has no route inside); say it was there.
    const flows = await nsRun(topo.ns.edge, 'conntrack', ['-L'], { timeoutMs: 10_000 });
    if (MODES.some((m) => m === 'port' || m === 'eprt') && !/helper=ftp/.test(flows.stdout)) notes.push('kernel: no conntrack entry showed helper=ftp after the checks');
    return;
  }
  const child = await stopGateway();
  const out = child?.output() ?? '';
  const transfers = out.split('\n').filter((l) => l.includes('"msg":"transfer done"') && !l.includes('"flow":"direct"')).length;
  if (variant.startsWith('nft') && out.includes('"msg":"pinhole relayed"')) throw new Error(`${variant}: a pinhole fell back to the relay:\n${out.slice(-3000)}`);
  log(`${variant}: checks passed (${transfers} transfers through the gateway's pinholes)`);
}

/** The timed transfers of one variant in one round; the gateway's CPU per GiB moved. */
async function round(variant) {
  const pid = procs.gateway?.pid;
  const cpu0 = pid === undefined ? 0 : cpuSeconds(pid);
  let moved = 0;
  for (const mode of MODES) {
    for (const dir of ['down', 'up']) {
      const r = await curl(variant, mode, dir, false);
      record(`${mode}.${dir}`, variant, r.rate);
      record(`${mode}.${dir}.data`, variant, r.dataRate);
      record('setup', variant, r.setupMs);
      for (const [name, ms] of Object.entries(r.steps)) record(`step.${mode}.${name}`, variant, ms);
      moved += P.fileBytes;
    }
  }
  if (pid !== undefined) record('cpu', variant, (cpuSeconds(pid) - cpu0) / (moved / GiB));
  const gw = await stopGateway();
  for (const ms of lookups(gw)) record('lookup', variant, ms);
}

// ---- report ------------------------------------------------------------------

const fmt = (v) => (v === undefined ? '—' : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));
const LABEL = { pasv: 'passive (PASV)', epsv: 'passive (EPSV)', port: 'active (PORT)', eprt: 'active (EPRT)' };

function table() {
  const gateways = VARIANTS.filter((v) => v !== 'kernel');
  const ratioCell = (r) => (r === undefined ? '—' : `${r.toFixed(2)}×${r >= 0.9 ? '' : ' **<0.9**'}`);
  const head = ['transfer', 'kernel ALG MiB/s', ...gateways.flatMap((g) => [`${g} MiB/s`, `${g}/kernel`, `${g}/kernel, data phase`])];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  const rows = [];
  const medians = (id) => Object.fromEntries(VARIANTS.map((v) => [v, median(samples[id]?.[v] ?? [])]));
  const ratio = (med, g) => (med[g] === undefined || med.kernel === undefined ? undefined : med[g] / med.kernel);
  for (const mode of MODES) {
    for (const dir of ['down', 'up']) {
      const med = medians(`${mode}.${dir}`);
      const data = medians(`${mode}.${dir}.data`);
      const ratios = Object.fromEntries(gateways.map((g) => [g, ratio(med, g)]));
      const dataRatios = Object.fromEntries(gateways.map((g) => [g, ratio(data, g)]));
      const cells = [`curl ${dir === 'down' ? 'download' : 'upload'} ${P.fileBytes / MiB} MiB, ${LABEL[mode]}`, fmt(med.kernel)];
      for (const g of gateways) cells.push(fmt(med[g]), ratioCell(ratios[g]), ratioCell(dataRatios[g]));
      lines.push(`| ${cells.join(' | ')} |`);
      const paired = Object.fromEntries(gateways.map((g) => [g, pairedRatios(`${mode}.${dir}`, g)]));
      rows.push({ mode, dir, medians: med, ratios, dataMedians: data, dataRatios, paired, runs: samples[`${mode}.${dir}`] ?? {} });
    }
  }
  const setup = medians('setup');
  const cpu = medians('cpu');
  const extra = (label, kernel, med) => `| ${[label, kernel, ...gateways.flatMap((g) => [fmt(med[g]), '', ''])].join(' | ')} |`;
  lines.push(extra('setup before the data (connect, login, PASV/PORT), ms, median', fmt(setup.kernel), setup));
  lines.push(extra('CPU of the gateway per GiB moved, s/GiB', '—', cpu));
  lines.push(extra('original-destination lookup per session (gateway log), ms, median', '—', medians('lookup')));
  return { markdown: lines.join('\n'), rows };
}

/**
 * `variant`/kernel of each round (the two ran in the same round), as median [min-max]: how far one
 * cell's ratio moves from round to round, which the ratio of medians hides.
 */
function pairedRatios(id, variant) {
  const mine = samples[id]?.[variant] ?? [];
  const kernel = samples[id]?.kernel ?? [];
  const r = mine.map((x, i) => x / kernel[i]).filter(Number.isFinite);
  return r.length === 0 ? undefined : { median: median(r), min: Math.min(...r), max: Math.max(...r) };
}

/** The paired per-round ratios of every cell. */
function pairedTable() {
  const gateways = VARIANTS.filter((v) => v !== 'kernel');
  const head = ['transfer', ...gateways.map((g) => `${g}/kernel per round, median [min-max]`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const mode of MODES) {
    for (const dir of ['down', 'up']) {
      const cell = (g) => {
        const p = pairedRatios(`${mode}.${dir}`, g);
        return p === undefined ? '—' : `${p.median.toFixed(2)} [${p.min.toFixed(2)}-${p.max.toFixed(2)}]`;
      };
      lines.push(`| ${[`${dir === 'down' ? 'download' : 'upload'}, ${LABEL[mode]}`, ...gateways.map(cell)].join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

const STEP_ORDER = ['connect', 'greeting', 'USER', 'PASS', 'PWD', 'CWD', 'PASV', 'EPSV', 'PORT', 'EPRT', 'TYPE', 'SIZE', 'RETR', 'STOR', 'curl', 'to226', 'QUIT'];
const mean = (xs) => (xs.length === 0 ? undefined : xs.reduce((a, b) => a + b, 0) / xs.length);

/** --steps: each mode's steps, median (mean) ms per variant, and each gateway's added median. */
function stepsTable() {
  const gateways = VARIANTS.filter((v) => v !== 'kernel');
  const head = ['mode', 'step', ...VARIANTS.map((v) => `${v} ms`), ...gateways.map((g) => `${g} − kernel`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  const rank = (name) => (STEP_ORDER.includes(name) ? STEP_ORDER.indexOf(name) : STEP_ORDER.length);
  for (const mode of MODES) {
    const prefix = `step.${mode}.`;
    const names = Object.keys(samples)
      .filter((k) => k.startsWith(prefix))
      .map((k) => k.slice(prefix.length))
      .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    for (const name of names) {
      const runs = samples[prefix + name];
      const med = Object.fromEntries(VARIANTS.map((v) => [v, median(runs[v] ?? [])]));
      const cells = [mode, name, ...VARIANTS.map((v) => `${fmt(med[v])} (${fmt(mean(runs[v] ?? []))})`)];
      for (const g of gateways) cells.push(med[g] === undefined || med.kernel === undefined ? '—' : `${med[g] - med.kernel >= 0 ? '+' : ''}${fmt(med[g] - med.kernel)}`);
      lines.push(`| ${cells.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

// ---- main --------------------------------------------------------------------

async function prepareFiles() {
  workDir = await scratchDir('ftpalg-bench-outbound-');
  const root = await ftpRoot(workDir);
  await writePatternFile(join(root, 'pub', 'warm.bin'), 4096);
  for (const [name, bytes] of [['big.bin', P.fileBytes], ['check.bin', P.checkBytes]]) {
    for (const file of [join(root, 'pub', name), join(workDir, name)]) await writePatternFile(file, bytes);
  }
  return root;
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('the bench needs root (network namespaces)');
  const helper = await kernelHelperStatus();
  if (!helper.ok) throw new Error(`the kernel ALG cannot run here (${helper.how}): no baseline for the ratios`);
  log(`${opt.smoke ? 'smoke' : 'full'} run: ${P.rounds} round(s), ${MODES.join(', ')} × down/up, ${P.fileBytes / MiB} MiB; variants ${VARIANTS.join(', ')}; kernel helper ${helper.how}`);
  topo = await createTopology();
  await outboundLayout(topo);
  const root = await prepareFiles();
  procs.vsftpd = await startVsftpd(topo, workDir, root);
  for (const variant of VARIANTS) {
    await use(variant, { warmUp: false });
    await checkVariant(variant);
  }
  let stoppedEarly = '';
  outer: for (let r = 0; r < P.rounds; r++) {
    for (let i = 0; i < VARIANTS.length; i++) {
      const variant = VARIANTS[(i + r) % VARIANTS.length];
      if (Date.now() > deadline) {
        stoppedEarly = `time bound of ${opt['max-minutes']} min reached in round ${r + 1}`;
        break outer;
      }
      const t = Date.now();
      await use(variant);
      await round(variant);
      log(`round ${r + 1}/${P.rounds} ${variant.padEnd(13)} ${((Date.now() - t) / 1000).toFixed(1)} s`);
    }
  }
  if (stoppedEarly !== '') notes.push(`stopped early: ${stoppedEarly}`);
  await teardown();
  const t = table();
  const elapsed = (Date.now() - startedAt) / 1000;
  const out = [
    `# outbound transfers: transparent site vs the kernel ALG behind masquerade${opt.smoke ? ' (smoke)' : ''}`,
    '',
    `- date: ${new Date().toISOString()}; kernel helper: ${helper.how}`,
    `- rounds: ${P.rounds} (median; variant order rotates each round); duration ${elapsed.toFixed(0)} s`,
    `- each gateway started for a round first served ${WARM_SESSIONS} warm-up sessions (--warm)`,
    '- target (issue 15): every transparent-site transfer ≥ 0.9× the kernel ALG',
    '',
    t.markdown,
    '',
    'Paired per-round ratios (each round\'s transfer against the kernel ALG\'s of the same round):',
    '',
    pairedTable(),
    '',
    ...(opt.steps ? ['Steps of a session from curl\'s trace, median (mean) ms over every timed transfer of the mode:', '', stepsTable(), ''] : []),
    ...notes.map((n) => `note: ${n}`),
  ].join('\n');
  process.stdout.write(`${out}\n`);
  if (opt.json !== undefined) await writeFile(opt.json, JSON.stringify({ params: P, modes: MODES, variants: VARIANTS, samples, rows: t.rows, notes, elapsedSeconds: elapsed }, null, 2));
}

runMain(main, { teardown, lastResort, hardStopMs: Number(opt['max-minutes']) * 60_000 + 180_000, log });

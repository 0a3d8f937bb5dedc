// Fairness under pressure (issue 13, items 4 and 6), on loopback; no root,
// no namespaces. A gateway (dist/cli.js, a process of its own) runs two
// sites in front of the raw upstream (bench/lib/rawserver.mjs): "flood" takes
// the load, "bystander" has one logged-in session whose NOOP round trip is
// measured, with GET /healthz on the metrics endpoint, every few ms. The
// load comes from bench/lib/loadgen.mjs in another process.
//
//   idle        nothing else running (the baseline of every ratio)
//   connect     --rate new connections/s on the flood site, each closed at its first reply
//   pasv        32 logged-in sessions on the flood site sending PASV back to back
//   transfers   64 downloads looping through the flood site
// The bystander site's upstream is a second raw upstream that no load reaches; in every phase a NOOP
// straight to it (same machine, same scheduler, no gateway) is interleaved with the bystander's:
// bystander p99 minus direct p99 is the latency the gateway adds.
//
// Usage: npm run build && node bench/fairness.mjs [--seconds 10] [--rate 2000] [--workers 0,1] [--json out.json]
//        [--cli path/to/cli.js]   (another build, e.g. of the commit before a change, for a before/after figure)
//        [--phases idle,transfers] [--node-arg=--cpu-prof --node-arg=--cpu-prof-dir=bench/.out/prof]
// Every phase is bounded by --seconds; the whole run by a hard stop.
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuSeconds } from './lib/measure.mjs';

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rate: { type: 'string', default: '2000' },
    workers: { type: 'string', default: '0,1' },
    phases: { type: 'string', default: 'idle,connect,pasv,transfers' },
    'node-arg': { type: 'string', multiple: true, default: [] },
    cli: { type: 'string', default: fileURLToPath(new URL('../dist/cli.js', import.meta.url)) },
    'probe-every-ms': { type: 'string', default: '5' },
    json: { type: 'string' },
  },
});

const HERE = fileURLToPath(new URL('.', import.meta.url));
const CLI = opt.cli;
const SECONDS = Number(opt.seconds);
const PROBE_EVERY_MS = Number(opt['probe-every-ms']);
const HOST = '127.0.0.1';
const DATA_PORTS = 128;
const children = new Set();
const dir = mkdtempSync(join(tmpdir(), 'ftp-alg-fairness-'));

const hardStop = setTimeout(() => {
  process.stderr.write('hard stop\n');
  cleanup();
  process.exit(2);
}, (SECONDS * 6 + 60) * 1000 * opt.workers.split(',').length);
hardStop.unref();

function cleanup() {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

// ---- ports and processes ---------------------------------------------------

async function canListen(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: HOST, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** `n` consecutive free ports (checked one by one) in 20000-30000. */
async function freeBlock(n) {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (10_000 - n));
    let ok = true;
    for (let p = base; p < base + n && ok; p++) ok = await canListen(p);
    if (ok) return base;
  }
  throw new Error(`no block of ${n} free ports`);
}

function spawnTracked(args, stdout = 'pipe') {
  const child = spawn(process.execPath, args, { stdio: ['ignore', stdout, 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function until(what, check, timeoutMs = 15_000) {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startRawServer() {
  const base = await freeBlock(DATA_PORTS + 1);
  const child = spawnTracked([join(HERE, 'lib/rawserver.mjs'), HOST, String(base), String(base + 1), String(DATA_PORTS)]);
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  await until('raw upstream', () => (out.includes('ready') ? true : undefined));
  return { child, port: base };
}

async function startGateway(floodPort, quietPort, workers) {
  const block = await freeBlock(800);
  const range = (i) => ({ min: block + i * 200, max: block + i * 200 + 199 });
  const site = (name, i, upstreamPort) => ({
    name,
    listen: { host: HOST, port: 0 },
    upstream: { host: HOST, port: upstreamPort },
    externalAddress: HOST,
    passivePorts: range(i * 2),
    activePorts: range(i * 2 + 1),
  });
  const config = { log: { level: 'info' }, metrics: { listen: `${HOST}:0` }, dataPlane: { workers }, sites: [site('flood', 0, floodPort), site('bystander', 1, quietPort)] };
  const configPath = join(dir, `gateway-${workers}.json`);
  writeFileSync(configPath, JSON.stringify(config));
  const logPath = join(dir, `gateway-${workers}.log`);
  const child = spawnTracked([...opt['node-arg'], CLI, '--config', configPath], openSync(logPath, 'w'));
  const lines = () => readFileSync(logPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const ports = await until('gateway listening', () => {
    const ls = lines();
    const port = (name) => ls.find((l) => l.msg === 'listening' && l.site === name)?.port;
    const metrics = ls.find((l) => l.msg === 'metrics listening')?.http;
    return port('flood') !== undefined && port('bystander') !== undefined && metrics !== undefined
      ? { flood: port('flood'), bystander: port('bystander'), metrics: Number(metrics.slice(metrics.lastIndexOf(':') + 1)) }
      : undefined;
  });
  return { child, ...ports };
}

function loadgen(args) {
  const child = spawnTracked([join(HERE, 'lib/loadgen.mjs'), ...args]);
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  return new Promise((resolve) => child.once('exit', () => resolve(out.trim() === '' ? { error: 'no output' } : JSON.parse(out.trim().split('\n').pop()))));
}

// ---- probes ------------------------------------------------------------------

/** A logged-in control session whose NOOP round trip is timed. */
async function noopSession(port) {
  const socket = net.connect({ host: HOST, port, noDelay: true });
  let pending = '';
  let waiter;
  socket.on('data', (c) => {
    pending += c.toString('latin1');
    const eol = pending.indexOf('\n');
    if (eol >= 0 && waiter !== undefined) {
      const line = pending.slice(0, eol);
      pending = pending.slice(eol + 1);
      const w = waiter;
      waiter = undefined;
      w(line);
    }
  });
  const next = () =>
    new Promise((resolve) => {
      waiter = resolve;
      socket.emit('data', Buffer.alloc(0));
    });
  const cmd = (line) => {
    const reply = next();
    socket.write(`${line}\r\n`);
    return reply;
  };
  await next();
  await cmd('USER bench');
  await cmd('PASS bench');
  return {
    async noop() {
      const t = performance.now();
      const r = await cmd('NOOP');
      if (!r.startsWith('200')) throw new Error(`NOOP: ${r}`);
      return performance.now() - t;
    },
    close: () => socket.destroy(),
  };
}

function healthz(port) {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get({ host: HOST, port, path: '/healthz', agent: false }, (res) => {
      res.resume();
      res.once('end', () => (res.statusCode === 200 ? resolve(performance.now() - t) : reject(new Error(`healthz ${res.statusCode}`))));
    });
    req.once('error', reject);
    req.setTimeout(5_000, () => req.destroy(new Error('healthz timeout')));
  });
}

/** Run `probes` (name → async () => ms) in turn every PROBE_EVERY_MS until `stop` resolves. */
async function sample(probes, stop) {
  const samples = Object.fromEntries(Object.keys(probes).map((k) => [k, []]));
  let stopped = false;
  void stop.then(() => (stopped = true));
  let errors = 0;
  while (!stopped) {
    for (const [name, probe] of Object.entries(probes)) {
      try {
        samples[name].push(await probe());
      } catch {
        errors++;
      }
    }
    await new Promise((r) => setTimeout(r, PROBE_EVERY_MS));
  }
  return { samples, errors };
}

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

const summary = (xs) => ({ n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99), max: pct(xs, 100) });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the run -------------------------------------------------------------------

async function runFor(workers, upstream, quiet) {
  const gw = await startGateway(upstream.port, quiet.port, workers);
  const bystander = await noopSession(gw.bystander);
  const direct = await noopSession(quiet.port);
  const probes = { noop: () => bystander.noop(), healthz: () => healthz(gw.metrics) };
  const target = `${HOST}:${gw.flood}`;
  const phases = {};
  const wanted = new Set(opt.phases.split(','));
  const phase = async (name, extraProbes, load) => {
    if (!wanted.has(name)) return;
    const cpu0 = cpuSeconds(gw.child.pid);
    const t0 = performance.now();
    const loadDone = load();
    const stop = load === idle ? loadDone : loadDone.then(() => undefined);
    const { samples, errors } = await sample({ ...probes, ...extraProbes }, stop);
    const result = await loadDone;
    const seconds = (performance.now() - t0) / 1000;
    phases[name] = {
      load: typeof result === 'object' ? result : undefined,
      gatewayCpu: (cpuSeconds(gw.child.pid) - cpu0) / seconds,
      probeErrors: errors,
      ...Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, summary(xs)])),
    };
    process.stderr.write(`workers=${workers} ${name}: ${JSON.stringify(phases[name])}\n`);
    await sleep(1_000); // let the flood's sessions end before the next phase
  };
  const idle = () => sleep(Math.min(5, SECONDS) * 1000);
  await phase('idle', { direct: () => direct.noop() }, idle);
  await phase('connect', { direct: () => direct.noop() }, () => loadgen(['connect', '--target', target, '--rate', opt.rate, '--seconds', String(SECONDS)]));
  await phase('pasv', { direct: () => direct.noop() }, () => loadgen(['pasv', '--target', target, '--sessions', '32', '--seconds', String(SECONDS)]));
  await phase('transfers', { direct: () => direct.noop() }, () => loadgen(['transfers', '--target', target, '--flows', '64', '--seconds', String(SECONDS)]));
  bystander.close();
  direct.close();
  gw.child.kill('SIGTERM');
  await new Promise((r) => (gw.child.exitCode !== null ? r() : gw.child.once('exit', r)));
  return phases;
}

const f = (x) => (Number.isFinite(x) ? (x >= 10 ? x.toFixed(1) : x.toFixed(2)) : '—');

function report(all) {
  const out = ['| workers | phase | load achieved | gateway CPU | bystander NOOP p50 / p99 ms | /healthz p50 / p99 ms | NOOP direct p50 / p99 ms | added p99 ms |', '|---|---|---|---|---|---|---|---|'];
  for (const [workers, phases] of Object.entries(all)) {
    for (const [name, p] of Object.entries(phases)) {
      const l = p.load ?? {};
      const load =
        l.mode === 'connect'
          ? `${Math.round(l.ratePerSecond)} conn/s offered, ${Math.round(l.completedPerSecond)}/s answered (${l.refused} refused, ${l.errors} errors)`
          : l.mode === 'pasv'
            ? `${Math.round(l.perSecond)} PASV/s`
            : l.mode === 'transfers'
              ? `${l.flows} flows, ${f(l.gbitPerSecond)} Gbit/s`
              : 'none';
      const added = p.direct === undefined ? '—' : f(p.noop.p99 - p.direct.p99);
      const direct = p.direct === undefined ? '—' : `${f(p.direct.p50)} / ${f(p.direct.p99)}`;
      out.push(`| ${workers} | ${name} | ${load} | ${f(p.gatewayCpu * 100)}% | ${f(p.noop.p50)} / ${f(p.noop.p99)} | ${f(p.healthz.p50)} / ${f(p.healthz.p99)} | ${direct} | ${added} |`);
    }
  }
  return out.join('\n');
}

try {
  const upstream = await startRawServer();
  const quiet = await startRawServer(); // the bystander site's and the direct probe's: no load ever reaches it
  const all = {};
  for (const w of opt.workers.split(',').map(Number)) all[w] = await runFor(w, upstream, quiet);
  upstream.child.kill('SIGTERM');
  quiet.child.kill('SIGTERM');
  const table = report(all);
  process.stdout.write(`${table}\n`);
  if (opt.json !== undefined) writeFileSync(opt.json, JSON.stringify({ date: new Date().toISOString(), node: process.version, seconds: SECONDS, rate: Number(opt.rate), results: all }, null, 2));
} finally {
  cleanup();
}

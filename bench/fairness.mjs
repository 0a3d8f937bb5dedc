// Fairness under pressure (issue 13, items 4 and 6). A gateway (dist/cli.js, a process of its own) runs two
// sites in front of the raw upstream (bench/lib/rawserver.mjs): "flood" takes the load, "bystander" has one
// logged-in session whose NOOP round trip is measured, with GET /healthz on the metrics endpoint, every few ms.
// The load comes from bench/lib/loadgen.mjs in another process.
//
//   idle        nothing else running (the baseline of every ratio)
//   connect     --rate new connections/s on the flood site, each closed at its first reply
//   pasv        32 logged-in sessions on the flood site sending PASV back to back
//   transfers   64 downloads looping through the flood site
// The bystander site's upstream is a second raw upstream that no load reaches; in every phase a NOOP
// straight to it (same machine, same scheduler, no gateway) is interleaved with the bystander's:
// bystander p99 minus direct p99 is the latency the gateway adds. Both NOOPs come from the same client
// process and reach the same upstream process, and take turns at going first (a probe that follows another,
// or follows the sleep between rounds of probes, finds the caches and CPUs in another state).
// --probe-rt runs the probes' two ends (this process's main thread and the quiet upstream's) at SCHED_RR 1:
// on a real edge the client and upstream are other machines whose wake-ups the edge's load does not delay.
// Here their run-queue waits fall on the direct and the bystander NOOP alike, but with a tail of several ms
// that makes each p99 (the 13th-largest of ~1,300 samples) move by more between rounds than the gateway
// adds: the difference of two such p99s measures the machine, not the gateway.
//
// Planes (--planes, run in turn within each of --rounds rounds, so a busy machine's swings fall on all alike):
//   relay      dataPlane.workers 0: pinholes relayed on the control loop
//   workers    dataPlane.workers 1: relayed in a worker thread
//   nftables   dataPlane.kind nftables: the kernel forwards the transfers (root; implies --netns)
//   --plane NAME={json}  any other config overlay, e.g. --plane 'nice0={"dataPlane":{"workers":1,"workerNice":0}}'
//              ("env" in it: environment variables for that gateway; "bench" in it: where that plane's packet work and
//              threads run, with --netns, each a CPU list like "1" or "0-1", every key optional, undone after the plane:
//                rps      RPS on the topology's four veths: their receive path queued to these CPUs
//                rfs      RFS on the veths (rps_flow_cnt 4096; the global rps_sock_flow_entries 32768 for the run):
//                         each flow's receive path on the CPU of the thread that reads it, "rps" for the rest
//                         (forwarded flows); its value is ignored ("on")
//                napi     threaded NAPI on the veths (GRO on, /sys/class/net/DEV/threaded 1), its threads pinned here
//                control  the gateway's main (control) thread pinned here (taskset on its thread id)
//                others   every other thread of the gateway (data workers, V8/libuv helpers) and its child processes
//                load     the load's processes (loadgen, the flood's upstream), standing for other machines
//                probes   the probes' ends (this process, the quiet upstream), standing for other machines too
//              e.g. --plane 'rr-split={"dataPlane":{"workers":1},"controlPriority":{"policy":"rr"},"bench":{"rps":"1","control":"0","others":"1"}}')
// Without --netns everything runs on loopback (no root). With --netns the bench's three namespaces
// (bench/lib/topology.mjs, routed, so the direct probe crosses the edge's kernel) hold the load and probes
// (client), the gateway (edge) and both raw upstreams (server): the kernel plane needs real interfaces.
//
// Usage: npm run build && node bench/fairness.mjs [--seconds 10] [--rate 2000] [--planes relay,workers] [--plane NAME={json}] [--rounds 1]
//        [--netns] [--load-nice 0] [--probe-rt] [--json out.json] [--log-dir DIR] [--cli path/to/cli.js]   (another build, for a before/after figure)
//        [--phases idle,transfers] [--warmup 3000 (NOOPs before the first phase)] [--node-arg=--cpu-prof --node-arg=--cpu-prof-dir=bench/.out/prof]
// Every phase is bounded by --seconds; the whole run by a hard stop.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuSeconds } from './lib/measure.mjs';
import { onlineCpus, perCpuTicks, pinGateway, pinProcess, rpsSockFlowEntries, setRfs, setRps, setThreadedNapi } from './lib/steering.mjs';

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rate: { type: 'string', default: '2000' },
    planes: { type: 'string', default: 'relay,workers' },
    plane: { type: 'string', multiple: true, default: [] },
    rounds: { type: 'string', default: '1' },
    netns: { type: 'boolean', default: false },
    phases: { type: 'string', default: 'idle,connect,pasv,transfers' },
    warmup: { type: 'string', default: '3000' },
    'node-arg': { type: 'string', multiple: true, default: [] },
    cli: { type: 'string', default: fileURLToPath(new URL('../dist/cli.js', import.meta.url)) },
    'probe-every-ms': { type: 'string', default: '5' },
    'load-nice': { type: 'string', default: '0' },
    'probe-rt': { type: 'boolean', default: false },
    'log-dir': { type: 'string' },
    json: { type: 'string' },
  },
});

const BUILTIN_PLANES = {
  relay: { dataPlane: { workers: 0 } },
  workers: { dataPlane: { workers: 1 } },
  nftables: { dataPlane: { kind: 'nftables', workers: 0 } },
};
/** [name, config overlay] in the order given. */
const PLANES = [
  ...opt.planes
    .split(',')
    .filter(Boolean)
    .map((name) => {
      if (BUILTIN_PLANES[name] === undefined) throw new Error(`unknown plane ${name} (relay, workers, nftables; others with --plane NAME={json})`);
      return [name, BUILTIN_PLANES[name]];
    }),
  ...opt.plane.map((spec) => [spec.slice(0, spec.indexOf('=')), JSON.parse(spec.slice(spec.indexOf('=') + 1))]),
];
const ROUNDS = Number(opt.rounds);
/**
 * --load-nice N runs the load's two ends (loadgen and the flood's upstream) N nice levels down: on a real
 * edge they are other machines, here they take the same 2 cores from the gateway and from the direct probe.
 */
const LOAD_NICE = Number(opt['load-nice']);
const NETNS = opt.netns || PLANES.some(([, o]) => o.dataPlane?.kind === 'nftables');

if (NETNS && process.env.FAIRNESS_NETNS === undefined) {
  // The outer process: make the namespaces, run this script again inside the client one, tear down.
  const { createTopology, destroyAllSync } = await import('./lib/topology.mjs');
  process.once('exit', destroyAllSync);
  const topo = await createTopology();
  // RFS's socket flow table is global (the init namespace's sysctl): sized here for the run, put back after.
  const sockFlows = PLANES.some(([, o]) => o.bench?.rfs !== undefined) ? rpsSockFlowEntries(32_768) : undefined;
  if (sockFlows !== undefined) process.once('exit', () => rpsSockFlowEntries(sockFlows));
  await topo.setVariant('none'); // forwarding on (the kernel plane needs it), and a route for the direct probe
  const inner = spawn('ip', ['netns', 'exec', topo.ns.client, process.execPath, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, FAIRNESS_NETNS: JSON.stringify(topo.ns) },
  });
  const forward = (sig) => () => inner.kill(sig);
  process.once('SIGINT', forward('SIGINT'));
  const code = await new Promise((resolve) => inner.once('exit', (c) => resolve(c ?? 1)));
  await topo.destroy();
  process.exit(code);
}

/** Namespaces (--netns) or loopback: where each program runs and the addresses they use. */
const NS = process.env.FAIRNESS_NETNS === undefined ? undefined : JSON.parse(process.env.FAIRNESS_NETNS);
const ADDR = NS === undefined ? { edge: '127.0.0.1', upstream: '127.0.0.1' } : { edge: '203.0.113.1', upstream: '192.0.2.10' };
const HERE = fileURLToPath(new URL('.', import.meta.url));
const CLI = opt.cli;
const SECONDS = Number(opt.seconds);
const PROBE_EVERY_MS = Number(opt['probe-every-ms']);
const DATA_PORTS = 128;
const children = new Set();
const dir = mkdtempSync(join(tmpdir(), 'ftp-alg-fairness-'));

const hardStop = setTimeout(() => {
  process.stderr.write('hard stop\n');
  cleanup();
  process.exit(2);
}, (SECONDS * 6 + 60) * 1000 * PLANES.length * ROUNDS);
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
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

let nextNsBlock = 20_000;
/** `n` consecutive free ports (checked one by one) in 20000-30000; in fresh namespaces, the next block. */
async function freeBlock(n) {
  if (NS !== undefined) {
    const base = nextNsBlock;
    nextNsBlock += n;
    return base;
  }
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (10_000 - n));
    let ok = true;
    for (let p = base; p < base + n && ok; p++) ok = await canListen(p);
    if (ok) return base;
  }
  throw new Error(`no block of ${n} free ports`);
}

/** A node program, in namespace `ns` (server, edge) with --netns, else here; `nice` above 0 through nice(1). */
function spawnTracked(args, { stdout = 'pipe', ns = undefined, env = {}, nice = 0 } = {}) {
  const niced = nice > 0 ? ['nice', '-n', String(nice), process.execPath, ...args] : [process.execPath, ...args];
  const node = childCpus === undefined ? niced : ['taskset', '-c', childCpus, ...niced];
  const [cmd, argv] = ns === undefined || NS === undefined ? [node[0], node.slice(1)] : ['ip', ['netns', 'exec', NS[ns], ...node]];
  const child = spawn(cmd, argv, { stdio: ['ignore', stdout, 'inherit'], env: { ...process.env, ...env } }); // ip netns exec execs node: the pid is node's
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

async function startRawServer(nice = 0) {
  const base = await freeBlock(DATA_PORTS + 1);
  const child = spawnTracked([join(HERE, 'lib/rawserver.mjs'), ADDR.upstream, String(base), String(base + 1), String(DATA_PORTS)], { ns: 'server', nice });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  await until('raw upstream', () => (out.includes('ready') ? true : undefined));
  return { child, port: base };
}

async function startGateway(floodPort, quietPort, plane, { env, bench: _steer, ...overlay }) {
  const block = await freeBlock(800);
  const range = (i) => ({ min: block + i * 200, max: block + i * 200 + 199 });
  const site = (name, i, upstreamPort) => ({
    name,
    listen: { host: ADDR.edge, port: 0 },
    upstream: { host: ADDR.upstream, port: upstreamPort },
    externalAddress: ADDR.edge,
    passivePorts: range(i * 2),
    activePorts: range(i * 2 + 1),
  });
  const config = { log: { level: 'info' }, metrics: { listen: `${ADDR.edge}:0` }, ...overlay, sites: [site('flood', 0, floodPort), site('bystander', 1, quietPort)] };
  const configPath = join(dir, `gateway-${plane}.json`);
  writeFileSync(configPath, JSON.stringify(config));
  const logPath = join(opt['log-dir'] ?? dir, `gateway-${plane}.log`); // --log-dir keeps them (e.g. for --trace-gc)
  const child = spawnTracked([...opt['node-arg'], CLI, '--config', configPath], { stdout: openSync(logPath, 'w'), ns: 'edge', env });
  // Lines that are not JSON (--trace-gc through --node-arg) are skipped.
  const json = (l) => {
    try {
      return JSON.parse(l);
    } catch {
      return {};
    }
  };
  const lines = () => readFileSync(logPath, 'utf8').split('\n').filter(Boolean).map(json);
  const ports = await until('gateway listening', () => {
    if (child.exitCode !== null) throw new Error(`gateway exited (${child.exitCode}): ${readFileSync(logPath, 'utf8').slice(-1500)}`);
    const ls = lines();
    const port = (name) => ls.find((l) => l.msg === 'listening' && l.site === name)?.port;
    const metrics = ls.find((l) => l.msg === 'metrics listening')?.http;
    return port('flood') !== undefined && port('bystander') !== undefined && metrics !== undefined
      ? { flood: port('flood'), bystander: port('bystander'), metrics: Number(metrics.slice(metrics.lastIndexOf(':') + 1)) }
      : undefined;
  });
  const kind = lines().find((l) => l.msg === 'data plane')?.dataPlane;
  return { child, kind, ...ports };
}

function loadgen(args, cpus) {
  const child = spawnTracked([join(HERE, 'lib/loadgen.mjs'), ...args], { nice: LOAD_NICE });
  if (cpus !== undefined) pinProcess(child.pid, cpus);
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  return new Promise((resolve) => child.once('exit', () => resolve(out.trim() === '' ? { error: 'no output' } : JSON.parse(out.trim().split('\n').pop()))));
}

/** Per thread of a process: [ns on a CPU, ns waiting in a run queue, time slices] (/proc/PID/task/TID/schedstat). */
function threadStats(pid) {
  const stats = new Map();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        stats.set(Number(tid), readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number));
      } catch {
        // the thread ended meanwhile
      }
    }
  } catch {
    // the process ended
  }
  return stats;
}

/**
 * How the gateway's threads were scheduled between two threadStats: the main (control) thread's CPU share and
 * its mean wait in a run queue per time slice (about the delay from being woken to running), and the same for
 * the busiest other thread (a data worker, when there is one).
 */
function scheduling(pid, before, after, seconds) {
  const diff = [...after].map(([tid, [cpu, wait, slices]]) => {
    const [cpu0, wait0, slices0] = before.get(tid) ?? [0, 0, 0];
    return { tid, cpu: cpu - cpu0, wait: wait - wait0, slices: slices - slices0 };
  });
  const shape = (t) => (t === undefined ? undefined : { cpu: t.cpu / 1e9 / seconds, waitPerSliceMs: t.slices > 0 ? t.wait / t.slices / 1e6 : 0 });
  const others = diff.filter((t) => t.tid !== pid).sort((a, b) => b.cpu - a.cpu);
  return { main: shape(diff.find((t) => t.tid === pid)), busiest: shape(others[0]) };
}

/**
 * The machine's CPU time by kind (/proc/stat "cpu" line, in ticks) and that of the ksoftirqd threads: where the
 * cores went during a phase. Softirq time (the kernel's packet processing, forwarding included) runs before any
 * thread, real-time ones too; ksoftirqd is where it goes when it overflows, as an ordinary thread.
 */
function machineStat() {
  const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).map(Number);
  let ksoftirqd = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!stat.includes('(ksoftirqd/')) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ksoftirqd += Number(fields[11]) + Number(fields[12]); // utime + stime
    } catch {
      // gone meanwhile
    }
  }
  return { ticks, ksoftirqd, perCpu: perCpuTicks() };
}

/** Shares of all cores' time between two machineStats: busy (not idle or iowait), softirq, and ksoftirqd's. */
function machineShares(before, after) {
  const d = after.ticks.map((t, i) => t - before.ticks[i]);
  const total = d.reduce((a, b) => a + b, 0);
  const [, , , idle, iowait, , softirq, steal] = d;
  const perCpu = after.perCpu.map(([b, si, t], i) => {
    const [b0, si0, t0] = before.perCpu[i];
    return { busy: (b - b0) / (t - t0), softirq: (si - si0) / (t - t0) };
  });
  return { busy: (total - idle - iowait) / total, softirq: softirq / total, ksoftirqd: (after.ksoftirqd - before.ksoftirqd) / total, steal: (steal ?? 0) / total, perCpu };
}

// ---- probes ------------------------------------------------------------------

/** A logged-in control session whose NOOP round trip is timed. */
async function noopSession(host, port) {
  const socket = net.connect({ host, port, noDelay: true });
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
    const req = http.get({ host: ADDR.edge, port, path: '/healthz', agent: false }, (res) => {
      res.resume();
      res.once('end', () => (res.statusCode === 200 ? resolve(performance.now() - t) : reject(new Error(`healthz ${res.statusCode}`))));
    });
    req.once('error', reject);
    req.setTimeout(5_000, () => req.destroy(new Error('healthz timeout')));
  });
}

/**
 * Run `probes` (name → async () => ms) in turn every PROBE_EVERY_MS until `stop` resolves; the first two
 * (the NOOPs compared) swap places every other round, so neither is always the one after the sleep.
 */
async function sample(probes, stop) {
  const samples = Object.fromEntries(Object.keys(probes).map((k) => [k, []]));
  const [first, second, ...rest] = Object.entries(probes);
  let stopped = false;
  void stop.then(() => (stopped = true));
  let errors = 0;
  for (let round = 0; !stopped; round++) {
    for (const [name, probe] of round % 2 === 0 ? [first, second, ...rest] : [second, first, ...rest]) {
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

/** Set while this process is pinned ("probes"): the CPUs its children start on instead of inheriting its own. */
let childCpus;

/** The plane's "bench" settings (see the header) before its gateway starts; returns what undoes them. */
function steer(s = {}, upstream, quiet) {
  if (Object.keys(s).length > 0 && NS === undefined) throw new Error('"bench" settings of a plane need --netns');
  if (s.rps !== undefined) setRps(NS, s.rps);
  if (s.napi !== undefined) setThreadedNapi(NS, s.napi);
  if (s.rfs !== undefined) setRfs(NS, 4096);
  if (s.load !== undefined) pinProcess(upstream.child.pid, s.load);
  if (s.probes !== undefined) {
    for (const pid of [process.pid, quiet.child.pid]) pinProcess(pid, s.probes);
    childCpus = onlineCpus();
  }
  return () => {
    if (s.probes !== undefined) {
      for (const pid of [process.pid, quiet.child.pid]) pinProcess(pid, onlineCpus());
      childCpus = undefined;
    }
    if (s.rps !== undefined) setRps(NS, undefined);
    if (s.napi !== undefined) setThreadedNapi(NS, undefined);
    if (s.rfs !== undefined) setRfs(NS, 0);
    if (s.load !== undefined) pinProcess(upstream.child.pid, onlineCpus());
  };
}

async function runFor(plane, overlay, upstream, quiet) {
  const undo = steer(overlay.bench, upstream, quiet);
  try {
    return await runSteered(plane, overlay, upstream, quiet);
  } finally {
    undo();
  }
}

async function runSteered(plane, overlay, upstream, quiet) {
  const s = overlay.bench ?? {};
  const gw = await startGateway(upstream.port, quiet.port, plane, overlay);
  if (s.control !== undefined || s.others !== undefined) pinGateway(gw.child.pid, s.control, s.others);
  const bystander = await noopSession(ADDR.edge, gw.bystander);
  const direct = await noopSession(ADDR.upstream, quiet.port);
  // A fresh process runs its first few thousand round trips in V8's lower tiers (p99 per block of 1,000
  // NOOPs fell about tenfold over the first 4,000, through the gateway and for the Node client alike):
  // warm both paths up so the phases measure steady state, not the JIT.
  for (let i = 0; i < Number(opt.warmup); i++) {
    await bystander.noop();
    await direct.noop();
  }
  const probes = { noop: () => bystander.noop(), direct: () => direct.noop(), healthz: () => healthz(gw.metrics) };
  const target = `${ADDR.edge}:${gw.flood}`;
  const phases = {};
  const wanted = new Set(opt.phases.split(','));
  const phase = async (name, load) => {
    if (!wanted.has(name)) return;
    process.stderr.write(`${plane} ${name}: start\n`); // a mark to start a trace by (bench/schedDelay.mjs)
    const cpu0 = cpuSeconds(gw.child.pid);
    const threads0 = threadStats(gw.child.pid);
    const machine0 = machineStat();
    const t0 = performance.now();
    const loadDone = load();
    const stop = load === idle ? loadDone : loadDone.then(() => undefined);
    const { samples, errors } = await sample(probes, stop);
    const result = await loadDone;
    const seconds = (performance.now() - t0) / 1000;
    const threads = scheduling(gw.child.pid, threads0, threadStats(gw.child.pid), seconds);
    const machine = machineShares(machine0, machineStat());
    phases[name] = { load: typeof result === 'object' ? result : undefined, gatewayCpu: (cpuSeconds(gw.child.pid) - cpu0) / seconds, threads, machine, probeErrors: errors, samples };
    const brief = Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, summary(xs)]));
    process.stderr.write(`${plane} (${gw.kind}) ${name}: ${JSON.stringify({ load: result, gatewayCpu: phases[name].gatewayCpu, threads, machine, errors, ...brief })}\n`);
    await sleep(1_000); // let the flood's sessions end before the next phase
  };
  const idle = () => sleep(Math.min(5, SECONDS) * 1000);
  await phase('idle', idle);
  await phase('connect', () => loadgen(['connect', '--target', target, '--rate', opt.rate, '--seconds', String(SECONDS)], s.load));
  await phase('pasv', () => loadgen(['pasv', '--target', target, '--sessions', '32', '--seconds', String(SECONDS)], s.load));
  await phase('transfers', () => loadgen(['transfers', '--target', target, '--flows', '64', '--seconds', String(SECONDS)], s.load));
  bystander.close();
  direct.close();
  gw.child.kill('SIGTERM');
  await new Promise((r) => (gw.child.exitCode !== null ? r() : gw.child.once('exit', r)));
  return { kind: gw.kind, phases };
}

const f = (x) => (Number.isFinite(x) ? (x >= 10 ? x.toFixed(1) : x.toFixed(2)) : '—');
const median = (xs) => pct(xs, 50);

function loadText(l = {}) {
  if (l.mode === 'connect') return `${Math.round(l.ratePerSecond)} conn/s offered, ${Math.round(l.completedPerSecond)}/s answered (${l.refused} refused, ${l.errors} errors)`;
  if (l.mode === 'pasv') return `${Math.round(l.perSecond)} PASV/s`;
  if (l.mode === 'transfers') return `${l.flows} flows, ${f(l.gbitPerSecond)} Gbit/s`;
  return 'none';
}

/**
 * One row per plane and phase: the samples of every round pooled; "added p99" is the pooled bystander p99
 * minus the pooled direct p99, "per round" the same difference in each round (how much a busy machine moved it).
 */
function report(runs) {
  const out = [
    '| plane | phase | load (last round) | machine busy / softirq / ksoftirqd | softirq per CPU | gateway CPU | main thread: CPU, run-queue wait per slice ms | busiest other thread: same | bystander NOOP p50 / p99 ms | /healthz p50 / p99 ms | NOOP direct p50 / p99 ms | added p99 ms | p99 ratio | added p99 per round |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const [plane] of PLANES) {
    const mine = runs.filter((r) => r.plane === plane);
    for (const name of opt.phases.split(',')) {
      const rounds = mine.map((r) => r.phases[name]).filter((p) => p !== undefined);
      if (rounds.length === 0) continue;
      const pool = (k) => rounds.flatMap((p) => p.samples[k]);
      const [noop, health, direct] = [summary(pool('noop')), summary(pool('healthz')), summary(pool('direct'))];
      const perRound = rounds.map((p) => f(pct(p.samples.noop, 99) - pct(p.samples.direct, 99))).join(', ');
      const cpu = median(rounds.map((p) => p.gatewayCpu));
      const thread = (which) => {
        const ts = rounds.map((p) => p.threads[which]).filter((t) => t !== undefined);
        return ts.length === 0 ? '—' : `${f(median(ts.map((t) => t.cpu)) * 100)}%, ${f(median(ts.map((t) => t.waitPerSliceMs)))}`;
      };
      const share = (k) => `${f(median(rounds.map((p) => p.machine[k])) * 100)}%`;
      const perCpu = rounds[0].machine.perCpu.map((_, i) => `${f(median(rounds.map((p) => p.machine.perCpu[i].softirq)) * 100)}%`).join(' / ');
      out.push(
        `| ${plane} (${mine[0].kind}) | ${name} | ${loadText(rounds.at(-1).load)} | ${share('busy')} / ${share('softirq')} / ${share('ksoftirqd')} | ${perCpu} | ${f(cpu * 100)}% | ${thread('main')} | ${thread('busiest')} | ${f(noop.p50)} / ${f(noop.p99)} | ${f(health.p50)} / ${f(health.p99)} | ${f(direct.p50)} / ${f(direct.p99)} | ${f(noop.p99 - direct.p99)} | ${f(noop.p99 / direct.p99)} | ${perRound} |`,
      );
    }
  }
  return out.join('\n');
}

try {
  const upstream = await startRawServer(LOAD_NICE); // the flood's upstream: part of the load
  const quiet = await startRawServer(); // the bystander site's and the direct probe's: no load ever reaches it
  if (opt['probe-rt']) {
    // The probes' two ends at SCHED_RR 1 (main threads only); this process's with reset-on-fork, so the
    // gateway, loadgen and the flood's upstream it starts from now on run as SCHED_OTHER.
    execFileSync('chrt', ['--rr', '--reset-on-fork', '--pid', '1', String(process.pid)]);
    execFileSync('chrt', ['--rr', '--pid', '1', String(quiet.child.pid)]);
  }
  const runs = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [plane, overlay] of PLANES) {
      process.stderr.write(`round ${round}/${ROUNDS}: ${plane}\n`);
      const { kind, phases } = await runFor(plane, overlay, upstream, quiet);
      runs.push({ round, plane, kind, phases });
    }
  }
  upstream.child.kill('SIGTERM');
  quiet.child.kill('SIGTERM');
  const table = report(runs);
  process.stdout.write(`${table}\n`);
  if (opt.json !== undefined) {
    const brief = runs.map((r) => ({ ...r, phases: Object.fromEntries(Object.entries(r.phases).map(([k, p]) => [k, { ...p, samples: Object.fromEntries(Object.entries(p.samples).map(([n, xs]) => [n, summary(xs)])) }])) }));
    const settings = { seconds: SECONDS, rate: Number(opt.rate), netns: NS !== undefined, loadNice: LOAD_NICE, probeRt: opt['probe-rt'] };
    writeFileSync(opt.json, JSON.stringify({ date: new Date().toISOString(), node: process.version, ...settings, runs: brief, table }, null, 2));
  }
} finally {
  cleanup();
}

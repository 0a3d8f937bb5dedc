#!/usr/bin/env node
// CPU of the gateway per warm session, builds side by side (issue 9's session
// rate): an A/B of gateway builds in the bench's namespaces against vsftpd.
//
//   node bench/sessCpu.mjs --build base=/work/wt-base/dist/cli.js --build new=dist/cli.js
//                          [--planes relay,nftables] [--rounds 3] [--warm 300] [--sessions 400]
//                          [--concurrency 1] [--node-args '--cpu-prof --cpu-prof-dir=/tmp/p']
//                          [--json FILE]
//
// Each round starts every (build, plane) afresh in an order that rotates by
// round, runs --warm untimed sessions (4 at a time) so V8 has optimised the
// session path, then --sessions sessions (login, PASV, LIST, QUIT, as the
// sessions group of run.mjs) and records the gateway's CPU (user + system,
// from /proc) per session and the session rate. Prints the medians and each
// build's ratio to the first one, per plane and per round (paired ratios).
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeFile } from 'node:fs/promises';
import { ftpRoot, scratchDir } from './lib/ftpRoot.mjs';
import { cpuSeconds, median } from './lib/measure.mjs';
import { PORTS, gatewayConfig, startVsftpd, waitListening } from './lib/peers.mjs';
import { runJson, runMain, start, stop } from './lib/proc.mjs';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ADDR, createTopology, destroyAllSync } from './lib/topology.mjs';

const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
const AGENT = join(REPO, 'bench/lib/agent.mjs');

const { values: opt } = parseArgs({
  options: {
    build: { type: 'string', multiple: true },
    planes: { type: 'string', default: 'relay,nftables' },
    rounds: { type: 'string', default: '3' },
    warm: { type: 'string', default: '300' },
    sessions: { type: 'string', default: '400' },
    concurrency: { type: 'string', default: '1' },
    'node-args': { type: 'string', default: '' },
    json: { type: 'string' },
    /** perf record (cpu-clock, call graphs) of the gateway during the timed sessions into FILE.<build>.<plane>; run the gateway with --node-args=--perf-basic-prof for JS names (V8 then also leaves isolate-*-v8.log files in the current directory: delete them). */
    perf: { type: 'string' },
    /** strace -c -f of the gateway during the timed sessions into FILE.<build>.<plane> (syscall counts; slows the gateway: CPU figures of such a run are not comparable). */
    strace: { type: 'string' },
    /** What each gateway printed (stdout, its last MiB), appended to FILE (e.g. with --node-args=--trace-deopt). */
    'gateway-log': { type: 'string' },
    'max-minutes': { type: 'string', default: '8' },
  },
});

// --build NAME=CLI[@NODE]: a gateway build, optionally run on another node binary (e.g. Node 24's).
const builds = (opt.build ?? [`branch=${join(REPO, 'dist/cli.js')}`]).map((s) => {
  const eq = s.indexOf('=');
  const [cli, node] = s.slice(eq + 1).split('@');
  return { name: s.slice(0, eq), cli: resolve(cli), node: node === undefined ? process.execPath : resolve(node) };
});
const planes = opt.planes.split(',');
const rounds = Number(opt.rounds);
const nodeArgs = opt['node-args'] === '' ? [] : opt['node-args'].split(' ');
const startedAt = Date.now();
const deadline = startedAt + Number(opt['max-minutes']) * 60_000;
const log = (msg) => process.stderr.write(`[sesscpu ${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`);

let topo;
let workDir;
let vsftpd;
let gateway;

async function teardown() {
  await stop(gateway);
  await stop(vsftpd);
  await topo?.destroy();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
}

const agent = (args, timeoutMs) => runJson(topo.ns.client, process.execPath, [AGENT, ...args], { nofile: true, timeoutMs });
const sessions = (n, concurrency) =>
  agent(['sessions', '--ctl', `${ADDR.edgePublic}:${PORTS.ftp}`, '--concurrency', String(concurrency), '--max', String(n), '--duration-ms', '600000', '--timeout-ms', '620000'], 630_000);

async function one(build, plane) {
  await topo.setVariant(plane === 'nftables' ? 'ftp-alg-nft' : 'ftp-alg');
  const extra = plane === 'nftables' ? { dataPlane: { kind: 'nftables' } } : {};
  const file = join(workDir, `${build.name}.json`);
  await writeFile(file, JSON.stringify(gatewayConfig(extra), null, 2), { mode: 0o644 });
  gateway = start(topo.ns.edge, build.node, [...nodeArgs, build.cli, '--config', file], { nofile: true });
  await waitListening(topo.ns.edge, [PORTS.ftp, PORTS.rawControl], gateway);
  try {
    const warm = await sessions(Number(opt.warm), 4);
    if (warm.errors > 0) throw new Error(`${build.name}/${plane} warm-up: ${warm.errors} failed (${warm.firstError})`);
    const perf = opt.perf === undefined ? undefined : spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '1999', '-g', '-p', String(gateway.pid), '-o', `${opt.perf}.${build.name}.${plane}`], { stdio: 'ignore' });
    const strace = opt.strace === undefined ? undefined : spawn('strace', ['-c', '-f', '-p', String(gateway.pid), '-o', `${opt.strace}.${build.name}.${plane}`], { stdio: 'ignore' });
    if (strace !== undefined) await new Promise((res) => setTimeout(res, 500)); // attached
    const cpu0 = cpuSeconds(gateway.pid);
    const own0 = ownTimes(gateway.pid);
    const r = await sessions(Number(opt.sessions), Number(opt.concurrency));
    const cpuMs = ((cpuSeconds(gateway.pid) - cpu0) * 1000) / r.sessions;
    const own1 = ownTimes(gateway.pid);
    const userMs = ((own1.user - own0.user) * 1000) / r.sessions;
    const sysMs = ((own1.sys - own0.sys) * 1000) / r.sessions;
    if (strace !== undefined) {
      strace.kill('SIGINT');
      await new Promise((res) => strace.once('exit', res));
    }
    if (perf !== undefined) {
      perf.kill('SIGINT');
      await new Promise((res) => perf.once('exit', res));
    }
    if (r.errors > 0) throw new Error(`${build.name}/${plane}: ${r.errors} failed sessions (${r.firstError})`);
    return { cpuMs, userMs, sysMs, rate: r.rate, steps: r.steps };
  } finally {
    await stop(gateway);
    if (opt['gateway-log'] !== undefined) await writeFile(opt['gateway-log'], `==== ${build.name} ${plane}\n${gateway.output()}`, { flag: 'a' });
    gateway = undefined;
  }
}

/** The gateway process's own user and system seconds (without its children, such as conntrack -E). */
function ownTimes(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]) / 100, sys: Number(f[12]) / 100 };
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)');
  topo = await createTopology();
  workDir = await scratchDir('ftpalg-sesscpu-');
  vsftpd = await startVsftpd(topo, workDir, await ftpRoot(workDir));
  const runs = [];
  const cells = builds.flatMap((b) => planes.map((p) => ({ build: b, plane: p })));
  outer: for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < cells.length; i++) {
      if (Date.now() > deadline) break outer;
      const { build, plane } = cells[(i + round) % cells.length];
      const r = await one(build, plane);
      runs.push({ round, build: build.name, plane, ...r });
      log(`round ${round + 1} ${build.name.padEnd(8)} ${plane.padEnd(8)} ${r.cpuMs.toFixed(3)} ms CPU/session (gateway alone: user ${r.userMs.toFixed(2)} + sys ${r.sysMs.toFixed(2)}), ${r.rate.toFixed(1)} sessions/s`);
    }
  }
  await teardown();
  const lines = ['| plane | build | CPU ms/session (median) | per round | ratio to ' + builds[0].name + ' (paired, per round) | gateway alone user+sys ms | sessions/s |', '|---|---|---|---|---|---|---|'];
  for (const plane of planes) {
    for (const b of builds) {
      const mine = runs.filter((r) => r.plane === plane && r.build === b.name);
      const base = runs.filter((r) => r.plane === plane && r.build === builds[0].name);
      const ratios = mine.map((r) => r.cpuMs / (base.find((x) => x.round === r.round)?.cpuMs ?? NaN));
      lines.push(`| ${plane} | ${b.name} | ${median(mine.map((r) => r.cpuMs)).toFixed(3)} | ${mine.map((r) => r.cpuMs.toFixed(2)).join(', ')} | ${median(ratios).toFixed(3)} (${ratios.map((x) => x.toFixed(2)).join(', ')}) | ${median(mine.map((r) => r.userMs)).toFixed(2)}+${median(mine.map((r) => r.sysMs)).toFixed(2)} | ${median(mine.map((r) => r.rate)).toFixed(1)} |`);
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  if (opt.json !== undefined) await writeFile(opt.json, JSON.stringify({ builds, planes, runs }, null, 2));
}

runMain(main, { teardown, lastResort: destroyAllSync, hardStopMs: Number(opt['max-minutes']) * 60_000 + 120_000, log });

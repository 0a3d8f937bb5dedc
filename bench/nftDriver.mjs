#!/usr/bin/env node
// How fast can the gateway drive nftables? One pinhole open (5 elements in one
// transaction), its finish (both counters read, then the idempotent remove)
// and a close, measured in a network namespace of its own, against the
// gateway's real table:
//   (a) `nft -f -` spawned per operation,
//   (b) the long-lived `nft -i` of src/data/nftables/NftShell.ts (the fallback),
//   (c) the netlink socket of src/data/nftables/NetlinkDriver.ts (the default),
// (b) and (c) awaiting each answer, and with every operation in flight at once;
// (b) and (c) interleaved in rounds so that drift of the machine cancels.
// As root, after `npm run build`:  node bench/nftDriver.mjs [--n 500]
import { execFile, execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { n: { type: 'string', default: '500' }, rounds: { type: 'string', default: '3' }, inner: { type: 'boolean', default: false } } });
const N = Number(values.n);
const ROUNDS = Number(values.rounds);

if (!values.inner) {
  const ns = `ftpalg-nftbench-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['netns', 'exec', ns, process.execPath, new URL(import.meta.url).pathname, '--inner', '--n', String(N), '--rounds', String(ROUNDS)], {
      stdio: 'inherit',
      timeout: 600_000,
    });
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
  process.exit(0);
}

const { NftShell } = await import('../dist/data/nftables/NftShell.js');
const { NetlinkDriver, loadNetlink } = await import('../dist/data/nftables/NetlinkDriver.js');
const { tableScript, openOps, closeOps, finishOps, renderNft } = await import('../dist/data/nftables/ruleset.js');

const key = (i) => ({ family: 4, peer: '203.0.113.10', address: '203.0.113.1', port: 10000 + i });
const target = { host: '192.0.2.10', port: 40000, source: '192.0.2.1' };
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const median = (xs) => pct(xs, 50);
const ms = (x) => `${x.toFixed(3)} ms`;

function spawnNft(script) {
  return new Promise((resolve, reject) => {
    const child = execFile('nft', ['-f', '-'], (err, _out, stderr) => (err === null ? resolve() : reject(new Error(stderr))));
    child.stdin.end(`${script}\n`);
  });
}

execFileSync('nft', ['-f', '-'], { input: tableScript() });
const rows = [];

// (a) a process per operation (fewer: it is slow)
{
  const n = Math.min(N, 100);
  const open = [];
  const finish = [];
  for (let i = 0; i < n; i++) {
    let t = performance.now();
    await spawnNft(renderNft(openOps(key(i), target, 15_000)).split('; ').join('\n'));
    open.push(performance.now() - t);
    t = performance.now();
    await spawnNft(renderNft(closeOps(key(i), target)).split('; ').join('\n'));
    finish.push(performance.now() - t);
  }
  rows.push(['(a) nft -f - per operation (finish = close only)', n, ms(median(open)), ms(pct(open, 99)), ms(median(finish)), ms(pct(finish, 99)), (1000 / median([...open, ...finish])).toFixed(0)]);
}

/** One round of a driver: N pinholes opened and finished, each answer awaited; then N of each all in flight. */
async function round(driver) {
  const open = [];
  const finish = [];
  for (let i = 0; i < N; i++) {
    let t = performance.now();
    await driver.apply('open', openOps(key(i), target, 15_000));
    open.push(performance.now() - t);
    t = performance.now();
    await driver.apply('finish', finishOps(key(i), target));
    finish.push(performance.now() - t);
  }
  const t = performance.now();
  await Promise.all(Array.from({ length: N }, (_, i) => driver.apply('open', openOps(key(i), target, 15_000))));
  await Promise.all(Array.from({ length: N }, (_, i) => driver.apply('finish', finishOps(key(i), target))));
  return { open, finish, inFlightPerSec: (2 * N * 1000) / (performance.now() - t) };
}

const shell = new NftShell();
shell.start();
const factory = loadNetlink();
if (factory instanceof Error) throw factory;
const netlink = new NetlinkDriver(factory);
netlink.start();
const drivers = [
  ['(b) one nft -i', shell, { open: [], finish: [], inFlight: [] }],
  ['(c) netlink socket', netlink, { open: [], finish: [], inFlight: [] }],
];
for (let r = 0; r < ROUNDS; r++) {
  for (const [, driver, acc] of r % 2 === 0 ? drivers : [...drivers].reverse()) {
    const res = await round(driver);
    acc.open.push(...res.open);
    acc.finish.push(...res.finish);
    acc.inFlight.push(res.inFlightPerSec);
  }
}
for (const [name, , acc] of drivers) {
  rows.push([name, `${N} × ${ROUNDS}`, ms(median(acc.open)), ms(pct(acc.open, 99)), ms(median(acc.finish)), ms(pct(acc.finish, 99)), `${(1000 / median([...acc.open, ...acc.finish])).toFixed(0)} (in flight: ${median(acc.inFlight).toFixed(0)})`]);
}
const [nftOps, netlinkOps] = drivers.map(([, , acc]) => median([...acc.open, ...acc.finish]));
await shell.close();
await netlink.close();
execFileSync('nft', ['delete', 'table', 'inet', 'ftp_alg_dp']);

console.log('| driver | pinholes | open p50 | open p99 | finish p50 | finish p99 | transactions/s |\n|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log(`\nnetlink / nft -i, median transaction time: ${(netlinkOps / nftOps).toFixed(3)}× (same run, interleaved rounds)`);

#!/usr/bin/env node
// How fast can the gateway drive nftables? One pinhole open (5 elements in one
// transaction) and close (the idempotent remove), measured in a network
// namespace of its own, against the gateway's real table:
//   (a) `nft -f -` spawned per operation,
//   (b) the long-lived `nft -i` of src/data/nftables/NftShell.ts, awaiting each
//       answer, and with every operation in flight at once.
// As root, after `npm run build`:  node bench/nftDriver.mjs [--n 500]
import { execFile, execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { n: { type: 'string', default: '500' }, inner: { type: 'boolean', default: false } } });
const N = Number(values.n);

if (!values.inner) {
  const ns = `ftpalg-nftbench-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['netns', 'exec', ns, process.execPath, new URL(import.meta.url).pathname, '--inner', '--n', String(N)], { stdio: 'inherit', timeout: 600_000 });
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
  process.exit(0);
}

const { NftShell } = await import('../dist/data/nftables/NftShell.js');
const { tableScript, openOps, closeOps, renderNft } = await import('../dist/data/nftables/ruleset.js');
const openCommand = (k, t, ms) => renderNft(openOps(k, t, ms));
const closeCommand = (k, t) => renderNft(closeOps(k, t));

const key = (i) => ({ family: 4, peer: '203.0.113.10', address: '203.0.113.1', port: 10000 + i });
const target = { host: '192.0.2.10', port: 40000, source: '192.0.2.1' };
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const fmt = (xs) => `p50 ${pct(xs, 50).toFixed(3)} ms, p99 ${pct(xs, 99).toFixed(3)} ms`;

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
  const close = [];
  for (let i = 0; i < n; i++) {
    let t = performance.now();
    await spawnNft(openCommand(key(i), target, 15_000).split('; ').join('\n'));
    open.push(performance.now() - t);
    t = performance.now();
    await spawnNft(closeCommand(key(i), target).split('; ').join('\n'));
    close.push(performance.now() - t);
  }
  rows.push(['(a) nft -f - per operation', n, fmt(open), fmt(close), (1000 / pct([...open, ...close], 50)).toFixed(0)]);
}

// (b) one nft -i, sequential and pipelined
const shell = new NftShell();
shell.start();
{
  const open = [];
  const close = [];
  for (let i = 0; i < N; i++) {
    let t = performance.now();
    await shell.run('open', openCommand(key(i), target, 15_000));
    open.push(performance.now() - t);
    t = performance.now();
    await shell.run('close', closeCommand(key(i), target));
    close.push(performance.now() - t);
  }
  rows.push(['(b) one nft -i, each answer awaited', N, fmt(open), fmt(close), (1000 / pct([...open, ...close], 50)).toFixed(0)]);
  const t = performance.now();
  await Promise.all(Array.from({ length: N }, (_, i) => shell.run('open', openCommand(key(i), target, 15_000))));
  await Promise.all(Array.from({ length: N }, (_, i) => shell.run('close', closeCommand(key(i), target))));
  const ms = performance.now() - t;
  rows.push(['(b) one nft -i, all in flight', N, '—', '—', ((2 * N * 1000) / ms).toFixed(0)]);
}
await shell.run('teardown', 'delete table inet ftp_alg_dp');
await shell.close();

console.log('| driver | pinholes | open | close | operations/s |\n|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);

#!/usr/bin/env node
// Issue 15 target: the original-destination lookup of a transparent site
// adds at most 0.2 ms to session setup at the median.
//
//   client ns 198.51.100.10 ── edge ns 198.51.100.1 (nft: tcp dport 21 → redirect :2121)
//
// The client dials N addresses of 192.0.2.0/24 on port 21 (nothing there: the
// edge redirects every one to its listener), sequentially and then in bursts
// of 16; the edge's agent times, per accept, the lookup from the accept to the
// destination known. Baseline without a transparent site: 0 (the lookup is the
// only step it adds). Run as root after `npm run build`: `node bench/origdst.mjs [N]`.
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { must, nsMust, start, waitFor } from './lib/proc.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const N = Math.min(5_000, Number(process.argv[2] ?? 400));
const DEADLINE_MS = Number(process.env.OD_DEADLINE_MS ?? 120_000);
const id = `${process.pid}-${randomBytes(2).toString('hex')}`;
const ns = { client: `ftpalg-bench-od-${id}-c`, edge: `ftpalg-bench-od-${id}-e` };

const CLIENT = `
import socket, sys, threading
n, burst = int(sys.argv[1]), int(sys.argv[2])
def one(i):
    s = socket.create_connection(('192.0.2.%d' % (10 + i % 200), 21), timeout=5)
    s.close()
i = 0
while i < n:
    k = min(burst, n - i)
    ts = [threading.Thread(target=one, args=(i + j,)) for j in range(k)]
    for t in ts: t.start()
    for t in ts: t.join()
    i += k
`;

async function setup() {
  for (const n of Object.values(ns)) await must('ip', ['netns', 'add', n]);
  await must('ip', ['-n', ns.client, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1', 'netns', ns.edge]);
  await must('ip', ['-n', ns.client, 'addr', 'add', '198.51.100.10/24', 'dev', 'v0']);
  await must('ip', ['-n', ns.edge, 'addr', 'add', '198.51.100.1/24', 'dev', 'v1']);
  for (const [n, dev] of [[ns.client, 'v0'], [ns.edge, 'v1']]) {
    await must('ip', ['-n', n, 'link', 'set', 'lo', 'up']);
    await must('ip', ['-n', n, 'link', 'set', dev, 'up']);
  }
  await must('ip', ['-n', ns.client, 'route', 'add', 'default', 'via', '198.51.100.1']);
  await nsMust(ns.edge, 'nft', ['table ip od { chain pre { type nat hook prerouting priority dstnat; tcp dport 21 redirect to :2121; }; }']);
}

async function phase(burst) {
  const agent = start(ns.edge, process.execPath, [join(HERE, 'lib/origdstAgent.mjs'), '198.51.100.1', '2121', String(N), String(DEADLINE_MS)]);
  await waitFor(agent, /ready/, 10_000);
  await nsMust(ns.client, 'python3', ['-c', CLIENT, String(N), String(burst)], { timeoutMs: DEADLINE_MS });
  // The agent prints its JSON line and exits once it has every accept (possibly before the client returns).
  const json = () => /\{.*\}/.exec(agent.output())?.[0];
  if (json() === undefined) await new Promise((resolve) => agent.once('exit', resolve));
  if (process.env.OD_DEBUG) console.error(agent.tail());
  const line = json();
  if (line === undefined) throw new Error(`the agent printed no result: ${agent.tail()}`);
  return JSON.parse(line);
}

try {
  await setup();
  const sequential = await phase(1);
  const bursts = await phase(16);
  const result = { accepts: N, sequential, bursts16: bursts, target: 'median <= 0.2 ms', met: sequential.medianMs <= 0.2 && bursts.medianMs <= 0.2 };
  console.log(JSON.stringify(result, null, 2));
} finally {
  for (const n of Object.values(ns)) await must('ip', ['netns', 'del', n]).catch(() => undefined);
}

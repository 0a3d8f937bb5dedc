// Where the bench edge's packet work and the gateway's threads run (bench/fairness.mjs, issue 13 item 6):
// RPS on the veths (their receive path queued to chosen CPUs), threaded NAPI on the veths (the receive path in
// `napi/<dev>-<id>` kernel threads, which can be pinned and run below a real-time thread), and CPU affinity of
// the gateway's threads and of the load's processes. Root only; every setting is undone by its own call with
// `undefined`, so planes of one run can differ.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

/** The bench topology's veths (bench/lib/topology.mjs): [namespace role, device]. */
const VETHS = [
  ['client', 'to-edge'],
  ['edge', 'to-client'],
  ['edge', 'to-server'],
  ['server', 'to-edge'],
];
const TIMEOUT_MS = 10_000;

/** "0-1,3" -> [0, 1, 3]. */
export function parseCpuList(text) {
  return text
    .trim()
    .split(',')
    .filter(Boolean)
    .flatMap((part) => {
      const [lo, hi = lo] = part.split('-').map(Number);
      return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
    });
}

/** The CPUs this machine has online, as a list ("0-1"). */
export function onlineCpus() {
  return readFileSync('/sys/devices/system/cpu/online', 'utf8').trim();
}

const mask = (list) => parseCpuList(list).reduce((m, cpu) => m | (1n << BigInt(cpu)), 0n).toString(16);

function inNs(nsName, script) {
  execFileSync('ip', ['netns', 'exec', nsName, 'sh', '-c', script], { stdio: ['ignore', 'ignore', 'pipe'], timeout: TIMEOUT_MS });
}

/** RPS: every veth's receive queue hands its packets to `cpus` ("1"); undefined turns RPS off (mask 0). */
export function setRps(ns, cpus) {
  const m = cpus === undefined ? '0' : mask(cpus);
  for (const [role, dev] of VETHS) inNs(ns[role], `for q in /sys/class/net/${dev}/queues/rx-*; do echo ${m} > $q/rps_cpus; done`);
}

/**
 * RFS: every veth's receive queue follows each flow to the CPU of the thread that reads its socket (a flow
 * table of `entries`; 0 turns it off). It needs the global socket flow table (rpsSockFlowEntries) too.
 */
export function setRfs(ns, entries) {
  for (const [role, dev] of VETHS) inNs(ns[role], `for q in /sys/class/net/${dev}/queues/rx-*; do echo ${entries} > $q/rps_flow_cnt; done`);
}

const SOCK_FLOW_ENTRIES = '/proc/sys/net/core/rps_sock_flow_entries';
/** The global socket flow table of RFS (init network namespace only); returns the previous size. */
export function rpsSockFlowEntries(entries) {
  const before = Number(readFileSync(SOCK_FLOW_ENTRIES, 'utf8'));
  writeFileSync(SOCK_FLOW_ENTRIES, String(entries));
  return before;
}

/** pid -> comm of the kernel's NAPI threads. */
function napiThreads() {
  const found = new Map();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (comm.startsWith('napi/')) found.set(Number(pid), comm);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/**
 * Threaded NAPI on every veth (GRO on, which makes a veth receive through NAPI; then `threaded` 1), its
 * threads pinned to `cpus`; returns their pids (found as the NAPI threads that appeared meanwhile).
 * undefined turns it off again (threaded 0, GRO off: the veth default).
 */
export function setThreadedNapi(ns, cpus) {
  const before = napiThreads();
  for (const [role, dev] of VETHS) {
    if (cpus === undefined) inNs(ns[role], `echo 0 > /sys/class/net/${dev}/threaded; ethtool -K ${dev} gro off`);
    else inNs(ns[role], `ethtool -K ${dev} gro on && echo 1 > /sys/class/net/${dev}/threaded`);
  }
  if (cpus === undefined) return [];
  const added = [...napiThreads().keys()].filter((pid) => !before.has(pid));
  for (const pid of added) taskset(cpus, pid);
  return added;
}

function taskset(cpus, pid, all = false) {
  execFileSync('taskset', [...(all ? ['-a'] : []), '-p', '-c', cpus, String(pid)], { stdio: 'ignore', timeout: TIMEOUT_MS });
}

/** A process and its live descendants (the kernel plane's nft and conntrack), by parent pid in /proc. */
function tree(pid) {
  const parent = new Map();
  for (const entry of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const all = [pid];
  for (let i = 0; i < all.length; i++) for (const [child, ppid] of parent) if (ppid === all[i]) all.push(child);
  return all;
}

/**
 * The gateway's main (control) thread on `mainCpus`; when `otherCpus` is given, every other thread of it (data
 * workers, V8's and libuv's helpers) and every process it started on those.
 */
export function pinGateway(pid, mainCpus, otherCpus) {
  if (otherCpus !== undefined) {
    for (const p of tree(pid).slice(1)) taskset(otherCpus, p, true);
    for (const tid of readdirSync(`/proc/${pid}/task`).map(Number)) if (tid !== pid) taskset(otherCpus, tid);
  }
  if (mainCpus !== undefined) taskset(mainCpus, pid);
}

/** Every thread of process `pid` on `cpus` (the load's processes; onlineCpus() to undo). */
export function pinProcess(pid, cpus) {
  taskset(cpus, pid, true);
}

/** Per CPU of the machine: [busy ticks, softirq ticks, total ticks] from /proc/stat's cpuN lines. */
export function perCpuTicks() {
  return readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .filter((l) => /^cpu\d+ /.test(l))
    .map((l) => {
      const t = l.trim().split(/\s+/).slice(1).map(Number);
      const total = t.reduce((a, b) => a + b, 0);
      return [total - t[3] - t[4], t[6], total];
    });
}

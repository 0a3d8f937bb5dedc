// Why a thread waited after its wake-ups: from a `perf record` of scheduler and softirq tracepoints, the
// delay from each sched_wakeup of thread TID to its switch-in, what held the CPU it was woken on meanwhile
// (task and priority: 98 is SCHED_RR 1, 120 nice 0, 130 nice 10), the softirq time on that CPU in the wait,
// and the thread's own slices (switch-in to switch-out) with the softirq run inside them.
// (bench/RESULTS.md, session 20: the gateway's control thread during fairness.mjs's transfers phase.)
//
// Record (root; 3 s into the phase, for 4 s):
//   perf record -a -e sched:sched_switch -e sched:sched_wakeup -e sched:sched_waking -e sched:sched_migrate_task \
//     -e irq:softirq_entry -e irq:softirq_exit -o sched.data -- sleep 4
// Usage: node bench/schedDelay.mjs sched.data TID [--top 12]
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values: opt, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '12' } } });
const [data, tidArg] = positionals;
if (data === undefined || tidArg === undefined) throw new Error('usage: node bench/schedDelay.mjs PERF_DATA TID [--top N]');
const TID = Number(tidArg);
const LINE = /^\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$/;

const current = new Map(); // cpu -> { pid, name }
const softStart = new Map(); // cpu -> ms
const softirqs = [];
let wait; // { at, cpu, softirq, holders: Map name -> ms, since, holder }
const waits = [];
let slice; // { at, cpu, softirq }
const slices = [];

function onSoftirqExit(cpu, t) {
  const start = softStart.get(cpu);
  if (start === undefined) return;
  softStart.delete(cpu);
  softirqs.push(t - start);
  if (wait !== undefined && wait.cpu === cpu) wait.softirq += t - start;
  if (slice !== undefined && slice.cpu === cpu) slice.softirq += t - start;
}

function onSwitch(cpu, t, trace) {
  const prev = Number(/prev_pid=(\d+)/.exec(trace)[1]);
  const next = /next_comm=(.*) next_pid=(\d+) next_prio=(\d+)/.exec(trace);
  const nextTask = { pid: Number(next[2]), name: `${next[1]}:${next[3]}` };
  if (prev === TID && slice !== undefined && slice.cpu === cpu) {
    slices.push({ ms: t - slice.at, softirq: slice.softirq });
    slice = undefined;
  }
  if (wait !== undefined && wait.cpu === cpu && wait.holder !== undefined) {
    wait.holders.set(wait.holder, (wait.holders.get(wait.holder) ?? 0) + t - wait.since);
    wait.since = t;
    wait.holder = nextTask.name;
  }
  if (nextTask.pid === TID) {
    if (wait !== undefined) waits.push({ ms: t - wait.at, softirq: wait.softirq, holders: wait.holders, moved: cpu !== wait.cpu });
    wait = undefined;
    slice = { at: t, cpu, softirq: 0 };
  }
  current.set(cpu, nextTask);
}

function onWakeup(t, trace) {
  if (Number(/ pid=(\d+)/.exec(trace)[1]) !== TID) return;
  const cpu = Number(/target_cpu=(\d+)/.exec(trace)[1]);
  wait = { at: t, cpu, softirq: 0, holders: new Map(), since: t, holder: current.get(cpu)?.name };
}

const perf = spawn('perf', ['script', '-i', data, '-F', 'cpu,time,event,trace'], { stdio: ['ignore', 'pipe', 'ignore'] });
for await (const raw of createInterface({ input: perf.stdout })) {
  const m = LINE.exec(raw.trim());
  if (m === null) continue;
  const [cpu, t, event, trace] = [Number(m[1]), Number(m[2]) * 1000, m[3], m[4]];
  if (event === 'irq:softirq_entry') softStart.set(cpu, t);
  else if (event === 'irq:softirq_exit') onSoftirqExit(cpu, t);
  else if (event === 'sched:sched_switch') onSwitch(cpu, t, trace);
  else if (event === 'sched:sched_wakeup') onWakeup(t, trace);
}

const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))];
const f = (x) => x.toFixed(3);
const dist = (xs) => `n=${xs.length} p50=${f(pct(xs, 0.5))} p90=${f(pct(xs, 0.9))} p99=${f(pct(xs, 0.99))} max=${f(xs.at(-1))} ms`;
if (waits.length === 0) throw new Error(`no wake-up of thread ${TID} in ${data}`);
waits.sort((a, b) => a.ms - b.ms);
slices.sort((a, b) => a.ms - b.ms);
softirqs.sort((a, b) => a - b);
const sum = (xs) => xs.reduce((a, b) => a + b, 0);
console.log(`wake-up to running, thread ${TID}: ${dist(waits.map((w) => w.ms))}`);
console.log(`the ${opt.top} longest: ms, softirq ms on its CPU meanwhile, what held that CPU (task:prio ms)`);
for (const w of waits.slice(-Number(opt.top))) {
  const held = [...w.holders].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([name, ms]) => `${name} ${f(ms)}`);
  console.log(`  ${f(w.ms)}  softirq ${f(w.softirq)}${w.moved ? '  (ran on another CPU)' : ''}  ${held.join(', ')}`);
}
const long = waits.filter((w) => w.ms > 0.5);
console.log(`waits over 0.5 ms: ${long.length}, ${f(sum(long.map((w) => w.ms)))} ms, of it softirq ${f(sum(long.map((w) => w.softirq)))} ms`);
console.log(`its slices: ${dist(slices.map((s) => s.ms))}; softirq inside ${f(sum(slices.map((s) => s.softirq)))} of ${f(sum(slices.map((s) => s.ms)))} ms`);
console.log(`softirq episodes (all CPUs): ${dist(softirqs)}, ${f(sum(softirqs))} ms in all`);

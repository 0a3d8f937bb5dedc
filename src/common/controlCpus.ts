/**
 * The control thread's CPUs (issue 13 item 6, `controlPriority.cpus`).
 *
 * At SCHED_RR the control thread still waits for the kernel: the packet work
 * of bulk transfers (softirq) runs on whatever CPU the packets are handed to,
 * inside any task there, the control thread's own writes included, and a task
 * inside a system call is not preempted on a PREEMPT_NONE kernel. Pinning the
 * control thread to CPUs of its own, with the data workers on the others and
 * the NIC's packet work steered there too (RPS, IRQ affinity: deploy/README.md),
 * leaves its CPUs to it.
 *
 * Only the calling thread is pinned (`taskset` on its thread id: Node has no
 * sched_setaffinity). Threads and processes it starts afterwards inherit its
 * CPUs; the data workers move themselves to the others (otherThreadsCpus).
 * Threads that exist already (V8's helpers) keep the CPUs they had.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Logger } from '../observe/logger.js';
import { currentThreadId } from './controlPriority.js';

/** What pinControlThread did: the CPUs in force, or why it left the thread as it was. */
export type ControlCpusOutcome =
  | { readonly applied: true; readonly tid: number; readonly cpus: readonly number[]; readonly otherCpus: readonly number[] }
  | { readonly applied: false; readonly reason: string };

const TASKSET_TIMEOUT_MS = 5_000;

/** Set once the control thread is pinned: the CPUs left for every other thread. */
let othersCpus: readonly number[] | undefined;

/** The CPUs the data workers run on once the control thread is pinned; undefined when it is not. */
export function otherThreadsCpus(): readonly number[] | undefined {
  return othersCpus;
}

/** A Linux CPU list ("0-2,5") as numbers; throws on text that is not one (our own /proc input). */
export function parseCpuList(text: string): number[] {
  return text
    .trim()
    .split(',')
    .filter((part) => part !== '')
    .flatMap((part) => {
      const m = /^(\d+)(?:-(\d+))?$/.exec(part);
      if (m === null) throw new Error(`not a CPU list: ${JSON.stringify(text)}`);
      const lo = Number(m[1]);
      const hi = m[2] === undefined ? lo : Number(m[2]);
      return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
    });
}

/** The CPUs the calling thread may run on (Cpus_allowed_list of /proc/thread-self/status). */
function ownCpus(): number[] {
  const line = readFileSync('/proc/thread-self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Cpus_allowed_list:'));
  if (line === undefined) throw new Error('no Cpus_allowed_list in /proc/thread-self/status');
  return parseCpuList(line.slice(line.indexOf(':') + 1));
}

/** Run thread `tid` on `cpus` only (sched_setaffinity through taskset; no privilege needed for our own threads). */
export function setThreadCpus(tid: number, cpus: readonly number[]): void {
  execFileSync('taskset', ['--pid', '--cpu-list', cpus.join(','), String(tid)], { stdio: ['ignore', 'ignore', 'pipe'], timeout: TASKSET_TIMEOUT_MS });
}

/**
 * Pin the calling (control) thread to `cpus` and log what was applied, or why
 * not (a warning: the gateway goes on with the control loop on every CPU).
 * The data workers started afterwards take the process's other CPUs.
 */
export function pinControlThread(cpus: readonly number[], log: Logger): ControlCpusOutcome {
  if (cpus.length === 0) return { applied: false, reason: 'not configured' };
  const outcome = pin(cpus);
  if (outcome.applied) {
    othersCpus = outcome.otherCpus;
    log.info(outcome, 'control thread CPUs applied');
  } else {
    log.warn({ cpus, reason: outcome.reason }, 'control thread CPUs not applied: the control loop runs on every CPU');
  }
  return outcome;
}

function pin(cpus: readonly number[]): ControlCpusOutcome {
  if (process.platform !== 'linux') return { applied: false, reason: 'thread CPU affinity is Linux only' };
  let tid: number;
  let allowed: number[];
  try {
    tid = currentThreadId();
    allowed = ownCpus();
  } catch (err) {
    return { applied: false, reason: `cannot read this thread's CPUs: ${(err as Error).message}` };
  }
  const outside = cpus.filter((cpu) => !allowed.includes(cpu));
  if (outside.length > 0) return { applied: false, reason: `CPU ${outside.join(',')} not among the process's CPUs (${allowed.join(',')})` };
  try {
    setThreadCpus(tid, cpus);
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    return { applied: false, reason: `taskset failed: ${stderr !== undefined && stderr !== '' ? stderr : (err as Error).message}` };
  }
  const rest = allowed.filter((cpu) => !cpus.includes(cpu));
  // With every CPU given to the control thread, the others share them (nothing is left to move them to).
  return { applied: true, tid, cpus: [...cpus], otherCpus: rest.length > 0 ? rest : [...cpus] };
}

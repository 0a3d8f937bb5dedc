/**
 * The control thread's scheduling priority (issue 13 item 6, `controlPriority`).
 *
 * On cores saturated by bulk transfers and the kernel's forwarding, a control
 * reply waits for a CPU at every wake-up of the control loop. Data workers
 * already run below it (`dataPlane.workerNice`); this raises the control
 * thread itself: a real-time policy (SCHED_RR/SCHED_FIFO, which runs before
 * every ordinary thread of the machine) or a negative nice.
 *
 * Only the calling thread is changed: Linux schedules threads, and Node has no
 * sched_setscheduler, so `chrt` is run on this thread's id. It also sets
 * SCHED_RESET_ON_FORK, so every thread and process this thread creates from
 * then on (data workers, libuv's pool, nft and conntrack) starts as an
 * ordinary SCHED_OTHER thread at nice 0 instead of inheriting the priority.
 * Threads that exist already (V8's helpers) keep theirs.
 */
import { execFileSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import type { ControlPolicy, ControlPriority } from '../config/types.js';
import type { Logger } from '../observe/logger.js';

/** What raiseControlThread did: the settings in force, or why it left the thread as it was. */
export type ControlPriorityOutcome =
  | { readonly applied: true; readonly tid: number; readonly policy: ControlPolicy; readonly priority: number; readonly nice: number }
  | { readonly applied: false; readonly reason: string };

const CHRT_TIMEOUT_MS = 5_000;
const CHRT_POLICY_FLAG: Record<ControlPolicy, string> = { other: '--other', rr: '--rr', fifo: '--fifo' };

/** The default settings change nothing. */
function isUnchanged(want: ControlPriority): boolean {
  return want.policy === 'other' && want.nice === 0;
}

/** This thread's Linux thread id (the process id on the main thread). */
export function currentThreadId(): number {
  return Number(readlinkSync('/proc/thread-self').split('/').pop());
}

/**
 * Give the calling thread `want`'s policy and priority, and log what was
 * applied, or why not (a warning: the gateway goes on at the ordinary
 * priority). Needs CAP_SYS_NICE, or RLIMIT_RTPRIO >= priority for rr/fifo
 * and RLIMIT_NICE for a negative nice.
 */
export function raiseControlThread(want: ControlPriority, log: Logger): ControlPriorityOutcome {
  if (isUnchanged(want)) return { applied: false, reason: 'not configured' };
  const outcome = apply(want);
  if (outcome.applied) log.info(outcome, 'control thread priority applied');
  else log.warn({ ...want, reason: outcome.reason }, 'control thread priority not applied: the control loop runs at the ordinary priority');
  return outcome;
}

function apply(want: ControlPriority): ControlPriorityOutcome {
  if (process.platform !== 'linux') return { applied: false, reason: 'per-thread scheduling is Linux only' };
  let tid: number;
  try {
    tid = currentThreadId();
  } catch {
    return { applied: false, reason: 'no /proc/thread-self to name the thread' };
  }
  const priority = want.policy === 'other' ? 0 : want.priority;
  try {
    execFileSync('chrt', [CHRT_POLICY_FLAG[want.policy], '--reset-on-fork', '--pid', String(priority), String(tid)], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: CHRT_TIMEOUT_MS,
    });
  } catch (err) {
    return { applied: false, reason: `chrt failed (needs CAP_SYS_NICE or RLIMIT_RTPRIO): ${chrtError(err)}` };
  }
  const nice = want.policy === 'other' ? want.nice : 0;
  if (nice !== 0) {
    try {
      setPriority(tid, nice);
    } catch (err) {
      // The policy stays set (with reset-on-fork, harmless at nice 0); the nice is what was asked for.
      return { applied: false, reason: `setpriority failed (needs CAP_SYS_NICE or RLIMIT_NICE): ${(err as Error).message}` };
    }
  }
  return { applied: true, tid, policy: want.policy, priority, nice };
}

/** chrt's own message (stderr) when it ran, else the spawn error (no chrt installed). */
function chrtError(err: unknown): string {
  const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
  return stderr !== undefined && stderr !== '' ? stderr : (err as Error).message;
}

/**
 * Data workers run below the control loop (issue 13 item 6). On 2 busy
 * cores a worker relaying at the control loop's priority kept the control
 * thread waiting for a CPU three times as long per wake-up (run-queue wait
 * in /proc/PID/task/TID/schedstat, bench/fairness.mjs), which is where a
 * bystander's NOOP p99 went. Each worker lowers its own thread's priority
 * by `dataPlane.workerNice`; the control thread keeps its own.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import type { WorkerDataPlane } from '../../../src/data/worker/WorkerDataPlane.js';
import { loadWorkerPlane, quietLog } from '../../support/dataPlanes.js';

const linux = process.platform === 'linux';
if (!linux) console.log('workerPriority: skipped, per-thread nice values are Linux only');

/** The nice value of every thread of this process, by thread id (field 19 of /proc/self/task/TID/stat). */
function threadNices(): Map<number, number> {
  const nices = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      nices.set(Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return nices;
}

let plane: WorkerDataPlane | undefined;

afterEach(async () => {
  await plane?.close();
  plane = undefined;
});

/** Start a plane and wait until every worker has answered (so each has run its start-up). */
async function startPlane(workers: number, nice: number): Promise<void> {
  const Plane = await loadWorkerPlane();
  plane = new Plane(workers, 'silent', quietLog, nice);
  // A scrape leaves out a worker still starting (slow on a loaded machine): ask again until all answer.
  const deadline = Date.now() + 20_000;
  let answered = 0;
  while (answered < workers && Date.now() < deadline) {
    const answers = await plane.metricsJson();
    answered = answers.filter((a) => Array.isArray(a) && a.length > 0).length;
  }
  expect(answered).toBe(workers);
}

describe.runIf(linux)('data worker priority', () => {
  it('each worker thread runs workerNice below the control loop, which keeps its own priority', async () => {
    const base = getPriority(0);
    const before = threadNices();
    await startPlane(2, 10);
    const after = threadNices();
    const added = [...after].filter(([tid]) => !before.has(tid));
    expect(added.filter(([, nice]) => nice === Math.min(19, base + 10))).toHaveLength(2);
    expect(after.get(process.pid)).toBe(base);
    expect(getPriority(0)).toBe(base);
  });

  it('workerNice 0 leaves the workers at the control loop\'s priority', async () => {
    const base = getPriority(0);
    await startPlane(1, 0);
    expect([...threadNices().values()].every((nice) => nice === base)).toBe(true);
  });
});

/**
 * controlPriority raises the control thread, and only it (issue 13 item 6).
 * With 64 transfers on 2 saturated cores the control thread waited ~0.5 ms
 * for a CPU per wake-up (bench/fairness.mjs, /proc/PID/task/TID/schedstat);
 * at SCHED_RR 1 it waited ~0.01 ms. The built gateway is started with the
 * setting and its threads are read from /proc: the main thread has the
 * policy, every other thread (V8's, libuv's, the data worker started after
 * it) runs SCHED_OTHER, the worker still workerNice below the ordinary
 * priority. Without CAP_SYS_NICE the gateway warns and runs unchanged.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { type CliProcess, configFile, killStartedClis, startCli } from '../../support/cli.js';

const SCHED_OTHER = 0;
const SCHED_FIFO = 1;
const SCHED_RR = 2;
const CAP_SYS_NICE = 23;
const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

/** CAP_SYS_NICE in this process's effective set (so the gateway it starts has it too). */
function hasSysNice(): boolean {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('CapEff:'));
  return line !== undefined && (BigInt(`0x${line.split(/\s+/)[1]}`) & (1n << BigInt(CAP_SYS_NICE))) !== 0n;
}
const linux = process.platform === 'linux';
const missing = !linux ? 'per-thread scheduling is Linux only' : !hasSysNice() ? 'raising a thread needs CAP_SYS_NICE (run as root)' : undefined;
if (missing !== undefined) console.log(`controlPriority: applied cases skipped outside CI: ${missing}`);

interface ThreadSched {
  readonly tid: number;
  readonly nice: number;
  readonly rtPriority: number;
  readonly policy: number;
}

/** Every thread of `pid`: nice, rt_priority and policy (fields 19, 40 and 41 of /proc/PID/task/TID/stat). */
function threads(pid: number): ThreadSched[] {
  const out: ThreadSched[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3
      out.push({ tid: Number(tid), nice: Number(fields[16]), rtPriority: Number(fields[37]), policy: Number(fields[38]) });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

const site = { name: 'a', listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: 2121 }, passivePorts: { min: 40_000, max: 40_099 }, activePorts: { min: 40_100, max: 40_199 } };

/** The CPUs a thread may run on: Cpus_allowed_list of /proc/PID/task/TID/status ("0-2,5" -> [0, 1, 2, 5]). */
function cpusOf(pid: number | 'self', tid: number | 'thread-self'): number[] {
  const path = tid === 'thread-self' ? '/proc/thread-self/status' : `/proc/${pid}/task/${tid}/status`;
  const line = readFileSync(path, 'utf8').split('\n').find((l) => l.startsWith('Cpus_allowed_list:')) ?? '';
  return line
    .slice(line.indexOf(':') + 1)
    .trim()
    .split(',')
    .flatMap((part) => {
      const [lo = 0, hi = lo] = part.split('-').map(Number);
      return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
    });
}

/** A gateway with one data worker and `controlPriority`, started to its "started" line and its worker's. */
async function gatewayWith(controlPriority: unknown): Promise<CliProcess> {
  const config = configFile({ log: { level: 'info' }, dataPlane: { workers: 1, workerNice: 10 }, controlPriority, sites: [site] });
  const cli = startCli(config.path);
  await cli.waitForMsg('started');
  await cli.waitForMsg('data worker started');
  return cli;
}

afterEach(async () => {
  await killStartedClis();
});

describe.skipIf(missing !== undefined && !IN_CI)('controlPriority applied', () => {
  it('rr: the main thread runs SCHED_RR at the priority, every other thread SCHED_OTHER, the worker at workerNice', async () => {
    const cli = await gatewayWith({ policy: 'rr', priority: 1 });
    const all = threads(cli.pid);
    const main = all.find((t) => t.tid === cli.pid);
    expect(main).toMatchObject({ policy: SCHED_RR, rtPriority: 1 });
    const others = all.filter((t) => t.tid !== cli.pid);
    expect(others.length).toBeGreaterThan(1);
    expect(others.filter((t) => t.policy !== SCHED_OTHER)).toEqual([]);
    const worker = cli.lines.find((l) => l.msg === 'data worker started');
    expect(others.find((t) => t.tid === worker?.tid)?.nice).toBe(10);
    expect(cli.lines.find((l) => l.msg === 'control thread priority applied')).toMatchObject({ tid: cli.pid, policy: 'rr', priority: 1 });
  });

  it('fifo at priority 2', async () => {
    const cli = await gatewayWith({ policy: 'fifo', priority: 2 });
    expect(threads(cli.pid).find((t) => t.tid === cli.pid)).toMatchObject({ policy: SCHED_FIFO, rtPriority: 2 });
  });

  it('other with a negative nice: the main thread at that nice; the worker starts from 0, not from it (reset on fork)', async () => {
    const cli = await gatewayWith({ policy: 'other', nice: -5 });
    const all = threads(cli.pid);
    expect(all.find((t) => t.tid === cli.pid)).toMatchObject({ policy: SCHED_OTHER, nice: -5 });
    const worker = cli.lines.find((l) => l.msg === 'data worker started');
    expect(all.find((t) => t.tid === worker?.tid)?.nice).toBe(10);
    expect(all.filter((t) => t.tid !== cli.pid && t.nice < 0)).toEqual([]);
  });
});

describe.runIf(linux)('controlPriority not applied', () => {
  it('by default nothing changes and nothing is logged', async () => {
    const cli = await gatewayWith(undefined);
    expect(threads(cli.pid).every((t) => t.policy === SCHED_OTHER)).toBe(true);
    expect(threads(cli.pid).find((t) => t.tid === cli.pid)?.nice).toBe(0);
    expect(cli.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('control thread priority'))).toEqual([]);
  });

  it('without CAP_SYS_NICE: a warning naming the reason, and the thread stays as it was', () => {
    // The module itself in a child that has dropped CAP_SYS_NICE (and whose RLIMIT_RTPRIO is 0).
    const module = fileURLToPath(new URL('../../../dist/common/controlPriority.js', import.meta.url));
    const script = `
      import { raiseControlThread } from ${JSON.stringify(module)};
      import { readFileSync } from 'node:fs';
      const lines = [];
      const log = { info: (o, m) => lines.push({ level: 'info', ...o, msg: m }), warn: (o, m) => lines.push({ level: 'warn', ...o, msg: m }) };
      const outcome = raiseControlThread({ policy: 'rr', priority: 1, nice: 0 }, log);
      const stat = readFileSync('/proc/thread-self/stat', 'utf8');
      const policy = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]);
      process.stdout.write(JSON.stringify({ outcome, lines, policy }));`;
    const r = spawnSync('setpriv', ['--inh-caps=-sys_nice', '--bounding-set=-sys_nice', 'prlimit', '--rtprio=0', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    const { outcome, lines, policy } = JSON.parse(r.stdout) as { outcome: { applied: boolean; reason: string }; lines: { level: string; msg: string; reason: string }[]; policy: number };
    expect(outcome.applied).toBe(false);
    expect(policy).toBe(SCHED_OTHER);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', msg: 'control thread priority not applied: the control loop runs at the ordinary priority' });
    expect(lines[0]?.reason).toMatch(/chrt failed .*CAP_SYS_NICE.*: .*(not permitted|EPERM)/i);
  });
});

describe.runIf(linux)('controlPriority.cpus', () => {
  // The CPUs this test may use (the gateway inherits them); the control thread takes the first.
  const mine = cpusOf('self', 'thread-self');
  const control = mine.slice(0, 1);
  const rest = mine.length > 1 ? mine.slice(1) : control;

  it('pins the control thread, and only it, to its CPUs; the data worker moves to the others', async () => {
    const cli = await gatewayWith({ cpus: control });
    const worker = await cli.waitForMsg('data worker CPUs set');
    expect(cpusOf(cli.pid, cli.pid)).toEqual(control);
    expect(worker.cpus).toEqual(rest);
    expect(cpusOf(cli.pid, worker.tid as number)).toEqual(rest);
    // V8's helpers, started before the control thread was pinned, keep every CPU.
    const helpers = readdirSync(`/proc/${cli.pid}/task`).map(Number).filter((t) => t !== cli.pid && t !== worker.tid);
    expect(helpers.some((t) => cpusOf(cli.pid, t).length === mine.length)).toBe(true);
    expect(cli.lines.find((l) => l.msg === 'control thread CPUs applied')).toMatchObject({ tid: cli.pid, cpus: control, otherCpus: rest });
  });

  it('with the rr policy too: both applied to the control thread', async () => {
    const cli = await gatewayWith({ policy: 'rr', cpus: control });
    expect(cpusOf(cli.pid, cli.pid)).toEqual(control);
    if (missing === undefined) expect(threads(cli.pid).find((t) => t.tid === cli.pid)).toMatchObject({ policy: SCHED_RR });
  });

  it('a CPU the process may not use: a warning naming it, and every thread stays on every CPU', async () => {
    const cli = await gatewayWith({ cpus: [1023] });
    expect(cpusOf(cli.pid, cli.pid)).toEqual(mine);
    const warning = cli.lines.find((l) => l.msg === 'control thread CPUs not applied: the control loop runs on every CPU');
    expect(warning?.reason).toMatch(/CPU 1023 not among the process's CPUs/);
    expect(cli.lines.find((l) => l.msg === 'data worker CPUs set')).toBeUndefined();
    const worker = cli.lines.find((l) => l.msg === 'data worker started');
    expect(cpusOf(cli.pid, worker?.tid as number)).toEqual(mine);
  });

  it('by default nothing is pinned and nothing is logged', async () => {
    const cli = await gatewayWith(undefined);
    for (const tid of readdirSync(`/proc/${cli.pid}/task`).map(Number)) expect(cpusOf(cli.pid, tid)).toEqual(mine);
    expect(cli.lines.filter((l) => typeof l.msg === 'string' && l.msg.includes('CPUs'))).toEqual([]);
  });
});

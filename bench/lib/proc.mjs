// Processes the bench starts: every command is bounded in time, every
// long-running child is tracked by its pid, and only those pids are ever
// signalled. `ip netns exec` execs the command in place, so a child's pid is
// the pid of the program itself (which is what /proc is read for).
import { execFile, execFileSync, spawn } from 'node:child_process';

const DEFAULT_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 3_000;
/**
 * File descriptors for the programs that hold 10,000 sessions: the hard
 * limit we have (raising it may not be allowed, even to root, in a sandbox).
 */
export const NOFILE = hardNofile();

function hardNofile() {
  try {
    const out = execFileSync('prlimit', ['--pid', String(process.pid), '--nofile', '-o', 'HARD', '-n'], { encoding: 'utf8', timeout: 5_000 });
    const n = Number(out.trim().split('\n').pop());
    return Number.isFinite(n) && n > 0 ? n : 1_048_576;
  } catch {
    return 65_536;
  }
}

const children = new Set();

/** Runs a command, never throwing; kills it (by its pid) after `timeoutMs`. */
export function run(cmd, args, { timeoutMs = DEFAULT_TIMEOUT_MS, env } = {}) {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 256 * 1024 * 1024, env }, (err, stdout, stderr) => {
      const ms = performance.now() - started;
      if (err === null) return resolve({ code: 0, stdout, stderr, ms });
      const code = typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr: `${stderr}${err.killed ? `\n(killed after ${timeoutMs} ms)` : ''}`, ms });
    });
  });
}

/** Like run, but throws with the command's stderr on a non-zero exit. */
export async function must(cmd, args, opts) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim().slice(-2000)}`);
  return r;
}

export function nsArgs(ns, cmd, args, { nofile = false } = {}) {
  const inner = nofile ? ['prlimit', `--nofile=${NOFILE}:${NOFILE}`, cmd, ...args] : [cmd, ...args];
  return ['netns', 'exec', ns, ...inner];
}

export const nsRun = (ns, cmd, args, opts = {}) => run('ip', nsArgs(ns, cmd, args, opts), opts);
export const nsMust = (ns, cmd, args, opts = {}) => must('ip', nsArgs(ns, cmd, args, opts), opts);

/**
 * Starts a long-running program in a namespace. stdout is kept (for JSON
 * answers and "ready" lines); stderr is kept in a bounded tail for reports.
 */
export function start(ns, cmd, args, { nofile = false, env, stdin = 'ignore' } = {}) {
  // prlimit execs the command too, so the pid stays the program's pid.
  const child = spawn('ip', nsArgs(ns, cmd, args, { nofile }), { stdio: [stdin, 'pipe', 'pipe'], env: env ?? process.env });
  children.add(child);
  let err = '';
  let out = '';
  child.stderr.on('data', (c) => (err = (err + c).slice(-8_000)));
  child.stdout.on('data', (c) => (out = (out + c).slice(-1_000_000)));
  child.once('exit', () => children.delete(child));
  child.tail = () => err;
  child.output = () => out;
  return child;
}

/** Resolves with the first stdout line matching `re`, or rejects after `timeoutMs` or on exit. */
export function waitFor(child, re, timeoutMs) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (c) => {
      buf += c;
      const m = re.exec(buf);
      if (m !== null) done(null, m);
    };
    const onExit = (code) => done(new Error(`exited (${code}) before ${re}: ${child.tail().slice(-1500)}`));
    const timer = setTimeout(() => done(new Error(`no ${re} within ${timeoutMs} ms: ${child.tail().slice(-1500)}`)), timeoutMs);
    function done(err, m) {
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(m);
    }
    child.stdout.on('data', onData);
    child.once('exit', onExit);
    onData('');
  });
}

/** Runs a child to its end and parses the last stdout line as JSON. */
export async function runJson(ns, cmd, args, { timeoutMs = DEFAULT_TIMEOUT_MS, nofile = false } = {}) {
  const r = await nsRun(ns, cmd, args, { timeoutMs, nofile });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim().slice(-1500)}`);
  try {
    return JSON.parse(last);
  } catch {
    throw new Error(`${cmd} ${args.join(' ')}: no JSON answer: ${r.stdout.slice(-500)} ${r.stderr.slice(-500)}`);
  }
}

/** SIGTERM one child we started, SIGKILL after a grace period. */
export async function stop(child, graceMs = STOP_GRACE_MS) {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Synchronous last resort (process 'exit'): SIGKILL every child still running. */
export function killAllSync() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

export function runSync(cmd, args) {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * A bench's lifecycle around `main`: `teardown` after success (exit 0),
 * failure (1), SIGINT/SIGTERM/SIGHUP (130) or `hardStopMs` (3); at process
 * exit, whatever still runs is killed and `lastResort` runs synchronously.
 */
export function runMain(main, { teardown, lastResort, hardStopMs, log }) {
  process.once('exit', () => {
    killAllSync();
    lastResort();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      log(`${sig}: tearing down`);
      teardown().finally(() => process.exit(130));
    });
  }
  const hardStop = setTimeout(() => {
    log('hard time bound exceeded: tearing down');
    teardown().finally(() => process.exit(3));
  }, hardStopMs);
  hardStop.unref();
  main().then(
    () => process.exit(0),
    async (err) => {
      log(`failed: ${err.stack ?? err}`);
      await teardown().catch(() => undefined);
      process.exit(1);
    },
  );
}

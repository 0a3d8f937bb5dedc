/**
 * Prometheus from the tests: whether Debian's `prometheus` package (which
 * brings `promtool`) is installed, and a real Prometheus on loopback with a
 * temporary data directory that scrapes one target every second and answers
 * queries. Outside CI a suite whose binaries are missing is skipped with a
 * printed reason; under CI=true it runs and fails in its beforeAll.
 * Only the Prometheus started here is ever stopped, by its own PID.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { findOnPath } from './onPath.js';

export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const INSTALL = 'apt-get install -y --no-install-recommends prometheus';

export interface ToolPrereq {
  readonly ok: boolean;
  /** Skipped: not ok and not in CI. */
  readonly skip: boolean;
  readonly reason: string;
}

/** Whether `commands` are on PATH; prints why the suite is skipped outside CI. */
export function toolPrereq(suite: string, commands: readonly string[]): ToolPrereq {
  const missing = commands.filter((c) => findOnPath(c) === undefined);
  const ok = missing.length === 0;
  const reason = ok ? '' : `${missing.join(', ')} not on PATH (${INSTALL}; .ci/run installs it)`;
  const skip = !ok && !IN_CI;
  if (skip) console.warn(`[ops] skipping ${suite}: ${reason}`);
  return { ok, skip, reason };
}

/** In beforeAll: under CI a missing binary fails the suite instead of skipping it. */
export function assertToolPrereq(p: ToolPrereq): void {
  if (!p.ok) throw new Error(`prerequisites missing (CI=${process.env.CI ?? ''}): ${p.reason}`);
}

export interface Run {
  readonly code: number;
  readonly output: string;
}

/** Run a command to its end (bounded), with stdout and stderr together. */
export function runTool(command: string, args: readonly string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: options.cwd, timeout: options.timeoutMs ?? 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

/** A port free on 127.0.0.1 now: bound on port 0 by a throwaway listener, then closed. */
export async function freeLoopbackPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface PromSample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: readonly [number, string];
}

export type QueryAnswer =
  | { readonly status: 'success'; readonly data: { readonly resultType: string; readonly result: readonly PromSample[] | readonly [number, string] } }
  | { readonly status: 'error'; readonly errorType: string; readonly error: string };

export interface RunningPrometheus {
  readonly pid: number;
  readonly url: string;
  /** An instant query through the HTTP API. */
  query(expr: string): Promise<QueryAnswer>;
  /** GET a path of the HTTP API as JSON. */
  get(path: string): Promise<unknown>;
  /** Stop it (SIGTERM, then SIGKILL after a bound) and remove its data directory. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

/** Prometheus scraping `target` ("host:port") as job `job` every second, with `ruleFiles` loaded. */
export async function startPrometheus(target: string, options: { job?: string; ruleFiles?: readonly string[] } = {}): Promise<RunningPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'ftp-alg-prometheus-'));
  const config = {
    global: { scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '1s' },
    rule_files: options.ruleFiles ?? [],
    scrape_configs: [{ job_name: options.job ?? 'ftp-alg', static_configs: [{ targets: [target] }] }],
  };
  writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
  const port = await freeLoopbackPort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr = (stderr + text).slice(-4_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  if (child.pid === undefined) {
    await stop();
    throw new Error('prometheus did not start');
  }
  const get = async (path: string): Promise<unknown> => (await fetch(`${url}${path}`, { signal: AbortSignal.timeout(5_000) })).json();
  try {
    await waitReady(url, () => child.exitCode !== null, () => stderr);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    pid: child.pid,
    url,
    get,
    query: async (expr) => (await get(`/api/v1/query?query=${encodeURIComponent(expr)}`)) as QueryAnswer,
    stop,
  };
}

async function waitReady(url: string, exited: () => boolean, stderr: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited()) throw new Error(`prometheus exited: ${stderr()}`);
    try {
      if ((await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) })).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`prometheus not ready within ${READY_TIMEOUT_MS} ms: ${stderr()}`);
}

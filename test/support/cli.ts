/**
 * The built command line (`node dist/cli.js ARGS`) as a child process for
 * tests: its JSON log lines, awaited by predicate, everything it wrote, its
 * exit, and signals. Only children started here are ever killed, by their
 * own handle.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as stringifyYaml } from 'yaml';

export const CLI_PATH = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** A pino line as parsed from the child's stdout. */
export type LogLine = Readonly<Record<string, unknown>> & { readonly msg?: string; readonly level?: number };

export interface CliExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Everything written to stdout and stderr. */
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Every JSON line logged so far, in order. */
  readonly lines: readonly LogLine[];
  readonly exited: Promise<CliExit>;
  /** The first line at index >= `from` matching `match`; rejects on exit or after `timeoutMs`. */
  waitForLine(match: (line: LogLine) => boolean, options?: { from?: number; timeoutMs?: number }): Promise<{ line: LogLine; index: number }>;
  /** The first line with this `msg` (from index `from`). */
  waitForMsg(msg: string, options?: { from?: number; timeoutMs?: number }): Promise<LogLine>;
  signal(signal: NodeJS.Signals): void;
  /** Text the child wrote to stderr, and stdout lines that were not JSON. */
  readonly otherOutput: () => string;
}

const DEFAULT_WAIT_MS = 10_000;
const running = new Set<ChildProcess>();

/** A config file in a fresh temporary folder, JSON or (named `*.yaml`) YAML; `write` replaces its content. */
export interface ConfigFile {
  readonly path: string;
  write(config: unknown): void;
  remove(): void;
}

export function configFile(config: unknown, name = 'ftp-alg.json'): ConfigFile {
  const dir = mkdtempSync(join(tmpdir(), 'ftp-alg-ops-'));
  const path = join(dir, name);
  const format = (value: unknown) => (/\.ya?ml$/.test(name) ? stringifyYaml(value) : JSON.stringify(value, null, 2));
  const write = (value: unknown) => writeFileSync(path, typeof value === 'string' ? value : format(value));
  write(config);
  return { path, write, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `ftp-alg --config FILE`. */
export function startCli(configPath: string): CliProcess {
  return runCli(['--config', configPath]);
}

/** `ftp-alg --check-config FILE`, to its exit. */
export function checkConfig(configPath: string): Promise<CliExit> {
  return runCli(['--check-config', configPath]).exited;
}

/** `node dist/cli.js ...args`, FTP_ALG_CONFIG unset unless `env` sets it. */
export function runCli(args: readonly string[], env: Readonly<Record<string, string>> = {}): CliProcess {
  if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run "npm run build" first`);
  const baseEnv = { ...process.env };
  delete baseEnv.FTP_ALG_CONFIG;
  const child = spawn(process.execPath, [CLI_PATH, ...args], { env: { ...baseEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error('could not start the ftp-alg CLI');
  running.add(child);
  const lines: LogLine[] = [];
  let other = '';
  let stdout = '';
  let stderr = '';
  let partial = '';
  const watchers = new Set<() => void>();
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
    partial += text;
    let lf = partial.indexOf('\n');
    while (lf !== -1) {
      const raw = partial.slice(0, lf);
      partial = partial.slice(lf + 1);
      try {
        lines.push(JSON.parse(raw) as LogLine);
      } catch {
        other += `${raw}\n`;
      }
      lf = partial.indexOf('\n');
    }
    for (const w of [...watchers]) w();
  });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
    other += text;
  });
  let hasExited = false;
  const exited = new Promise<CliExit>((resolve) => {
    child.once('close', (code, signal) => {
      // 'close', not 'exit': by then stdout and stderr have been read to their end
      hasExited = true;
      running.delete(child);
      resolve({ code, signal, stdout, stderr });
      for (const w of [...watchers]) w();
    });
  });
  const waitForLine: CliProcess['waitForLine'] = (match, options = {}) => {
    const from = options.from ?? 0;
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
    return new Promise((resolve, reject) => {
      let scanned = from;
      const check = () => {
        for (; scanned < lines.length; scanned++) {
          const line = lines[scanned] as LogLine;
          if (match(line)) {
            finish();
            resolve({ line, index: scanned });
            return;
          }
        }
        if (hasExited) {
          finish();
          reject(new Error(`ftp-alg exited before the awaited log line; output: ${other}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no awaited log line within ${timeoutMs} ms; last lines: ${JSON.stringify(lines.slice(-5))}; other output: ${other}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        watchers.delete(check);
      };
      watchers.add(check);
      check();
    });
  };
  return {
    child,
    pid: child.pid,
    lines,
    exited,
    waitForLine,
    waitForMsg: async (msg, options) => (await waitForLine((l) => l.msg === msg, options)).line,
    signal: (signal) => {
      if (!hasExited) child.kill(signal);
    },
    otherOutput: () => other,
  };
}

/** SIGKILL every CLI child started by this module that is still running (afterEach). */
export async function killStartedClis(): Promise<void> {
  const waits = [...running].map(
    (child) =>
      new Promise<void>((resolve) => {
        child.once('close', () => resolve());
        child.kill('SIGKILL');
      }),
  );
  await Promise.all(waits);
}

/** The site's control port from its "listening" line. */
export async function sitePort(cli: CliProcess, site: string, from = 0): Promise<number> {
  const { line } = await cli.waitForLine((l) => l.msg === 'listening' && l.site === site, { from });
  const port = line.port;
  if (typeof port !== 'number') throw new Error(`no port in ${JSON.stringify(line)}`);
  return port;
}

/** The metrics endpoint's "host:port" from its "metrics listening" line. */
export async function metricsAddressOf(cli: CliProcess): Promise<{ host: string; port: number }> {
  const line = await cli.waitForMsg('metrics listening');
  const m = typeof line.http === 'string' ? /^(.*):(\d+)$/.exec(line.http) : null;
  if (m === null) throw new Error(`no address in ${JSON.stringify(line)}`);
  return { host: m[1] as string, port: Number(m[2]) };
}

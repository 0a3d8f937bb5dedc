/**
 * The command line, run from the build (`npm run build`, which `npm test`
 * runs as pretest): --check-config, --config / FTP_ALG_CONFIG, the
 * "listening" log line, SIGTERM, and the sysexits(3) exit codes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../support/control.js';
import { portRanges } from '../support/ports.js';
import { type ScriptedUpstream, startScriptedUpstream } from '../support/scripted.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const EX_USAGE = 64;
const EX_CONFIG = 78;
const EXIT_DEADLINE_MS = 10_000;

const [passive, active] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface Running {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  /** Resolves with the first JSON log line whose msg is `msg`. */
  logLine(msg: string): Promise<Record<string, unknown>>;
}

const children = new Set<ChildProcess>();

function run(args: string[], env: Record<string, string> = {}): Running {
  const baseEnv = { ...process.env };
  delete baseEnv.FTP_ALG_CONFIG;
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...baseEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  const lineWaiters: { msg: string; resolve: (line: Record<string, unknown>) => void }[] = [];
  const seen: Record<string, unknown>[] = [];
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    const before = stdout;
    stdout += text;
    const complete = stdout.slice(0, stdout.lastIndexOf('\n') + 1);
    const fresh = complete.slice(before.slice(0, before.lastIndexOf('\n') + 1).length);
    for (const line of fresh.split('\n').filter((l) => l.trim() !== '')) {
      try {
        seen.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
    for (const w of [...lineWaiters]) {
      const hit = seen.find((l) => l.msg === w.msg);
      if (hit !== undefined) {
        lineWaiters.splice(lineWaiters.indexOf(w), 1);
        w.resolve(hit);
      }
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  const exited = new Promise<Exit>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ftp-alg ${args.join(' ')} did not exit in time; stdout ${stdout} stderr ${stderr}`));
    }, EXIT_DEADLINE_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return {
    child,
    exited,
    logLine(msg) {
      const hit = seen.find((l) => l.msg === msg);
      if (hit !== undefined) return Promise.resolve(hit);
      return Promise.race([
        new Promise<Record<string, unknown>>((resolve) => lineWaiters.push({ msg, resolve })),
        exited.then((e) => {
          throw new Error(`exited (${e.code}) before logging "${msg}": ${e.stdout} ${e.stderr}`);
        }),
      ]);
    },
  };
}

let dir: string;
let upstream: ScriptedUpstream;

function writeJson(name: string, value: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
  return file;
}

function validConfig(): Record<string, unknown> {
  return {
    log: { level: 'info' },
    shutdown: { drainTimeoutMs: 1_000 },
    sites: [
      {
        name: 'main',
        listen: { host: '127.0.0.1', port: 0 },
        upstream: { host: upstream.host, port: upstream.port },
        passivePorts: passive,
        activePorts: active,
      },
    ],
  };
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`);
  dir = mkdtempSync(join(tmpdir(), 'ftp-alg-cli-'));
  upstream = await startScriptedUpstream();
});

afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
});

afterAll(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('ftp-alg --check-config', () => {
  it('exits 0 on a valid file', async () => {
    const file = writeJson('valid.json', validConfig());
    const exit = await run(['--check-config', file]).exited;
    expect(exit.code).toBe(0);
    expect(exit.stdout).toMatch(/valid, 1 site/);
  });

  it('exits 1 on an invalid file, naming the key', async () => {
    const config = validConfig();
    const sites = config.sites as Record<string, unknown>[];
    sites[0] = { ...sites[0], passivePorts: { min: 80, max: 90 } };
    const file = writeJson('low-ports.json', config);
    const exit = await run(['--check-config', file]).exited;
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(/sites\[0\]\.passivePorts\.min/);
  });

  it('exits 1 on an unknown key, naming it', async () => {
    const file = writeJson('unknown.json', { ...validConfig(), colour: 'blue' });
    const exit = await run(['--check-config', file]).exited;
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(/colour: unknown key/);
  });

  it('exits 1 on a file that is not JSON', async () => {
    const file = writeJson('broken.json', '{ "sites": [');
    const exit = await run(['--check-config', file]).exited;
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(/not valid JSON/);
  });

  it('exits 1 on a file that does not exist', async () => {
    const exit = await run(['--check-config', join(dir, 'absent.json')]).exited;
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(/cannot read/);
  });
});

describe('ftp-alg --config', () => {
  it('logs a JSON "listening" line, serves, and exits 0 on SIGTERM', async () => {
    const file = writeJson('run.json', validConfig());
    const gateway = run(['--config', file]);
    const listening = await gateway.logLine('listening');
    expect(listening.site).toBe('main');
    expect(listening.host).toBe('127.0.0.1');
    expect(typeof listening.port).toBe('number');
    expect(listening.port).toBeGreaterThan(0);

    const client = await ControlClient.connect(listening.port as number);
    expect((await client.reply()).code).toBe(220); // the scripted upstream's greeting, through the gateway
    client.destroy();

    await gateway.logLine('started'); // signal handlers are in place from here on
    gateway.child.kill('SIGTERM');
    const exit = await gateway.exited;
    expect(exit.code).toBe(0);
    expect(exit.stdout).toMatch(/"msg":"stopped"/);
  });

  it('reads the file named by FTP_ALG_CONFIG', async () => {
    const file = writeJson('env.json', validConfig());
    const gateway = run([], { FTP_ALG_CONFIG: file });
    const listening = await gateway.logLine('listening');
    expect(listening.port).toBeGreaterThan(0);
    await gateway.logLine('started'); // signal handlers are in place from here on
    gateway.child.kill('SIGTERM');
    expect((await gateway.exited).code).toBe(0);
  });

  it('a SIGTERM right after the "listening" line drains and exits 0 (not killed by the signal)', async () => {
    // "listening" is the readiness line operators and the e2e harness wait for; a stop
    // request right after it must be handled, not end the process by the default action.
    const file = writeJson('early-term.json', validConfig());
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      const gateway = run(['--config', file]);
      await gateway.logLine('listening');
      gateway.child.kill('SIGTERM');
      const exit = await gateway.exited;
      outcomes.push(exit.signal ?? String(exit.code));
    }
    expect(outcomes).toEqual(['0', '0', '0', '0', '0']);
  });

  it('exits 64 without a configuration', async () => {
    const exit = await run([]).exited;
    expect(exit.code).toBe(EX_USAGE);
    expect(exit.stderr).toMatch(/no configuration/);
    expect(exit.stderr).toMatch(/Usage:/);
  });

  it('exits 64 on an unknown option', async () => {
    const exit = await run(['--frobnicate']).exited;
    expect(exit.code).toBe(EX_USAGE);
  });

  it('exits 78 on an invalid configuration at start, naming the key', async () => {
    const config = validConfig();
    const sites = config.sites as Record<string, unknown>[];
    sites[0] = { ...sites[0], upstream: { host: 'ftp.example.com', port: 21 } };
    const file = writeJson('bad-upstream.json', config);
    const exit = await run(['--config', file]).exited;
    expect(exit.code).toBe(EX_CONFIG);
    expect(exit.stderr).toMatch(/sites\[0\]\.upstream\.host/);
  });

  it('exits 78 when the configuration file cannot be read', async () => {
    const exit = await run(['--config', join(dir, 'absent.json')]).exited;
    expect(exit.code).toBe(EX_CONFIG);
  });

  it('prints its version', async () => {
    const exit = await run(['--version']).exited;
    expect(exit.code).toBe(0);
    expect(exit.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

/**
 * The command line, run from the build (`npm run build`, which `npm test`
 * runs as pretest): --check-config, --config / FTP_ALG_CONFIG, the
 * "listening" log line, SIGTERM, and the sysexits(3) exit codes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killStartedClis, runCli } from '../support/cli.js';
import { ControlClient } from '../support/control.js';
import { portRanges } from '../support/ports.js';
import { type ScriptedUpstream, startScriptedUpstream } from '../support/scripted.js';

const EX_USAGE = 64;
const EX_CONFIG = 78;

const [passive, active] = portRanges(2, 10) as [{ min: number; max: number }, { min: number; max: number }];

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
  dir = mkdtempSync(join(tmpdir(), 'ftp-alg-cli-'));
  upstream = await startScriptedUpstream();
});

afterEach(async () => {
  await killStartedClis();
});

afterAll(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('ftp-alg --check-config', () => {
  it('exits 0 on a valid file', async () => {
    const file = writeJson('valid.json', validConfig());
    const exit = await runCli(['--check-config', file]).exited;
    expect(exit.code).toBe(0);
    expect(exit.stdout).toMatch(/valid, 1 site/);
  });

  it('exits 1 on an invalid file, naming the key', async () => {
    const config = validConfig();
    const sites = config.sites as Record<string, unknown>[];
    sites[0] = { ...sites[0], passivePorts: { min: 80, max: 90 } };
    const file = writeJson('low-ports.json', config);
    const exit = await runCli(['--check-config', file]).exited;
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(/sites\[0\]\.passivePorts\.min/);
  });

  it('exits 1 on an unknown key, naming it', async () => {
    const file = writeJson('unknown.json', { ...validConfig(), colour: 'blue' });
    const exit = await runCli(['--check-config', file]).exited;
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(/colour: unknown key/);
  });

  it('exits 1 on a file that is not JSON', async () => {
    const file = writeJson('broken.json', '{ "sites": [');
    const exit = await runCli(['--check-config', file]).exited;
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(/not valid JSON/);
  });

  it('exits 1 on a file that does not exist', async () => {
    const exit = await runCli(['--check-config', join(dir, 'absent.json')]).exited;
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(/cannot read/);
  });
});

describe('ftp-alg --config', () => {
  it('logs a JSON "listening" line, serves, and exits 0 on SIGTERM', async () => {
    const file = writeJson('run.json', validConfig());
    const gateway = runCli(['--config', file]);
    const listening = await gateway.waitForMsg('listening');
    expect(listening.site).toBe('main');
    expect(listening.host).toBe('127.0.0.1');
    expect(typeof listening.port).toBe('number');
    expect(listening.port).toBeGreaterThan(0);

    const client = await ControlClient.connect(listening.port as number);
    expect((await client.reply()).code).toBe(220); // the scripted upstream's greeting, through the gateway
    client.destroy();

    await gateway.waitForMsg('started'); // signal handlers are in place from here on
    gateway.signal('SIGTERM');
    const exit = await gateway.exited;
    expect(exit.code).toBe(0);
    expect(exit.stdout).toMatch(/"msg":"stopped"/);
  });

  it('reads the file named by FTP_ALG_CONFIG', async () => {
    const file = writeJson('env.json', validConfig());
    const gateway = runCli([], { FTP_ALG_CONFIG: file });
    const listening = await gateway.waitForMsg('listening');
    expect(listening.port).toBeGreaterThan(0);
    await gateway.waitForMsg('started'); // signal handlers are in place from here on
    gateway.signal('SIGTERM');
    expect((await gateway.exited).code).toBe(0);
  });

  it('a SIGTERM right after the "listening" line drains and exits 0 (not killed by the signal)', async () => {
    // "listening" is the readiness line operators and the e2e harness wait for; a stop
    // request right after it must be handled, not end the process by the default action.
    const file = writeJson('early-term.json', validConfig());
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      const gateway = runCli(['--config', file]);
      await gateway.waitForMsg('listening');
      gateway.signal('SIGTERM');
      const exit = await gateway.exited;
      outcomes.push(exit.signal ?? String(exit.code));
    }
    expect(outcomes).toEqual(['0', '0', '0', '0', '0']);
  });

  it('exits 64 without a configuration', async () => {
    const exit = await runCli([]).exited;
    expect(exit.code).toBe(EX_USAGE);
    expect(exit.stderr).toMatch(/no configuration/);
    expect(exit.stderr).toMatch(/Usage:/);
  });

  it('exits 64 on an unknown option', async () => {
    const exit = await runCli(['--frobnicate']).exited;
    expect(exit.code).toBe(EX_USAGE);
  });

  it('exits 78 on an invalid configuration at start, naming the key', async () => {
    const config = validConfig();
    const sites = config.sites as Record<string, unknown>[];
    sites[0] = { ...sites[0], upstream: { host: 'ftp.example.com', port: 21 } };
    const file = writeJson('bad-upstream.json', config);
    const exit = await runCli(['--config', file]).exited;
    expect(exit.code).toBe(EX_CONFIG);
    expect(exit.stderr).toMatch(/sites\[0\]\.upstream\.host/);
  });

  it('exits 78 when the configuration file cannot be read', async () => {
    const exit = await runCli(['--config', join(dir, 'absent.json')]).exited;
    expect(exit.code).toBe(EX_CONFIG);
  });

  it('prints its version', async () => {
    const exit = await runCli(['--version']).exited;
    expect(exit.code).toBe(0);
    expect(exit.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

/**
 * The command line refuses a tls section whose files cannot be used, naming
 * the key: `--check-config` exits 1, a start exits 78 (EX_CONFIG, so systemd
 * does not restart into the same error). Runs the build (dist/cli.js).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type CertFiles, useTestCerts } from '../../support/certs.js';
import { type CliExit, checkConfig as runCheckConfig, configFile, type ConfigFile, killStartedClis, startCli } from '../../support/cli.js';
import { portRanges } from '../../support/ports.js';

const [passivePorts, activePorts] = portRanges(2, 4) as [{ min: number; max: number }, { min: number; max: number }];
const testCerts = useTestCerts();
let certs: CertFiles;
const files: ConfigFile[] = [];

beforeEach(() => {
  certs = testCerts();
});
afterEach(async () => {
  await killStartedClis();
  for (const f of files.splice(0)) f.remove();
});

function config(tls: Record<string, unknown>): string {
  const file = configFile({
    log: { level: 'info' },
    sites: [{ name: 'ftps', listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: 21 }, passivePorts, activePorts, tls }],
  });
  files.push(file);
  return file.path;
}

async function checkConfig(path: string): Promise<{ code: CliExit['code']; output: string }> {
  const exit = await runCheckConfig(path);
  return { code: exit.code, output: exit.stdout + exit.stderr };
}

describe('a tls section with unusable files is refused, naming the key', () => {
  it('--check-config: a key that does not match its certificate exits 1', async () => {
    const { code, output } = await checkConfig(config({ certFile: certs.certFile, keyFile: certs.lonelyKeyFile }));
    expect(code).toBe(1);
    expect(output).toContain('sites[0].tls.keyFile');
    expect(output).toContain('does not match the certificate');
  });

  it('--check-config: good files exit 0', async () => {
    const { code } = await checkConfig(config({ certFile: certs.certFile, keyFile: certs.keyFile }));
    expect(code).toBe(0);
  });

  it('start: an unreadable certificate exits 78', async () => {
    const cli = startCli(config({ certFile: `${certs.dir}/gone.crt`, keyFile: certs.keyFile }));
    const exit = await cli.exited;
    expect(exit.code).toBe(78);
    expect(JSON.stringify(cli.lines) + cli.otherOutput()).toContain('sites[0].tls.certFile');
  });
});

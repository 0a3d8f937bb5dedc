/**
 * A YAML configuration through the built CLI: `--check-config` names the
 * file, line and key of a schema error and the line of a syntax error; the
 * gateway runs from a YAML file, and SIGHUP reloads it (an invalid edit is
 * refused with its line and key in the log, a valid one adds a site; both
 * are counted in ftp_alg_reloads_total{result}).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkConfig, configFile, metricsAddressOf, sitePort, startCli } from '../../support/cli.js';
import { Scrape } from '../../support/opsMetrics.js';
import { useOpsRig } from '../../support/opsRig.js';
import { download } from '../../support/opsTransfer.js';
import { portRanges } from '../../support/ports.js';

type Range = { min: number; max: number };
const [passive, active, secondPassive, secondActive] = portRanges(4, 8) as [Range, Range, Range, Range];
const SMALL = randomBytes(32 * 1024 + 3);

const rig = useOpsRig({ 'small.bin': SMALL });

/** A YAML config of one or two sites, written by hand as an operator would, with comments. */
function yamlConfig(options: { second?: boolean; listenHost?: string } = {}): string {
  const up = rig.upstream;
  const site = (name: string, p: Range, a: Range, host: string) => `  - name: ${name}
    listen: { host: ${host}, port: 0 }   # any free port
    upstream: { host: ${up.host}, port: ${up.port} }
    externalAddress: 127.0.0.1
    passivePorts: { min: ${p.min}, max: ${p.max} }
    activePorts: { min: ${a.min}, max: ${a.max} }
`;
  return `# ftp-alg test configuration
log:
  level: info
metrics:
  listen: 127.0.0.1:0
shutdown:
  drainTimeoutMs: 2000
sites:
${site('main', passive, active, options.listenHost ?? '127.0.0.1')}${options.second === true ? site('second', secondPassive, secondActive, '127.0.0.1') : ''}`;
}

describe('ftp-alg --check-config with YAML', () => {
  it('accepts a valid file', async () => {
    rig.file = configFile(yamlConfig(), 'ftp-alg.yaml');
    const result = await checkConfig(rig.file.path);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/valid, 1 site/);
  });

  it('names the file, line, column and key of a schema error', async () => {
    rig.file = configFile(yamlConfig({ listenHost: 'localhost' }), 'ftp-alg.yaml');
    const result = await checkConfig(rig.file.path);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${rig.file.path}:10:15: sites[0].listen.host: must be an IP address, got "localhost"`);
  });

  it('names the line of an unknown key', async () => {
    rig.file = configFile(yamlConfig().replace('  drainTimeoutMs: 2000\n', '  drainTimeoutMs: 2000\n  drainTimeout: 5\n'), 'ftp-alg.yml');
    const result = await checkConfig(rig.file.path);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${rig.file.path}:8:3: shutdown.drainTimeout: unknown key`);
  });

  it('names the line of a YAML syntax error', async () => {
    rig.file = configFile(yamlConfig().replace('  level: info', '  level: info\n level: debug'), 'ftp-alg.yaml');
    const result = await checkConfig(rig.file.path);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`^${rig.file.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4:\\d+: not valid YAML: `));
  });
});

describe('the gateway from a YAML file', () => {
  it('serves, refuses an invalid SIGHUP with its line and key, and reloads a valid one', async () => {
    rig.file = configFile(yamlConfig(), 'ftp-alg.yaml');
    const cli = startCli(rig.file.path);
    await cli.waitForMsg('started');
    const main = await rig.session(await sitePort(cli, 'main'));
    expect((await download(main, 'small.bin')).data.equals(SMALL)).toBe(true);

    rig.file.write(yamlConfig({ second: true }).replace(`max: ${secondPassive.max}`, `max: ${secondPassive.max}, step: 2`));
    let mark = cli.lines.length;
    cli.signal('SIGHUP');
    const refusal = await cli.waitForMsg('reload refused: invalid configuration; the running one stays', { from: mark });
    expect(refusal).toMatchObject({ key: 'sites[1].passivePorts.step', line: 19 });
    expect(String(refusal.problem)).toMatch(/:19:\d+: sites\[1\]\.passivePorts\.step: unknown key/);
    const metrics = await metricsAddressOf(cli);
    let scrape = await Scrape.from(metrics);
    expect(scrape.value('ftp_alg_reloads_total', { result: 'failed' })).toBe(1);
    expect(scrape.value('ftp_alg_reloads_total', { result: 'ok' })).toBe(0);
    expect(scrape.value('ftp_alg_config_last_reload_successful')).toBe(0);

    rig.file.write(yamlConfig({ second: true }));
    mark = cli.lines.length;
    cli.signal('SIGHUP');
    const second = await rig.session(await sitePort(cli, 'second', mark));
    await cli.waitForMsg('configuration reloaded', { from: mark });
    scrape = await Scrape.from(metrics);
    expect(scrape.value('ftp_alg_reloads_total', { result: 'ok' })).toBe(1);
    expect(scrape.value('ftp_alg_config_last_reload_successful')).toBe(1);
    expect((await download(second, 'small.bin')).data.equals(SMALL)).toBe(true);
    expect((await main.command('NOOP')).code).toBe(200);

    for (const c of [main, second]) await c.command('QUIT');
    cli.signal('SIGTERM');
    expect((await cli.exited).code).toBe(0);
  });
});

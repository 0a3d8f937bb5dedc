/**
 * The deploy files against the real tools: `systemd-analyze verify` on the
 * unit, `nft -c` (check mode, needs root) on the committed ruleset and on
 * rulesets generated from every example config, `keepalived -t` (config
 * test mode, in a network namespace that has the interfaces it names) on the
 * balancer hosts' VRRP configs, the commands the unit runs,
 * and the container health check against a real HTTP listener on port 0.
 * Outside CI a suite whose tool is missing skips with a warning; in CI
 * (CI=true) nothing skips, so a missing install step fails.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfig } from '../../src/config/load.js';
import { balancerRules, controlMapUpdate, slotTargets } from '../../src/deploy/balancer.js';
import { keepalivedConfig, type KeepalivedOptions } from '../../src/deploy/keepalived.js';
import { nftablesRules } from '../../src/deploy/nftables.js';
import { findOnPath } from '../support/onPath.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const UNIT = join(ROOT, 'deploy/systemd/ftp-alg.service');
const BALANCER_UNIT = join(ROOT, 'deploy/systemd/ftp-alg-balancer.service');
const RULESET = join(ROOT, 'deploy/nftables/ftp-alg.nft');
const EXAMPLE_CONFIG = join(ROOT, 'config/ftp-alg.json');

interface Exit {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: string[], cwd = ROOT): Promise<Exit> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr: err !== null && typeof err.code !== 'number' ? `${stderr}${err.message}` : stderr });
    });
  });
}

/** The TypeScript sources run as they are, so the test never sees a stale build. */
function runSource(script: string, args: string[]): Promise<Exit> {
  return run(process.execPath, ['--import', 'tsx', join(ROOT, script), ...args]);
}

/** describe, or describe.skip with a printed reason outside CI when something is missing. */
function describeIf(missing: string | undefined): typeof describe | typeof describe.skip {
  if (missing === undefined || IN_CI) return describe;
  console.warn(`deploy.test.ts: skipping a suite: ${missing}`);
  return describe.skip;
}

const scratch = mkdtempSync(join(tmpdir(), 'ftp-alg-deploy-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const systemdAnalyze = findOnPath('systemd-analyze');

describeIf(systemdAnalyze === undefined ? 'systemd-analyze is not installed (apt-get install systemd)' : undefined)(
  'systemd unit',
  () => {
    /**
     * Verify a copy whose executables exist on this machine: node may live
     * elsewhere than /usr/bin, kill elsewhere than /bin. The arguments, and
     * so the unit's meaning, stay as committed.
     */
    async function verify(text: string, name = 'ftp-alg.service'): Promise<Exit & { complaints: string[] }> {
      expect(systemdAnalyze, 'systemd-analyze must be installed in CI').toBeDefined();
      const dir = mkdtempSync(join(scratch, 'unit-'));
      const kill = findOnPath('kill') ?? '/bin/kill';
      const nftPath = findOnPath('nft') ?? '/usr/sbin/nft';
      const local = text
        .replaceAll('/usr/bin/node ', `${process.execPath} `)
        .replaceAll('/bin/kill ', `${kill} `)
        .replaceAll('/usr/sbin/nft ', `${nftPath} `);
      const path = join(dir, name);
      writeFileSync(path, local);
      const exit = await run(systemdAnalyze ?? 'systemd-analyze', ['verify', '--man=no', path]);
      // Lines about other units of this machine are not ours to judge.
      const complaints = `${exit.stdout}${exit.stderr}`.split('\n').filter((line) => line.includes('ftp-alg'));
      return { ...exit, complaints };
    }

    it('systemd-analyze verify passes with no complaint about the unit', async () => {
      const result = await verify(readFileSync(UNIT, 'utf8'));
      expect(result.complaints).toEqual([]);
      expect(result.code, result.stderr).toBe(0);
    });

    it('systemd-analyze verify passes with no complaint about the balancer unit', async () => {
      const result = await verify(readFileSync(BALANCER_UNIT, 'utf8'), 'ftp-alg-balancer.service');
      expect(result.complaints).toEqual([]);
      expect(result.code, result.stderr).toBe(0);
    });

    it('the check would see a broken unit (misspelt key, missing executable)', async () => {
      const unit = readFileSync(UNIT, 'utf8');
      const misspelt = await verify(unit.replace('ProtectSystem=strict', 'ProtectSystm=strict'));
      expect(misspelt.complaints.join('\n')).toMatch(/Unknown key 'ProtectSystm'/);
      const missing = await verify(unit.replace('ExecStart=/usr/bin/node', `ExecStart=${join(scratch, 'no-such-node')}`));
      expect(missing.code).not.toBe(0);
    });
  },
);

describe("the commands the unit runs", () => {
  const unit = readFileSync(UNIT, 'utf8');
  const command = (key: string) =>
    new RegExp(`^${key}=/usr/bin/node /opt/ftp-alg/dist/cli\\.js (.*) /etc/ftp-alg/ftp-alg\\.json$`, 'm').exec(unit)?.[1];

  it('ExecStartPre (and the first ExecReload) --check-config accepts the example config', async () => {
    expect(command('ExecStartPre')).toBe('--check-config');
    expect(command('ExecReload')).toBe('--check-config');
    const result = await runSource('src/cli.ts', ['--check-config', EXAMPLE_CONFIG]);
    expect(result.code, result.stderr).toBe(0);
  });

  it('ExecStart runs --config', () => {
    expect(command('ExecStart')).toBe('--config');
  });
});

describe('the commands the balancer unit runs', () => {
  const unit = readFileSync(BALANCER_UNIT, 'utf8');
  const env = /^#\s+FTP_ALG_INSTANCES=(.*)$/m.exec(unit)?.[1];

  it('ExecStartPre loads the ruleset; ExecStart runs the agent on the same config and instances', () => {
    expect(unit).toMatch(/^ExecStartPre=\/usr\/sbin\/nft -f \/etc\/ftp-alg\/balancer\.nft$/m);
    expect(unit).toMatch(/^EnvironmentFile=\/etc\/ftp-alg\/balancer\.env$/m);
    const start = /^ExecStart=\/usr\/bin\/node \/opt\/ftp-alg\/dist\/cli\.js (.*)$/m.exec(unit)?.[1];
    expect(start).toBe('--balancer-agent --config /etc/ftp-alg/ftp-alg.json --instances ${FTP_ALG_INSTANCES}');
    expect(env).toBe('192.0.2.21,192.0.2.22');
  });

  it('the agent accepts the unit\'s arguments with the example config (and refuses without --instances)', async () => {
    const args = ['--balancer-agent', '--config', join(ROOT, 'deploy/balancer/ftp-alg.json'), '--instances', env ?? '', '--interval-ms', 'x'];
    const wrongInterval = await runSource('src/cli.ts', args);
    expect(wrongInterval.code).toBe(64); // exits before it starts: the rest of the line was accepted
    expect(wrongInterval.stderr).toMatch(/--interval-ms must be/);
    const noInstances = await runSource('src/cli.ts', args.slice(0, 3));
    expect(noInstances.code).toBe(64);
    expect(noInstances.stderr).toMatch(/--instances/);
  });
});

const nft = findOnPath('nft');
const isRoot = process.getuid?.() === 0;
const nftMissing = nft === undefined ? 'nft is not installed (apt-get install nftables)' : !isRoot ? 'nft -c needs root' : undefined;

describeIf(nftMissing)('nftables ruleset', () => {
  async function check(path: string): Promise<void> {
    expect(nft, 'nft must be installed in CI').toBeDefined();
    expect(isRoot, 'nft -c needs root; CI runs as root').toBe(true);
    const result = await run(nft ?? 'nft', ['-c', '-f', path]);
    expect(result.code, result.stderr).toBe(0);
  }

  it('nft -c accepts deploy/nftables/ftp-alg.nft', async () => {
    await check(RULESET);
  });

  it('nft -c accepts deploy/balancer/balancer.nft (the control map and its rules)', async () => {
    await check(join(ROOT, 'deploy/balancer/balancer.nft'));
  });

  it.each([
    ['IPv4', '0.0.0.0', '203.0.113.1', ['192.0.2.21', '192.0.2.22', '192.0.2.23']],
    ['IPv6', '::', '2001:db8::1', ['2001:db8:2::21', '2001:db8:2::22', '2001:db8:2::23']],
  ])("nft -c accepts a generated %s balancer followed by the agent's map update (one instance down)", async (_family, host, vip, instances) => {
    const config = parseConfig({
      instance: { index: 0, count: instances.length },
      sites: [{ name: 'main', listen: { host, port: 21 }, upstream: { host: '192.0.2.10', port: 21 }, externalAddress: vip, passivePorts: { min: 50000, max: 50999 }, activePorts: { min: 51000, max: 51999 } }],
    });
    const path = join(scratch, `balancer-${_family}.nft`);
    writeFileSync(path, balancerRules(config, { instances }) + controlMapUpdate(slotTargets(instances, [true, false, true])));
    await check(path);
  });

  const examples = readdirSync(join(ROOT, 'config/examples')).filter((f) => f.endsWith('.json'));
  it.each(examples)('nft -c accepts the ruleset generated from config/examples/%s', async (file) => {
    const path = join(scratch, `${file}.nft`);
    writeFileSync(path, nftablesRules(loadConfigFile(join(ROOT, 'config/examples', file))));
    await check(path);
  });
});

const keepalived = findOnPath('keepalived');
const keepalivedMissing = keepalived === undefined ? 'keepalived is not installed (apt-get install keepalived)' : !isRoot ? 'keepalived -t needs a network namespace, so root' : undefined;

describeIf(keepalivedMissing)('keepalived config (balancer host fail-over)', () => {
  // keepalived -t refuses a config naming interfaces that do not exist: give it eth0 and eth1 in a namespace of our own.
  const ns = `ftpka-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  let made = false;

  afterAll(async () => {
    if (made) await run('ip', ['netns', 'del', ns]);
  });

  async function check(text: string, name: string): Promise<Exit> {
    expect(keepalived, 'keepalived must be installed in CI (.ci/install-e2e.sh)').toBeDefined();
    expect(isRoot, 'keepalived -t runs in a namespace; CI runs as root').toBe(true);
    if (!made) {
      for (const args of [['netns', 'add', ns], ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0'], ['-n', ns, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'peer1']]) {
        const r = await run('ip', args);
        expect(r.code, r.stderr).toBe(0);
        made = true;
      }
    }
    const path = join(scratch, name);
    writeFileSync(path, text);
    return run('ip', ['netns', 'exec', ns, keepalived ?? 'keepalived', '-t', '-f', path]);
  }

  /** keepalived -t prints nothing and exits 0 on a config it fully accepts; any warning exits non-zero. */
  async function accepts(text: string, name: string): Promise<void> {
    const result = await check(text, name);
    expect(`${result.stdout}${result.stderr}`).toBe('');
    expect(result.code).toBe(0);
  }

  it.each(['keepalived-a.conf', 'keepalived-b.conf'])('keepalived -t accepts deploy/balancer/%s', async (file) => {
    await accepts(readFileSync(join(ROOT, 'deploy/balancer', file), 'utf8'), file);
  });

  const base: KeepalivedOptions = { vips: ['203.0.113.1'], interface: 'eth0', routerId: 51, priority: 100, peers: [], agentUnit: 'ftp-alg-balancer.service' };
  it.each<[string, Partial<KeepalivedOptions>]>([
    ['IPv4 multicast', {}],
    ['dual stack, IPv4 peers (IPv6 VIP excluded)', { vips: ['203.0.113.1/24', '2001:db8::1/64'], peers: ['203.0.113.12', '203.0.113.13'] }],
    ['dual stack, IPv6 peers (IPv4 VIP excluded)', { vips: ['203.0.113.1/24', '2001:db8::1/64'], peers: ['2001:db8::12'] }],
    ['IPv6 multicast with an inside gateway on eth1', { vips: ['2001:db8::1'], insideVips: ['2001:db8:2::1/64', '192.0.2.1/24'], insideInterface: 'eth1' }],
    ['a 100 ms advert interval, agent unchecked', { advertMs: 100, agentUnit: undefined, peers: ['203.0.113.12'] }],
  ])('keepalived -t accepts the generated config: %s', async (name, options) => {
    await accepts(keepalivedConfig({ ...base, ...options }), `${name.replace(/[^a-z0-9]+/gi, '-')}.conf`);
  });

  it('the check sees a wrong config: both families advertised in one virtual_ipaddress block', async () => {
    const generated = keepalivedConfig({ ...base, vips: ['203.0.113.1/24', '2001:db8::1/64'] });
    const mixed = generated.replace(/\t}\n\tvirtual_ipaddress_excluded {\n/, '');
    expect(mixed).not.toBe(generated);
    const result = await check(mixed, 'mixed.conf');
    expect(result.stderr).toMatch(/address family must match VRRP instance/);
    expect(result.code).not.toBe(0);
  });

  it('the check sees a script that is not there', async () => {
    const result = await check(readFileSync(join(ROOT, 'deploy/balancer/keepalived-a.conf'), 'utf8').replace('/usr/bin/systemctl', '/usr/bin/no-such-systemctl'), 'noscript.conf');
    expect(result.stderr).toMatch(/ftp_alg_agent since not found/);
    expect(result.code).not.toBe(0);
  });
});

describe('container health check (src/deploy/healthcheck.ts)', () => {
  let server: Server | undefined;

  afterEach(async () => {
    const s = server;
    server = undefined;
    if (s !== undefined) await new Promise<void>((resolve) => s.close(() => resolve()));
  });

  /** A metrics listener stand-in: /healthz answers 200, /readyz answers `ready`. */
  async function listen(ready: number): Promise<number> {
    const s = createServer((req, res) => {
      res.statusCode = req.url === '/healthz' ? 200 : req.url === '/readyz' ? ready : 404;
      res.end();
    });
    server = s;
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    return (s.address() as AddressInfo).port;
  }

  function configFile(listen: string): string {
    const path = join(mkdtempSync(join(scratch, 'health-')), 'ftp-alg.json');
    const document = JSON.parse(readFileSync(EXAMPLE_CONFIG, 'utf8')) as Record<string, unknown>;
    writeFileSync(path, JSON.stringify({ ...document, metrics: { listen } }));
    return path;
  }

  it('exits 0 when /healthz answers 200 (wildcard listener asked on loopback)', async () => {
    const port = await listen(200);
    const result = await runSource('src/deploy/healthcheck.ts', [configFile(`0.0.0.0:${port}`), '/healthz']);
    expect(result.code, result.stderr).toBe(0);
  });

  it('exits 1 when /readyz answers 503 (draining)', async () => {
    const port = await listen(503);
    const result = await runSource('src/deploy/healthcheck.ts', [configFile(`127.0.0.1:${port}`), '/readyz']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('HTTP 503');
  });

  it('exits 1 when nothing listens', async () => {
    const port = await listen(200);
    const s = server;
    server = undefined;
    await new Promise<void>((resolve) => s?.close(() => resolve()));
    const result = await runSource('src/deploy/healthcheck.ts', [configFile(`127.0.0.1:${port}`)]);
    expect(result.code).toBe(1);
  });

  it('exits 0 with metrics off: there is nothing to ask', async () => {
    const result = await runSource('src/deploy/healthcheck.ts', [configFile('')]);
    expect(result.code, result.stderr).toBe(0);
  });

  it('exits 1 when the config cannot be read', async () => {
    const result = await runSource('src/deploy/healthcheck.ts', [join(scratch, 'missing.json')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('cannot read');
  });
});

const STEER = join(ROOT, 'deploy/systemd/ftp-alg-steer-packets');
const steerMissing = !isRoot ? 'steering a veth\'s receive queue needs a network namespace, so root' : undefined;

/** deploy/systemd/ftp-alg-steer-packets (controlPriority.cpus: the NIC's packet work off the control CPU). */
describeIf(steerMissing)('packet steering script', () => {
  const ns = `ftpsteer-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  let made = false;

  afterAll(async () => {
    if (made) await run('ip', ['netns', 'del', ns]);
  });

  async function steer(args: string[]): Promise<Exit> {
    expect(isRoot, 'the script writes sysfs in a namespace of our own; CI runs as root').toBe(true);
    if (!made) {
      for (const a of [['netns', 'add', ns], ['-n', ns, 'link', 'add', 'data0', 'type', 'veth', 'peer', 'name', 'data1']]) {
        const r = await run('ip', a);
        expect(r.code, r.stderr).toBe(0);
        made = true;
      }
    }
    return run('ip', ['netns', 'exec', ns, 'sh', STEER, ...args]);
  }
  const rpsOf = (dev: string) => run('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${dev}/queues/rx-0/rps_cpus`]);

  it('sets the RPS mask of every receive queue of each interface named, and only those', async () => {
    const result = await steer(['0', 'data0']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^data0: receive processing \(RPS\) on CPUs 0 \(mask 1\)$/m);
    expect(Number.parseInt((await rpsOf('data0')).stdout.replaceAll(',', ''), 16)).toBe(1);
    expect(Number.parseInt((await rpsOf('data1')).stdout.replaceAll(',', ''), 16)).toBe(0);
  });

  it.each([
    ['1-3', 'e'],
    ['0-1,3', 'b'],
    ['5,2', '24'],
    ['63', '8000000000000000'],
  ])('turns the CPU list %s into the mask %s (--mask: print it, change nothing)', async (cpus, mask) => {
    const result = await run('sh', [STEER, '--mask', cpus]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(`${mask}\n`);
  });

  it.each([['1-'], ['a'], ['3-1'], ['64'], [''], [',']])('refuses the CPU list %j', async (cpus) => {
    const result = await steer([cpus, 'data0']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/not a CPU list/);
  });

  it('refuses an interface that does not exist', async () => {
    const result = await steer(['0', 'nosuch0']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/no interface nosuch0/);
  });
});

describeIf(systemdAnalyze === undefined ? 'systemd-analyze is not installed (apt-get install systemd)' : undefined)('packet steering unit', () => {
  it('systemd-analyze verify passes with no complaint about ftp-alg-steer-packets.service', async () => {
    const dir = mkdtempSync(join(scratch, 'steer-'));
    const path = join(dir, 'ftp-alg-steer-packets.service');
    writeFileSync(path, readFileSync(join(ROOT, 'deploy/systemd/ftp-alg-steer-packets.service'), 'utf8').replace('ExecStart=/usr/local/sbin/ftp-alg-steer-packets', `ExecStart=${STEER}`));
    const exit = await run(systemdAnalyze ?? 'systemd-analyze', ['verify', '--man=no', path]);
    expect(`${exit.stdout}${exit.stderr}`.split('\n').filter((line) => line.includes('ftp-alg'))).toEqual([]);
    expect(exit.code, exit.stderr).toBe(0);
  });
});

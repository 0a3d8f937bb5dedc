/**
 * The systemd unit's directives, read as text (systemd-analyze verify runs
 * in test/integration/deploy.test.ts): non-root with one capability, the
 * sandbox, no MemoryDenyWriteExecute, stop timeout above the drain bound.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../../src/config/load.js';
import { rootSchema } from '../../../src/config/schema.js';

const ROOT = new URL('../../../', import.meta.url);
const unit = readFileSync(new URL('deploy/systemd/ftp-alg.service', ROOT), 'utf8');

/** Every `Key=value` of the unit, in order, repeated keys kept. */
const directives: [string, string][] = unit
  .split('\n')
  .filter((line) => /^[A-Za-z]+=/.test(line))
  .map((line) => {
    const at = line.indexOf('=');
    return [line.slice(0, at), line.slice(at + 1)];
  });
const values = (key: string) => directives.filter(([k]) => k === key).map(([, v]) => v);
const value = (key: string) => {
  const all = values(key);
  expect(all, key).toHaveLength(1);
  return all[0];
};

describe('deploy/systemd/ftp-alg.service', () => {
  it.each([
    ['DynamicUser', 'yes'],
    ['AmbientCapabilities', 'CAP_NET_BIND_SERVICE'],
    ['CapabilityBoundingSet', 'CAP_NET_BIND_SERVICE'],
    ['NoNewPrivileges', 'yes'],
    ['ProtectSystem', 'strict'],
    ['ProtectHome', 'yes'],
    ['PrivateTmp', 'yes'],
    ['PrivateDevices', 'yes'],
    ['ProtectKernelTunables', 'yes'],
    ['ProtectKernelModules', 'yes'],
    ['ProtectKernelLogs', 'yes'],
    ['ProtectControlGroups', 'yes'],
    ['RestrictAddressFamilies', 'AF_INET AF_INET6 AF_UNIX'],
    ['SystemCallFilter', '@system-service'],
    ['SystemCallErrorNumber', 'EPERM'],
    ['LimitNOFILE', '65536'],
    ['KillSignal', 'SIGTERM'],
    ['KillMode', 'mixed'],
    ['Restart', 'on-failure'],
    ['RestartPreventExitStatus', '64 78'],
    ['ExecStart', '/usr/bin/node /opt/ftp-alg/dist/cli.js --config /etc/ftp-alg/ftp-alg.json'],
    ['ExecStartPre', '/usr/bin/node /opt/ftp-alg/dist/cli.js --check-config /etc/ftp-alg/ftp-alg.json'],
  ])('%s=%s', (key, expected) => {
    expect(value(key)).toBe(expected);
  });

  it('leaves MemoryDenyWriteExecute and PrivateUsers out: V8 JIT and the capability need them off', () => {
    expect(values('MemoryDenyWriteExecute')).toEqual([]);
    expect(values('PrivateUsers')).toEqual([]);
    expect(values('User')).toEqual([]);
  });

  it('reloads by checking the config, then SIGHUP to the main process', () => {
    expect(values('ExecReload')).toEqual([
      '/usr/bin/node /opt/ftp-alg/dist/cli.js --check-config /etc/ftp-alg/ftp-alg.json',
      '/bin/kill -HUP $MAINPID',
    ]);
  });

  it('waits longer than the drain bound, default and example config, before SIGKILL', () => {
    const stop = /^(\d+)s$/.exec(value('TimeoutStopSec') ?? '');
    expect(stop).not.toBeNull();
    const stopMs = Number(stop?.[1]) * 1000;
    expect(stopMs).toBeGreaterThan(rootSchema.shutdown.drainTimeoutMs.default);
    const example = loadConfigFile(new URL('config/ftp-alg.json', ROOT).pathname);
    expect(stopMs).toBeGreaterThan(example.shutdown.drainTimeoutMs);
  });
});

describe('deploy/systemd/kernel-plane.conf and the forwarding sysctls (kernel data plane only)', () => {
  const dropIn = readFileSync(new URL('deploy/systemd/kernel-plane.conf', ROOT), 'utf8');
  const sysctl = readFileSync(new URL('deploy/systemd/90-ftp-alg-forwarding.conf', ROOT), 'utf8');
  const settings = (text: string) => text.split('\n').filter((line) => /^[A-Za-z.0-9_]+\s*=/.test(line));

  it('adds CAP_NET_ADMIN and netlink to the service, nothing else', () => {
    expect(settings(dropIn)).toEqual(['AmbientCapabilities=CAP_NET_ADMIN', 'CapabilityBoundingSet=CAP_NET_ADMIN', 'RestrictAddressFamilies=AF_NETLINK']);
    expect(dropIn).toMatch(/^\[Service\]$/m);
  });

  it('the unit itself stays without them', () => {
    expect(unit).not.toContain('CAP_NET_ADMIN');
    expect(unit).not.toContain('AF_NETLINK');
  });

  it('turns IPv4 and IPv6 forwarding on', () => {
    expect(settings(sysctl)).toEqual(['net.ipv4.ip_forward = 1', 'net.ipv6.conf.all.forwarding = 1']);
  });
});

describe('deploy/systemd/control-priority.conf (controlPriority only)', () => {
  const dropIn = readFileSync(new URL('deploy/systemd/control-priority.conf', ROOT), 'utf8');
  const settings = dropIn.split('\n').filter((line) => /^[A-Za-z]+=/.test(line));

  it('adds CAP_SYS_NICE and lifts RestrictRealtime, nothing else', () => {
    expect(settings).toEqual(['AmbientCapabilities=CAP_SYS_NICE', 'CapabilityBoundingSet=CAP_SYS_NICE', 'RestrictRealtime=no']);
    expect(dropIn).toMatch(/^\[Service\]$/m);
  });

  it('the unit itself stays without them', () => {
    expect(unit).not.toContain('CAP_SYS_NICE');
    expect(value('RestrictRealtime')).toBe('yes');
  });
});
